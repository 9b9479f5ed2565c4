"""The plan as GitHub-flavoured markdown for a pull-request comment: the summary line
first, what needs attention as alerts, long destroy lists folded into ``<details>``.
Every text from the facts or the configuration is escaped (``md_text``, ``md_code``).

A pull-request comment holds at most 65,536 characters (GitHub refuses a longer one).
With ``max_chars`` (``plan --max-chars``, 60,000 by default: a margin for the workflow's
own words and for how GitHub counts) a plan that is longer is shortened (``fit_markdown``):
a note under the summary line says what was left out and where the full plan is, and
details go in this order, each step only as far as needed (``CUT_STEPS``): the longest
lists of names first (destroyed snapshots, explain rows, kept and unchanged filesystems:
every list keeps as many entries as the budget allows for all of them, down to a sample
of three), then whole filesystem blocks from the end (counted per host), then the
samples, host sections, warnings, unavailable hosts, the conflicts' messages and, last,
conflicts themselves (only when they alone exceed the budget, hundreds of them; the rest
are counted by code). The summary line is always there. A plan that fits is written
exactly as without a limit.
"""

from __future__ import annotations

import html
import io
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TextIO, assert_never

from reconciler.domain.actions import (
    AbortResumeAction,
    Action,
    BookmarkAction,
    CreateAction,
    DestroyAction,
    HoldAction,
    HoldReceivedAction,
    PostHookAction,
    PreHookAction,
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
    hook_env_text,
    incoming_text,
    send_explanation,
    shown_actions,
    sorted_views,
    split_shown,
    summary_line,
)
from reconciler.wording import plural

# Destroy lists longer than this go into a collapsed <details> block in markdown.
MARKDOWN_DETAILS_THRESHOLD = 10

# GitHub's limit for the body of an issue or pull-request comment, in characters.
GITHUB_COMMENT_LIMIT = 65_536
# plan --max-chars: the default leaves room for the workflow's own words around the plan.
DEFAULT_MAX_CHARS = 60_000
# The least --max-chars can be: the summary, the note and a little more must fit.
MIN_MAX_CHARS = 2_000
# The note saying what a shortened plan leaves out is at most this long (its link clipped).
NOTE_MAX_CHARS = 1_200
FULL_PLAN_URL_MAX = 500


@dataclass(frozen=True, slots=True)
class Caps:
    """How much of each kind of detail the markdown shows; None shows all of it."""

    names: int | None = None  # lines of each list of names (destroys, explain rows, kept, unchanged)
    filesystems: int | None = None  # filesystem blocks shown, in the plan's order
    hosts: int | None = None  # host sections shown
    warnings: int | None = None  # the plan's warnings shown
    unavailable: int | None = None  # unavailable hosts shown
    conflict_details: int | None = None  # 0: a conflict's line without its message and fix
    conflicts: int | None = None  # conflicts shown; the rest counted by code


# How a plan too long for a comment is shortened: each step lowers one knob of Caps towards
# its floor, only as far as needed to fit, and the next step is taken only when even the
# floor does not fit. Long lists keep a sample of SAMPLE_NAMES entries while whole
# filesystem blocks go; conflicts are the last thing cut.
SAMPLE_NAMES = 3
CUT_STEPS: tuple[tuple[str, int], ...] = (
    ("names", SAMPLE_NAMES), ("filesystems", 0), ("names", 0), ("hosts", 0), ("warnings", 0),
    ("unavailable", 0), ("conflict_details", 0), ("conflicts", 0))
FULL = Caps()


@dataclass(slots=True)
class Cut:
    """What a shortened rendering left out, for its note."""

    names: int = 0
    lists: int = 0
    filesystems: int = 0
    hosts: int = 0
    warnings: int = 0
    unavailable: int = 0
    conflicts: int = 0
    conflict_codes: Counter[str] = field(default_factory=Counter)

    def any(self) -> bool:
        return bool(self.names or self.filesystems or self.hosts or self.warnings or self.unavailable
                    or self.conflicts)


def shown_count(total: int, cap: int | None) -> int:
    return total if cap is None else min(total, cap)


def capped(shown: list[str], total: int, cut: Cut, more: str) -> list[str]:
    """``shown`` (the lines of the first entries of a list of ``total``), with one more line
    ``more`` (``{n}``: how many were left out) when some were."""
    if len(shown) >= total:
        return shown
    cut.names += total - len(shown)
    cut.lists += 1
    return [*shown, more.format(n=total - len(shown))]


MORE_IN_FULL_PLAN = "… and {n} more (see the full plan)"

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
        case PreHookAction():
            return (f"**pre hook** {md_code(action.command_text())} before "
                    f"{md_code(f'{action.dataset}@{action.snapshot}')}")
        case PostHookAction():
            return (f"**post hook** {md_code(action.command_text())} after "
                    f"{md_code(f'{action.dataset}@{action.snapshot}')}")
        case _:
            assert_never(action)


def md_destroy_list(action: DestroyAction, indent: str = "", cap: int | None = None,
                    cut: Cut | None = None) -> list[str]:
    names = action.snapshots
    if cap is not None and len(names) > cap:
        shown = names[:cap]
        reasons = md_texts([action.reason_for(n) or "no reason recorded" for n in shown])
        lines = [f"{indent}- {md_code(name)}: {reason}" for name, reason in zip(shown, reasons, strict=True)]
        return capped(lines, len(names), cut or Cut(), f"{indent}- {MORE_IN_FULL_PLAN}")
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


def md_filesystem(fs: FilesystemView, explain: set[tuple[str, str]], caps: Caps = FULL,
                  cut: Cut | None = None) -> list[str]:
    cut = cut if cut is not None else Cut()
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
    explained = (fs.host, fs.dataset) in explain
    for action in shown_actions(fs.actions):
        lines.append(f"- {md_action(action)}")
        if explained and isinstance(action, PreHookAction | PostHookAction):
            lines.append(f"  - environment: {md_code(hook_env_text(action))}")
        if explained and isinstance(action, SendAction):
            lines += [f"  - why: {md_text(line)}" for line in send_explanation(action)]
        if isinstance(action, DestroyAction):
            if caps.names == 0:  # the action's line says how many: the names are in the full plan
                capped([], len(action.snapshots), cut, "")
            elif len(action.snapshots) > MARKDOWN_DETAILS_THRESHOLD:
                collapsed.append(action)
            else:
                lines += md_destroy_list(action, "  ", caps.names, cut)
    for warning in fs.warnings:
        lines.append(f"- ⚠️ **warning:** {md_text(warning)}")
    kept = fs.protected[:shown_count(len(fs.protected), caps.names)]
    lines += capped([f"- 🔒 keeps {md_code(v.name)}: {md_text(v.reason)}, although the keep rules would"
                     " destroy it" for v in kept], len(fs.protected), cut,
                    "- 🔒 … and {n} more kept although the keep rules would destroy them (see the full plan)")
    for conflict in fs.conflicts:
        lines.append(f"- ⛔ **conflict {md_text(conflict.code)}** on "
                     f"{md_code(f'{conflict.host}:{conflict.dataset}')} (see conflicts above)")
    lines.append("")
    for action in collapsed:
        lines += md_details(f"{plural(len(action.snapshots), 'snapshot')} to destroy on "
                            f"<code>{html.escape(fs.host + ':' + fs.dataset)}</code>",
                            md_destroy_list(action, "", caps.names, cut))
    if report is not None and (fs.host, fs.dataset) in explain:
        lines += md_verdicts(report, caps.names, cut)
    return lines


def md_details(summary_html: str, body: list[str]) -> list[str]:
    return [f"<details><summary>{summary_html}</summary>", "", *body, "", "</details>", ""]


def md_verdicts(report: FilesystemReport, cap: int | None = None, cut: Cut | None = None) -> list[str]:
    summary = (f"Explain <code>{html.escape(report.host + ':' + report.dataset)}</code>: "
               f"{plural(len(report.verdicts), 'entry', 'entries')}")
    if cap == 0 and report.verdicts:
        capped([], len(report.verdicts), cut or Cut(), "")
        return [f"- {summary} (in the full plan)", ""]
    rows = ["| Snapshot | Verdict | Reason |", "| --- | --- | --- |"]
    for v in report.verdicts[:shown_count(len(report.verdicts), cap)]:
        verdict = "keep" if v.keep else "**destroy**"
        rows.append(f"| {md_code(v.name, table=True)} | {verdict} | {md_text(v.reason)} |")
    rows = rows[:2] + capped(rows[2:], len(report.verdicts), cut or Cut(),
                             "| … | | {n} more entries: see the full plan |")
    if not report.verdicts:
        rows = ["No snapshots or bookmarks."]
    return md_details(summary, rows)


def md_unchanged(views: list[FilesystemView], cap: int | None = None, cut: Cut | None = None) -> list[str]:
    if not views:
        return []
    if cap == 0:
        capped([], len(views), cut or Cut(), "")
        return [f"- {plural(len(views), 'filesystem')} unchanged (listed in the full plan)", ""]
    body = []
    for fs in views[:shown_count(len(views), cap)]:
        report = fs.report
        rule = ""
        if report and report.prune_rule:
            rule = f" · prune rule: {md_text(PRUNE_RULE_LABELS.get(report.prune_rule, report.prune_rule))}"
        role = f" · {md_text(report.role)}" if report else ""
        body.append(f"- {md_code(fs.dataset)}{role}{rule}")
    body = capped(body, len(views), cut or Cut(), f"- {MORE_IN_FULL_PLAN}")
    return md_details(f"{plural(len(views), 'filesystem')} unchanged", body)


def md_conflicts(plan: Plan, caps: Caps, cut: Cut) -> list[str]:
    if not plan.conflicts:
        return []
    lines = ["> [!CAUTION]",
             f"> **{plural(len(plan.conflicts), 'conflict')}**: nothing is sent to or destroyed"
             " on these targets until fixed.", ">"]
    shown = plan.conflicts[:shown_count(len(plan.conflicts), caps.conflicts)]
    for c in shown:
        source = (f" (source {md_code(f'{c.source_host}:{c.source_dataset}')})"
                  if c.source_host else "")
        head = f"> - **{md_text(c.code)}** on {md_code(f'{c.host}:{c.dataset}')}{source}"
        if caps.conflict_details == 0:
            lines.append(head)
            continue
        lines.append(f"{head}: {md_text(c.message)}")
        if c.fix:
            lines.append(f">   - suggested fix: {md_text(c.fix)}")
    rest = plan.conflicts[len(shown):]
    if rest:
        codes = Counter(str(c.code) for c in rest)
        cut.conflicts += len(rest)
        cut.conflict_codes += codes
        by_code = ", ".join(f"{md_text(code)}: {n}" for code, n in codes.most_common())
        lines.append(f"> - … and {len(rest)} more ({by_code}): see the full plan")
    elif caps.conflict_details == 0:
        lines.append(">")
        lines.append("> Their messages and suggested fixes are in the full plan.")
    lines.append("")
    return lines


def md_attention(plan: Plan, caps: Caps = FULL, cut: Cut | None = None) -> list[str]:
    cut = cut if cut is not None else Cut()
    lines = md_conflicts(plan, caps, cut)
    if plan.unavailable or plan.warnings:
        lines.append("> [!WARNING]")
        if plan.unavailable:
            lines.append(f"> **{plural(len(plan.unavailable), 'host')} unavailable**: nothing is sent to"
                         " or destroyed on it.")
            down = plan.unavailable[:shown_count(len(plan.unavailable), caps.unavailable)]
            lines += [f"> - {md_code(host)}: {md_text(reason)}" for host, reason in down]
            if len(down) < len(plan.unavailable):
                cut.unavailable += len(plan.unavailable) - len(down)
                lines.append(f"> - … and {len(plan.unavailable) - len(down)} more: see the full plan")
        if plan.unavailable and plan.warnings:
            lines.append(">")
        if plan.warnings:
            lines.append(f"> **{plural(len(plan.warnings), 'warning')}**")
            warnings = plan.warnings[:shown_count(len(plan.warnings), caps.warnings)]
            lines += [f"> - {md_text(w)}" for w in warnings]
            if len(warnings) < len(plan.warnings):
                cut.warnings += len(plan.warnings) - len(warnings)
                lines.append(f"> - … and {len(plan.warnings) - len(warnings)} more: see the full plan")
        lines.append("")
    return lines


def md_header(plan: Plan) -> list[str]:
    when = plan.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return [f"### zrepl-reconcile plan: {md_text(summary_line(plan))}", "",
            f"Computed at {md_code(when)} · fingerprint {md_code(plan.fingerprint)}", ""]


Hosts = dict[str, dict[str, FilesystemView]]


def write_body(plan: Plan, out: MarkdownOut, hosts: Hosts, explain: Explain, caps: Caps = FULL,
               cut: Cut | None = None) -> None:
    """Everything under the header: attention, then each host's filesystems, within ``caps``."""
    cut = cut if cut is not None else Cut()
    out.write(md_attention(plan, caps, cut))
    explain_keys = explained_keys(plan, explain)
    unavailable = {host for host, _reason in plan.unavailable}
    blocks_left = caps.filesystems
    for number, (host, datasets) in enumerate(hosts.items()):
        shown, unchanged = split_shown(sorted_views(datasets), explain_keys)
        if caps.hosts is not None and number >= caps.hosts:
            cut.hosts += 1
            cut.filesystems += len(shown)
            continue
        note = " — unavailable" if host in unavailable else ""
        out.write([f"#### Host {md_code(host)}{note}", ""])
        if blocks_left is not None and len(shown) > blocks_left:
            hidden, shown = shown[blocks_left:], shown[:blocks_left]
        else:
            hidden = []
        for fs in shown:
            out.write(md_filesystem(fs, explain_keys, caps, cut))
        if blocks_left is not None:
            blocks_left -= len(shown)
        if hidden:
            cut.filesystems += len(hidden)
            actions = sum(len(fs.actions) for fs in hidden)
            out.write([f"- … and {plural(len(hidden), 'more filesystem')} with changes on this host"
                       f" ({plural(actions, 'action')}): see the full plan", ""])
        out.write(md_unchanged(unchanged, caps.names, cut))
    if cut.hosts:
        out.write([f"#### … and {plural(cut.hosts, 'more host')}: see the full plan", ""])
    if plan.metadata:
        out.write([*(f"- {md_text(route.describe())}"
                     + (f" — {md_text(route.explanation())}" if explain else "")
                     for route in plan.metadata), ""])


def write_markdown(plan: Plan, file: TextIO, *, explain: Explain = None, max_chars: int | None = None,
                   full_plan_url: str = "") -> None:
    """GitHub-flavoured markdown for a pull-request comment, written to ``file`` as it goes;
    with ``max_chars``, at most that many characters (``fit_markdown``)."""
    if max_chars is not None:
        file.write(fit_markdown(plan, max_chars, explain=explain, full_plan_url=full_plan_url))
        return
    out = MarkdownOut(file)
    out.write(md_header(plan))
    write_body(plan, out, group_by_host(plan), explain)


def render_markdown(plan: Plan, *, explain: Explain = None, max_chars: int | None = None,
                    full_plan_url: str = "") -> str:
    """GitHub-flavoured markdown for a pull-request comment."""
    buffer = io.StringIO()
    write_markdown(plan, buffer, explain=explain, max_chars=max_chars, full_plan_url=full_plan_url)
    return buffer.getvalue()


# --------------------------------------------------------------------------- fitting a comment


class Overflow(Exception):
    """The rendering went past its budget."""


class LimitedBuffer(io.StringIO):
    """A StringIO that raises Overflow once more than ``limit`` characters were written:
    trying a rendering costs no more than the budget, however big the plan."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.size = 0

    def write(self, text: str) -> int:
        self.size += len(text)
        if self.size > self.limit:
            raise Overflow
        return super().write(text)


def rendered_within(plan: Plan, hosts: Hosts, explain: Explain, caps: Caps, limit: int) -> str | None:
    """The header and body within ``caps``, or None when longer than ``limit`` characters."""
    buffer = LimitedBuffer(limit)
    out = MarkdownOut(buffer)
    try:
        out.write(md_header(plan))
        write_body(plan, out, hosts, explain, caps)
    except Overflow:
        return None
    return buffer.getvalue()


def knob_maximum(plan: Plan, hosts: Hosts, knob: str) -> int:
    """The largest value of ``knob`` that can matter for this plan (a cap that cuts nothing)."""
    views = [fs for datasets in hosts.values() for fs in datasets.values()]
    destroys = [a for fs in views for a in fs.actions if isinstance(a, DestroyAction)]
    longest_list = max([len(fs.protected) for fs in views]
                       + [len(fs.report.verdicts) for fs in views if fs.report is not None]
                       + [len(a.snapshots) for a in destroys]
                       + [len(datasets) for datasets in hosts.values()], default=0)
    limits = {"names": longest_list, "filesystems": len(views), "hosts": len(hosts),
              "warnings": len(plan.warnings), "unavailable": len(plan.unavailable), "conflict_details": 1,
              "conflicts": len(plan.conflicts)}
    return limits[knob]


def fitting_caps(plan: Plan, hosts: Hosts, explain: Explain, limit: int) -> Caps:
    """The caps that show the most while fitting ``limit`` (the plan uncut does not): each
    step of CUT_STEPS sets its knob to the largest value down to its floor that fits with
    the later steps not taken, or to the floor when even that does not fit (the next step is
    then taken too). Each try stops at the budget, so this costs a few budgets' worth of
    rendering, whatever the plan's size."""
    caps = FULL
    for knob, floor in CUT_STEPS:
        current: int | None = getattr(caps, knob)
        high = knob_maximum(plan, hosts, knob) if current is None else current  # does not fit
        if high <= floor:
            continue  # cut this far already, or nothing to cut
        if rendered_within(plan, hosts, explain, replace(caps, **{knob: floor}), limit) is None:
            caps = replace(caps, **{knob: floor})
            continue
        low = floor  # fits
        while high - low > 1:
            middle = (low + high) // 2
            if rendered_within(plan, hosts, explain, replace(caps, **{knob: middle}), limit) is None:
                high = middle
            else:
                low = middle
        return replace(caps, **{knob: low})
    return caps


def fit_markdown(plan: Plan, max_chars: int, *, explain: Explain = None, full_plan_url: str = "") -> str:
    """The markdown in at most ``max_chars`` characters: the whole of it when it fits,
    otherwise shortened (see the module docstring) with a note saying what was left out."""
    hosts = group_by_host(plan)
    whole = rendered_within(plan, hosts, explain, FULL, max_chars)
    if whole is not None:
        return whole
    caps = fitting_caps(plan, hosts, explain, max_chars - NOTE_MAX_CHARS)
    cut = Cut()
    write_body(plan, MarkdownOut(io.StringIO()), hosts, explain, caps, cut)  # what it leaves out
    buffer = io.StringIO()
    out = MarkdownOut(buffer)
    out.write(md_header(plan))
    out.write(shortened_note(cut, max_chars, full_plan_url))
    write_body(plan, out, hosts, explain, caps)
    text = buffer.getvalue()
    # Never reached (the note is shorter than NOTE_MAX_CHARS): a last guard for the limit.
    return text if len(text) <= max_chars else text[:text.rfind("\n", 0, max_chars - 2) + 1] + "…\n"


def shortened_note(cut: Cut, max_chars: int, full_plan_url: str) -> list[str]:
    """The NOTE alert of a shortened plan: what is left out and where the full plan is."""
    left_out = [text for n, text in (
        (cut.names, f"{plural(cut.names, 'entry', 'entries')} of {plural(cut.lists, 'list')} (destroyed"
                    " snapshots, explain rows, kept or unchanged filesystems)"),
        (cut.filesystems, plural(cut.filesystems, "filesystem") + " with changes"),
        (cut.hosts, plural(cut.hosts, "host")),
        (cut.warnings, plural(cut.warnings, "warning")),
        (cut.unavailable, plural(cut.unavailable, "unavailable host")),
        (cut.conflicts, plural(cut.conflicts, "conflict")),
    ) if n]
    what = "; ".join(left_out) if left_out else "the conflicts' messages and fixes"
    url = full_plan_url.replace(")", "%29").replace(" ", "%20").replace("\n", "")[:FULL_PLAN_URL_MAX]
    where = (f"[the full plan]({url})" if url else
             "the full plan: the Plan JSON of `zrepl-reconcile plan --out plan.json` (the workflow keeps"
             " it as an artifact)")
    note = ["> [!NOTE]",
            f"> **Shortened to fit a pull-request comment** (at most {max_chars:,} characters; GitHub takes"
            f" {GITHUB_COMMENT_LIMIT:,}). Left out: {what}. Everything is in {where}.", ""]
    return note
