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

Because every byte passes here, this is also where a transfer is bounded: a
``TokenBucket`` limits the rate on every path (splice moves at most one bounded burst
per step, then pays for it; the bucket may be shared by several relays, which then share
its rate), and a ``stall_timeout`` stops a transfer that moved no byte for that long: the
sender first (the receive keeps its resumable state, as on an abort), the receiver too
when the relay is stuck writing to it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from reconciler.transport.interface import CHUNK, KILL_GRACE, ProcessHandle, StreamRole
from reconciler.transport.process import PipeProcess

ABORT_POLL = 0.5  # seconds a stalled sender may delay noticing an abort
PROGRESS_EVERY = 0.25  # seconds between progress updates (counting stays exact)
SPLICE_NONBLOCK = getattr(os, "SPLICE_F_NONBLOCK", 2)  # Linux's value where os lacks the name
BURST_SECONDS = 0.25  # a token bucket holds at most this many seconds of its rate
MIN_BURST = 64 * 1024  # ... and at least this many bytes (one step of a slow link)


class TokenBucket:
    """A rate limit in bytes per second with bounded bursts, shared by the relays that use it.

    It starts empty (no burst at the start) and fills at ``rate`` up to ``capacity`` bytes
    (BURST_SECONDS of the rate): a relay idle for a while may then move one burst at once,
    never more. A relay moves at most ``step`` bytes, then ``pay``s for them: the balance
    may go negative, and the payer waits until it is even again. Several relays paying into
    one bucket together move at ``rate``."""

    def __init__(self, rate: int, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("a rate limit must be positive")
        self.rate = rate
        self.capacity = max(MIN_BURST, int(rate * BURST_SECONDS))
        self.step = min(CHUNK, self.capacity)
        self._clock = clock
        self._sleep = sleep
        self._tokens = 0.0
        self._last = clock()
        self._lock = threading.Lock()

    def debit(self, n: int) -> float:
        """Take ``n`` bytes' worth; returns the seconds to wait until the balance is even."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.capacity), self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            return -self._tokens / self.rate if self._tokens < 0 else 0.0

    def pay(self, n: int, guard: Guard | None = None) -> None:
        """Debit ``n`` bytes and wait as long as the rate says, in slices so that an abort
        is noticed (InterruptedError); the wait counts as progress for the stall check."""
        wait = self.debit(n)
        deadline = self._clock() + wait
        while wait > 0:
            if guard is not None:
                guard.alive()
                guard.check()
            self._sleep(min(wait, ABORT_POLL))
            wait = deadline - self._clock()
        if guard is not None:
            guard.alive()


class StalledError(Exception):
    """No byte moved for the stall timeout."""


class Guard:
    """What may end a relay early: the apply's ``abort`` and the stall timeout. ``alive``
    marks progress; a watchdog thread (``watch``) stops the sides of a relay that made
    none for ``stall_timeout`` seconds, wherever the relay is blocked."""

    def __init__(self, abort: threading.Event | None, stall_timeout: float | None) -> None:
        self.abort = abort
        self.stall_timeout = stall_timeout
        self.last = time.monotonic()
        self.stalled = False
        self.done = threading.Event()
        self.bytes = 0  # moved so far (exact: progress reports are throttled)
        self.first_moved: float | None = None  # time.monotonic() when the first bytes moved
        self.awaiting_receiver = False  # waiting for room in the receiver's pipe

    def alive(self) -> None:
        self.last = time.monotonic()

    def moved(self, total: int) -> None:
        self.bytes = total
        self.last = time.monotonic()
        if self.first_moved is None:
            self.first_moved = self.last

    def check(self) -> None:
        if self.stalled:
            raise StalledError("no byte moved for the stall timeout")
        if self.abort is not None and self.abort.is_set():
            raise InterruptedError("transfer aborted")

    @property
    def polling(self) -> bool:
        """Whether waiting for data must wake up now and then to check."""
        return self.abort is not None or self.stall_timeout is not None

    def watch(self, send: ProcessHandle, recv: ProcessHandle) -> threading.Thread | None:
        """Start the stall watchdog (None without a stall timeout). On a stall it stops the
        sender (the receive sees the stream end and keeps its resumable state); if the
        relay still has not ended KILL_GRACE seconds later (blocked writing to a receiver
        that reads nothing), the receiver too."""
        limit = self.stall_timeout
        if limit is None:
            return None

        def run() -> None:
            poll = min(1.0, max(limit / 4, 0.05))
            while not self.done.wait(poll):
                if time.monotonic() - self.last < limit:
                    continue
                self.stalled = True
                send.stop()
                if not self.done.wait(KILL_GRACE):
                    recv.stop()
                return

        thread = threading.Thread(target=run, name="stall-watchdog", daemon=True)
        thread.start()
        return thread


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
    stalled: bool = False  # no byte moved for the stall timeout: the watchdog stopped it
    # From the first bytes moved to the stream's end (the last throttle wait included): what a
    # bandwidth limit governs, without the sides' start-up and the receive's final commit.
    stream_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (not self.aborted and not self.stalled and self.send_returncode == 0
                and self.recv_returncode == 0)

    @property
    def rate(self) -> float:
        return self.bytes / self.seconds if self.seconds > 0 else 0.0

    @property
    def stream_rate(self) -> float:
        """Bytes per second while the stream flowed (0.0 when nothing was timed)."""
        return self.bytes / self.stream_seconds if self.stream_seconds > 0 else 0.0


def relay(open_send: Callable[[], ProcessHandle], open_recv: Callable[[], ProcessHandle], *,
          on_progress: Callable[[int], None] | None = None,
          abort: threading.Event | None = None, use_splice: bool = True,
          throttle: TokenBucket | None = None, stall_timeout: float | None = None) -> TransferResult:
    """Start the receiver, then the sender, and move the stream from one to the other.

    A receiver that goes away stops the sender; ``abort`` stops the sender too (a
    resumable receive keeps what arrived), and so does a stall (no byte moved for
    ``stall_timeout`` seconds). ``throttle`` bounds the rate. Both exit statuses and
    stderrs are returned.
    """
    start = time.monotonic()
    recv = open_recv()
    try:
        send = open_send()
    except BaseException:
        recv.stop()
        raise
    moved, aborted, sender_stopped = 0, False, False
    guard = Guard(abort, stall_timeout)
    watchdog = guard.watch(send, recv)
    streamed = 0.0
    try:
        moved = move(send, recv, on_progress, guard, use_splice, throttle)
        if guard.first_moved is not None:
            streamed = time.monotonic() - guard.first_moved
    except BrokenPipeError:
        moved, sender_stopped = guard.bytes, send.running()
        send.stop()  # the receiver failed: the sender has nobody to talk to
    except (InterruptedError, StalledError):
        moved, aborted = guard.bytes, not guard.stalled
        send.stop()  # resumable: recv -s keeps the partial state and its token
    except BaseException:
        send.stop()
        recv.stop()
        raise
    finally:
        guard.done.set()
        if watchdog is not None:
            watchdog.join()
        send.end_input()
        recv.end_input()
    send_rc = send.wait()
    if guard.stalled and guard.awaiting_receiver:
        recv.stop()  # it read nothing for the stall timeout: it would not read the rest either
    elif send_rc != 0 or aborted or guard.stalled:
        # zfs recv of a truncated stream fails by itself; don't let it wait for more.
        try:
            recv.wait(KILL_GRACE * 6)
        except subprocess.TimeoutExpired:
            recv.stop()
    recv_rc = recv.wait()
    return TransferResult(moved, time.monotonic() - start, send_rc, recv_rc,
                          send.stderr(), recv.stderr(), aborted, sender_stopped and not guard.stalled,
                          guard.stalled, streamed)


def stream(send_argv: Sequence[str], recv_argv: Sequence[str], *,
           on_progress: Callable[[int], None] | None = None,
           abort: threading.Event | None = None, use_splice: bool = True,
           throttle: TokenBucket | None = None, stall_timeout: float | None = None) -> TransferResult:
    """Run ``send_argv | controller | recv_argv`` (local argvs, e.g. ssh ... -- zfs send ...)."""
    return relay(lambda: PipeProcess(send_argv, StreamRole.SEND),
                 lambda: PipeProcess(recv_argv, StreamRole.RECEIVE),
                 on_progress=on_progress, abort=abort, use_splice=use_splice, throttle=throttle,
                 stall_timeout=stall_timeout)


def move(send: ProcessHandle, recv: ProcessHandle, on_progress: Callable[[int], None] | None,
         guard: Guard | None, use_splice: bool, throttle: TokenBucket | None = None) -> int:
    """The whole stream from ``send`` to ``recv``: pipe to pipe in the kernel when both
    sides are pipes, through Python otherwise."""
    src, dst = send.pipe_fd(), recv.pipe_fd()
    if src is not None and dst is not None:
        return pump(src, dst, on_progress, guard, use_splice=use_splice, throttle=throttle)
    return copy(send, recv, on_progress, guard, throttle)


def pump(src_fd: int, dst_fd: int, on_progress: Callable[[int], None] | None = None,
         guard: Guard | threading.Event | None = None, *, use_splice: bool = True,
         throttle: TokenBucket | None = None) -> int:
    """Move bytes from ``src_fd`` to ``dst_fd`` until EOF; returns the byte count.

    Each step moves at most CHUNK bytes, or one burst of ``throttle`` (then paid for).
    Raises BrokenPipeError when the reader went away, InterruptedError on an abort
    (``guard``, or a bare abort event), StalledError on a stall.
    """
    if not isinstance(guard, Guard):
        guard = Guard(guard, None)
    total = 0
    report = Reporter(on_progress)
    splice = getattr(os, "splice", None) if use_splice else None
    step = throttle.step if throttle is not None else CHUNK
    buf = memoryview(bytearray(step)) if splice is None else None
    # Our end of the receiver's pipe does not block: a receiver that reads nothing is
    # waited for in slices (abort, stall), never in a write that cannot be interrupted.
    flags = fcntl.fcntl(dst_fd, fcntl.F_GETFL)
    fcntl.fcntl(dst_fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        while True:
            await_data(src_fd, guard)
            if splice is not None:
                try:
                    n = splice(src_fd, dst_fd, step, flags=SPLICE_NONBLOCK)
                except BlockingIOError:  # the receiver's pipe is full
                    await_room(dst_fd, guard)
                    continue
                except OSError as exc:
                    if exc.errno == errno.EPIPE:
                        raise BrokenPipeError(exc.errno, exc.strerror) from None
                    if exc.errno not in (errno.EINVAL, errno.ENOSYS):  # fd type cannot splice
                        raise
                    splice, buf = None, memoryview(bytearray(step))
                    continue
            else:
                assert buf is not None
                n = os.readv(src_fd, [buf])
                if n:
                    write_waiting(dst_fd, buf[:n], guard)
            if not n:
                break
            total += n
            guard.moved(total)
            report(total)
            if throttle is not None:
                throttle.pay(n, guard)
    finally:
        with contextlib.suppress(OSError):
            fcntl.fcntl(dst_fd, fcntl.F_SETFL, flags)
    return total


def write_waiting(fd: int, view: memoryview, guard: Guard) -> None:
    """All of ``view`` to a non-blocking ``fd``, waiting for room in slices (abort, stall)."""
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            await_room(fd, guard)
            continue
        view = view[written:]
        guard.alive()


def await_room(fd: int, guard: Guard) -> None:
    """Wait until the receiver's pipe takes more, checking ``guard`` every ABORT_POLL."""
    guard.awaiting_receiver = True
    while not select.select([], [fd], [], ABORT_POLL if guard.polling else None)[1]:
        guard.check()
    guard.awaiting_receiver = False
    guard.check()


def copy(send: ProcessHandle, recv: ProcessHandle, on_progress: Callable[[int], None] | None,
         guard: Guard | None, throttle: TokenBucket | None = None) -> int:
    """``pump`` for sides that are not both pipes (a channel: bytes pass through Python)."""
    total = 0
    report = Reporter(on_progress)
    step = throttle.step if throttle is not None else CHUNK
    while True:
        await_data(send, guard)
        data = send.read(step)
        if not data:
            return total
        recv.write(data)  # a receiver that reads nothing: the stall watchdog stops it
        total += len(data)
        if guard is not None:
            guard.moved(total)
        report(total)
        if throttle is not None:
            throttle.pay(len(data), guard)


class _Selectable(Protocol):
    def fileno(self) -> int: ...


def await_data(source: int | _Selectable, guard: Guard | None) -> None:
    """Wait for the sender's data (or its end); with an abort or a stall timeout to watch,
    in slices, so that either is noticed while the sender stalls (InterruptedError,
    StalledError)."""
    if guard is None or not guard.polling:
        select.select([source], [], [])
        return
    while not select.select([source], [], [], ABORT_POLL)[0]:
        guard.check()
    guard.check()


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
