"""Fold one apply cycle into the record: per filesystem and target, the last attempt, the
last success, the result and error, bytes sent and time taken; pure.

Each action is counted for the (source filesystem, target) pair it works for: a send for
its pair, anything on a replica (its pruning, a discarded partial receive) for the pair
that replica belongs to, anything on a source (its snapshot, pruning, cursor bookmarks)
for the source side. The pairs a cycle covers are those its plan reports on; a pair
whose host could not be reached is marked unavailable, keeping its last success.

The record never grows without bound: it keeps only pairs the configuration still has,
and drops a pair whose source the cycle looked at and no longer found.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from reconciler.codes import ConflictCode, CycleResult, PairResult
from reconciler.config.models import Config
from reconciler.domain.actions import Action, DestroyAction, SendAction
from reconciler.domain.plan import Conflict, Plan
from reconciler.domain.record import (
    CycleSummary,
    PairKey,
    PairRecord,
    StateRecord,
    Totals,
    clip_error,
    sorted_pairs,
)
from reconciler.execute.apply import DONE, FAILED, SKIPPED, ApplyReport, Outcome
from reconciler.planning.selection import Restriction


@dataclass(frozen=True, slots=True)
class Cycle:
    """One apply or run cycle as it ended: its plan and report, or the error that kept it
    from planning or applying."""

    now: datetime  # the cycle's clock (the plan's now)
    seconds: float
    plan: Plan | None = None
    report: ApplyReport | None = None  # None: nothing to apply (no changes), or an error
    error: str = ""

    @property
    def result(self) -> CycleResult:
        if self.error or self.plan is None:
            return CycleResult.ERROR
        if self.report is not None and not self.report.ok:
            return CycleResult.FAILED
        if self.report is not None and self.report.stopped:
            return CycleResult.STOPPED
        return CycleResult.OK

    @property
    def unavailable_hosts(self) -> tuple[str, ...]:
        return tuple(host for host, _ in self.plan.unavailable) if self.plan is not None else ()

    def needs_attention(self) -> bool:
        """What ``on_failure`` is run for: failed actions, unreachable hosts, a cycle that could not run."""
        return self.result in (CycleResult.FAILED, CycleResult.ERROR) or bool(self.unavailable_hosts)


@dataclass(slots=True)
class _PairOutcomes:
    outcomes: list[Outcome] = field(default_factory=list)
    conflict: Conflict | None = None


def action_pair(config: Config, action: Action) -> PairKey | None:
    """The (source, target) pair an action works for; None for a placeholder parent no
    entry manages."""
    if isinstance(action, SendAction):
        return PairKey(action.host, action.dataset, action.target_host, action.target_dataset)
    return dataset_pair(config, action.host, action.dataset)


def dataset_pair(config: Config, host: str, dataset: str) -> PairKey | None:
    role = config.role_of(host, dataset)
    if role is None:
        return None
    if role.target is None:
        return PairKey(host, dataset)
    return PairKey(role.entry.host, role.source, host, dataset)


def covered_pairs(config: Config, plan: Plan) -> set[PairKey]:
    """Every pair the plan reports on: its source filesystems and their targets."""
    keys = {dataset_pair(config, f.host, f.dataset) for f in plan.filesystems}
    return {k for k in keys if k is not None}


def pair_result(found: _PairOutcomes, stopped: bool) -> tuple[PairResult, str]:
    """(result, error) of one pair in one cycle; a failure wins over a conflict over an
    unreachable host over skipped actions."""
    failed = [o for o in found.outcomes if o.status == FAILED]
    # A destroy name that the re-check dropped as no longer safe or gone is not a failure.
    skipped = [o for o in found.outcomes if o.status == SKIPPED
               and not (o.names and isinstance(o.action, DestroyAction))]
    if failed:
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return PairResult.FAILED, clip_error(f"{first.describe()}: {first.message}{more}")
    if found.conflict is not None:
        code = found.conflict.code
        result = PairResult.UNAVAILABLE if code == ConflictCode.HOST_UNAVAILABLE else PairResult.CONFLICT
        return result, clip_error(f"{code}: {found.conflict.message}")
    if skipped:
        result = PairResult.STOPPED if stopped else PairResult.SKIPPED
        return result, clip_error(f"{skipped[0].describe()}: {skipped[0].message}")
    return PairResult.OK, ""


def conflict_pair(conflict: Conflict) -> PairKey:
    source = (conflict.source_host, conflict.source_dataset)
    if not conflict.source_host or source == (conflict.host, conflict.dataset):
        return PairKey(conflict.host, conflict.dataset)
    return PairKey(*source, conflict.host, conflict.dataset)


def action_status(outcomes: Iterable[Outcome]) -> dict[int, tuple[Action, str]]:
    """One status per action (a destroy has an outcome per batch): failed when any part
    failed, done when any part was done, else skipped."""
    result: dict[int, tuple[Action, str]] = {}
    rank = {FAILED: 2, DONE: 1, SKIPPED: 0}
    for outcome in outcomes:
        known = result.get(id(outcome.action))
        if known is None or rank[outcome.status] > rank[known[1]]:
            result[id(outcome.action)] = (outcome.action, outcome.status)
    return result


def updated_record(previous: StateRecord, config: Config, cycle: Cycle) -> StateRecord:
    """``previous`` with ``cycle`` folded in (see the module docstring)."""
    statuses = action_status(cycle.report.outcomes) if cycle.report is not None else {}
    counts = Counter(status for _, status in statuses.values())
    summary = CycleSummary(cycle.now, cycle.result, cycle.seconds, counts[DONE], counts[FAILED],
                           counts[SKIPPED], cycle.unavailable_hosts, clip_error(cycle.error))
    pairs = previous.pairs
    if cycle.plan is not None:
        pairs = _updated_pairs(previous.by_key(), config, cycle.plan, cycle)
    totals = _updated_totals(previous.totals, cycle, statuses)
    return StateRecord(previous.config_path, summary, pairs, totals)


def _updated_pairs(records: Mapping[PairKey, PairRecord], config: Config, plan: Plan,
                   cycle: Cycle) -> tuple[PairRecord, ...]:
    covered = covered_pairs(config, plan)
    found: dict[PairKey, _PairOutcomes] = {key: _PairOutcomes() for key in covered}
    for outcome in cycle.report.outcomes if cycle.report is not None else ():
        key = action_pair(config, outcome.action)
        if key in found:
            found[key].outcomes.append(outcome)
    for conflict in plan.conflicts:
        key = conflict_pair(conflict)
        if key in found and found[key].conflict is None:
            found[key].conflict = conflict
    stopped = cycle.report is not None and cycle.report.stopped
    updated = [_attempt(records.get(key), key, cycle.now, *pair_result(found[key], stopped),
                        found[key].outcomes) for key in covered]
    restriction = Restriction.of(plan.selection.hosts or None, plan.selection.filesystems or None)
    down = dict(plan.unavailable)
    for key, record in records.items():
        if key in covered or not still_configured(config, key):
            continue
        if key.host in down and restriction.source(key.host, key.dataset):
            updated.append(replace(record, last_attempt=cycle.now, result=PairResult.UNAVAILABLE,
                                   error=clip_error(f"host {key.host} is unavailable: {down[key.host]}"),
                                   bytes=0, seconds=0.0))
        elif key.host in down or not restriction.source(key.host, key.dataset):
            updated.append(record)  # not looked at in this cycle: kept as it was
        # else: its source was looked at and is gone: dropped
    return sorted_pairs(updated)


def _attempt(previous: PairRecord | None, key: PairKey, now: datetime, result: PairResult, error: str,
             outcomes: list[Outcome]) -> PairRecord:
    success = now if result == PairResult.OK else (previous.last_success if previous else None)
    sent = sum(o.bytes or 0 for o in outcomes if isinstance(o.action, SendAction) and o.status == DONE)
    return PairRecord(key, now, result, success, error, sent, sum(o.seconds for o in outcomes))


def still_configured(config: Config, key: PairKey) -> bool:
    """The configuration still manages the source and, for a pair, still replicates it there."""
    role = config.role_of(key.host, key.dataset)
    if role is None or role.target is not None:
        return False
    return key.is_source_side or any(
        t.host == key.target_host and t.target_dataset(key.dataset) == key.target_dataset
        for t in role.entry.replicate_to)


def _updated_totals(totals: Totals, cycle: Cycle, statuses: Mapping[int, tuple[Action, str]]) -> Totals:
    cycles = Counter(totals.cycles)
    cycles[cycle.result] += 1
    actions = Counter(totals.actions)
    actions.update((action.kind, status) for action, status in statuses.values())
    sent = sum(o.bytes or 0 for o in cycle.report.outcomes
               if isinstance(o.action, SendAction) and o.status == DONE) if cycle.report is not None else 0
    return Totals({str(k): v for k, v in cycles.items()}, dict(actions), totals.bytes_sent + sent)
