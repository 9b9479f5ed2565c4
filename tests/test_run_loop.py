"""``zrepl-reconcile run``: the reconcile loop, clean stop on SIGTERM, failing cycles survive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from standin.state import StandinState
from test_apply_cli import NOW, hourly_history, write_config

from reconciler.cli import main


@pytest.fixture
def loop_config(tmp_path: Path,
                standin: Callable[..., StandinState]) -> tuple[Path, StandinState, StandinState]:
    nas = standin("nas", seed=11)
    for ds in ("tank/a", "tank/b"):
        nas.filesystem(ds)
        hourly_history(nas, ds, 6)
    nas.save()
    backup = standin("backup", seed=12)
    backup.filesystem("pool")
    backup.save()
    config = write_config(tmp_path / "loop.yml", {"nas": nas.zfs_command, "backup": backup.zfs_command},
                          [{"host": "nas", "filter": {"tank<": True}, "policy": "hourly",
                            "replicate_to": [{"host": "backup", "root": "pool/nas"}]}])
    return config, nas, backup


def start_loop(config: Path, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "-c", str(config), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 60.0) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not seen; output:\n" + "\n".join(lines))


def test_once_runs_one_cycle_and_converges(loop_config: tuple[Path, StandinState, StandinState],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    config, _nas, _backup = loop_config
    assert main(["run", "--once", "-c", str(config), "--now", NOW]) == 0
    out = capsys.readouterr().out
    assert "cycle 1: reconciling" in out and "Apply: " in out
    assert main(["plan", "-c", str(config), "--now", NOW]) == 0
    assert "No changes" in capsys.readouterr().out


def test_sigterm_stops_between_actions_and_exits_0(
        loop_config: tuple[Path, StandinState, StandinState]) -> None:
    config, nas, backup = loop_config
    nas.reload()
    nas.sleep("send", 1.5)  # each send (and its -nP estimate) takes a while: time to signal
    nas.save()
    proc = start_loop(config, "--every", "1h")
    try:
        read_until(proc, "done    create snapshot")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "stopped by SIGTERM" in out
    assert "stopped on request before this action" in out
    assert "Traceback" not in out
    # What ran, ran completely: every snapshot on the backup is complete (no partial state).
    backup.reload()
    assert all(ds.get("partial") is None and ds.get("resume_token") is None
               for ds in backup.datasets.values())


def test_a_failing_cycle_is_logged_and_the_loop_continues(
        loop_config: tuple[Path, StandinState, StandinState]) -> None:
    from reconciler.execute.lock import ConfigLock

    config, _nas, _backup = loop_config
    lock = ConfigLock(config)
    lock.acquire()  # cycle 1 finds the config locked, as if an apply were running
    proc = start_loop(config, "--every", "1s")
    try:
        lines = read_until(proc, "cycle 1 failed")
        assert any(f"PID {os.getpid()}" in line for line in lines)
        lock.release()
        read_until(proc, "cycle 2 done")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        lock.release()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "stopped by SIGINT" in out


def test_bad_interval_is_a_usage_error(loop_config: tuple[Path, StandinState, StandinState],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    config, _nas, _backup = loop_config
    assert main(["run", "-c", str(config), "--every", "soon"]) == 1
    assert "--every" in capsys.readouterr().err


def test_systemd_unit_runs_the_loop() -> None:
    unit = (Path(__file__).parent.parent / "playbooks" / "systemd" / "zrepl-reconcile.service").read_text()
    assert "Type=notify" in unit and "Restart=on-failure" in unit  # test_run_operate checks the rest
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert " run " in exec_start and "--every" in exec_start
