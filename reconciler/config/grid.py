"""Durations and zrepl grid specs ("1x1h(keep=all) | 24x1h | 14x1d").

The grid grammar follows zrepl's ``ParseRetentionIntervalSpec`` and ``newKeepGrid``:
intervals separated by ``|``, each ``COUNT x DURATION`` with an optional
``(keep=N|all)`` (default keep=1), ``COUNT`` >= 1, and interval lengths must not
decrease unless every interval before is ``keep=all``. The parameter is read as zrepl
reads it (``^\\s*keep=(.+)\\s*$``, whose greedy value keeps trailing blanks): blanks may
precede ``keep`` but not surround ``=`` or follow the value, so ``(keep = 3)`` and
``(keep=all )`` are rejected as zrepl rejects them. We are stricter than zrepl where
zrepl silently accepts nonsense (``keep=0``, ``keep=-1`` meaning "all", Go units such
as ``ms``), and every rejection names the offending interval.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# [0-9] rather than \d: Python's \d also accepts non-ASCII digits such as '٣'.
_DURATION = re.compile(r"^\s*([0-9]+)\s*([smhdw])\s*$")
_INTERVAL = re.compile(r"^([0-9]+)\s*x\s*([^()]*?)\s*(?:\((.*)\))?$")
# timedelta tops out near 2.7 million years; a bucket longer than a century is a typo.
_MAX_DURATION_SECONDS = 100 * 366 * 86400
# Each bucket is materialised; zrepl has no cap, but a million buckets is a typo, not a policy.
MAX_BUCKETS = 100_000
# The whole grid, too: its reasons add the lengths up as timedeltas (which overflow past
# 2.7 million years), and a grid longer than a millennium is a typo as well.
_MAX_GRID_SECONDS = 1000 * 366 * 86400
GRID_EXAMPLE = "'1x1h(keep=all) | 24x1h | 14x1d'"


@dataclass(frozen=True, slots=True)
class GridInterval:
    length: timedelta
    keep: int | None  # None means keep=all

    def __str__(self) -> str:
        return f"{format_duration(self.length)}(keep={'all' if self.keep is None else self.keep})"


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text)
    if not m:
        raise ValueError(
            f"invalid duration {text!r}: expected a positive integer and a unit s, m, h, d or w, e.g. '1h'")
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be greater than zero")
    if seconds > _MAX_DURATION_SECONDS:
        raise ValueError(f"invalid duration {text!r}: longer than 100 years")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def format_grid(intervals: tuple[GridInterval, ...]) -> str:
    """The canonical spec of parsed intervals: runs of equal buckets folded into ``NxD``."""
    parts: list[str] = []
    i = 0
    while i < len(intervals):
        j = i
        while j < len(intervals) and intervals[j] == intervals[i]:
            j += 1
        keep = intervals[i].keep
        suffix = "" if keep == 1 else f"(keep={'all' if keep is None else keep})"
        parts.append(f"{j - i}x{format_duration(intervals[i].length)}{suffix}")
        i = j
    return " | ".join(parts)


@lru_cache(maxsize=256)
def parse_grid(spec: str) -> tuple[GridInterval, ...]:
    """Parse a grid spec into its intervals, one ``GridInterval`` per bucket (``24x1h`` -> 24)."""
    if not spec.strip():
        raise ValueError(f"empty grid: expected intervals like {GRID_EXAMPLE}")
    parts = spec.split("|")
    intervals: list[GridInterval] = []
    span = 0
    for index, part in enumerate(parts, start=1):
        where = f"interval {index} of {len(parts)}"
        count, bucket = _parse_interval(part.strip(), where)
        _check_not_shorter(intervals, bucket, part.strip(), where)
        if len(intervals) + count > MAX_BUCKETS:
            raise ValueError(f"grid has more than {MAX_BUCKETS} buckets; use longer intervals")
        span += count * int(bucket.length.total_seconds())  # int: count x timedelta may overflow
        if span > _MAX_GRID_SECONDS:
            raise ValueError(f"{where} {part.strip()!r}: the grid would span more than 1000 years;"
                             " use fewer or shorter intervals")
        intervals.extend([bucket] * count)
    return tuple(intervals)


def _parse_interval(text: str, where: str) -> tuple[int, GridInterval]:
    if not text:
        raise ValueError(f"{where} is empty (a stray '|'?): expected intervals like {GRID_EXAMPLE}")
    m = _INTERVAL.match(text)
    if not m:
        raise ValueError(f"{where} {text!r}: expected COUNTxDURATION with an optional (keep=N|all),"
                         " e.g. '24x1h' or '1x1h(keep=all)'")
    count = int(m.group(1))
    if count < 1:
        raise ValueError(f"{where} {text!r}: the count must be at least 1")
    try:
        length = parse_duration(m.group(2))
    except ValueError as exc:
        raise ValueError(f"{where} {text!r}: {exc}") from None
    keep = 1 if m.group(3) is None else _parse_keep(m.group(3), text, where)
    return count, GridInterval(length=length, keep=keep)


def _parse_keep(params: str, text: str, where: str) -> int | None:
    """zrepl's ``^\\s*keep=(.+)\\s*$``: blanks before ``keep`` only; its (.+) keeps trailing blanks."""
    name, equals, value = params.lstrip().partition("=")
    if not equals or name.strip() != "keep":
        raise ValueError(f"{where} {text!r}: unknown interval parameter {params!r}; only keep=N or keep=all")
    if name != "keep" or value != value.strip():
        raise ValueError(f"{where} {text!r}: blanks around '=' or after the value in ({params}) are "
                         "rejected, as by zrepl: write (keep=N) or (keep=all)")
    if value == "all":
        return None
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise ValueError(f"{where} {text!r}: keep must be a positive integer or 'all', not {value!r}")
    return int(value)


def _check_not_shorter(before: list[GridInterval], bucket: GridInterval, text: str, where: str) -> None:
    """zrepl's rule: lengths must not decrease, unless every earlier interval is keep=all."""
    if not before or bucket.length >= before[-1].length:
        return
    if all(previous.keep is None for previous in before):
        return
    raise ValueError(
        f"{where} {text!r} is shorter than the interval before it ({format_duration(before[-1].length)});"
        " interval lengths must not decrease (only keep=all intervals may precede a shorter one)")
