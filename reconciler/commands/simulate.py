"""``zrepl-reconcile simulate``: run the planner forward in time from today's facts and show
what retention keeps, day by day, on the source and every target (table, JSON or a PNG)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from typing import Any

from reconciler import api
from reconciler.codes import ExitCode
from reconciler.commands.common import add_config_argument, parse_now
from reconciler.config.grid import parse_duration
from reconciler.errors import UsageError
from reconciler.planning.forecast import Moment, OutageSpec
from reconciler.render.forecast import render_text, to_json
from reconciler.render.plot import write_plot


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate", help="run plan and apply forward in time and show what retention keeps",
        description="Starting from today's facts (one zfs list per host, or --facts FILE), run the plan that "
                    "apply would run every --step for --days days, as apply would (snapshots, sends, "
                    "pruning), and print per day and filesystem the snapshot counts on the source and each "
                    "target, the oldest and newest kept, and what an outage does. Changes nothing.")
    add_config_argument(parser)
    parser.add_argument("--days", type=int, default=30, help="how many days (default: %(default)s)")
    parser.add_argument("--step", metavar="DURATION", default=None,
                        help="how often apply runs, e.g. 10m or 1h (default: the shortest snapshot interval)")
    parser.add_argument("--outage", action="append", default=[], metavar="HOST:START..END",
                        help="HOST unreachable from START to END, each an offset from the start in one unit"
                             " (2d..84h) or an ISO 8601 time (repeatable)")
    parser.add_argument("--filesystem", action="append", dest="filesystems", metavar="FILESYSTEM",
                        default=None, help="only this source filesystem (and those below it) and its replicas"
                                           " (repeatable)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--plot", metavar="FILE.png", default=None,
                        help="also draw the snapshot counts over time per side (needs matplotlib)")
    parser.add_argument("--facts", metavar="FILE", default=None,
                        help="start from these facts (`zrepl-reconcile facts --format json > FILE`)"
                             " instead of gathering")
    parser.add_argument("--now", metavar="ISO8601", default=None,
                        help="start at this time (default: when the facts were gathered)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = api.load(args.config)
    now = parse_now(args.now) if args.now else None
    outages = [parse_outage(text) for text in args.outage]
    step = parse_step(args.step) if args.step else None
    if args.plot and not args.plot.lower().endswith(".png"):
        raise UsageError(f"--plot {args.plot}: give a file name ending in .png")
    simulation = api.simulate(config, days=args.days, step=step, outages=outages,
                              filesystems=args.filesystems, facts=args.facts, now=now,
                              progress=show_progress if sys.stderr.isatty() else None)
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    forecast = simulation.forecast
    if args.format == "json":
        json.dump(to_json(forecast, simulation.facts_from), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(forecast, simulation.facts_from))
    if args.plot:
        write_plot(forecast, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return ExitCode.OK


def show_progress(day: int, days: int) -> None:
    """One line on a terminal's stderr, rewritten as each simulated day is done."""
    sys.stderr.write(f"\rsimulating: day {day} of {days}")
    sys.stderr.flush()


def parse_step(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--step {exc}") from None


def parse_outage(text: str) -> OutageSpec:
    """``HOST:START..END``: offsets from the simulation's start (``2d``, ``36h``, ``0``) or ISO
    8601 times with a zone (the api checks that it ends after it starts)."""
    host, colon, span = text.partition(":")
    first, dots, last = span.partition("..")
    if not colon or not dots or not host:
        raise UsageError(f"--outage {text!r}: expected HOST:START..END, e.g. backup:2d..3d")
    return OutageSpec(host, _moment(first, text), _moment(last, text))


def _moment(text: str, whole: str) -> Moment:
    text = text.strip()
    if text == "0":
        return timedelta(0)
    try:
        return parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_now(text)
    except UsageError:
        raise UsageError(f"--outage {whole!r}: {text!r} is neither an offset like 2d or 36h nor an ISO 8601"
                         " time like 2026-11-24T12:00:00Z") from None
