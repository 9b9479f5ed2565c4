"""``apply --plan FILE``: a saved plan runs only if it is exactly what the planner computes.

Against stand-in zfs hosts, through the real CLI: the four tampering cases found by
trying (each once as a naive edit, caught by the digest, and once with the digest
rewritten to match, caught by recomputing the plan), strict reading of hostile files,
the plan's clock, and a skipped action of a saved plan counting as a failure. Every
refusal exits 1 with one clear line (or, for a plan that differs from the recomputed
one, that line and its first differences) and changes nothing on any host.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standin.state import StandinState
from test_apply_cli import NOW, NOW_TS, cli, hourly_history, write_config

from reconciler.domain.plan import DIGEST_KEYS
from reconciler.render.json import plan_digest

Document = dict[str, Any]
KEEP_SOURCE_GRID: list[dict[str, Any]] = [
    {"type": "grid", "grid": "1x1h(keep=all) | 6x1h", "regex": "^zrepl_"}]


@pytest.fixture
def hosts(tmp_path: Path, standin: Callable[..., StandinState]) -> tuple[Path, StandinState, StandinState]:
    """nas: tank/a and tank/b managed (40 h of hourly snapshots, most expire), tank/unmanaged
    outside the filter with snapshots of the same names; replicated to backup:pool/nas."""
    nas = standin("nas", seed=3)
    for ds in ("tank/a", "tank/b", "tank/unmanaged"):
        nas.filesystem(ds)
        hourly_history(nas, ds, 40)
    nas.save()
    backup = standin("backup", seed=4)
    backup.filesystem("pool")
    backup.save()
    policy = {"snapshots": {"prefix": "zrepl_", "interval": "1h"}, "keep_source": KEEP_SOURCE_GRID,
              "keep_target": KEEP_SOURCE_GRID}
    config = write_config(tmp_path / "zrepl-reconcile.yml",
                          {"nas": nas.zfs_command, "backup": backup.zfs_command},
                          [{"host": "nas", "filter": {"tank/a": True, "tank/b": True}, "policy": "hourly",
                            "replicate_to": [{"host": "backup", "root": "pool/nas"}]}],
                          policies={"hourly": policy})
    return config, nas, backup


def hold(st: StandinState, dataset: str, name: str, tag: str) -> None:
    st.reload()
    snap = next(s for s in st.datasets[dataset]["snapshots"] if s["name"] == name)
    snap["holds"][tag] = NOW_TS
    st.save()


def world(*states: StandinState) -> list[Any]:
    """Every dataset of every host, as the stand-ins hold them (GUIDs, snapshots, holds)."""
    for state in states:
        state.reload()
    return [json.loads(json.dumps(state.datasets, sort_keys=True)) for state in states]


def saved_plan(capsys: pytest.CaptureFixture[str], config: Path, path: Path, *extra: str) -> Document:
    code, _out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW, "--out", str(path), *extra)
    assert code == 0, err
    document: Document = json.loads(path.read_text())
    return document


def reseal(document: Document) -> Document:
    """What an editor who knows the format does: the digest rewritten to match the edit."""
    document["digest"] = plan_digest(document, document["actions"])
    return document


def first(document: Document, kind: str, dataset: str | None = None) -> Document:
    action: Document = next(a for a in document["actions"]
                            if a["kind"] == kind and (dataset is None or a["dataset"] == dataset))
    return action


def move_destroy(document: Document) -> None:
    """A destroy moved to a dataset the configuration does not manage (same snapshot names)."""
    first(document, "destroy", "tank/a")["dataset"] = "tank/unmanaged"


def add_names(document: Document) -> None:
    """Names added to a destroy, the newest snapshot among them."""
    destroy = first(document, "destroy", "tank/a")
    destroy["snapshots"] += ["zrepl_20251124_130000", "zrepl_20251124_140000"]
    destroy["reasons"]["zrepl_20251124_140000"] = "grid: looks old"


def add_snapshot(document: Document) -> None:
    """A snapshot on a dataset the configuration does not manage."""
    document["actions"].insert(0, {"kind": "snapshot", "host": "nas", "dataset": "tank/unmanaged",
                                   "snapshot": "zrepl_20251124_160000", "batch": "nas:tank/unmanaged",
                                   "reason": "interval 1h: due"})


def retarget_send(document: Document) -> None:
    """A send's target dataset changed to another name."""
    send = first(document, "send")
    send["target"]["dataset"] = "pool/elsewhere"


TAMPERING = [move_destroy, add_names, add_snapshot, retarget_send]


@pytest.mark.parametrize("tamper", TAMPERING, ids=lambda f: f.__name__)
@pytest.mark.parametrize("resealed", [False, True], ids=["edited", "edited-and-resealed"])
def test_a_tampered_plan_is_refused_and_changes_nothing(
        hosts: tuple[Path, StandinState, StandinState], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        tamper: Callable[[Document], None], resealed: bool) -> None:
    config, nas, backup = hosts
    plan_file = tmp_path / "plan.json"
    document = saved_plan(capsys, config, plan_file)
    tamper(document)
    plan_file.write_text(json.dumps(reseal(document) if resealed else document))
    before = world(nas, backup)
    code, out, err = cli(capsys, "apply", "-c", str(config), "--plan", str(plan_file), "-y")
    assert code == 1, out + err
    assert world(nas, backup) == before
    assert "internal error" not in err and "Traceback" not in err
    assert "nothing was changed" in err
    if not resealed:
        assert "was edited after `plan --out` wrote it: its digest does not match" in err
        assert len(err.strip().splitlines()) == 1, err
    else:
        assert "was edited: its actions are not what the planner computes" in err
        assert "difference(s) from the plan computed now" in err
    assert out == ""  # refused before anything is shown as if it would run


def test_the_differences_say_what_was_changed(
        hosts: tuple[Path, StandinState, StandinState], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, _nas, _backup = hosts
    plan_file = tmp_path / "plan.json"
    document = saved_plan(capsys, config, plan_file)
    add_names(document)
    retarget_send(document)
    plan_file.write_text(json.dumps(reseal(document)))
    code, _out, err = cli(capsys, "apply", "-c", str(config), "--plan", str(plan_file), "-y")
    assert code == 1
    assert ("destroy nas:tank/a: snapshots: the file adds 'zrepl_20251124_130000',"
            " 'zrepl_20251124_140000'") in err
    assert "in the file, not computed now: send nas:tank/a -> backup:pool/elsewhere" in err
    assert "computed now, not in the file: send nas:tank/a -> backup:pool/nas/tank/a" in err


def test_reworded_reasons_and_estimates_still_run(
        hosts: tuple[Path, StandinState, StandinState], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Wording is not compared (a newer version may word a decision differently): a plan
    whose reasons and size estimates differ, digest rewritten, runs as computed."""
    config, _nas, _backup = hosts
    plan_file = tmp_path / "plan.json"
    document = saved_plan(capsys, config, plan_file)
    for action in document["actions"]:
        action["reason"] = "reworded"
        if action["kind"] == "send":
            action["estimated_bytes"] = 1
        if action["kind"] == "destroy":
            action["reasons"] = {name: "reworded" for name in action["reasons"]}
    document["tool_version"] = "0.0.1"
    plan_file.write_text(json.dumps(reseal(document)))
    code, out, err = cli(capsys, "apply", "-c", str(config), "--plan", str(plan_file), "-y")
    assert code == 0, out + err
    code, out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW)
    assert code == 0 and "No changes" in out, out + err


def test_a_changed_configuration_is_named_as_the_cause(
        hosts: tuple[Path, StandinState, StandinState], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, nas, backup = hosts
    plan_file = tmp_path / "plan.json"
    saved_plan(capsys, config, plan_file)
    data = json.loads(config.read_text())
    data["policies"]["hourly"]["keep_source"][0]["grid"] = "1x1h(keep=all) | 3x1h"
    config.write_text(json.dumps(data))
    before = world(nas, backup)
    code, _out, err = cli(capsys, "apply", "-c", str(config), "--plan", str(plan_file), "-y")
    assert code == 1
    assert "is stale: the configuration changed since it was computed" in err
    assert "destroy nas:tank/a: snapshots: the file lacks" in err
    assert world(nas, backup) == before


def test_changed_facts_are_stale(hosts: tuple[Path, StandinState, StandinState], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    config, nas, backup = hosts
    plan_file = tmp_path / "plan.json"
    saved_plan(capsys, config, plan_file)
    hold(nas, "tank/a", "zrepl_20251123_000000", "keep")
    before = world(nas, backup)
    code, _out, err = cli(capsys, "apply", "-c", str(config), "--plan", str(plan_file), "-y")
    assert code == 1
    assert "is stale: the ZFS facts changed since it was computed (fingerprint" in err
    assert "the file adds 'zrepl_20251123_000000'" in err  # held now: not destroyed any more
    assert world(nas, backup) == before


def test_a_plan_for_a_later_time_is_refused(hosts: tuple[Path, StandinState, StandinState], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config, nas, backup = hosts
    plan_file = tmp_path / "plan.json"
    code, _out, err = cli(capsys, "plan", "-c", str(config), "--now", "2100-01-01T00:00:00Z",
                          "--out", str(plan_file))
    assert code == 0, err
    before = world(nas, backup)
    code, _out, err = cli(capsys, "apply", "-c", str(config), "--plan", str(plan_file), "-y")
    assert code == 1
    assert "was computed for 2100-01-01T00:00:00Z, later than this machine's clock" in err
    assert len(err.strip().splitlines()) == 1
    assert world(nas, backup) == before


# --------------------------------------------------------------------------- strict reading

def set_in_first(kind: str, key: str, value: Any) -> Callable[[Document], None]:
    def edit(document: Document) -> None:
        first(document, kind)[key] = value
    return edit


def nested_lists(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


JSON_EDITS: list[tuple[str, Callable[[Document], None], str]] = [
    ("names-as-a-string", set_in_first("destroy", "snapshots", "zrepl_20251123_000000"),
     ".snapshots: \"zrepl_20251123_000000\" is not a list"),
    ("numbers-as-names", set_in_first("destroy", "snapshots", [5, 6]), ".snapshots[0]: 5 is not a string"),
    ("unknown-kind", set_in_first("destroy", "kind", "format"),
     ".kind: unknown action kind \"format\" (this version knows pre_hook, snapshot, post_hook, create"),
    ("dataset-with-shell", set_in_first("destroy", "dataset", "tank/$(reboot)"),
     ".dataset: \"tank/$(reboot)\" is not a ZFS filesystem or volume name"),
    ("unknown-key", set_in_first("send", "recv_flags", ["-F"]), "unknown key(s) \"recv_flags\""),
    ("missing-key", lambda d: first(d, "send").pop("base"), "missing key(s) \"base\""),
    ("rollback-kind", lambda d: d["actions"].append({"kind": "rollback", "host": "nas", "dataset": "tank/a",
                                                     "snapshot": "x", "reason": ""}),
     "unknown action kind \"rollback\""),
    ("format-version", lambda d: d.update(format_version=2), "format_version: 2 is not 1"),
    ("bad-time", lambda d: d.update(now="2025-13-45T99:99:99Z"),
     "now: \"2025-13-45T99:99:99Z\" is not a valid"),
    ("no-digest", lambda d: d.pop("digest"), "missing key(s) \"digest\""),
    ("deep-nesting", lambda d: d.update(warnings=nested_lists(6)), "nested more than 6 levels deep"),
]


@pytest.mark.parametrize(("edit", "message"), [(e, m) for _, e, m in JSON_EDITS],
                         ids=[name for name, _, _ in JSON_EDITS])
def test_a_plan_that_is_not_valid_is_refused_in_one_line(
        hosts: tuple[Path, StandinState, StandinState], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        edit: Callable[[Document], None], message: str) -> None:
    config, nas, backup = hosts
    plan_file = tmp_path / "plan.json"
    document = saved_plan(capsys, config, plan_file)
    edit(document)
    plan_file.write_text(json.dumps(reseal(document) if "digest" in document else document))
    assert_refused(capsys, config, plan_file, message, nas, backup)


RAW_FILES: list[tuple[str, bytes, str]] = [
    ("empty", b"", "not a Plan JSON file: Expecting value at line 1 column 1"),
    ("truncated", b'{"format_version": 1, "actions": [', "not a Plan JSON file: Expecting value"),
    ("top-level-list", b"[]", "the top level is not an object"),
    ("nan", b'{"format_version": NaN}', "NaN is not a JSON number"),
    ("duplicate-key", b'{"format_version": 1, "format_version": 1}', "duplicate key \"format_version\""),
    ("latin-1", b'{"warnings": ["caf\xe9"]}', "byte 18 is not UTF-8"),
    ("deep-array", b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
    ("deep-object", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
]


@pytest.mark.parametrize(("content", "message"), [(c, m) for _, c, m in RAW_FILES],
                         ids=[name for name, _, _ in RAW_FILES])
def test_a_file_that_is_not_plan_json_is_refused_in_one_line(
        hosts: tuple[Path, StandinState, StandinState], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        content: bytes, message: str) -> None:
    config, nas, backup = hosts
    plan_file = tmp_path / "plan.json"
    plan_file.write_bytes(content)
    assert_refused(capsys, config, plan_file, message, nas, backup)


def test_special_files_are_refused_without_blocking(
        hosts: tuple[Path, StandinState, StandinState], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, nas, backup = hosts
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer
    assert_refused(capsys, config, fifo, "is not a regular file (a device, FIFO or socket)", nas, backup)
    assert_refused(capsys, config, Path("/dev/zero"), "is not a regular file", nas, backup)
    assert_refused(capsys, config, tmp_path, "is a directory", nas, backup)
    assert_refused(capsys, config, tmp_path / "missing.json", "no such file", nas, backup)


def test_a_very_large_file_is_refused_before_it_is_read(
        hosts: tuple[Path, StandinState, StandinState], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.planfile import read

    config, nas, backup = hosts
    monkeypatch.setattr(read, "MAX_PLAN_BYTES", 1 << 20)
    big = tmp_path / "big.json"
    with big.open("wb") as fh:
        fh.truncate(2 << 20)  # sparse: 2 MiB that cost nothing
    assert_refused(capsys, config, big, "2,097,152 bytes is larger than any plan this tool writes",
                   nas, backup)


def assert_refused(capsys: pytest.CaptureFixture[str], config: Path, plan_file: Path, message: str,
                   *states: StandinState) -> None:
    before = world(*states)
    code, out, err = cli(capsys, "apply", "-c", str(config), "--plan", str(plan_file), "-y")
    assert code == 1, out + err
    assert message in err, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "internal error" not in err and "Traceback" not in err
    assert out == ""
    assert world(*states) == before


# --------------------------------------------------------------------------- skipped = failed

@pytest.mark.parametrize("saved", [True, False], ids=["saved-plan", "computed-plan"])
def test_a_skipped_action_of_a_saved_plan_is_a_failure(
        hosts: tuple[Path, StandinState, StandinState], capsys: pytest.CaptureFixture[str],
        saved: bool) -> None:
    """A destroy that is no longer safe when apply re-checks it (a hold placed after the
    plan was verified) is skipped: for a computed plan a note, for a saved plan a failure."""
    from datetime import UTC, datetime

    from reconciler.commands.apply import print_report
    from reconciler.config.load import load_config
    from reconciler.execute.apply import apply_plan
    from reconciler.gather.facts import gather
    from reconciler.planning.planner import make_plan
    from reconciler.transport.hosts import open_executors

    config_path, nas, _backup = hosts
    config = load_config(str(config_path))
    with open_executors(config) as executors:
        plan = make_plan(config, gather(config, executors), datetime.fromtimestamp(NOW_TS, UTC))
        hold(nas, "tank/b", "zrepl_20251123_000000", "keep")
        report = apply_plan(plan, config, executors, saved_plan=saved)
    assert [o.names for o in report.skipped] == [("zrepl_20251123_000000",)]
    assert not report.failed
    assert report.ok is (not saved)
    print_report(report, plan)
    out = capsys.readouterr().out
    assert ("promised every one of its actions: the 1 skipped above count as failures" in out) is saved


# --------------------------------------------------------------------------- random edits

def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (keys and indices), the root excluded."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found.append((*prefix, key))
        found += paths_of(item, (*prefix, key))
    return found


def at(document: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        document = document[key]
    return document


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2, 2**64), st.text(max_size=12),
                    st.sampled_from(["zrepl_20251124_150000", "zrepl_20251123_000000", "tank/a", "tank/b",
                                     "tank/unmanaged", "pool/nas/tank/a", "nas", "backup", "#x", "destroy",
                                     "snapshot", "send", "2025-11-24T16:00:00Z", "2026-01-01T00:00:00Z"]))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


@st.composite
def edits(draw: st.DrawFn, document: Document) -> tuple[Document, bool]:
    """A copy of ``document`` with one to three random edits, and whether to rewrite its digest."""
    edited: Document = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 3))):
        # Mostly where it matters: the actions and the keys the digest covers.
        scope = draw(st.sampled_from(["actions", "actions", "header", "anywhere"]))
        candidates = [p for p in paths_of(edited) if p[0] != "digest"]
        if not candidates:
            break
        in_scope = [p for p in candidates if scope == "anywhere" or (
            (p[0] == "actions") == (scope == "actions") and p[0] in ("actions", *DIGEST_KEYS))]
        path = draw(st.sampled_from(in_scope or candidates))
        parent = at(edited, path[:-1])
        operation = draw(st.sampled_from(["replace", "plausible", "plausible", "delete", "duplicate",
                                          "swap"]))
        if operation == "replace":
            parent[path[-1]] = draw(JSON_VALUES)
        elif operation == "plausible":  # a value of the right type: another one the plan has
            same_type = [v for v in map(lambda p: at(edited, p), paths_of(edited))
                         if type(v) is type(parent[path[-1]]) and not isinstance(v, dict | list)]
            parent[path[-1]] = draw(st.sampled_from(same_type or [None]))
        elif operation == "delete":
            del parent[path[-1]]
        elif isinstance(parent, list):
            other = draw(st.integers(0, len(parent) - 1))
            if operation == "duplicate":
                parent.insert(other, json.loads(json.dumps(parent[path[-1]])))
            else:
                parent[path[-1]], parent[other] = parent[other], parent[path[-1]]
    return edited, draw(st.booleans())


@pytest.mark.soak  # long: CI runs it in the soak suite (tests/run), not the fast one
def test_a_randomly_edited_plan_runs_exactly_the_original_or_nothing(
        hosts: tuple[Path, StandinState, StandinState], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Whatever the edit (digest rewritten to match or not), apply either runs exactly the
    original actions (the world ends as the unedited plan leaves it) or refuses, exit 1,
    with nothing changed."""

    config, nas, backup = hosts
    plan_file = tmp_path / "plan.json"
    original = saved_plan(capsys, config, plan_file)
    state_files = [Path(str(s.path)) for s in (nas, backup)]
    pristine = [p.read_bytes() for p in state_files]
    before = world(nas, backup)
    assert cli(capsys, "apply", "-c", str(config), "--plan", str(plan_file), "-y")[0] == 0
    after = world(nas, backup)
    assert after != before

    @settings(max_examples=40, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(edit=edits(original))
    def check(edit: tuple[Document, bool]) -> None:
        edited, resealed = edit
        for path, content in zip(state_files, pristine, strict=True):
            path.write_bytes(content)
        if resealed and isinstance(edited.get("actions"), list):
            with contextlib.suppress(Exception):  # an edit may leave nothing a digest can cover
                reseal(edited)
        plan_file.write_text(json.dumps(edited))
        code, out, err = cli(capsys, "apply", "-c", str(config), "--plan", str(plan_file), "-y")
        assert "internal error" not in err and "Traceback" not in err, err
        if code == 0:
            assert world(nas, backup) == after, out + err
        else:
            assert code == 1, out + err
            assert world(nas, backup) == before, out + err

    check()
