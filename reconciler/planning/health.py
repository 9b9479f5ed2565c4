"""Replication health, decided from the facts and the record of the last apply; pure.

Per source filesystem and target: the newest replicated snapshot and its age (the lag),
how many snapshots wait to be sent, snapshot counts and space on both sides, the last
apply's result; and the problems that make ``status`` exit 2 (a lag over ``max_lag``, a
last apply that failed or met a conflict, an unreachable host).

What was replicated is decided as the planner decides it: by GUID, never by name. A
reachable target counts its newest snapshot that the source also has (as a snapshot or
a bookmark); for a target that cannot be listed, the source's cursor bookmark for that
target says what arrived (DESIGN.md: known on the source without asking the target), so
the lag of a target that is down keeps growing in ``status`` and in the metrics.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler.codes import PairResult
from reconciler.config.models import Config, Target
from reconciler.domain.observed import Bookmark, Dataset, ObservedState, unavailable_reason
from reconciler.domain.record import CycleSummary, PairKey, PairRecord, StateRecord
from reconciler.planning.naming import cursor_prefix
from reconciler.planning.selection import Restriction, Selected, select

# A last apply with one of these results is a problem until an apply does better.
FAILED_RESULTS = frozenset({PairResult.FAILED, PairResult.CONFLICT})


@dataclass(frozen=True, slots=True)
class Space:
    """One side's snapshots: how many, the bytes written over them (the sum of each
    snapshot's ``written``: what the kept history took to write) and the newest one's
    ``referenced`` (the data it holds); ``None`` where zfs printed "-"."""

    snapshots: int
    written_bytes: int
    referenced_bytes: int | None


@dataclass(frozen=True, slots=True)
class Replicated:
    """The newest snapshot known to be on a target; ``name`` is ``#bookmark`` when only the
    source's cursor bookmark (the target was not listed) or a bookmark base says so."""

    name: str
    creation: int  # unix seconds, the source's creation time of that snapshot
    createtxg: int  # on the source: everything up to it is on the target


@dataclass(frozen=True, slots=True)
class TargetHealth:
    host: str
    dataset: str
    reachable: bool
    replicated: Replicated | None
    lag_seconds: int | None  # None: nothing to replicate (the source has no snapshot)
    waiting: int  # source snapshots not on the target yet
    space: Space | None  # None when the target was not listed or has no such dataset
    last_apply: PairRecord | None
    problems: tuple[str, ...] = ()  # a lag over max_lag, a last apply that failed

    @property
    def healthy(self) -> bool:
        return self.reachable and not self.problems


@dataclass(frozen=True, slots=True)
class FilesystemHealth:
    host: str
    dataset: str
    policy: str
    reachable: bool
    interval_seconds: int | None  # the policy's snapshot interval; None without a schedule
    space: Space | None
    last_apply: PairRecord | None  # the source side: its snapshots and pruning
    targets: tuple[TargetHealth, ...] = ()
    # Of the source side only (each target has its own); an unreachable host is the host's
    # problem, listed once in Status.problems.
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HostHealth:
    host: str
    reachable: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Status:
    now: datetime
    max_lag_seconds: int | None
    hosts: tuple[HostHealth, ...]
    filesystems: tuple[FilesystemHealth, ...]
    last_cycle: CycleSummary | None
    problems: tuple[str, ...]  # every problem once, one line each

    @property
    def healthy(self) -> bool:
        return not self.problems

    def worst_lag(self) -> int | None:
        lags = [t.lag_seconds for f in self.filesystems for t in f.targets if t.lag_seconds is not None]
        return max(lags, default=None)


# ------------------------------------------------------------------ one pair, pure


def space_of(dataset: Dataset | None) -> Space | None:
    if dataset is None:
        return None
    newest = dataset.newest_snapshot()
    return Space(len(dataset.snapshots), sum(s.written or 0 for s in dataset.snapshots),
                 newest.referenced if newest is not None else None)


def newest_on_target(source: Dataset, target: Dataset | None) -> Replicated | None:
    """The newest snapshot of a listed target that the source also has, as a snapshot or a
    bookmark (by GUID), with the source's name, creation and createtxg for it."""
    if target is None:
        return None
    on_source = _by_guid(source)
    for snap in reversed(target.snapshots):
        found = on_source.get(snap.guid)
        if found is not None:
            return found
    return None


def newest_by_cursor(source: Dataset, cursors: Iterable[Bookmark]) -> Replicated | None:
    """What arrived on a target that was not listed: the source's newest cursor bookmark for
    it (moved after each successful send) names the snapshot."""
    newest = max(cursors, key=lambda b: b.createtxg, default=None)
    if newest is None:
        return None
    return _by_guid(source).get(newest.guid, Replicated("#" + newest.name, newest.creation, newest.createtxg))


def _by_guid(source: Dataset) -> dict[int, Replicated]:
    found = {b.guid: Replicated("#" + b.name, b.creation, b.createtxg) for b in source.bookmarks}
    found.update((s.guid, Replicated(s.name, s.creation, s.createtxg)) for s in source.snapshots)
    return found


def snapshots_waiting(source: Dataset, replicated: Replicated | None, initial: str) -> int:
    """Source snapshots the target does not have yet and the next sends would carry: every
    one newer than what was replicated; before the first send, the newest only unless the
    target replicates ``initial: all``."""
    if replicated is None:
        return len(source.snapshots) if initial == "all" else min(1, len(source.snapshots))
    return sum(1 for s in source.snapshots if s.createtxg > replicated.createtxg)


def replication_lag(source: Dataset, replicated: Replicated | None, now_ts: int) -> int | None:
    """How long the target has been behind, in seconds: the age of the newest snapshot on
    it; before anything arrived, the age of the source's oldest snapshot (the target has
    lacked it that long); None when the source has no snapshot at all."""
    if replicated is not None:
        return max(0, now_ts - replicated.creation)
    if not source.snapshots:
        return None
    return max(0, now_ts - min(s.creation for s in source.snapshots))


def last_apply_problem(record: PairRecord | None) -> str:
    """The problem the last apply left on a pair, "" when none."""
    if record is None or record.result not in FAILED_RESULTS:
        return ""
    what = "failed" if record.result == PairResult.FAILED else "met a conflict"
    detail = f": {record.error}" if record.error else ""
    return f"{record.key.label()}: last apply {what} at {record.last_attempt:%Y-%m-%dT%H:%M:%SZ}{detail}"


def lag_problem(label: str, lag: int | None, max_lag: int | None) -> str:
    if lag is None or max_lag is None or lag <= max_lag:
        return ""
    return f"{label}: lag {format_duration(lag)} exceeds --max-lag {format_duration(max_lag)}"


def format_duration(seconds: float) -> str:
    """``45s``, ``12m``, ``3h 05m``, ``2d 04h``: a lag at a glance."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


# ------------------------------------------------------------------ the whole status


@dataclass(frozen=True, slots=True)
class _Inputs:
    """What every row is judged from."""

    observed: ObservedState
    records: Mapping[PairKey, PairRecord]
    now_ts: int
    max_lag: int | None
    down: frozenset[str]  # hosts that could not be listed


def assess(config: Config, observed: ObservedState, record: StateRecord | None, now: datetime, *,
           hosts: Collection[str] | None = None, filesystems: Collection[str] | None = None,
           max_lag: timedelta | None = None) -> Status:
    """The health of every selected filesystem and target (``hosts``/``filesystems`` select
    as ``plan --host/--filesystem`` do) at ``now``, from the facts and the record."""
    host_list = host_health(observed)
    inputs = _Inputs(observed, record.by_key() if record is not None else {}, int(now.timestamp()),
                     int(max_lag.total_seconds()) if max_lag is not None else None,
                     frozenset(h.host for h in host_list if not h.reachable))
    selection = select(config, observed, hosts=hosts, filesystems=filesystems)
    rows = [filesystem_health(item, inputs) for item in selection.selected]
    restriction = Restriction.of(hosts, filesystems)
    rows += unreachable_sources(config, selection.unavailable_hosts, inputs, restriction)
    rows.sort(key=lambda f: (f.host, f.dataset))
    problems = [f"host {h.host} is unreachable: {h.reason}" for h in host_list if not h.reachable]
    for row in rows:
        problems += row.problems
        for target in row.targets:
            problems += target.problems
    last = record.last_cycle if record is not None else None
    if last is not None and last.error:
        problems.append(f"the last cycle at {last.at:%Y-%m-%dT%H:%M:%SZ} could not run: {last.error}")
    return Status(now, inputs.max_lag, tuple(host_list), tuple(rows), last, tuple(dict.fromkeys(problems)))


def host_health(observed: ObservedState) -> list[HostHealth]:
    reachable = [HostHealth(h, True) for h in observed.hosts]
    down = [HostHealth(h, False, unavailable_reason(p)) for h, p in observed.unavailable.items()]
    return sorted(reachable + down, key=lambda h: h.host)


def filesystem_health(item: Selected, inputs: _Inputs) -> FilesystemHealth:
    schedule = item.policy.snapshots
    last = inputs.records.get(PairKey(item.host, item.name)) if item.source_side else None
    problem = last_apply_problem(last)
    return FilesystemHealth(item.host, item.name, item.policy_name, True,
                            int(schedule.interval_delta.total_seconds()) if schedule else None,
                            space_of(item.dataset), last,
                            tuple(target_health(item, t, inputs) for t in item.targets),
                            (problem,) if problem else ())


def target_health(item: Selected, target: Target, inputs: _Inputs) -> TargetHealth:
    dataset = target.target_dataset(item.name)
    key = PairKey(item.host, item.name, target.host, dataset)
    reachable = target.host not in inputs.down and target.host in inputs.observed.hosts
    listed = inputs.observed.dataset(target.host, dataset) if reachable else None
    if reachable:
        replicated = newest_on_target(item.dataset, listed)
    else:
        prefix = cursor_prefix(target.host, target.root)
        replicated = newest_by_cursor(item.dataset, [b for b in item.dataset.bookmarks
                                                     if b.name.startswith(prefix)])
    lag = replication_lag(item.dataset, replicated, inputs.now_ts)
    last = inputs.records.get(key)
    problems = [p for p in (lag_problem(key.label(), lag, inputs.max_lag), last_apply_problem(last)) if p]
    return TargetHealth(target.host, dataset, reachable, replicated, lag,
                        snapshots_waiting(item.dataset, replicated, target.initial), space_of(listed), last,
                        tuple(problems))


def unreachable_sources(config: Config, hosts: Collection[str], inputs: _Inputs,
                        restriction: Restriction) -> list[FilesystemHealth]:
    """Filesystems of source hosts that could not be listed, as the record last saw them:
    their last results stay visible while the host is down (the host itself is the problem)."""
    rows: list[FilesystemHealth] = []
    records = inputs.records
    sources = sorted({(k.host, k.dataset) for k in records
                      if k.host in hosts and restriction.source(k.host, k.dataset)})
    for host, name in sources:
        role = config.role_of(host, name)
        if role is None or role.target is not None:
            continue
        targets = tuple(
            TargetHealth(t.host, t.target_dataset(name), t.host not in inputs.down, None, None, 0, None,
                         records.get(PairKey(host, name, t.host, t.target_dataset(name))))
            for t in role.entry.replicate_to if restriction.pair(host, name, t))
        rows.append(FilesystemHealth(host, name, role.entry.policy, False, None, None,
                                     records.get(PairKey(host, name)), targets))
    return rows
