"""What retention will keep over the coming days: the planner run forward in time.

``forecast`` starts from observed facts and, every ``step``, makes the plan apply would run at
that time (``make_plan``: scheduled snapshots, sends, pruning) and applies it to the facts
the way the planner itself assumes (``simulate``). During an outage its host is unavailable,
exactly as a failed ``zfs list`` makes it: no sends to it, nothing done on it, and on the
source the rule from zrepl's history decides (pruning wins, or not_replicated keeps what did
not reach every target). Pure: no zfs, no clock, no files.

Per source filesystem and day it records the snapshot counts on the source and on each
target, the oldest and newest kept, what was taken, sent and destroyed, what was destroyed
before it reached every target and how many snapshots wait for a target.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from reconciler.codes import HostProblem
from reconciler.config.models import Config
from reconciler.domain.actions import DestroyAction, SendAction, SnapshotAction
from reconciler.domain.names import is_within
from reconciler.domain.observed import HostUnavailable, ObservedState
from reconciler.domain.plan import Plan
from reconciler.planning.planner import make_plan
from reconciler.planning.simulate import copy_state, simulate_in_place

DAY = timedelta(days=1)
# The planner's warning for each snapshot destroyed before it reached a target (planner.py);
# ZFS names have no commas, so the list splits cleanly.
UNREPLICATED = "destroyed unreplicated: "
Side = tuple[str, str]  # (host, dataset)


@dataclass(frozen=True, slots=True)
class Outage:
    """``host`` unreachable from ``start`` (included) to ``end`` (excluded)."""

    host: str
    start: datetime
    end: datetime

    def covers(self, when: datetime) -> bool:
        return self.start <= when < self.end


Moment = datetime | timedelta  # a time, or an offset from the simulation's start


@dataclass(frozen=True, slots=True)
class OutageSpec:
    """An outage as a user gives it, before the start of the simulation is known."""

    host: str
    begin: Moment
    end: Moment

    def at(self, start: datetime) -> Outage:
        def moment(value: Moment) -> datetime:
            return start + value if isinstance(value, timedelta) else value

        return Outage(self.host, moment(self.begin), moment(self.end))


@dataclass(frozen=True, slots=True)
class SideState:
    """One dataset at one moment: how many snapshots, the oldest and the newest."""

    count: int
    oldest: str | None = None
    oldest_creation: int | None = None
    newest: str | None = None
    newest_creation: int | None = None


@dataclass(slots=True)
class GroupDay:
    """One source filesystem and its replicas over one day (at its end)."""

    source: SideState
    targets: dict[Side, SideState]
    taken: int = 0
    sent: int = 0
    destroyed: int = 0
    destroyed_unreplicated: int = 0  # destroyed on the source before every target had them
    waiting: int = 0  # on the source, not yet on every target
    down: tuple[str, ...] = ()  # hosts down at some step of the day


@dataclass(frozen=True, slots=True)
class Group:
    """A source filesystem of the configuration and the datasets it replicates to."""

    host: str
    dataset: str
    policy: str
    targets: tuple[Side, ...]
    protects_unreplicated: bool  # keep_source has not_replicated (the rule from zrepl's history)

    @property
    def side(self) -> Side:
        return (self.host, self.dataset)


@dataclass(slots=True)
class Forecast:
    start: datetime
    step: timedelta
    days: int
    outages: tuple[Outage, ...]
    groups: tuple[Group, ...]
    rows: list[dict[Side, GroupDay]] = field(default_factory=list)  # day 0 (the facts), 1, ..., days
    samples: list[tuple[datetime, dict[Side, int]]] = field(default_factory=list)  # counts at each step
    runs: int = 0
    conflicts: list[str] = field(default_factory=list)  # each conflict message once
    final: ObservedState = field(default_factory=ObservedState)

    def day_time(self, day: int) -> datetime:
        return self.start + day * DAY


def forecast(config: Config, observed: ObservedState, start: datetime, *, days: int, step: timedelta,
             outages: Sequence[Outage] = (), filesystems: Collection[str] | None = None,
             progress: Callable[[int, int], None] | None = None) -> Forecast:
    """Run plan and apply every ``step`` for ``days`` days from ``start`` (see the module);
    ``progress(day, days)`` is called as each day is done."""
    state = copy_state(observed)
    first = make_plan(config, state, start, filesystems=filesystems, fingerprint=False)
    result = Forecast(start, step, days, tuple(outages), _groups(config, first, filesystems))
    result.rows.append(_row(result.groups, state, {}, ()))
    tallies: dict[Side, GroupDay] = {}
    down_today: set[str] = set()
    owners = {side: g.side for g in result.groups for side in (g.side, *g.targets)}
    sides = list(owners)
    steps = _steps(days, step)
    for index in range(steps):
        now = start + index * step
        down = {o.host for o in outages if o.covers(now)}
        down_today |= down
        view = _without(state, down)
        plan = first if index == 0 and not down else \
            make_plan(config, view, now, filesystems=filesystems, fingerprint=False)
        _tally(result, tallies, plan, owners)
        result.conflicts += [c.message for c in plan.conflicts if c.message not in result.conflicts]
        simulate_in_place(view, plan)  # the hosts that are down are not in the view: untouched
        result.runs += 1
        result.samples.append((now, {side: _count(state, side) for side in sides}))
        next_time = start + (index + 1) * step
        while len(result.rows) <= days and next_time >= result.day_time(len(result.rows)):
            result.rows.append(_row(result.groups, state, tallies, tuple(sorted(down_today))))
            tallies, down_today = {}, set()
            if progress is not None:
                progress(len(result.rows) - 1, days)
    result.final = state
    return result


def _steps(days: int, step: timedelta) -> int:
    """Runs at start, start + step, ... before start + days."""
    return -(-(days * DAY) // step)


def _groups(config: Config, plan: Plan, filesystems: Collection[str] | None) -> tuple[Group, ...]:
    """The source filesystems the plan manages (of the selection: a parent the plan sends first
    for a selected child is not one of them)."""
    groups = []
    for report in plan.filesystems:
        selected = not filesystems or any(is_within(report.dataset, f) for f in filesystems)
        if report.role != "source" or not selected:
            continue
        role = config.role_of(report.host, report.dataset)
        if role is None or role.target is not None:
            continue
        policy = config.policies[role.entry.policy]
        targets = tuple((t.host, t.target_dataset(report.dataset)) for t in role.entry.replicate_to)
        groups.append(Group(report.host, report.dataset, role.entry.policy, targets,
                            policy.protects_unreplicated))
    return tuple(groups)


def _without(state: ObservedState, down: set[str]) -> ObservedState:
    """The facts as a plan during an outage sees them: the hosts that are down are unavailable
    (the view shares the other hosts' records with ``state``, so applying a plan to the view
    changes ``state`` and leaves the hosts that are down as they were)."""
    if not down:
        return state
    return ObservedState({h: f for h, f in state.hosts.items() if h not in down},
                         {**state.unavailable, **{h: HostUnavailable(h, HostProblem.UNREACHABLE,
                                                                     "simulated outage") for h in down}})


def _count(state: ObservedState, side: Side) -> int:
    ds = state.dataset(*side)
    return len(ds.snapshots) if ds is not None else 0


def _side_state(state: ObservedState, side: Side) -> SideState:
    ds = state.dataset(*side)
    if ds is None or not ds.snapshots:
        return SideState(0)
    oldest = min(ds.snapshots, key=lambda s: (s.creation, s.createtxg))
    newest = max(ds.snapshots, key=lambda s: (s.creation, s.createtxg))
    return SideState(len(ds.snapshots), oldest.name, oldest.creation, newest.name, newest.creation)


def _row(groups: Sequence[Group], state: ObservedState, tallies: dict[Side, GroupDay],
         down: tuple[str, ...]) -> dict[Side, GroupDay]:
    row = {}
    for group in groups:
        tally = tallies.get(group.side) or GroupDay(SideState(0), {})
        row[group.side] = GroupDay(_side_state(state, group.side),
                                   {t: _side_state(state, t) for t in group.targets},
                                   tally.taken, tally.sent, tally.destroyed, tally.destroyed_unreplicated,
                                   _waiting(state, group), down)
    return row


def _waiting(state: ObservedState, group: Group) -> int:
    """Snapshots of the source that some target does not have (yet)."""
    source = state.dataset(*group.side)
    if source is None or not group.targets:
        return 0
    have = [{s.guid for s in ds.snapshots} if (ds := state.dataset(*t)) is not None else set()
            for t in group.targets]
    return sum(1 for s in source.snapshots if not all(s.guid in guids for guids in have))


def _tally(result: Forecast, tallies: dict[Side, GroupDay], plan: Plan, owners: dict[Side, Side]) -> None:
    """Count a step's actions per group (``owners``: each side's group), and the snapshots the
    plan itself reports as destroyed before they reached every target (pruning wins)."""
    for action in plan.actions:
        if isinstance(action, SnapshotAction | SendAction | DestroyAction):
            owner = owners.get((action.host, action.dataset))
            if owner is None:
                continue
            tally = tallies.setdefault(owner, GroupDay(SideState(0), {}))
            if isinstance(action, SnapshotAction):
                tally.taken += 1
            elif isinstance(action, SendAction):
                tally.sent += len(action.snapshots)
            else:
                tally.destroyed += sum(1 for name in action.snapshots if not name.startswith("#"))
    for report in plan.filesystems:
        side = (report.host, report.dataset)
        if report.role == "source" and side in owners:
            lost = {name for warning in report.warnings if warning.startswith(UNREPLICATED)
                    for name in warning.removeprefix(UNREPLICATED).rsplit(" (", 1)[0].split(", ")}
            if lost:
                tallies.setdefault(side, GroupDay(SideState(0), {})).destroyed_unreplicated += len(lost)
