"""The snapshot schedule: which selected datasets get a new snapshot now, and its name.

A dataset whose policy has ``snapshots`` gets one when the newest snapshot matching the
policy's ``manage`` regex is at least ``interval`` old, or when there is none. All
datasets of one policy on one pool of one host share the name and a ``batch`` key, so
apply takes them in ONE atomic ``zfs snapshot``.
"""

from __future__ import annotations

import re
from datetime import datetime

from reconciler.codes import ConflictCode
from reconciler.domain.actions import SnapshotAction
from reconciler.domain.names import ZFS_MAX_NAME, scheduled_snapshot_name
from reconciler.domain.observed import Dataset, Snapshot
from reconciler.domain.plan import Conflict
from reconciler.planning.selection import Selected


def newest_managed(dataset: Dataset, manage: re.Pattern[str]) -> Snapshot | None:
    for snap in reversed(dataset.snapshots):
        if manage.search(snap.name):
            return snap
    return None


def snapshot_due(dataset: Dataset, manage: re.Pattern[str], interval_seconds: float, now_ts: float) -> bool:
    newest = newest_managed(dataset, manage)
    return newest is None or now_ts - newest.creation >= interval_seconds


def batch_key(host: str, pool: str, policy: str, name: str) -> str:
    return f"{host}:{pool}:{policy}:{name}"


def plan_snapshots(selected: list[Selected], now: datetime,
                   conflicts: list[Conflict] | None = None) -> list[SnapshotAction]:
    """One SnapshotAction per dataset that is due, in (host, dataset) order; a name longer
    than ZFS allows is a ``name_too_long`` conflict (added to ``conflicts``) instead."""
    actions: list[SnapshotAction] = []
    now_ts = now.timestamp()
    compiled: dict[str, re.Pattern[str]] = {}
    for item in selected:
        schedule = item.policy.snapshots
        if schedule is None:
            continue
        manage = compiled.setdefault(item.policy_name, re.compile(item.policy.manage_regex))
        interval = schedule.interval_delta.total_seconds()
        if not snapshot_due(item.dataset, manage, interval, now_ts):
            continue
        name = scheduled_snapshot_name(schedule.prefix, now)
        if item.dataset.snapshot_named(name) is not None:
            continue
        full = f"{item.name}@{name}"
        if len(full.encode()) > ZFS_MAX_NAME:
            if conflicts is not None:
                conflicts.append(Conflict(
                    ConflictCode.NAME_TOO_LONG, item.host, item.name,
                    f"the snapshot {full} would be {len(full.encode())} bytes long; ZFS allows"
                    f" {ZFS_MAX_NAME}: no snapshot is taken",
                    f"shorten snapshots.prefix of policy {item.policy_name}"))
            continue
        newest = newest_managed(item.dataset, manage)
        why = (f"no snapshot matches {manage.pattern}" if newest is None
               else f"newest managed snapshot {newest.name} is at least {schedule.interval} old")
        actions.append(SnapshotAction(item.host, item.name, name,
                                      batch_key(item.host, item.dataset.pool, item.policy_name, name),
                                      f"policy {item.policy_name}: {why}"))
    return actions
