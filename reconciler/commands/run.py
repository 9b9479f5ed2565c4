"""``zrepl-reconcile run --every 10m``: the reconcile loop for a long-running service.

Each cycle is exactly ``apply -y``: load the config (so edits take effect without a
restart), gather, plan, execute, report; under the same per-config lock as ``apply``.
A failing cycle (host down, bad config, lock held) is logged and the loop goes on; the
next cycle starts ``--every`` after the previous one STARTED (no drift), or at once if
the previous one took longer.

SIGTERM/SIGINT stop cleanly between actions (exit 0 with a line saying so); a second
signal also interrupts a running transfer, which stays resumable for the next run.

Every cycle ends as an apply does (``api.after_cycle``): recorded in the state file, the
metrics written, ``on_failure`` run when it needs a person; a cycle that could not run
at all (other than finding the lock held: the holder records its own) is recorded too.
``--max-consecutive-failures N`` ends the loop with exit 1 after N failed cycles in a row
(failed actions, or a cycle that could not run), so systemd's Restart=/OnFailure= act.
Under systemd with ``Type=notify`` the loop says READY=1 when it starts, STATUS= with each
cycle's result, STOPPING=1 on a stop, and pings the watchdog (operate/notify.py).
See playbooks/systemd/zrepl-reconcile.service.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler import api
from reconciler.codes import CycleResult, ExitCode
from reconciler.commands.apply import StopSignals, print_report, stop_signals
from reconciler.commands.common import (
    add_as_argument,
    add_config_argument,
    add_metrics_file_argument,
    add_selection_arguments,
    metrics_file_option,
    parse_now,
)
from reconciler.config.grid import parse_duration
from reconciler.config.models import Config
from reconciler.errors import LockError, ReconcileError, UsageError
from reconciler.execute.progress import LogProgress, progress_for_terminal
from reconciler.operate.notify import Notifier
from reconciler.transport.interface import Executor

SLEEP_SLICE = 1.0  # seconds; the loop re-checks for a stop request at least this often


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run", help="reconcile in a loop (apply -y every interval), for a systemd service",
        description="Every --every interval: gather, plan and apply without confirmation. "
                    "A failing cycle is logged and the loop continues. SIGTERM/SIGINT stop "
                    "cleanly between actions.")
    add_config_argument(parser)
    add_selection_arguments(parser)
    add_as_argument(parser)
    parser.add_argument("--every", metavar="DURATION", default="10m",
                        help="time between the starts of two cycles, e.g. 10m, 1h (default: %(default)s)")
    parser.add_argument("--once", action="store_true",
                        help="run one cycle and exit (0 when it succeeded, 1 otherwise)")
    parser.add_argument("--max-consecutive-failures", metavar="N", type=positive_int, default=None,
                        help="exit 1 after N failed cycles in a row (failed actions, or a cycle that "
                             "could not run), so systemd's Restart=/OnFailure= can act (default: never)")
    add_metrics_file_argument(parser)
    parser.set_defaults(func=run)


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def log(text: str) -> None:
    print(f"[{stamp()}] {text}", flush=True)


@dataclass(frozen=True, slots=True)
class CycleEnd:
    ok: bool  # nothing failed
    summary: str  # one line: what the cycle did


def one_cycle(args: argparse.Namespace, signals: StopSignals) -> CycleEnd:
    """gather -> plan -> apply -y -> record; raises ReconcileError when the cycle could not run."""
    from reconciler.render.view import summary_line

    now = parse_now(args.now)
    config = api.load(args.config)  # each cycle: edits take effect without a restart
    started = time.monotonic()
    try:
        with api.session(args.config, config, as_host=args.as_host) as session:
            if note := session.lock.stale_note():
                log(note)
            plan = api.plan(config, hosts=args.hosts, filesystems=args.filesystems, now=now,
                            executors=session.executors, as_host=args.as_host)
            log(summary_line(plan))
            report = None
            if plan.has_changes and not signals.stop.is_set():
                progress = progress_for_terminal() if sys.stderr.isatty() else LogProgress(sys.stdout, 30.0)
                report = api.apply(plan, config, session.executors, progress=progress, stop=signals.stop,
                                   abort=signals.abort)
            cycle = api.Cycle(plan.now, time.monotonic() - started, plan, report)
            record(args, config, cycle, session.executors)
    except LockError:
        raise  # the apply that holds the lock records its own cycle
    except ReconcileError as exc:
        record(args, config, api.Cycle(now, time.monotonic() - started, error=str(exc)), None)
        raise
    if report is None:
        return CycleEnd(True, "no changes" if not plan.has_changes else "stopped before applying")
    print_report(report, plan)
    return CycleEnd(cycle.result != CycleResult.FAILED, report.summary_line())


def record(args: argparse.Namespace, config: Config, cycle: api.Cycle,
           executors: Mapping[str, Executor] | None) -> None:
    for note in api.after_cycle(args.config, config, cycle, executors=executors,
                                metrics_file=metrics_file_option(args.metrics_file)):
        log(note)


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
    metrics_file_option(args.metrics_file)  # a bad path is refused before the loop starts
    notifier = Notifier()
    with stop_signals() as signals:
        notifier.ready(f"started; reconciling {args.config} every {args.every}")
        with notifier.watchdog_pings():  # after READY=1: systemd counts the watchdog from there
            return loop(args, interval, signals, notifier)


def loop(args: argparse.Namespace, interval: float, signals: StopSignals, notifier: Notifier) -> int:
    cycle = 0
    failures = 0  # failed cycles in a row
    while True:
        cycle += 1
        started = time.monotonic()
        log(f"cycle {cycle}: reconciling {args.config}")
        notifier.status(f"cycle {cycle}: reconciling")
        try:
            end = one_cycle(args, signals)
        except ReconcileError as exc:
            end = CycleEnd(False, f"could not run: {exc}")
            log(f"cycle {cycle} failed: {exc}")
        failures = 0 if end.ok else failures + 1
        if args.once:
            return ExitCode.OK if end.ok else ExitCode.ERROR
        if args.max_consecutive_failures is not None and failures >= args.max_consecutive_failures:
            log(f"{failures} failed cycles in a row (--max-consecutive-failures"
                f" {args.max_consecutive_failures}); exiting with 1 so that the service manager can act")
            notifier.stopping(f"exiting after {failures} failed cycles in a row; last: {end.summary}")
            return ExitCode.ERROR
        if not signals.stop.is_set():
            log(f"cycle {cycle} {'done' if end.ok else 'had failures'}; next in {args.every}")
            next_at = datetime.now(UTC).timestamp() + max(0.0, started + interval - time.monotonic())
            notifier.status(f"cycle {cycle} {'done' if end.ok else 'had failures'}: {end.summary}; next at"
                            f" {datetime.fromtimestamp(next_at, UTC):%H:%M:%S}Z")
            sleep_until(started + interval, signals)
        if signals.stop.is_set():
            log(f"stopped by {signals.signal_name or 'request'}; exiting cleanly")
            notifier.stopping(f"stopped by {signals.signal_name or 'request'}")
            return ExitCode.OK
