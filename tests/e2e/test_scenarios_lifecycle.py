"""Real OpenZFS: the snapshot schedule with grid retention as the guest's clock moves, the
replicated data itself, apply twice, holds on source and target (issue 7, scenarios 1-5).

tests/e2e/test_e2e_*.py (the harness engineer's) cover the other sides of these
scenarios (target retention, unmanaged snapshots, hand-placed grids); these add what
they do not: the schedule over time, file contents, a second apply, a hold on the target.

Two host entries (``src`` and ``dst``) both reach the one guest over real SSH with
strict known_hosts, so every send goes ssh -> controller -> ssh. Each test uses its own
datasets in the module's fresh pools; time moves by setting the guest's clock forward.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.conftest import GuestZfs
from e2e.scenario_helpers import (
    KEEP_ALL,
    advance_clock,
    apply,
    assert_applied,
    assert_no_changes,
    entry,
    epoch_of,
    guest_epoch,
    guest_now,
    iso,
    plan,
    policy,
    prop,
    snapshot_stamp,
    snapshots,
    write_random,
)

pytestmark = pytest.mark.realzfs

ConfigFile = Callable[..., Path]
HOUR = 3600


def test_schedule_and_grid_retention_on_the_source(pools: tuple[str, ...], zfs_guest: object,
                                                   guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    guest_zfs("create", "src/sched")
    config = config_file(
        policies={"p": policy(keep_source=[{"type": "grid", "grid": "1x1h(keep=all) | 3x1h",
                                            "regex": "^zrepl_"}])},
        filesystems=[entry("src/sched", target_host=None)])

    start = guest_epoch(zfs_guest)
    first = plan(config, iso(start), "--detailed-exitcode")
    assert first.returncode == 2, first.output
    assert f"create snapshot src/sched@zrepl_{snapshot_stamp(start)}" in first.output
    assert_applied(apply(config, iso(start)))
    assert_no_changes(config, guest_now(zfs_guest))

    # Half an interval later nothing is due.
    assert_no_changes(config, advance_clock(zfs_guest, HOUR // 2))

    created = [snapshot_stamp(start)]
    for _ in range(5):
        now = advance_clock(zfs_guest, HOUR + 60)
        result = apply(config, now)
        assert_applied(result)
        created.append(snapshot_stamp(epoch_of(now)))
        assert "create snapshot src/sched@zrepl_" in result.output
        assert_no_changes(config, guest_now(zfs_guest))

    # Six snapshots ~1h apart (the first one 1h30 before the second): the grid keeps the
    # newest (bucket 0) and one per hour for the 3 hours before it; older ones were pruned
    # on the way, each with its grid reason.
    remaining = sorted(snapshots(guest_zfs, "src/sched"))
    assert remaining == [f"zrepl_{stamp}" for stamp in created[-4:]]
    assert_no_changes(config, advance_clock(zfs_guest, 600))


def test_grid_destroy_reasons_are_printed(pools: tuple[str, ...], zfs_guest: object, guest_zfs: GuestZfs,
                                          config_file: ConfigFile) -> None:
    guest_zfs("create", "src/gridr")
    for stamp in ("20200101_000000", "20200101_000100"):
        guest_zfs("snapshot", f"src/gridr@zrepl_{stamp}")
    config = config_file(
        policies={"p": policy(keep_source=[{"type": "grid", "grid": "1x1h(keep=all) | 2x1d",
                                            "regex": "^zrepl_"}])},
        filesystems=[entry("src/gridr", target_host=None)])
    # Both old snapshots were created now (real creation time), so both are in bucket 0:
    # a new snapshot 2 days later makes them older than the last bucket.
    now = advance_clock(zfs_guest, 3 * 24 * HOUR)
    shown = plan(config, now)
    assert "older than the last bucket" in shown.output, shown.output
    assert_applied(apply(config, now))
    assert list(snapshots(guest_zfs, "src/gridr")) == [f"zrepl_{snapshot_stamp(epoch_of(now))}"]
    assert_no_changes(config, guest_now(zfs_guest))


def mounted_sha256(zfs_guest: object, guest_zfs: GuestZfs, dataset: str, file: str) -> str:
    """sha256 of FILE in DATASET, mounting it for the read when it is not mounted (recv -u)."""
    was_mounted = prop(guest_zfs, dataset, "mounted") == "yes"
    if not was_mounted:
        guest_zfs("mount", dataset)
    try:
        mountpoint = prop(guest_zfs, dataset, "mountpoint")
        out = zfs_guest.ssh(["sha256sum", f"{mountpoint}/{file}"], check=True).stdout  # type: ignore[attr-defined]
        return str(out.split()[0])
    finally:
        if not was_mounted:
            guest_zfs("unmount", dataset)


def test_replicated_data_matches_and_a_second_apply_changes_nothing(
        pools: tuple[str, ...], zfs_guest: object, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    guest_zfs("create", "src/rep")
    write_random(zfs_guest, "/src/rep/one", 512)
    config = config_file(policies={"p": policy(keep_source=KEEP_ALL, keep_target=KEEP_ALL)},
                         filesystems=[entry("src/rep")])

    now = guest_now(zfs_guest)
    first = apply(config, now)
    assert_applied(first)
    assert "full send src/rep@zrepl_" in first.output
    assert snapshots(guest_zfs, "dst/backup/src/rep") == snapshots(guest_zfs, "src/rep")
    assert prop(guest_zfs, "dst/backup", "canmount") == "off"

    # Apply twice: the second plan and apply find nothing to do.
    assert_no_changes(config, now)
    again = apply(config, now)
    assert again.returncode == 0, again.output
    assert "No changes" in again.output

    # Real data between snapshots, one intermediate snapshot taken by hand.
    write_random(zfs_guest, "/src/rep/two", 256)
    advance_clock(zfs_guest, 600)
    guest_zfs("snapshot", "src/rep@zrepl_intermediate")
    write_random(zfs_guest, "/src/rep/three", 256)
    now = advance_clock(zfs_guest, HOUR)
    shown = plan(config, now, "--format", "json")
    assert '"kind": "send"' in shown.output
    second = apply(config, now)
    assert_applied(second)
    assert "incremental send src/rep" in second.output
    assert "(2 snapshots)" in second.output, second.output

    source, target = snapshots(guest_zfs, "src/rep"), snapshots(guest_zfs, "dst/backup/src/rep")
    assert target == source and len(source) == 3
    for file in ("one", "two", "three"):
        assert mounted_sha256(zfs_guest, guest_zfs, "dst/backup/src/rep", file) == \
            mounted_sha256(zfs_guest, guest_zfs, "src/rep", file)
    assert_no_changes(config, now)


def test_held_snapshots_are_never_destroyed(pools: tuple[str, ...], zfs_guest: object, guest_zfs: GuestZfs,
                                            config_file: ConfigFile) -> None:
    guest_zfs("create", "src/held")
    for stamp in ("20260101_000000", "20260102_000000"):
        guest_zfs("snapshot", f"src/held@zrepl_{stamp}")
    keep_everything = config_file(
        "all.yml", policies={"p": policy(keep_source=KEEP_ALL, keep_target=KEEP_ALL)},
        filesystems=[entry("src/held", initial="all")])
    assert_applied(apply(keep_everything, guest_now(zfs_guest)))
    guest_zfs("hold", "keep", "src/held@zrepl_20260101_000000")
    guest_zfs("hold", "keep", "dst/backup/src/held@zrepl_20260102_000000")

    prune_hard = config_file(
        "prune.yml", policies={"p": policy(keep_source=[{"type": "last_n", "count": 1}],
                                           keep_target=[{"type": "last_n", "count": 1}])},
        filesystems=[entry("src/held")])
    now = advance_clock(zfs_guest, HOUR + 60)
    result = apply(prune_hard, now)
    assert_applied(result)
    assert "zrepl_20260101_000000" in snapshots(guest_zfs, "src/held")
    assert "zrepl_20260102_000000" in snapshots(guest_zfs, "dst/backup/src/held")
    assert prop(guest_zfs, "src/held@zrepl_20260101_000000", "userrefs") == "1"
    # What the holds do not protect was pruned on both ends.
    assert "zrepl_20260102_000000" not in snapshots(guest_zfs, "src/held")
    assert "zrepl_20260101_000000" not in snapshots(guest_zfs, "dst/backup/src/held")
    assert_no_changes(prune_hard, now)
    explained = plan(prune_hard, now, "--explain", "src/held")
    assert "held" in explained.output, explained.output
