"""Rendering of hand-built plans: golden files for text and markdown, Plan JSON key names.

Regenerate the golden files after an intended change with
``UPDATE_GOLDEN=1 python3 -m pytest -q tests/test_render.py`` and review the diff.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest

from reconciler.codes import ConflictCode, PruneRule
from reconciler.domain.actions import (
    MAX_ARGV_BYTES,
    AbortResumeAction,
    BookmarkAction,
    CreateAction,
    DestroyAction,
    HoldAction,
    PostHookAction,
    PreHookAction,
    ReleaseAction,
    SendAction,
    SnapshotAction,
)
from reconciler.domain.plan import Conflict, FilesystemReport, Plan, SnapshotVerdict
from reconciler.render.json import plan_document, render_json, write_json
from reconciler.render.markdown import md_code, md_text, render_markdown
from reconciler.render.text import render_text_to_string
from reconciler.render.view import NO_CHANGES, explained_reports, summary_line
from reconciler.wording import human_bytes

GOLDEN = Path(__file__).with_name("golden")
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
FP = "sha256:5f1c0d2e9a7b4c3d"
GIB = 1024**3

PROTECTED_WHY = ("keep_source has not_replicated: nothing newer than a target's cursor"
                 " (#zrepl_cursor_backup) is destroyed")
PRUNE_WINS_WHY = "keep_source has no not_replicated: pruning proceeds even when replication stalls"


def source(host: str, dataset: str, rule: str = PruneRule.REPLICATION_PROTECTED, *, policy: str = "hourly",
           verdicts: tuple[SnapshotVerdict, ...] = (), warnings: tuple[str, ...] = ()) -> FilesystemReport:
    why = PROTECTED_WHY if rule == PruneRule.REPLICATION_PROTECTED else PRUNE_WINS_WHY
    return FilesystemReport(host, dataset, "source", policy, rule, why, verdicts, warnings)


def target(host: str, dataset: str, *, verdicts: tuple[SnapshotVerdict, ...] = ()) -> FilesystemReport:
    return FilesystemReport(host, dataset, "target", "hourly", "", "", verdicts)


def creates_and_sends() -> Plan:
    """First hours of a setup: atomic snapshots, full/incremental/resume sends, cursors, retention."""
    batch = "nas:tank:zrepl_20261124_120000"
    odd = "tank/data/a b:c"
    verdicts = (
        SnapshotVerdict("zrepl_20261124_090000", False,
                        "grid 24x1h: bucket 2 already keeps zrepl_20261124_083000"),
        SnapshotVerdict("zrepl_20261124_100000", True, "grid 24x1h: bucket 1 (oldest)"),
        SnapshotVerdict("manual-before-upgrade", True, "unmanaged (does not match ^zrepl_)"),
        SnapshotVerdict("zrepl_20261124_110000", True, "grid 1x1h(keep=all): bucket 0"),
        SnapshotVerdict("#zrepl_cursor_backup", True, "replication cursor for backup"),
    )
    actions = (
        SnapshotAction("nas", "tank/data", "zrepl_20261124_120000", batch,
                       "newest zrepl_ snapshot is 1h old (interval 1h)"),
        SnapshotAction("nas", odd, "zrepl_20261124_120000", batch, "no zrepl_ snapshot yet"),
        CreateAction("backup", "pool/nas/tank/data", "parent of a new replica"),
        SendAction("nas", "tank/data", "zrepl_20261124_120000", "backup", "pool/nas/tank/data",
                   "zrepl_20261124_110000", ("zrepl_20261124_113000", "zrepl_20261124_120000"),
                   estimated_bytes=int(1.2 * GIB)),
        SendAction("nas", odd, "zrepl_20261124_120000", "backup", "pool/nas/tank/data/a b:c", None,
                   ("zrepl_20261124_120000",), estimated_bytes=3 * 1024**2, raw=True),
        AbortResumeAction("offsite", "vault/nas/tank/data", "resume token names a destroyed snapshot"),
        SendAction("nas", "tank/data", "zrepl_20261124_110000", "offsite", "vault/nas/tank/data",
                   "zrepl_20261124_100000", ("zrepl_20261124_110000",), resume_token="1-e5a3c9-d8-789c"),
        HoldAction("nas", "tank/data", "zrepl_20261124_120000", "zrepl_send", "held while sending"),
        BookmarkAction("nas", "tank/data", "zrepl_20261124_120000", "zrepl_cursor_backup", "move cursor"),
        ReleaseAction("nas", "tank/data", "zrepl_20261124_120000", "zrepl_send", "send done"),
        DestroyAction("nas", "tank/data", ("zrepl_20261124_090000", "#zrepl_old_cursor"),
                      (("zrepl_20261124_090000", "grid 24x1h: bucket 2 already keeps zrepl_20261124_083000"),
                       ("#zrepl_old_cursor", "replaced by #zrepl_cursor_backup"))),
        DestroyAction("backup", "pool/nas/tank/data", ("zrepl_20261101_000000",),
                      (("zrepl_20261101_000000", "older than the last grid bucket (30x1d)"),)),
    )
    return Plan(NOW, FP, actions, filesystems=(
        source("nas", "tank/data", verdicts=verdicts),
        source("nas", odd),
        source("nas", "tank/quiet", PruneRule.PRUNE_WINS),
        target("backup", "pool/nas/tank/data"),
        target("backup", "pool/nas/tank/data/a b:c"),
        target("backup", "pool/nas/tank/quiet"),
    ))


def prune_wins_unavailable() -> Plan:
    """The target is down: with prune wins the source still prunes, and says what it loses."""
    lost = "zrepl_20261123_050000 destroyed before it was replicated to backup"
    actions = (
        SnapshotAction("nas", "tank/logs", "zrepl_20261124_120000", "nas:tank:zrepl_20261124_120000"),
        DestroyAction("nas", "tank/logs", ("zrepl_20261123_050000", "zrepl_20261123_060000"),
                      (("zrepl_20261123_050000", "grid 24x1h: older than the last bucket"),
                       ("zrepl_20261123_060000",
                        "grid 24x1h: bucket 23 already keeps zrepl_20261123_055900"))),
    )
    conflicts = (Conflict(ConflictCode.HOST_UNAVAILABLE, "backup", "pool/nas/tank/logs",
                          "backup is unreachable: no send planned", "check the network and sshd on backup",
                          "nas", "tank/logs"),)
    return Plan(NOW, FP, actions, conflicts, filesystems=(
        source("nas", "tank/logs", PruneRule.PRUNE_WINS, warnings=(lost,)),
        source("nas", "tank/db", PruneRule.REPLICATION_PROTECTED),
    ), unavailable=(("backup", "unreachable: [Errno 111] Connection refused (10.0.0.2:22)"),),
        warnings=("2 snapshots of nas:tank/logs are destroyed before reaching backup (prune wins)",))


def conflicts_only() -> Plan:
    """Nothing can be done: diverged, GUID mismatch, no common snapshot; awkward names."""
    weird = "tank/we|rd`name"
    conflicts = (
        Conflict(ConflictCode.DIVERGED, "backup", "pool/nas/tank/a",
                 "target has 2 snapshots newer than the common base zrepl_20261124_100000"
                 " (zrepl_20261124_103000, manual)",
                 "zfs rollback -r pool/nas/tank/a@zrepl_20261124_100000 on backup", "nas", "tank/a"),
        Conflict(ConflictCode.GUID_MISMATCH, "backup", "pool/nas/tank/b",
                 "zrepl_20261124_100000 has GUID 11 on nas but 12 on backup",
                 "rename or destroy the target snapshot by hand", "nas", "tank/b"),
        Conflict(ConflictCode.NO_COMMON_SNAPSHOT, "backup", f"pool/nas/{weird}",
                 "target has snapshots but none in common with the source | cannot send incrementally;"
                 " *not* forcing `recv -F`",
                 "destroy the target or rename it, then let the next plan send it in full", "nas", weird),
    )
    return Plan(NOW, FP, (), conflicts, filesystems=(
        source("nas", "tank/a"), source("nas", "tank/b"), source("nas", weird),
    ))


def no_changes() -> Plan:
    return Plan(NOW, FP, (), filesystems=(
        source("nas", "tank/a"), source("nas", "tank/b", PruneRule.PRUNE_WINS),
        target("backup", "pool/nas/tank/a"), target("backup", "pool/nas/tank/b"),
    ))


def long_destroy() -> Plan:
    """A first prune after months: many destroys, each with its reason."""
    names = tuple(f"zrepl_202610{day:02d}_000000" for day in range(1, 26))
    reasons = tuple((n, f"grid 14x1d: older than the last bucket ({39 - i} days old)")
                    for i, n in enumerate(names))
    return Plan(NOW, FP, (DestroyAction("nas", "tank/home", names, reasons),),
                filesystems=(source("nas", "tank/home", PruneRule.PRUNE_WINS),))


def hooks_around_snapshots() -> Plan:
    """A database frozen around its own snapshot (a batch of its own, two hooks: pre hooks in
    order, post hooks in reverse); the files policy keeps its atomic batch."""
    name = "zrepl_20261124_120000"
    notify = ("/opt/hooks/notify ops", "--message")
    db = "policy db: snapshots.hooks"
    actions = (
        PreHookAction("nas", "tank/db", name, 0, ("/usr/local/sbin/db-freeze", "--fast"), 30, f"{db}[0].pre",
                      err_is_fatal=True),
        PreHookAction("nas", "tank/db", name, 1, (*notify, "freezing `db` | $(now)"), 120, f"{db}[1].pre"),
        SnapshotAction("nas", "tank/db", name, f"nas:tank:db:{name}:tank/db",
                       "newest zrepl_ snapshot is at least 1h old"),
        PostHookAction("nas", "tank/db", name, 1, (*notify, "thawed"), 120, f"{db}[1].post"),
        PostHookAction("nas", "tank/db", name, 0, ("/usr/local/sbin/db-thaw",), 30, f"{db}[0].post"),
        SnapshotAction("nas", "tank/files", name, f"nas:tank:files:{name}", "no zrepl_ snapshot yet"),
        SnapshotAction("nas", "tank/files/a", name, f"nas:tank:files:{name}", "no zrepl_ snapshot yet"),
        SendAction("nas", "tank/db", name, "backup", "pool/nas/tank/db", "zrepl_20261124_110000", (name,),
                   estimated_bytes=4 * 1024**2),
    )
    verdicts = (SnapshotVerdict("zrepl_20261124_110000", True, "grid 1x1h(keep=all): bucket 0"),)
    return Plan(NOW, FP, actions, filesystems=(
        source("nas", "tank/db", policy="db", verdicts=verdicts), source("nas", "tank/files", policy="files"),
        source("nas", "tank/files/a", policy="files"), target("backup", "pool/nas/tank/db"),
    ))


PLANS = {
    "creates_and_sends": creates_and_sends,
    "prune_wins_unavailable": prune_wins_unavailable,
    "conflicts": conflicts_only,
    "no_changes": no_changes,
    "long_destroy": long_destroy,
    "hooks": hooks_around_snapshots,
}
# (golden name, plan, explain)
CASES = [(name, name, None) for name in PLANS] + [
    ("explain_one", "creates_and_sends", "tank/data"),
    ("explain_all", "no_changes", True),
    ("explain_hooks", "hooks", "tank/db"),
]


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"golden file {path.name} was missing and has been written; review and rerun")
        return
    assert actual == path.read_text(encoding="utf-8"), (
        f"{path.name} differs; if intended, regenerate with UPDATE_GOLDEN=1 and review the diff")


@pytest.mark.parametrize(("golden", "plan_name", "explain"), CASES)
def test_text_golden(golden: str, plan_name: str, explain: str | bool | None) -> None:
    check_golden(f"{golden}.txt", render_text_to_string(PLANS[plan_name](), explain=explain, width=100))


@pytest.mark.parametrize(("golden", "plan_name", "explain"), CASES)
def test_markdown_golden(golden: str, plan_name: str, explain: str | bool | None) -> None:
    check_golden(f"{golden}.md", render_markdown(PLANS[plan_name](), explain=explain))


@pytest.mark.parametrize("plan_name", PLANS)
def test_text_has_no_escape_codes_and_fits_width(plan_name: str) -> None:
    out = render_text_to_string(PLANS[plan_name](), width=100)
    assert "\x1b" not in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_pipe_output_keeps_whole_lines() -> None:
    """Not a terminal: no wrapping, so grep finds a snapshot together with its reason."""
    out = render_text_to_string(creates_and_sends(), width=40, terminal=False)
    assert any("zrepl_20261101_000000" in line and "older than the last grid bucket (30x1d)" in line
               for line in out.splitlines())


def test_every_destroy_is_listed_with_its_reason() -> None:
    plan = long_destroy()
    text = render_text_to_string(plan, terminal=False)
    markdown = render_markdown(plan)
    destroy = plan.actions[0]
    assert isinstance(destroy, DestroyAction)
    for name, reason in destroy.reasons:
        assert any(name in line and reason in line for line in text.splitlines())
        assert f"`{name}`: {md_text(reason)}" in markdown
    assert "<details><summary>25 snapshots to destroy on <code>nas:tank/home</code></summary>" in markdown


def test_colour_by_action_kind() -> None:
    from io import StringIO

    from rich.console import Console

    from reconciler.render.text import render_text

    buffer = StringIO()
    console = Console(file=buffer, width=200, force_terminal=True, color_system="standard")
    render_text(creates_and_sends(), console=console)
    out = buffer.getvalue()
    assert "\x1b[32m+ create snapshot tank/data@zrepl_20261124_120000" in out  # green
    assert "\x1b[36m> incremental send tank/data" in out  # cyan
    assert "\x1b[31m- destroy 2 snapshots of tank/data" in out  # red
    assert "\x1b[2m~ bookmark" in out  # dim


def test_no_color_env_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    from io import StringIO

    from rich.console import Console

    from reconciler.render.text import render_text

    monkeypatch.setenv("NO_COLOR", "1")
    buffer = StringIO()
    render_text(prune_wins_unavailable(), console=Console(file=buffer, force_terminal=True))
    assert "\x1b[3" not in buffer.getvalue()  # no foreground colours (bold may stay)


def test_summary_line() -> None:
    assert summary_line(creates_and_sends()) == (
        "2 snapshots to create, 3 sends (1.2 GiB est. for 2 of 3), 3 to destroy, 1 placeholder dataset"
        " to create, 1 partial receive to discard, 1 hold to place, 1 bookmark to create,"
        " 1 hold to release")
    assert summary_line(no_changes()) == NO_CHANGES
    assert summary_line(conflicts_only()) == "No changes, but 3 conflicts need attention."
    assert summary_line(prune_wins_unavailable()) == (
        "1 snapshot to create, 2 to destroy, 1 conflict, 1 host unavailable")
    assert "est." not in summary_line(Plan(NOW, FP, (SendAction(
        "nas", "tank/a", "s2", "b", "p/tank/a", "s1", ("s2",)),)))


def test_no_changes_is_greppable_in_every_human_format() -> None:
    plan = no_changes()
    assert "No changes" in render_text_to_string(plan).splitlines()[-1]
    assert "No changes" in render_markdown(plan).splitlines()[0]


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                         (int(1.2 * GIB), "1.2 GiB"), (5 * 1024**5, "5120.0 TiB")])
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


def test_markdown_escaping() -> None:
    assert md_code("a`b") == "``a`b``"
    assert md_code("`x") == "`` `x ``"
    assert md_code("a|b", table=True) == "`a\\|b`"
    assert md_code("a|b") == "`a|b`"
    assert md_text("x | *y* <b> @team #12") == "x \\| \\*y\\* \\<b\\> \\@team \\#12"
    assert md_text("two\nlines") == "two lines"
    markdown = render_markdown(conflicts_only(), explain=True)
    assert "``backup:pool/nas/tank/we|rd`name``" in markdown
    hostile = render_markdown(Plan(NOW, FP, (), (Conflict(
        ConflictCode.DIVERGED, "h", "d", "<script>alert(1)</script> @everyone"),)))
    assert re.search(r"(?<!\\)[<@]", hostile.split("#### Host")[0].split("[!CAUTION]")[1]) is None


def test_markdown_tables_escape_pipes() -> None:
    plan = Plan(NOW, FP, (), filesystems=(source("nas", "tank/a", verdicts=(
        SnapshotVerdict("odd|name", True, "regex a|b keeps it"),)),))
    markdown = render_markdown(plan, explain=True)
    row = next(line for line in markdown.splitlines() if line.startswith("| `odd"))
    assert row == "| `odd\\|name` | keep | regex a\\|b keeps it |"
    assert len(re.findall(r"(?<!\\)\|", row)) == 4  # exactly three cells


def test_conflicts_and_unavailable_hosts_are_prominent() -> None:
    plan = prune_wins_unavailable()
    text = render_text_to_string(plan)
    assert "Unavailable hosts (1)" in text and "Connection refused" in text
    assert "Conflicts (1)" in text and "fix: check the network" in text
    markdown = render_markdown(plan)
    head = markdown.split("#### Host", 1)[0]
    assert "[!CAUTION]" in head and "[!WARNING]" in head and "suggested fix" in head


def test_prune_rule_shown_per_source_filesystem() -> None:
    text = render_text_to_string(creates_and_sends(), terminal=False)
    assert "prune rule: replication protected (not_replicated): keep_source has not_replicated" in text
    assert "unchanged, prune wins over replication: tank/quiet" in text
    markdown = render_markdown(creates_and_sends())
    assert "Prune rule: **replication protected (not\\_replicated)**" in markdown
    assert "`tank/quiet` · source · prune rule: prune wins over replication" in markdown


def test_explain_selects_filesystems() -> None:
    plan = creates_and_sends()
    assert [r.dataset for r in explained_reports(plan, "tank/data")] == ["tank/data"]
    named = explained_reports(plan, "backup:pool/nas/tank/quiet")
    assert [r.dataset for r in named] == ["pool/nas/tank/quiet"]
    assert explained_reports(plan, None) == [] and explained_reports(plan, "nope") == []
    assert len(explained_reports(plan, True)) == len(plan.filesystems)
    text = render_text_to_string(plan, explain="tank/data", terminal=False)
    assert "manual-before-upgrade" in text and "unmanaged (does not match ^zrepl_)" in text


def test_json_uses_design_key_names() -> None:
    data = json.loads(render_json(creates_and_sends()))
    assert {"format_version", "now", "fingerprint", "actions", "conflicts", "summary"} <= set(data)
    assert data["format_version"] == 1 and data["now"] == "2026-11-24T12:00:00Z"
    kinds = {a["kind"] for a in data["actions"]}
    assert {"snapshot", "send", "destroy", "bookmark", "hold", "release"} <= kinds
    snap = next(a for a in data["actions"] if a["kind"] == "snapshot")
    assert {"kind", "host", "dataset", "snapshot"} <= set(snap)
    send = next(a for a in data["actions"] if a["kind"] == "send")
    assert {"kind", "host", "dataset", "source", "target", "base", "snapshots", "resume_token"} <= set(send)
    assert set(send["source"]) == {"host", "dataset", "snapshot"}
    assert set(send["target"]) == {"host", "dataset"}
    destroy = next(a for a in data["actions"] if a["kind"] == "destroy")
    assert set(destroy["reasons"]) == set(destroy["snapshots"])
    assert "#zrepl_old_cursor" in destroy["snapshots"]
    assert {"snapshot", "send", "destroy", "conflicts"} <= set(data["summary"])
    conflict = json.loads(render_json(conflicts_only()))["conflicts"][0]
    assert {"code", "host", "dataset", "message"} <= set(conflict)
    assert render_json(no_changes()).endswith("}\n")


@pytest.mark.parametrize("plan_name", PLANS)
def test_json_round_trips(plan_name: str) -> None:
    plan = PLANS[plan_name]()
    again = Plan.from_json(json.loads(render_json(plan)))
    assert render_json(again) == render_json(plan)


@pytest.mark.parametrize(("golden", "plan_name", "explain"), CASES)
def test_markdown_parses_as_intended(golden: str, plan_name: str, explain: str | bool | None) -> None:
    """Through a CommonMark+tables parser: names arrive verbatim in <code>, tables keep three
    columns, no raw HTML beyond our own <details>/<summary>/<code>."""
    from markdown_it import MarkdownIt

    plan = PLANS[plan_name]()
    page = MarkdownIt("commonmark").enable("table").render(render_markdown(plan, explain=explain))
    codes = {html.unescape(c).strip() for c in re.findall(r"<code>(.*?)</code>", page, re.S)}
    for report in plan.filesystems:
        assert report.dataset in codes or f"{report.host}:{report.dataset}" in codes
    for row in re.findall(r"<tr>(.*?)</tr>", page, re.S):
        assert len(re.findall(r"<t[dh]>", row)) == 3
    tags = set(re.findall(r"</?([a-z0-9]+)", page))
    assert tags <= {"h3", "h4", "p", "code", "strong", "em", "ul", "li", "blockquote", "details",
                    "summary", "br", "table", "thead", "tbody", "tr", "th", "td"}


@pytest.mark.parametrize("plan_name", PLANS)
def test_json_is_byte_for_byte_json_dumps(plan_name: str) -> None:
    """The streamed Plan JSON is exactly what json.dumps(indent=2) wrote before it."""
    plan = PLANS[plan_name]()
    assert render_json(plan) == json.dumps(plan_document(plan), indent=2) + "\n"


class CountingFile(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def many_destroys(datasets: int, per_dataset: int) -> Plan:
    actions = []
    for d in range(datasets):
        names = tuple(f"zrepl_{i:06d}" for i in range(per_dataset))
        actions.append(DestroyAction("nas", f"tank/fs{d}", names,
                                     tuple((n, f"grid 24x1h: bucket {i} already keeps zrepl_x")
                                           for i, n in enumerate(names))))
    return Plan(NOW, FP, tuple(actions),
                filesystems=tuple(source("nas", f"tank/fs{d}", PruneRule.PRUNE_WINS)
                                  for d in range(datasets)))


def test_json_is_written_as_it_goes() -> None:
    plan = many_destroys(3000, 3)
    out = CountingFile()
    write_json(plan, out)
    assert out.writes > 1  # not one string built for the whole plan
    assert out.getvalue() == json.dumps(plan_document(plan), indent=2) + "\n"


def test_destroy_rows_follow_the_snapshots_with_their_reasons() -> None:
    action = DestroyAction("nas", "tank/a", ("a", "b", "c", "d"),
                           (("c", "why c"), ("a", "why a"), ("b", "")), "all others")
    assert action.rows() == [("a", "why a"), ("b", ""), ("c", "why c"), ("d", "all others")]
    assert [action.reason_for(n) for n in action.snapshots] == ["why a", "", "why c", "all others"]
    assert action.rows(empty="none")[1] == ("b", "none")
    text = render_text_to_string(Plan(NOW, FP, (action,)), terminal=False)
    assert re.search(r"^ +b +no reason recorded$", text, re.M)
    assert re.search(r"^ +d +all others$", text, re.M)


def test_one_huge_destroy_renders_every_row_with_its_reason_in_order() -> None:
    """20,000 destroys of one dataset (bench/bench_render.py measures that this grows
    linearly: it took 18 s as text when every row rebuilt the reasons' mapping)."""
    plan = many_destroys(1, 20_000)
    destroy = plan.actions[0]
    assert isinstance(destroy, DestroyAction)
    text = render_text_to_string(plan, terminal=False)
    markdown = render_markdown(plan)
    data = json.loads(render_json(plan))
    rows = [line.split() for line in text.splitlines() if line.startswith("        zrepl_")]
    assert [(r[0], " ".join(r[1:])) for r in rows] == list(destroy.reasons)
    listed = re.findall(r"^- `(zrepl_\d+)`: grid 24x1h: bucket (\d+)", markdown, re.M)
    assert listed == [(n, str(i)) for i, n in enumerate(destroy.snapshots)]
    assert data["actions"][0]["reasons"] == dict(destroy.reasons)
    assert text.splitlines()[-1] == "Plan: 20000 to destroy"


def test_destroy_batches_stay_within_argv_bytes() -> None:
    """Non-ASCII names take more bytes than characters: batches are measured in UTF-8 bytes
    (the whole argv, each argument with its NUL), and cover every name once, in order."""
    names = tuple(f"zrepl_{i:05d}" + ("_été_快照_😀" if i % 3 else "") for i in range(20_000))
    action = DestroyAction("nas", "tank/données", names)
    batches = action.argv_batches()
    assert len(batches) > 1
    for argv in batches:
        assert argv[:2] == ["zfs", "destroy"] and argv[2].startswith("tank/données@")
        assert sum(len(arg.encode()) + 1 for arg in argv) <= MAX_ARGV_BYTES
    covered = [name for argv in batches for name in argv[2].split("@", 1)[1].split(",")]
    assert covered == list(names)
    # Full batches, not a cautious fraction of the limit: the next name would not have fitted.
    for argv, following in pairwise(batches):
        first = following[2].split("@", 1)[1].split(",")[0]
        assert sum(len(arg.encode()) + 1 for arg in argv) + len(first.encode()) + 1 > MAX_ARGV_BYTES
    small = DestroyAction("nas", "tank/a", ("a", "#bm", "b"))
    assert small.argv_batches(max_bytes=len(b"zfs destroy tank/a@a ")) == [
        ["zfs", "destroy", "tank/a#bm"], ["zfs", "destroy", "tank/a@a"], ["zfs", "destroy", "tank/a@b"]]


@pytest.mark.parametrize(("width", "terminal", "colour"), [(60, True, "standard"), (200, True, "truecolor"),
                                                           (60, False, None), (60, True, None)])
def test_bulk_rows_are_what_add_writes_row_by_row(width: int, terminal: bool, colour: str | None) -> None:
    """TextOut.rows (C loops, for a million destroys) writes exactly what one add() per row
    would: padding, colours, wrapping of long rows, unpainted empty names or reasons."""
    from rich.console import Console

    from reconciler.render.text import TextOut

    names = ["zrepl_1", "", "a-much-longer-name-than-the-others-" + "x" * 30, "#bm", "zrepl_2"]
    reasons = ["short", "why", "a reason long enough to wrap at sixty columns " * 2, "", "é ok"]

    def console(buffer: io.StringIO) -> Console:
        return Console(file=buffer, width=width, force_terminal=terminal, color_system=colour)

    full = [(n, r) for n, r in zip(names, reasons, strict=True) if n and r]  # no empty cell
    bulk, single = io.StringIO(), io.StringIO()
    out = TextOut(console(bulk))
    out.rows(4, names, reasons, "red")
    out.rows(4, [n for n, _ in full], [r for _, r in full], "red", column=40)
    out.rows(2, names[:2], reasons[:2], "", "keep   ", "green", column=12)
    out.close()
    ref = TextOut(console(single))
    column = min(max(map(len, names)), 40)
    for name, reason in zip(names, reasons, strict=True):
        ref.add(4, (name.ljust(column), "red"), "  ", (reason, "dim"))
    for name, reason in full:
        ref.add(4, (name.ljust(40), "red"), "  ", (reason, "dim"))
    for name, reason in zip(names[:2], reasons[:2], strict=True):
        ref.add(2, ("keep   ", "green"), "  ", (name.ljust(12), ""), "  ", (reason, "dim"))
    ref.close()
    assert bulk.getvalue() == single.getvalue()
    assert ("\x1b[" in bulk.getvalue()) == (terminal and colour is not None)
