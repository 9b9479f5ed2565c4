"""send | recv through the controller: bounded memory, progress, clean failure.

Every pairing (local->local, local->ssh, ssh->local, ssh->ssh) runs the same way: the
``zfs send`` process's stdout is pumped by this process into the ``zfs recv`` process's
stdin. Going through the controller costs one copy but gives one place to count bytes
(progress, rate, ETA), to stop, and to kill both sides when either fails, and it needs
no trust between the two hosts.

The data path uses the system ``ssh`` client, not the paramiko connection used for
commands: bench/bench_transfer.py measured paramiko's channel far below the 90 % of a
plain ``ssh | cat`` pipe that we require (see BENCHMARKS.md), while the OpenSSH client
with strict host key checking against the same known_hosts file reaches it. Bytes move
with ``os.splice`` between the two pipes (zero copy in user space) when the kernel
offers it, else with one fixed 1 MiB buffer; the stream is never held in memory.

Small sends (estimated at most SMALL_SEND_BYTES, the common incremental) run instead on
channels of the hosts' existing paramiko connections: a new ssh client per side would
cost a handshake each, more than the bytes (peer benchmark (b): a hundred sends).
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import math
import os
import select
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import IO, Protocol

from reconciler.codes import ZfsError
from reconciler.config.models import Config, LocalHost, SshHost
from reconciler.domain.actions import SendAction
from reconciler.domain.resume_token import decode_resume_token
from reconciler.errors import ExecError
from reconciler.execute import zfs_errors
from reconciler.execute.executor import Executor, with_zfs_command
from reconciler.execute.progress import NullProgress, ProgressSink, human_bytes
from reconciler.execute.ssh import SshExecutor, SshProcess

CHUNK = 1 << 20  # bytes moved per step; also the pipe size we ask the kernel for
STDERR_KEEP = 64 * 1024  # bytes of each side's stderr kept for the report
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when stopping a side
ABORT_POLL = 0.5  # seconds a stalled sender may delay noticing an abort
PROGRESS_EVERY = 0.25  # seconds between progress updates (counting stays exact)
# Estimated sends up to this size use channels on the hosts' SSH connections (paramiko:
# ~100 MiB/s here, so under 0.1 s) instead of a system ssh client each (a handshake).
SMALL_SEND_BYTES = 8 << 20
# Seconds to wait before each new attempt of a resume that found the interrupted receive
# still running (busy) or its token moved on: a receive cut off by a killed controller
# drains what was in flight and saves its state a few seconds later.
RESUME_RETRY_WAITS = (2.0, 5.0, 10.0, 15.0)
RESUME_RETRY_CODES = (ZfsError.BUSY, ZfsError.RESUME_TOKEN_INVALID, ZfsError.RESUME_STATE_EXISTS)


# --------------------------------------------------------------------------- argv

def ssh_client_argv(host: SshHost) -> list[str]:
    """OpenSSH client options equivalent to the paramiko executor's: strict host keys, batch.
    ``-F /dev/null``: the user's ~/.ssh/config must not send the data elsewhere than the
    commands (paramiko does not read it either)."""
    known_hosts = os.path.expanduser(host.known_hosts)
    argv = ["ssh", "-F", "/dev/null", "-T", "-x", "-a",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={ssh_option_value(known_hosts)}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"ConnectTimeout={max(1, math.ceil(host.connect_timeout))}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
            "-o", "LogLevel=ERROR",
            "-p", str(host.port),
            "-l", host.user]
    if host.identity_file:
        argv += ["-i", os.path.expanduser(host.identity_file), "-o", "IdentitiesOnly=yes"]
    argv += [host.address.strip("[]"), "--"]
    return argv


def ssh_option_value(value: str) -> str:
    """An ``-o Key=value`` value as OpenSSH reads it: it splits an unquoted value at
    blanks (a known_hosts path with a space became two files), so quote it."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def host_argv(host: LocalHost | SshHost, argv: Sequence[str]) -> list[str]:
    """The local argv that runs zfs ``argv`` on ``host`` (remote: quoted once with shlex.join)."""
    zfs_argv = with_zfs_command(host.zfs_command, argv)
    if isinstance(host, SshHost):
        return [*ssh_client_argv(host), shlex.join(zfs_argv)]
    return zfs_argv


def parse_send_size(stdout: str) -> int | None:
    """The ``size`` line of ``zfs send -nP`` (OpenZFS: "size\\t<bytes>"), None if absent."""
    size = None
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "size" and fields[1].isdigit():
            size = int(fields[1])
    return size


def estimate_send_size(action: SendAction, executor: Executor, timeout: float = 120.0) -> int | None:
    """Bytes the send will move; None when zfs cannot tell (the bar then shows no total)."""
    try:
        result = executor.run(action.estimate_argv(), timeout=timeout)
    except Exception:  # an estimate is a nicety: never fail a transfer for it
        return None
    return parse_send_size(result.stdout) if result.ok else None


# --------------------------------------------------------------------------- processes

class _StderrTail:
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


def _enlarge_pipe(fd: int) -> None:
    # Linux default pipes hold 64 KiB; 1 MiB lets each splice move a full chunk.
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK)


def _spawn(argv: list[str], *, stdin: int | None, stdout: int | None) -> subprocess.Popen[bytes]:
    # A new session: Ctrl-C / SIGTERM reach only the controller, which decides whether to
    # stop between actions; zfs processes never see the terminal's signals.
    try:
        return subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                                bufsize=0, start_new_session=True)
    except FileNotFoundError as exc:
        raise ExecError(f"cannot start {argv[0]!r}: not found", code=ZfsError.ZFS_NOT_FOUND) from exc


def _stop(proc: subprocess.Popen[bytes]) -> None:
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


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]


def pump(src_fd: int, dst_fd: int, on_progress: Callable[[int], None] | None = None,
         abort: threading.Event | None = None, *, use_splice: bool = True) -> int:
    """Move bytes from ``src_fd`` to ``dst_fd`` until EOF; returns the byte count.

    Raises BrokenPipeError when the reader went away, InterruptedError on ``abort``.
    """
    total = 0
    report = _Reporter(on_progress)
    splice = getattr(os, "splice", None) if use_splice else None
    buf = memoryview(bytearray(CHUNK)) if splice is None else None
    while True:
        _await_data(src_fd, abort)
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
                _write_all(dst_fd, buf[:n])
        if not n:
            break
        total += n
        report(total)
    return total


class _Readable(Protocol):
    def fileno(self) -> int: ...


def _await_data(source: int | _Readable, abort: threading.Event | None) -> None:
    """With ``abort``, wait for the sender's data in slices, so that an abort is noticed
    even while the sender stalls; InterruptedError once it is set."""
    if abort is None:
        return
    while not select.select([source], [], [], ABORT_POLL)[0]:
        if abort.is_set():
            raise InterruptedError("transfer aborted")
    if abort.is_set():
        raise InterruptedError("transfer aborted")


class _Reporter:
    """Passes the running byte count on at most every PROGRESS_EVERY seconds."""

    def __init__(self, on_progress: Callable[[int], None] | None) -> None:
        self.on_progress = on_progress
        self.last = time.monotonic()

    def __call__(self, total: int) -> None:
        now = time.monotonic()
        if self.on_progress is not None and now - self.last >= PROGRESS_EVERY:
            self.last = now
            self.on_progress(total)


# --------------------------------------------------------------------------- transfer

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


class _Side:
    """One end of a transfer: a local process (zfs, or the system ssh client running it)
    or a command on an SSH channel. The sender is read from, the receiver written to."""

    def fileno(self) -> int:
        """What select() waits on for the sender's output."""
        raise NotImplementedError

    def read(self, size: int) -> bytes:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """All of ``data`` to the receiver; BrokenPipeError when it went away."""
        raise NotImplementedError

    def end_input(self) -> None:
        """EOF to the receiver (and drop the sender's output)."""

    def running(self) -> bool:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> int:
        """The exit status; subprocess.TimeoutExpired when ``timeout`` passes first."""
        raise NotImplementedError

    def stderr(self) -> str:
        raise NotImplementedError


class _ProcessSide(_Side):
    def __init__(self, argv: list[str], *, sender: bool) -> None:
        if sender:
            self.proc = _spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
            assert self.proc.stdout is not None
            _enlarge_pipe(self.proc.stdout.fileno())
        else:
            self.proc = _spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
            assert self.proc.stdin is not None
            _enlarge_pipe(self.proc.stdin.fileno())
        assert self.proc.stderr is not None
        self._stderr = _StderrTail(self.proc.stderr)

    def fileno(self) -> int:
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def input_fileno(self) -> int:
        assert self.proc.stdin is not None
        return self.proc.stdin.fileno()

    def read(self, size: int) -> bytes:
        return os.read(self.fileno(), size)

    def write(self, data: bytes) -> None:
        _write_all(self.input_fileno(), memoryview(data))

    def end_input(self) -> None:
        for stream_ in (self.proc.stdin, self.proc.stdout):
            if stream_ is not None:
                with contextlib.suppress(OSError):
                    stream_.close()

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        _stop(self.proc)

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        return self._stderr.text()


class _ChannelSide(_Side):
    """A command on an exec channel of the host's existing SSH connection (no handshake)."""

    def __init__(self, process: SshProcess) -> None:
        self.process = process  # its stdin file, once collected, would send EOF
        self.channel = process.channel

    def fileno(self) -> int:
        return self.channel.fileno()

    def read(self, size: int) -> bytes:
        data: bytes = self.channel.recv(size)
        return data

    def write(self, data: bytes) -> None:
        try:
            self.channel.sendall(data)
        except (OSError, EOFError) as exc:
            raise BrokenPipeError(str(exc)) from None

    def end_input(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.channel.shutdown_write()

    def running(self) -> bool:
        return not self.channel.exit_status_ready()

    def stop(self) -> None:
        # OpenSSH ignores signal requests without a tty: closing the channel hangs up on
        # the remote command (a receive keeps its resumable state).
        self.channel.close()

    def wait(self, timeout: float | None = None) -> int:
        if not self.channel.status_event.wait(timeout):
            raise subprocess.TimeoutExpired("ssh channel", timeout or 0.0)
        # OpenSSH may send the exit status before the last of the command's output (the
        # real suite lost zfs recv's "out of space" that way): wait for the channel's EOF.
        drained = time.monotonic() + KILL_GRACE
        while not (self.channel.eof_received or self.channel.closed) and time.monotonic() < drained:
            time.sleep(0.01)
        return int(self.channel.recv_exit_status())

    def stderr(self) -> str:
        chunks = []
        while self.channel.recv_stderr_ready():
            chunks.append(self.channel.recv_stderr(STDERR_KEEP))
        return b"".join(chunks)[-STDERR_KEEP:].decode("utf-8", "replace")


def _copy(send: _Side, recv: _Side, on_progress: Callable[[int], None] | None,
          abort: threading.Event | None) -> int:
    """``pump`` for sides that are not both pipes (a channel: bytes pass through Python)."""
    total = 0
    report = _Reporter(on_progress)
    while True:
        _await_data(send, abort)
        data = send.read(CHUNK)
        if not data:
            return total
        recv.write(data)
        total += len(data)
        report(total)


def stream(send_argv: list[str], recv_argv: list[str], *,
           on_progress: Callable[[int], None] | None = None,
           abort: threading.Event | None = None, use_splice: bool = True) -> TransferResult:
    """Run ``send_argv | controller | recv_argv`` (local argvs, e.g. ssh ... -- zfs send ...)."""
    return stream_sides(lambda: _ProcessSide(send_argv, sender=True),
                        lambda: _ProcessSide(recv_argv, sender=False),
                        on_progress=on_progress, abort=abort, use_splice=use_splice)


def stream_sides(open_send: Callable[[], _Side], open_recv: Callable[[], _Side], *,
                 on_progress: Callable[[int], None] | None = None,
                 abort: threading.Event | None = None, use_splice: bool = True) -> TransferResult:
    """Start the receiver, then the sender, and move the stream from one to the other."""
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
        if isinstance(send, _ProcessSide) and isinstance(recv, _ProcessSide):
            moved = pump(send.fileno(), recv.input_fileno(), progress, abort, use_splice=use_splice)
        else:
            moved = _copy(send, recv, progress, abort)
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


def transfer_error(action: SendAction, result: TransferResult) -> ExecError:
    """The one error to report: the side that caused the failure, in zfs's words mapped."""
    what = ""  # the report line already names the send
    if result.aborted:
        return ExecError(f"stopped after {human_bytes(result.bytes)}; the receive is"
                         " resumable and the next plan resumes it", code=ZfsError.ABORTED,
                         stderr=result.recv_stderr)
    recv_error = zfs_errors.exec_error([], result.recv_returncode, result.recv_stderr, what=what)
    send_error = zfs_errors.exec_error([], result.send_returncode, result.send_stderr, what=what)
    vague = (ZfsError.STREAM_BROKEN, ZfsError.COMMAND_FAILED)
    if result.recv_returncode != 0 and (recv_error.code not in vague or result.send_returncode == 0
                                        or result.sender_stopped):
        return _both(recv_error, result)
    if result.send_returncode != 0:
        return _both(send_error, result)
    return _both(recv_error, result)


def _both(error: ExecError, result: TransferResult) -> ExecError:
    stderr = f"send stderr:\n{result.send_stderr}\nrecv stderr:\n{result.recv_stderr}"
    return ExecError(str(error), code=error.code, stderr=stderr)


def transfer_label(action: SendAction) -> str:
    kind = "resume" if action.resume_token else ("full" if action.base is None else "incr")
    return (f"{kind} {action.host}:{action.dataset}@{action.snapshot}"
            f" -> {action.target_host}:{action.target_dataset}")


def run_send(action: SendAction, config: Config, executors: Mapping[str, Executor], *,
             progress: ProgressSink | None = None, abort: threading.Event | None = None,
             sleep: Callable[[float], None] = time.sleep) -> TransferResult:
    """Execute one SendAction end to end; raises ExecError (mapped zfs message) on failure.

    A resume reads the target's token right before it starts: the interrupted receive
    may have saved more since the facts were gathered (a receive whose controller was
    killed finishes draining later), and zfs refuses a token whose offset is behind.
    While the old receive still runs (busy) or its token moves, the resume waits and
    tries again, a bounded number of times."""
    sink = progress or NullProgress()
    waits = iter(RESUME_RETRY_WAITS if action.resume_token else ())
    while True:
        if action.resume_token and action.target_host in executors:
            action = current_resume(action, executors[action.target_host], sink)
        try:
            return _run_send_once(action, config, executors, sink, abort)
        except ExecError as exc:
            wait = next(waits, None) if exc.code in RESUME_RETRY_CODES else None
            if wait is None or (abort is not None and abort.is_set()):
                raise
            sink.line(f"retry   {action.describe()} in {wait:g}s: {exc}")
            sleep(wait)


def _run_send_once(action: SendAction, config: Config, executors: Mapping[str, Executor],
                   sink: ProgressSink, abort: threading.Event | None) -> TransferResult:
    source_host = config.hosts[action.host]
    target_host = config.hosts[action.target_host]
    # The stream's size from `zfs send -nP`, right before the send: it picks the transfer
    # path and the progress total. The plan's estimate (gathered on-disk sizes: compressed,
    # and lagging writes not yet synced for a snapshot just taken) is only the fallback.
    total = estimate_send_size(action, executors[action.host]) if action.host in executors else None
    if total is None:
        total = action.estimated_bytes
    bar = sink.transfer(transfer_label(action), total)
    # A small send over a host's existing SSH connection: no handshake per send, which
    # costs more than the bytes; a big one through the system ssh client (throughput).
    small = total is not None and total <= SMALL_SEND_BYTES

    def side(host: LocalHost | SshHost, executor: Executor | None, argv: list[str], sender: bool) -> _Side:
        if small and isinstance(executor, SshExecutor):
            return _ChannelSide(executor.open_process(argv))
        return _ProcessSide(host_argv(host, argv), sender=sender)

    source, target = executors.get(action.host), executors.get(action.target_host)
    result = stream_sides(lambda: side(source_host, source, action.send_argv(), True),
                          lambda: side(target_host, target, action.recv_argv(), False),
                          on_progress=bar.update, abort=abort)
    bar.finish(result.bytes, result.ok)
    if not result.ok:
        raise transfer_error(action, result)
    return result


def current_resume(action: SendAction, target: Executor, sink: ProgressSink) -> SendAction:
    """``action`` with the target's current resume token (same snapshot), or ExecError."""
    result = target.run(["zfs", "get", "-H", "-p", "-o", "value", "receive_resume_token",
                         action.target_dataset], timeout=120.0)
    if not result.ok:
        raise zfs_errors.exec_error(result.argv, result.returncode, result.stderr,
                                    what=f"reading the resume token of {action.target_dataset}")
    token = result.stdout.strip()
    if token == action.resume_token:
        return action
    if token in ("", "-"):
        raise ExecError(f"the interrupted receive on {action.target_host}:{action.target_dataset}"
                        " is gone (aborted since the plan was made); run plan again",
                        code=ZfsError.RESUME_TOKEN_INVALID)
    planned = decode_resume_token(action.resume_token or "")
    now = decode_resume_token(token)
    if planned is None or now is None or (now.toguid, now.fromguid) != (planned.toguid, planned.fromguid):
        raise ExecError(f"the interrupted receive on {action.target_host}:{action.target_dataset}"
                        " is no longer the one planned (its resume token names another stream);"
                        " run plan again", code=ZfsError.RESUME_TOKEN_INVALID)
    sink.line(f"resume  {action.target_host}:{action.target_dataset} saved more since the plan"
              f" ({human_bytes(planned.bytes)} -> {human_bytes(now.bytes)}); resuming from there")
    return replace(action, resume_token=token)
