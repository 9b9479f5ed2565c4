"""``make_plan``: the pure function from (desired state, observed facts, now) to a Plan.

Steps, each in its own module: selection (which datasets), schedule (which snapshots
to take), replication (conflicts, sends, resume, cursor per source/target pair),
retention (zrepl's keep rules, ``retention.py``) followed by the safety filters of
DESIGN.md (``manage``, holds, invariants 3 and 4), then the actions in execution order.

The rule from zrepl's history decides how replication state constrains source pruning:
without ``not_replicated`` in keep_source pruning proceeds whatever the targets' state
(snapshots destroyed before reaching a target are listed as warnings); with it, only
snapshots on every target, or older than what each target already has, may go.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import assert_never

from reconciler.codes import PruneRule
from reconciler.config.models import Config, KeepRule, Policy
from reconciler.domain.actions import (
    KIND_RANK,
    AbortResumeAction,
    Action,
    BookmarkAction,
    CreateAction,
    DestroyAction,
    HoldAction,
    HoldReceivedAction,
    PostHookAction,
    PreHookAction,
    ReleaseAction,
    SendAction,
    SnapshotAction,
)
from reconciler.domain.names import ancestors
from reconciler.domain.observed import ObservedState, Snapshot, unavailable_reason
from reconciler.domain.plan import (
    Conflict,
    FilesystemReport,
    Plan,
    PlanSelection,
    SnapshotVerdict,
    config_digest,
)
from reconciler.planning.fingerprint import fingerprint_selection
from reconciler.planning.metadata import metadata_routes
from reconciler.planning.protection import HoldPlan, plan_holds
from reconciler.planning.replication import OK, UNREACHABLE, PairPlan, SourceView, defer_initial, plan_pair
from reconciler.planning.retention import evaluate_keep_rules
from reconciler.planning.schedule import plan_snapshots
from reconciler.planning.selection import Restriction, Selected, select
from reconciler.planning.simulate import host_max_txg, planned_snapshot

IsReplicated = Callable[[Snapshot], bool]


def make_plan(config: Config, observed: ObservedState, now: datetime, *,
              hosts: Collection[str] | None = None, filesystems: Collection[str] | None = None,
              explain: bool = False, as_host: str | None = None, fingerprint: bool = True) -> Plan:
    """The plan that brings the observed world to the desired state (see module docstring);
    ``as_host``: only that host's own part (``--as``, selection.py says what it owns).
    Without ``fingerprint`` (a simulation, never applied) the plan's fingerprint is empty."""
    selection = select(config, observed, hosts=hosts, filesystems=filesystems, as_host=as_host)
    conflicts: list[Conflict] = list(selection.conflicts)
    snapshot_actions, hook_actions = plan_snapshots([s for s in selection.selected if s.source_side], now,
                                                    conflicts)
    planned = _planned_snapshots(snapshot_actions, observed, now)
    warnings: list[str] = list(selection.warnings)
    source_reports: list[FilesystemReport] = []
    target_reports: list[FilesystemReport] = []
    all_pairs: list[PairPlan] = []
    destroys: list[DestroyAction] = []
    bookmarks: list[BookmarkAction] = []
    holds = HoldPlan()
    planned_pairs = []
    for item in selection.selected:
        view = SourceView.build(item.host, item.dataset, planned.get((item.host, item.name), []))
        pairs = [plan_pair(view, item, target, observed) for target in item.targets]
        all_pairs += pairs
        planned_pairs.append((item, view, pairs))
    defer_below_arrivals(all_pairs, observed)
    for item, view, pairs in planned_pairs:
        conflicts += [p.conflict for p in pairs if p.conflict is not None]
        bookmarks += [p.cursor_create for p in pairs if p.cursor_create is not None]
        warnings += [w for p in pairs for w in p.plan_warnings]
        item_holds = plan_holds(item, view.snapshots, pairs)
        holds.add(item_holds)
        if item.source_side:
            report, destroy = prune_source(item, view, pairs, explain, item_holds)
            source_reports.append(report)
            # Also in the plan's top-level warnings: data loss must be visible at a glance.
            warnings += [f"{item.host}:{item.name}: {w}" for w in report.warnings]
        else:
            destroy = cursor_destroys(item, pairs)
        if destroy is not None:
            destroys.append(destroy)
        for pair in pairs:
            report, destroy = prune_target(pair, explain, item_holds)
            target_reports.append(report)
            if destroy is not None:
                destroys.append(destroy)
    actions = order_actions([*hook_actions, *snapshot_actions, *placeholders(all_pairs, observed),
                             *(p.abort for p in all_pairs if p.abort is not None), *holds.holds,
                             *(s for p in all_pairs for s in p.sends), *holds.received, *bookmarks,
                             *holds.releases, *_one_per_dataset(destroys)])
    config_json = config.model_dump_json()
    return Plan(
        now=now,
        fingerprint=fingerprint_selection(config_json, observed, selection.selected,
                                          selection.unavailable_hosts) if fingerprint else "",
        actions=tuple(actions),
        conflicts=tuple(conflicts),
        filesystems=tuple(source_reports + target_reports),
        unavailable=_unavailable(observed, selection.unavailable_hosts, all_pairs),
        warnings=tuple(warnings),
        selection=PlanSelection.of(hosts, filesystems, as_host),
        config_digest=config_digest(config_json),
        metadata=metadata_routes(config, observed, actions),
    )


def hosts_needed(config: Config, hosts: Collection[str] | None = None,
                 filesystems: Collection[str] | None = None, as_host: str | None = None) -> set[str]:
    """The hosts whose facts a plan for this selection needs: the sources of every entry
    it can touch and the targets of their selected pairs (``--host <target>`` needs the
    source too: what to send is read there)."""
    return Restriction.of(hosts, filesystems, as_host).hosts_needed(config)


# ------------------------------------------------------------------ snapshots


def _planned_snapshots(actions: list[SnapshotAction], observed: ObservedState,
                       now: datetime) -> dict[tuple[str, str], list[Snapshot]]:
    """The snapshots this plan takes, as they will look (same records simulate() produces)."""
    planned: dict[tuple[str, str], list[Snapshot]] = {}
    txg = {host: host_max_txg(observed.hosts.get(host)) + 1 for host in {a.host for a in actions}}
    for action in actions:
        dataset = observed.dataset(action.host, action.dataset)
        snap = planned_snapshot(action, txg[action.host], now, dataset.written if dataset else None)
        planned.setdefault((action.host, action.dataset), []).append(snap)
    return planned


# ------------------------------------------------------------------ source pruning


@dataclass(slots=True)
class Pruning:
    """Retention verdicts after the safety filters, for one dataset."""

    destroy: list[tuple[Snapshot, str]] = field(default_factory=list)
    verdicts: list[SnapshotVerdict] = field(default_factory=list)
    protected: list[SnapshotVerdict] = field(default_factory=list)  # vetoed by a safety rule


def prune_source(item: Selected, view: SourceView, pairs: list[PairPlan], explain: bool,
                 holds: HoldPlan | None = None) -> tuple[FilesystemReport, DestroyAction | None]:
    policy = item.policy
    protected = policy.protects_unreplicated

    def on_every_target(snap: Snapshot) -> bool:
        return all(pair.replicated(snap) for pair in pairs)

    is_replicated: IsReplicated = pairs[0].replicated if len(pairs) == 1 else on_every_target

    bookmark_guids = _bookmark_guids_after(view, pairs)
    bases = {p.base_guid: p for p in pairs if p.base_guid is not None}

    def base_guard(snap: Snapshot) -> str:
        pair = bases.get(snap.guid)
        if pair is None or snap.guid in bookmark_guids:
            return ""
        return f"incremental base of {pair.target.host}:{pair.target_dataset} (no bookmark of it)"

    holds = holds or HoldPlan()
    pruning = apply_keep_rules(policy, policy.keep_source, view.snapshots, is_replicated, base_guard,
                               explain, holds.released_on(item.host, item.name))
    warnings = _unreplicated_warnings(pruning.destroy, pairs) if not protected else []
    names, reasons = _destroy_lists(pruning.destroy)
    _add_old_cursors(pairs, names, reasons)
    if explain:
        pruning.verdicts = with_hold_notes(pruning.verdicts, holds.notes_on(item.host, item.name))
        pruning.verdicts += _bookmark_verdicts(view, pairs)
    report = FilesystemReport(
        item.host, item.name, "source", item.policy_name,
        PruneRule.REPLICATION_PROTECTED if protected else PruneRule.PRUNE_WINS,
        _prune_rule_why(protected, pairs),
        tuple(pruning.verdicts), tuple(warnings), tuple(pruning.protected))
    destroy = (DestroyAction(item.host, item.name, tuple(names), tuple(reasons),
                             f"policy {item.policy_name}: keep_source") if names else None)
    return report, destroy


def cursor_destroys(item: Selected, pairs: list[PairPlan]) -> DestroyAction | None:
    """For a source selected only through some of its pairs: the pairs' old cursors."""
    names: list[str] = []
    reasons: list[tuple[str, str]] = []
    _add_old_cursors(pairs, names, reasons)
    if not names:
        return None
    return DestroyAction(item.host, item.name, tuple(names), tuple(reasons),
                         f"replication to {', '.join(p.target.host for p in pairs)}: cursor moved")


def _add_old_cursors(pairs: list[PairPlan], names: list[str], reasons: list[tuple[str, str]]) -> None:
    for pair in pairs:
        for name in pair.cursor_destroy:
            names.append("#" + name)
            reasons.append(("#" + name,
                            f"old replication cursor for {pair.target.host}:{pair.target_dataset}"))


def _bookmark_guids_after(view: SourceView, pairs: list[PairPlan]) -> set[int]:
    gone = {name for pair in pairs for name in pair.cursor_destroy}
    guids = {b.guid for b in view.dataset.bookmarks if b.name not in gone}
    for pair in pairs:
        if pair.cursor_create is not None:
            snap = next(s for s in reversed(view.snapshots) if s.name == pair.cursor_create.snapshot)
            guids.add(snap.guid)
    return guids


def _prune_rule_why(protected: bool, pairs: list[PairPlan]) -> str:
    states = "; ".join(p.describe_state() for p in pairs) or "no replication targets"
    if protected:
        return (f"keep_source has not_replicated, so snapshots newer than what every target has are"
                f" kept ({states}).")
    return (f"keep_source has no not_replicated rule, so source pruning proceeds whatever the state"
            f" of replication ({states}).")


def _unreplicated_warnings(destroyed: list[tuple[Snapshot, str]], pairs: list[PairPlan]) -> list[str]:
    warnings = []
    for pair in pairs:
        missing = [snap.name for snap, _ in destroyed if not pair.replicated(snap)]
        if not missing:
            continue
        where = f"{pair.target.host}:{pair.target_dataset}"
        if pair.state == UNREACHABLE:
            why = f"target {where} unreachable"
        elif pair.conflict is not None:
            why = f"target {where} in conflict: {pair.conflict.code}"
        else:
            why = f"not on target {where}"
        warnings.append(f"destroyed unreplicated: {', '.join(missing)} ({why})")
    return warnings


def _bookmark_verdicts(view: SourceView, pairs: list[PairPlan]) -> list[SnapshotVerdict]:
    owners = {c.name: p for p in pairs for c in p.cursors}
    gone = {name for p in pairs for name in p.cursor_destroy}
    verdicts = []
    for bm in view.dataset.bookmarks:
        pair = owners.get(bm.name)
        if bm.name in gone and pair is not None:
            verdicts.append(SnapshotVerdict("#" + bm.name, False, "old replication cursor for"
                                            f" {pair.target.host}:{pair.target_dataset}"))
        elif pair is not None:
            verdicts.append(SnapshotVerdict("#" + bm.name, True, "replication cursor for"
                                            f" {pair.target.host}:{pair.target_dataset}"))
        else:
            verdicts.append(SnapshotVerdict("#" + bm.name, True,
                                            "bookmark: keep rules never destroy bookmarks"))
    for pair in pairs:
        if pair.cursor_create is not None:
            verdicts.append(SnapshotVerdict("#" + pair.cursor_create.bookmark, True,
                                            f"new replication cursor for {pair.target.host}:"
                                            f"{pair.target_dataset} at {pair.cursor_create.snapshot}"))
    return verdicts


# ------------------------------------------------------------------ target pruning


def prune_target(pair: PairPlan, explain: bool,
                 holds: HoldPlan | None = None) -> tuple[FilesystemReport, DestroyAction | None]:
    policy = pair.source.policy
    holds = holds or HoldPlan()
    warnings = list(pair.warnings)
    verdicts: list[SnapshotVerdict] = []
    protected: list[SnapshotVerdict] = []
    destroy = None
    if pair.state == OK and pair.target_after:
        newest = pair.target_after[-1].guid

        def guard(snap: Snapshot) -> str:
            if snap.guid == newest:
                return "newest snapshot of the target (invariant 4)"
            if snap.guid == pair.base_guid:
                return "incremental base of the next send (invariant 3)"
            return ""

        pruning = apply_keep_rules(policy, policy.keep_target, pair.target_after, _always, guard, explain,
                                   holds.released_on(pair.target.host, pair.target_dataset))
        verdicts, protected = pruning.verdicts, pruning.protected
        names, reasons = _destroy_lists(pruning.destroy)
        if names:
            destroy = DestroyAction(pair.target.host, pair.target_dataset, tuple(names), tuple(reasons),
                                    f"policy {pair.source.policy_name}: keep_target")
    elif pair.conflict is not None:
        warnings.append(f"{pair.conflict.code}: nothing is sent to or destroyed on this target")
        if explain and pair.observed_target is not None:
            why = f"target in conflict ({pair.conflict.code}): nothing is destroyed here"
            verdicts = [SnapshotVerdict(s.name, True, why) for s in pair.observed_target.snapshots]
    if explain:
        verdicts = with_hold_notes(verdicts, holds.notes_on(pair.target.host, pair.target_dataset))
    if explain and pair.observed_target is not None:
        verdicts += [SnapshotVerdict("#" + b.name, True, "bookmark: keep rules never destroy bookmarks")
                     for b in pair.observed_target.bookmarks]
    report = FilesystemReport(pair.target.host, pair.target_dataset, "target", pair.source.policy_name,
                              "", "", tuple(verdicts), tuple(warnings), tuple(protected))
    return report, destroy


def _always(snap: Snapshot) -> bool:
    return True


# ------------------------------------------------------------------ keep rules + safety filters


def apply_keep_rules(policy: Policy, rules: Sequence[KeepRule], snapshots: list[Snapshot],
                     is_replicated: IsReplicated, guard: Callable[[Snapshot], str],
                     explain: bool, released: Mapping[str, set[str]] | None = None) -> Pruning:
    """zrepl's verdicts, then ``manage``, holds and ``guard`` (invariants) veto destroys.
    ``released``: hold tags of ours this plan releases (before its destroys), by snapshot."""
    result = Pruning()
    if not snapshots:
        return result
    keep_rules = list(rules)
    if not keep_rules and not explain:
        return result  # zrepl keeps everything when there are no rules
    manage = _compiled(policy.manage_regex)
    for verdict in evaluate_keep_rules(keep_rules, snapshots, is_replicated, kept_reasons=explain):
        snap = verdict.snapshot
        keep, reason = verdict.keep, verdict.reason
        if not keep:
            veto = _safety_veto(snap, manage, guard, released.get(snap.name, ()) if released else ())
            if veto:
                result.protected.append(SnapshotVerdict(snap.name, True, veto))
                keep, reason = True, f"{veto} (keep rules would destroy it: {reason})"
            else:
                result.destroy.append((snap, reason))
        if explain:
            result.verdicts.append(SnapshotVerdict(snap.name, keep, reason))
    return result


def _safety_veto(snap: Snapshot, manage: re.Pattern[str], guard: Callable[[Snapshot], str],
                 released: Collection[str] = ()) -> str:
    if not manage.search(snap.name):
        return f"unmanaged (does not match {manage.pattern})"
    # Tags of ours this plan releases (before its destroys) do not count; any other does.
    gone = sum(1 for tag in snap.holds if tag in released) if released else 0
    if snap.userrefs > gone:
        tags = [tag for tag in snap.holds if tag not in released]
        return f"held (tags {', '.join(tags) or f'{snap.userrefs} hold(s)'})"
    return guard(snap)


def with_hold_notes(verdicts: list[SnapshotVerdict], notes: Mapping[str, list[str]]) -> list[SnapshotVerdict]:
    """``--explain``: what the plan does with holds of ours, after each snapshot's verdict."""
    if not notes:
        return verdicts
    return [SnapshotVerdict(v.name, v.keep, "; ".join([v.reason, *notes[v.name]]))
            if v.name in notes else v for v in verdicts]


_REGEX_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    compiled = _REGEX_CACHE.get(pattern)
    if compiled is None:
        compiled = _REGEX_CACHE[pattern] = re.compile(pattern)
    return compiled


def _destroy_lists(destroy: list[tuple[Snapshot, str]]) -> tuple[list[str], list[tuple[str, str]]]:
    ordered = sorted(destroy, key=lambda item: item[0].createtxg)
    return [s.name for s, _ in ordered], [(s.name, why) for s, why in ordered]


# ------------------------------------------------------------------ placeholders and order


def placeholders(pairs: list[PairPlan], observed: ObservedState) -> list[CreateAction]:
    """Unmounted parents for targets a full send creates, unless another send creates them.

    Below an encrypted dataset whose key is not loaded (a raw replica, listed or arriving
    in this plan) a placeholder is created unencrypted: zfs refuses one that inherits the
    encryption, and raw receives below an unencrypted placeholder work (OpenZFS 2.1)."""
    created_by_sends = {(p.target.host, p.target_dataset) for p in pairs if p.creates_target and p.sends}
    locked_arrivals = {(p.target.host, p.target_dataset) for p in pairs
                       if p.creates_target and p.sends and p.target.sends_raw and p.source.dataset.encrypted}

    def locked(host: str, name: str) -> bool:
        dataset = observed.dataset(host, name)
        return (host, name) in locked_arrivals or (dataset is not None and dataset.encrypted
                                                   and not dataset.key_loaded)

    needed: dict[tuple[str, str], CreateAction] = {}
    for pair in pairs:
        if not (pair.creates_target and pair.sends):
            continue
        for ancestor in ancestors(pair.target_dataset)[1:]:  # the pool exists (or is a conflict)
            key = (pair.target.host, ancestor)
            if key in created_by_sends or key in needed or observed.exists(*key):
                continue
            parent = ancestor.rsplit("/", 1)[0]
            off = locked(pair.target.host, parent)
            needed[key] = CreateAction(
                pair.target.host, ancestor,
                f"missing parent of {pair.target_dataset} (placeholder)" + (
                    f"; unencrypted: {parent} is encrypted and its key is not loaded" if off else ""),
                encryption_off=off)
    return [needed[key] for key in sorted(needed)]


def defer_below_arrivals(pairs: list[PairPlan], observed: ObservedState) -> None:
    """Parents first: a new replica whose missing parent needs a placeholder that would lie
    below another replica arriving in this same plan waits for the next run (placeholders
    are created before any send, so that parent does not exist yet when they are); so do
    the new replicas below one that waits."""
    creating = sorted((p for p in pairs if p.creates_target and p.sends),
                      key=lambda p: (p.target.host, p.target_dataset))
    arriving = {(p.target.host, p.target_dataset) for p in creating}
    waiting: set[tuple[str, str]] = set()
    for pair in creating:
        received: str | None = None  # the nearest ancestor a receive of this plan creates
        for ancestor in ancestors(pair.target_dataset)[1:]:
            key = (pair.target.host, ancestor)
            if key in waiting:
                why = f"its parent {ancestor} is not sent yet either"
            elif received is not None and key not in arriving and not observed.exists(*key):
                why = f"the placeholder {ancestor} it needs lies below {received}, which this plan receives"
            else:
                received = ancestor if key in arriving else received
                continue
            defer_initial(pair, f"{why}; it follows in the next run (parents first)")
            arriving.discard((pair.target.host, pair.target_dataset))
            waiting.add((pair.target.host, pair.target_dataset))
            break


def order_actions(actions: Iterable[Action]) -> list[Action]:
    """The plan's order, the one apply runs: the vocabulary's EXECUTION_ORDER of kinds, and
    within a kind ``_place_within_kind`` (a stable sort: equal places keep the given order);
    in the snapshot phase each snapshot's hooks right around it (``_around_snapshots``)."""
    return _around_snapshots(sorted(actions, key=_place))


def _around_snapshots(ordered: list[Action]) -> list[Action]:
    """Each snapshot with its pre hooks right before it (in hook order) and its post hooks
    right after it (in reverse hook order), as ``out_of_order`` wants them. A hook whose
    snapshot is not in the list stays where the sort put it."""
    pre: dict[tuple[str, str, str], list[PreHookAction]] = {}
    post: dict[tuple[str, str, str], list[PostHookAction]] = {}
    for action in ordered:
        if isinstance(action, PreHookAction):
            pre.setdefault(action.snapshot_key(), []).append(action)
        elif isinstance(action, PostHookAction):
            post.setdefault(action.snapshot_key(), []).append(action)
    if not pre and not post:
        return ordered
    snapshots = {(a.host, a.dataset, a.snapshot) for a in ordered if isinstance(a, SnapshotAction)}
    woven: list[Action] = []
    for action in ordered:
        if isinstance(action, PreHookAction | PostHookAction):
            if action.snapshot_key() not in snapshots:
                woven.append(action)
            continue
        if isinstance(action, SnapshotAction):
            key = (action.host, action.dataset, action.snapshot)
            before: list[PreHookAction] = sorted(pre.get(key, []), key=_hook_index)
            after: list[PostHookAction] = sorted(post.get(key, []), key=_hook_index, reverse=True)
            woven += [*before, action, *after]
            continue
        woven.append(action)
    return woven


def _hook_index(action: PreHookAction | PostHookAction) -> int:
    return action.hook


def _place(action: Action) -> tuple[int, tuple[str, ...]]:
    return KIND_RANK[action.kind], _place_within_kind(action)


def _place_within_kind(action: Action) -> tuple[str, ...]:
    """Where an action goes among those of its kind: by host and dataset (a reviewer finds
    a filesystem's actions together), except where the order matters more."""
    match action:
        case PreHookAction() | PostHookAction():
            # Moved next to their snapshot by ``_around_snapshots``.
            return (action.host, action.dataset, action.snapshot)
        case DestroyAction():
            return (action.host, action.dataset)
        case SendAction():
            # By target: parents are received before their children. Sends to one target
            # (a bookmark-based send, then an incremental from it) keep the planned order.
            return (action.target_host, action.target_dataset)
        case SnapshotAction():
            # By batch: a batch's members are contiguous, apply takes them in one command.
            return (action.host, action.batch, action.dataset)
        case BookmarkAction():
            return (action.host, action.dataset, action.bookmark)
        case CreateAction():
            return ()  # ``placeholders`` gives them parents first
        case AbortResumeAction():
            return (action.host, action.dataset)
        case HoldAction() | HoldReceivedAction() | ReleaseAction():
            # By tag: apply runs one tag's holds (or releases) of a host as one zfs command.
            return (action.host, action.tag, action.dataset, action.snapshot)
        case _:
            assert_never(action)


def _one_per_dataset(destroys: list[DestroyAction]) -> list[DestroyAction]:
    """Merge destroys of the same dataset (a dataset both source and target of two pairs)."""
    merged: dict[tuple[str, str], DestroyAction] = {}
    for action in destroys:
        key = (action.host, action.dataset)
        first = merged.get(key)
        if first is None:
            merged[key] = action
            continue
        extra = [n for n in action.snapshots if n not in first.snapshots]
        merged[key] = DestroyAction(first.host, first.dataset, first.snapshots + tuple(extra),
                                    first.reasons + tuple(r for r in action.reasons if r[0] in extra),
                                    first.reason)
    return list(merged.values())


def _unavailable(observed: ObservedState, sources: Iterable[str],
                 pairs: list[PairPlan]) -> tuple[tuple[str, str], ...]:
    hosts = set(sources) | {p.target.host for p in pairs if p.state == UNREACHABLE}
    return tuple((host, unavailable_reason(observed.unavailable.get(host))) for host in sorted(hosts))
