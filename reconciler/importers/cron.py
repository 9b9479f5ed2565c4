"""A cron spec as zrepl reads it (``github.com/robfig/cron/v3`` with optional seconds and
descriptors) turned into the interval our schedule can say.

Our schedule takes a snapshot when the newest is at least ``interval`` old; cron fires at
fixed points in time. ``cron_interval`` returns the SHORTEST gap between two firings (so
our schedule takes at least as many snapshots as cron did) and the longest, for the note
saying how irregular the original was.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_DESCRIPTORS = {"@yearly": "0 0 0 1 1 *", "@annually": "0 0 0 1 1 *", "@monthly": "0 0 0 1 * *",
                "@weekly": "0 0 0 * * 0", "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *",
                "@hourly": "0 0 * * * *"}
_EVERY = re.compile(r"^@every\s+(.+)$")
_GO_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# How far ahead firings are enumerated: long enough for monthly and yearly specs.
_HORIZON_DAYS = 2 * 366 + 1
_MAX_FIRINGS = 200_000
_START = datetime(2025, 1, 1, tzinfo=UTC)  # a fixed reference: the result never depends on today


@dataclass(frozen=True, slots=True)
class CronGaps:
    shortest: timedelta
    longest: timedelta

    @property
    def regular(self) -> bool:
        return self.shortest == self.longest


def parse_go_duration(text: str) -> timedelta:
    """Go's ``time.ParseDuration`` for the positive durations zrepl accepts ("10m", "1h30m")."""
    text = text.strip()
    pos, total = 0, 0.0
    for match in _GO_DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text or total <= 0:
        raise ValueError(f"{text!r} is not a positive Go duration (e.g. 10m, 1h30m)")
    return timedelta(seconds=total)


def cron_interval(spec: str) -> CronGaps:
    """The shortest and longest gap between firings of ``spec``; ValueError saying why a spec
    is not one zrepl accepts."""
    spec = " ".join(spec.split())
    every = _EVERY.match(spec)
    if every:
        delta = parse_go_duration(every.group(1))
        return CronGaps(delta, delta)
    fields = _DESCRIPTORS.get(spec.lower(), spec).split(" ")
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(f"cron spec {spec!r} has {len(fields)} fields; expected 5 (minute hour"
                         " day-of-month month day-of-week) or 6 (seconds first)")
    seconds = _field(fields[0], 0, 59, {}, "second")
    minutes = _field(fields[1], 0, 59, {}, "minute")
    hours = _field(fields[2], 0, 23, {}, "hour")
    doms = _field(fields[3], 1, 31, {}, "day of month")
    months = _field(fields[4], 1, 12, _MONTHS, "month")
    dows = {d % 7 for d in _field(fields[5], 0, 7, _DAYS, "day of week")}
    # robfig/cron: when both day fields are restricted a day matching either fires.
    either_day = not (_star(fields[3]) or _star(fields[5]))
    firings = _firings(seconds, minutes, hours, doms, months, dows, either_day=either_day)
    if len(firings) < 2:
        raise ValueError(f"cron spec {spec!r} fires less than twice in two years")
    gaps = [b - a for a, b in itertools.pairwise(firings)]
    return CronGaps(timedelta(seconds=min(gaps)), timedelta(seconds=max(gaps)))


def _star(field: str) -> bool:
    """robfig/cron's star bit: a bare ``*`` or ``?`` (a step above 1 clears it)."""
    return field in ("*", "?", "*/1", "?/1")


def _field(text: str, low: int, high: int, names: dict[str, int], what: str) -> list[int]:
    values: set[int] = set()
    for part in text.lower().split(","):
        values |= _part(part, low, high, names, what)
    return sorted(values)


def _part(part: str, low: int, high: int, names: dict[str, int], what: str) -> set[int]:
    range_text, _, step_text = part.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) < 1:
            raise ValueError(f"cron {what} {part!r}: the step must be a positive number")
        step = int(step_text)
    if range_text in ("*", "?"):
        start, end = low, high
    else:
        first, dash, last = range_text.partition("-")
        start = _value(first, low, high, names, what)
        end = _value(last, low, high, names, what) if dash else (high if step_text else start)
        if end < start:
            raise ValueError(f"cron {what} {part!r}: the range ends before it starts")
    return set(range(start, end + 1, step))


def _value(text: str, low: int, high: int, names: dict[str, int], what: str) -> int:
    value = names.get(text) if text in names else (int(text) if text.isdigit() else None)
    if value is None or not low <= value <= high:
        raise ValueError(f"cron {what} {text!r}: expected a number from {low} to {high}"
                         + (" or a name" if names else ""))
    return value


def _firings(seconds: list[int], minutes: list[int], hours: list[int], doms: list[int], months: list[int],
             dows: set[int], *, either_day: bool) -> list[int]:
    """Unix times of the firings from the reference start over the horizon (bounded)."""
    out: list[int] = []
    dom_set, month_set = set(doms), set(months)
    per_day = [h * 3600 + m * 60 + s for h in hours for m in minutes for s in seconds]
    for offset in range(_HORIZON_DAYS):
        day = _START + timedelta(days=offset)
        if day.month not in month_set:
            continue
        dom_ok, dow_ok = day.day in dom_set, (day.isoweekday() % 7) in dows
        if not ((dom_ok or dow_ok) if either_day else (dom_ok and dow_ok)):
            continue
        base = int(day.timestamp())
        out += [base + t for t in per_day]
        if len(out) > _MAX_FIRINGS:
            break
    return out
