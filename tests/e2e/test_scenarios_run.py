"""Real OpenZFS: the reconcile loop (`run --every`) as a systemd service runs it.

`run` uses the controller's clock, so the guest's clock is first set back to the host's
(other modules move it forward). SIGTERM stops the loop between actions (exit 0); a
second SIGTERM interrupts a running transfer, which the next apply resumes by token.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import GuestZfs, guest_hosts
from e2e.scenario_helpers import (
    KEEP_ALL,
    SLOW_WRAPPER,
    apply,
    assert_applied,
    assert_no_changes,
    cli_argv,
    entry,
    guest_now,
    install_wrapper,
    policy,
    prop,
    snapshots,
    write_random,
)

pytestmark = pytest.mark.realzfs

ConfigFile = Callable[..., Path]


@pytest.fixture
def host_clock(zfs_guest: Any) -> None:
    zfs_guest.ssh(["date", "-s", f"@{int(time.time())}"], check=True)


@contextlib.contextmanager
def running(config: Path, *extra: str) -> Iterator[subprocess.Popen[str]]:
    """`zrepl-reconcile run`, killed on the way out if a test failed before it ended."""
    proc = subprocess.Popen(cli_argv("run", "-c", str(config), *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "400"})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def lines_until(proc: subprocess.Popen[str], wanted: str, seen: list[str],
                timeout: float = 240) -> Iterator[str]:
    """Read the loop's output until a line containing ``wanted`` (kept in ``seen``)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        seen.append(line)
        yield line
        if wanted in line:
            return
        assert time.monotonic() < deadline, "".join(seen)
    raise AssertionError(f"the loop ended before printing {wanted!r}:\n{''.join(seen)}")


def test_run_loop_converges_then_stops_cleanly_on_sigterm(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile,
        host_clock: None) -> None:
    guest_zfs("create", "src/loop")
    write_random(zfs_guest, "/src/loop/a", 256)
    config = config_file(policies={"p": policy(keep_source=KEEP_ALL, keep_target=KEEP_ALL)},
                         filesystems=[entry("src/loop")])
    seen: list[str] = []
    with running(config, "--every", "2s") as proc:
        for _ in lines_until(proc, "No changes", seen):
            pass
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        seen.append(out)
    text = "".join(seen)
    assert proc.returncode == 0, text
    assert "full send src/loop@zrepl_" in text and "exiting cleanly" in text, text
    assert snapshots(guest_zfs, "dst/backup/src/loop") == snapshots(guest_zfs, "src/loop")
    assert_no_changes(config, guest_now(zfs_guest))


def test_second_sigterm_interrupts_a_transfer_that_the_next_apply_resumes(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile,
        host_clock: None) -> None:
    guest_zfs("create", "src/term")
    write_random(zfs_guest, "/src/term/big", 6 * 1024)
    keep = {"p": policy(keep_source=KEEP_ALL, keep_target=KEEP_ALL)}
    slow = install_wrapper(zfs_guest, "zfs-slow", SLOW_WRAPPER)
    hosts: dict[str, Any] = {**guest_hosts(zfs_guest), "dst": zfs_guest.ssh_host_config(zfs_command=[slow])}
    slowed = config_file("slow.yml", policies=keep, filesystems=[entry("src/term")], hosts=hosts)
    config = config_file("plain.yml", policies=keep, filesystems=[entry("src/term")])

    seen: list[str] = []
    with running(slowed, "--once") as proc:
        for line in lines_until(proc, "%", seen):
            if "src:src/term" in line and " / " in line:
                break
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        seen.append(out)
    text = "".join(seen)
    assert proc.returncode in (0, 1), text
    assert "resum" in text, text
    token = prop(guest_zfs, "dst/backup/src/term", "receive_resume_token")
    assert token not in ("", "-"), text

    now = guest_now(zfs_guest)
    resumed = apply(config, now)
    assert_applied(resumed)
    assert "resume send of src/term@" in resumed.output, resumed.output
    assert snapshots(guest_zfs, "dst/backup/src/term") == snapshots(guest_zfs, "src/term")
    assert_no_changes(config, now)
