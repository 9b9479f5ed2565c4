"""The effect of a plan on the observed state, as the planner itself assumes it.

``simulate(observed, plan)`` returns a NEW state with every action applied; planning
again from it at the same ``now`` must give an empty plan (the convergence property).
New snapshots get deterministic GUIDs (a hash of host, dataset and name), a createtxg
above every existing one on their host (one txg per atomic batch) and ``creation =
plan.now``; received snapshots keep the source's GUID, order and creation.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import assert_never

from reconciler.domain.actions import (
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
from reconciler.domain.observed import Bookmark, Dataset, HostFacts, ObservedState, Snapshot
from reconciler.domain.plan import Plan
from reconciler.planning.naming import synthetic_guid


def host_max_txg(facts: HostFacts | None) -> int:
    """The highest createtxg seen on a host (snapshot lists are createtxg-ordered)."""
    if facts is None:
        return 0
    best = 0
    for ds in facts.datasets.values():
        best = max(best, ds.createtxg,
                   ds.snapshots[-1].createtxg if ds.snapshots else 0,
                   max((b.createtxg for b in ds.bookmarks), default=0))
    return best


def planned_snapshot(action: SnapshotAction, txg: int, now: datetime, written: int | None = None) -> Snapshot:
    """The record a snapshot this plan takes will have (shared by planner and simulate).
    ``written``: the filesystem's bytes written since its newest snapshot, for the plan's
    send estimate only (apply sizes every transfer with ``zfs send -nP``)."""
    return Snapshot(action.snapshot, synthetic_guid(action.host, action.dataset, action.snapshot),
                    txg, int(now.timestamp()), 0, written)


def copy_state(observed: ObservedState) -> ObservedState:
    """A copy whose datasets and lists may be changed without touching ``observed``."""
    hosts = {
        name: HostFacts(name, {key: replace(ds, snapshots=list(ds.snapshots), bookmarks=list(ds.bookmarks))
                               for key, ds in facts.datasets.items()}, facts.scope)
        for name, facts in observed.hosts.items()
    }
    return ObservedState(hosts, dict(observed.unavailable))


class _Simulation:
    def __init__(self, state: ObservedState, now: datetime) -> None:
        self.state = state
        self.now = now
        self.txg: dict[str, int] = {}
        self.batch_txg: dict[str, int] = {}

    def next_txg(self, host: str) -> int:
        if host not in self.txg:
            self.txg[host] = host_max_txg(self.state.hosts.get(host))
        self.txg[host] += 1
        return self.txg[host]

    def dataset(self, host: str, name: str) -> Dataset:
        ds = self.state.dataset(host, name)
        if ds is None:
            raise ValueError(f"simulate: {host}:{name} does not exist")
        return ds

    def apply(self, action: Action) -> None:
        match action:
            case PreHookAction() | PostHookAction():
                pass  # a hook runs a command of the user's; what it does is not ZFS state we plan
            case SnapshotAction():
                self.snapshot(action)
            case CreateAction():
                self.create(action.host, action.dataset, "filesystem")
            case AbortResumeAction():
                self.abort(action)
            case HoldAction() | HoldReceivedAction():
                self.hold(action)
            case SendAction():
                self.send(action)
            case BookmarkAction():
                self.bookmark(action)
            case ReleaseAction():
                self.release(action)
            case DestroyAction():
                self.destroy(action)
            case _:
                assert_never(action)

    def snapshot(self, action: SnapshotAction) -> None:
        if action.batch not in self.batch_txg:
            self.batch_txg[action.batch] = self.next_txg(action.host)
        ds = self.dataset(action.host, action.dataset)
        ds.snapshots.append(planned_snapshot(action, self.batch_txg[action.batch], self.now))

    def create(self, host: str, name: str, kind: str) -> Dataset:
        facts = self.state.hosts.setdefault(host, HostFacts(host))
        ds = Dataset(name, kind, synthetic_guid(host, name, "dataset"), self.next_txg(host))
        facts.datasets[name] = ds
        return ds

    def abort(self, action: AbortResumeAction) -> None:
        ds = self.dataset(action.host, action.dataset)
        if not ds.snapshots:  # an interrupted initial receive: recv -A removes the dataset
            del self.state.hosts[action.host].datasets[action.dataset]
        else:
            ds.resume_token = None

    def send(self, action: SendAction) -> None:
        source = self.dataset(action.host, action.dataset)
        target = self.state.dataset(action.target_host, action.target_dataset)
        if target is None:
            target = self.create(action.target_host, action.target_dataset, source.kind)
        by_name = {s.name: s for s in source.snapshots}
        have = {s.guid for s in target.snapshots}
        for name in action.snapshots:
            snap = by_name[name]
            if snap.guid in have:
                continue
            target.snapshots.append(Snapshot(snap.name, snap.guid, self.next_txg(action.target_host),
                                             snap.creation, 0, snap.written, snap.referenced))
            have.add(snap.guid)
        target.resume_token = None

    def bookmark(self, action: BookmarkAction) -> None:
        ds = self.dataset(action.host, action.dataset)
        snap = next(s for s in ds.snapshots if s.name == action.snapshot)
        ds.bookmarks.append(Bookmark(action.bookmark, snap.guid, snap.createtxg, snap.creation))
        ds.bookmarks.sort(key=lambda b: (b.createtxg, b.name))

    def hold(self, action: HoldAction | HoldReceivedAction) -> None:
        self.set_hold(action, held=True)

    def release(self, action: ReleaseAction) -> None:
        self.set_hold(action, held=False)

    def set_hold(self, action: HoldAction | HoldReceivedAction | ReleaseAction, *, held: bool) -> None:
        """A new record for the snapshot rather than a changed one: ``copy_state`` copies the
        lists, not the snapshots in them, which are still the observed state's. (zfs refuses
        a tag the snapshot already holds, and releasing one it does not: the planner plans
        neither.)"""
        ds = self.dataset(action.host, action.dataset)
        index = next(i for i, s in enumerate(ds.snapshots) if s.name == action.snapshot)
        snap = ds.snapshots[index]
        others = tuple(tag for tag in snap.holds if tag != action.tag)
        holds, userrefs = ((*others, action.tag), snap.userrefs + 1) if held else (others, snap.userrefs - 1)
        ds.snapshots[index] = Snapshot(snap.name, snap.guid, snap.createtxg, snap.creation, max(userrefs, 0),
                                       snap.written, snap.referenced, holds)

    def destroy(self, action: DestroyAction) -> None:
        ds = self.dataset(action.host, action.dataset)
        names = set(action.snapshots)
        ds.snapshots = [s for s in ds.snapshots if s.name not in names]
        ds.bookmarks = [b for b in ds.bookmarks if "#" + b.name not in names]


def simulate(observed: ObservedState, plan: Plan) -> ObservedState:
    """A new state with the plan's actions applied in order; ``observed`` is not changed."""
    return simulate_in_place(copy_state(observed), plan)


def simulate_in_place(state: ObservedState, plan: Plan) -> ObservedState:
    """``state`` itself with the plan's actions applied (for a caller that owns it: the forecast,
    which applies thousands of plans in a row, saves a copy of everything per plan)."""
    sim = _Simulation(state, plan.now)
    for action in plan.actions:
        sim.apply(action)
    return sim.state
