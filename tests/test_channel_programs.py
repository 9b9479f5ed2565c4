"""Channel programs: cursor bookmarks and snapshot destroys as one channel program (``zfs program``)
per pool where zfs runs as root, one command per action elsewhere and when zfs refuses it.

On the stand-in (tests/standin/zfs.py emulates our program with the shapes measured on
OpenZFS 2.1.11); the real thing is tests/e2e/test_scenarios_channel.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from standin.state import StandinState
from test_apply_cli import NOW, cli, hourly_history, write_config

import reconciler.transport.local
from reconciler import api
from reconciler.codes import MetadataPath, ZfsError
from reconciler.domain.observed import HostFacts, ObservedState
from reconciler.errors import UsageError
from reconciler.execute.apply import DONE, FAILED, SKIPPED
from reconciler.execute.channel import (
    SCRIPT_MARKER,
    Op,
    chunked,
    errno_error,
    parse_return,
    refusal_text,
    script,
)
from reconciler.gather.facts_json import observed_from_json, observed_to_json, read_facts_file
from reconciler.planning.metadata import route
from reconciler.transport.hosts import open_executors

FILESYSTEMS = ("tank/f0", "tank/f1", "tank/f2")
REFUSED_STDERR = ("Channel program execution failed:\n"
                  "Permission denied. Channel programs must be run as root.\n")


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconciler.transport.local, "controller_is_root", lambda: True)


def setup(tmp_path: Path, standin: Callable[..., StandinState], *, channel: str = "auto",
          prefix: str = "") -> tuple[Path, StandinState, StandinState]:
    """nas: three filesystems with 30 h of hourly snapshots (some expire), replicated to
    backup:pool/nas; both hosts local stand-ins."""
    nas = standin(f"{prefix}nas", seed=3)
    for name in FILESYSTEMS:
        nas.filesystem(name)
        hourly_history(nas, name, 30)
    nas.save()
    backup = standin(f"{prefix}backup", seed=4)
    backup.filesystem("pool")
    backup.save()
    hosts: dict[str, Any] = {
        "nas": {"connection": "local", "zfs_command": nas.zfs_command, "channel_programs": channel},
        "backup": {"connection": "local", "zfs_command": backup.zfs_command, "channel_programs": channel}}
    config = write_config(tmp_path / f"{prefix}zrepl-reconcile.yml", hosts,
                          [{"host": "nas", "filter": {"tank<": True, "tank": False}, "policy": "hourly",
                            "replicate_to": [{"host": "backup", "root": "pool/nas"}]}])
    return config, nas, backup


def calls(st: StandinState, command: str) -> list[list[str]]:
    return [argv for argv in st.log() if argv[:1] == [command]]


def contents(st: StandinState) -> dict[str, tuple[list[str], list[str]]]:
    st.reload()
    return {name: (sorted(s["name"] for s in ds["snapshots"]), sorted(b["name"] for b in ds["bookmarks"]))
            for name, ds in st.datasets.items()}


# --------------------------------------------------------------------------- the program's text and output

def test_the_script_is_fixed_text_with_its_marker_and_takes_names_as_arguments() -> None:
    text = script().decode()
    assert text.splitlines()[0] == SCRIPT_MARKER
    assert '(...)["argv"]' in text and "zfs.sync.bookmark" in text and "zfs.sync.destroy" in text


def test_output_shapes_measured_on_openzfs_2_1() -> None:
    # zfs program -j: a Lua list comes back keyed "1", "2", ...; no newline at the end.
    assert parse_return('{"return":{"1":0,"2":0,"3":16}}', 3) == (0, 0, 16)
    assert parse_return('{"return":{"1":0}}', 2) is None
    assert parse_return("", 1) is None
    assert refusal_text(REFUSED_STDERR, 1) == "Permission denied. Channel programs must be run as root."
    assert refusal_text("unrecognized command 'program'\nusage: zfs command args ...\n", 2) == \
        "unrecognized command 'program'"
    destroy, bookmark = Op.destroy("t/a@s"), Op.bookmark("t/a@s", "t/a#b")
    assert errno_error(destroy, 16) == (ZfsError.BUSY, "the snapshot is busy (held) (zfs program: errno 16)")
    assert errno_error(destroy, 17)[1].startswith("the snapshot has dependent clones")
    assert errno_error(bookmark, 17)[0] == ZfsError.EXISTS
    assert errno_error(bookmark, 99)[0] == ZfsError.COMMAND_FAILED


def test_programs_are_cut_by_operations_and_argv_bytes() -> None:
    ops = [Op.destroy(f"tank/fs@zrepl_{n:06d}") for n in range(2500)]
    assert chunked(ops, max_ops=1000) == [(0, 1000), (1000, 2000), (2000, 2500)]
    small = chunked(ops, max_ops=10_000, max_bytes=4096)
    assert all(sum(op.cost() for op in ops[a:b]) < 4096 for a, b in small)
    assert small[0][0] == 0 and small[-1][1] == 2500


# --------------------------------------------------------------------------- the planner's route

@pytest.mark.parametrize(("host", "root", "path", "why"), [
    ({"connection": "ssh", "address": "b", "user": "root"}, True, MetadataPath.CHANNEL_PROGRAM,
     "SSH user root"),
    ({"connection": "ssh", "address": "b", "user": "zrepl"}, False, MetadataPath.PER_COMMAND,
     "user zrepl is not root"),
    ({"connection": "ssh", "address": "b", "user": "zrepl", "zfs_command": ["sudo", "-n", "zfs"]}, True,
     MetadataPath.CHANNEL_PROGRAM, "zfs_command runs sudo"),
    ({"connection": "ssh", "address": "b", "user": "root", "channel_programs": "off"}, True,
     MetadataPath.PER_COMMAND, "channel_programs: off"),
    ({"connection": "local"}, True, MetadataPath.CHANNEL_PROGRAM, "the controller runs as root"),
    ({"connection": "local"}, False, MetadataPath.PER_COMMAND,
     "the controller is not root and zfs_command has no sudo or doas"),
])
def test_the_route_follows_the_gathered_root_fact_and_the_option(
        tmp_path: Path, host: dict[str, Any], root: bool, path: MetadataPath, why: str) -> None:
    config = api.load(write_config(tmp_path / "c.yml", {"h": host},
                                   [{"host": "h", "filter": {"tank<": True}, "policy": "hourly"}]))
    observed = ObservedState()
    observed.hosts["h"] = HostFacts("h", zfs_as_root=root)
    assert route(config, observed, "h") == (path, why)


def test_the_root_fact_comes_from_the_executor(tmp_path: Path, standin: Callable[..., StandinState],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    config, _nas, _backup = setup(tmp_path, standin)
    assert not api.facts(config_of(config)).hosts["nas"].zfs_as_root
    monkeypatch.setattr(reconciler.transport.local, "controller_is_root", lambda: True)
    assert api.facts(config_of(config)).hosts["nas"].zfs_as_root


def test_the_root_fact_travels_in_the_facts_file(tmp_path: Path) -> None:
    """simulate --facts plans the path apply would take: the fact is in the file; a file
    written before it reads as not root; a wrong value is named by its path."""
    observed = ObservedState()
    observed.hosts["h"] = HostFacts("h", zfs_as_root=True)
    document = observed_to_json(observed)
    assert document["hosts"]["h"]["zfs_as_root"] is True
    assert observed_from_json(document).hosts["h"].zfs_as_root
    del document["hosts"]["h"]["zfs_as_root"]
    assert not observed_from_json(document).hosts["h"].zfs_as_root
    document["hosts"]["h"]["zfs_as_root"] = "yes"
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(document))
    with pytest.raises(UsageError, match=r"hosts\.h\.zfs_as_root: expected true or false, got 'yes'"):
        read_facts_file(str(path))


def config_of(path: Path) -> Any:
    return api.load(path)


# --------------------------------------------------------------------------- plan output

def test_the_plan_says_which_path_runs_per_host(tmp_path: Path, standin: Callable[..., StandinState],
                                               capsys: pytest.CaptureFixture[str], as_root: None) -> None:
    config, _nas, _backup = setup(tmp_path, standin)
    code, out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW)
    assert code == 0, out + err
    lines = [line for line in out.splitlines() if line.startswith("metadata on")]
    assert lines and lines[0].startswith("metadata on nas: one channel program per pool (zfs program, 1 pool)"
                                         " for 3 bookmarks, ")
    assert "per-command if refused (the controller runs as root)" in lines[0]
    code, out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW, "--explain", "tank/f0")
    assert "the host goes back to one command per action" in out
    code, out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW, "--format", "json")
    metadata = json.loads(out)["metadata"]
    assert metadata[0]["host"] == "nas" and metadata[0]["path"] == "channel_program"
    assert metadata[0]["bookmarks"] == 3 and metadata[0]["pools"] == ["tank"]
    code, out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW, "--format", "markdown")
    assert "- metadata on nas: one channel program per pool" in out


def test_a_saved_plan_with_channel_programs_verifies_and_runs(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str],
        as_root: None) -> None:
    config, nas, _backup = setup(tmp_path, standin)
    saved = tmp_path / "plan.json"
    assert cli(capsys, "plan", "-c", str(config), "--now", NOW, "--out", str(saved))[0] == 0
    code, out, err = cli(capsys, "apply", "-c", str(config), "--plan", str(saved), "-y")
    assert code == 0, out + err
    assert calls(nas, "program") and not calls(nas, "bookmark")


# --------------------------------------------------------------------------- apply

def test_one_program_per_pool_does_what_one_command_per_action_does(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    plain_config, plain_nas, plain_backup = setup(tmp_path, standin, prefix="plain-")
    code, out, err = cli(capsys, "apply", "-c", str(plain_config), "--now", NOW, "-y")
    assert code == 0, out + err
    monkeypatch.setattr(reconciler.transport.local, "controller_is_root", lambda: True)
    config, nas, backup = setup(tmp_path, standin)
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
    assert code == 0, out + err
    assert contents(nas) == contents(plain_nas) and contents(backup) == contents(plain_backup)
    # One program on tank does the three cursor bookmarks; another all snapshot destroys.
    programs = calls(nas, "program")
    assert [argv[1:5] for argv in programs] == [["-j", "tank", "-", "bookmark"],
                                                ["-j", "tank", "-", "destroy"]]
    assert not calls(nas, "bookmark") and not calls(nas, "destroy")
    assert len(calls(plain_nas, "bookmark")) == 3 and len(calls(plain_nas, "destroy")) == 3
    # Every action's report line is the same on both paths.
    assert (out + err).count("done    bookmark ") == 3
    assert cli(capsys, "plan", "-c", str(config), "--now", NOW, "--detailed-exitcode")[0] == 0


def test_a_busy_snapshot_fails_only_its_filesystem(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str],
        as_root: None) -> None:
    config, nas, _backup = setup(tmp_path, standin)
    plan = api.plan(api.load(config), now=api_now())
    doomed = next(a for a in plan.actions if a.kind == "destroy" and a.dataset == "tank/f1")
    nas.reload()
    snap = next(s for s in nas.datasets["tank/f1"]["snapshots"] if s["name"] == doomed.snapshots[0])
    snap["clones"] = True  # a clone's origin: zfs.sync.destroy answers EEXIST
    nas.save()
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
    assert code == 1
    failed = [line for line in (out + err).splitlines() if line.startswith("failed")]
    assert len(failed) == 1 and f"tank/f1@{doomed.snapshots[0]}" in failed[0]
    assert "dependent clones" in failed[0] and "errno 17" in failed[0]
    left = contents(nas)
    assert doomed.snapshots[0] in left["tank/f1"][0]
    assert all(name not in left["tank/f1"][0] for name in doomed.snapshots[1:])
    assert len(calls(nas, "program")) == 2


def api_now() -> Any:
    from datetime import datetime
    return datetime.fromisoformat(NOW.replace("Z", "+00:00"))


def test_a_vanished_name_is_skipped_and_the_rest_destroyed(
        tmp_path: Path, standin: Callable[..., StandinState], as_root: None) -> None:
    config_path, nas, _backup = setup(tmp_path, standin)
    config = api.load(config_path)
    plan = api.plan(config, now=api_now())
    doomed = next(a for a in plan.actions if a.kind == "destroy" and a.dataset == "tank/f2")
    nas.reload()
    nas.datasets["tank/f2"]["snapshots"] = [s for s in nas.datasets["tank/f2"]["snapshots"]
                                            if s["name"] != doomed.snapshots[0]]
    nas.save()
    with open_executors(config) as executors:
        report = api.apply(plan, config, executors)
    mine = [o for o in report.outcomes if o.action is doomed]
    assert [(o.status, o.names) for o in mine if o.status == SKIPPED] == [(SKIPPED, (doomed.snapshots[0],))]
    assert [o.status for o in mine if o.status != SKIPPED] == [DONE] and report.ok
    assert not any(o.status == FAILED for o in report.outcomes)


def test_a_refused_program_falls_back_to_one_command_per_action_with_a_note(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str],
        as_root: None) -> None:
    config, nas, _backup = setup(tmp_path, standin)
    nas.data["program"] = "refused"  # a non-root user: zfs refuses before anything runs
    nas.save()
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
    assert code == 0, out + err
    note = ("channel program refused on host nas: Permission denied. Channel programs must be run as root.;"
            " one command per action")
    assert (out + err).count(note) == 1
    assert len(calls(nas, "program")) == 1  # refused once; the rest of the apply per-command
    assert len(calls(nas, "bookmark")) == 3 and len(calls(nas, "destroy")) == 3
    assert (out + err).count("done    bookmark ") == 3
    assert cli(capsys, "plan", "-c", str(config), "--now", NOW, "--detailed-exitcode")[0] == 0


def test_a_zfs_without_the_subcommand_falls_back_too(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str],
        as_root: None) -> None:
    config, nas, _backup = setup(tmp_path, standin)
    nas.data["program"] = "unknown"
    nas.save()
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y", "--parallel", "2")
    assert code == 0, out + err
    assert "channel program refused on host nas: unrecognized command 'program'" in out + err
    assert cli(capsys, "plan", "-c", str(config), "--now", NOW, "--detailed-exitcode")[0] == 0


def test_parallel_apply_runs_the_programs_too(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str],
        as_root: None) -> None:
    config, nas, _backup = setup(tmp_path, standin)
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y", "--parallel", "3")
    assert code == 0, out + err
    assert len(calls(nas, "program")) == 2 and not calls(nas, "bookmark") and not calls(nas, "destroy")
    assert cli(capsys, "plan", "-c", str(config), "--now", NOW, "--detailed-exitcode")[0] == 0


def test_channel_programs_off_keeps_one_command_per_action(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str],
        as_root: None) -> None:
    config, nas, _backup = setup(tmp_path, standin, channel="off")
    code, out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW)
    assert "metadata on nas: per-command for 3 bookmarks, " in out and "(channel_programs: off)" in out
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
    assert code == 0, out + err
    assert not calls(nas, "program") and len(calls(nas, "bookmark")) == 3
