"""Real OpenZFS: what the stand-in cannot judge: a volume, an encrypted filesystem sent raw
(its key never leaves the source), and one source replicated to two targets, each with
its own cursor bookmark.
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
    guest_now,
    policy,
    prop,
    snapshots,
    write_random,
)

pytestmark = pytest.mark.realzfs

ConfigFile = Callable[..., Path]
HOUR = 3600


def test_volume_and_raw_encrypted_filesystem_full_then_incremental(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    guest_zfs("create", "-V", "8M", "src/vol")
    zfs_guest.ssh(["zfs", "create", "-o", "encryption=on", "-o", "keyformat=passphrase", "src/enc"],
                  input="correct horse battery\n", check=True)
    write_random(zfs_guest, "/src/enc/secret", 128)
    config = config_file(
        policies={"p": policy(keep_source=[{"type": "last_n", "count": 2}],
                              keep_target=[{"type": "last_n", "count": 3}])},
        filesystems=[
            {"host": "src", "filter": {"src/vol": True}, "policy": "p",
             "replicate_to": [{"host": "dst", "root": "dst/vols"}]},
            {"host": "src", "filter": {"src/enc": True}, "policy": "p",
             "replicate_to": [{"host": "dst", "root": "dst/sealed", "raw": True}]}])
    now = guest_now(zfs_guest)
    assert_applied(apply(config, now))
    assert_no_changes(config, now)

    zfs_guest.ssh(["sh", "-c", "echo more >/src/enc/more"], check=True)
    zfs_guest.ssh(["dd", "if=/dev/urandom", "of=/dev/zvol/src/vol", "bs=64k", "count=4", "conv=notrunc",
                   "status=none"], check=True)
    now = advance_clock(zfs_guest, HOUR + 60)
    second = apply(config, now)
    assert_applied(second)
    assert "incremental send src/enc" in second.output and "incremental send src/vol" in second.output
    assert_no_changes(config, now)

    for source, target in (("src/vol", "dst/vols/src/vol"), ("src/enc", "dst/sealed/src/enc")):
        assert snapshots(guest_zfs, target) == snapshots(guest_zfs, source)
    assert prop(guest_zfs, "dst/vols/src/vol", "type") == "volume"
    assert prop(guest_zfs, "dst/sealed/src/enc", "encryption") == "aes-256-gcm"
    assert prop(guest_zfs, "dst/sealed/src/enc", "keystatus") == "unavailable"  # raw: the key stayed home


def test_one_source_two_targets_each_with_its_own_cursor(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    guest_zfs("create", "src/two")
    write_random(zfs_guest, "/src/two/a", 128)
    # keep_snapshot_at_cursor: false lets the cursor's own snapshot go (zrepl's default
    # keeps it), so far must catch up from its cursor bookmark.
    keep = {"p": policy(keep_source=[{"type": "not_replicated", "keep_snapshot_at_cursor": False},
                                     {"type": "last_n", "count": 1}],
                        keep_target=KEEP_ALL)}
    targets = [{"host": "dst", "root": "dst/one"}, {"host": "far", "root": "dst/two"}]
    entry = {"host": "src", "filter": {"src/two": True}, "policy": "p", "replicate_to": targets}
    up_hosts = {"src": zfs_guest.ssh_host_config(), "dst": zfs_guest.ssh_host_config(),
                "far": zfs_guest.ssh_host_config()}
    down_hosts = {**up_hosts, "far": {**zfs_guest.ssh_host_config(), "port": closed_port()}}
    up = config_file("up.yml", policies=keep, filesystems=[entry], hosts=up_hosts)
    down = config_file("down.yml", policies=keep, filesystems=[entry], hosts=down_hosts)

    assert_applied(apply(up, guest_now(zfs_guest)))
    cursors = bookmarks(guest_zfs, "src/two")
    assert len(cursors) == 2, cursors  # one per target, both on the same snapshot
    assert len(set(cursors.values())) == 1
    (first,) = snapshots(guest_zfs, "src/two")

    # far goes away; three snapshots later only dst has them, so not_replicated keeps
    # everything newer than far's cursor although last_n would keep one. The first
    # snapshot, on both targets, goes: far's cursor bookmark stands in for it.
    for _ in range(3):
        now = advance_clock(zfs_guest, HOUR + 60)
        result = apply(down, now)
        assert result.returncode == 0, result.output
    kept = snapshots(guest_zfs, "src/two")
    assert len(kept) == 3 and first not in kept, kept
    assert set(kept) <= set(snapshots(guest_zfs, "dst/one/src/two"))
    assert any(name.endswith(first) for name in bookmarks(guest_zfs, "src/two"))

    # far is back: it catches up from its cursor bookmark (-i #cursor, then -I), then the
    # source prunes to last_n 1.
    now = guest_now(zfs_guest)
    caught_up = apply(up, now)
    assert_applied(caught_up)
    assert "#zrr-cursor" in caught_up.output and "(2 snapshots)" in caught_up.output, caught_up.output
    assert len(snapshots(guest_zfs, "src/two")) == 1
    assert len(snapshots(guest_zfs, "dst/two/src/two")) == 4
    assert_no_changes(up, now)
