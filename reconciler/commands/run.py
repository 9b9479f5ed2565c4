"""``zrepl-reconcile run --every 10m``: the reconcile loop for a long-running service.

Each cycle is exactly ``apply -y``: load the config (so edits take effect without a
restart), gather, plan, execute, report; under the same per-config lock as ``apply``.
A failing cycle (host down, bad config, lock held) is logged and the loop goes on; the
next cycle starts ``--every`` after the previous one STARTED (no drift), or at once if
the previous one took longer.

SIGTERM/SIGINT stop cleanly between actions (exit 0 with a line saying so); a second
signal also interrupts a running transfer, which stays resumable for the next run.
See playbooks/systemd/zrepl-reconcile.service.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

from reconciler import api
from reconciler.codes import ExitCode
from reconciler.commands.apply import StopSignals, print_report, stop_signals
from reconciler.commands.common import add_config_argument, add_selection_arguments, parse_now
from reconciler.config.grid import parse_duration
from reconciler.errors import ReconcileError, UsageError
from reconciler.execute.progress import LogProgress, progress_for_terminal

SLEEP_SLICE = 1.0  # seconds; the loop re-checks for a stop request at least this often


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run", help="reconcile in a loop (apply -y every interval), for a systemd service",
        description="Every --every interval: gather, plan and apply without confirmation. "
                    "A failing cycle is logged and the loop continues. SIGTERM/SIGINT stop "
                    "cleanly between actions.")
    add_config_argument(parser)
    add_selection_arguments(parser)
    parser.add_argument("--every", metavar="DURATION", default="10m",
                        help="time between the starts of two cycles, e.g. 10m, 1h (default: %(default)s)")
    parser.add_argument("--once", action="store_true",
                        help="run one cycle and exit (0 when it succeeded, 1 otherwise)")
    parser.set_defaults(func=run)


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def log(text: str) -> None:
    print(f"[{stamp()}] {text}", flush=True)


def one_cycle(args: argparse.Namespace, signals: StopSignals) -> bool:
    """gather -> plan -> apply -y; True when nothing failed. Raises ReconcileError."""
    from reconciler.render.view import summary_line

    now = parse_now(args.now)
    config = api.load(args.config)  # each cycle: edits take effect without a restart
    with api.session(args.config, config) as session:
        if note := session.lock.stale_note():
            log(note)
        plan = api.plan(config, hosts=args.hosts, filesystems=args.filesystems, now=now,
                        executors=session.executors)
        log(summary_line(plan))
        if not plan.has_changes or signals.stop.is_set():
            return True
        progress = progress_for_terminal() if sys.stderr.isatty() else LogProgress(sys.stdout, 30.0)
        report = api.apply(plan, config, session.executors, progress=progress, stop=signals.stop,
                           abort=signals.abort)
    print_report(report, plan)
    return report.ok


def sleep_until(deadline: float, signals: StopSignals) -> None:
    while not signals.stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        signals.stop.wait(min(remaining, SLEEP_SLICE))


def run(args: argparse.Namespace) -> int:
    try:
        interval = parse_duration(args.every).total_seconds()
    except ValueError as exc:
        raise UsageError(f"--every: {exc}") from None
    cycle = 0
    with stop_signals() as signals:
        while True:
            cycle += 1
            started = time.monotonic()
            log(f"cycle {cycle}: reconciling {args.config}")
            try:
                ok = one_cycle(args, signals)
            except ReconcileError as exc:
                ok = False
                log(f"cycle {cycle} failed: {exc}")
            if args.once:
                return ExitCode.OK if ok else ExitCode.ERROR
            if not signals.stop.is_set():
                log(f"cycle {cycle} {'done' if ok else 'had failures'}; next in {args.every}")
                sleep_until(started + interval, signals)
            if signals.stop.is_set():
                log(f"stopped by {signals.signal_name or 'request'}; exiting cleanly")
                return ExitCode.OK
