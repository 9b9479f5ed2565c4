"""Field paths and the wording of values, as every configuration message writes them.

One place decides how a path reads (``policies.hourly.keep_source[1].grid``) and how a
value is described (``the string 'x'``, ``a list``, ``infinity (.inf)``), so the YAML,
schema, model and cross-reference layers word their problems alike.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from reconciler.config.scalars import LongNumber

PathElem = str | int
Path = tuple[PathElem, ...]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_path(path: Sequence[PathElem]) -> str:
    """``policies.hourly.keep_source[1].grid``; keys that are not plain names are quoted."""
    out = ""
    for elem in path:
        if isinstance(elem, int):
            out += f"[{elem}]"
        elif _IDENTIFIER.match(elem):
            out += f".{elem}" if out else elem
        else:
            # JSON string syntax: a key with a newline, quote or control character stays on
            # one line (one error, one line) and reads back unambiguously.
            out += f"[{json.dumps(elem, ensure_ascii=False)}]"
    return out


def describe(value: Any) -> str:
    """What a value is, in words a message can carry: ``the string 'x'``, ``a list``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "not-a-number (.nan)"
        return f"{'minus ' * (value < 0)}infinity ({_number(value)})"
    if isinstance(value, int | float):
        return f"the number {_number(value)}"
    if isinstance(value, str):
        return f"the string {short(value)!r}"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _number(value: int | float) -> str:
    """A number as written, or its first digits and length when it is absurdly long."""
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else "-.inf" if value < 0 else ".inf"  # as YAML writes them
    text = str(value)
    digits = len(text.lstrip("-"))
    if isinstance(value, float | LongNumber) or digits <= 20:
        return text
    return f"{text[:20 + text.startswith('-')]}… ({digits} digits)"


def describe_number(value: Any) -> str:
    """A number as written; anything else described (``must be at least 1, got 0``)."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return _number(value) if is_number else describe(value)


def short(text: str, limit: int = 40) -> str:
    """At most ``limit`` characters of ``text``, marked "…" where it was cut."""
    return text if len(text) <= limit else text[:limit] + "…"


_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "nothing (null)"}


def expected(types: Any) -> str:
    """JSON-schema type names in words: ``a mapping or nothing (null)``."""
    names = [types] if isinstance(types, str) else list(types)
    return " or ".join(_TYPE_NAMES.get(t, t) for t in names)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest of ``choices``, or nothing when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
