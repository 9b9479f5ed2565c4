"""The snapshot schedule: which selected datasets get a new snapshot now, its name, and
the hooks that run around it.

A dataset whose policy has ``snapshots`` gets one when the newest snapshot matching the
policy's ``manage`` regex is at least ``interval`` old, or when there is none. All
datasets of one policy on one pool of one host share the name and a ``batch`` key, so
apply takes them in ONE atomic ``zfs snapshot``.

Except a dataset whose policy has ``snapshots.hooks``: it gets a batch of its own (its
pool's key and its name), between its own pre and post hooks. Its application
is then frozen for its own pre hooks and one snapshot only, not while the pre hooks of
every other filesystem of the pool run (up to their timeouts); a failing or hanging hook
touches its own filesystem only (zrepl: "hook failures for one filesystem never affect
other filesystems"), and err_is_fatal never splits a batch. zrepl runs hooks around each
filesystem's own snapshot too, and asks for an application's data on one filesystem for
a consistent point-in-time copy (its postgres and mysql hooks say so).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from reconciler.codes import ConflictCode
from reconciler.config.models import SnapshotHook
from reconciler.domain.actions import HookAction, PostHookAction, PreHookAction, SnapshotAction
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


def own_batch_key(host: str, pool: str, policy: str, name: str, dataset: str) -> str:
    """The batch of a dataset with hooks: itself alone (see the module docstring); its
    pool's key and its name, so the planner orders them by dataset within their pool."""
    return f"{batch_key(host, pool, policy, name)}:{dataset}"


def hook_actions(snapshot: SnapshotAction, hooks: Sequence[SnapshotHook], policy: str
                 ) -> tuple[list[PreHookAction], list[PostHookAction]]:
    """The pre hooks (configuration order) and post hooks (reverse order, like a stack, as
    zrepl runs them) around ``snapshot``."""
    where = (snapshot.host, snapshot.dataset, snapshot.snapshot)
    pre = [PreHookAction(*where, index, tuple(hook.pre), hook.timeout_seconds,
                         f"policy {policy}: snapshots.hooks[{index}].pre", err_is_fatal=hook.err_is_fatal)
           for index, hook in enumerate(hooks) if hook.pre is not None]
    post = [PostHookAction(*where, index, tuple(hook.post), hook.timeout_seconds,
                           f"policy {policy}: snapshots.hooks[{index}].post")
            for index, hook in reversed(list(enumerate(hooks))) if hook.post is not None]
    return pre, post


def plan_snapshots(selected: list[Selected], now: datetime, conflicts: list[Conflict] | None = None,
                   ) -> tuple[list[SnapshotAction], list[HookAction]]:
    """One SnapshotAction per dataset that is due, in (host, dataset) order, and the hooks
    around them; a name longer than ZFS allows is a ``name_too_long`` conflict (added to
    ``conflicts``) instead."""
    actions: list[SnapshotAction] = []
    hooks: list[HookAction] = []
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
        batch = (own_batch_key(item.host, item.dataset.pool, item.policy_name, name, item.name)
                 if schedule.hooks else batch_key(item.host, item.dataset.pool, item.policy_name, name))
        action = SnapshotAction(item.host, item.name, name, batch, f"policy {item.policy_name}: {why}")
        actions.append(action)
        if schedule.hooks:
            pre, post = hook_actions(action, schedule.hooks, item.policy_name)
            hooks += [*pre, *post]
    return actions, hooks
