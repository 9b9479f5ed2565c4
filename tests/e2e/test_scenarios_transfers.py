"""Real OpenZFS, issue 17: a parallel apply of 8 filesystems converges; a compressed send
keeps the source's compression on the target (and OpenZFS really refuses a plain stream
onto that replica, which the plan reports as a conflict instead); a bandwidth-limited send
stopped by SIGTERM resumes; a send that stops writing is stopped by stall_timeout and
resumed by the next run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import GuestZfs, guest_hosts
from e2e.scenario_helpers import (
    KEEP_ALL,
    apply,
    assert_applied,
    assert_no_changes,
    cli_argv,
    entry,
    guest_now,
    install_wrapper,
    plan,
    policy,
    prop,
    snapshots,
    write_random,
)

pytestmark = pytest.mark.realzfs

ConfigFile = Callable[..., Path]
KEEP = {"p": policy(keep_source=KEEP_ALL, keep_target=KEEP_ALL)}

# A source whose zfs send writes 1 MiB of its stream, then nothing (a hung link) until its
# reader goes away or 60 s pass; its pid in /run/zfs-stall.pid for the cleanup.
STALL_WRAPPER = """#!/bin/sh
# test wrapper for zrepl-reconcile e2e: a send stops writing after 1 MiB (size estimates run as is)
if [ "$1" = send ]; then
  for a in "$@"; do [ "$a" = -n ] && exec zfs "$@"; done
  zfs "$@" | python3 -c 'import os, select, sys
open("/run/zfs-stall.pid", "w").write(str(os.getpid()))
sys.stdout.buffer.write(sys.stdin.buffer.read(1048576)); sys.stdout.buffer.flush()
watch = select.poll(); watch.register(1, select.POLLERR | select.POLLHUP); watch.poll(60000)'
  exit $?
fi
exec zfs "$@"
"""


def target(**options: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def add(fs_entry: dict[str, Any]) -> dict[str, Any]:
        fs_entry["replicate_to"][0].update(options)
        return fs_entry
    return add


def test_parallel_apply_of_eight_filesystems_converges(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    names = ["src/par", "src/par/a", "src/par/a/x", "src/par/b", "src/par/c", "src/par/d", "src/par/e",
             "src/par/f"]
    for name in names:
        guest_zfs("create", name)
        write_random(zfs_guest, f"/{name}/blob", 256)
    config = config_file("par.yml", policies=KEEP, filesystems=[
        {"host": "src", "filter": {"src/par<": True}, "policy": "p",
         "replicate_to": [{"host": "dst", "root": "dst/backup"}]}])
    now = guest_now(zfs_guest)
    result = apply(config, now, "--parallel", "4")
    assert_applied(result)
    assert_no_changes(config, now)
    for name in names:
        assert snapshots(guest_zfs, f"dst/backup/{name}") == snapshots(guest_zfs, name), name


def test_compressed_send_keeps_the_sources_compression_and_plain_is_a_conflict(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    guest_zfs("create", "-o", "compression=lz4", "-o", "recordsize=1M", "src/comp")
    # Compressible (text) and large blocks (1 MiB records of a 4 MiB file).
    zfs_guest.ssh(["sh", "-c", "yes 'zrepl-reconcile compressed streams' | head -c 4194304 >/src/comp/text"],
                  check=True)
    config = config_file("comp.yml", policies=KEEP, filesystems=[entry("src/comp")])
    now = guest_now(zfs_guest)
    shown = plan(config, now)
    assert "-L -c -e" in shown.output, shown.output
    assert_applied(apply(config, now))
    source_ratio = float(prop(guest_zfs, "src/comp", "compressratio").rstrip("x"))
    target_ratio = float(prop(guest_zfs, "dst/backup/src/comp", "compressratio").rstrip("x"))
    assert source_ratio > 5 and target_ratio > 5, (source_ratio, target_ratio)  # stored compressed
    assert prop(guest_zfs, "dst/backup/src/comp", "zrepl-reconcile:large_blocks") == "on"

    # What the conflict prevents: OpenZFS refuses a plain incremental onto this replica (not
    # with recv -n: a dry run never asks the kernel).
    guest_zfs("snapshot", "src/comp@by_hand")
    base = sorted(snapshots(guest_zfs, "dst/backup/src/comp"))[-1]
    refused = zfs_guest.ssh(["sh", "-c", f"zfs send -i src/comp@{base} src/comp@by_hand"
                                         " | zfs recv -s -u dst/backup/src/comp"], check=False)
    assert refused.returncode != 0 and "requires -L" in refused.stderr, refused.stderr

    plain = config_file("plain.yml", policies=KEEP, filesystems=[target(compressed=False)(entry("src/comp"))])
    shown = plan(plain, now)
    assert "large blocks" in shown.output and "compressed: true" in shown.output, shown.output
    assert "by_hand" not in snapshots(guest_zfs, "dst/backup/src/comp")
    assert_applied(apply(config, now))  # compressed again: the chain goes on
    assert_no_changes(config, now)


def test_a_bandwidth_limited_send_stopped_by_sigterm_resumes(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    guest_zfs("create", "src/bw")
    write_random(zfs_guest, "/src/bw/blob", 4 * 1024)
    limited = config_file("bw.yml", policies=KEEP,
                          filesystems=[target(bandwidth_limit="1MiB/s")(entry("src/bw"))])
    now = guest_now(zfs_guest)
    assert "limit 1 MiB/s" in plan(limited, now).output
    proc = subprocess.Popen(cli_argv("apply", "-y", "-c", str(limited), "--now", now),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "400"})
    seen: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 240
    for line in proc.stdout:
        seen.append(line)
        if "src:src/bw" in line and "%" in line:  # the transfer runs: stop, then abort it
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            break
        assert time.monotonic() < deadline, "".join(seen)
    seen += proc.stdout.readlines()
    proc.wait(timeout=120)
    assert proc.returncode == 1, "".join(seen)
    assert prop(guest_zfs, "dst/backup/src/bw", "receive_resume_token") not in ("", "-"), "".join(seen)
    resumed = apply(limited, now)
    assert_applied(resumed)
    assert "resume send" in resumed.output
    assert snapshots(guest_zfs, "dst/backup/src/bw") == snapshots(guest_zfs, "src/bw")
    assert_no_changes(limited, now)


def test_a_send_that_stops_writing_is_stopped_then_resumed(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    guest_zfs("create", "src/stall")
    write_random(zfs_guest, "/src/stall/blob", 3 * 1024)
    hosts = guest_hosts(zfs_guest)
    hosts["src"] = zfs_guest.ssh_host_config(zfs_command=[install_wrapper(zfs_guest, "zfs-stall",
                                                                          STALL_WRAPPER)])
    stalling = config_file("stall.yml", policies=KEEP, hosts=hosts,
                           filesystems=[target(stall_timeout="5s")(entry("src/stall"))])
    config = config_file("plain.yml", policies=KEEP, filesystems=[entry("src/stall")])
    now = guest_now(zfs_guest)
    stalled = apply(stalling, now)
    # The hung sender ends (so its zfs send lets go of the pool for the next module).
    zfs_guest.ssh(["sh", "-c", "kill $(cat /run/zfs-stall.pid) 2>/dev/null; rm -f /run/zfs-stall.pid; true"])
    assert stalled.returncode == 1, stalled.output
    assert "stalled: no byte moved for 5s (stall_timeout) from src:src/stall to dst:dst/backup/src/stall" \
        in stalled.output, stalled.output
    assert prop(guest_zfs, "dst/backup/src/stall", "receive_resume_token") not in ("", "-")
    resumed = apply(config, now)
    assert_applied(resumed)
    assert "resume send" in resumed.output
    assert snapshots(guest_zfs, "dst/backup/src/stall") == snapshots(guest_zfs, "src/stall")
    assert_no_changes(config, now)
