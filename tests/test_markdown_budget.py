"""``plan --format markdown`` fits a pull-request comment (GitHub takes 65,536 characters):
a plan that fits is written exactly as without a limit, a longer one is shortened with a
note (what is left out, where the full plan is), keeping the summary and the conflicts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from test_render import FP, NOW, PLANS, source, target

from reconciler.cli import main
from reconciler.codes import ConflictCode, PruneRule
from reconciler.domain.actions import DestroyAction, SnapshotAction
from reconciler.domain.plan import Conflict, Plan, SnapshotVerdict
from reconciler.render.markdown import (
    DEFAULT_MAX_CHARS,
    GITHUB_COMMENT_LIMIT,
    MIN_MAX_CHARS,
    fit_markdown,
    render_markdown,
)
from reconciler.render.view import summary_line

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_plan import NOW as BENCH_NOW
from bench_plan import build_config, build_facts

from reconciler.planning.planner import make_plan


def header(plan: Plan) -> str:
    return f"### zrepl-reconcile plan: {summary_line(plan)}".replace("_", "\\_")


@pytest.mark.parametrize("plan_name", PLANS)
@pytest.mark.parametrize("explain", [None, True])
def test_a_plan_that_fits_is_written_exactly_as_without_a_limit(plan_name: str, explain: bool | None) -> None:
    plan = PLANS[plan_name]()
    assert render_markdown(plan, explain=explain, max_chars=DEFAULT_MAX_CHARS) == \
        render_markdown(plan, explain=explain)


def test_the_default_leaves_a_margin_under_githubs_limit() -> None:
    assert MIN_MAX_CHARS < DEFAULT_MAX_CHARS < GITHUB_COMMENT_LIMIT - 5000


@pytest.fixture(scope="module")
def mass_prune() -> Plan:
    """bench/bench_plan.py's first mass prune of 10,000 filesystems: 1.45 million destroys."""
    return make_plan(build_config(), build_facts(10_000), BENCH_NOW)


@pytest.mark.soak  # long: CI runs it in the soak suite (tests/run), not the fast one
def test_a_mass_prune_of_ten_thousand_filesystems_fits_with_a_note(mass_prune: Plan) -> None:
    markdown = fit_markdown(mass_prune, DEFAULT_MAX_CHARS, full_plan_url="https://ci.example.org/run/7")
    assert len(markdown) <= DEFAULT_MAX_CHARS
    lines = markdown.splitlines()
    assert lines[0].startswith("### zrepl-reconcile plan: 10001 snapshots to create, 10000 sends")
    note = next(line for line in lines if line.startswith("> **Shortened to fit a pull-request comment**"))
    assert "filesystems with changes" in note and "[the full plan](https://ci.example.org/run/7)" in note
    assert lines.index("> [!NOTE]") < lines.index("> [!CAUTION]")  # the note right under the summary
    for conflict in mass_prune.conflicts:  # every conflict is there, message and all
        assert f"on `{conflict.host}:{conflict.dataset}`" in markdown
        assert conflict.message.split(" (")[0].replace("_", "\\_") in markdown
    # Destroy lists keep a sample with a count, and the filesystems left out are counted.
    assert "- … and 70 more (see the full plan)" in markdown
    assert "more filesystems with changes on this host" in markdown
    assert markdown.count("<details>") == markdown.count("</details>")


@pytest.mark.soak  # long: CI runs it in the soak suite (tests/run), not the fast one
def test_explain_of_a_mass_prune_fits_too(mass_prune: Plan) -> None:
    explained = make_plan(build_config(), build_facts(300), BENCH_NOW, explain=True)
    markdown = fit_markdown(explained, 20_000, explain=True)
    assert len(markdown) <= 20_000
    assert "Shortened to fit" in markdown


def many_conflicts(count: int) -> Plan:
    message = "target has 2 snapshots newer than the common base " + "x" * 150
    conflicts = tuple(Conflict(ConflictCode.DIVERGED if n % 3 else ConflictCode.GUID_MISMATCH, "backup",
                               f"pool/nas/tank/fs{n:05d}", message, "zfs rollback -r by hand " + "y" * 100,
                               "nas", f"tank/fs{n:05d}")
                      for n in range(count))
    reports = tuple(source("nas", f"tank/fs{n:05d}") for n in range(count))
    return Plan(NOW, FP, (), conflicts, filesystems=reports)


def test_conflicts_are_cut_last_first_their_messages_then_counted_by_code() -> None:
    compact = fit_markdown(many_conflicts(300), 30_000)
    assert len(compact) <= 30_000
    assert compact.count("> - **") == 300  # every conflict, without its message
    assert "Their messages and suggested fixes are in the full plan." in compact
    counted = fit_markdown(many_conflicts(3000), 30_000)
    assert len(counted) <= 30_000
    shown = counted.count("> - **")
    assert 100 < shown < 3000
    assert f"> - … and {3000 - shown} more (diverged: " in counted and "guid\\_mismatch: " in counted
    assert "**3000 conflicts**" in counted


def test_many_hosts_warnings_and_unavailable_hosts_are_counted() -> None:
    hosts = [f"h{n:04d}" for n in range(2000)]
    actions = tuple(SnapshotAction(h, "tank", "zrepl_1", f"{h}:tank") for h in hosts)
    plan = Plan(NOW, FP, actions, filesystems=tuple(source(h, "tank", PruneRule.PRUNE_WINS) for h in hosts),
                unavailable=tuple((f"down{n}", "unreachable: timed out") for n in range(2000)),
                warnings=tuple(f"warning {n}: destroyed unreplicated" for n in range(2000)))
    markdown = fit_markdown(plan, 10_000)
    assert len(markdown) <= 10_000
    assert "more hosts: see the full plan" in markdown
    assert "> - … and " in markdown and "Left out:" in markdown


def test_a_long_explain_table_keeps_a_sample() -> None:
    verdicts = tuple(SnapshotVerdict(f"zrepl_{n:06d}", n % 2 == 0, "grid: bucket kept " + "z" * 40)
                     for n in range(5000))
    plan = Plan(NOW, FP, (DestroyAction("nas", "tank/a", tuple(v.name for v in verdicts if not v.keep)),),
                filesystems=(source("nas", "tank/a", verdicts=verdicts), target("backup", "pool/tank/a")))
    markdown = fit_markdown(plan, 20_000, explain=True)
    assert len(markdown) <= 20_000
    assert "| … | | " in markdown and "more entries: see the full plan |" in markdown
    page = MarkdownIt("commonmark").enable("table").render(markdown)
    assert "<table>" in page


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filesystems=st.integers(1, 120), names=st.integers(0, 200), conflicts=st.integers(0, 150),
       limit=st.integers(MIN_MAX_CHARS, 40_000), explain=st.booleans())
def test_any_plan_fits_any_limit_and_one_that_fits_is_untouched(filesystems: int, names: int, conflicts: int,
                                                                limit: int, explain: bool) -> None:
    datasets = [f"tank/fs{n:03d}" for n in range(filesystems)]
    actions = tuple(DestroyAction("nas", ds, tuple(f"zrepl_{i:04d}" for i in range(names)),
                                  tuple((f"zrepl_{i:04d}", "grid 24x1h: older") for i in range(names)))
                    for ds in datasets if names)
    reports = tuple(source("nas", ds, verdicts=tuple(SnapshotVerdict(f"zrepl_{i:04d}", False, "old")
                                                     for i in range(names))) for ds in datasets)
    plan = Plan(NOW, FP, actions, many_conflicts(conflicts).conflicts, filesystems=reports)
    full = render_markdown(plan, explain=explain)
    fitted = fit_markdown(plan, limit, explain=explain)
    assert len(fitted) <= limit
    assert fitted.splitlines()[0] == full.splitlines()[0]  # the summary line, always
    if len(full) <= limit:
        assert fitted == full
    else:
        assert "> **Shortened to fit a pull-request comment**" in fitted
        assert fitted.count("<details>") == fitted.count("</details>")


# --------------------------------------------------------------------------- the CLI


def test_plan_max_chars_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from test_apply_cli import NOW as CLI_NOW

    assert main(["plan", "-c", "missing.yml", "--format", "markdown", "--max-chars", "100"]) == 1
    assert "--max-chars 100: give at least 2000" in capsys.readouterr().err
    config = tmp_path / "c.yml"
    config.write_text("hosts: {nas: {connection: local, zfs_command: [/bin/false]}}\n"
                      "policies: {p: {snapshots: {prefix: zrepl_, interval: 1h}}}\n"
                      "filesystems: [{host: nas, filter: {tank<: true}, policy: p}]\n")
    for extra in ([], ["--max-chars", "0"], ["--max-chars", "5000", "--full-plan-url", "https://x"]):
        assert main(["plan", "-c", str(config), "--now", CLI_NOW, "--format", "markdown", *extra]) == 0
        out = capsys.readouterr().out
        assert out.startswith("### zrepl-reconcile plan: No changes, but 1 conflict, 1 host unavailable")
