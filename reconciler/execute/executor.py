"""The narrow transport interface every zfs call site uses (local or SSH).

An executor runs an argv list (never a shell string) on one host and returns its
stdout, stderr and exit status. The leading ``"zfs"`` of an action's argv is replaced
by the host's configured ``zfs_command`` (e.g. ``[sudo, -n, zfs]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Executor(Protocol):
    host: str  # host name as in the config

    def run(self, argv: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        """Run ``argv`` to completion. Raises TransportError only when the command cannot
        be run (unreachable, auth, host key, timeout); a non-zero exit is returned, not raised."""
        ...

    def close(self) -> None: ...


def with_zfs_command(zfs_command: Sequence[str], argv: Sequence[str]) -> list[str]:
    """Replace a leading ``"zfs"`` of ``argv`` with the host's ``zfs_command``."""
    if argv and argv[0] == "zfs":
        return [*zfs_command, *argv[1:]]
    return list(argv)


class ReadableStream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class WritableStream(Protocol):
    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class ProcessHandle(Protocol):
    """A running command with its standard streams, for ``send | recv`` streaming.

    ``stdin`` is writable binary (close it to send EOF), ``stdout``/``stderr`` readable
    binary. Read stderr only after stdout hit EOF (zfs writes little to it), or from a thread.
    """

    stdin: WritableStream
    stdout: ReadableStream
    stderr: ReadableStream

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit status; raises TransportError(code="timeout") when ``timeout`` passes."""
        ...

    def kill(self) -> None: ...


class StreamingExecutor(Executor, Protocol):
    """Optional addition: an executor that can also start a command and stream its stdio.

    ``open_process(argv)`` replaces a leading ``"zfs"`` with the host's ``zfs_command``
    like ``run``; local executors use a subprocess, SSH ones a channel on the host's
    single reused connection."""

    def open_process(self, argv: Sequence[str]) -> ProcessHandle: ...
