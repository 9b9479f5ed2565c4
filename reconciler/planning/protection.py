"""zrepl's protection levels (``replication.protection``) as planned holds.

zrepl's semantics (endpoint/endpoint_guarantees.go: "step holds", the "last-received-hold";
its replication cursor is our cursor bookmark, which this tool keeps at every level because
``not_replicated`` reads it):

- ``guarantee_resumability``: every snapshot a send step needs on the source (its base
  when that is a snapshot, and every snapshot it makes arrive) is held with the pair's
  step tag (``zrr-step_<target host>_<8 hex>``) from before the send until after it, so no
  pruner (ours in a later run, another tool, an admin) destroys what an interrupted step
  needs to resume by its token. A step that is done releases them; a failed or killed one
  keeps them, and a later plan releases them once no step needs them (done, discarded or
  replaced). While the target is unreachable nobody can tell, and they stay. It includes
  what ``guarantee_incremental`` does.
- ``guarantee_incremental``: the last received snapshot of the replica is held with the
  pair's last-received tag (``zrr-last-received_<source host>_<8 hex>``), so the next
  incremental base cannot be destroyed on the target (zfs refuses: "dataset is busy").
  When a newer snapshot arrives the hold moves: the new one is held after the send
  (``hold_received``), the old one released after that, never without a hold in between.
- ``guarantee_nothing``: no holds.

``protection.initial`` governs full sends, ``protection.incremental`` incremental ones and
the last-received hold (it protects the base of the next step, which is incremental).
Holds are ours when their tag starts with ``zrr-step_`` or ``zrr-last-received_``; a hold
with any other tag is never released. Ours that no step needs any more, or whose target
was renamed or dropped from the configuration, are released by the next plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconciler.config.models import ProtectionLevel, Target
from reconciler.domain.actions import HoldAction, HoldReceivedAction, ReleaseAction, SendAction
from reconciler.domain.observed import Snapshot
from reconciler.planning.naming import (
    LAST_RECEIVED_PREFIX,
    STEP_HOLD_PREFIX,
    last_received_tag,
    step_hold_tag,
)
from reconciler.planning.replication import OK, UNREACHABLE, PairPlan
from reconciler.planning.selection import Selected

Key = tuple[str, str]  # (host, dataset)
KEEPS_LAST_RECEIVED: frozenset[ProtectionLevel] = frozenset({"guarantee_resumability",
                                                             "guarantee_incremental"})


@dataclass(slots=True)
class HoldPlan:
    """The hold actions of a plan, and what they mean for pruning and ``--explain``."""

    holds: list[HoldAction] = field(default_factory=list)
    received: list[HoldReceivedAction] = field(default_factory=list)
    releases: list[ReleaseAction] = field(default_factory=list)
    # Tags of ours that the plan releases, by dataset and snapshot: pruning may destroy a
    # snapshot held only by these (the releases run before the destroys).
    released: dict[Key, dict[str, set[str]]] = field(default_factory=dict)
    # Per dataset and snapshot, what the plan does with holds of ours there (``--explain``).
    notes: dict[Key, dict[str, list[str]]] = field(default_factory=dict)

    def add(self, other: HoldPlan) -> None:
        self.holds += other.holds
        self.received += other.received
        self.releases += other.releases
        for key, names in other.released.items():
            for name, tags in names.items():
                self.released.setdefault(key, {}).setdefault(name, set()).update(tags)
        for key, notes in other.notes.items():
            for name, lines in notes.items():
                self.notes.setdefault(key, {}).setdefault(name, []).extend(lines)

    def released_on(self, host: str, dataset: str) -> Mapping[str, set[str]]:
        return self.released.get((host, dataset), {})

    def notes_on(self, host: str, dataset: str) -> Mapping[str, list[str]]:
        return self.notes.get((host, dataset), {})

    def note(self, host: str, dataset: str, snapshot: str, text: str) -> None:
        self.notes.setdefault((host, dataset), {}).setdefault(snapshot, []).append(text)

    def release(self, action: ReleaseAction) -> None:
        self.releases.append(action)
        self.released.setdefault((action.host, action.dataset), {}).setdefault(action.snapshot, set()).add(
            action.tag)


def step_level(target: Target, send: SendAction) -> ProtectionLevel:
    """``initial`` for a full send (or the resume of one), ``incremental`` otherwise."""
    return target.protection.initial if send.base is None else target.protection.incremental


def step_snapshots(send: SendAction) -> list[str]:
    """What a send step needs on the source: its base when that is a snapshot (a bookmark
    cannot be held), and every snapshot it makes arrive."""
    base = [send.base] if send.base is not None and not send.base.startswith("#") else []
    return [*base, *send.snapshots]


def held_by(snapshots: Iterable[Snapshot], prefix: str) -> dict[str, list[str]]:
    """Tags starting with ``prefix`` -> the snapshots (short names, in order) holding them."""
    found: dict[str, list[str]] = {}
    for snap in snapshots:
        for tag in snap.holds:
            if tag.startswith(prefix):
                found.setdefault(tag, []).append(snap.name)
    return found


def plan_holds(item: Selected, snapshots: list[Snapshot], pairs: list[PairPlan]) -> HoldPlan:
    """The holds for one source dataset (``snapshots``: as they will be after this plan's
    snapshots) and its selected replication pairs."""
    plan = HoldPlan()
    step_holds = held_by(item.dataset.snapshots, STEP_HOLD_PREFIX)
    for pair in pairs:
        plan.add(_step_holds(item, pair, step_holds.pop(pair_step_tag(pair.target), [])))
        plan.add(_last_received_hold(item, pair))
    if item.source_side:
        configured = {pair_step_tag(t) for t in item.entry.replicate_to}
        for tag, names in sorted(step_holds.items()):
            if tag not in configured:  # a target renamed or removed from the configuration
                for name in names:
                    plan.release(ReleaseAction(item.host, item.name, name, tag,
                                               "step hold of a target no longer configured"))
                    plan.note(item.host, item.name, name, f"hold {tag} released: its target is no longer"
                              " configured")
    return plan


def pair_step_tag(target: Target) -> str:
    return step_hold_tag(target.host, target.root, target.strip)


def pair_last_received_tag(item: Selected, target: Target) -> str:
    return last_received_tag(item.host, target.host, target.root, target.strip)


def _step_holds(item: Selected, pair: PairPlan, held: list[str]) -> HoldPlan:
    """guarantee_resumability on the source: hold each step's snapshots before its send,
    release them after it. An unreachable target's held steps stay held."""
    plan = HoldPlan()
    if pair.state == UNREACHABLE:
        for name in held:
            plan.note(item.host, item.name, name, f"hold {pair_step_tag(pair.target)} kept: the target"
                      f" {pair.target.host} is unreachable, its send step may still resume")
        return plan
    tag = pair_step_tag(pair.target)
    where = f"{pair.target.host}:{pair.target_dataset}"
    needed: list[str] = []
    for send in pair.sends:
        if step_level(pair.target, send) == "guarantee_resumability":
            needed += [name for name in step_snapshots(send) if name not in needed]
    for name in needed:
        if name not in held:
            plan.holds.append(HoldAction(item.host, item.name, name, tag,
                                         f"guarantee_resumability: held until the send to {where} is done"))
        plan.note(item.host, item.name, name, f"hold {tag} while the send to {where} runs"
                  " (guarantee_resumability)")
    for name in [*held, *(n for n in needed if n not in held)]:
        why = (f"the send to {where} is done" if name in needed else
               f"no send step to {where} needs it any more")
        plan.release(ReleaseAction(item.host, item.name, name, tag, f"guarantee_resumability: {why}"))
        if name not in needed:
            plan.note(item.host, item.name, name, f"hold {tag} released: {why}")
    return plan


def _last_received_hold(item: Selected, pair: PairPlan) -> HoldPlan:
    """guarantee_incremental on the target: the newest snapshot after the plan is held; the
    hold moves when a newer one arrives. A target in conflict or unreachable is left alone."""
    plan = HoldPlan()
    target = pair.observed_target
    if pair.state != OK:
        return plan
    host, dataset = pair.target.host, pair.target_dataset
    tag = pair_last_received_tag(item, pair.target)
    wanted = pair.target.protection.incremental in KEEPS_LAST_RECEIVED and bool(pair.target_after)
    newest = pair.target_after[-1] if wanted else None
    observed = {s.guid: s for s in target.snapshots} if target is not None else {}
    level = pair.target.protection.incremental
    if newest is not None:
        why = f"{level}: the last received snapshot, base of the next incremental send"
        if newest.guid not in observed:
            plan.received.append(HoldReceivedAction(host, dataset, newest.name, tag, why))
        elif tag not in observed[newest.guid].holds:
            plan.holds.append(HoldAction(host, dataset, newest.name, tag, why))
        plan.note(host, dataset, newest.name, f"hold {tag}: the last received snapshot ({level})")
    for other_tag, names in sorted(held_by(target.snapshots if target else [], LAST_RECEIVED_PREFIX).items()):
        for name in names:
            if newest is not None and other_tag == tag and name == newest.name:
                continue
            why = ("a newer snapshot arrived and is held instead" if newest is not None and other_tag == tag
                   else f"protection.incremental is {level}" if other_tag == tag
                   else "the tag of a replication no longer configured")
            plan.release(ReleaseAction(host, dataset, name, other_tag, f"last-received hold: {why}"))
            plan.note(host, dataset, name, f"hold {other_tag} released: {why}")
    return plan
