"""One send end to end: size it, start both sides, relay the stream, report the error.

The executors start the sides (``StreamingExecutor.start_stream``: which path the bytes
take for the host's kind and the stream's size is the transport's choice) and
``transport.pump.relay`` moves the stream between them; this module decides what to
send, reads a resume token right before resuming, retries a resume that found the
interrupted receive still busy, and names the side whose failure to report.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta

from reconciler.codes import ZfsError
from reconciler.config.grid import format_duration
from reconciler.domain.actions import SendAction
from reconciler.domain.resume_token import decode_resume_token
from reconciler.errors import ExecError
from reconciler.execute import zfs_errors
from reconciler.execute.progress import NullProgress, ProgressSink
from reconciler.transport.interface import Executor, StreamingExecutor, StreamRole
from reconciler.transport.pump import TokenBucket, TransferResult, relay
from reconciler.wording import human_bytes

# Seconds to wait before each new attempt of a resume that found the interrupted receive
# still running (busy) or its token moved on: a receive cut off by a killed controller
# drains what was in flight and saves its state a few seconds later.
RESUME_RETRY_WAITS = (2.0, 5.0, 10.0, 15.0)
RESUME_RETRY_CODES = (ZfsError.BUSY, ZfsError.RESUME_TOKEN_INVALID, ZfsError.RESUME_STATE_EXISTS)


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


def transfer_error(action: SendAction, result: TransferResult) -> ExecError:
    """The one error to report: the side that caused the failure, in zfs's words mapped."""
    what = ""  # the report line already names the send
    if result.stalled:
        waited = format_duration(timedelta(seconds=action.stall_timeout))
        return ExecError(f"stalled: no byte moved for {waited} (stall_timeout) from"
                         f" {action.host}:{action.dataset} to {action.target_host}:{action.target_dataset},"
                         f" after {human_bytes(result.bytes)}; stopped, the receive is resumable and the next"
                         " run resumes it", code=ZfsError.STALLED,
                         stderr=f"send stderr:\n{result.send_stderr}\nrecv stderr:\n{result.recv_stderr}")
    if result.aborted:
        return ExecError(f"stopped after {human_bytes(result.bytes)}; the receive is"
                         " resumable and the next plan resumes it", code=ZfsError.ABORTED,
                         stderr=result.recv_stderr)
    recv_error = zfs_errors.exec_error([], result.recv_returncode, result.recv_stderr, what=what)
    send_error = zfs_errors.exec_error([], result.send_returncode, result.send_stderr, what=what)
    vague = (ZfsError.STREAM_BROKEN, ZfsError.COMMAND_FAILED)
    if result.recv_returncode != 0 and (recv_error.code not in vague or result.send_returncode == 0
                                        or result.sender_stopped):
        if recv_error.code == ZfsError.NO_SPACE:
            return _both(out_of_space(action, recv_error), result)
        return _both(recv_error, result)
    if result.send_returncode != 0:
        return _both(send_error, result)
    return _both(recv_error, result)


def out_of_space(action: SendAction, error: ExecError) -> ExecError:
    """A receive that ran out of space, named by its pool: what the admin must grow or free."""
    pool = action.target_dataset.split("/", 1)[0]
    return ExecError(f"out of space on pool {pool} of {action.target_host} (receiving"
                     f" {action.target_dataset}); free space there: the receive is resumable and the next"
                     f" apply continues it ({error})", code=error.code, stderr=error.stderr)


def _both(error: ExecError, result: TransferResult) -> ExecError:
    stderr = f"send stderr:\n{result.send_stderr}\nrecv stderr:\n{result.recv_stderr}"
    return ExecError(str(error), code=error.code, stderr=stderr)


def transfer_label(action: SendAction) -> str:
    kind = "resume" if action.resume_token else ("full" if action.base is None else "incr")
    return (f"{kind} {action.host}:{action.dataset}@{action.snapshot}"
            f" -> {action.target_host}:{action.target_dataset}")


def run_send(action: SendAction, executors: Mapping[str, StreamingExecutor], *,
             progress: ProgressSink | None = None, abort: threading.Event | None = None,
             sleep: Callable[[float], None] = time.sleep, throttle: TokenBucket | None = None,
             size: int | None = None) -> TransferResult:
    """Execute one SendAction end to end; raises ExecError (mapped zfs message) on failure.

    ``size``: the stream's size when apply already knows it (an incremental's snapshots
    listed once per host after the snapshot phase); otherwise ``zfs send -nP`` asks.
    ``throttle``: the target's bandwidth limit (shared with the other sends to it).

    A resume reads the target's token right before it starts: the interrupted receive
    may have saved more since the facts were gathered (a receive whose controller was
    killed finishes draining later), and zfs refuses a token whose offset is behind.
    While the old receive still runs (busy) or its token moves, the resume waits and
    tries again, a bounded number of times."""
    sink = progress or NullProgress()
    waits = iter(RESUME_RETRY_WAITS if action.resume_token else ())
    while True:
        if action.resume_token:
            action = current_resume(action, executors[action.target_host], sink)
        try:
            return _run_send_once(action, executors, sink, abort, throttle, size)
        except ExecError as exc:
            wait = next(waits, None) if exc.code in RESUME_RETRY_CODES else None
            if wait is None or (abort is not None and abort.is_set()):
                raise
            sink.line(f"retry   {action.describe()} in {wait:g}s: {exc}")
            sleep(wait)


def _run_send_once(action: SendAction, executors: Mapping[str, StreamingExecutor],
                   sink: ProgressSink, abort: threading.Event | None, throttle: TokenBucket | None,
                   size: int | None) -> TransferResult:
    source, target = executors[action.host], executors[action.target_host]
    # The stream's size picks the transfer path and the progress total. Known already for
    # an incremental (its snapshots' `written`, listed after they were taken); otherwise
    # `zfs send -nP`, right before the send. The plan's estimate (gathered on-disk sizes,
    # and the filesystem's `written` for a snapshot not yet taken) is only the fallback.
    total = size if size is not None else estimate_send_size(action, source)
    if total is None:
        total = action.estimated_bytes
    bar = sink.transfer(transfer_label(action), total)
    result = relay(lambda: source.start_stream(action.send_argv(), StreamRole.SEND, total),
                   lambda: target.start_stream(action.recv_argv(), StreamRole.RECEIVE, total),
                   on_progress=bar.update, abort=abort, throttle=throttle,
                   stall_timeout=action.stall_timeout)
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
