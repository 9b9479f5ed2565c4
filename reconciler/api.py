"""The library under the command line: every command is a thin layer over these functions.

    from reconciler import api

    config = api.load("zrepl-reconcile.yml")
    plan = api.plan(config, now=None)              # gathers (one zfs list per host) and plans
    print(plan.summary(), [a.describe() for a in plan.actions])
    with api.session("zrepl-reconcile.yml", config) as session:   # the lock and the connections
        plan = api.plan(config, executors=session.executors)
        report = api.apply(plan, config, session.executors)
    print(report.summary_line())

    simulation = api.simulate(config, days=30)    # the planner run forward: what retention keeps
    result = api.import_sanoid("/etc/sanoid/sanoid.conf")   # another tool's configuration as ours
    print(result.text)                             # commented YAML that validate accepts

Operating it: ``status`` (the facts and the record of the last applies, judged by
``planning/health.py``), ``after_cycle`` (what every apply/run cycle does when it ends:
record it in the state file, write the metrics, run ``on_failure``) and
``write_metrics``.

Plain arguments in, plain values out (Config, ObservedState, Plan, ApplyReport, Status);
errors are the ReconcileError tree of reconciler/errors.py. Nothing here prints or reads argv.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.config.load import load_config
from reconciler.config.models import Config
from reconciler.domain.observed import ObservedState
from reconciler.domain.plan import Plan
from reconciler.domain.record import StateRecord
from reconciler.errors import ReconcileError, StalePlanError, UsageError
from reconciler.execute.apply import ApplyReport, apply_plan
from reconciler.execute.lock import ConfigLock
from reconciler.execute.progress import ProgressSink
from reconciler.gather.facts import gather
from reconciler.gather.facts_json import read_facts_file
from reconciler.gather.gc_pause import paused_gc
from reconciler.importers.draft import ImportResult
from reconciler.importers.emit import emit
from reconciler.importers.sanoid import DEFAULT_PREFIX
from reconciler.importers.sanoid import import_sanoid as _import_sanoid
from reconciler.importers.znapzend import import_znapzend as _import_znapzend
from reconciler.importers.zrepl import import_zrepl as _import_zrepl
from reconciler.operate.metrics import write_metrics as write_metrics_file
from reconciler.operate.on_failure import TIMEOUT_SECONDS, failure_report, run_on_failure
from reconciler.operate.record import Cycle as Cycle
from reconciler.operate.record import updated_record
from reconciler.operate.state_file import read_state, real_config_path, state_path, write_state
from reconciler.planfile.read import SavedPlan, read_plan_file
from reconciler.planfile.verify import check_plan_time, refusal
from reconciler.planning.forecast import Forecast, Outage, OutageSpec, forecast
from reconciler.planning.health import Status, assess
from reconciler.planning.planner import hosts_needed, make_plan
from reconciler.planning.selection import check_selection
from reconciler.transport.hosts import open_executors
from reconciler.transport.interface import Executor, StreamingExecutor

# The clocks a plan can be made at. Not before the Unix epoch: zfs creation times are
# unix seconds, and the planner compares them with now's. Well before datetime's end
# (year 9999): now plus the longest duration a configuration allows (100 years) stays a
# valid time, and a snapshot name keeps its four-digit year.
EARLIEST_NOW = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_NOW = datetime(9000, 1, 1, tzinfo=UTC)  # excluded


def load(path: str | os.PathLike[str]) -> Config:
    """The desired state of a configuration file; ConfigError lists every problem with its
    FILE:LINE:COL and field."""
    return load_config(path)


def facts(config: Config, hosts: Collection[str] | None = None, *,
          executors: Mapping[str, Executor] | None = None) -> ObservedState:
    """What the hosts hold (default: every configured host): one ``zfs list`` each, in
    parallel; a host that fails is in ``unavailable`` with the reason."""
    names = list(hosts) if hosts is not None else None
    with _connected(config, names, executors) as opened, paused_gc():
        return gather(config, opened, names)


def plan(config: Config, *, hosts: Collection[str] | None = None,
         filesystems: Collection[str] | None = None, now: datetime | None = None, explain: bool = False,
         executors: Mapping[str, Executor] | None = None, as_host: str | None = None) -> Plan:
    """Gather the hosts the selection needs and plan (``make_plan``): what ``plan`` prints
    and ``apply`` runs. ``hosts``/``filesystems`` narrow it as ``--host``/``--filesystem``
    do, ``as_host`` as ``--as`` (that host's own part, its zfs run on this machine); ``now``
    defaults to the current time; ``executors`` (owned by the caller, e.g. a ``session``'s)
    are reused, otherwise the needed hosts are connected and closed here."""
    when = check_now(now if now is not None else datetime.now(UTC).replace(microsecond=0))
    host_list, filesystem_list = list(hosts or ()) or None, list(filesystems or ()) or None
    check_selection(config, host_list, filesystem_list, as_host)
    observed = _gather_for(config, host_list, filesystem_list, executors, as_host)
    return make_plan(config, observed, when, hosts=host_list, filesystems=filesystem_list, explain=explain,
                     as_host=as_host)


def read_saved(path: str) -> SavedPlan:
    """A saved plan (``plan --out FILE``) read strictly: PlanFileError for anything that is not
    a plan this tool wrote, unedited (reconciler/planfile/read.py)."""
    return read_plan_file(path)


def verify(saved: SavedPlan, config: Config, *, executors: Mapping[str, Executor] | None = None,
           clock: datetime | None = None) -> Plan:
    """Verify, then run: the facts gathered again and the plan recomputed at the saved plan's
    time and selection with ``config``; the recomputed plan when it is exactly the saved one,
    else StalePlanError saying why and what differs (reconciler/planfile/verify.py).
    ``clock``: this machine's time (a plan made for a later time is refused)."""
    path = saved.path
    check_plan_time(path, saved.plan.now, clock or datetime.now(UTC))
    hosts = list(saved.plan.selection.hosts) or None
    filesystems = list(saved.plan.selection.filesystems) or None
    as_host = saved.plan.selection.as_host
    try:
        check_selection(config, hosts, filesystems, as_host)
    except UsageError as exc:
        raise StalePlanError(f"the saved plan {path} is stale: the configuration changed and no longer has"
                             f" what the plan was computed for ({exc}); nothing was changed. Run"
                             " `zrepl-reconcile plan --out` again and review the new plan") from None
    observed = _gather_for(config, hosts, filesystems, executors, as_host)
    current = make_plan(config, observed, saved.plan.now, hosts=hosts, filesystems=filesystems,
                        as_host=as_host)
    error = refusal(path, saved.plan, saved.document["actions"], current)
    if error is not None:
        raise error
    return current


def apply(plan: Plan, config: Config, executors: Mapping[str, StreamingExecutor], *,
          progress: ProgressSink | None = None, stop: threading.Event | None = None,
          abort: threading.Event | None = None, saved_plan: bool = False) -> ApplyReport:
    """Run the plan's actions in order, one filesystem's failure isolated; never raises for
    a failing action (the report has it). ``stop`` ends the apply between actions, ``abort``
    also interrupts a transfer (it stays resumable); with ``saved_plan`` a skipped action is
    a failure."""
    return apply_plan(plan, config, executors, progress=progress, stop=stop, abort=abort,
                      saved_plan=saved_plan)


@dataclass(frozen=True, slots=True)
class Session:
    """An apply's hold on a configuration: its lock and one connection per host."""

    lock: ConfigLock
    executors: dict[str, StreamingExecutor]


@contextmanager
def session(config_path: str | os.PathLike[str], config: Config, *,
            as_host: str | None = None) -> Iterator[Session]:
    """Take the configuration's apply lock (LockError naming the holder's PID when another
    apply runs) and open every host's executor (``as_host``'s runs on this machine: ``--as``);
    both are released when the block ends."""
    with ConfigLock(config_path) as lock, open_executors(config, here=as_host) as executors:
        yield Session(lock, executors)


@dataclass(frozen=True, slots=True)
class StatusReport:
    """What ``status`` shows: the health, the record it was judged with, where that record
    lives, and one line per problem with the record itself (missing, corrupt)."""

    status: Status
    record: StateRecord
    state_file: Path
    notes: tuple[str, ...] = ()


def status(config_path: str | os.PathLike[str], config: Config, *, hosts: Collection[str] | None = None,
           filesystems: Collection[str] | None = None, now: datetime | None = None,
           max_lag: timedelta | None = None, executors: Mapping[str, Executor] | None = None) -> StatusReport:
    """The replication health of the selection (``hosts``/``filesystems`` as for ``plan``):
    one ``zfs list`` per needed host and the configuration's state file, judged at ``now``
    (default: the current time); ``max_lag`` makes a longer lag a problem."""
    when = check_now(now if now is not None else datetime.now(UTC).replace(microsecond=0))
    host_list, filesystem_list = list(hosts or ()) or None, list(filesystems or ()) or None
    check_selection(config, host_list, filesystem_list)
    observed = _gather_for(config, host_list, filesystem_list, executors)
    loaded = read_state(state_path(config_path, config.settings.state_dir), config_path)
    health = assess(config, observed, loaded.record, when, hosts=host_list, filesystems=filesystem_list,
                    max_lag=max_lag)
    return StatusReport(health, loaded.record, loaded.path, (loaded.note,) if loaded.note else ())


def write_metrics(path: str | os.PathLike[str], report: StatusReport) -> None:
    """The Prometheus metrics of a status, written atomically to ``path`` (OSError when the
    directory is missing or not writable)."""
    write_metrics_file(os.path.expanduser(os.fspath(path)), report.status, report.record)


def after_cycle(config_path: str | os.PathLike[str], config: Config, cycle: Cycle, *,
                executors: Mapping[str, Executor] | None = None, metrics_file: str | None = None,
                on_failure_timeout: float = TIMEOUT_SECONDS) -> tuple[str, ...]:
    """What every apply/run cycle does when it ends; never raises for its own troubles,
    which it returns as one line each: fold the cycle into the state file; write the
    metrics (``metrics_file``, else ``settings.metrics_file``) from the hosts listed once
    more, so they show what the apply left; run ``settings.on_failure`` when the cycle
    had failed actions, unreachable hosts or could not run."""
    notes: list[str] = []
    loaded = read_state(state_path(config_path, config.settings.state_dir), config_path)
    if loaded.note:
        notes.append(loaded.note)
    record = updated_record(loaded.record, config, cycle)
    try:
        write_state(loaded.path, record)
    except OSError as exc:
        notes.append(f"state: cannot write {loaded.path}: {exc.strerror or exc}; `status` shows the"
                     " previous record")
    target = metrics_file or config.settings.metrics_file
    if target:
        try:
            observed = facts(config, executors=executors)
            health = assess(config, observed, record, cycle.now)
            write_metrics(target, StatusReport(health, record, loaded.path))
        except (OSError, ReconcileError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            notes.append(f"metrics: cannot write {target}: {why}")
    argv = config.settings.on_failure
    if argv and cycle.needs_attention():
        notes.append(run_on_failure(argv, failure_report(real_config_path(config_path), cycle),
                                    timeout=on_failure_timeout))
    return tuple(notes)


@dataclass(frozen=True, slots=True)
class Simulation:
    """What ``simulate`` computed and from what: the forecast, and where its facts came from."""

    forecast: Forecast
    facts_from: str  # "the facts gathered at ..." or "the facts in FILE (gathered ...)"


def simulate(config: Config, *, days: int = 30, step: timedelta | None = None,
             outages: Sequence[Outage | OutageSpec] = (), filesystems: Collection[str] | None = None,
             facts: str | None = None, now: datetime | None = None,
             executors: Mapping[str, Executor] | None = None,
             progress: Callable[[int, int], None] | None = None) -> Simulation:
    """Run the planner forward ``days`` days from today's facts (one gather, or the facts file
    ``facts`` written by ``facts --format json``): every ``step`` (default: the shortest snapshot
    interval of the policies) the plan apply would run, applied as the planner assumes;
    ``outages`` make hosts unreachable for a while. Changes nothing: no zfs command runs but
    the one listing per host of the gather."""
    filesystem_list = list(filesystems or ()) or None
    check_selection(config, None, filesystem_list)
    for outage in outages:
        if outage.host not in config.hosts:
            raise UsageError(f"--outage {outage.host}: no such host (configured: {', '.join(config.hosts)})")
    if not 1 <= days <= MAX_SIMULATED_DAYS:
        raise UsageError(f"--days {days}: simulate 1 to {MAX_SIMULATED_DAYS} days")
    if facts is not None:
        observed, gathered_at = read_facts_file(facts)
        start = check_now(now or gathered_at or datetime.now(UTC).replace(microsecond=0))
        when = f" gathered {gathered_at:%Y-%m-%d %H:%M} UTC" if gathered_at else ""
        facts_from = f"the facts in {facts}{when}"
    else:
        start = check_now(now or datetime.now(UTC).replace(microsecond=0))
        observed = _gather_for(config, None, filesystem_list, executors)
        facts_from = f"the facts gathered at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    resolved = [o.at(start) if isinstance(o, OutageSpec) else o for o in outages]
    for outage in resolved:
        if outage.end <= outage.start:
            raise UsageError(f"--outage {outage.host}: ends ({outage.end:%Y-%m-%d %H:%M}) before it starts"
                             f" ({outage.start:%Y-%m-%d %H:%M})")
    interval = step or default_step(config)
    if interval < MIN_STEP or (days * timedelta(days=1)) / interval > MAX_SIMULATED_RUNS:
        raise UsageError(f"--step {interval}: at least {MIN_STEP.seconds}s and at most"
                         f" {MAX_SIMULATED_RUNS} runs in {days} days")
    return Simulation(forecast(config, observed, start, days=days, step=interval, outages=resolved,
                               filesystems=filesystem_list, progress=progress), facts_from)


MAX_SIMULATED_DAYS = 3660
MAX_SIMULATED_RUNS = 1_000_000
MIN_STEP = timedelta(seconds=1)


def default_step(config: Config) -> timedelta:
    """How often apply would run: the shortest snapshot interval of the policies (1h if none)."""
    intervals = [p.snapshots.interval_delta for p in config.policies.values() if p.snapshots is not None]
    return min(intervals, default=timedelta(hours=1))


def import_zrepl(paths: Sequence[str]) -> ImportResult:
    """zrepl daemon configurations, one file per machine (the first is where zrepl-reconcile
    will run), merged into one configuration: ``result.text`` (commented YAML that ``validate``
    accepts), ``result.config`` and ``result.notes`` (what does not map, placeholders to fill in,
    differences). ConfigError with FILE:LINE:COL for an invalid zrepl configuration."""
    return emit(_import_zrepl(list(paths)))


def import_sanoid(path: str, *, defaults: str | None = None, prefix: str = DEFAULT_PREFIX) -> ImportResult:
    """A sanoid.conf (with ``defaults``, else the sanoid.defaults.conf next to it, else sanoid
    2.1.0's): our schedule takes over under ``prefix``, sanoid's autosnaps keep sanoid's rule."""
    return emit(_import_sanoid(path, defaults=defaults, prefix=prefix))


def import_znapzend(path: str, *, prefix: str = DEFAULT_PREFIX) -> ImportResult:
    """znapzend's org.znapzend properties (``zfs get -H -o name,property,value -s local all`` or
    ``znapzendzetup export``): plans as grids, destinations as targets."""
    return emit(_import_znapzend(path, prefix=prefix))


def check_now(now: datetime) -> datetime:
    """``now`` in UTC when a plan can be made at it (aware, within EARLIEST_NOW..LATEST_NOW)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise UsageError(f"now {now.isoformat()} has no time zone")
    # Compared before converting: converting year 1 or 9999 with an offset overflows.
    if not EARLIEST_NOW <= now < LATEST_NOW:
        raise UsageError(f"now {now.isoformat()} is out of range: {now_range()}")
    return now.astimezone(UTC)


def now_range() -> str:
    return (f"plans are made for times from {EARLIEST_NOW:%Y-%m-%dT%H:%M:%SZ} up to (not including)"
            f" {LATEST_NOW:%Y-%m-%dT%H:%M:%SZ}")


def _gather_for(config: Config, hosts: list[str] | None, filesystems: list[str] | None,
                executors: Mapping[str, Executor] | None, as_host: str | None = None) -> ObservedState:
    needed = hosts_needed(config, hosts=hosts, filesystems=filesystems, as_host=as_host)
    names = [h for h in config.hosts if h in needed]
    with _connected(config, names, executors, here=as_host) as opened, paused_gc():
        return gather(config, opened, names)


@contextmanager
def _connected(config: Config, names: list[str] | None, executors: Mapping[str, Executor] | None,
               here: str | None = None) -> Iterator[Mapping[str, Executor]]:
    """The caller's executors as they are, or those of ``names`` opened for the block."""
    if executors is not None:
        yield executors
        return
    with open_executors(config, names, here=here) as opened:
        yield opened
