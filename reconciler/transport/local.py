"""Run zfs on this machine: a subprocess per command, argv lists only, never a shell."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence

from reconciler.codes import HostProblem
from reconciler.config.models import wrapped_as_root
from reconciler.errors import TransportError, clip
from reconciler.transport.interface import (
    KILL_GRACE,
    CommandResult,
    StreamRole,
    with_zfs_command,
)
from reconciler.transport.process import PipeProcess

EXIT_NOT_FOUND = 127  # what a shell reports for a missing command; SSH hosts report the same
EXIT_NOT_EXECUTABLE = 126


def controller_is_root() -> bool:
    """This process runs as root (effective uid 0). One function, so tests can decide it."""
    return os.geteuid() == 0


class LocalExecutor:
    """Executor for ``connection: local`` hosts."""

    def __init__(self, host: str, zfs_command: Sequence[str] = ("zfs",),
                 timeout: float | None = 600.0) -> None:
        self.host = host
        self.zfs_command = tuple(zfs_command)
        self.timeout = timeout

    @property
    def zfs_as_root(self) -> bool:
        """zfs runs as root here: this process is root, or zfs_command is sudo/doas."""
        return controller_is_root() or wrapped_as_root(self.zfs_command)

    def run(self, argv: Sequence[str], *, timeout: float | None = None, input: bytes | None = None
            ) -> CommandResult:
        full = with_zfs_command(self.zfs_command, argv)
        limit = timeout if timeout is not None else self.timeout
        try:
            # No input: no stdin at all (DEVNULL), so a reader sees EOF at once.
            proc = subprocess.run(full, capture_output=True, timeout=limit, input=input, check=False,
                                  stdin=subprocess.DEVNULL if input is None else None)
        except FileNotFoundError:
            return CommandResult(tuple(full), EXIT_NOT_FOUND, "", f"{full[0]}: command not found")
        except PermissionError:
            return CommandResult(tuple(full), EXIT_NOT_EXECUTABLE, "", f"{full[0]}: Permission denied")
        except subprocess.TimeoutExpired:
            raise TransportError(self.host, HostProblem.TIMEOUT,
                                 f"command timed out after {limit:g}s: {clip(shlex.join(full))}") from None
        return CommandResult(tuple(full), proc.returncode, decode(proc.stdout), decode(proc.stderr))

    def run_hook(self, argv: Sequence[str], env: Mapping[str, str], timeout: float) -> CommandResult:
        """The hook in a session of its own (a process group: what it starts goes with it),
        with this process's environment plus ``env``; the group is killed at ``timeout``."""
        full = tuple(argv)
        try:
            proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env={**os.environ, **env}, start_new_session=True)
        except FileNotFoundError:
            return CommandResult(full, EXIT_NOT_FOUND, "", f"{full[0]}: command not found")
        except PermissionError:
            return CommandResult(full, EXIT_NOT_EXECUTABLE, "", f"{full[0]}: Permission denied")
        except OSError as exc:  # e.g. a script without a #! line: "Exec format error"
            return CommandResult(full, EXIT_NOT_EXECUTABLE, "", f"{full[0]}: {exc.strerror or exc}")
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise TransportError(self.host, HostProblem.TIMEOUT,
                                 f"hook timed out after {timeout:g}s and was killed with its process group:"
                                 f" {clip(shlex.join(full))}") from None
        return CommandResult(full, proc.returncode, decode(out), decode(err))

    def start_stream(self, argv: Sequence[str], role: StreamRole, size_hint: int | None) -> PipeProcess:
        """zfs as a local process, whatever the size: a pipe is the fastest path there is."""
        return PipeProcess(with_zfs_command(self.zfs_command, argv), role)

    def close(self) -> None:
        """Nothing to release: every command is its own process."""


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group ``proc`` leads, SIGKILL after KILL_GRACE seconds, then
    reap it. Output still held open by a process that left the group is abandoned."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.communicate(timeout=KILL_GRACE)
            return
        except subprocess.TimeoutExpired:
            continue
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    proc.wait()


def decode(data: bytes) -> str:
    # zfs names are ASCII by rule; anything else is kept visible for the strict parser to reject.
    return data.decode("utf-8", errors="surrogateescape")
