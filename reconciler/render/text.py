"""The plan for a person at a terminal or in a pipe: grouped by host and filesystem,
coloured by action (rich decides whether colour is on), ending with the summary line."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from itertools import groupby, repeat
from typing import assert_never

from rich.color import ColorSystem
from rich.console import Console
from rich.style import Style

from reconciler.domain.actions import (
    EXECUTION_ORDER,
    Action,
    DestroyAction,
    Kind,
    PostHookAction,
    PreHookAction,
    SendAction,
)
from reconciler.domain.plan import (
    Conflict,
    FilesystemReport,
    Plan,
)
from reconciler.render.view import (
    PRUNE_RULE_LABELS,
    Explain,
    FilesystemView,
    TagGroup,
    action_detail,
    attention_items,
    destroy_reasons,
    explained_keys,
    group_by_host,
    hook_env_text,
    incoming_text,
    prune_rule_text,
    send_explanation,
    shown_actions,
    sorted_views,
    split_shown,
    summary_line,
)
from reconciler.wording import plural

# Unchanged filesystems are named up to this many per line group; the rest are counted.
UNCHANGED_NAMES_SHOWN = 50


def action_look(kind: Kind) -> tuple[str, str]:
    """(sigil, rich style) of an action's line: what it does to the data, at a glance."""
    match kind:
        case "snapshot" | "create":
            return "+", "green"
        case "send":
            return ">", "cyan"
        case "abort_resume":
            return "x", "yellow"
        case "destroy":
            return "-", "red"
        case "bookmark" | "hold" | "hold_received" | "release":
            return "~", "dim"
        case "pre_hook" | "post_hook":
            return "*", "magenta"
        case _:
            assert_never(kind)


ACTION_LOOKS: dict[Kind, tuple[str, str]] = {kind: action_look(kind) for kind in EXECUTION_ORDER}
CONFLICT_STYLE = "bold yellow"
WARNING_STYLE = "yellow"

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


def text_action(out: TextOut, action: Action | TagGroup, indent: int, explained: bool = False) -> None:
    sigil, style = ACTION_LOOKS[action.kind]
    detail = action.reason if isinstance(action, TagGroup) else action_detail(action)
    out.add(indent, (f"{sigil} {action.describe()}", style), (f" — {detail}" if detail else "", "dim"))
    if isinstance(action, DestroyAction):
        out.rows(indent + 4, action.snapshots, destroy_reasons(action), style)
    if explained and isinstance(action, PreHookAction | PostHookAction):
        out.add(indent + 4, ("environment: ", "dim"), hook_env_text(action))
    if explained and isinstance(action, SendAction):
        for line in send_explanation(action):
            out.add(indent + 4, ("why: ", "dim"), line)


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
    explained = (fs.host, fs.dataset) in explain
    for action in shown_actions(fs.actions):
        text_action(out, action, 4, explained)
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
    if plan.metadata:
        out.blank()
        for route in plan.metadata:
            out.add(0, (route.describe(), "dim"))
            if explain:
                out.add(4, (route.explanation(), "dim"))
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

