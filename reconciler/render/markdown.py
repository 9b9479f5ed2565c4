"""The plan as GitHub-flavoured markdown for a pull-request comment: the summary line
first, what needs attention as alerts, long destroy lists folded into ``<details>``.
Every text from the facts or the configuration is escaped (``md_text``, ``md_code``)."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from typing import TextIO, assert_never

from reconciler.domain.actions import (
    AbortResumeAction,
    Action,
    BookmarkAction,
    CreateAction,
    DestroyAction,
    HoldAction,
    HoldReceivedAction,
    ReleaseAction,
    SendAction,
    SnapshotAction,
)
from reconciler.domain.plan import (
    FilesystemReport,
    Plan,
)
from reconciler.render.view import (
    PRUNE_RULE_LABELS,
    Explain,
    FilesystemView,
    TagGroup,
    action_detail,
    destroy_reasons,
    explained_keys,
    group_by_host,
    incoming_text,
    shown_actions,
    sorted_views,
    split_shown,
    summary_line,
)
from reconciler.wording import plural

# Destroy lists longer than this go into a collapsed <details> block in markdown.
MARKDOWN_DETAILS_THRESHOLD = 10

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


def md_action(action: Action | TagGroup) -> str:
    if isinstance(action, TagGroup):
        first = action.actions[0]
        verb = {"hold": "hold", "hold_received": "hold received", "release": "release hold"}[action.kind]
        what = (f"{plural(len(action.actions), 'snapshot')} of {md_code(first.dataset)}"
                f" ({md_text(action.names())})")
        line = (f"**{verb}** {md_code(first.tag)} on {what}" if action.kind == "release"
                else f"**{verb}** {what} (tag {md_code(first.tag)})")
        return line + (f" — {md_text(action.reason)}" if action.reason else "")
    detail = action_detail(action)
    return md_what(action) + (f" — {md_text(detail)}" if detail else "")


def md_what(action: Action) -> str:
    """What the action does, from its fields: the verb in bold, every name as code."""
    match action:
        case DestroyAction():
            return f"**destroy** {plural(len(action.snapshots), 'snapshot')}"
        case SendAction():
            target = md_code(f"{action.target_host}:{action.target_dataset}")
            if action.resume_token:
                what = f"**resume send** of {md_code(f'{action.dataset}@{action.snapshot}')}"
            elif action.base is None:
                what = f"**full send** {md_code(f'{action.dataset}@{action.snapshot}')}"
            else:
                what = (f"**incremental send** {md_code(action.base)} → {md_code('@' + action.snapshot)}"
                        f" ({plural(len(action.snapshots), 'snapshot')})")
            return f"{what} to {target}"
        case SnapshotAction():
            return f"**create snapshot** {md_code(f'{action.dataset}@{action.snapshot}')}"
        case BookmarkAction():
            return (f"**bookmark** {md_code(f'{action.dataset}@{action.snapshot}')} as "
                    f"{md_code('#' + action.bookmark)}")
        case HoldAction():
            return f"**hold** {md_code(f'{action.dataset}@{action.snapshot}')} (tag {md_code(action.tag)})"
        case HoldReceivedAction():
            return (f"**hold received** {md_code(f'{action.dataset}@{action.snapshot}')}"
                    f" (tag {md_code(action.tag)})")
        case ReleaseAction():
            snapshot = md_code(f"{action.dataset}@{action.snapshot}")
            return f"**release hold** {md_code(action.tag)} on {snapshot}"
        case CreateAction():
            options = ", ".join(f"{k}={v}" for k, v in action.properties.items())
            return f"**create placeholder** {md_code(action.dataset)} ({options})"
        case AbortResumeAction():
            return f"**discard partial receive** of {md_code(action.dataset)}"
        case _:
            assert_never(action)


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
    for action in shown_actions(fs.actions):
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

