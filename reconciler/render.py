"""Render a Plan for people (text through rich, GitHub markdown) and for machines (Plan JSON).

All three read the very same Plan object the executor runs. Text and markdown group
actions by host and then filesystem, list every destroyed snapshot with its reason,
state the prune-vs-replication rule per filesystem, and end (text) or start (markdown)
with one summary line. Conflicts, unavailable hosts and warnings are never folded away.

A first mass prune destroys a million snapshots, so all three are written out as they
are produced (``write_text``, ``write_markdown``, ``write_json``), never held whole in
memory, and the per-destroy work is a few string operations.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby, repeat
from json.encoder import encode_basestring_ascii as json_string
from typing import Any, TextIO

from rich.color import ColorSystem
from rich.console import Console
from rich.style import Style

from reconciler.codes import PruneRule
from reconciler.domain.actions import (
    AbortResumeAction,
    Action,
    BookmarkAction,
    CreateAction,
    DestroyAction,
    HoldAction,
    ReleaseAction,
    SendAction,
)
from reconciler.domain.plan import (
    DIGEST_KEYS,
    Conflict,
    FilesystemReport,
    Plan,
    SnapshotVerdict,
    canonical_json,
)
from reconciler.wording import human_bytes, plural

Explain = str | bool | None

NO_CHANGES = "No changes. Snapshots, retention and replication are up to date."

# Destroy lists longer than this go into a collapsed <details> block in markdown.
MARKDOWN_DETAILS_THRESHOLD = 10
# Unchanged filesystems are named up to this many per line group; the rest are counted.
UNCHANGED_NAMES_SHOWN = 50

PRUNE_RULE_LABELS: dict[str, str] = {
    PruneRule.PRUNE_WINS: "prune wins over replication",
    PruneRule.REPLICATION_PROTECTED: "replication protected (not_replicated)",
}

ACTION_STYLES = {
    "snapshot": "green", "create": "green", "send": "cyan", "abort_resume": "yellow",
    "destroy": "red", "bookmark": "dim", "hold": "dim", "release": "dim",
}
ACTION_SIGILS = {
    "snapshot": "+", "create": "+", "send": ">", "abort_resume": "x",
    "destroy": "-", "bookmark": "~", "hold": "~", "release": "~",
}
CONFLICT_STYLE = "bold yellow"
WARNING_STYLE = "yellow"


# --------------------------------------------------------------------------- shared model

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
    counts = Counter(a.kind for a in plan.actions)
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
    labels = {"create": ("placeholder dataset", "to create"),
              "abort_resume": ("partial receive", "to discard"),
              "bookmark": ("bookmark", "to create"), "hold": ("hold", "to place"),
              "release": ("hold", "to release")}
    for kind, n in counts.items():
        if kind in ("snapshot", "send", "destroy"):
            continue
        noun, verb = labels.get(kind, (f"{kind} action", ""))
        parts.append(f"{plural(n, noun)} {verb}".rstrip())
    return ", ".join(parts + attention)


def prune_rule_text(report: FilesystemReport) -> str:
    label = PRUNE_RULE_LABELS.get(report.prune_rule, report.prune_rule)
    return f"{label}: {report.prune_rule_why}" if report.prune_rule_why else label


def action_detail(action: Action) -> str:
    """Extra facts after ``describe()``: size estimate, resume, reason."""
    bits: list[str] = []
    if isinstance(action, SendAction):
        if action.estimated_bytes is not None:
            bits.append(f"{human_bytes(action.estimated_bytes)} est.")
        if action.raw:
            bits.append("raw")
    if action.reason and not isinstance(action, DestroyAction):
        bits.append(action.reason)
    return "; ".join(bits)


def incoming_text(send: SendAction) -> str:
    """What a target receives, seen from the target."""
    how = "resumed send" if send.resume_token else "full send" if send.base is None else "incremental send"
    count = plural(len(send.snapshots), "snapshot")
    return f"receives {count} ({how}) from {send.host}:{send.dataset}@{send.snapshot}"


def destroy_reasons(action: DestroyAction) -> list[str]:
    """The reason of every name the action destroys, in order (linear in its size)."""
    return action.reasons_in_order(empty="no reason recorded")


# --------------------------------------------------------------------------- text

Segment = tuple[str, str]  # (text, rich style)


class TextOut:
    """Writes lines of styled segments, each with an indent, to the console's file as they come.

    rich decides colour support (TTY, NO_COLOR, FORCE_COLOR, colour depth) and renders each
    style once, but laying out a million destroy lines through rich's Text machinery, or
    even keeping them all until the end, would take many seconds and gigabytes.
    """

    def __init__(self, console: Console) -> None:
        self.file = console.file
        self.paint = Painter(console)
        # Pipes and files get whole lines (grep-able), no wrapping at an assumed width.
        self.width: int | None = console.width if console.is_terminal else None
        self.chunk: list[str] = []

    def add(self, indent: int, *parts: str | Segment) -> None:
        segments = tuple((p, "") if isinstance(p, str) else p for p in parts)
        paint = self.paint
        for offset, piece in wrap_segments(segments, indent, self.width):
            self.chunk.append(" " * offset + "".join(paint(text, style) for text, style in piece) + "\n")
        if len(self.chunk) >= 1000:
            self.flush()

    def blank(self) -> None:
        self.chunk.append("\n")

    def rows(self, indent: int, names: Sequence[str], reasons: Sequence[str], name_style: str,
             lead: str = "", lead_style: str = "", *, column: int | None = None) -> None:
        """``[lead  ]name  reason`` lines (reason dimmed), names padded to ``column`` (default:
        the longest name, at most 40).

        What ``add`` would write for each row, but in C loops (these are the million lines of
        a mass prune or an ``--explain``); rows that would wrap go through ``add``."""
        if not names:
            return
        if column is None:
            column = min(max(map(len, names)), 40)
        name_on, name_off = self.paint.codes(name_style)
        dim_on, dim_off = self.paint.codes("dim")
        head = " " * indent
        if lead:
            lead_on, lead_off = self.paint.codes(lead_style)
            head += f"{lead_on}{lead}{lead_off}  "
        room = None if self.width is None else self.width - indent - (len(lead) + 2 if lead else 0) - 2
        before, between, after = head + name_on, f"{name_off}  {dim_on}", dim_off + "\n"
        # add() paints no empty segment and wraps long lines: those rows take the slow path.
        if all(names) and all(reasons) and (
                room is None or max(column, max(map(len, names))) + max(map(len, reasons)) <= room):
            self.chunk.append("".join(map("".join, zip(
                repeat(before), map(str.ljust, names, repeat(column)), repeat(between), reasons,
                repeat(after)))))
        else:
            lead_parts: tuple[Segment, ...] = ((lead, lead_style), ("  ", "")) if lead else ()
            for name, reason in zip(names, reasons, strict=True):
                if name and reason and (room is None or max(len(name), column) + len(reason) <= room):
                    self.chunk.append(f"{before}{name.ljust(column)}{between}{reason}{after}")
                else:
                    self.add(indent, *lead_parts, (name.ljust(column), name_style), "  ", (reason, "dim"))
        if len(self.chunk) >= 1000:
            self.flush()

    def flush(self) -> None:
        self.file.write("".join(self.chunk))
        self.chunk = []

    def close(self) -> None:
        self.flush()
        self.file.flush()


class Painter:
    """Turns (text, style) into what this console shows: ANSI codes, or the bare text."""

    def __init__(self, console: Console) -> None:
        names = {"standard": ColorSystem.STANDARD, "256": ColorSystem.EIGHT_BIT,
                 "truecolor": ColorSystem.TRUECOLOR, "windows": ColorSystem.STANDARD}
        self.system = names.get(console.color_system or "") if console.is_terminal else None
        self.no_color = console.no_color
        self.cache: dict[str, tuple[str, str]] = {}

    def __call__(self, text: str, style: str) -> str:
        if not style or self.system is None or not text:
            return text
        before, after = self.codes(style)
        return f"{before}{text}{after}"

    def codes(self, style: str) -> tuple[str, str]:
        """What goes before and after a (non-empty) text in ``style``: ("", "") without colour."""
        if not style or self.system is None:
            return "", ""
        if style not in self.cache:
            parsed = Style.parse(style)
            if self.no_color:
                parsed = parsed.without_color
            probe = parsed.render("\0", color_system=self.system)
            before, _, after = probe.partition("\0")
            self.cache[style] = (before, after)
        return self.cache[style]


def wrap_segments(segments: tuple[Segment, ...], indent: int, width: int | None,
                  ) -> list[tuple[int, tuple[Segment, ...]]]:
    """(indent, segments) lines: ``segments`` wrapped at spaces to ``width`` columns,
    continuation lines two further in. ZFS names are ASCII, so a character is a column."""
    plain = "".join(text for text, _ in segments)
    if width is None or indent + len(plain) <= width:
        return [(indent, segments)]
    lines: list[tuple[int, tuple[Segment, ...]]] = []
    start, offset = 0, indent
    while start < len(plain):
        room = max(width - offset, 10)
        end = len(plain)
        if end - start > room:
            cut = plain.rfind(" ", start + 1, start + room + 1)
            end = cut if cut > start else start + room
        lines.append((offset, slice_segments(segments, start, end)))
        start = end
        while start < len(plain) and plain[start] == " ":
            start += 1
        offset = indent + 2
    return lines


def slice_segments(segments: tuple[Segment, ...], start: int, end: int) -> tuple[Segment, ...]:
    """The styled characters ``start:end`` of the concatenated segments."""
    out: list[Segment] = []
    pos = 0
    for text, style in segments:
        lo, hi = max(start - pos, 0), min(end - pos, len(text))
        if lo < hi:
            out.append((text[lo:hi], style))
        pos += len(text)
    if out:
        last_text, last_style = out[-1]
        out[-1] = (last_text.rstrip(), last_style)
    return tuple(out)


def text_action(out: TextOut, action: Action, indent: int) -> None:
    style = ACTION_STYLES.get(action.kind, "")
    sigil = ACTION_SIGILS.get(action.kind, "*")
    detail = action_detail(action)
    out.add(indent, (f"{sigil} {action.describe()}", style), (f" — {detail}" if detail else "", "dim"))
    if isinstance(action, DestroyAction):
        out.rows(indent + 4, action.snapshots, destroy_reasons(action), style)


def text_verdicts(out: TextOut, report: FilesystemReport, indent: int) -> None:
    snaps = sum(1 for v in report.verdicts if not v.name.startswith("#"))
    marks = len(report.verdicts) - snaps
    head = f"explain {report.host}:{report.dataset}: {plural(snaps, 'snapshot')}"
    out.add(indent, (head + (f", {plural(marks, 'bookmark')}" if marks else ""), "bold"))
    if not report.verdicts:
        out.add(indent + 2, ("(no snapshots or bookmarks)", "dim"))
        return
    # Runs of equal verdicts share the lead column's text and style: one ``rows`` call each.
    column = min(max(len(v.name) for v in report.verdicts), 40)
    for keep, run in groupby(report.verdicts, key=lambda v: v.keep):
        verdicts = list(run)
        verdict, style = ("keep   ", "green") if keep else ("destroy", "red")
        out.rows(indent + 2, [v.name for v in verdicts], [v.reason for v in verdicts], "", verdict, style,
                 column=column)


def text_filesystem(out: TextOut, fs: FilesystemView, explain: set[tuple[str, str]]) -> None:
    report = fs.report
    head = f"{report.role} · policy {report.policy}" if report else ""
    out.add(2, (fs.dataset, "bold"), (f"  {head}" if head else "", "dim"))
    if report and report.prune_rule:
        out.add(4, ("prune rule: ", "dim"), prune_rule_text(report))
    for send in fs.incoming:
        out.add(4, (f"< {incoming_text(send)}", "dim cyan"))
    for action in fs.actions:
        text_action(out, action, 4)
    for warning in fs.warnings:
        out.add(4, (f"! warning: {warning}", WARNING_STYLE))
    for kept in fs.protected:
        out.add(4, (f"= keeps {kept.name}: {kept.reason}, although the keep rules would destroy it", "dim"))
    for conflict in fs.conflicts:
        out.add(4, (f"! conflict {conflict.code} on {conflict.host}:{conflict.dataset}"
                    " (see Conflicts below)", CONFLICT_STYLE))
    if report is not None and (fs.host, fs.dataset) in explain:
        text_verdicts(out, report, 4)


def unchanged_groups(views: Iterable[FilesystemView]) -> dict[str, list[str]]:
    """Unchanged datasets grouped by a label saying their role and prune rule."""
    groups: dict[str, list[str]] = {}
    for fs in views:
        report = fs.report
        if report is None or report.role != "source" or not report.prune_rule:
            label = "unchanged"
        else:
            label = f"unchanged, {PRUNE_RULE_LABELS.get(report.prune_rule, report.prune_rule)}"
        groups.setdefault(label, []).append(fs.dataset)
    return groups


def text_unchanged(out: TextOut, views: list[FilesystemView]) -> None:
    for label, names in unchanged_groups(views).items():
        shown = ", ".join(names[:UNCHANGED_NAMES_SHOWN])
        more = len(names) - UNCHANGED_NAMES_SHOWN
        rest = f" and {more} more (--explain lists them)" if more > 0 else ""
        out.add(2, (f"{label}: ", "dim"), shown, (rest, "dim"))


def text_conflict(out: TextOut, conflict: Conflict) -> None:
    source = (f"  (source {conflict.source_host}:{conflict.source_dataset})"
              if conflict.source_host else "")
    out.add(2, (f"! {conflict.code}  {conflict.host}:{conflict.dataset}", CONFLICT_STYLE), source)
    out.add(6, conflict.message)
    if conflict.fix:
        out.add(6, ("fix: ", "bold"), conflict.fix)


def write_text(plan: Plan, out: TextOut, explain: Explain = None) -> None:
    when = plan.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.add(0, ("Plan", "bold"), f" at {when}", (f"  (fingerprint {plan.fingerprint})", "dim"))
    explain_keys = explained_keys(plan, explain)
    unavailable = {host for host, _reason in plan.unavailable}
    for host, datasets in group_by_host(plan).items():
        shown, unchanged = split_shown(sorted_views(datasets), explain_keys)
        out.blank()
        note = "  unavailable (see Unavailable hosts below)" if host in unavailable else ""
        out.add(0, (f"Host {host}", "bold"), (note, CONFLICT_STYLE))
        for fs in shown:
            text_filesystem(out, fs, explain_keys)
        text_unchanged(out, unchanged)
    if plan.warnings:
        out.blank()
        out.add(0, (f"Warnings ({len(plan.warnings)})", f"bold {WARNING_STYLE}"))
        for warning in plan.warnings:
            out.add(2, (f"! {warning}", WARNING_STYLE))
    if plan.unavailable:
        out.blank()
        out.add(0, (f"Unavailable hosts ({len(plan.unavailable)})", CONFLICT_STYLE))
        for host, reason in plan.unavailable:
            out.add(2, (f"! {host}: {reason}", CONFLICT_STYLE))
        out.add(4, ("nothing is sent to or destroyed on an unavailable host; "
                    "its sources are pruned only where the prune rule says so", "dim"))
    if plan.conflicts:
        out.blank()
        out.add(0, (f"Conflicts ({len(plan.conflicts)}): no send and no destroy on these targets",
                    CONFLICT_STYLE))
        for conflict in plan.conflicts:
            text_conflict(out, conflict)
    out.blank()
    line = summary_line(plan)
    if plan.actions:
        out.add(0, ("Plan: ", "bold"), (line, "bold"))
    else:
        out.add(0, (line, "bold green" if not attention_items(plan) else CONFLICT_STYLE))


def render_text(plan: Plan, *, explain: Explain = None, console: Console | None = None) -> None:
    """Print the plan for a person. Colour only on a terminal, and never with NO_COLOR."""
    out = TextOut(console or Console())
    try:
        write_text(plan, out, explain)
    finally:
        out.close()


def render_text_to_string(plan: Plan, *, explain: Explain = None, width: int = 100,
                          terminal: bool = True) -> str:
    """The text rendering without colour, as a terminal of ``width`` columns (or a pipe) shows it."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=terminal,
                      highlight=False, emoji=False, legacy_windows=False)
    render_text(plan, explain=explain, console=console)
    return buffer.getvalue()


# --------------------------------------------------------------------------- markdown

# ASCII punctuation that can start markdown syntax, HTML, mentions or issue links inline.
# The backslash comes first: the escapes added for the others must not be escaped again.
MD_SPECIAL = "\\`*_[]<>|~#@!&"


def md_text(text: str) -> str:
    """Plain text safe inline and in table cells (CommonMark backslash escapes)."""
    return md_escape(" ".join(text.split()))


def md_texts(texts: list[str]) -> list[str]:
    """``md_text`` of each, escaped all at once (the reasons of a destroy list): a text with
    its whitespace collapsed holds no newline, so they travel as the lines of one string."""
    if not texts:
        return []
    return md_escape("\n".join([" ".join(text.split()) for text in texts])).split("\n")


def md_escape(text: str) -> str:
    # One C-speed replace per character present (a regex calls back into Python per match,
    # six times slower on a typical destroy reason).
    for char in MD_SPECIAL:
        if char in text:
            text = text.replace(char, "\\" + char)
    return text


def md_code(text: str, *, table: bool = False) -> str:
    """A code span holding ``text`` verbatim, whatever backticks it contains.

    Inside a table cell GitHub splits on every unescaped pipe, even in code spans,
    and renders ``\\|`` there as ``|``; outside tables ``\\|`` would show literally.
    """
    if "`" not in text and "\n" not in text and text[:1] != " " and not (table and "|" in text):
        return f"`{text}`"  # the common case, exactly what the general rules below produce
    text = " ".join(text.split("\n"))
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    # CommonMark strips one space from each end when both ends are spaces (not all spaces).
    stripped = text.startswith(" ") and text.endswith(" ") and text.strip(" ") != ""
    pad = " " if text.startswith("`") or text.endswith("`") or stripped else ""
    body = text.replace("|", "\\|") if table else text
    return f"{fence}{pad}{body}{pad}{fence}"


def md_action(action: Action) -> str:
    detail = action_detail(action)
    suffix = f" — {md_text(detail)}" if detail else ""
    if action.kind == "snapshot":
        return f"**create snapshot** {md_code(action.argv()[2])}{suffix}"
    if isinstance(action, SendAction):
        target = md_code(f"{action.target_host}:{action.target_dataset}")
        if action.resume_token:
            what = f"**resume send** of {md_code(f'{action.dataset}@{action.snapshot}')}"
        elif action.base is None:
            what = f"**full send** {md_code(f'{action.dataset}@{action.snapshot}')}"
        else:
            what = (f"**incremental send** {md_code(action.base)} → {md_code('@' + action.snapshot)}"
                    f" ({plural(len(action.snapshots), 'snapshot')})")
        return f"{what} to {target}{suffix}"
    if isinstance(action, DestroyAction):
        return f"**destroy** {plural(len(action.snapshots), 'snapshot')}{suffix}"
    return md_minor_action(action) + suffix


def md_minor_action(action: Action) -> str:
    if isinstance(action, BookmarkAction):
        return (f"**bookmark** {md_code(f'{action.dataset}@{action.snapshot}')} as "
                f"{md_code('#' + action.bookmark)}")
    if isinstance(action, HoldAction):
        return f"**hold** {md_code(f'{action.dataset}@{action.snapshot}')} (tag {md_code(action.tag)})"
    if isinstance(action, ReleaseAction):
        return f"**release hold** {md_code(action.tag)} on {md_code(f'{action.dataset}@{action.snapshot}')}"
    if isinstance(action, CreateAction):
        return f"**create placeholder** {md_code(action.dataset)} (canmount=off)"
    if isinstance(action, AbortResumeAction):
        return f"**discard partial receive** of {md_code(action.dataset)}"
    return md_text(action.describe())


def md_destroy_list(action: DestroyAction, indent: str = "") -> list[str]:
    names = action.snapshots
    reasons = md_texts(destroy_reasons(action))
    if plain_code(names):  # md_code(name) is `name` for each: checked once for all
        return [f"{indent}- `{name}`: {reason}" for name, reason in zip(names, reasons, strict=True)]
    return [f"{indent}- {md_code(name)}: {reason}" for name, reason in zip(names, reasons, strict=True)]


def plain_code(names: Sequence[str]) -> bool:
    """Whether ``md_code(name)`` is just the name in single backticks, for every name."""
    block = "\n".join(names)
    return ("`" not in block and block.count("\n") == len(names) - 1
            and block[:1] != " " and "\n " not in block)


class MarkdownOut:
    """Writes markdown lines to a file as they come, without the document's trailing blank lines."""

    def __init__(self, file: TextIO) -> None:
        self.file = file
        self.blanks = 0  # blank lines held back: written only if something follows

    def write(self, lines: list[str]) -> None:
        end = len(lines)
        while end and lines[end - 1] == "":
            end -= 1
        if end:
            self.file.write("\n" * self.blanks + "\n".join(lines[:end]) + "\n")
            self.blanks = 0
        self.blanks += len(lines) - end


def md_filesystem(fs: FilesystemView, explain: set[tuple[str, str]]) -> list[str]:
    report = fs.report
    head = f"**{md_code(fs.dataset)}**"
    if report:
        head += f" · {md_text(report.role)} · policy {md_code(report.policy)}"
    lines = [head + ("  " if report and report.prune_rule else "")]
    if report and report.prune_rule:
        label = PRUNE_RULE_LABELS.get(report.prune_rule, report.prune_rule)
        why = f" — {md_text(report.prune_rule_why)}" if report.prune_rule_why else ""
        lines.append(f"Prune rule: **{md_text(label)}**{why}")
    lines.append("")
    collapsed: list[DestroyAction] = []
    lines += [f"- {md_text(incoming_text(send))}" for send in fs.incoming]
    for action in fs.actions:
        lines.append(f"- {md_action(action)}")
        if isinstance(action, DestroyAction):
            if len(action.snapshots) > MARKDOWN_DETAILS_THRESHOLD:
                collapsed.append(action)
            else:
                lines += md_destroy_list(action, "  ")
    for warning in fs.warnings:
        lines.append(f"- ⚠️ **warning:** {md_text(warning)}")
    for kept in fs.protected:
        lines.append(f"- 🔒 keeps {md_code(kept.name)}: {md_text(kept.reason)}, although the keep rules"
                     " would destroy it")
    for conflict in fs.conflicts:
        lines.append(f"- ⛔ **conflict {md_text(conflict.code)}** on "
                     f"{md_code(f'{conflict.host}:{conflict.dataset}')} (see conflicts above)")
    lines.append("")
    for action in collapsed:
        lines += md_details(f"{plural(len(action.snapshots), 'snapshot')} to destroy on "
                            f"<code>{html.escape(fs.host + ':' + fs.dataset)}</code>",
                            md_destroy_list(action))
    if report is not None and (fs.host, fs.dataset) in explain:
        lines += md_verdicts(report)
    return lines


def md_details(summary_html: str, body: list[str]) -> list[str]:
    return [f"<details><summary>{summary_html}</summary>", "", *body, "", "</details>", ""]


def md_verdicts(report: FilesystemReport) -> list[str]:
    rows = ["| Snapshot | Verdict | Reason |", "| --- | --- | --- |"]
    for v in report.verdicts:
        verdict = "keep" if v.keep else "**destroy**"
        rows.append(f"| {md_code(v.name, table=True)} | {verdict} | {md_text(v.reason)} |")
    if not report.verdicts:
        rows = ["No snapshots or bookmarks."]
    return md_details(f"Explain <code>{html.escape(report.host + ':' + report.dataset)}</code>: "
                      f"{plural(len(report.verdicts), 'entry', 'entries')}", rows)


def md_unchanged(views: list[FilesystemView]) -> list[str]:
    if not views:
        return []
    body = []
    for fs in views:
        report = fs.report
        rule = ""
        if report and report.prune_rule:
            rule = f" · prune rule: {md_text(PRUNE_RULE_LABELS.get(report.prune_rule, report.prune_rule))}"
        role = f" · {md_text(report.role)}" if report else ""
        body.append(f"- {md_code(fs.dataset)}{role}{rule}")
    return md_details(f"{plural(len(views), 'filesystem')} unchanged", body)


def md_attention(plan: Plan) -> list[str]:
    lines: list[str] = []
    if plan.conflicts:
        lines += ["> [!CAUTION]",
                  f"> **{plural(len(plan.conflicts), 'conflict')}**: nothing is sent to or destroyed"
                  " on these targets until fixed.", ">"]
        for c in plan.conflicts:
            source = (f" (source {md_code(f'{c.source_host}:{c.source_dataset}')})"
                      if c.source_host else "")
            lines.append(f"> - **{md_text(c.code)}** on {md_code(f'{c.host}:{c.dataset}')}{source}: "
                         f"{md_text(c.message)}")
            if c.fix:
                lines.append(f">   - suggested fix: {md_text(c.fix)}")
        lines.append("")
    if plan.unavailable or plan.warnings:
        lines.append("> [!WARNING]")
        if plan.unavailable:
            lines.append(f"> **{plural(len(plan.unavailable), 'host')} unavailable**: nothing is sent to"
                         " or destroyed on it.")
            lines += [f"> - {md_code(host)}: {md_text(reason)}" for host, reason in plan.unavailable]
        if plan.unavailable and plan.warnings:
            lines.append(">")
        if plan.warnings:
            lines.append(f"> **{plural(len(plan.warnings), 'warning')}**")
            lines += [f"> - {md_text(w)}" for w in plan.warnings]
        lines.append("")
    return lines


def write_markdown(plan: Plan, file: TextIO, *, explain: Explain = None) -> None:
    """GitHub-flavoured markdown for a pull-request comment, written to ``file`` as it goes."""
    out = MarkdownOut(file)
    when = plan.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.write([f"### zrepl-reconcile plan: {md_text(summary_line(plan))}", "",
               f"Computed at {md_code(when)} · fingerprint {md_code(plan.fingerprint)}", ""])
    out.write(md_attention(plan))
    explain_keys = explained_keys(plan, explain)
    unavailable = {host for host, _reason in plan.unavailable}
    for host, datasets in group_by_host(plan).items():
        shown, unchanged = split_shown(sorted_views(datasets), explain_keys)
        note = " — unavailable" if host in unavailable else ""
        out.write([f"#### Host {md_code(host)}{note}", ""])
        for fs in shown:
            out.write(md_filesystem(fs, explain_keys))
        out.write(md_unchanged(unchanged))


def render_markdown(plan: Plan, *, explain: Explain = None) -> str:
    """GitHub-flavoured markdown for a pull-request comment."""
    buffer = io.StringIO()
    write_markdown(plan, buffer, explain=explain)
    return buffer.getvalue()


# --------------------------------------------------------------------------- json

def render_json(plan: Plan) -> str:
    """The Plan JSON of DESIGN.md (public, versioned): what ``apply --plan FILE`` reads."""
    buffer = io.StringIO()
    write_json(plan, buffer)
    return buffer.getvalue()


def write_json(plan: Plan, file: TextIO) -> None:
    """The Plan JSON written to ``file`` action by action: byte for byte what
    ``json.dumps(plan_document(plan), indent=2) + "\\n"`` gives, without first building that
    string, or the dicts of all actions. Each action's text is hashed as it is written, and
    the ``digest`` follows the document's other keys."""
    writer = JsonWriter(file)
    document = plan.to_json(lazy=True)
    digest = PlanDigest(document)
    document["actions"] = digest.written(document["actions"])
    document[DIGEST_KEY] = Deferred(digest.value)
    writer.value(document, 0)
    writer.parts.append("\n")
    writer.flush()


def plan_document(plan: Plan) -> dict[str, Any]:
    """The Plan JSON as a dict, ``digest`` included (what ``write_json`` writes)."""
    document = plan.to_json()
    document[DIGEST_KEY] = plan_digest(document, document["actions"])
    return document


# --------------------------------------------------------------------------- the plan's digest

DIGEST_KEY = "digest"
ACTION_LEVEL = 2  # the nesting level of an action's object: document (0), "actions" (1), action (2)


class RawJson(str):
    """JSON text the writer has already written once (an action whose text was hashed)."""


class Deferred:
    """A value the writer asks for only when it reaches its key (the digest, after the actions)."""

    def __init__(self, compute: Callable[[], Any]) -> None:
        self.compute = compute


class PlanDigest:
    """``sha256:<hex>`` over the Plan JSON's DIGEST_KEYS (canonical JSON) and each action's
    text as the writer writes it: edits of anything ``apply --plan`` would run change it, and
    computing it while writing costs one pass of the hash over text made anyway. Read back,
    the actions are written again the same way (``plan_digest``): key order and values count,
    whitespace does not."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.hash = hashlib.sha256(canonical_json({key: document.get(key) for key in DIGEST_KEYS}))

    def add(self, action_text: str) -> None:
        self.hash.update(b"\n")
        self.hash.update(action_text.encode())

    def written(self, actions: Iterable[Any]) -> Iterator[RawJson]:
        for action in actions:
            text = RawJson(json_text(action, ACTION_LEVEL))
            self.add(text)
            yield text

    def value(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def plan_digest(document: Mapping[str, Any], actions: Iterable[Any]) -> str:
    """The digest of a Plan JSON document (as read from a file, or ``plan.to_json()``)."""
    digest = PlanDigest(document)
    for action in actions:
        digest.add(json_text(action, ACTION_LEVEL))
    return digest.value()


def json_text(value: Any, level: int) -> str:
    """``value`` as JsonWriter writes it at nesting ``level``."""
    buffer = io.StringIO()
    writer = JsonWriter(buffer)
    writer.value(value, level)
    writer.flush()
    return buffer.getvalue()


class JsonWriter:
    """``json.dumps(value, indent=2)`` (ensure_ascii, no sorting) streamed to a file.

    json's own encoder formats indented output in Python generators, one per nesting level
    and value; here a list of strings or a string-to-string object (a destroy's snapshots and
    reasons: nearly all of a large plan) is one join of C-encoded strings, and an iterator
    (the plan's actions) is written as an array element by element, the buffer going to the
    file as it fills.
    """

    INDENT = "  "

    def __init__(self, file: TextIO) -> None:
        self.file = file
        self.parts: list[str] = []

    def flush(self) -> None:
        self.file.write("".join(self.parts))
        self.parts = []

    def value(self, value: Any, level: int) -> None:
        parts = self.parts
        if isinstance(value, str):
            parts.append(json_string(value))
        elif value is None:
            parts.append("null")
        elif value is True:
            parts.append("true")
        elif value is False:
            parts.append("false")
        elif isinstance(value, int):
            parts.append(int.__repr__(value))
        elif isinstance(value, float):
            parts.append(json.dumps(value))  # json's spelling of nan and infinities
        elif isinstance(value, dict):
            self.object(value, level)
        elif isinstance(value, list | tuple):
            self.array(value, level)
        elif isinstance(value, Iterator):
            self.stream(value, level)
        elif isinstance(value, Deferred):
            self.value(value.compute(), level)
        else:
            raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    def array(self, items: list[Any] | tuple[Any, ...], level: int) -> None:
        if not items:
            self.parts.append("[]")
            return
        inner = "\n" + self.INDENT * (level + 1)
        body = string_items(items, inner)
        if body is None:  # not all strings
            self.stream(iter(items), level)
            return
        self.parts.append(f"[{inner}{body}\n{self.INDENT * level}]")

    def stream(self, items: Iterator[Any], level: int) -> None:
        parts = self.parts
        inner = "\n" + self.INDENT * (level + 1)
        opening = "[" + inner
        for item in items:
            parts.append(opening)
            opening = "," + inner
            if item.__class__ is RawJson:
                parts.append(item)
            else:
                self.value(item, level + 1)
                parts = self.parts  # a nested stream may have flushed
            if len(parts) > 4096:
                self.flush()
                parts = self.parts
        parts.append("[]" if opening.startswith("[") else f"\n{self.INDENT * level}]")

    def object(self, value: dict[Any, Any], level: int) -> None:
        parts = self.parts
        if not value:
            parts.append("{}")
            return
        inner = "\n" + self.INDENT * (level + 1)
        body = string_pairs(value, inner)
        if body is not None:
            parts.append(f"{{{inner}{body}\n{self.INDENT * level}}}")
            return
        # Some key or value is not a string.
        opening = "{" + inner
        for key, item in value.items():
            parts.append(f"{opening}{json_string(json_key(key))}: ")
            opening = "," + inner
            self.value(item, level + 1)
            parts = self.parts  # a nested stream may have flushed
        parts.append(f"\n{self.INDENT * level}}}")


def string_items(items: list[Any] | tuple[Any, ...], inner: str) -> str | None:
    """The items of an indented JSON array of strings (``"a",<inner>"b"``); None if one is not a str."""
    try:
        return f",{inner}".join(map(json_string, items))
    except TypeError:
        return None


def string_pairs(mapping: dict[Any, Any], inner: str) -> str | None:
    """The members of an indented JSON object of strings (``"k": "v",<inner>...``); None if a key
    or value is not a str."""
    try:
        return f",{inner}".join([f"{json_string(k)}: {json_string(v)}" for k, v in mapping.items()])
    except TypeError:
        return None


def json_key(key: Any) -> str:
    """An object key as json.dumps writes it: strings as they are, scalars spelled as JSON."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, int | float):  # bool is an int
        return json.dumps(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
