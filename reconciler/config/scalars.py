"""The value of a YAML scalar: YAML 1.2 core-schema null, booleans, integers and floats.

The document is composed into nodes, not constructed: ruamel resolves each plain scalar's
tag (YAML 1.2, so ``yes`` and ``on`` are strings) and the value for that tag is decided
here. An absurdly long integer literal stays a number that compares like it but prints short.
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml.nodes import ScalarNode

_TAG = "tag:yaml.org,2002:"


def scalar(node: ScalarNode) -> Any:
    """YAML 1.2 core-schema scalars; other tags (timestamps, binary) stay the text as written."""
    tag, text = str(node.tag), str(node.value)
    if tag == _TAG + "null":
        return None
    if tag == _TAG + "bool":
        return text.lower() == "true"
    if tag == _TAG + "int":
        return _yaml_int(text)
    if tag == _TAG + "float":
        return _yaml_float(text)
    return text


def _yaml_int(text: str) -> int | str:
    digits = text.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    bases = {"0x": 16, "0o": 8, "0b": 2}
    base = bases.get(digits[:2].lower(), 10)
    written = digits[2:] if base != 10 else digits
    try:
        if len(written) > _MAX_EXACT_DIGITS:
            return LongNumber(sign, written, base)
        return sign * int(written, base)
    except ValueError:
        return text


# Python refuses to convert more than 4300 decimal digits between int and str (CVE-2020-10735);
# no setting needs more than 19.
_MAX_EXACT_DIGITS = 1000


class LongNumber(int):
    """An absurdly long integer literal: compares like it (far beyond any bound), prints short."""

    text: str

    def __new__(cls, sign: int, digits: str, base: int) -> LongNumber:
        # The first digits stand in for the value: already far beyond any limit a setting has.
        number = super().__new__(cls, sign * int(digits[:_MAX_EXACT_DIGITS], base))
        prefix = {16: "0x", 8: "0o", 2: "0b"}.get(base, "")
        number.text = f"{'-' if sign < 0 else ''}{prefix}{digits[:20]}… ({len(digits)} digits)"
        return number

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


def _yaml_float(text: str) -> float | str:
    lowered = text.lower().replace("_", "")
    special = {".inf": float("inf"), "+.inf": float("inf"), "-.inf": float("-inf"), ".nan": float("nan")}
    if lowered in special:
        return special[lowered]
    try:
        return float(lowered)
    except ValueError:
        return text
