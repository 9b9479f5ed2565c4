"""``zrepl-reconcile status``: is every filesystem replicated, and how far behind is each
target? A monitoring check as it is.

Exit codes: 0 healthy; 1 an error (bad config or flags: the check could not judge); 2
unhealthy: a target lags more than ``--max-lag``, a filesystem's last apply failed or met
a conflict, a host is unreachable, or the last ``run`` cycle could not run. (Nagios and
Icinga read 0/1/2 as OK/WARNING/CRITICAL: README "Monitoring".)
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from typing import Any

from reconciler import api
from reconciler.codes import ExitCode
from reconciler.commands.common import (
    add_config_argument,
    add_metrics_file_argument,
    add_selection_arguments,
    metrics_file_option,
    parse_now,
)
from reconciler.config.grid import parse_duration
from reconciler.errors import UsageError
from reconciler.render.status import render_status_text, status_json, write_status_markdown


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status", help="replication lag, snapshots waiting, last apply results; exit 2 when unhealthy",
        description="Read the hosts (one zfs list each) and the record of the last applies, and show per "
                    "source filesystem and target the newest replicated snapshot and its age (the lag), "
                    "the snapshots waiting, the last apply's result, snapshot counts and space. Exit 0 "
                    "healthy, 1 error, 2 unhealthy (a lag over --max-lag, a failed last apply, an "
                    "unreachable host).")
    add_config_argument(parser)
    add_selection_arguments(parser, now_help="judge the lag as if it were this UTC time, e.g. "
                                             "2026-11-24T12:00:00Z (default: the current time)")
    parser.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                        help="text for a terminal or a monitoring check (first line: OK or UNHEALTHY), "
                             "markdown, json for scripts (default: %(default)s)")
    parser.add_argument("--max-lag", metavar="DURATION", default=None,
                        help="unhealthy (exit 2) when a target's lag is longer, e.g. 2h (default: the lag"
                             " alone is never a problem)")
    add_metrics_file_argument(parser)
    parser.set_defaults(func=run)


def parse_max_lag(text: str | None) -> timedelta | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--max-lag: {exc}") from None


def run(args: argparse.Namespace) -> int:
    max_lag = parse_max_lag(args.max_lag)
    metrics_file = metrics_file_option(args.metrics_file)
    config = api.load(args.config)
    report = api.status(args.config, config, hosts=args.hosts, filesystems=args.filesystems,
                        now=parse_now(args.now), max_lag=max_lag)
    if args.format == "json":
        json.dump(status_json(report.status, str(report.state_file), report.notes), sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif args.format == "markdown":
        write_status_markdown(report.status, sys.stdout, report.notes)
    else:
        render_status_text(report.status, report.notes)
    sys.stdout.flush()
    target = metrics_file or config.settings.metrics_file
    if target:
        try:
            api.write_metrics(target, report)
        except OSError as exc:
            print(f"warning: metrics: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
    return ExitCode.OK if report.status.healthy else ExitCode.UNHEALTHY
