"""A process on this machine as one side of a stream: zfs itself for a local host, the
system ssh client running it for a remote one. The stream passes through an OS pipe, so
the relay can move it with ``os.splice``; stderr drains in a thread and keeps its tail.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import subprocess
import threading
from collections.abc import Sequence
from typing import IO

from reconciler.codes import ZfsError
from reconciler.errors import ExecError
from reconciler.transport.interface import CHUNK, KILL_GRACE, STDERR_KEEP, StreamRole


class PipeProcess:
    """A local process whose stdout (sender) or stdin (receiver) carries the stream
    (see interface.ProcessHandle)."""

    def __init__(self, argv: Sequence[str], role: StreamRole) -> None:
        if role is StreamRole.SEND:
            self.proc = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
            assert self.proc.stdout is not None
            self._fd = self.proc.stdout.fileno()
        else:
            self.proc = spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
            assert self.proc.stdin is not None
            self._fd = self.proc.stdin.fileno()
        enlarge_pipe(self._fd)
        assert self.proc.stderr is not None
        self._stderr = StderrTail(self.proc.stderr)

    def fileno(self) -> int:
        return self._fd

    def pipe_fd(self) -> int:
        return self._fd

    def read(self, size: int) -> bytes:
        return os.read(self._fd, size)

    def write(self, data: bytes) -> None:
        write_all(self._fd, memoryview(data))

    def end_input(self) -> None:
        for stream_ in (self.proc.stdin, self.proc.stdout):
            if stream_ is not None:
                with contextlib.suppress(OSError):
                    stream_.close()

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        stop(self.proc)

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        return self._stderr.text()


class StderrTail:
    """Drains a process's stderr in a thread (so it never blocks) and keeps its tail."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            while chunk := stream.read(65536):
                self._chunks.append(chunk)
                self._size += len(chunk)
                while self._size > STDERR_KEEP and len(self._chunks) > 1:
                    self._size -= len(self._chunks.popleft())
        with contextlib.suppress(OSError):
            stream.close()

    def text(self, timeout: float = 5.0) -> str:
        self._thread.join(timeout)
        return b"".join(self._chunks).decode("utf-8", "replace")


def enlarge_pipe(fd: int) -> None:
    # Linux default pipes hold 64 KiB; 1 MiB lets each splice move a full chunk.
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK)


def spawn(argv: Sequence[str], *, stdin: int | None, stdout: int | None) -> subprocess.Popen[bytes]:
    # A new session: Ctrl-C / SIGTERM reach only the controller, which decides whether to
    # stop between actions; zfs processes never see the terminal's signals.
    try:
        return subprocess.Popen(list(argv), stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                                bufsize=0, start_new_session=True)
    except FileNotFoundError as exc:
        raise ExecError(f"cannot start {argv[0]!r}: not found", code=ZfsError.ZFS_NOT_FOUND) from exc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(OSError):
        proc.terminate()
    try:
        proc.wait(KILL_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait()


def write_all(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]
