"""How the bytes of a ``send | recv`` flow: through this process, from one side to the other.

Every pairing (local->local, local->ssh, ssh->local, ssh->ssh) runs the same way: the
sender's output is pumped by the controller into the receiver's input. Going through
the controller costs one copy but gives one place to count bytes (progress, rate, ETA),
to stop, and to kill both sides when either fails, and it needs no trust between the
two hosts. Between two pipes the bytes move with ``os.splice`` (zero copy in user space)
when the kernel offers it, else with one fixed 1 MiB buffer; through Python when a side
is an SSH channel. The stream is never held in memory.

Which kind of side each host gets (a local pipe, the system ssh client, a channel) is
the executor's choice: ``StreamingExecutor.start_stream``.
"""

from __future__ import annotations

import os
import select
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from reconciler.transport.interface import CHUNK, KILL_GRACE, ProcessHandle, StreamRole
from reconciler.transport.process import PipeProcess, write_all

ABORT_POLL = 0.5  # seconds a stalled sender may delay noticing an abort
PROGRESS_EVERY = 0.25  # seconds between progress updates (counting stays exact)


@dataclass(frozen=True, slots=True)
class TransferResult:
    bytes: int
    seconds: float
    send_returncode: int | None
    recv_returncode: int | None
    send_stderr: str
    recv_stderr: str
    aborted: bool = False
    # The controller stopped the sender because the receiver went away: the sender's exit
    # (255 from the system ssh client on SIGTERM) is a consequence, not the cause.
    sender_stopped: bool = False

    @property
    def ok(self) -> bool:
        return not self.aborted and self.send_returncode == 0 and self.recv_returncode == 0

    @property
    def rate(self) -> float:
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


def relay(open_send: Callable[[], ProcessHandle], open_recv: Callable[[], ProcessHandle], *,
          on_progress: Callable[[int], None] | None = None,
          abort: threading.Event | None = None, use_splice: bool = True) -> TransferResult:
    """Start the receiver, then the sender, and move the stream from one to the other.

    A receiver that goes away stops the sender; ``abort`` stops the sender too (a
    resumable receive keeps what arrived). Both exit statuses and stderrs are returned.
    """
    start = time.monotonic()
    recv = open_recv()
    try:
        send = open_send()
    except BaseException:
        recv.stop()
        raise
    moved, aborted, sender_stopped = 0, False, False
    counted = [0]

    def progress(n: int) -> None:
        counted[0] = n
        if on_progress is not None:
            on_progress(n)

    try:
        moved = move(send, recv, progress, abort, use_splice)
    except BrokenPipeError:
        moved, sender_stopped = counted[0], send.running()
        send.stop()  # the receiver failed: the sender has nobody to talk to
    except InterruptedError:
        moved, aborted = counted[0], True
        send.stop()  # resumable: recv -s keeps the partial state and its token
    except BaseException:
        send.stop()
        recv.stop()
        raise
    finally:
        send.end_input()
        recv.end_input()
    send_rc = send.wait()
    if send_rc != 0 or aborted:
        # zfs recv of a truncated stream fails by itself; don't let it wait for more.
        try:
            recv.wait(KILL_GRACE * 6)
        except subprocess.TimeoutExpired:
            recv.stop()
    recv_rc = recv.wait()
    return TransferResult(moved, time.monotonic() - start, send_rc, recv_rc,
                          send.stderr(), recv.stderr(), aborted, sender_stopped)


def stream(send_argv: Sequence[str], recv_argv: Sequence[str], *,
           on_progress: Callable[[int], None] | None = None,
           abort: threading.Event | None = None, use_splice: bool = True) -> TransferResult:
    """Run ``send_argv | controller | recv_argv`` (local argvs, e.g. ssh ... -- zfs send ...)."""
    return relay(lambda: PipeProcess(send_argv, StreamRole.SEND),
                 lambda: PipeProcess(recv_argv, StreamRole.RECEIVE),
                 on_progress=on_progress, abort=abort, use_splice=use_splice)


def move(send: ProcessHandle, recv: ProcessHandle, on_progress: Callable[[int], None] | None,
         abort: threading.Event | None, use_splice: bool) -> int:
    """The whole stream from ``send`` to ``recv``: pipe to pipe in the kernel when both
    sides are pipes, through Python otherwise."""
    src, dst = send.pipe_fd(), recv.pipe_fd()
    if src is not None and dst is not None:
        return pump(src, dst, on_progress, abort, use_splice=use_splice)
    return copy(send, recv, on_progress, abort)


def pump(src_fd: int, dst_fd: int, on_progress: Callable[[int], None] | None = None,
         abort: threading.Event | None = None, *, use_splice: bool = True) -> int:
    """Move bytes from ``src_fd`` to ``dst_fd`` until EOF; returns the byte count.

    Raises BrokenPipeError when the reader went away, InterruptedError on ``abort``.
    """
    total = 0
    report = Reporter(on_progress)
    splice = getattr(os, "splice", None) if use_splice else None
    buf = memoryview(bytearray(CHUNK)) if splice is None else None
    while True:
        await_data(src_fd, abort)
        if splice is not None:
            try:
                n = splice(src_fd, dst_fd, CHUNK)
            except OSError as exc:
                if exc.errno == 32:  # EPIPE
                    raise BrokenPipeError(exc.errno, exc.strerror) from None
                if exc.errno not in (22, 38):  # EINVAL/ENOSYS: fd type cannot splice
                    raise
                splice, buf = None, memoryview(bytearray(CHUNK))
                continue
        else:
            assert buf is not None
            n = os.readv(src_fd, [buf])
            if n:
                write_all(dst_fd, buf[:n])
        if not n:
            break
        total += n
        report(total)
    return total


def copy(send: ProcessHandle, recv: ProcessHandle, on_progress: Callable[[int], None] | None,
         abort: threading.Event | None) -> int:
    """``pump`` for sides that are not both pipes (a channel: bytes pass through Python)."""
    total = 0
    report = Reporter(on_progress)
    while True:
        await_data(send, abort)
        data = send.read(CHUNK)
        if not data:
            return total
        recv.write(data)
        total += len(data)
        report(total)


class _Selectable(Protocol):
    def fileno(self) -> int: ...


def await_data(source: int | _Selectable, abort: threading.Event | None) -> None:
    """With ``abort``, wait for the sender's data in slices, so that an abort is noticed
    even while the sender stalls; InterruptedError once it is set."""
    if abort is None:
        return
    while not select.select([source], [], [], ABORT_POLL)[0]:
        if abort.is_set():
            raise InterruptedError("transfer aborted")
    if abort.is_set():
        raise InterruptedError("transfer aborted")


class Reporter:
    """Passes the running byte count on at most every PROGRESS_EVERY seconds."""

    def __init__(self, on_progress: Callable[[int], None] | None) -> None:
        self.on_progress = on_progress
        self.last = time.monotonic()

    def __call__(self, total: int) -> None:
        now = time.monotonic()
        if self.on_progress is not None and now - self.last >= PROGRESS_EVERY:
            self.last = now
            self.on_progress(total)
