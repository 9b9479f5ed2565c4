"""`zrepl-reconcile simulate` as a user runs it, on the stand-in zfs: one gather and nothing
else, or the facts file `facts --format json` wrote; table, JSON, a PNG; clear errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from standin.state import StandinState

from reconciler.cli import main
from reconciler.errors import UsageError
from reconciler.gather.facts_json import observed_from_json, observed_to_json, read_facts_file

NOW = 1_764_000_000  # tests/conftest.py's stand-in clock: 2025-11-24T16:00:00Z


@pytest.fixture
def setup(standin: Callable[..., StandinState], tmp_path: Path) -> tuple[Path, StandinState, StandinState]:
    nas = standin("nas")
    for name in ("tank/data", "tank/data/docs"):
        nas.filesystem(name)
    for hours in (30, 20, 2):
        nas.snapshot("tank/data/docs", f"zrepl_h{hours}", creation=NOW - hours * 3600)
    nas.save()
    backup = standin("backup")
    backup.filesystem("pool")
    backup.save()
    config = tmp_path / "zrepl-reconcile.yml"
    config.write_text(json.dumps({
        "hosts": {"nas": {"connection": "local", "zfs_command": nas.zfs_command},
                  "backup": {"connection": "local", "zfs_command": backup.zfs_command}},
        "policies": {"p": {"snapshots": {"prefix": "zrepl_", "interval": "1h"},
                           "keep_source": [{"type": "not_replicated"},
                                           {"type": "last_n", "count": 3, "regex": "^zrepl_"}],
                           "keep_target": [{"type": "grid", "grid": "1x1h(keep=all) | 24x1h | 7x1d",
                                            "regex": "^zrepl_"}]}},
        "filesystems": [{"host": "nas", "filter": {"tank/data<": True}, "policy": "p",
                         "replicate_to": [{"host": "backup", "root": "pool/nas"}]}]}))
    return config, nas, backup


def test_simulate_gathers_once_and_runs_nothing_else(
        setup: tuple[Path, StandinState, StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    config, nas, backup = setup
    assert main(["facts", "-c", str(config)]) == 0  # what one gather runs
    one_gather = {id(host): len(host.log()) for host in (nas, backup)}
    capsys.readouterr()
    assert main(["simulate", "-c", str(config), "--days", "3", "--outage", "backup:1d..36h",
                 "--now", "2025-11-24T16:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "Simulated 3 days from 2025-11-24 16:00 UTC: plan and apply every 1h (72 runs)" in out
    assert "nas:tank/data/docs  (policy p; keep_source has not_replicated" in out
    assert "backup down" in out and "waiting for a target (kept: not_replicated)" in out
    assert "No snapshot was destroyed before reaching every target." in out
    for host in (nas, backup):  # pure: one gather's listings, not a single change
        assert len(host.log()) == 2 * one_gather[id(host)]
        assert {argv[0] for argv in host.log()} == {"list"}


def test_facts_json_round_trips_into_simulate(
        setup: tuple[Path, StandinState, StandinState], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, nas, _ = setup
    assert main(["facts", "-c", str(config), "--format", "json"]) == 0
    facts = tmp_path / "facts.json"
    facts.write_text(capsys.readouterr().out)
    observed, gathered_at = read_facts_file(str(facts))
    assert gathered_at is not None
    docs = observed.dataset("nas", "tank/data/docs")
    assert docs is not None and [s.name for s in docs.snapshots] == ["zrepl_h30", "zrepl_h20", "zrepl_h2"]
    assert observed_to_json(observed) == {k: v for k, v in json.loads(facts.read_text()).items()
                                          if k != "gathered_at"}
    before = len(nas.log())
    assert main(["simulate", "-c", str(config), "--facts", str(facts), "--days", "2", "--format", "json",
                 "--now", "2025-11-24T16:00:00Z", "--filesystem", "tank/data/docs"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(nas.log()) == before  # the facts file: no zfs at all
    assert document["runs"] == 48 and document["step_seconds"] == 3600
    (group,) = document["filesystems"]
    assert (group["host"], group["dataset"]) == ("nas", "tank/data/docs")
    last = group["days"][-1]
    assert last["source"]["count"] == 3 and last["targets"]["backup:pool/nas/tank/data/docs"]["count"] > 20
    assert group["days"][0]["source"]["count"] == 3 and group["days"][0]["taken"] == 0


def test_plot_writes_a_png(setup: tuple[Path, StandinState, StandinState], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    config, _, _ = setup
    png = tmp_path / "sim.png"
    assert main(["simulate", "-c", str(config), "--days", "2", "--plot", str(png),
                 "--outage", "backup:12h..1d"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {png}" in capsys.readouterr().err


def test_plot_without_matplotlib_says_how_to_get_it(
        setup: tuple[Path, StandinState, StandinState], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, _, _ = setup
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["simulate", "-c", str(config), "--days", "1", "--plot", str(tmp_path / "x.png")]) == 1
    assert "pip install 'zrepl-reconcile[plot]'" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--outage", "backup"], "expected HOST:START..END"),
    (["--outage", "backup:2d..1d"], "ends"),
    (["--outage", "nowhere:0..1d"], "--outage nowhere: no such host"),
    (["--outage", "backup:soon..1d"], "neither an offset like 2d"),
    (["--days", "0"], "--days 0: simulate 1 to"),
    (["--step", "5 minutes"], "--step invalid duration"),
    (["--plot", "x.svg"], "ending in .png"),
    (["--facts", "/nonexistent.json"], "no such file"),
    (["--filesystem", "tank/elsewhere"], "tank/elsewhere"),
])
def test_usage_errors_are_one_line(setup: tuple[Path, StandinState, StandinState], args: list[str],
                                   message: str, capsys: pytest.CaptureFixture[str]) -> None:
    config, _, _ = setup
    assert main(["simulate", "-c", str(config), *args]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(("document", "message"), [
    ([], "the document: expected an object"),
    ({"hosts": {"nas": {"datasets": {"tank": {"type": "filesystem", "guid": "x", "createtxg": 1}}}}},
     "hosts.nas.datasets.tank.guid: expected a non-negative integer"),
    ({"hosts": {"nas": {"datasets": {"tank": {"type": "bookmark", "guid": 1, "createtxg": 1}}}}},
     "expected filesystem or volume"),
    ({"hosts": {"nas": {"datasets": {"tank": {"type": "filesystem", "guid": 1, "createtxg": 1,
                                              "snapshots": [{"name": "a@b", "guid": 1, "createtxg": 2,
                                                             "creation": 0}]}}}}},
     "snapshots[0].name: 'a@b' is not a snapshot or bookmark name"),
    ({"hosts": {}, "unavailable": {"x": {"code": "gone", "message": ""}}}, "unknown code 'gone'"),
    ({"hosts": {}, "gathered_at": "yesterday"}, "gathered_at: 'yesterday' is not a time"),
])
def test_the_facts_reader_names_the_wrong_value(tmp_path: Path, document: object, message: str) -> None:
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(document))
    with pytest.raises(UsageError) as error:
        read_facts_file(str(path))
    assert message in str(error.value)
    assert observed_from_json({"hosts": {}}).hosts == {}
