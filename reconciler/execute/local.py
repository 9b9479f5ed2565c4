"""Run zfs on this machine: a subprocess per command, argv lists only, never a shell."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence

from reconciler.codes import HostProblem
from reconciler.errors import TransportError, clip
from reconciler.execute.executor import CommandResult, ReadableStream, WritableStream, with_zfs_command

EXIT_NOT_FOUND = 127  # what a shell reports for a missing command; SSH hosts report the same
EXIT_NOT_EXECUTABLE = 126


class LocalExecutor:
    """Executor for ``connection: local`` hosts."""

    def __init__(self, host: str, zfs_command: Sequence[str] = ("zfs",),
                 timeout: float | None = 600.0) -> None:
        self.host = host
        self.zfs_command = tuple(zfs_command)
        self.timeout = timeout

    def run(self, argv: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        full = with_zfs_command(self.zfs_command, argv)
        limit = timeout if timeout is not None else self.timeout
        try:
            proc = subprocess.run(full, capture_output=True, timeout=limit, stdin=subprocess.DEVNULL,
                                  check=False)
        except FileNotFoundError:
            return CommandResult(tuple(full), EXIT_NOT_FOUND, "", f"{full[0]}: command not found")
        except PermissionError:
            return CommandResult(tuple(full), EXIT_NOT_EXECUTABLE, "", f"{full[0]}: Permission denied")
        except subprocess.TimeoutExpired:
            raise TransportError(self.host, HostProblem.TIMEOUT,
                                 f"command timed out after {limit:g}s: {clip(shlex.join(full))}") from None
        return CommandResult(tuple(full), proc.returncode, decode(proc.stdout), decode(proc.stderr))

    def open_process(self, argv: Sequence[str]) -> LocalProcess:
        full = with_zfs_command(self.zfs_command, argv)
        try:
            popen = subprocess.Popen(full, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise TransportError(self.host, HostProblem.ZFS_NOT_FOUND,
                                 f"{full[0]}: command not found") from None
        except PermissionError:
            raise TransportError(self.host, HostProblem.PERMISSION_DENIED,
                                 f"{full[0]}: Permission denied") from None
        return LocalProcess(self.host, popen, full)

    def close(self) -> None:
        """Nothing to release: every command is its own process."""


class LocalProcess:
    """A streaming handle over ``subprocess.Popen`` (see executor.ProcessHandle)."""

    def __init__(self, host: str, popen: subprocess.Popen[bytes], argv: Sequence[str]) -> None:
        assert popen.stdin is not None and popen.stdout is not None and popen.stderr is not None
        self.host = host
        self.popen = popen
        self.argv = tuple(argv)
        self.stdin: WritableStream = popen.stdin
        self.stdout: ReadableStream = popen.stdout
        self.stderr: ReadableStream = popen.stderr

    def wait(self, timeout: float | None = None) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TransportError(self.host, HostProblem.TIMEOUT,
                                 f"command timed out after {timeout:g}s: {shlex.join(self.argv)}"
                                 ) from None

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()


def decode(data: bytes) -> str:
    # zfs names are ASCII by rule; anything else is kept visible for the strict parser to reject.
    return data.decode("utf-8", errors="surrogateescape")
