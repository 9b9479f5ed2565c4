"""The old tools' own snapshot rules, written from their code, for the switch-over tests: what
sanoid, znapzend and zrepl would take and destroy, so that a state "as the old tool left it"
can be built and our first plans checked against what the old tool would have kept.

- sanoid 2.1.0 (``take_snapshots``, ``prune_snapshots``, ``getsnaps``; run in UTC, as Debian's
  cron entry does): a type is due when its newest snapshot is older than the last preferred
  time; a snapshot of a type goes when it is older than count x period AND more than count
  of its type remain, oldest first.
- znapzend (``ZnapZend::Time::getSnapshotsToDestroy``): per snapshot, oldest first, the
  smallest retention at least its age picks the interval; older than the largest retention
  goes; of each fixed time slot (timestamp // interval) the first stays.
- zrepl: its keep rules (our ``retention`` module is the port, tested against zrepl's vectors).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

Snap = tuple[str, int]  # (name, creation as unix seconds)

SANOID_PERIODS = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400, "monthly": 31 * 86400,
                  "yearly": int(365.25 * 86400)}
SANOID_TYPES = ("yearly", "monthly", "weekly", "daily", "hourly", "frequently")


@dataclass
class SanoidConfig:
    counts: dict[str, int]
    frequent_period: int = 15
    hourly_min: int = 0
    daily_hour: int = 23
    daily_min: int = 59
    weekly_wday: int = 1
    weekly_hour: int = 23
    weekly_min: int = 30
    monthly_mday: int = 1
    monthly_hour: int = 0
    monthly_min: int = 0
    autosnap: bool = True
    autoprune: bool = True

    def period(self, kind: str) -> int:
        return 60 * self.frequent_period if kind == "frequently" else SANOID_PERIODS[kind]


def sanoid_type(name: str) -> str | None:
    """getsnaps: only names starting with autosnap and ending in 'ly'; the type is the last _xxxly."""
    if not name.startswith("autosnap") or not name.endswith("ly"):
        return None
    match = re.match(r".*_(\w*ly)", name)
    return match.group(1) if match else None


def sanoid_prune(snaps: Iterable[Snap], config: SanoidConfig, now: int) -> set[str]:
    """The names sanoid's prune_snapshots destroys at ``now``."""
    by_type: dict[str, list[Snap]] = {}
    for name, ctime in snaps:
        kind = sanoid_type(name)
        if kind is not None:
            by_type.setdefault(kind, []).append((name, ctime))
    pruned: set[str] = set()
    if not config.autoprune:
        return pruned
    for kind in SANOID_TYPES:
        count = config.counts.get(kind, 0)
        ordered = sorted(by_type.get(kind, []), key=lambda s: s[1])
        maxage = now - count * config.period(kind)
        remaining = len(ordered)
        for name, ctime in ordered:
            if ctime < maxage and remaining > count:
                pruned.add(name)
                remaining -= 1
    return pruned


def _last_preferred(kind: str, config: SanoidConfig, now: datetime) -> datetime:
    if kind == "frequently":
        minute = (now.minute // config.frequent_period) * config.frequent_period
        t = now.replace(minute=minute, second=0)
        return t - timedelta(minutes=config.frequent_period) if t > now else t
    if kind == "hourly":
        t = now.replace(minute=config.hourly_min, second=0)
        return t - timedelta(hours=1) if t > now else t
    if kind == "daily":
        t = now.replace(hour=config.daily_hour, minute=config.daily_min, second=0)
        return t - timedelta(days=1) if t > now else t
    if kind == "weekly":
        wday = (now.weekday() + 1) % 7  # Perl: 0 is Sunday
        offset = (6 if config.weekly_wday < wday else 0) + config.weekly_wday - wday
        t = now.replace(hour=config.weekly_hour, minute=config.weekly_min, second=0) - timedelta(days=offset)
        return t - timedelta(days=7) if t > now else t
    if kind == "monthly":
        t = now.replace(day=config.monthly_mday, hour=config.monthly_hour, minute=config.monthly_min,
                        second=0)
        return t - timedelta(days=31) if t > now else t
    t = now.replace(month=1, day=1, hour=0, minute=0, second=0)
    return t - timedelta(days=365) if t > now else t


def sanoid_take(snaps: list[Snap], config: SanoidConfig, now: int) -> list[Snap]:
    """The snapshots sanoid's take_snapshots takes at ``now`` (names in its sortable local
    time, here UTC)."""
    if not config.autosnap:
        return []
    when = datetime.fromtimestamp(now, UTC)
    taken = []
    for kind in SANOID_TYPES:
        if config.counts.get(kind, 0) <= 0:
            continue
        newest = max((c for n, c in snaps if sanoid_type(n) == kind), default=None)
        newest_age = now - newest if newest is not None else 10**16
        if newest_age > now - int(_last_preferred(kind, config, when).timestamp()):
            taken.append((f"autosnap_{when:%Y-%m-%d_%H:%M:%S}_{kind}", now))
    return taken


@dataclass
class History:
    """A dataset's snapshots as the old tool left them, and when it last ran."""

    snaps: list[Snap] = field(default_factory=list)
    last_run: int = 0


class SanoidDataset:
    """One dataset under sanoid --cron, kept per type so that months of runs stay fast; the
    result is what ``sanoid_take`` and ``sanoid_prune`` give run by run (a type's snapshots
    are appended in creation order, and pruning takes from the oldest while both conditions
    hold, exactly sanoid's loop over its sorted list)."""

    def __init__(self, config: SanoidConfig, extra: Iterable[Snap] = ()) -> None:
        self.config = config
        self.other = list(extra)
        self.by_type: dict[str, deque[Snap]] = {kind: deque() for kind in SANOID_TYPES}
        self.last_run = 0

    def newest(self) -> list[Snap]:
        return [queue[-1] for queue in self.by_type.values() if queue]

    def add(self, snaps: Iterable[Snap]) -> None:
        for snap in snaps:
            kind = sanoid_type(snap[0])
            self.by_type[kind].append(snap) if kind in self.by_type else self.other.append(snap)

    def prune(self, now: int) -> None:
        self.last_run = now
        if not self.config.autoprune:
            return
        for kind, queue in self.by_type.items():
            count = self.config.counts.get(kind, 0)
            maxage = now - count * self.config.period(kind)
            while len(queue) > count and queue[0][1] < maxage:
                queue.popleft()

    def history(self) -> History:
        snaps = self.other + [s for queue in self.by_type.values() for s in queue]
        return History(sorted(snaps, key=lambda s: s[1]), self.last_run)


def run_sanoid(config: SanoidConfig, start: int, end: int, *, every: int = 900,
               outages: Iterable[tuple[int, int]] = (), extra: Iterable[Snap] = ()) -> History:
    """sanoid --cron every ``every`` seconds from ``start`` to ``end`` (not during outages)."""
    dataset = SanoidDataset(config, extra)
    down = list(outages)
    for now in range(start, end + 1, every):
        if any(a <= now < b for a, b in down):
            continue
        dataset.add(sanoid_take(dataset.newest(), config, now))
        dataset.prune(now)
    return dataset.history()


def znapzend_destroy(snaps: Iterable[Snap], plan: list[tuple[int, int]], now: int) -> set[str]:
    """getSnapshotsToDestroy: ``plan`` is (retention, interval) in seconds; snapshots oldest first."""
    retentions = sorted(r for r, _ in plan)
    interval = dict(plan)
    max_age = retentions[-1]  # persists from one snapshot to the next, as in znapzend
    slots: set[tuple[int, int]] = set()
    destroy = set()
    for name, ts in sorted(snaps, key=lambda s: s[1]):
        age = now - ts
        for key in retentions:
            if key >= age:
                max_age = key
                break
        if age > max_age:
            destroy.add(name)
            continue
        slot = (max_age, ts // interval[max_age])
        if slot in slots:
            if ts != now:
                destroy.add(name)
        else:
            slots.add(slot)
    return destroy


def run_znapzend(plan: list[tuple[int, int]], start: int, end: int, *, tsformat: str = "%Y-%m-%d-%H%M%S",
                 outages: Iterable[tuple[int, int]] = ()) -> History:
    """znapzend's daemon: a snapshot at every multiple of the smallest interval, then cleanup."""
    step = min(i for _, i in plan)
    history = History()
    down = list(outages)
    for now in range(start - start % step + step, end + 1, step):
        if any(a <= now < b for a, b in down):
            continue
        history.snaps.append((datetime.fromtimestamp(now, UTC).strftime(tsformat), now))
        gone = znapzend_destroy(history.snaps, plan, now)
        history.snaps = [s for s in history.snaps if s[0] not in gone]
        history.last_run = now
    return history
