"""Real OpenZFS, channel programs: cursor bookmarks and snapshot destroys as one channel program
(``zfs program``) per pool. The same scenario through programs and one command per action
ends in the same snapshots and bookmarks (``zpool history`` proves which path ran); a
clone's origin is refused by ZFS inside the program (EEXIST) and fails only its
filesystem; zfs run as a non-root user (delegated with ``zfs allow``) refuses the program
and the apply falls back to one command per action.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import GuestZfs, guest_hosts
from e2e.scenario_helpers import (
    KEEP_ALL,
    advance_clock,
    apply,
    assert_applied,
    assert_no_changes,
    bookmarks,
    guest_now,
    install_wrapper,
    plan,
    policy,
    snapshots,
)

pytestmark = pytest.mark.realzfs

ConfigFile = Callable[..., Path]
PRUNE = {"p": policy(keep_source=[{"type": "last_n", "count": 2, "regex": "^zrepl_"}], keep_target=KEEP_ALL)}
CHILDREN = ("a", "b", "c")
# zfs as the unprivileged user zrchan: named doas, so `auto` tries a program (zfs_command
# starting with doas counts as root), which zfs then refuses as it does for any non-root user.
AS_ZRCHAN = """#!/bin/sh
# test wrapper for zrepl-reconcile e2e: zfs as the delegated, non-root user zrchan
exec runuser -u zrchan -- "$@"
"""


def prepare(zfs_guest: Any, guest_zfs: GuestZfs, root: str) -> None:
    for child in CHILDREN:
        guest_zfs("create", "-p", f"{root}/{child}")
        for n in range(1, 5):
            guest_zfs("snapshot", f"{root}/{child}@zrepl_old{n}")


def program_calls(zfs_guest: Any, pool: str = "src") -> int:
    out = zfs_guest.ssh(["zpool", "history", pool], check=True).stdout
    return sum(1 for line in out.splitlines() if " zfs program " in line)


def tree(guest_zfs: GuestZfs, root: str) -> dict[str, tuple[list[str], list[str]]]:
    """Snapshot and bookmark names per child; a cursor's target hash (each tree replicates
    to its own root) as ``*``."""
    return {child: (sorted(snapshots(guest_zfs, f"{root}/{child}")),
                    sorted(re.sub(r"_[0-9a-f]{8}_", "_*_", name)
                           for name in bookmarks(guest_zfs, f"{root}/{child}"))) for child in CHILDREN}


def config_for(config_file: ConfigFile, zfs_guest: Any, name: str, root: str, **src: Any) -> Path:
    hosts = guest_hosts(zfs_guest)
    hosts["src"].update(src)
    return config_file(name, policies=PRUNE, hosts=hosts, filesystems=[
        {"host": "src", "filter": {f"{root}<": True, root: False}, "policy": "p",
         "replicate_to": [{"host": "dst", "root": f"dst/{name.split('.')[0]}"}]}])


def test_programs_and_one_command_per_action_end_in_the_same_state(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    prepare(zfs_guest, guest_zfs, "src/chan")
    prepare(zfs_guest, guest_zfs, "src/plain")
    chan = config_for(config_file, zfs_guest, "chan.yml", "src/chan")
    plain = config_for(config_file, zfs_guest, "plain.yml", "src/plain", channel_programs="off")
    now = guest_now(zfs_guest)
    shown = plan(chan, now).output
    assert ("metadata on src: one channel program per pool (zfs program, 1 pool) for 3 bookmarks,"
            " 6 snapshot destroys; per-command if refused (SSH user root)") in shown, shown
    assert "metadata on src: per-command for 3 bookmarks, 6 snapshot destroys (channel_programs: off)" \
        in plan(plain, now).output
    before = program_calls(zfs_guest)
    assert_applied(apply(chan, now))
    assert program_calls(zfs_guest) == before + 2  # the three cursors; then the six destroys
    assert_applied(apply(plain, now))
    assert program_calls(zfs_guest) == before + 2
    assert_no_changes(chan, now)
    assert_no_changes(plain, now)
    assert tree(guest_zfs, "src/chan") == tree(guest_zfs, "src/plain")
    # An hour later: new snapshots, the cursors move (new bookmark in a program, the old
    # one destroyed one command each: 2.1 cannot destroy a bookmark in a program), prune.
    later = advance_clock(zfs_guest, 3600)
    assert_applied(apply(chan, later))
    assert program_calls(zfs_guest) == before + 4
    assert_applied(apply(plain, later))
    assert_no_changes(chan, later)
    assert_no_changes(plain, later)
    assert tree(guest_zfs, "src/chan") == tree(guest_zfs, "src/plain")
    assert all(len(marks) == 1 for _snaps, marks in tree(guest_zfs, "src/chan").values())


def test_a_clone_origin_is_refused_inside_the_program_and_fails_only_its_filesystem(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    prepare(zfs_guest, guest_zfs, "src/busy")
    guest_zfs("clone", "src/busy/b@zrepl_old1", "src/busyclone")
    config = config_for(config_file, zfs_guest, "busy.yml", "src/busy")
    now = guest_now(zfs_guest)
    result = apply(config, now)
    assert result.returncode == 1, result.output
    failed = [line for line in result.output.splitlines() if line.startswith("failed")]
    assert len(failed) == 1, result.output
    assert "src/busy/b@zrepl_old1: the snapshot has dependent clones (zfs program: errno 17)" in failed[0]
    assert "zrepl_old1" in snapshots(guest_zfs, "src/busy/b")
    assert "zrepl_old2" not in snapshots(guest_zfs, "src/busy/b")  # its other name went in the same program
    assert "zrepl_old1" not in snapshots(guest_zfs, "src/busy/a")
    guest_zfs("destroy", "src/busyclone")
    assert_applied(apply(config, now))
    assert_no_changes(config, now)


def test_a_non_root_zfs_refuses_the_program_and_apply_falls_back(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    zfs_guest.sh("id zrchan >/dev/null 2>&1 || useradd -M zrchan")
    guest_zfs("create", "src/deleg")
    guest_zfs("allow", "zrchan", "create,destroy,mount,snapshot,bookmark,hold,release,send,receive,userprop",
              "src/deleg")
    prepare(zfs_guest, guest_zfs, "src/deleg")
    wrapper = install_wrapper(zfs_guest, "doas", AS_ZRCHAN)
    config = config_for(config_file, zfs_guest, "deleg.yml", "src/deleg", zfs_command=[wrapper, "zfs"])
    now = guest_now(zfs_guest)
    assert "per-command if refused (zfs_command runs doas)" in plan(config, now).output
    result = apply(config, now)
    assert_applied(result)
    assert result.output.count("channel program refused on host src: Permission denied. Channel programs"
                               " must be run as root.; one command per action") == 1, result.output
    assert all(len(snaps) == 2 and "zrepl_old4" in snaps and len(marks) == 1
               for snaps, marks in tree(guest_zfs, "src/deleg").values())
    assert_no_changes(config, now)

