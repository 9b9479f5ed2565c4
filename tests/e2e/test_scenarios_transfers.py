"""Real OpenZFS, issue 17: a parallel apply of 8 filesystems converges; a compressed send
keeps the source's compression on the target (and OpenZFS really refuses a plain stream
onto that replica, which the plan reports as a conflict instead); a bandwidth-limited send
stopped by SIGTERM resumes; a send that stops writing is stopped by stall_timeout and
resumed by the next run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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


def par_names(root: str) -> list[str]:
    """Eight filesystems: ``root``, six children and a grandchild."""
    return [root, *(f"{root}/{child}" for child in ("a", "a/x", "b", "c", "d", "e", "f"))]


def eight_filesystems(zfs_guest: Any, guest_zfs: GuestZfs, root: str, kib: int) -> list[str]:
    names = par_names(root)
    for name in names:
        guest_zfs("create", name)
        write_random(zfs_guest, f"/{name}/blob", kib)
    return names


def tree_config(config_file: ConfigFile, file: str, root: str, hosts: dict[str, Any] | None = None,
                **target_options: Any) -> Path:
    """``root`` and everything below it replicated to dst:dst/backup, every snapshot kept."""
    return config_file(file, policies=KEEP, hosts=hosts, filesystems=[
        {"host": "src", "filter": {f"{root}<": True}, "policy": "p",
         "replicate_to": [{"host": "dst", "root": "dst/backup", **target_options}]}])


def test_parallel_apply_of_eight_filesystems_converges(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    names = eight_filesystems(zfs_guest, guest_zfs, "src/par", 256)
    config = tree_config(config_file, "par.yml", "src/par")
    now = guest_now(zfs_guest)
    result = apply(config, now, "--parallel", "4")
    assert_applied(result)
    assert_no_changes(config, now)
    for name in names:
        assert snapshots(guest_zfs, f"dst/backup/{name}") == snapshots(guest_zfs, name), name


# The kill test's source: a cursor move or a release takes a second longer, so the phase
# after the sends lasts long enough to be killed in the middle of (the target's receives
# read at ~1 MiB/s through SLOW_WRAPPER, which does the same for the send phase).
SLOW_TAIL_WRAPPER = """#!/bin/sh
# test wrapper for zrepl-reconcile e2e: zfs bookmark and zfs release take one second more
case "$1" in bookmark|release) sleep 1 ;; esac
exec zfs "$@"
"""

# The apply's event lines (stdout and stderr, one whole line per event when not a terminal).
PROGRESS = re.compile(r"^(?:full|incr|resume) src:\S+ -> dst:(\S+): .* / .*%")
DONE_SEND = re.compile(r"^done\s+(?:full send|resume send of|incremental send) .* to dst:(\S+)")
AFTER_SENDS = re.compile(r"^(?:done|failed|skipped)\s+(?:hold received|bookmark|release hold|destroy) ")
OUR_HOLD_TAGS = ("zrr-step_", "zrr-last-received_")


@dataclass
class Moment:
    """When to kill an apply, read from its event lines as they come."""

    what: str
    sends_done: int = 0
    streaming: set[str] = field(default_factory=set)  # targets with progress seen, send not done

    def reached(self, line: str) -> bool:
        if done := DONE_SEND.match(line):
            self.sends_done += 1
            self.streaming.discard(done.group(1))
        elif progress := PROGRESS.match(line):
            self.streaming.add(progress.group(1))
        match self.what:
            case "first sends stream":
                return bool(self.streaming)
            case "several sends running, some done":
                return self.sends_done >= 2 and len(self.streaming) >= 2
            case "after the sends":
                return AFTER_SENDS.match(line) is not None
        raise AssertionError(self.what)


def kill_at(config: Path, now: str, moment: Moment) -> str:
    """Run ``apply --parallel 4`` and kill -9 it at ``moment``; returns what it printed."""
    proc = subprocess.Popen(cli_argv("apply", "-y", "-c", str(config), "--now", now, "--parallel", "4"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL,
                            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "400", "TERM": "dumb"})
    seen: list[str] = []
    killed = False
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            seen.append(line)
            if moment.reached(line):
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
    finally:
        if not killed and proc.poll() is None:  # this test failed while reading
            proc.kill()
        proc.wait(timeout=300)
    output = "".join(seen)
    # Not a timed assertion: the apply is killed as soon as its line is read, and the slowed
    # receives and cursor moves leave it seconds of work after every such line.
    assert killed and proc.returncode == -signal.SIGKILL, f"apply ended before {moment.what}:\n{output}"
    return output


def guest_transfers_ended(guest: Any) -> bool:
    """No zfs command (an orphaned send or receive, a slowed cursor move) runs in the guest."""
    busy = guest.ssh(["sh", "-c", "pgrep -x zfs; pgrep -f 'zfs-slo[w]|zfs-tai[l]'; true"], check=True)
    return not busy.stdout.strip()


def wait_until(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1.0)


def snapshot_names(guest_zfs: GuestZfs, *roots: str) -> list[str]:
    out = guest_zfs("list", "-H", "-r", "-t", "snapshot", "-o", "name", *roots).stdout
    return out.split()


def our_holds(guest_zfs: GuestZfs, *roots: str) -> set[tuple[str, str]]:
    """(snapshot, tag) of every hold of ours below ``roots``."""
    names = snapshot_names(guest_zfs, *roots)
    out = guest_zfs("holds", "-H", *names).stdout if names else ""
    holds = {(name, tag) for name, tag, *_ in (line.split("\t") for line in out.splitlines())}
    return {(name, tag) for name, tag in holds if tag.startswith(OUR_HOLD_TAGS)}


def test_kill_9_of_a_parallel_apply_at_three_moments_then_it_converges(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    """Issue 17 on real ZFS: kill -9 of ``apply --parallel 4`` while the first sends stream,
    later in the send phase with some sends done and several running, and in the phase
    after the sends (holds of received snapshots, cursor moves, releases); after each kill
    the orphaned receives end in the guest (saving their resume state). Then ONE apply
    converges: no snapshot lost, every replica equal to its source, no resume state, and
    of our holds only each replica's last-received hold stays."""
    names = eight_filesystems(zfs_guest, guest_zfs, "src/kpar", 1024)
    guest_zfs("snapshot", "-r", "src/kpar@before")
    for name in names:  # 2 MiB each in all, a full and an incremental send of 1 MiB
        write_random(zfs_guest, f"/{name}/more", 1024)
    before = {name: snapshots(guest_zfs, name) for name in names}
    hosts = guest_hosts(zfs_guest)
    hosts["src"] = zfs_guest.ssh_host_config(zfs_command=[install_wrapper(zfs_guest, "zfs-tail",
                                                                          SLOW_TAIL_WRAPPER)])
    hosts["dst"] = zfs_guest.ssh_host_config(zfs_command=[install_wrapper(zfs_guest, "zfs-slow",
                                                                          SLOW_WRAPPER)])
    slowed = tree_config(config_file, "kpar-slow.yml", "src/kpar", hosts=hosts, initial="all")
    config = tree_config(config_file, "kpar.yml", "src/kpar", initial="all")
    now = guest_now(zfs_guest)
    printed: list[str] = []
    for what in ("first sends stream", "several sends running, some done", "after the sends"):
        printed.append(f"--- killed when {what}:\n" + kill_at(slowed, now, Moment(what)))
        wait_until(lambda: guest_transfers_ended(zfs_guest), 300, "the orphaned receives to end")
    history = "\n".join(printed)
    print(history)  # what each killed apply had printed (pytest -s, or -rP)

    result = apply(config, now, "--parallel", "4")
    assert_applied(result)
    assert_no_changes(config, now)
    for name in names:
        replica = f"dst/backup/{name}"
        source = snapshots(guest_zfs, name)
        assert before[name].items() <= source.items(), f"snapshots of {name} lost\n{history}"
        assert snapshots(guest_zfs, replica) == source, f"{replica}\n{history}"
        assert prop(guest_zfs, replica, "receive_resume_token") == "-", replica
    holds = our_holds(guest_zfs, "src/kpar", "dst/backup/src/kpar")
    newest = {f"dst/backup/{name}@{list(snapshots(guest_zfs, name))[-1]}" for name in names}
    assert {name for name, tag in holds} == newest, f"{sorted(holds)}\n{history}"
    assert all(tag.startswith("zrr-last-received_") for _, tag in holds), sorted(holds)


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
