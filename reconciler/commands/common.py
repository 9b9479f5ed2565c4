"""What the commands share: the config and selection flags and the clock, turned into the
arguments of reconciler/api.py (``plan`` and ``apply`` both plan with ``api.plan``, so
``apply`` executes exactly the plan that ``plan`` shows for the same arguments)."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime

from reconciler import api
from reconciler.config.models import check_metrics_file
from reconciler.errors import UsageError


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default="zrepl-reconcile.yml",
                        help="desired-state YAML file (default: %(default)s)")


def add_selection_arguments(parser: argparse.ArgumentParser, now_help: str | None = None) -> None:
    """``--host`` and ``--filesystem`` (repeatable) narrow the plan; ``--now`` fixes its clock."""
    parser.add_argument("--host", action="append", dest="hosts", metavar="HOST", default=None,
                        help="only what touches this host: its source filesystems (snapshots, "
                             "pruning, sends to every target) and the replicas it receives (sends "
                             "into them, their pruning; their source host is read too) (repeatable)")
    parser.add_argument("--filesystem", action="append", dest="filesystems", metavar="FILESYSTEM",
                        default=None,
                        help="only this dataset and those below it: a source filesystem with its "
                             "replicas, or a replica (a target dataset such as pool/nas/tank/a, or a "
                             "replicate_to root) with the sends into it and its pruning; a name the "
                             "configuration does not manage is an error (repeatable)")
    parser.add_argument("--now", metavar="ISO8601", default=None,
                        help=now_help or "plan as if it were this UTC time, e.g. 2026-11-24T12:00:00Z "
                                         "(reproducible plans in tests and CI; default: the current time)")


def add_as_argument(parser: argparse.ArgumentParser) -> None:
    """``--as HOST``: that host's own part, for a run on it (plan, apply, run)."""
    parser.add_argument("--as", dest="as_host", metavar="HOST", default=None,
                        help="run as this host, on it: only its own part (its source filesystems: "
                             "snapshots, pruning, sends to every target and the pruning of those "
                             "replicas; not the replicas it receives, which their source's run "
                             "reconciles), with its zfs run locally; for per-host runs of one "
                             "configuration shared by a fleet (not with --host)")


def add_metrics_file_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-file", metavar="PATH", default=None,
                        help="write Prometheus metrics to PATH (*.prom, for node_exporter's textfile "
                             "collector); overrides settings.metrics_file")


def metrics_file_option(text: str | None) -> str | None:
    """``--metrics-file`` checked as ``settings.metrics_file`` is, a relative path taken from
    the working directory (a command line, unlike a service's config, has one)."""
    if text is None:
        return None
    try:
        return check_metrics_file(os.path.abspath(os.path.expanduser(text)))
    except ValueError as exc:
        raise UsageError(f"--metrics-file: {exc}") from None


def parse_now(text: str | None) -> datetime:
    """``--now`` as an aware UTC datetime; the current time (whole seconds) when not given.

    A time without ``Z`` or an offset is refused rather than guessed: a plan computed in
    the wrong zone would snapshot and prune at the wrong moment.
    """
    if text is None:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--now {text!r} is not an ISO 8601 time; "
                         "expected e.g. 2026-11-24T12:00:00Z or 2026-11-24T13:00:00+01:00") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise UsageError(f"--now {text!r} has no time zone; add Z for UTC (e.g. {text.strip()}Z) "
                         "or an offset such as +01:00")
    # Compared before converting: converting year 1 or 9999 with an offset overflows.
    if not api.EARLIEST_NOW <= value < api.LATEST_NOW:
        raise UsageError(f"--now {text!r} is out of range: {api.now_range()}")
    return value.astimezone(UTC)
