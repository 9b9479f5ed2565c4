"""``zrepl-reconcile plan`` end to end: config file, stand-in zfs hosts, real CLI, exit codes."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standin.state import StandinState

from reconciler.cli import main
from reconciler.commands.common import add_selection_arguments, parse_now
from reconciler.errors import UsageError

NOW = "2025-11-24T16:00:00Z"  # conftest.NOW, the stand-in's clock
NOW_TS = 1_764_000_000
HOUR = 3600


def importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


needs_planner = pytest.mark.skipif(
    not importable("reconciler.planning.planner"),
    reason="reconciler.planning.planner (make_plan, hosts_needed; issue 5) is not merged yet")


# --------------------------------------------------------------------------- flags and clock

@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-24T12:00:00Z", datetime(2026, 11, 24, 12, tzinfo=UTC)),
    ("2026-11-24T13:30:00+01:30", datetime(2026, 11, 24, 12, tzinfo=UTC)),
    ("2026-11-24 12:00:00+00:00", datetime(2026, 11, 24, 12, tzinfo=UTC)),
    (" 2026-11-24T12:00Z ", datetime(2026, 11, 24, 12, tzinfo=UTC)),
])
def test_parse_now_accepts_utc_and_offsets(text: str, expected: datetime) -> None:
    value = parse_now(text)
    assert value == expected and value.tzinfo is UTC


@pytest.mark.parametrize(("text", "message"), [
    ("yesterday", "not an ISO 8601 time"),
    ("2026-13-01T00:00:00Z", "not an ISO 8601 time"),
    ("2026-11-24T12:00:00", "no time zone; add Z"),
])
def test_parse_now_refuses_bad_input(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_now(text)


def test_parse_now_default_is_now_in_whole_seconds() -> None:
    value = parse_now(None)
    assert value.tzinfo is UTC and value.microsecond == 0
    assert abs((datetime.now(UTC) - value).total_seconds()) < 5


def test_selection_arguments_repeat() -> None:
    parser = argparse.ArgumentParser()
    add_selection_arguments(parser)
    args = parser.parse_args(["--host", "a", "--host", "b", "--filesystem", "tank/x y", "--now", NOW])
    assert args.hosts == ["a", "b"] and args.filesystems == ["tank/x y"] and args.now == NOW
    empty = parser.parse_args([])
    assert empty.hosts is None and empty.filesystems is None and empty.now is None


# --------------------------------------------------------------------------- fixtures

POLICY: dict[str, Any] = {
    "snapshots": {"prefix": "zrepl_", "interval": "1h"},
    "keep_source": [{"type": "not_replicated"},
                    {"type": "grid", "grid": "1x1h(keep=all) | 24x1h | 14x1d", "regex": "^zrepl_"}],
    "keep_target": [{"type": "grid", "grid": "1x1h(keep=all) | 24x1h | 30x1d", "regex": "^zrepl_"}],
}


def write_config(path: Path, hosts: dict[str, list[str]], filesystems: list[dict[str, Any]],
                 policies: dict[str, Any] | None = None) -> Path:
    """JSON is YAML: the loader reads it with positions like any other config."""
    config = {
        "hosts": {name: {"connection": "local", "zfs_command": cmd} for name, cmd in hosts.items()},
        "policies": policies or {"hourly": POLICY},
        "filesystems": filesystems,
    }
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def replicated(tmp_path: Path, standin: Callable[..., StandinState]) -> Path:
    """nas:tank/data (two filesystems, old snapshots) replicated to backup:pool/nas (empty)."""
    nas = standin("nas", seed=3)
    nas.filesystem("tank/data")
    nas.snapshot("tank/data", "zrepl_20251124_130000", creation=NOW_TS - 3 * HOUR, size=10 * 2**20)
    nas.snapshot("tank/data/a b:c", "zrepl_20251124_130000", creation=NOW_TS - 3 * HOUR)
    nas.save()
    backup = standin("backup", seed=4)
    backup.filesystem("pool/nas")
    backup.save()
    return write_config(tmp_path / "zrepl-reconcile.yml",
                        {"nas": nas.zfs_command, "backup": backup.zfs_command},
                        [{"host": "nas", "filter": {"tank/data<": True}, "policy": "hourly",
                          "replicate_to": [{"host": "backup", "root": "pool/nas"}]}])


@pytest.fixture
def up_to_date(tmp_path: Path, standin: Callable[..., StandinState]) -> Path:
    """A local-only filesystem whose newest snapshot is 10 minutes old: nothing to do."""
    nas = standin("laptop", seed=5)
    nas.snapshot("tank/home", "zrepl_20251124_155000", creation=NOW_TS - 600)
    nas.save()
    policy = {"snapshots": {"prefix": "zrepl_", "interval": "1h"},
              "keep_source": [{"type": "grid", "grid": "1x1h(keep=all) | 24x1h", "regex": "^zrepl_"}]}
    return write_config(tmp_path / "local.yml", {"nas": nas.zfs_command},
                        [{"host": "nas", "filter": {"tank/home": True}, "policy": "local"}],
                        {"local": policy})


def plan_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["plan", *args])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- the command

@needs_planner
def test_changes_exit_2_only_with_detailed_exitcode(replicated: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--detailed-exitcode")
    assert code == 2, err
    assert "create snapshot tank/data@zrepl_" in out
    assert "full send tank/data@" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("Plan: ") and "snapshots to create" in last and "send" in last
    code, _out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW)
    assert code == 0, err


@needs_planner
def test_no_changes_exit_0(up_to_date: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = plan_cli(capsys, "-c", str(up_to_date), "--now", NOW, "--detailed-exitcode")
    assert code == 0, err
    assert "No changes" in out


@needs_planner
def test_json_format_and_out_file_agree(replicated: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "plans" / "plan.json"
    out_file.parent.mkdir()
    code, out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--format", "json",
                              "--out", str(out_file))
    assert code == 0, err
    printed = json.loads(out)
    # Streamed, yet the very bytes json.dumps(indent=2) gives; the file is the same document.
    assert out == json.dumps(printed, indent=2) + "\n"
    assert out_file.read_text(encoding="utf-8") == out
    assert printed["format_version"] == 1 and printed["now"] == NOW
    assert printed["fingerprint"].startswith("sha256:")
    kinds = [a["kind"] for a in printed["actions"]]
    assert "snapshot" in kinds and "send" in kinds
    send = next(a for a in printed["actions"] if a["kind"] == "send")
    assert send["source"]["host"] == "nas" and send["target"]["host"] == "backup"
    assert send["target"]["dataset"].startswith("pool/nas/tank/data")
    assert printed["summary"]["snapshot"] == kinds.count("snapshot")
    assert list(out_file.parent.iterdir()) == [out_file]  # no temporary file left behind


@needs_planner
def test_out_file_is_json_whatever_the_format(replicated: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "plan.json"
    code, out, _err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--format", "markdown",
                               "--out", str(out_file))
    assert code == 0
    assert out.startswith("### zrepl-reconcile plan: ")
    assert json.loads(out_file.read_text(encoding="utf-8"))["now"] == NOW


@needs_planner
def test_now_makes_plans_reproducible(replicated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for _ in range(2):
        code, out, _err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--format", "json")
        assert code == 0
        outputs.append(out)
    assert outputs[0] == outputs[1]
    assert "zrepl_20251124_160000" in outputs[0]  # the snapshot name comes from --now


@needs_planner
def test_explain_lists_every_snapshot(replicated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--explain", "tank/data")
    assert code == 0, err
    assert "explain nas:tank/data" in out and "zrepl_20251124_130000" in out
    code, _out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--explain", "tank/nope")
    assert code == 1 and "--explain tank/nope: no managed filesystem" in err


@needs_planner
def test_unavailable_target_is_reported_not_fatal(tmp_path: Path, standin: Callable[..., StandinState],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    nas = standin("nas", seed=6)
    nas.snapshot("tank/data", "zrepl_20251124_130000", creation=NOW_TS - 3 * HOUR)
    nas.save()
    config = write_config(tmp_path / "c.yml",
                          {"nas": nas.zfs_command, "backup": [str(tmp_path / "no-such-zfs")]},
                          [{"host": "nas", "filter": {"tank/data": True}, "policy": "hourly",
                            "replicate_to": [{"host": "backup", "root": "pool/nas"}]}])
    code, out, err = plan_cli(capsys, "-c", str(config), "--now", NOW, "--detailed-exitcode")
    assert code == 2, err  # the source snapshot is still planned
    assert "Unavailable hosts (1)" in out and "backup" in out
    assert "create snapshot tank/data@zrepl_20251124_160000" in out
    code, out, err = plan_cli(capsys, "-c", str(config), "--now", NOW, "--format", "json")
    assert code == 0
    assert [u["host"] for u in json.loads(out)["unavailable"]] == ["backup"]
    assert "warning: the plan has" in err and "1 host unavailable" in err


@needs_planner
def test_selection_flags(replicated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--format", "json",
                              "--filesystem", "tank/data/a b:c")
    assert code == 0, err
    datasets = {a["dataset"] for a in json.loads(out)["actions"] if a["kind"] == "snapshot"}
    assert datasets == {"tank/data/a b:c"}
    code, _out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--host", "nope")
    assert code == 1 and "--host nope: not a host of the configuration" in err


def test_bad_now_is_exit_1_with_one_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "c.yml", {"nas": ["zfs"]},
                          [{"host": "nas", "filter": {"tank": True}, "policy": "hourly"}])
    code, out, err = plan_cli(capsys, "-c", str(config), "--now", "2025-11-24T16:00:00")
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        "error: --now '2025-11-24T16:00:00' has no time zone; add Z for UTC (e.g. 2025-11-24T16:00:00Z)"
        " or an offset such as +01:00"]


@needs_planner
def test_unwritable_out_is_exit_1(replicated: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW,
                              "--out", str(tmp_path / "missing-dir" / "plan.json"))
    assert code == 1 and out == ""
    assert err.startswith("error: --out ") and "cannot write the plan file" in err


@pytest.mark.parametrize("kind", ["device", "fifo", "directory", "trailing-slash"])
def test_out_is_written_only_to_a_regular_file(replicated: Path, tmp_path: Path, kind: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`plan --out /dev/full` once replaced the device node with a plain file (as root)."""
    path = {"device": "/dev/null", "fifo": str(tmp_path / "fifo"), "directory": str(tmp_path),
            "trailing-slash": str(tmp_path / "new-dir") + "/"}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    code, out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--out", path)
    assert code == 1 and out == "", err
    assert err.startswith(f"error: --out {path}: ") and ("regular file" in err or "directory" in err)
    assert Path("/dev/null").is_char_device()
    assert not (tmp_path / "new-dir").exists()


def test_out_through_a_symlink_replaces_the_file_it_names(replicated: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    real, link = tmp_path / "real.json", tmp_path / "link.json"
    real.write_text("old")
    link.symlink_to(real)
    code, _out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--out", str(link))
    assert code == 0, err
    assert link.is_symlink() and json.loads(real.read_text())["format_version"] == 1


@pytest.mark.parametrize("name", ["tank/data/", "tank/data@x", "tank//data"])
def test_an_invalid_filesystem_name_is_a_usage_error(replicated: Path, name: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--filesystem", name,
                              "--detailed-exitcode")
    assert code == 1 and out == ""
    assert err.startswith("error: --filesystem: ") and "not a valid ZFS dataset name" in err


def test_missing_config_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = plan_cli(capsys, "-c", str(tmp_path / "absent.yml"), "--now", NOW)
    assert code == 1 and err.startswith("error: ")


@needs_planner
def test_real_entry_point_in_a_subprocess(replicated: Path, up_to_date: Path) -> None:
    """Once through the installed ``zrepl-reconcile`` script, as users and CI run it (non-TTY)."""
    exe = shutil.which("zrepl-reconcile")
    argv = [exe] if exe else [sys.executable, "-m", "reconciler.cli"]
    changed = subprocess.run([*argv, "plan", "-c", str(replicated), "--now", NOW, "--detailed-exitcode"],
                             capture_output=True, text=True, timeout=60)
    assert changed.returncode == 2, changed.stderr
    assert "\x1b[" not in changed.stdout  # not a TTY: no colour codes
    assert changed.stdout.strip().splitlines()[-1].startswith("Plan: ")
    clean = subprocess.run([*argv, "plan", "-c", str(up_to_date), "--now", NOW, "--detailed-exitcode"],
                           capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stderr
    assert "No changes" in clean.stdout


@needs_planner
@pytest.mark.skipif(not importable("reconciler.commands.apply"),
                    reason="reconciler.commands.apply (issue 6) is not merged yet")
def test_plan_after_apply_says_no_changes(replicated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """pyinfra's end-to-end check: the second plan after a successful apply is empty."""
    code, _out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--detailed-exitcode")
    assert code == 2, err
    code = main(["apply", "-c", str(replicated), "--now", NOW, "-y"])
    _out, err = capsys.readouterr()
    assert code == 0, err
    code, out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--detailed-exitcode")
    assert code == 0, out + err
    assert "No changes" in out.strip().splitlines()[-1]


# --------------------------------------------------------------------------- --host / --filesystem

@needs_planner
@pytest.mark.parametrize("name", ["pool/other", "tank", "tank/data/a", "pool/nas-old/tank/data"])
def test_filesystem_outside_the_config_is_a_usage_error(replicated: Path, name: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Not "host unavailable" for a host nobody asked: the flag is wrong, and the message says
    what the configuration manages."""
    if name == "tank":  # an ancestor of a filter root is fine: it selects tank/data and below
        code, _out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--filesystem", name)
        assert code == 0, err
        return
    code, out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--filesystem", name)
    if name == "tank/data/a":  # within tank/data<, merely missing: a warning, not an error
        assert code == 0 and "--filesystem tank/data/a: no selected dataset on nas" in out
        assert "unavailable" not in out.lower()
        return
    assert code == 1 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: --filesystem {name}: not managed by the configuration")
    assert "managed: nas: tank/data< -> backup:pool/nas/..." in line


@needs_planner
def test_filesystem_naming_a_target_dataset_selects_the_send_into_it(
        replicated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--format", "json",
                              "--filesystem", "pool/nas/tank/data/a b:c")
    assert code == 0, err
    plan = json.loads(out)
    # the managed parent tank/data is sent in full (not left as a placeholder that would block
    # its own first send later); pool/nas/tank, which no source maps to, is a placeholder
    assert [(a["kind"], a["dataset"]) for a in plan["actions"]] == [
        ("create", "pool/nas/tank"),
        *(("hold", ds) for ds in ("tank/data", "tank/data/a b:c")),  # guarantee_resumability: the steps
        ("send", "tank/data"), ("send", "tank/data/a b:c"),
        *(("hold_received", ds) for ds in ("pool/nas/tank/data", "pool/nas/tank/data/a b:c")),
        ("bookmark", "tank/data"), ("bookmark", "tank/data/a b:c"),
        *(("release", ds) for ds in ("tank/data", "tank/data/a b:c"))]
    assert plan["warnings"] == ["selection: also sends nas:tank/data to backup:pool/nas/tank/data, which"
                                " pool/nas/tank/data/a b:c needs as parent (a placeholder there would block"
                                " its own replication)"]
    assert plan["conflicts"] == [] and plan["unavailable"] == []
    assert plan["selection"] == {"hosts": [], "filesystems": ["pool/nas/tank/data/a b:c"]}


@needs_planner
def test_filesystem_unmanaged_on_the_given_host(replicated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--host", "backup",
                               "--filesystem", "tank/data")
    assert code == 0, err  # the pair tank/data -> backup touches backup
    write_config(replicated, {"nas": ["zfs"], "backup": ["zfs"], "other": ["zfs"]},
                 [{"host": "nas", "filter": {"tank/data<": True}, "policy": "hourly",
                   "replicate_to": [{"host": "backup", "root": "pool/nas"}]}])
    code, _out, err = plan_cli(capsys, "-c", str(replicated), "--now", NOW, "--host", "other",
                               "--filesystem", "tank/data")
    assert code == 1
    assert "--filesystem tank/data: not managed by the configuration on host other" in err
    assert "(tank/data is managed, but not on other)" in err


@pytest.fixture
def target_to_prune(tmp_path: Path, standin: Callable[..., StandinState]) -> Path:
    """nas:tank/data fully replicated to backup, whose keep_target (last 1) prunes two."""
    nas = standin("nas", seed=7)
    backup = standin("backup", seed=8)
    for hours in (30, 20, 0.5):
        snap = nas.snapshot("tank/data", f"zrepl_{hours}", creation=int(NOW_TS - hours * HOUR))
        backup.snapshot("pool/nas/tank/data", snap["name"], creation=snap["creation"], guid=snap["guid"])
    nas.save()
    backup.save()
    policy = {"snapshots": {"prefix": "zrepl_", "interval": "1h"},
              "keep_source": [{"type": "not_replicated"}, {"type": "last_n", "count": 3}],
              "keep_target": [{"type": "last_n", "count": 1}]}
    return write_config(tmp_path / "c.yml", {"nas": nas.zfs_command, "backup": backup.zfs_command},
                        [{"host": "nas", "filter": {"tank/data": True}, "policy": "p",
                          "replicate_to": [{"host": "backup", "root": "pool/nas"}]}], {"p": policy})


@needs_planner
@pytest.mark.skipif(not importable("reconciler.commands.apply"), reason="apply is not merged yet")
def test_host_of_a_target_shows_its_destroys_and_a_saved_plan_applies(
        target_to_prune: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--host backup: backup's pending target pruning (was "No changes"); plan --out with the
    selection, apply --plan re-gathers the same hosts and accepts the fingerprint."""
    saved = tmp_path / "plan.json"
    code, out, err = plan_cli(capsys, "-c", str(target_to_prune), "--now", NOW, "--host", "backup",
                              "--detailed-exitcode", "--out", str(saved))
    assert code == 2, err
    assert "destroy 2 snapshots of pool/nas/tank/data" in out
    assert "create snapshot" not in out  # nas's own schedule is nas's business
    plan = json.loads(saved.read_text(encoding="utf-8"))
    # The replica's newest snapshot gets its last-received hold (guarantee_incremental, the default
    # guarantee_resumability included), the cursor moves to it, the target is pruned.
    assert [(a["kind"], a["host"]) for a in plan["actions"]] == [("hold", "backup"), ("bookmark", "nas"),
                                                                  ("destroy", "backup")]
    assert plan["selection"] == {"hosts": ["backup"], "filesystems": []}
    code = main(["apply", "-c", str(target_to_prune), "--plan", str(saved), "-y"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    code, out, err = plan_cli(capsys, "-c", str(target_to_prune), "--now", NOW, "--host", "backup",
                              "--detailed-exitcode")
    assert code == 0, out + err
    assert "No changes" in out.strip().splitlines()[-1]
