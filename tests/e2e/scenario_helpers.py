"""Helpers for the real-OpenZFS scenarios: drive the real CLI, read and move the guest's clock.

The CLI runs as a subprocess (``zrepl-reconcile`` of the working tree), exactly as a
user runs it, so exit codes, printed output and signals (kill -9) are the real ones.
Real snapshots get the guest's real creation time, so every ``--now`` is read from the
guest's clock, and time passes by setting that clock forward (``advance_clock``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from e2e.conftest import GuestZfs

CLI_TIMEOUT_SECONDS = 300.0

# A receive that reads at most 2 MiB of its stream: the sender is cut off mid-stream,
# as when a link drops, and the receive (recv -s) leaves a resume token.
CUT_WRAPPER = """#!/bin/sh
# test wrapper for zrepl-reconcile e2e: a receive gets only the first 2 MiB of its stream
if [ "$1" = recv ] || [ "$1" = receive ]; then head -c 2097152 | zfs "$@"; exit $?; fi
exec zfs "$@"
"""

# A receive that reads its stream at about 1 MiB/s, so a test can kill apply mid-send.
SLOW_WRAPPER = """#!/bin/sh
# test wrapper for zrepl-reconcile e2e: a receive reads its stream at about 1 MiB/s
if [ "$1" = recv ] || [ "$1" = receive ]; then
  python3 -c 'import sys, time
r, w = sys.stdin.buffer, sys.stdout.buffer
while True:
    b = r.read(131072)
    if not b:
        break
    w.write(b); w.flush(); time.sleep(0.125)' | zfs "$@"
  exit $?
fi
exec zfs "$@"
"""


@dataclass(frozen=True)
class CliResult:
    returncode: int
    output: str  # stdout and stderr, interleaved as a user sees them


def cli(*args: str, timeout: float = CLI_TIMEOUT_SECONDS) -> CliResult:
    """Run ``zrepl-reconcile ARGS`` with plain, wide, uncoloured output."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "400", "TERM": "dumb"}
    proc = subprocess.run([sys.executable, "-m", "reconciler.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    return CliResult(proc.returncode, proc.stdout + proc.stderr)


def cli_argv(*args: str) -> list[str]:
    """The argv of ``cli`` for tests that need the process itself (to kill it)."""
    return [sys.executable, "-m", "reconciler.cli", *args]


def plan(config: Path, now: str, *extra: str) -> CliResult:
    return cli("plan", "-c", str(config), "--now", now, *extra)


def apply(config: Path, now: str, *extra: str) -> CliResult:
    return cli("apply", "-y", "-c", str(config), "--now", now, *extra)


def assert_no_changes(config: Path, now: str) -> CliResult:
    """plan --detailed-exitcode must exit 0 and say "No changes"."""
    result = plan(config, now, "--detailed-exitcode")
    assert result.returncode == 0, result.output
    assert "No changes" in result.output, result.output
    return result


def assert_applied(result: CliResult) -> None:
    assert result.returncode == 0, result.output
    assert " 0 failed" in result.output, result.output


# ---------------------------------------------------------------------- the guest's clock

def guest_epoch(guest: Any) -> int:
    return int(guest.ssh(["date", "+%s"], check=True).stdout.strip())


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_of(now: str) -> int:
    """The epoch of a --now value written by ``iso``."""
    return int(datetime.strptime(now, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def guest_now(guest: Any) -> str:
    """The guest's current time as a --now value (snapshots are created at this time)."""
    return iso(guest_epoch(guest))


def advance_clock(guest: Any, seconds: int) -> str:
    """Set the guest's clock forward; returns the new time as a --now value."""
    target = guest_epoch(guest) + seconds
    guest.ssh(["date", "-s", f"@{target}"], check=True)
    return iso(target)


def snapshot_stamp(epoch: int) -> str:
    """The timestamp part of the product's snapshot names for this time."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y%m%d_%H%M%S")


# ---------------------------------------------------------------------- facts in the guest

def snapshots(guest_zfs: GuestZfs, dataset: str) -> dict[str, str]:
    """Short snapshot name -> guid of ``dataset`` (not its children)."""
    out = guest_zfs("list", "-H", "-p", "-d", "1", "-t", "snapshot", "-o", "name,guid", dataset).stdout
    result: dict[str, str] = {}
    for line in out.splitlines():
        name, guid = line.split("\t")
        result[name.split("@", 1)[1]] = guid
    return result


def bookmarks(guest_zfs: GuestZfs, dataset: str) -> dict[str, str]:
    out = guest_zfs("list", "-H", "-p", "-d", "1", "-t", "bookmark", "-o", "name,guid", dataset).stdout
    result: dict[str, str] = {}
    for line in out.splitlines():
        name, guid = line.split("\t")
        result[name.split("#", 1)[1]] = guid
    return result


def prop(guest_zfs: GuestZfs, dataset: str, name: str) -> str:
    return guest_zfs("get", "-H", "-p", "-o", "value", name, dataset).stdout.strip()


def exists(guest_zfs: GuestZfs, dataset: str) -> bool:
    return guest_zfs("list", "-H", "-o", "name", dataset, check=False).returncode == 0


def install_wrapper(guest: Any, name: str, script: str) -> str:
    """Install ``script`` as /usr/local/bin/NAME in the guest; returns NAME for zfs_command."""
    guest.ssh(["sh", "-c", f"cat >/usr/local/bin/{name} && chmod +x /usr/local/bin/{name}"],
              input=script, check=True)
    return name


def write_random(guest: Any, path: str, kib: int) -> None:
    guest.ssh(["dd", "if=/dev/urandom", f"of={path}", "bs=64k", f"count={max(1, kib // 64)}",
               "status=none"], check=True)


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def policy(*, prefix: str = "zrepl_", interval: str | None = "1h", keep_source: list[dict[str, Any]],
           keep_target: list[dict[str, Any]] | None = None, manage: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"keep_source": keep_source, "keep_target": keep_target or []}
    if interval is not None:
        result["snapshots"] = {"prefix": prefix, "interval": interval}
    if manage is not None:
        result["manage"] = manage
    return result


def entry(dataset: str, *, target_host: str | None = "dst", root: str = "dst/backup",
          host: str = "src", initial: str | None = None) -> dict[str, Any]:
    """A filesystems: entry for exactly ``dataset``, replicated to ``target_host:root``."""
    result: dict[str, Any] = {"host": host, "filter": {dataset: True}, "policy": "p"}
    if target_host is not None:
        target: dict[str, Any] = {"host": target_host, "root": root}
        if initial is not None:
            target["initial"] = initial
        result["replicate_to"] = [target]
    return result


KEEP_ALL: list[dict[str, Any]] = [{"type": "regex", "regex": ".*"}]
