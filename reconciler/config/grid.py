"""Durations and zrepl grid specs ("1x1h(keep=all) | 24x1h | 14x1d").

STUB CONTRACT (the config helper completes the parser): ``parse_grid`` must parse
strictly like zrepl and raise ``ValueError`` with a clear message for each malformed
form; ``parse_duration`` accepts ``<int><unit>`` with units s m h d w.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


@dataclass(frozen=True, slots=True)
class GridInterval:
    length: timedelta
    keep: int | None  # None means keep=all

    def __str__(self) -> str:
        return f"{format_duration(self.length)}(keep={'all' if self.keep is None else self.keep})"


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"invalid duration {text!r}: expected a positive integer and a unit s, m, h, d or w, e.g. '1h'")
    value = int(m.group(1))
    if value <= 0:
        raise ValueError(f"invalid duration {text!r}: must be greater than zero")
    return timedelta(seconds=value * _UNITS[m.group(2)])


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


@lru_cache(maxsize=256)
def parse_grid(spec: str) -> tuple[GridInterval, ...]:
    """Parse a grid spec into its intervals, one ``GridInterval`` per bucket (``24x1h`` -> 24)."""
    raise NotImplementedError
