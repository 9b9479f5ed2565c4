"""reconciler/api.py as a Python user calls it (README "Use it from Python"), on stand-in hosts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standin.state import StandinState
from test_apply_cli import NOW_TS, hourly_history, write_config

from reconciler import api
from reconciler.errors import LockError, PlanFileError, StalePlanError, UsageError
from reconciler.render.json import render_json

NOW = datetime.fromtimestamp(NOW_TS, UTC)


@pytest.fixture
def config_path(tmp_path: Path, standin: Callable[..., StandinState]) -> Path:
    nas = standin("nas", seed=3)
    nas.filesystem("tank/a")
    hourly_history(nas, "tank/a", 30)
    nas.save()
    backup = standin("backup", seed=4)
    backup.filesystem("pool")
    backup.save()
    hosts = {"nas": nas.zfs_command, "backup": backup.zfs_command}
    return write_config(tmp_path / "zrepl-reconcile.yml", hosts,
                        [{"host": "nas", "filter": {"tank<": True}, "policy": "hourly",
                          "replicate_to": [{"host": "backup", "root": "pool/nas"}]}])


def test_plan_apply_plan_again(config_path: Path) -> None:
    config = api.load(config_path)
    first = api.plan(config, now=NOW)
    assert first.has_changes and first.selection.hosts == ()
    with api.session(config_path, config) as session:
        plan = api.plan(config, now=NOW, executors=session.executors)
        assert plan.actions == first.actions
        report = api.apply(plan, config, session.executors)
    assert report.ok and not report.failed and len(report.done) >= len(plan.actions)
    assert not api.plan(config, now=NOW).has_changes


def test_facts_and_a_narrowed_plan(config_path: Path) -> None:
    config = api.load(config_path)
    facts = api.facts(config, ["nas"])
    assert set(facts.hosts) == {"nas"} and "tank/a" in facts.hosts["nas"].datasets
    narrowed = api.plan(config, hosts=["backup"], now=NOW)
    assert narrowed.selection.hosts == ("backup",)
    with pytest.raises(UsageError, match="--host elsewhere: not a host of the configuration"):
        api.plan(config, hosts=["elsewhere"], now=NOW)
    with pytest.raises(UsageError, match="out of range"):
        api.plan(config, now=datetime(1960, 1, 1, tzinfo=UTC))


def test_a_saved_plan_is_verified_before_it_runs(config_path: Path, tmp_path: Path) -> None:
    config = api.load(config_path)
    saved_file = tmp_path / "plan.json"
    saved_file.write_text(render_json(api.plan(config, now=NOW)))
    with api.session(config_path, config) as session:
        plan = api.verify(api.read_saved(str(saved_file)), config, executors=session.executors)
        assert api.apply(plan, config, session.executors, saved_plan=True).ok
    # The same file again: the facts moved, so it is stale now.
    with pytest.raises(StalePlanError, match="stale: the ZFS facts changed"):
        api.verify(api.read_saved(str(saved_file)), config)
    saved_file.write_text("{}")
    with pytest.raises(PlanFileError, match="missing key"):
        api.read_saved(str(saved_file))


def test_one_session_per_configuration(config_path: Path) -> None:
    config = api.load(config_path)
    with api.session(config_path, config), pytest.raises(LockError), api.session(config_path, config):
        pass


def test_the_readme_example_runs(config_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use it from Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(config_path.parent)  # the example names zrepl-reconcile.yml
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "Apply: " in out and " 0 failed" in out
