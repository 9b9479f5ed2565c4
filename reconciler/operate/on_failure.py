"""``settings.on_failure``: a command run after a cycle that needs a person (failed actions,
unreachable hosts, a cycle that could not run), with a JSON report on its stdin.

The command is an argv (no shell), started in a session of its own so that a timeout
kills it and everything it started; what it prints is logged (clipped). Its own failure
(not found, non-zero exit, timeout) is one logged line and never fails the cycle: an
alerting path that breaks must not stop the backups.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
from typing import Any

from reconciler import __version__
from reconciler.domain.record import format_time
from reconciler.errors import clip
from reconciler.execute.apply import FAILED
from reconciler.operate.record import Cycle, action_status

REPORT_FORMAT_VERSION = 1
TIMEOUT_SECONDS = 60.0
MAX_LISTED = 100  # failed actions and conflicts listed in the report; the rest are counted
MAX_MESSAGE_CHARS = 1000


def failure_report(config_path: str, cycle: Cycle) -> dict[str, Any]:
    """The JSON document on the command's stdin (docs/operate.md lists its keys)."""
    statuses = action_status(cycle.report.outcomes) if cycle.report is not None else {}
    failed = [o for o in (cycle.report.outcomes if cycle.report is not None else ()) if o.status == FAILED]
    conflicts = list(cycle.plan.conflicts) if cycle.plan is not None else []
    return {
        "format_version": REPORT_FORMAT_VERSION, "tool_version": __version__, "config": config_path,
        "machine": socket.gethostname(), "at": format_time(cycle.now), "result": str(cycle.result),
        "seconds": round(cycle.seconds, 3), "error": clip(cycle.error, MAX_MESSAGE_CHARS),
        "summary": {status: sum(1 for _, s in statuses.values() if s == status)
                    for status in ("done", "failed", "skipped")},
        "failed": [_failed_json(o.action, o.code, o.message) for o in failed[:MAX_LISTED]],
        "failed_not_listed": max(0, len(failed) - MAX_LISTED),
        "unavailable": [{"host": h, "reason": clip(r, MAX_MESSAGE_CHARS)}
                        for h, r in (cycle.plan.unavailable if cycle.plan is not None else ())],
        "conflicts": [{"code": c.code, "host": c.host, "dataset": c.dataset,
                       "message": clip(c.message, MAX_MESSAGE_CHARS)} for c in conflicts[:MAX_LISTED]],
        "conflicts_not_listed": max(0, len(conflicts) - MAX_LISTED),
    }


def _failed_json(action: Any, code: str, message: str) -> dict[str, Any]:
    return {"kind": action.kind, "host": action.host, "dataset": action.dataset,
            "target_host": getattr(action, "target_host", None),
            "target_dataset": getattr(action, "target_dataset", None),
            "description": action.describe(), "code": code, "message": clip(message, MAX_MESSAGE_CHARS)}


def run_on_failure(argv: list[str], report: dict[str, Any], timeout: float = TIMEOUT_SECONDS) -> str:
    """Run the command with the report on stdin; one line saying how it went (never raises
    for the command's own failure)."""
    name = argv[0]
    payload = json.dumps(report, indent=1).encode() + b"\n"
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    except OSError as exc:
        return f"on_failure: could not start {name}: {exc.strerror or exc}"
    try:
        output, _ = proc.communicate(payload, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return f"on_failure: {name} did not finish within {timeout:g}s and was killed"
    text = clip(output.decode("utf-8", "replace").strip(), 300)
    said = f": {text}" if text else ""
    if proc.returncode != 0:
        return f"on_failure: {name} failed with exit {proc.returncode}{said}"
    return f"on_failure: ran {name}{said}"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the command and what it started
    with contextlib.suppress(subprocess.TimeoutExpired, OSError, ValueError):
        proc.communicate(timeout=5)
