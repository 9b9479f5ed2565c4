"""What ``plan`` and ``apply`` share: the selection flags, the clock, and computing a plan.

Both commands go through ``compute_plan`` so that ``apply`` executes exactly the plan
that ``plan`` shows for the same arguments.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from reconciler.errors import ReconcileError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from reconciler.config.models import Config
    from reconciler.domain.observed import ObservedState
    from reconciler.domain.plan import Plan
    from reconciler.transport.interface import Executor


class UsageError(ReconcileError):
    """A command-line value is wrong (exit 1 with one message, unlike argparse's exit 2)."""


# The clocks a plan can be made at. Not before the Unix epoch: zfs creation times are
# unix seconds, and the planner compares them with now's. Well before datetime's end
# (year 9999): now plus the longest duration a configuration allows (100 years) stays a
# valid time, and a snapshot name keeps its four-digit year.
EARLIEST_NOW = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_NOW = datetime(9000, 1, 1, tzinfo=UTC)  # excluded


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default="zrepl-reconcile.yml",
                        help="desired-state YAML file (default: %(default)s)")


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
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
                        help="plan as if it were this UTC time, e.g. 2026-11-24T12:00:00Z "
                             "(reproducible plans in tests and CI; default: the current time)")


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
    if not EARLIEST_NOW <= value < LATEST_NOW:
        raise UsageError(f"--now {text!r} is out of range: plans are made for times from "
                         f"{iso_utc(EARLIEST_NOW)} up to (not including) {iso_utc(LATEST_NOW)}")
    return value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_selection(config: Config, hosts: list[str] | None,
                    filesystems: list[str] | None = None) -> None:
    """Refuse flags that cannot select anything, before any host is contacted: a plan for
    them would be empty (or blame hosts that were never asked) instead of saying why."""
    from reconciler.domain.names import check_dataset_name
    from reconciler.planning.selection import describe_managed, unmanaged_filesystems

    unknown = [h for h in hosts or () if h not in config.hosts]
    if unknown:
        raise UsageError(f"--host {', '.join(unknown)}: not a host of the configuration "
                         f"(configured: {', '.join(config.hosts)})")
    for name in filesystems or ():
        try:
            check_dataset_name(name)
        except ValueError as exc:
            raise UsageError(f"--filesystem: {exc}") from None
    unmanaged = unmanaged_filesystems(config, hosts, filesystems or ())
    if unmanaged:
        on_hosts = f" on host {', '.join(hosts)}" if hosts else ""
        elsewhere = ([n for n in unmanaged if not unmanaged_filesystems(config, None, [n])]
                     if hosts else [])
        hint = (f" ({', '.join(elsewhere)} is managed, but not on {', '.join(hosts or ())})"
                if elsewhere else "")
        raise UsageError(
            f"--filesystem {', '.join(unmanaged)}: not managed by the configuration{on_hosts}: no"
            f" filesystems entry selects it or a dataset below it, and it is not a replica (target"
            f" dataset) of one{hint}. Give a source dataset or a target dataset; managed:"
            f" {describe_managed(config)}")


def compute_plan(args: argparse.Namespace, *, explain: bool = False,
                 executors: Mapping[str, Executor] | None = None) -> tuple[Config, ObservedState, Plan]:
    """Load the config, gather only the hosts the selection needs, and plan.

    ``args`` carries ``config``, ``hosts``, ``filesystems`` and ``now`` (see
    ``add_selection_arguments``). ``executors`` (optional, owned by the caller) are reused
    for gathering, so ``apply`` can keep one connection per host for gather and execute;
    without them the needed hosts' executors are opened and closed here.
    """
    from reconciler.config.load import load_config

    now = parse_now(args.now)
    config = load_config(args.config)
    hosts: list[str] | None = args.hosts or None
    filesystems: list[str] | None = args.filesystems or None
    check_selection(config, hosts, filesystems)
    # Imported late: flag and config errors are reported even while these modules change.
    from reconciler.gather.facts import gather
    from reconciler.gather.gc_pause import paused_gc
    from reconciler.planning.planner import hosts_needed, make_plan
    from reconciler.transport.hosts import open_executors

    needed = hosts_needed(config, hosts=hosts, filesystems=filesystems)
    gathered = [h for h in config.hosts if h in needed]
    with paused_gc():
        if executors is None:
            with open_executors(config, gathered) as opened:
                observed = gather(config, opened, gathered)
        else:
            observed = gather(config, executors, gathered)
    plan = make_plan(config, observed, now, hosts=hosts, filesystems=filesystems, explain=explain)
    return config, observed, plan
