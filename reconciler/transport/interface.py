"""The narrow transport interface every zfs call site uses (local or SSH): all of it here.

An executor runs an argv list (never a shell string) on one host and returns its
stdout, stderr and exit status. The leading ``"zfs"`` of an action's argv is replaced
by the host's configured ``zfs_command`` (e.g. ``[sudo, -n, zfs]``).

A streaming executor also starts one side of a ``send | recv`` stream: the executor,
not the transfer code, chooses how the bytes flow for the host's kind and the stream's
size (a local pipe, the system ssh client, a channel on the host's SSH connection).
``reconciler.transport.pump.relay`` moves the stream from one side to the other.

Executors raise ``reconciler.errors.TransportError`` for what keeps them from running a
command (unreachable, auth, host keys, timeouts, a lost connection); a command that
runs and fails is a result, not an exception.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

CHUNK = 1 << 20  # bytes moved per step of a stream; also the pipe size we ask the kernel for
STDERR_KEEP = 64 * 1024  # bytes of each side's stderr kept for the report
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when stopping a side


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

    def run(self, argv: Sequence[str], *, timeout: float | None = None, input: bytes | None = None
            ) -> CommandResult:
        """Run ``argv`` to completion, with ``input`` on its stdin (None: no stdin, EOF at
        once). Raises TransportError only when the command cannot be run (unreachable, auth,
        host key, timeout); a non-zero exit is returned, not raised."""
        ...

    def run_hook(self, argv: Sequence[str], env: Mapping[str, str], timeout: float) -> CommandResult:
        """Run a snapshot hook's ``argv`` as it is (no ``zfs_command``), with ``env`` added to
        its environment. After ``timeout`` seconds it is stopped (locally: its whole process
        group is killed; over SSH: its channel is closed) and TransportError(timeout) raised;
        a non-zero exit is returned, not raised."""
        ...

    def close(self) -> None: ...


def zfs_as_root(executor: Executor) -> bool:
    """Whether zfs runs as root through ``executor`` (what ``channel_programs: auto`` needs:
    OpenZFS runs channel programs for root only). The real executors say so themselves
    (``zfs_as_root``); an executor that does not (a test's fake) counts as not root."""
    return bool(getattr(executor, "zfs_as_root", False))


def with_zfs_command(zfs_command: Sequence[str], argv: Sequence[str]) -> list[str]:
    """Replace a leading ``"zfs"`` of ``argv`` with the host's ``zfs_command``."""
    if argv and argv[0] == "zfs":
        return [*zfs_command, *argv[1:]]
    return list(argv)


class StreamRole(Enum):
    """Which side of a stream a command is."""

    SEND = "send"  # it writes the stream to its stdout (zfs send)
    RECEIVE = "receive"  # it reads the stream from its stdin (zfs recv)


class ProcessHandle(Protocol):
    """A started command carrying one side of a stream. The relay reads a sender and
    writes a receiver; each side's stderr is kept for the report."""

    def fileno(self) -> int:
        """What select() waits on for a sender's output."""
        ...

    def pipe_fd(self) -> int | None:
        """The OS pipe the stream flows through (a sender's stdout, a receiver's stdin),
        for ``os.splice``; None when the bytes pass through Python (an SSH channel)."""
        ...

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of a sender's stream; ``b""`` at its end."""
        ...

    def write(self, data: bytes) -> None:
        """All of ``data`` to a receiver; BrokenPipeError when it went away."""
        ...

    def end_input(self) -> None:
        """EOF to a receiver (and drop a sender's output)."""
        ...

    def running(self) -> bool: ...

    def stop(self) -> None:
        """End the command now; a receive keeps its resumable state."""
        ...

    def wait(self, timeout: float | None = None) -> int:
        """The exit status; subprocess.TimeoutExpired when ``timeout`` passes first."""
        ...

    def stderr(self) -> str:
        """The tail (at most STDERR_KEEP bytes) of what the command wrote to stderr."""
        ...


class StreamingExecutor(Executor, Protocol):
    """An executor that can also start one side of a ``send | recv`` stream."""

    def start_stream(self, argv: Sequence[str], role: StreamRole, size_hint: int | None) -> ProcessHandle:
        """Start ``argv`` (a leading ``"zfs"`` replaced, as ``run`` does) as the ``role``
        side of a stream of about ``size_hint`` bytes (None: unknown), on the path that
        moves that much best on this host. Raises TransportError when the host cannot be
        reached, ExecError when the command cannot be started."""
        ...
