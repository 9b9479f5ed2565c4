"""Real OpenZFS: snapshot hooks run on the filesystem's host, over SSH, around its snapshot.

The hook writes a line into the filesystem itself: the pre hook's line is in the
snapshot (it ran first), the post hook's only in the live filesystem (it ran after), and
the replica received the pre hook's line. A second filesystem's pre hook fails with
err_is_fatal: no snapshot there, but its post hook still ran (zrepl #392).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.conftest import GuestZfs
from e2e.scenario_helpers import (
    KEEP_ALL,
    apply,
    assert_no_changes,
    epoch_of,
    guest_now,
    install_wrapper,
    plan,
    policy,
    snapshot_stamp,
    snapshots,
)

pytestmark = pytest.mark.realzfs

ConfigFile = Callable[..., Path]

# Appends "<pre|post> <snapshot name>" to hook-marker in the filesystem's mountpoint; the
# pre hook of a filesystem whose name ends in "bad" then fails.
MARK_HOOK = """#!/bin/sh
# test hook for zrepl-reconcile e2e: marks the filesystem itself before and after its snapshot
set -eu
dir=$(zfs get -H -o value mountpoint "$ZREPL_RECONCILE_FS")
echo "$ZREPL_RECONCILE_HOOK $ZREPL_RECONCILE_SNAPNAME" >> "$dir/hook-marker"
case "$ZREPL_RECONCILE_FS:$ZREPL_RECONCILE_HOOK" in
  *bad:pre) echo "cannot freeze $ZREPL_RECONCILE_FS" >&2; exit 3 ;;
esac
"""


def test_a_pre_hook_runs_before_the_snapshot_and_post_after_it(
        pools: tuple[str, ...], zfs_guest: object, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    guest_zfs("create", "-p", "src/hooks/db")
    guest_zfs("create", "src/hooks/bad")
    hook = "/usr/local/bin/" + install_wrapper(zfs_guest, "zrr-mark-hook", MARK_HOOK)
    db_policy = policy(keep_source=KEEP_ALL, keep_target=KEEP_ALL)
    db_policy["snapshots"]["hooks"] = [{"pre": [hook, "--freeze"], "post": [hook, "--thaw"], "timeout": "1m",
                                        "err_is_fatal": True}]
    target = [{"host": "dst", "root": "dst/backup"}]
    config = config_file(policies={"p": db_policy},
                         filesystems=[{"host": "src", "filter": {"src/hooks/db": True, "src/hooks/bad": True},
                                       "policy": "p", "replicate_to": target}])
    now = guest_now(zfs_guest)
    name = f"zrepl_{snapshot_stamp(epoch_of(now))}"

    shown = plan(config, now, "--explain", "src/hooks/db")
    assert f"run pre hook {hook} --freeze before src/hooks/db@{name}" in shown.output, shown.output
    assert f"ZREPL_RECONCILE_FS=src/hooks/db ZREPL_RECONCILE_SNAPNAME={name} ZREPL_RECONCILE_HOOK=pre" \
        in shown.output

    result = apply(config, now)
    assert result.returncode == 1, result.output  # the bad filesystem's pre hook failed
    assert "exited with status 3: cannot freeze src/hooks/bad" in result.output
    assert "err_is_fatal: the snapshot src/hooks/bad@" in result.output

    # The pre hook's line is in the snapshot: it ran before the snapshot was taken.
    in_snapshot = zfs_guest.ssh(["cat", f"/src/hooks/db/.zfs/snapshot/{name}/hook-marker"], check=True)
    assert in_snapshot.stdout == f"pre {name}\n"
    live = zfs_guest.ssh(["cat", "/src/hooks/db/hook-marker"], check=True)
    assert live.stdout == f"pre {name}\npost {name}\n"
    diff = guest_zfs("diff", "-H", f"src/hooks/db@{name}", "src/hooks/db").stdout
    assert "M\t/src/hooks/db/hook-marker" in diff  # changed after the snapshot (by the post hook)

    # The replica received what the pre hook wrote.
    assert name in snapshots(guest_zfs, "dst/backup/src/hooks/db")
    guest_zfs("mount", "dst/backup/src/hooks/db")
    try:
        received = zfs_guest.ssh(["cat", f"/dst/backup/src/hooks/db/.zfs/snapshot/{name}/hook-marker"],
                                 check=True)
        assert received.stdout == f"pre {name}\n"
    finally:
        guest_zfs("unmount", "dst/backup/src/hooks/db", check=False)

    # err_is_fatal: no snapshot of the bad filesystem, and its post hook ran anyway.
    assert name not in snapshots(guest_zfs, "src/hooks/bad")
    bad = zfs_guest.ssh(["cat", "/src/hooks/bad/hook-marker"], check=True)
    assert bad.stdout == f"pre {name}\npost {name}\n"

    # The db filesystem is done; only the bad one still wants its snapshot.
    again = plan(config, now, "--filesystem", "src/hooks/db", "--detailed-exitcode")
    assert again.returncode == 0 and "No changes" in again.output, again.output
    db_only = config_file(name="db-only.yml", policies={"p": db_policy},
                          filesystems=[{"host": "src", "filter": {"src/hooks/db": True}, "policy": "p",
                                        "replicate_to": target}])
    assert_no_changes(db_only, now)
