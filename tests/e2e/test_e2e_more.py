"""More end-to-end scenarios on real OpenZFS: target retention, bookmark as incremental
base, the prune-vs-replication rule with the target unreachable, kill -9 during a send.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import (
    DEFAULT_POLICY,
    GuestZfs,
    build_config,
    iso,
    reconcile,
    set_guest_clock,
    snapshots,
    write_config,
)
from e2e.test_e2e_basic import HOUR, LATER, T0, stamp, write_data
from reconciler.testbed.guest import Guest, free_port

pytestmark = pytest.mark.realzfs


def hourly_snapshots(guest: Guest, dataset: str, times: list[int]) -> None:
    script = [f"date -u -s @{ts} >/dev/null && zfs snapshot '{dataset}@{stamp(ts)}'" for ts in sorted(times)]
    guest.sh(" && ".join(script))


def entry(source: str, target_root: str | None, target_host: str = "dst", **target: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"host": "src", "filter": {f"{source}<": True}, "policy": "p"}
    if target_root is not None:
        item["replicate_to"] = [{"host": target_host, "root": target_root, **target}]
    return item


def test_target_retention_after_initial_all(pools: tuple[str, ...], zfs_guest: Guest, guest_zfs: GuestZfs,
                                            config_file: Callable[..., Path]) -> None:
    now = T0 + 200 * HOUR
    ds, target = "src/tr/a", "dst/tr/src/tr/a"
    guest_zfs("create", "-p", ds)
    guest_zfs("create", "dst/tr")
    times = [now - HOUR - HOUR // 2 - k * HOUR for k in range(6)]  # now-1.5h ... now-6.5h
    hourly_snapshots(zfs_guest, ds, times)
    policy = {"snapshots": {"prefix": "zrepl_", "interval": "1h"}, "keep_source": [],
              "keep_target": [{"type": "grid", "grid": "1x1h(keep=all) | 2x1h", "regex": "^zrepl_"}]}
    config = config_file(policies={"p": policy}, filesystems=[entry("src/tr", "dst/tr", initial="all")])

    set_guest_clock(zfs_guest, now)
    result = reconcile(config, "apply", "-y", "--now", iso(now))
    assert result.returncode == 0, result.stdout + result.stderr
    source = snapshots(zfs_guest, ds)
    assert set(source) == {stamp(now), *(stamp(ts) for ts in times)}  # keep_source: [] keeps all
    # The target got everything, then kept the new one and one per 1h bucket (1.5h, 2.5h).
    expected = {stamp(now), stamp(times[0]), stamp(times[1])}
    assert set(snapshots(zfs_guest, target)) == expected
    assert all(snapshots(zfs_guest, target)[n] == source[n] for n in expected)
    again = reconcile(config, "plan", "--now", iso(now), "--detailed-exitcode")
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout + again.stderr


def test_bookmark_is_the_incremental_base_after_the_source_pruned_it(
        pools: tuple[str, ...], zfs_guest: Guest, guest_zfs: GuestZfs, tmp_path: Path) -> None:
    now = T0 + 300 * HOUR
    ds, target = "src/bm/a", "dst/bm/src/bm/a"
    guest_zfs("create", "-p", ds)
    guest_zfs("create", "dst/bm")
    policy = {**DEFAULT_POLICY, "keep_source": [{"type": "last_n", "count": 1, "regex": "^zrepl_"}]}
    reachable = write_config(tmp_path / "ok.yml", build_config(
        zfs_guest, policies={"p": policy}, filesystems=[entry("src/bm", "dst/bm")]))
    hosts = {"src": zfs_guest.ssh_host_config(),
             "dst": {**zfs_guest.ssh_host_config(), "port": free_port(), "connect_timeout": 3}}
    unreachable = write_config(tmp_path / "down.yml", build_config(
        zfs_guest, hosts=hosts, policies={"p": policy}, filesystems=[entry("src/bm", "dst/bm")]))

    set_guest_clock(zfs_guest, now)
    first = reconcile(reachable, "apply", "-y", "--now", iso(now))
    assert first.returncode == 0, first.stdout + first.stderr
    assert list(snapshots(zfs_guest, target)) == [stamp(now)]

    # The target is down for the next run: the source snapshots and prunes (last_n 1,
    # prune wins), so the only common snapshot is gone there; the cursor bookmark stays.
    write_data(zfs_guest, ds)
    set_guest_clock(zfs_guest, now + LATER)
    reconcile(unreachable, "apply", "-y", "--now", iso(now + LATER))
    assert list(snapshots(zfs_guest, ds)) == [stamp(now + LATER)]
    assert guest_zfs("list", "-H", "-t", "bookmark", "-o", "name", "-r", ds).stdout.strip()

    plan = reconcile(reachable, "plan", "--now", iso(now + LATER), "--format", "json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    sends = [a for a in json.loads(plan.stdout)["actions"]
             if a["kind"] == "send" and a["target"]["dataset"] == target]
    assert len(sends) == 1 and str(sends[0]["base"]).startswith("#"), sends

    second = reconcile(reachable, "apply", "-y", "--now", iso(now + LATER))
    assert second.returncode == 0, second.stdout + second.stderr
    assert list(snapshots(zfs_guest, target)) == [stamp(now), stamp(now + LATER)]
    assert snapshots(zfs_guest, target)[stamp(now + LATER)] == snapshots(zfs_guest, ds)[stamp(now + LATER)]
    again = reconcile(reachable, "plan", "--now", iso(now + LATER), "--detailed-exitcode")
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout + again.stderr


@pytest.mark.parametrize("protect", [False, True], ids=["prune-wins", "not_replicated"])
def test_rule_from_zrepls_history_with_target_unreachable(
        protect: bool, pools: tuple[str, ...], zfs_guest: Guest, guest_zfs: GuestZfs, tmp_path: Path) -> None:
    now = T0 + 400 * HOUR
    root = f"src/ur{int(protect)}"
    ds = f"{root}/a"
    guest_zfs("create", "-p", ds)
    times = [now - HOUR - HOUR // 2 - k * HOUR for k in range(8)]  # now-1.5h ... now-8.5h
    hourly_snapshots(zfs_guest, ds, times)
    keep: list[dict[str, Any]] = [{"type": "grid", "grid": "1x1h(keep=all) | 2x1h", "regex": "^zrepl_"}]
    if protect:
        keep = [{"type": "not_replicated"}, *keep]
    policy = {**DEFAULT_POLICY, "keep_source": keep}
    hosts = {"src": zfs_guest.ssh_host_config(),
             "dst": {**zfs_guest.ssh_host_config(), "port": free_port(), "connect_timeout": 3}}
    config = write_config(tmp_path / "c.yml", build_config(
        zfs_guest, hosts=hosts, policies={"p": policy}, filesystems=[entry(root, "dst/ur")]))

    set_guest_clock(zfs_guest, now)
    plan = reconcile(config, "plan", "--now", iso(now))
    print(plan.stdout, plan.stderr)
    assert "unavailable" in plan.stdout.lower()
    result = reconcile(config, "apply", "-y", "--now", iso(now))
    print(result.stdout, result.stderr)
    left = set(snapshots(zfs_guest, ds))
    if protect:
        # Nothing was ever replicated: not_replicated keeps every snapshot.
        assert {stamp(ts) for ts in times} <= left
    else:
        # Bounded disk use: the grid prunes as if the target did not exist.
        assert left == {stamp(now), stamp(times[0]), stamp(times[1])}


def test_kill_9_during_send_then_converges(pools: tuple[str, ...], zfs_guest: Guest, guest_zfs: GuestZfs,
                                           config_file: Callable[..., Path]) -> None:
    now = T0 + 500 * HOUR
    ds, target = "src/k9/a", "dst/k9/src/k9/a"
    guest_zfs("create", "-p", ds)
    guest_zfs("create", "dst/k9")
    write_data(zfs_guest, ds, kib=24 * 1024)
    config = config_file(filesystems=[entry("src/k9", "dst/k9")])
    set_guest_clock(zfs_guest, now)
    env = {**os.environ, "NO_COLOR": "1"}
    apply = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "apply", "-c", str(config), "-y",
                              "--now", iso(now)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and apply.poll() is None:
            if zfs_guest.ssh(["pgrep", "-f", "zfs recv"]).returncode == 0:
                time.sleep(1.0)  # let some data arrive
                break
            time.sleep(0.2)
        assert apply.poll() is None, "apply finished before it could be killed: make the data bigger"
        apply.send_signal(signal.SIGKILL)
    finally:
        apply.wait(timeout=30)
    time.sleep(2)  # the guest's sshd hangs up on the receive

    result = reconcile(config, "apply", "-y", "--now", iso(now))
    assert result.returncode == 0, result.stdout + result.stderr
    source, replica = snapshots(zfs_guest, ds), snapshots(zfs_guest, target)
    assert replica == source and list(source) == [stamp(now)]
    # Same GUID means the same snapshot; compare the files too (a read-only clone of the
    # replica, so the replica itself is never mounted or touched).
    assert checksums(zfs_guest, f"/{ds}/.zfs/snapshot/{stamp(now)}") == checksums_of_replica(
        zfs_guest, guest_zfs, f"{target}@{stamp(now)}")
    again = reconcile(config, "plan", "--now", iso(now), "--detailed-exitcode")
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout + again.stderr


def checksums(guest: Guest, directory: str) -> str:
    return guest.sh(f"cd '{directory}' && find . -type f | sort | xargs -r sha256sum").stdout


def checksums_of_replica(guest: Guest, guest_zfs: GuestZfs, snapshot: str) -> str:
    clone = "dst/k9-verify"
    guest_zfs("clone", "-o", "readonly=on", "-o", "mountpoint=/mnt/k9-verify", snapshot, clone)
    try:
        return checksums(guest, "/mnt/k9-verify")
    finally:
        guest_zfs("destroy", clone)
