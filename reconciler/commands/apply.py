"""``zrepl-reconcile apply``: compute (or verify a saved) plan, show it, confirm, execute it.

The plan is computed exactly as ``plan`` computes it (``api.plan``) and the very same
Action objects are executed. With ``--plan FILE`` the saved plan runs only if it is
exactly the plan computed now (``api.verify``). One apply per configuration at a time
(``api.session`` takes the lock).

Signals: the first SIGTERM/SIGINT stops between actions (the rest is reported as
skipped); a second one also interrupts a running transfer, which stays resumable.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

from reconciler import api
from reconciler.codes import ConflictCode, ExitCode
from reconciler.commands.common import (
    add_as_argument,
    add_config_argument,
    add_metrics_file_argument,
    add_selection_arguments,
    metrics_file_option,
    parse_now,
)
from reconciler.config.models import Config
from reconciler.domain.actions import SendAction
from reconciler.domain.plan import Plan
from reconciler.errors import UsageError
from reconciler.execute.apply import ApplyReport
from reconciler.execute.progress import progress_for_terminal
from reconciler.transport.interface import Executor
from reconciler.wording import plural


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "apply", help="execute the plan (after confirmation)",
        description="Compute the plan as `plan` does (or load one saved with `plan --out`), show it, "
                    "ask for confirmation unless -y, and execute it. Exit 1 if any action failed.")
    add_config_argument(parser)
    add_selection_arguments(parser)
    add_as_argument(parser)
    parser.add_argument("--plan", metavar="FILE", default=None,
                        help="execute this saved plan (from `plan --out FILE`) only if it is exactly "
                             "the plan computed now from the same configuration and facts, at the "
                             "plan's time and selection; refused otherwise (stale, edited), changing nothing")
    parser.add_argument("-y", "--yes", action="store_true",
                        help="do not ask for confirmation (required when stdin is not a terminal)")
    add_metrics_file_argument(parser)
    parser.set_defaults(func=run)


# --------------------------------------------------------------------------- signals

class StopSignals:
    """First SIGTERM/SIGINT sets ``stop`` (between actions), a second one ``abort``."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.abort = threading.Event()
        self.signal_name = ""

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        if self.stop.is_set():
            self.abort.set()
        self.stop.set()


@contextmanager
def stop_signals() -> Iterator[StopSignals]:
    """Install the handlers for the duration (main thread only; elsewhere signals stay default)."""
    signals = StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield signals
        return
    previous = {s: signal.signal(s, signals.handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield signals
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# --------------------------------------------------------------------------- saved plans

def check_saved_plan_options(plan: Plan, args: argparse.Namespace) -> None:
    """A saved plan runs at its own time and selection: --now is refused, and apply's own
    --host/--filesystem, when given, must be the plan's."""
    if args.now:
        raise UsageError(f"--plan {args.plan}: --now cannot be combined with a saved plan, which is "
                         "executed exactly as it was computed, at its own time; drop --now")
    recorded = list(plan.selection.hosts) or None, list(plan.selection.filesystems) or None
    as_given = [args.as_host] if args.as_host else None
    as_saved = [plan.selection.as_host] if plan.selection.as_host else None
    for option, given, saved in (("--host", args.hosts, recorded[0]),
                                 ("--filesystem", args.filesystems, recorded[1]),
                                 ("--as", as_given, as_saved)):
        if given and sorted(given) != sorted(saved or []):
            raise UsageError(
                f"--plan {args.plan}: {option} {' '.join(given)} differs from the selection the plan "
                f"was computed for ({option} {' '.join(saved) if saved else 'not given'}); a saved "
                f"plan is executed exactly as it was computed: drop {option}, or run plan --out again")


# --------------------------------------------------------------------------- confirmation

def confirm(plan: Plan) -> bool:
    """Ask on the terminal; refuse outright when nobody can answer."""
    if not sys.stdin.isatty():
        raise UsageError("refusing to apply without confirmation: stdin is not a terminal; "
                         "review the plan and pass -y to apply non-interactively")
    n = len(plan.actions)
    try:
        answer = input(f"Apply these {plural(n, 'action')}? Only 'yes' or 'y' is accepted: ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


# --------------------------------------------------------------------------- report

def print_report(report: ApplyReport, plan: Plan | None = None, out: Any = None) -> None:
    """Failed and skipped actions with their reasons, then what the plan itself left
    undone (conflicts, unavailable hosts: nothing was attempted there), then the counts."""
    out = out or sys.stdout
    for title, items in (("Failed", report.failed), ("Skipped", report.skipped)):
        if items:
            print(f"\n{title}:", file=out)
            for outcome in items:
                print(f"  {outcome.describe()}: {outcome.message}", file=out)
    not_done = not_attempted(plan) if plan is not None else []
    if not_done:
        print("\nNot attempted (see the plan above):", file=out)
        for line in not_done:
            print(f"  {line}", file=out)
    print(f"\n{report.summary_line()}", file=out)
    if report.failed:
        # A failed send may be the receiving end's fault (modified target, full pool): name both.
        hosts = sorted({o.action.host for o in report.failed}
                       | {o.action.target_host for o in report.failed if isinstance(o.action, SendAction)})
        print(f"Failed on {', '.join(hosts)}: the filesystems listed above are not fully reconciled (what"
              " depended on a failure was skipped); everything reported done was applied. Run"
              " `zrepl-reconcile plan` to see what remains.", file=out)
    if report.saved_plan and report.skipped and not report.stopped:
        print(f"The saved plan promised every one of its actions: the {len(report.skipped)} skipped above"
              " count as failures (exit 1).", file=out)
    if not_done:
        print(f"{len(not_done)} part(s) of the desired state were not attempted (conflicts or unavailable "
              "hosts); they need the fix the plan suggests.", file=out)
    out.flush()


def not_attempted(plan: Plan) -> list[str]:
    """One line per conflict and unavailable host of the plan (no action was planned there)."""
    lines = [f"{c.host}:{c.dataset}: {c.code}: {c.message}" for c in plan.conflicts
             if c.code != ConflictCode.HOST_UNAVAILABLE]
    lines += [f"host {host} unavailable: {why}" for host, why in plan.unavailable]
    return lines


# --------------------------------------------------------------------------- the record

def record_cycle(args: argparse.Namespace, config: Config, cycle: api.Cycle,
                 executors: Mapping[str, Executor]) -> None:
    """The state file, the metrics and on_failure (api.after_cycle); their troubles are
    one line each on stderr and never change the apply's exit code."""
    for note in api.after_cycle(args.config, config, cycle, executors=executors,
                                metrics_file=metrics_file_option(args.metrics_file)):
        print(note, file=sys.stderr)
    sys.stderr.flush()


# --------------------------------------------------------------------------- the command

def run(args: argparse.Namespace) -> int:
    from reconciler.render.text import render_text

    now = None if args.plan else parse_now(args.now)
    metrics_file_option(args.metrics_file)  # a bad path is refused before anything is done
    config = api.load(args.config)
    started = time.monotonic()
    saved = None
    if args.plan:
        saved = api.read_saved(args.plan)
        check_saved_plan_options(saved.plan, args)
    as_host = saved.plan.selection.as_host if saved is not None else args.as_host
    with api.session(args.config, config, as_host=as_host) as session:
        if note := session.lock.stale_note():
            print(note, file=sys.stderr)
        if saved is not None:
            plan = api.verify(saved, config, executors=session.executors)
        else:
            plan = api.plan(config, hosts=args.hosts, filesystems=args.filesystems, now=now,
                            executors=session.executors, as_host=as_host)
        render_text(plan)
        sys.stdout.flush()
        if not plan.has_changes:
            record_cycle(args, config, api.Cycle(plan.now, time.monotonic() - started, plan),
                         session.executors)
            return ExitCode.OK
        if not args.yes and not confirm(plan):
            print("Apply cancelled; nothing was changed.")
            return ExitCode.ERROR
        # Until here Ctrl-C / SIGTERM simply end the command (nothing changed yet);
        # from now on they stop between actions.
        with stop_signals() as signals:
            report = api.apply(plan, config, session.executors, progress=progress_for_terminal(),
                               stop=signals.stop, abort=signals.abort, saved_plan=saved is not None)
        # Under the lock: the record is read, updated and replaced by one apply at a time.
        record_cycle(args, config, api.Cycle(plan.now, time.monotonic() - started, plan, report),
                     session.executors)
    print_report(report, plan)
    if report.stopped:
        # Not a success: part of the plan did not run (`run --every` exits 0 on a stop).
        print(f"Stopped by {signals.signal_name or 'request'} between actions; the skipped actions did"
              " not run (exit 1). Run `zrepl-reconcile plan` to see what remains.")
    return ExitCode.OK if report.ok and not report.stopped else ExitCode.ERROR
