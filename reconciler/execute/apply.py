"""Execute a plan's very actions, in the plan's order, one filesystem's failure isolated.

The plan is in the vocabulary's execution order (``EXECUTION_ORDER``: the snapshot phase
(each filesystem's pre hooks, its snapshot, its post hooks), create, abort_resume, hold,
send, hold_received, bookmark (the cursor move), release, destroy; the planner's ``order_actions``) and
apply walks it as it is, refusing a plan that is not. A snapshot batch runs at its first
member: ONE atomic ``zfs snapshot`` per batch key; when it fails, each member on its own
so one broken filesystem does not hold back the others. A snapshot with hooks is a batch
of its own; which of its hooks run is ``execute/hooks.py``'s (a post hook runs whenever
its hook was entered, even after a failure or a stop request). A failing pre hook with
``err_is_fatal`` fails its filesystem like a failed snapshot; any other hook failure is
reported (the apply exits 1) but blocks nothing.

Failure isolation (DESIGN.md invariant 6): an action that fails or is skipped marks
the filesystems it touches; later actions that depend on a marked filesystem are
skipped with the reason, everything else goes on. A send marks both its source and
its target: the cursor move and the source destroys were planned assuming the send
arrived, the target's destroys assuming the receive happened. Another send from the
same source to a different target does not depend on the first one and still runs.

Parallel sends (``settings.parallel_sends``, ``apply --parallel N``): the send phase runs
up to N sends at a time, each starting once the sends it depends on have ended
(``send_dependencies``: a filesystem's own chain in order, a parent's receive before its
children's, a dataset received before it is sent on); the phases stay barriers, so every
snapshot is taken before any send, and cursor moves and destroys come after all sends.
The cursor moves and destroys after the sends run N at a time too (different datasets are
independent; the same dataset's in order); holds and releases are one batched command per
host and tag either way. A stop request starts no further
action; an abort interrupts the running transfers (their receives stay resumable).

Right before the destroys, their datasets (and their replication counterparts) are
listed again, one ``zfs list -d 1`` per host (again for the destroys still to come when
the listing is more than FRESH_SECONDS old), and safety invariants 1-4 re-checked for
each destroy with the planner's own function; names no longer safe are dropped and
reported as skipped, names that vanished likewise.

Channel programs: on a host the plan routes as ``channel_program`` (its zfs runs as root,
``channel_programs: auto``; ``planning/metadata.py``), the bookmark phase's runnable actions
run as ONE ``zfs program`` per pool, and the destroy phase's snapshot names, after the same
re-check, likewise (``execute/channel.py``; bookmark destroys stay one command each). Each
name's errno becomes its action's outcome, as one command per action would report it; a
failure marks the filesystem. When zfs refuses a program (not root, no such subcommand, a
Lua error: the script checks all its arguments before its first change) the host is noted
once and runs the rest, the refused program's actions included, one command per action.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import assert_never

from reconciler.codes import HOST_DOWN, MetadataPath, ZfsError
from reconciler.config.models import Config
from reconciler.domain.actions import (
    EXECUTION_ORDER,
    MAX_ARGV_BYTES,
    AbortResumeAction,
    Action,
    BookmarkAction,
    CreateAction,
    DestroyAction,
    HoldAction,
    HoldReceivedAction,
    Kind,
    PostHookAction,
    PreHookAction,
    ReleaseAction,
    SendAction,
    SnapshotAction,
    TagAction,
    out_of_order,
    sized_groups,
    snapshot_batch_argv,
    snapshot_ref,
    tag_batch_argv,
)
from reconciler.domain.names import lineage
from reconciler.domain.observed import HostFacts, ObservedState
from reconciler.domain.plan import Plan
from reconciler.errors import ExecError, HostError, ReconcileError
from reconciler.execute import zfs_errors
from reconciler.execute.channel import Op, chunked, errno_error, run_program
from reconciler.execute.hooks import HookPhase, hook_phases, run_hook, snapshot_key
from reconciler.execute.progress import NullProgress, ProgressSink
from reconciler.execute.transfer import run_send
from reconciler.gather.facts import list_datasets, snapshot_written
from reconciler.planning.invariants import destroy_guard
from reconciler.planning.metadata import pool_of
from reconciler.transport.interface import Executor, StreamingExecutor
from reconciler.transport.pump import TokenBucket
from reconciler.wording import human_bytes

DONE = "done"
FAILED = "failed"
SKIPPED = "skipped"

# A destroy's re-check never uses facts listed longer ago than this (seconds).
FRESH_SECONDS = 30.0


Key = tuple[str, str]  # (host, dataset)
# One operation of a channel program: (its action, the destroy names it covers, the operation).
ProgramItem = tuple[Action, tuple[str, ...], Op]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one action (or, for a destroy, to some of its names)."""

    action: Action
    status: str  # DONE | FAILED | SKIPPED
    message: str = ""  # why it failed / was skipped (mapped zfs error), or a detail when done
    code: str = ""  # ExecError code for failures ("held", "diverged", ...), "" otherwise
    names: tuple[str, ...] = ()  # the destroy names this outcome covers (all when empty)
    seconds: float = 0.0
    bytes: int | None = None  # bytes streamed, for sends

    def describe(self) -> str:
        text = self.action.describe()
        if self.names and isinstance(self.action, DestroyAction) and self.names != self.action.snapshots:
            snaps = [n for n in self.names if not n.startswith("#")]
            refs = [f"{self.action.dataset}{n}" for n in self.names if n.startswith("#")]
            if snaps:
                refs.insert(0, f"{self.action.dataset}@{','.join(snaps)}")
            text = f"destroy {' '.join(refs)}"
        return text

    def line(self) -> str:
        head = f"{self.status:<7} {self.describe()}"
        if self.status == DONE and self.bytes is not None:
            detail = f"; {self.message}" if self.message else ""
            head += f" ({human_bytes(self.bytes)} in {self.seconds:.1f}s{detail})"
        return f"{head}: {self.message}" if self.message and self.status != DONE else head


@dataclass(slots=True)
class ApplyReport:
    outcomes: list[Outcome] = field(default_factory=list)
    stopped: bool = False  # a stop request ended the apply between actions
    # A saved plan promised every one of its actions: a skipped one is a failure too.
    saved_plan: bool = False
    # What changed how actions ran, once per host (a refused channel program).
    notes: list[str] = field(default_factory=list)

    def _with(self, status: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def done(self) -> list[Outcome]:
        return self._with(DONE)

    @property
    def failed(self) -> list[Outcome]:
        return self._with(FAILED)

    @property
    def skipped(self) -> list[Outcome]:
        return self._with(SKIPPED)

    @property
    def ok(self) -> bool:
        return not self.failed and not (self.saved_plan and self.skipped)

    def summary_line(self) -> str:
        text = f"Apply: {len(self.done)} done, {len(self.failed)} failed, {len(self.skipped)} skipped."
        if self.stopped:
            text += " Stopped on request before the remaining actions."
        return text


# --------------------------------------------------------------------------- bookkeeping

@dataclass(slots=True)
class Ledger:
    """Which filesystems and hosts are broken so far, and by which kind of action."""

    broken: dict[Key, tuple[Kind, str]] = field(default_factory=dict)  # key -> (kind, why)
    down_hosts: dict[str, str] = field(default_factory=dict)

    def mark(self, key: Key, kind: Kind, why: str) -> None:
        self.broken.setdefault(key, (kind, why))

    def mark_action(self, action: Action, why: str) -> None:
        for key in touched(action):
            self.mark(key, action.kind, why)

    def blocker(self, action: Action) -> str:
        """Why ``action`` must not run now, or "" when it may."""
        for host in hosts_of(action):
            if host in self.down_hosts:
                return f"host {host} is unavailable: {self.down_hosts[host]}"
        for key, any_kind in depends_on(action):
            entry = self.broken.get(key)
            if entry is None:
                continue
            kind, why = entry
            if any_kind or kind != "send":
                return f"depends on {key[0]}:{key[1]}, where an earlier {why}"
        return ""


def hosts_of(action: Action) -> tuple[str, ...]:
    if isinstance(action, SendAction):
        return (action.host, action.target_host)
    return (action.host,)


def touched(action: Action) -> list[Key]:
    """The filesystems an action's failure marks."""
    if isinstance(action, SendAction):
        return [(action.host, action.dataset), (action.target_host, action.target_dataset)]
    return [(action.host, action.dataset)]


def depends_on(action: Action) -> list[tuple[Key, bool]]:
    """(filesystem, any failure counts) pairs an action needs intact.

    A send needs its source intact except for other sends (they go elsewhere), and its
    target and every parent of the target intact (a failed placeholder or parent receive
    leaves nowhere to receive into).
    """
    match action:
        case SendAction():
            parents_first = reversed(lineage(action.target_dataset))
            return [((action.host, action.dataset), False),
                    *(((action.target_host, name), True) for name in parents_first)]
        case CreateAction():
            return [((action.host, name), True) for name in reversed(lineage(action.dataset))]
        case PostHookAction():
            return []  # it runs whatever failed before it: its hook's phase decides (hooks.py)
        case (PreHookAction() | SnapshotAction() | AbortResumeAction() | HoldAction() | HoldReceivedAction()
              | BookmarkAction() | ReleaseAction() | DestroyAction()):
            return [((action.host, action.dataset), True)]
        case _:
            assert_never(action)


def send_dependencies(sends: Sequence[SendAction]) -> list[set[int]]:
    """For each send, the indices of the earlier sends it must wait for: the last earlier
    send into its own target or into a parent of it on that host (a filesystem's chain in
    order; a parent's first receive before its children's), the last one into its source
    (a dataset is sent on after it arrived), and the earlier sends out of its target (it is
    not received into while it is being sent from). Sends from one source to different
    targets do not wait for each other."""
    last_into: dict[Key, int] = {}
    out_of: dict[Key, list[int]] = {}
    deps: list[set[int]] = []
    for index, send in enumerate(sends):
        target = (send.target_host, send.target_dataset)
        source = (send.host, send.dataset)
        wanted = {last_into.get((send.target_host, name)) for name in lineage(send.target_dataset)}
        wanted.add(last_into.get(source))
        wanted.update(out_of.get(target, ()))
        deps.append({i for i in wanted if i is not None})
        last_into[target] = index
        out_of.setdefault(source, []).append(index)
    return deps


# The phases that run ``parallel`` actions at a time: sends, and after them the per-dataset
# cursor moves and destroys (independent across datasets). The snapshot phase is one atomic
# command per batch already; holds and releases are one command per host and tag
# (``tag_batches``); creates are few and cheap.
PARALLEL_KINDS: tuple[Kind, ...] = ("send", "bookmark", "destroy")
# The phases whose actions run as channel programs on the hosts the plan says.
PROGRAM_KINDS: tuple[Kind, ...] = ("bookmark", "destroy")


def same_dataset_dependencies(actions: Sequence[Action]) -> list[set[int]]:
    """For each action, the last earlier one on the same (host, dataset): in order there."""
    last: dict[Key, int] = {}
    deps: list[set[int]] = []
    for index, action in enumerate(actions):
        key = (action.host, action.dataset)
        deps.append({last[key]} if key in last else set())
        last[key] = index
    return deps
def tag_batches(actions: Iterable[Action]) -> dict[tuple[str, str, str], list[TagAction]]:
    """Holds, received-snapshot holds and releases by (kind, host, tag): each group is one
    ``zfs hold``/``zfs release`` command (argv-batched), run at the group's first action."""
    batches: dict[tuple[str, str, str], list[TagAction]] = {}
    for action in actions:
        if isinstance(action, HoldAction | HoldReceivedAction | ReleaseAction):
            batches.setdefault(_tag_group(action), []).append(action)
    return batches


def _tag_group(action: TagAction) -> tuple[str, str, str]:
    return (action.kind, action.host, action.tag)


def argv_sized(actions: list[TagAction], max_bytes: int = MAX_ARGV_BYTES) -> list[list[TagAction]]:
    """``actions`` (of one host and tag) in groups whose ``tag_batch_argv`` stays within ``max_bytes``."""
    if not actions:
        return []
    return sized_groups(actions, lambda action: len(f"{action.dataset}@{action.snapshot}".encode()) + 1,
                        max_bytes, fixed=len(f"zfs\0release\0{actions[0].tag}\0".encode()))


# A hold that is already there, or a release of a hold that is not: the state the action
# wanted (zfs: "tag already exists on this dataset" / "no such tag on this dataset"). Seen
# when a batch failed halfway and its actions run again one by one.
ALREADY_SO: dict[str, tuple[str, str]] = {
    "hold": (ZfsError.EXISTS, "already held"),
    "hold_received": (ZfsError.EXISTS, "already held"),
    "release": (ZfsError.NOT_HELD, "was not held"),
}


def snapshot_batches(actions: Iterable[Action]) -> dict[str, list[SnapshotAction]]:
    batches: dict[str, list[SnapshotAction]] = {}
    for action in actions:
        if isinstance(action, SnapshotAction):
            batches.setdefault(f"{action.host}\0{action.batch}", []).append(action)
    return batches


# --------------------------------------------------------------------------- running commands

def run_zfs(executor: Executor, argv: list[str], what: str) -> None:
    """Run one zfs command; raise the mapped ExecError when it fails."""
    result = executor.run(argv)
    if not result.ok:
        raise zfs_errors.exec_error(argv, result.returncode, result.stderr, what=what)


def error_code(exc: ReconcileError) -> str:
    return getattr(exc, "code", ZfsError.COMMAND_FAILED)


def made_meanwhile(executor: Executor, action: Action, code: str) -> str:
    """Why an action whose zfs command failed with ``code`` is done anyway (the note for its
    outcome), or "" when it is not: only a result that already exists (ZfsError.EXISTS) can
    be. A placeholder created meanwhile is what the plan wanted: another host's run (--as)
    needed the same parent. A cursor bookmark of that name that marks the same snapshot
    (same GUID) is what the cursor move wanted: kill -9 of an apply does not stop the zfs
    commands it had started, and an orphaned cursor move can land after the next apply
    listed the source, before its own."""
    if code != ZfsError.EXISTS:
        return ""
    if isinstance(action, CreateAction):
        return "already exists (created meanwhile)"
    if not isinstance(action, BookmarkAction):
        return ""
    snapshot, bookmark = f"{action.dataset}@{action.snapshot}", f"{action.dataset}#{action.bookmark}"
    listed = executor.run(["zfs", "get", "-H", "-p", "-o", "value", "guid", snapshot, bookmark])
    guids = listed.stdout.split() if listed.ok else []
    if len(guids) == 2 and guids[0] == guids[1]:
        return "already exists (made meanwhile), marking the same snapshot"
    return ""


# --------------------------------------------------------------------------- destroy re-check

def fresh_facts(config: Config, executors: Mapping[str, Executor],
                destroys: Iterable[DestroyAction]) -> tuple[ObservedState, dict[str, ReconcileError]]:
    """The destroys' datasets and their replication partners as they are now: ONE
    ``zfs list -d 1`` per host for all of them (plus ``zfs holds`` where held), taken
    right before the destroy phase (no destroy runs between this listing and the
    re-check except those of other datasets). A dataset whose destroys are all cursor
    bookmarks is listed without its snapshots and partners: a bookmark's re-check needs
    only its name and whether it is there (``check_destroy_allowed``), and snapshots are
    what makes a listing slow (about 4 ms each in an emulated guest). Returns the state
    and, per host, the error that kept it from being listed: a destroy on such a host
    fails; a partner there counts as unavailable, as at plan time (it then contributes
    no base)."""
    whole: dict[str, set[str]] = {}
    marks_only: dict[str, set[str]] = {}
    for action in destroys:
        if all(name.startswith("#") for name in action.snapshots):
            marks_only.setdefault(action.host, set()).add(action.dataset)
            continue
        whole.setdefault(action.host, set()).add(action.dataset)
        role = config.role_of(action.host, action.dataset)
        for partner_host, name in role.partners() if role is not None else ():
            whole.setdefault(partner_host, set()).add(name)
    state = ObservedState()
    errors: dict[str, ReconcileError] = {}
    for host in dict.fromkeys([*whole, *marks_only]):
        executor = executors.get(host)
        if executor is None:
            continue
        try:
            found = list_datasets(executor, host, whole.get(host, set()))
            marks = marks_only.get(host, set()) - found.keys()
            found |= list_datasets(executor, host, marks, snapshots=False)
        except ReconcileError as exc:
            errors[host] = exc
            continue
        state.hosts[host] = HostFacts(host, found)
    return state, errors


def safe_destroy_names(action: DestroyAction, config: Config, fresh: ObservedState,
                       ) -> tuple[list[str], list[tuple[str, str]]]:
    """(names still safe to destroy, [(name, why not)]) from the facts listed just before."""
    if config.role_of(action.host, action.dataset) is None:
        return [], [(n, "the dataset is no longer managed by the configuration") for n in action.snapshots]
    dataset = fresh.dataset(action.host, action.dataset)
    if dataset is None:
        return [], [(n, f"{action.dataset} no longer exists") for n in action.snapshots]
    guard = destroy_guard(config, fresh, action.host, action.dataset)
    refusals = dict(guard.check(dataset, action.snapshots))
    existing = {s.name for s in dataset.snapshots} | {"#" + b.name for b in dataset.bookmarks}
    keep: list[str] = []
    dropped: list[tuple[str, str]] = []
    for name in action.snapshots:
        if name in refusals:
            dropped.append((name, f"no longer safe: {refusals[name]}"))
        elif name not in existing:
            dropped.append((name, "no longer exists"))
        else:
            keep.append(name)
    return keep, dropped


# --------------------------------------------------------------------------- the apply loop

class _Applier:
    def __init__(self, config: Config, executors: Mapping[str, StreamingExecutor], progress: ProgressSink,
                 stop: threading.Event | None, abort: threading.Event | None, parallel: int = 1,
                 channel_hosts: Iterable[str] = ()) -> None:
        self.config = config
        # Hosts whose bookmarks and snapshot destroys run as channel programs (the plan's
        # metadata routes); a host leaves this set when zfs refuses a program.
        self.channel_hosts = set(channel_hosts)
        self.handled: set[int] = set()  # id() of the actions a channel program has run (or reported)
        self.parallel = parallel
        self.lock = threading.RLock()  # the report, the ledger and the progress lines, across sends
        self.fresh_lock = threading.Lock()
        self.executors = executors
        self.progress = progress
        self.stop = stop
        self.abort = abort
        self.ledger = Ledger()
        self.report = ApplyReport()
        self.destroys: list[DestroyAction] = []
        self.fresh: tuple[ObservedState, dict[str, ReconcileError]] | None = None
        self.fresh_at = 0.0  # time.monotonic() of that listing
        self.phases: dict[tuple[str, str, str], HookPhase] = {}
        # dataset@snapshot -> written, listed once per source host after the snapshot phase.
        self.sizes: dict[str, int] = {}
        # One bucket per (target host, limit): the sends to a target share its bandwidth_limit.
        self.buckets: dict[tuple[str, int], TokenBucket] = {}

    def record(self, outcome: Outcome, *, mark: bool = True) -> None:
        """Report ``outcome``; one not done marks the filesystems it touches unless ``mark``
        is false (a hook whose failure blocks nothing)."""
        with self.lock:
            self.report.outcomes.append(outcome)
            if outcome.status != DONE and mark:
                action = outcome.action
                what = f"{action.kind} {outcome.status}" + (f": {outcome.code}" if outcome.code else "")
                self.ledger.mark_action(action, what)
            self.progress.line(outcome.line())

    def fail(self, action: Action, exc: ReconcileError, started: float, names: tuple[str, ...] = (),
             *, mark: bool = True, note: str = "") -> None:
        if isinstance(exc, HostError) and exc.code in HOST_DOWN:
            with self.lock:
                self.ledger.down_hosts.setdefault(exc.host, str(exc))
        self.record(Outcome(action, FAILED, str(exc) + note, error_code(exc), names,
                            time.monotonic() - started), mark=mark)

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def run(self, actions: Sequence[Action]) -> ApplyReport:
        batches = snapshot_batches(actions)
        tags = tag_batches(actions)
        self.destroys = [a for a in actions if isinstance(a, DestroyAction)]
        self.phases = hook_phases(actions)
        started_batches: set[str] = set()
        all_sends = [a for a in actions if isinstance(a, SendAction)]
        groups = {kind: [a for a in actions if a.kind == kind] for kind in PARALLEL_KINDS} \
            if self.parallel > 1 else {}
        started_tags: set[tuple[str, str, str]] = set()
        program_phases: set[Kind] = set()
        for action in actions:
            if all_sends and action is all_sends[0] and not self.stopped():
                self.sizes = self.incremental_sizes(all_sends)
            if action.kind in PROGRAM_KINDS and action.kind not in program_phases:
                program_phases.add(action.kind)  # the phase's first action: its programs first
                self.program_phase([a for a in actions if a.kind == action.kind])
                if action.kind in groups:
                    groups[action.kind] = [a for a in groups[action.kind] if id(a) not in self.handled]
            if id(action) in self.handled:
                continue
            if phase := groups.get(action.kind):
                if action is phase[0]:  # the whole phase (contiguous: the plan is in order) at once
                    self.parallel_phase(phase)
                continue
            if isinstance(action, PostHookAction):
                self.post_hook(action)  # even after a stop request: a freeze must be undone
                continue
            if self.stopped():
                self.report.stopped = True
                if isinstance(action, PreHookAction):
                    self.phases[action.snapshot_key()].pre_skipped(action.hook)
                self.record(Outcome(action, SKIPPED, "stopped on request before this action"))
                continue
            match action:
                case SnapshotAction():
                    key = f"{action.host}\0{action.batch}"
                    if key not in started_batches:  # the batch's first member runs them all
                        started_batches.add(key)
                        self.snapshot_batch(batches[key])
                case HoldAction() | HoldReceivedAction() | ReleaseAction():
                    group = _tag_group(action)
                    if group not in started_tags:  # the group's first action runs them all
                        started_tags.add(group)
                        self.tag_batch(tags[group])
                case PreHookAction():
                    self.pre_hook(action)
                case _ if why := self.ledger.blocker(action):
                    self.record(Outcome(action, SKIPPED, why))
                case SendAction():
                    self.send(action)
                case DestroyAction():
                    self.destroy(action)
                case CreateAction() | AbortResumeAction() | BookmarkAction():
                    self.simple(action)
                case _:
                    assert_never(action)
        return self.report

    def pre_hook(self, action: PreHookAction) -> None:
        """Run it unless its filesystem is already broken (an earlier fatal pre hook, a host
        that is down); a failure fails the filesystem only with err_is_fatal."""
        phase = self.phases[action.snapshot_key()]
        why = self.ledger.blocker(action)
        if why:
            phase.pre_skipped(action.hook)
            self.record(Outcome(action, SKIPPED, why), mark=False)
            return
        started = time.monotonic()
        try:
            run_hook(self.executors[action.host], action)
        except ReconcileError as exc:
            phase.pre_attempted(action.hook, fatal_failure=action.err_is_fatal)
            where = f"{action.dataset}@{action.snapshot}"
            host_down = isinstance(exc, HostError) and exc.code in HOST_DOWN
            note = ("" if host_down
                    else f" (err_is_fatal: the snapshot {where} and what depends on it are skipped)"
                    if action.err_is_fatal else f" (err_is_fatal is false: {where} is taken anyway)")
            self.fail(action, exc, started, mark=action.err_is_fatal, note=note)
            return
        phase.pre_attempted(action.hook, fatal_failure=False)
        self.record(Outcome(action, DONE, seconds=time.monotonic() - started))

    def post_hook(self, action: PostHookAction) -> None:
        """Run it when its hook was entered (hooks.py), whatever failed since; its failure is
        reported and blocks nothing (the snapshot is taken by then)."""
        if not self.phases[action.snapshot_key()].entered(action.hook):
            self.record(Outcome(action, SKIPPED, "its hook was not entered: an earlier pre hook failed with"
                                " err_is_fatal, or the filesystem was skipped before its hooks began"),
                        mark=False)
            return
        started = time.monotonic()
        try:
            run_hook(self.executors[action.host], action)
        except ReconcileError as exc:
            self.fail(action, exc, started, mark=False)
            return
        self.record(Outcome(action, DONE, seconds=time.monotonic() - started))

    def snapshot_batch(self, batch: list[SnapshotAction]) -> None:
        """One atomic ``zfs snapshot`` for the batch. When it fails (zfs then takes none),
        each member is taken on its own, so one broken filesystem (full, quota, gone)
        does not stop the others; only a host that is down fails them all."""
        blocked = [(a, self.ledger.blocker(a)) for a in batch]
        for action, why in blocked:
            if why:
                self.record(Outcome(action, SKIPPED, why))
        runnable = [a for a, why in blocked if not why]
        if not runnable:
            return
        for action in runnable:
            phase = self.phases.get(snapshot_key(action))
            if phase is not None:
                phase.began = True
        started = time.monotonic()
        try:
            run_zfs(self.executors[runnable[0].host], snapshot_batch_argv(runnable),
                    f"atomic snapshot of {len(runnable)} dataset(s)" if len(runnable) > 1 else "")
        except ReconcileError as exc:
            if len(runnable) == 1 or (isinstance(exc, HostError) and exc.code in HOST_DOWN):
                for action in runnable:
                    self.fail(action, exc, started)
                return
            self.progress.line(f"atomic snapshot of {len(runnable)} datasets failed ({exc}); "
                               "taking them one at a time, not atomically")
            for action in runnable:
                self.simple(action, note="taken on its own after the atomic snapshot failed")
            return
        for action in runnable:
            self.record(Outcome(action, DONE, seconds=time.monotonic() - started))

    def tag_batch(self, batch: list[TagAction]) -> None:
        """One ``zfs hold``/``zfs release`` per host and tag for the group's runnable actions.
        zfs does each snapshot on its own and exits 1 when any failed, so after a failure
        each action runs again alone: one that is then already in its wanted state is done."""
        runnable: list[TagAction] = []
        for action in batch:
            why = self.ledger.blocker(action)
            if why:
                self.record(Outcome(action, SKIPPED, why))
            else:
                runnable.append(action)
        for group in argv_sized(runnable):
            started = time.monotonic()
            try:
                run_zfs(self.executors[group[0].host], tag_batch_argv(group), "")
            except ReconcileError as exc:
                if len(group) == 1 or (isinstance(exc, HostError) and exc.code in HOST_DOWN):
                    for action in group:
                        self.tag_failed(action, exc, started)
                    continue
                self.progress.line(f"{group[0].kind} {group[0].tag} of {len(group)} snapshots on"
                                   f" {group[0].host} failed ({exc}); one at a time now")
                for action in group:
                    self.tag_alone(action)
                continue
            for action in group:
                self.record(Outcome(action, DONE, seconds=time.monotonic() - started))

    def tag_alone(self, action: TagAction) -> None:
        started = time.monotonic()
        if why := self.ledger.blocker(action):  # the host went down meanwhile
            self.record(Outcome(action, SKIPPED, why))
            return
        try:
            run_zfs(self.executors[action.host], action.argv(), "")
        except ReconcileError as exc:
            self.tag_failed(action, exc, started)
            return
        self.record(Outcome(action, DONE, seconds=time.monotonic() - started))

    def tag_failed(self, action: TagAction, exc: ReconcileError, started: float) -> None:
        code, note = ALREADY_SO[action.kind]
        if error_code(exc) == code:
            self.record(Outcome(action, DONE, note, seconds=time.monotonic() - started))
        else:
            self.fail(action, exc, started)

    def simple(self, action: Action, note: str = "") -> None:
        started = time.monotonic()
        why = self.ledger.blocker(action)
        if why:  # the host went down during a one-by-one batch
            self.record(Outcome(action, SKIPPED, why))
            return
        try:
            run_zfs(self.executors[action.host], action.argv(), "")
        except ReconcileError as exc:
            meanwhile = made_meanwhile(self.executors[action.host], action, error_code(exc))
            if not meanwhile:
                self.fail(action, exc, started)
                return
            note = meanwhile
        self.record(Outcome(action, DONE, note, seconds=time.monotonic() - started))

    def incremental_sizes(self, sends: list[SendAction]) -> dict[str, int]:
        """The ``written`` of every incremental send's snapshots, ONE ``zfs list`` of them by
        name per source host, taken after the snapshot phase (the new snapshots exist). The
        stream of ``-I base snap`` is about the sum of its snapshots' ``written``; full
        sends and resumes keep ``zfs send -nP``. A host that fails this listing is left to
        ``-nP`` (the send itself reports what is wrong)."""
        wanted: dict[str, set[str]] = {}
        for send in sends:
            if send.base is not None and send.resume_token is None:
                names = wanted.setdefault(send.host, set())
                names.update(snapshot_ref(send.dataset, name) for name in send.snapshots)
        sizes: dict[str, int] = {}
        for host, names in wanted.items():
            if host in self.ledger.down_hosts:
                continue
            try:
                sizes.update(snapshot_written(self.executors[host], host, names))
            except ReconcileError:
                continue
        return sizes

    def send_size(self, action: SendAction) -> int | None:
        """The incremental's stream size from the listing (None: ask ``zfs send -nP``)."""
        if action.base is None or action.resume_token is not None:
            return None
        written = [self.sizes.get(snapshot_ref(action.dataset, name)) for name in action.snapshots]
        return None if any(w is None for w in written) else sum(w for w in written if w is not None)

    def parallel_phase(self, group: Sequence[Action]) -> None:
        """Up to ``parallel`` actions of one phase at a time, each once those it depends on
        have ended (sends: ``send_dependencies``; cursor moves and destroys: an earlier one
        on the same dataset); one whose filesystem broke meanwhile is skipped,
        and after a stop request none is started."""
        sends = list(group)
        deps = (send_dependencies([a for a in group if isinstance(a, SendAction)])
                if group[0].kind == "send" else same_dataset_dependencies(group))
        pending = list(range(len(sends)))
        finished: set[int] = set()
        running: dict[Future[None], int] = {}
        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="send") as pool:
            while pending or running:
                for index in list(pending):
                    if len(running) >= self.parallel:
                        break
                    if not deps[index] <= finished:
                        continue
                    pending.remove(index)
                    action = sends[index]
                    with self.lock:
                        why = "stopped on request before this action" if self.stopped() \
                            else self.ledger.blocker(action)
                        if self.stopped():
                            self.report.stopped = True
                    if why:
                        self.record(Outcome(action, SKIPPED, why))
                        finished.add(index)
                        continue
                    running[pool.submit(self.run_one, action)] = index
                if not running:
                    continue  # all that was startable was skipped: look again
                done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    finished.add(running.pop(future))
                    future.result()  # send() records its failures; anything else is a bug: raise

    def run_one(self, action: Action) -> None:
        """One action of a parallel phase (its blocker already checked)."""
        if isinstance(action, SendAction):
            self.send(action)
        elif isinstance(action, DestroyAction):
            self.destroy(action)
        else:
            self.simple(action)

    def send(self, action: SendAction) -> None:
        started = time.monotonic()
        try:
            result = run_send(action, self.executors, progress=self.progress, abort=self.abort,
                              throttle=self.bucket(action), size=self.send_size(action))
        except ReconcileError as exc:
            self.fail(action, exc, started)
            return
        # A limited send says how fast it streamed: the limit's own measure (the whole time
        # also holds both sides' start-up and the receive's final commit).
        note = (f"streamed at {human_bytes(result.stream_rate)}/s for {result.stream_seconds:.2f}s, limit"
                f" {human_bytes(action.bandwidth_limit)}/s"
                if action.bandwidth_limit is not None and result.stream_rate > 0 else "")
        self.record(Outcome(action, DONE, note, seconds=result.seconds, bytes=result.bytes))

    def bucket(self, action: SendAction) -> TokenBucket | None:
        """The target's bandwidth limit (None: unlimited), the same bucket for every send to it."""
        if action.bandwidth_limit is None:
            return None
        key = (action.target_host, action.bandwidth_limit)
        if key not in self.buckets:
            self.buckets[key] = TokenBucket(action.bandwidth_limit)
        return self.buckets[key]

    def destroy(self, action: DestroyAction) -> None:
        started = time.monotonic()
        keep = self.checked_names(action, started)
        if keep:
            self.destroy_names(action, keep)

    def checked_names(self, action: DestroyAction, started: float) -> list[str]:
        """The names of ``action`` still safe to destroy, re-checked on fresh facts; the
        dropped ones are reported here, a host that could not be listed fails the action."""
        # The first destroy lists every remaining destroy's facts, once per host; so does
        # a destroy that comes more than FRESH_SECONDS after that listing (a long destroy
        # phase), so no re-check runs on facts older than that.
        with self.fresh_lock:  # parallel destroys: one listing at a time, shared
            if self.fresh is None or started - self.fresh_at > FRESH_SECONDS:
                index = self.destroys.index(action)
                self.fresh = fresh_facts(self.config, self.executors,
                                         [a for a in self.destroys[index:] if not self.ledger.blocker(a)])
                self.fresh_at = time.monotonic()
            state, errors = self.fresh
        if action.host in errors:
            self.fail(action, errors[action.host], started)
            return []
        keep, dropped = safe_destroy_names(action, self.config, state)
        for name, why in dropped:
            # Not a failure of the filesystem: later actions on it may still run.
            self.record(Outcome(action, SKIPPED, why, names=(name,)), mark=False)
        return keep

    def destroy_names(self, action: DestroyAction, keep: Sequence[str]) -> None:
        """``zfs destroy`` of ``keep`` (checked names of ``action``), batched per dataset."""
        partial = DestroyAction(action.host, action.dataset, tuple(keep), action.reasons, action.reason)
        for argv in partial.argv_batches():
            names = batch_names(action.dataset, argv)
            batch_started = time.monotonic()
            try:
                run_zfs(self.executors[action.host], argv, "")
            except ReconcileError as exc:
                self.fail(action, exc, batch_started, names)
                continue  # the other batches of this dataset are independent snapshots
            self.record(Outcome(action, DONE, names=names, seconds=time.monotonic() - batch_started))

    # ----------------------------------------------------------------------- channel programs

    def program_phase(self, group: Sequence[Action]) -> None:
        """The bookmark or destroy phase's actions on channel-program hosts, one program per
        host and pool (``execute/channel.py``); what a program ran or reported is ``handled``,
        everything else (other hosts, a host whose program zfs refused, bookmark destroys)
        runs one command per action afterwards, as on any other host."""
        if self.stopped():
            return  # the loop reports every action as stopped
        for host in dict.fromkeys(a.host for a in group):
            if host not in self.channel_hosts:
                continue
            mine = [a for a in group if a.host == host]
            runnable = []
            for action in mine:
                if why := self.ledger.blocker(action):
                    self.record(Outcome(action, SKIPPED, why))
                    self.handled.add(id(action))
                else:
                    runnable.append(action)
            bookmarks = [a for a in runnable if isinstance(a, BookmarkAction)]
            destroys = [a for a in runnable if isinstance(a, DestroyAction)]
            if bookmarks:
                self.bookmark_programs(host, bookmarks)
            if destroys:
                self.destroy_programs(host, destroys)

    def bookmark_programs(self, host: str, actions: list[BookmarkAction]) -> None:
        self.run_programs(host, [(a, (), Op.bookmark(snapshot_ref(a.dataset, a.snapshot),
                                                     snapshot_ref(a.dataset, "#" + a.bookmark)))
                                 for a in actions])

    def destroy_programs(self, host: str, actions: list[DestroyAction]) -> None:
        """Re-check every destroy (as one command each would), then its snapshot names in
        programs; its bookmark names one ``zfs destroy ds#bm`` each (2.1 has no program for it)."""
        checked: list[tuple[DestroyAction, list[str]]] = []
        for action in actions:
            keep = self.checked_names(action, time.monotonic())
            self.handled.add(id(action))
            if keep:
                checked.append((action, keep))
        work = [(a, (name,), Op.destroy(snapshot_ref(a.dataset, name)))
                for a, keep in checked for name in keep if not name.startswith("#")]
        left = self.run_programs(host, work)
        for action, keep in checked:
            names = [n for n in keep if n.startswith("#") or (id(action), n) in left]
            if not names:
                continue
            if self.stopped():
                self.record(Outcome(action, SKIPPED, "stopped on request before this action",
                                    names=tuple(names)))
            elif why := self.ledger.blocker(action):  # the host went down during a program
                self.record(Outcome(action, SKIPPED, why, names=tuple(names)))
            else:
                self.destroy_names(action, names)

    def run_programs(self, host: str, work: Sequence[ProgramItem]) -> set[tuple[int, str]]:
        """Run ``work`` ((action, its destroy names, operation)) as programs per pool, record an
        outcome per action and program; returns the (id(action), name) of destroy names no
        program ran (refused, stopped), for the caller to run; bookmarks not run are left to
        the loop (not ``handled``)."""
        by_pool: dict[str, list[ProgramItem]] = {}
        for item in work:
            by_pool.setdefault(pool_of(item[0].dataset), []).append(item)
        left: set[tuple[int, str]] = set()
        for pool, items in by_pool.items():
            for start, end in chunked([op for _, _, op in items]):
                chunk = items[start:end]
                if host not in self.channel_hosts or self.stopped():
                    left |= {(id(a), n) for a, names, _ in chunk for n in names}
                    continue
                started = time.monotonic()
                try:
                    result = run_program(self.executors[host], pool, [op for _, _, op in chunk])
                except ReconcileError as exc:  # the host is down: every action fails, as one by one
                    for action in dict.fromkeys(a for a, _, _ in chunk):
                        names = tuple(n for a, ns, _ in chunk if a is action for n in ns)
                        self.fail(action, exc, started, names)
                        self.handled.add(id(action))
                    continue
                if result.refusal:
                    self.refused(host, result.refusal)
                    left |= {(id(a), n) for a, names, _ in chunk for n in names}
                    continue
                self.record_program(chunk, result.errnos, time.monotonic() - started)
        return left

    def record_program(self, chunk: Sequence[ProgramItem], errnos: Sequence[int], seconds: float) -> None:
        """One outcome per action and result (done, or failed with one errno), like the
        outcome of one command per action; a failure marks the filesystem."""
        results: dict[int, dict[int, list[str]]] = {}
        actions: dict[int, tuple[Action, Op]] = {}
        for (action, names, op), errno in zip(chunk, errnos, strict=True):
            actions[id(action)] = (action, op)
            results.setdefault(id(action), {}).setdefault(errno, []).extend(names)
        for key, by_errno in results.items():
            action, op = actions[key]
            self.handled.add(key)
            for errno, covered in sorted(by_errno.items()):
                if errno == 0:
                    self.record(Outcome(action, DONE, names=tuple(covered), seconds=seconds))
                    continue
                code, message = errno_error(op, errno)
                # As on the per-command path: a cursor bookmark an orphaned move made meanwhile.
                meanwhile = made_meanwhile(self.executors[action.host], action, code)
                if meanwhile:
                    self.record(Outcome(action, DONE, meanwhile, names=tuple(covered), seconds=seconds))
                else:
                    self.record(Outcome(action, FAILED, message, code, tuple(covered), seconds))

    def refused(self, host: str, why: str) -> None:
        """zfs refused the program: this host runs one command per action from now on."""
        with self.lock:
            if host not in self.channel_hosts:
                return
            self.channel_hosts.discard(host)
            note = f"channel program refused on host {host}: {why}; one command per action"
            self.report.notes.append(note)
            self.progress.line(note)


def batch_names(dataset: str, argv: list[str]) -> tuple[str, ...]:
    """The short names one ``zfs destroy ds@a,b`` / ``zfs destroy ds#bm`` command covers."""
    ref = argv[-1]
    if ref.startswith(dataset + "#"):
        return ("#" + ref[len(dataset) + 1:],)
    return tuple(ref[len(dataset) + 1:].split(","))


def apply_plan(plan: Plan, config: Config, executors: Mapping[str, StreamingExecutor], *,
               progress: ProgressSink | None = None, stop: threading.Event | None = None,
               abort: threading.Event | None = None, saved_plan: bool = False,
               parallel: int | None = None) -> ApplyReport:
    """Execute the plan's actions (see module docstring). Never raises for a failing action:
    failures are in the report. ``stop`` ends the apply between actions (the rest skipped);
    ``abort`` also interrupts a running transfer (the receive stays resumable). With
    ``saved_plan`` a skipped action makes the report not ``ok``: a saved plan promised it.
    ``parallel``: how many sends run at a time (default ``settings.parallel_sends``)."""
    actions = plan.actions
    missing = sorted({h for a in actions for h in hosts_of(a) if h not in executors})
    if missing:
        raise ExecError(f"no executor for host(s) {', '.join(missing)}")
    if (pair := out_of_order(actions)) is not None:
        earlier, later = pair
        later_text = f"{later.kind} {later.host}:{later.dataset}"
        what = (f"{later_text} has no snapshot right after it" if earlier is later
                else f"{later_text} comes after {earlier.kind} {earlier.host}:{earlier.dataset}")
        raise ExecError(f"the plan's actions are not in execution order ({', '.join(EXECUTION_ORDER)}; hooks"
                        f" right around their own snapshot, alone in its batch): {what}; nothing was run")
    applier = _Applier(config, executors, progress or NullProgress(), stop, abort,
                       parallel if parallel is not None else config.settings.parallel_sends,
                       channel_hosts=[m.host for m in plan.metadata
                                      if m.path == MetadataPath.CHANNEL_PROGRAM])
    applier.report.saved_plan = saved_plan
    return applier.run(actions)
