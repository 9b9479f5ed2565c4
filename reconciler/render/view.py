"""What text and markdown share: the plan grouped by host and filesystem, what needs
attention, the summary line, and the words after an action's ``describe()``."""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import groupby
from typing import assert_never

from reconciler.codes import PruneRule
from reconciler.config.grid import format_duration
from reconciler.config.rates import format_rate
from reconciler.domain.actions import (
    AbortResumeAction,
    Action,
    BookmarkAction,
    CreateAction,
    DestroyAction,
    HoldAction,
    HoldReceivedAction,
    HookAction,
    Kind,
    PostHookAction,
    PreHookAction,
    ReleaseAction,
    SendAction,
    SnapshotAction,
    TagAction,
)
from reconciler.domain.plan import (
    Conflict,
    FilesystemReport,
    Plan,
    SnapshotVerdict,
)
from reconciler.wording import human_bytes, plural

Explain = str | bool | None

NO_CHANGES = "No changes. Snapshots, retention and replication are up to date."

PRUNE_RULE_LABELS: dict[str, str] = {
    PruneRule.PRUNE_WINS: "prune wins over replication",
    PruneRule.REPLICATION_PROTECTED: "replication protected (not_replicated)",
}


@dataclass(slots=True)
class FilesystemView:
    """What one host's dataset contributes to the plan: its report, actions and conflicts."""

    host: str
    dataset: str
    report: FilesystemReport | None = None
    actions: list[Action] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    incoming: list[SendAction] = field(default_factory=list)  # sends arriving here (targets)

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.report.warnings if self.report else ()

    @property
    def changed(self) -> bool:
        """Shown as a full block: something happens here or needs attention."""
        return bool(self.actions or self.conflicts or self.warnings or self.incoming or self.protected)

    @property
    def protected(self) -> tuple[SnapshotVerdict, ...]:
        return self.report.protected if self.report else ()


def group_by_host(plan: Plan) -> dict[str, dict[str, FilesystemView]]:
    """host -> dataset -> view, hosts in the order the plan first mentions them.

    Sends belong to their source (and are noted as incoming on their target); a conflict
    belongs to the source it blocks when known, else to the dataset it names.
    """
    hosts: dict[str, dict[str, FilesystemView]] = {}

    def view(host: str, dataset: str) -> FilesystemView:
        datasets = hosts.setdefault(host, {})
        if dataset not in datasets:
            datasets[dataset] = FilesystemView(host, dataset)
        return datasets[dataset]

    for report in plan.filesystems:
        view(report.host, report.dataset).report = report
    for action in plan.actions:
        view(action.host, action.dataset).actions.append(action)
        if isinstance(action, SendAction):
            view(action.target_host, action.target_dataset).incoming.append(action)
    for conflict in plan.conflicts:
        if conflict.source_host and conflict.source_dataset:
            view(conflict.source_host, conflict.source_dataset).conflicts.append(conflict)
        else:
            view(conflict.host, conflict.dataset).conflicts.append(conflict)
    for host, _reason in plan.unavailable:
        hosts.setdefault(host, {})
    return hosts


def split_shown(datasets: Iterable[FilesystemView], explain: set[tuple[str, str]],
                ) -> tuple[list[FilesystemView], list[FilesystemView]]:
    """(shown as full blocks, listed as unchanged): changed or explained datasets get a block."""
    shown: list[FilesystemView] = []
    unchanged: list[FilesystemView] = []
    for fs in datasets:
        (shown if fs.changed or (fs.host, fs.dataset) in explain else unchanged).append(fs)
    return shown, unchanged


def sorted_views(datasets: dict[str, FilesystemView]) -> list[FilesystemView]:
    """By dataset name: parents before children, placeholders next to what they hold."""
    return [datasets[name] for name in sorted(datasets)]


def explained_keys(plan: Plan, explain: Explain) -> set[tuple[str, str]]:
    return {(r.host, r.dataset) for r in explained_reports(plan, explain)}


def explained_reports(plan: Plan, explain: Explain) -> list[FilesystemReport]:
    """The reports ``--explain`` asks for: all (True), none (None/False), or those named
    ``DATASET`` or ``HOST:DATASET``."""
    if not explain:
        return []
    if explain is True:
        return list(plan.filesystems)
    return [r for r in plan.filesystems if explain in (r.dataset, f"{r.host}:{r.dataset}")]


def send_estimate(sends: list[SendAction]) -> str:
    """``1.2 GiB est.`` when every send has an estimate; says how many when only some do."""
    known = [s.estimated_bytes for s in sends if s.estimated_bytes is not None]
    if not known:
        return "size unknown" if sends else ""
    total = human_bytes(sum(known))
    if len(known) == len(sends):
        return f"{total} est."
    return f"{total} est. for {len(known)} of {len(sends)}"


def attention_items(plan: Plan) -> list[str]:
    items = []
    if plan.conflicts:
        items.append(plural(len(plan.conflicts), "conflict"))
    if plan.unavailable:
        items.append(plural(len(plan.unavailable), "host") + " unavailable")
    return items


def summary_line(plan: Plan) -> str:
    """One line a reviewer reads first: what the plan will do and what needs attention."""
    attention = attention_items(plan)
    if not plan.actions:
        if attention:
            verb = "needs" if len(plan.conflicts) + len(plan.unavailable) == 1 else "need"
            return f"No changes, but {', '.join(attention)} {verb} attention."
        return NO_CHANGES
    counts: Counter[Kind] = Counter(a.kind for a in plan.actions)
    parts: list[str] = []
    if counts["snapshot"]:
        parts.append(plural(counts["snapshot"], "snapshot") + " to create")
    if counts["send"]:
        sends = [a for a in plan.actions if isinstance(a, SendAction)]
        estimate = send_estimate(sends)
        parts.append(plural(len(sends), "send") + (f" ({estimate})" if estimate else ""))
    destroyed = sum(len(a.snapshots) for a in plan.actions if isinstance(a, DestroyAction))
    if destroyed:
        parts.append(f"{destroyed} to destroy")
    for kind, n in counts.items():  # in the order the plan first has them
        if (label := counted_as(kind)) is not None:
            noun, verb = label
            parts.append(f"{plural(n, noun)} {verb}")
    return ", ".join(parts + attention)


def counted_as(kind: Kind) -> tuple[str, str] | None:
    """(noun, verb) the summary line counts a kind's actions with; None for the three it
    counts first, each its own way (snapshots, sends with their size, destroyed names)."""
    match kind:
        case "snapshot" | "send" | "destroy":
            return None
        case "create":
            return "placeholder dataset", "to create"
        case "abort_resume":
            return "partial receive", "to discard"
        case "bookmark":
            return "bookmark", "to create"
        case "hold":
            return "hold", "to place"
        case "hold_received":
            return "received snapshot", "to hold"
        case "release":
            return "hold", "to release"
        case "pre_hook":
            return "pre hook", "to run"
        case "post_hook":
            return "post hook", "to run"
        case _:
            assert_never(kind)


def prune_rule_text(report: FilesystemReport) -> str:
    label = PRUNE_RULE_LABELS.get(report.prune_rule, report.prune_rule)
    return f"{label}: {report.prune_rule_why}" if report.prune_rule_why else label


def action_detail(action: Action) -> str:
    """Extra facts after ``describe()``: a send's size estimate and raw flag, and the reason
    (a destroy's reasons are listed name by name instead)."""
    match action:
        case DestroyAction():
            return ""
        case SendAction():
            bits: list[str] = []
            if action.estimated_bytes is not None:
                bits.append(f"{human_bytes(action.estimated_bytes)} est.")
            if action.raw:
                bits.append("raw")
            if action.compressed:
                bits.append(" ".join(action.stream_flags()))
            if action.bandwidth_limit is not None:
                bits.append(f"limit {format_rate(action.bandwidth_limit)}")
            if action.send_properties:
                bits.append("with properties (send -p)")
            if action.overrides or action.excludes:
                bits.append(f"recv {' '.join(action.recv_options())}")
            if action.reason:
                bits.append(action.reason)
            return "; ".join(bits)
        case PreHookAction():
            fatal = ("err_is_fatal: a failure skips the snapshot" if action.err_is_fatal
                     else "a failure does not stop the snapshot")
            return "; ".join(bit for bit in (f"timeout {hook_timeout_text(action)}", fatal, action.reason)
                             if bit)
        case PostHookAction():
            return "; ".join(bit for bit in (f"timeout {hook_timeout_text(action)}",
                                             "runs even when a pre hook or the snapshot failed",
                                             action.reason) if bit)
        case (SnapshotAction() | BookmarkAction() | CreateAction() | AbortResumeAction() | HoldAction()
              | HoldReceivedAction() | ReleaseAction()):
            return action.reason
        case _:
            assert_never(action)


def send_explanation(action: SendAction) -> list[str]:
    """What ``--explain`` says about a send: why its stream looks as it does, and what bounds
    its transfer (the limit, the stall timeout)."""
    if action.raw:
        how = ("raw stream (zfs send -w, raw: true): blocks travel exactly as stored, encrypted ones"
               " stay encrypted; -w implies -L -c -e")
    elif action.compressed:
        how = ("compressed stream (zfs send -L -c -e, compressed: true): blocks travel as stored on"
               " disk, compressed and with large blocks kept, so fewer bytes cross the link and the"
               " target stores what the source stores; the replica then needs -L on every later send")
    else:
        how = ("plain stream (compressed: false): blocks travel decompressed and large blocks split"
               " to 128K, as plain zfs send does")
    if action.resume_token:
        how += "; a resumed send keeps the flags of the interrupted one (its token records them)"
    limit = (f"at most {format_rate(action.bandwidth_limit)} (bandwidth_limit), shared with the parallel"
             f" sends to {action.target_host} that have the same limit" if action.bandwidth_limit is not None
             else "no bandwidth limit")
    stall = format_duration(timedelta(seconds=action.stall_timeout))
    return [how, f"{limit}; stopped (resumable) after {stall} without a byte moved (stall_timeout)"]
@dataclass(frozen=True, slots=True)
class TagGroup:
    """Holds (or releases) of several snapshots of one dataset with one tag and one reason:
    one line in text and markdown (a send step's snapshots), while the Plan JSON keeps one
    action per snapshot."""

    actions: tuple[TagAction, ...]

    @property
    def kind(self) -> Kind:
        return self.actions[0].kind

    @property
    def reason(self) -> str:
        return self.actions[0].reason

    def names(self) -> str:
        """The snapshots, or the first and the last of a long run."""
        names = [a.snapshot for a in self.actions]
        return ", ".join(names) if len(names) <= 3 else f"{names[0]} … {names[-1]}"

    def describe(self) -> str:
        first = self.actions[0]
        what = f"{plural(len(self.actions), 'snapshot')} of {first.dataset} ({self.names()})"
        match first.kind:
            case "hold" | "hold_received":
                verb = "hold" if first.kind == "hold" else "hold received"
                return f"{verb} {what} with tag {first.tag}"
            case "release":
                return f"release hold {first.tag} on {what}"


def shown_actions(actions: Iterable[Action]) -> list[Action | TagGroup]:
    """``actions`` as the human formats list them: runs of holds (or releases) of one
    dataset, tag and reason joined into one ``TagGroup`` line."""
    shown: list[Action | TagGroup] = []
    for _key, run in groupby(actions, key=_tag_run_key):
        items = list(run)
        if len(items) > 1 and isinstance(items[0], HoldAction | HoldReceivedAction | ReleaseAction):
            shown.append(TagGroup(tuple(a for a in items if isinstance(a, HoldAction | HoldReceivedAction
                                                                         | ReleaseAction))))
        else:
            shown += items
    return shown


def _tag_run_key(action: Action) -> tuple[str, ...] | int:
    if isinstance(action, HoldAction | HoldReceivedAction | ReleaseAction):
        return (action.kind, action.host, action.dataset, action.tag, action.reason)
    return id(action)


def hook_timeout_text(action: HookAction) -> str:
    return format_duration(timedelta(seconds=action.timeout))


def hook_env_text(action: HookAction) -> str:
    """``NAME=value ...``: the variables the hook runs with (``--explain`` shows them)."""
    return " ".join(f"{name}={shlex.quote(value)}" for name, value in action.env().items())


def incoming_text(send: SendAction) -> str:
    """What a target receives, seen from the target."""
    how = "resumed send" if send.resume_token else "full send" if send.base is None else "incremental send"
    count = plural(len(send.snapshots), "snapshot")
    return f"receives {count} ({how}) from {send.host}:{send.dataset}@{send.snapshot}"


def destroy_reasons(action: DestroyAction) -> list[str]:
    """The reason of every name the action destroys, in order (linear in its size)."""
    return action.reasons_in_order(empty="no reason recorded")
