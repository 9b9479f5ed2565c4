"""Real OpenZFS: diverged target (a snapshot, or data written, on the replica), the prune
rule with the target host unreachable (with and without not_replicated), names with
spaces, colons and dots (issue 7, scenarios 9-11).

The names scenario replicates ssh -> ssh within one host entry (target on the same host).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import GuestZfs
from e2e.scenario_helpers import (
    KEEP_ALL,
    advance_clock,
    apply,
    assert_applied,
    assert_no_changes,
    bookmarks,
    closed_port,
    entry,
    guest_now,
    plan,
    policy,
    snapshots,
    write_random,
)

pytestmark = pytest.mark.realzfs

ConfigFile = Callable[..., Path]
HOUR = 3600


def test_diverged_target_is_a_conflict_and_left_alone(pools: tuple[str, ...], zfs_guest: Any,
                                                      guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    guest_zfs("create", "src/div")
    write_random(zfs_guest, "/src/div/a", 128)
    config = config_file(
        policies={"p": policy(keep_source=KEEP_ALL, keep_target=[{"type": "last_n", "count": 1}])},
        filesystems=[entry("src/div")])
    assert_applied(apply(config, guest_now(zfs_guest)))
    (common,) = snapshots(guest_zfs, "dst/backup/src/div")

    # Someone snapshots the replica directly: it now has history the source lacks.
    guest_zfs("snapshot", "dst/backup/src/div@zrepl_taken_on_target")
    before = snapshots(guest_zfs, "dst/backup/src/div")
    now = advance_clock(zfs_guest, HOUR + 60)
    shown = plan(config, now, "--detailed-exitcode")
    assert shown.returncode == 2, shown.output  # the source still gets its snapshot
    assert "diverged" in shown.output, shown.output
    assert "zrepl_taken_on_target" in shown.output
    assert f"zfs rollback -r dst/backup/src/div@{common}" in shown.output, shown.output
    assert "send src/div" not in shown.output

    result = apply(config, now)
    assert result.returncode == 0, result.output
    assert snapshots(guest_zfs, "dst/backup/src/div") == before  # nothing sent, nothing destroyed
    after = plan(config, now, "--detailed-exitcode")
    assert after.returncode == 0, after.output
    assert "No changes, but 1 conflict" in after.output, after.output

    # The suggested manual fix resolves it; the next apply replicates again.
    guest_zfs("rollback", "-r", f"dst/backup/src/div@{common}")
    assert_applied(apply(config, now))
    assert set(snapshots(guest_zfs, "dst/backup/src/div")) == {max(snapshots(guest_zfs, "src/div"))}
    assert_no_changes(config, now)


def test_target_written_to_after_its_newest_snapshot_is_a_conflict(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    """Data written on the replica (mounted by hand): OpenZFS would refuse the incremental,
    so the plan reports it with the rollback that fixes it, and apply sends nothing."""
    guest_zfs("create", "src/mod")
    write_random(zfs_guest, "/src/mod/a", 128)
    config = config_file(policies={"p": policy(keep_source=KEEP_ALL, keep_target=KEEP_ALL)},
                         filesystems=[entry("src/mod")])
    assert_applied(apply(config, guest_now(zfs_guest)))
    replica = "dst/backup/src/mod"
    (newest,) = snapshots(guest_zfs, replica)
    guest_zfs("set", "readonly=off", replica)  # replicas are received readonly=on
    guest_zfs("mount", replica)
    zfs_guest.ssh(["sh", "-c", "echo local change >/dst/backup/src/mod/local"], check=True)
    guest_zfs("unmount", replica)
    before = snapshots(guest_zfs, replica)

    now = advance_clock(zfs_guest, HOUR + 60)
    shown = plan(config, now, "--detailed-exitcode")
    assert shown.returncode == 2, shown.output
    assert f"{replica} was modified since its newest snapshot {newest}" in shown.output, shown.output
    assert f"zfs rollback {replica}@{newest}" in shown.output
    assert "send src/mod" not in shown.output
    result = apply(config, now)
    assert result.returncode == 0 and "failed" not in result.output.replace(" 0 failed", ""), result.output
    assert snapshots(guest_zfs, replica) == before

    guest_zfs("rollback", f"{replica}@{newest}")
    healed = apply(config, now)
    assert_applied(healed)
    assert "incremental send src/mod" in healed.output, healed.output
    assert snapshots(guest_zfs, replica) == snapshots(guest_zfs, "src/mod")
    assert_no_changes(config, now)


def unreachable_target_config(zfs_guest: Any, config_file: ConfigFile, dataset: str, name: str,
                              not_replicated: bool) -> tuple[Path, Path]:
    """(a config whose target host is reachable, the same with the target host on a closed port)."""
    keep_source: list[dict[str, Any]] = [{"type": "last_n", "count": 1}]
    if not_replicated:
        keep_source.insert(0, {"type": "not_replicated"})
    policies = {"p": policy(keep_source=keep_source, keep_target=KEEP_ALL)}
    reachable = config_file(f"{name}-up.yml", policies=policies, filesystems=[entry(dataset)])
    hosts = {"src": zfs_guest.ssh_host_config(),
             "dst": {**zfs_guest.ssh_host_config(), "port": closed_port()}}
    down = config_file(f"{name}-down.yml", policies=policies, filesystems=[entry(dataset)], hosts=hosts)
    return reachable, down


def replicate_then_snapshot_three_more(zfs_guest: Any, guest_zfs: GuestZfs, dataset: str, up: Path) -> str:
    guest_zfs("create", dataset)
    assert_applied(apply(up, guest_now(zfs_guest)))
    (replicated,) = snapshots(guest_zfs, dataset)
    for index in range(1, 4):
        advance_clock(zfs_guest, 60)
        guest_zfs("snapshot", f"{dataset}@zrepl_20270101_00000{index}")
    return replicated


def test_unreachable_target_without_not_replicated_prunes_and_warns(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    up, down = unreachable_target_config(zfs_guest, config_file, "src/prune", "prune", not_replicated=False)
    replicate_then_snapshot_three_more(zfs_guest, guest_zfs, "src/prune", up)
    now = guest_now(zfs_guest)
    shown = plan(down, now)
    assert "prune wins over replication" in shown.output, shown.output
    assert "unreachable" in shown.output
    unreplicated = "destroyed unreplicated: zrepl_20270101_000001, zrepl_20270101_000002"
    assert unreplicated in shown.output, shown.output

    result = apply(down, now)
    assert result.returncode == 0, result.output
    assert set(snapshots(guest_zfs, "src/prune")) == {"zrepl_20270101_000003"}
    # The cursor bookmark keeps the next incremental possible once the target is back.
    assert bookmarks(guest_zfs, "src/prune")
    assert_applied(apply(up, now))
    assert "zrepl_20270101_000003" in snapshots(guest_zfs, "dst/backup/src/prune")
    assert_no_changes(up, now)


def test_unreachable_target_with_not_replicated_keeps_what_is_not_replicated(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    up, down = unreachable_target_config(zfs_guest, config_file, "src/guard", "guard", not_replicated=True)
    replicated = replicate_then_snapshot_three_more(zfs_guest, guest_zfs, "src/guard", up)
    now = guest_now(zfs_guest)
    shown = plan(down, now)
    assert "replication protected (not_replicated)" in shown.output, shown.output
    assert "unreachable" in shown.output
    assert "destroyed unreplicated" not in shown.output

    result = apply(down, now)
    assert result.returncode == 0, result.output
    kept = set(snapshots(guest_zfs, "src/guard"))
    assert {f"zrepl_20270101_00000{index}" for index in range(1, 4)} <= kept  # newer than the cursor
    assert replicated not in kept or len(kept) == 4
    assert_applied(apply(up, now))
    target = set(snapshots(guest_zfs, "dst/backup/src/guard"))
    assert {f"zrepl_20270101_00000{index}" for index in range(1, 4)} <= target
    assert_no_changes(up, now)


def test_names_with_spaces_colons_and_dots_on_both_ends_within_one_host(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    dataset, root = "src/my data:v1.2", "dst/back up.x:y"
    guest_zfs("create", "-p", f"{dataset}/child dir.1")
    write_random(zfs_guest, "/src/my data:v1.2/file one", 128)
    guest_zfs("snapshot", f"{dataset}@manual: before.upgrade")
    config = config_file(
        policies={"p": policy(prefix="auto:", keep_source=[{"type": "last_n", "count": 1}],
                              keep_target=[{"type": "last_n", "count": 2}])},
        filesystems=[{"host": "src", "filter": {f"{dataset}<": True}, "policy": "p",
                      "replicate_to": [{"host": "src", "root": root}]}],
        two_hosts=False)
    now = guest_now(zfs_guest)
    first = apply(config, now)
    assert_applied(first)
    target = f"{root}/{dataset}"
    for source_fs, target_fs in ((dataset, target), (f"{dataset}/child dir.1", f"{target}/child dir.1")):
        source = snapshots(guest_zfs, source_fs)
        newest = [name for name in source if name.startswith("auto:")]
        assert len(newest) == 1, source
        assert snapshots(guest_zfs, target_fs)[newest[0]] == source[newest[0]]
    assert "manual: before.upgrade" in snapshots(guest_zfs, dataset)  # unmanaged (not ^auto:)
    assert_no_changes(config, now)

    write_random(zfs_guest, "/src/my data:v1.2/file two", 128)
    now = advance_clock(zfs_guest, HOUR + 60)
    second = apply(config, now)
    assert_applied(second)
    assert "incremental send src/my data:v1.2 auto:" in second.output, second.output
    source = snapshots(guest_zfs, dataset)
    assert [name for name in source if name.startswith("auto:")] == \
        [name for name in snapshots(guest_zfs, target) if name.startswith("auto:")][-1:]
    assert any(":" in name and "auto:" in name for name in bookmarks(guest_zfs, dataset))
    assert_no_changes(config, now)
