"""Safety invariants 1-4 of DESIGN.md as one function, re-checked right before each destroy.

The planner filters its destroys with the same rules; apply calls
``check_destroy_allowed`` again with FRESH facts of the dataset (gathered just before
the destroy) so a snapshot that became held, or a base whose bookmark vanished, is
spared even when the plan was computed earlier::

    check_destroy_allowed(
        manage: str,                    # the policy's manage regex (Policy.manage_regex)
        dataset: Dataset,               # fresh facts of the dataset the DestroyAction names
        names: Iterable[str],           # DestroyAction.snapshots: short names and "#bookmarks"
        *,
        bases: Collection[int] = (),    # GUIDs of incremental bases to protect: on a source,
                                        # every target's newest common snapshot; on a target,
                                        # its own newest common snapshot
        target: bool = False,           # True on a replication target (invariant 4, and a
                                        # source bookmark does not stand in for the base)
        cursor_prefix: str = "zrr-cursor_",  # the only bookmarks the planner may destroy
    ) -> list[Refusal]                  # (name, reason) for each name that is no longer safe

A name that no longer exists is not refused (destroying it is a no-op for safety); the
caller decides whether to skip it. Everything not refused may be destroyed.

``destroy_guard(config, observed, host, dataset) -> DestroyGuard`` derives ``manage``,
``bases`` and ``target`` from the config and fresh facts (of the dataset and its
replication partner); ``guard.check(dataset, names)`` then calls the function above.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from reconciler.config.models import Config
from reconciler.domain.observed import Dataset, ObservedState, Snapshot
from reconciler.planning.naming import CURSOR_PREFIX


class Refusal(NamedTuple):
    name: str
    reason: str


def check_destroy_allowed(manage: str, dataset: Dataset, names: Iterable[str], *,
                          bases: Collection[int] = (), target: bool = False,
                          cursor_prefix: str = CURSOR_PREFIX) -> list[Refusal]:
    """The names among ``names`` that must NOT be destroyed now, each with the invariant it breaks."""
    wanted = list(names)
    manage_re = re.compile(manage)
    snapshots = {s.name: s for s in dataset.snapshots}
    doomed = set(wanted)
    surviving_bookmark_guids = {b.guid for b in dataset.bookmarks if "#" + b.name not in doomed}
    newest = dataset.snapshots[-1].name if dataset.snapshots else None
    refusals: list[Refusal] = []
    for name in wanted:
        reason = _why_not(name, snapshots, manage_re, bases, target, surviving_bookmark_guids,
                          newest, cursor_prefix)
        if reason:
            refusals.append(Refusal(name, reason))
    return refusals


def _why_not(name: str, snapshots: dict[str, Snapshot], manage: re.Pattern[str], bases: Collection[int],
             target: bool, bookmark_guids: set[int], newest: str | None, cursor_prefix: str) -> str:
    if not name or "@" in name or "/" in name:
        return "invariant 1: not a short snapshot or #bookmark name (datasets are never destroyed)"
    if name.startswith("#"):
        if not name[1:].startswith(cursor_prefix):
            return "bookmarks other than replication cursors are never destroyed"
        return ""
    snap = snapshots.get(name)
    if snap is None:
        return ""
    if not manage.search(name):
        return f"invariant 2: unmanaged (name does not match {manage.pattern})"
    if snap.userrefs > 0:
        tags = ", ".join(snap.holds) or f"{snap.userrefs} hold(s)"
        return f"invariant 2: held (tags {tags})"
    if target and name == newest:
        return "invariant 4: the newest snapshot of a target is never destroyed"
    if snap.guid in bases and (target or snap.guid not in bookmark_guids):
        return "invariant 3: incremental base of a target" + ("" if target else " without a bookmark")
    return ""


@dataclass(frozen=True, slots=True)
class DestroyGuard:
    """Everything ``check_destroy_allowed`` needs for one dataset, derived from config + facts."""

    manage: str
    bases: frozenset[int]
    target: bool
    why: str  # which entry/policy manages the dataset, for messages

    def check(self, dataset: Dataset, names: Iterable[str]) -> list[Refusal]:
        return check_destroy_allowed(self.manage, dataset, names, bases=self.bases, target=self.target)


NOTHING = r"(?!)"


def destroy_guard(config: Config, observed: ObservedState, host: str, dataset: str) -> DestroyGuard:
    """The guard for ``host:dataset`` from (fresh) facts: its policy's manage regex and the
    GUIDs of the incremental bases it shares with its replication partners.

    A dataset no ``filesystems`` entry manages gets a guard that refuses every snapshot.
    Partners missing from ``observed`` (unavailable) contribute no base: on a source the
    cursor bookmark then stands for what was replicated; a target still keeps its newest.
    """
    role = config.role_of(host, dataset)
    if role is None:
        return DestroyGuard(NOTHING, frozenset(), False, "not managed by any filesystems entry")
    entry = role.entry
    source = observed.dataset(entry.host, role.source)
    bases: set[int] = set()
    for target in (entry.replicate_to if role.target is None else [role.target]):
        partner = observed.dataset(target.host, target.target_dataset(role.source))
        if source is not None and partner is not None:
            bases |= _common_guid(source, partner)
    why = (f"source of policy {entry.policy}" if role.target is None
           else f"target of {entry.host}:{role.source}, policy {entry.policy}")
    return DestroyGuard(config.policies[entry.policy].manage_regex, frozenset(bases), role.target is not None,
                        why)


def _common_guid(source: Dataset, target: Dataset) -> set[int]:
    """The GUID of the newest target snapshot the source has as snapshot or bookmark."""
    guids = {s.guid for s in source.snapshots} | {b.guid for b in source.bookmarks}
    for snap in reversed(target.snapshots):
        if snap.guid in guids:
            return {snap.guid}
    return set()
