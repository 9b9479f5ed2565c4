"""``zrepl-reconcile apply`` end to end against stand-in zfs hosts (no real ZFS needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from standin.state import StandinState

from reconciler.cli import main

NOW = "2025-11-24T16:00:00Z"  # conftest.NOW, the stand-in's clock
NOW_TS = 1_764_000_000
HOUR = 3600

POLICY: dict[str, Any] = {
    "snapshots": {"prefix": "zrepl_", "interval": "1h"},
    "keep_source": [{"type": "not_replicated"},
                    {"type": "grid", "grid": "1x1h(keep=all) | 24x1h | 14x1d", "regex": "^zrepl_"}],
    "keep_target": [{"type": "grid", "grid": "1x1h(keep=all) | 24x1h | 30x1d", "regex": "^zrepl_"}],
}


def write_config(path: Path, hosts: dict[str, Any], filesystems: list[dict[str, Any]],
                 policies: dict[str, Any] | None = None) -> Path:
    """JSON is YAML. ``hosts`` values: a zfs_command list (local host) or a full host dict."""
    config = {
        "hosts": {name: ({"connection": "local", "zfs_command": cmd} if isinstance(cmd, list) else cmd)
                  for name, cmd in hosts.items()},
        "policies": policies or {"hourly": POLICY},
        "filesystems": filesystems,
    }
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def hourly_history(st: StandinState, dataset: str, hours: int, size: int = 4096) -> None:
    """One zrepl_ snapshot per hour for ``hours`` hours, ending 2 hours before NOW."""
    for h in range(hours, 1, -1):
        ts = NOW_TS - h * HOUR
        name = "zrepl_" + time.strftime("%Y%m%d_%H%M%S", time.gmtime(ts))
        st.snapshot(dataset, name, creation=ts, size=size)


@pytest.fixture
def two_hosts(tmp_path: Path,
              standin: Callable[..., StandinState]) -> tuple[Path, StandinState, StandinState]:
    """nas: tank/data, tank/data/a b:c, tank/other (40 h of hourly snapshots, so some expire)
    replicated to backup:pool/nas (empty)."""
    nas = standin("nas", seed=3)
    for ds in ("tank/data", "tank/data/a b:c", "tank/other"):
        nas.filesystem(ds)
        hourly_history(nas, ds, 40)
    nas.save()
    backup = standin("backup", seed=4)
    backup.filesystem("pool")
    backup.save()
    config = write_config(tmp_path / "zrepl-reconcile.yml",
                          {"nas": nas.zfs_command, "backup": backup.zfs_command},
                          [{"host": "nas", "filter": {"tank<": True}, "policy": "hourly",
                            "replicate_to": [{"host": "backup", "root": "pool/nas"}]}])
    return config, nas, backup


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def all_snapshots(st: StandinState) -> set[tuple[str, int]]:
    st.reload()
    return {(name, snap["guid"]) for name, ds in st.datasets.items() for snap in ds["snapshots"]}


def test_apply_then_plan_says_no_changes(two_hosts: tuple[Path, StandinState, StandinState],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    config, _nas, backup = two_hosts
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
    assert code == 0, out + err
    assert "Apply: " in out and " 0 failed" in out
    backup.reload()
    assert "pool/nas/tank/data/a b:c" in backup.datasets
    assert backup.datasets["pool/nas/tank/other"]["snapshots"]
    code, out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW, "--detailed-exitcode")
    assert code == 0, out + err
    assert "No changes" in out


def test_apply_no_changes_exits_0_without_asking(two_hosts: tuple[Path, StandinState, StandinState],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config, _nas, _backup = two_hosts
    assert cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")[0] == 0
    # stdin is not a TTY under pytest: a changes-free apply must not need -y.
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW)
    assert code == 0, out + err
    assert "No changes" in out


def test_apply_refuses_without_yes_when_stdin_is_not_a_tty(
        two_hosts: tuple[Path, StandinState, StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    config, nas, _backup = two_hosts
    before = all_snapshots(nas)
    code, _out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW)
    assert code == 1
    assert "stdin is not a terminal" in err and "-y" in err
    assert all_snapshots(nas) == before


def test_saved_plan_applies_then_no_changes(two_hosts: tuple[Path, StandinState, StandinState],
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, _nas, _backup = two_hosts
    plan_file = tmp_path / "plan.json"
    code, _out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW, "--out", str(plan_file))
    assert code == 0, err
    saved = json.loads(plan_file.read_text())
    code, out, err = cli(capsys, "apply", "-c", str(config), "--plan", str(plan_file), "-y")
    assert code == 0, out + err
    assert f"{len(saved['actions'])} done" in out or " 0 failed" in out
    code, out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW)
    assert code == 0 and "No changes" in out, out + err


def test_stale_saved_plan_is_refused(two_hosts: tuple[Path, StandinState, StandinState],
                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, nas, _backup = two_hosts
    plan_file = tmp_path / "plan.json"
    assert cli(capsys, "plan", "-c", str(config), "--now", NOW, "--out", str(plan_file))[0] == 0
    nas.reload()
    nas.snapshot("tank/other", "manual_by_someone", creation=NOW_TS - 60)
    nas.save()
    before = all_snapshots(nas)
    code, _out, err = cli(capsys, "apply", "-c", str(config), "--plan", str(plan_file), "-y")
    assert code == 1
    assert "stale" in err
    assert all_snapshots(nas) == before


def test_saved_plan_for_a_selection_runs_with_that_selection(
        two_hosts: tuple[Path, StandinState, StandinState], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, nas, _backup = two_hosts
    plan_file = tmp_path / "plan.json"
    assert cli(capsys, "plan", "-c", str(config), "--now", NOW, "--filesystem", "tank/other",
               "--out", str(plan_file))[0] == 0
    data = json.loads(plan_file.read_text())
    assert data["selection"] == {"hosts": [], "filesystems": ["tank/other"]}
    # The selection is part of what the digest covers: removing or changing it is an edit.
    before = all_snapshots(nas)
    for selection in (None, {"hosts": [], "filesystems": ["tank/data"]}):
        edited = dict(data)
        if selection is None:
            del edited["selection"]
        else:
            edited["selection"] = selection
        plan_file.write_text(json.dumps(edited))
        code, out, err = cli(capsys, "apply", "-c", str(config), "--plan", str(plan_file), "-y")
        assert code == 1 and ("selection" in err or "edited" in err), out + err
        assert len(err.strip().splitlines()) == 1, err
        assert all_snapshots(nas) == before
    plan_file.write_text(json.dumps(data))
    code, out, err = cli(capsys, "apply", "-c", str(config), "--plan", str(plan_file), "-y")
    assert code == 0, out + err
    code, out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW, "--filesystem", "tank/other")
    assert code == 0 and "No changes" in out, out + err


def test_failing_filesystem_does_not_stop_the_others(
        two_hosts: tuple[Path, StandinState, StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    config, nas, backup = two_hosts
    assert cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")[0] == 0
    # Next hour: a new snapshot everywhere, an incremental send, and more expire on the source.
    later = "2025-11-24T19:00:00Z"
    nas.reload()
    nas.inject("destroy", "cannot destroy snapshot tank/other@x: dataset is busy", match="tank/other@")
    nas.inject("send", "cannot open 'tank/data/a b:c@x': dataset does not exist", match="tank/data/a b:c@")
    nas.save()
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", later, "-y")
    assert code == 1, out + err
    assert "Failed:" in out
    assert "tank/other" in out and "dataset is busy" in out
    assert "does not exist" in out
    # tank/data (neither injected) got its send and its destroys.
    backup.reload()
    arrived = {s["name"] for s in backup.datasets["pool/nas/tank/data"]["snapshots"]}
    assert "zrepl_20251124_190000" in arrived
    # the failed send's filesystem: its source destroys were skipped, not run.
    assert "skipped" in out.lower()
    code, out, _err = cli(capsys, "plan", "-c", str(config), "--now", later)
    assert "tank/data/a b:c" in out  # what remains is shown again


def lock_in_child(config: Path) -> subprocess.Popen[str]:
    """A child process that holds the apply lock of ``config`` (for 30 s) once this returns."""
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time\n"
                               "from reconciler.execute.lock import ConfigLock\n"
                               "with ConfigLock(sys.argv[1]):\n"
                               "    print('locked', flush=True); time.sleep(30)\n", str(config)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_concurrent_apply_is_refused_with_the_holder_pid(
        two_hosts: tuple[Path, StandinState, StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    from reconciler.execute.lock import ConfigLock

    config, _nas, _backup = two_hosts
    holder = lock_in_child(config)
    try:
        code, _out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
        assert code == 1
        assert f"PID {holder.pid}" in err and "running" in err
    finally:
        holder.kill()
        holder.wait()
    # The holder died without cleaning up: the lock is free again (flock), the stale PID ignored.
    with ConfigLock(config) as lock:
        assert lock.stale_pid in (holder.pid, None)
    assert not os.path.exists(lock.path)  # released cleanly: removed


@pytest.mark.parametrize(("answer", "expected_code"), [("y\n", 0), ("no\n", 1)])
def test_confirmation_on_a_terminal(two_hosts: tuple[Path, StandinState, StandinState],
                                    answer: str, expected_code: int) -> None:
    import pty

    config, nas, _backup = two_hosts
    before = all_snapshots(nas)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "apply", "-c", str(config),
                                 "--now", NOW], stdin=slave, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=dict(os.environ, NO_COLOR="1"))
        os.write(master, answer.encode())
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == expected_code, out + err
    assert "Apply these" in out
    if expected_code == 0:
        assert "Apply: " in out and all_snapshots(nas) != before
    else:
        assert "cancelled" in out and all_snapshots(nas) == before


def test_a_saved_plan_runs_exactly_its_actions(two_hosts: tuple[Path, StandinState, StandinState],
                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reconciler.domain.actions import (
        HoldAction,
        HoldReceivedAction,
        ReleaseAction,
        SendAction,
        TagAction,
        tag_batch_argv,
    )
    from reconciler.domain.plan import Plan

    config, nas, backup = two_hosts
    plan_file = tmp_path / "plan.json"
    assert cli(capsys, "plan", "-c", str(config), "--now", NOW, "--out", str(plan_file))[0] == 0
    saved = json.loads(plan_file.read_text())
    # One outcome per action: every destroy here fits in one zfs command.
    assert all(len(a.get("snapshots", ())) < 1000 for a in saved["actions"])
    logged = {"nas": len(nas.log()), "backup": len(backup.log())}
    code, out, err = cli(capsys, "apply", "-c", str(config), "--plan", str(plan_file), "-y")
    assert code == 0, out + err
    assert f"Apply: {len(saved['actions'])} done, 0 failed, 0 skipped." in out
    # Every changing zfs command apply ran is one of the saved actions', and each saved
    # action's command ran (snapshots as one atomic batch per key, sends as send | recv).
    changing = ("snapshot", "destroy", "bookmark", "recv", "create", "hold", "release")
    ran = sorted(tuple(argv) for host, st in (("nas", nas), ("backup", backup))
                 for argv in st.log()[logged[host]:] if argv and argv[0] in changing)
    expected: list[tuple[str, ...]] = []
    plan = Plan.from_json(saved)
    batches: dict[str, list[str]] = {}
    tags: dict[tuple[str, str, str], list[TagAction]] = {}  # one zfs hold/release per kind, host, tag
    for action in plan.actions:
        if action.kind == "snapshot":
            batches.setdefault(f"{action.host}{action.batch}", []).append(  # type: ignore[attr-defined]
                f"{action.dataset}@{action.snapshot}")  # type: ignore[attr-defined]
        elif isinstance(action, SendAction):
            expected.append(tuple(action.recv_argv()))
        elif isinstance(action, HoldAction | HoldReceivedAction | ReleaseAction):
            tags.setdefault((action.kind, action.host, action.tag), []).append(action)
        else:
            expected.append(tuple(action.argv()))
    expected += [("zfs", "snapshot", *names) for names in batches.values()]
    expected += [tuple(tag_batch_argv(group)) for group in tags.values()]
    assert ran == sorted(argv[1:] for argv in expected)  # the stand-in logs argv after "zfs"


@pytest.mark.parametrize(("extra", "message"), [
    (("--now", NOW), "--now cannot be combined with a saved plan"),
    (("--filesystem", "tank/data"), "--filesystem tank/data differs from the selection"),
    (("--host", "backup"), "--host backup differs from the selection"),
])
def test_a_saved_plan_refuses_options_that_would_change_it(
        two_hosts: tuple[Path, StandinState, StandinState], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], message: str) -> None:
    config, nas, _backup = two_hosts
    plan_file = tmp_path / "plan.json"
    assert cli(capsys, "plan", "-c", str(config), "--now", NOW, "--filesystem", "tank/other",
               "--out", str(plan_file))[0] == 0
    before = all_snapshots(nas)
    code, _out, err = cli(capsys, "apply", "-c", str(config), "--plan", str(plan_file), "-y", *extra)
    assert code == 1 and message in err, err
    assert all_snapshots(nas) == before
    # The selection it was made for is accepted.
    code, out, err = cli(capsys, "apply", "-c", str(config), "--plan", str(plan_file), "-y",
                         "--filesystem", "tank/other")
    assert code == 0, out + err


def test_the_report_names_what_was_not_attempted(two_hosts: tuple[Path, StandinState, StandinState],
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _config, nas, _backup = two_hosts
    config = write_config(tmp_path / "down.yml", {"nas": nas.zfs_command, "backup": ["/nonexistent/zfs"]},
                          [{"host": "nas", "filter": {"tank<": True}, "policy": "hourly",
                            "replicate_to": [{"host": "backup", "root": "pool/nas"}]}])
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
    assert code == 0, out + err
    report = out.split("Not attempted", 1)[1]
    assert "host backup unavailable" in report, out
    assert "were not attempted" in report


def test_a_lock_left_by_a_killed_apply_is_taken_over_with_a_note(
        two_hosts: tuple[Path, StandinState, StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    config, _nas, _backup = two_hosts
    holder = lock_in_child(config)
    holder.kill()
    holder.wait()
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
    assert code == 0, out + err
    assert f"(PID {holder.pid}) ended without finishing" in err


def test_sigterm_stops_apply_between_actions_and_the_next_apply_converges(
        two_hosts: tuple[Path, StandinState, StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    import signal

    config, nas, _backup = two_hosts
    nas.reload()
    nas.sleep("send", 0.5)  # every send takes half a second: time to signal between actions
    nas.save()
    before = all_snapshots(nas)
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "apply", "-c", str(config),
                             "--now", NOW, "-y"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ, NO_COLOR="1"))
    seen: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("done") and "send" in line:
            proc.send_signal(signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=120)
    out = "".join(seen) + rest
    assert proc.returncode == 1, out  # part of the plan did not run
    assert "Stopped by SIGTERM between actions; the skipped actions did not run (exit 1)" in out
    assert "stopped on request" in out
    assert before <= all_snapshots(nas)  # nothing that existed was lost on the way
    nas.reload()
    nas.sleep("send", 0)
    nas.save()
    assert cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")[0] == 0
    code, out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW)
    assert code == 0 and "No changes" in out, out + err
