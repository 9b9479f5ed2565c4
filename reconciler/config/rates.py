"""Transfer rates as a person writes them: ``bandwidth_limit: 20MiB/s``.

Units are binary, as zfs and the peers count (syncoid's ``--source-bwlimit``, mbuffer's
``-r``, zrepl's ``bandwidth_limit``): ``B/s``, ``KiB/s``, ``MiB/s``, ``GiB/s``, and the
short suffixes ``K``, ``M``, ``G`` (with or without ``/s``); a bare number is bytes per
second. Decimals are allowed (``1.5MiB/s``). The result is whole bytes per second.
"""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30,
          "gib": 1 << 30}
# [0-9] rather than \d: Python's \d also accepts non-ASCII digits.
_RATE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*(/\s*s)?\s*$")
# Below this a token bucket would wait seconds for one pipe buffer: a typo, not a link.
MIN_RATE = 1 << 10
# A link faster than this is not a limit (and no stream moves this fast through one process).
MAX_RATE = 1 << 40
RATE_EXAMPLE = "e.g. 20MiB/s, 500KiB/s, 1.5GiB/s or 20M"


def parse_rate(text: str) -> int:
    """Bytes per second of ``text``; ValueError saying what is accepted otherwise."""
    match = _RATE.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS or (unit == "" and match.group(3) is None and "." in text):
        raise ValueError(f"invalid rate {text!r}: expected a number and a unit B/s, KiB/s, MiB/s, GiB/s"
                         f" (or K, M, G), {RATE_EXAMPLE}")
    rate = int(float(match.group(1)) * _UNITS[unit])
    if rate < MIN_RATE:
        raise ValueError(f"invalid rate {text!r}: at least 1KiB/s ({MIN_RATE} bytes per second)")
    if rate > MAX_RATE:
        raise ValueError(f"invalid rate {text!r}: more than 1024GiB/s is no limit; leave bandwidth_limit out")
    return rate


def format_rate(rate: int) -> str:
    """``20 MiB/s``: the largest binary unit that keeps at least one whole unit."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if rate >= size:
            value = rate / size
            return f"{value:.0f} {unit}/s" if value == int(value) else f"{value:.1f} {unit}/s"
    return f"{rate} B/s"
