"""Real OpenZFS: one failing filesystem does not stop the others, and a second apply on
the same configuration is refused while one runs (issue 6's faults, on real zfs).

The failure is real: a quota on one replica makes its incremental receive run out of
space; the other filesystem of the same apply is replicated all the same.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import GuestZfs, guest_hosts
from e2e.scenario_helpers import (
    KEEP_ALL,
    SLOW_WRAPPER,
    advance_clock,
    apply,
    assert_applied,
    assert_no_changes,
    cli_argv,
    entry,
    guest_now,
    install_wrapper,
    policy,
    snapshots,
    write_random,
)

pytestmark = pytest.mark.realzfs

ConfigFile = Callable[..., Path]
HOUR = 3600


def test_one_failing_filesystem_does_not_stop_the_others(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    for name in ("a", "b"):
        guest_zfs("create", "-p", f"src/iso/{name}")
        write_random(zfs_guest, f"/src/iso/{name}/first", 256)
    guest_zfs("create", "dst/iso")
    config = config_file(policies={"p": policy(keep_source=KEEP_ALL, keep_target=KEEP_ALL)},
                         filesystems=[entry("src/iso/a", root="dst/iso"), entry("src/iso/b", root="dst/iso")])
    assert_applied(apply(config, guest_now(zfs_guest)))
    replica_a, replica_b = "dst/iso/src/iso/a", "dst/iso/src/iso/b"
    before_b = snapshots(guest_zfs, replica_b)

    # Room for the first copy only: b's next incremental receive runs out of space.
    guest_zfs("set", "quota=1M", replica_b)
    for name in ("a", "b"):
        write_random(zfs_guest, f"/src/iso/{name}/second", 4 * 1024)
    now = advance_clock(zfs_guest, HOUR + 60)
    result = apply(config, now)
    assert result.returncode == 1, result.output
    assert "out of space" in result.output or "quota" in result.output, result.output
    assert "src/iso/b" in result.output.split("Failed:", 1)[1], result.output
    # a went through completely; b kept what it had and its source its new snapshot.
    assert snapshots(guest_zfs, replica_a) == snapshots(guest_zfs, "src/iso/a")
    assert snapshots(guest_zfs, replica_b) == before_b
    assert len(snapshots(guest_zfs, "src/iso/b")) == len(before_b) + 1

    guest_zfs("set", "quota=none", replica_b)
    assert_applied(apply(config, now))
    assert snapshots(guest_zfs, replica_b) == snapshots(guest_zfs, "src/iso/b")
    assert_no_changes(config, now)


def test_a_second_apply_is_refused_while_one_runs(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    guest_zfs("create", "src/lock")
    write_random(zfs_guest, "/src/lock/big", 6 * 1024)
    slow = install_wrapper(zfs_guest, "zfs-slow-lock", SLOW_WRAPPER)
    hosts = guest_hosts(zfs_guest)
    hosts["dst"] = zfs_guest.ssh_host_config(zfs_command=[slow])
    config = config_file(policies={"p": policy(keep_source=KEEP_ALL, keep_target=KEEP_ALL)},
                         filesystems=[entry("src/lock")], hosts=hosts)
    now = guest_now(zfs_guest)
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "400"}
    first = subprocess.Popen(cli_argv("apply", "-y", "-c", str(config), "--now", now),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    seen: list[str] = []
    try:
        assert first.stdout is not None
        deadline = time.monotonic() + 240
        for line in first.stdout:  # wait until the first apply is mid-send
            seen.append(line)
            if "src:src/lock" in line and "%" in line:
                break
            assert time.monotonic() < deadline, "".join(seen)
        second = apply(config, now)
        assert second.returncode == 1, second.output
        assert "another apply" in second.output and f"PID {first.pid}" in second.output, second.output
        rest, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, "".join(seen) + rest
    assert snapshots(guest_zfs, "dst/backup/src/lock") == snapshots(guest_zfs, "src/lock")
    assert_no_changes(config, now)
