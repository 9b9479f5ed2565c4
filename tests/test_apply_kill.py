"""kill -9 of apply in the middle of a send: the next plan + apply resume and converge, and
no snapshot that existed before is lost."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from standin.state import StandinState, read_log
from test_apply_cli import NOW, hourly_history, write_config

import reconciler.transport.local
from reconciler.cli import main
from reconciler.execute import apply as apply_module
from reconciler.execute.apply import run_zfs
from reconciler.execute.channel import run_program

# Wraps the target's zfs: a ``recv`` gets its stream at ~4 MiB/s, so a send of a few
# dozen MiB is still running when the test kills apply; every other command runs as is.
THROTTLE = """
import os, subprocess, sys, time
argv = sys.argv[1:]
if "recv" not in argv:
    os.execvp(argv[0], argv)
child = subprocess.Popen(argv, stdin=subprocess.PIPE)
src = sys.stdin.buffer.raw
try:
    while chunk := src.read(65536):
        child.stdin.write(chunk)
        time.sleep(0.015)
    child.stdin.close()
except BrokenPipeError:
    pass
sys.exit(child.wait())
"""

KEEP_ALL = {
    "snapshots": {"prefix": "zrepl_", "interval": "1h"},
    "keep_source": [{"type": "not_replicated"}, {"type": "last_n", "count": 100}],
    "keep_target": [{"type": "last_n", "count": 100}],
}


def snapshot_guids(st: StandinState) -> dict[str, set[int]]:
    st.reload()
    return {name: {s["guid"] for s in ds["snapshots"]} for name, ds in st.datasets.items()}


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_during_send_then_apply_resumes_and_converges(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    nas = standin("nas", seed=31)
    nas.filesystem("tank/big")
    hourly_history(nas, "tank/big", 4, size=16 * 2**20)
    nas.filesystem("tank/small")
    hourly_history(nas, "tank/small", 3)
    nas.save()
    backup = standin("backup", seed=32)
    backup.filesystem("pool")
    backup.save()
    throttled = [sys.executable, "-c", THROTTLE, *backup.zfs_command]
    config = write_config(tmp_path / "c.yml", {"nas": nas.zfs_command, "backup": throttled},
                          [{"host": "nas", "filter": {"tank<": True}, "policy": "keep",
                            "replicate_to": [{"host": "backup", "root": "pool/nas", "initial": "all"}]}],
                          {"keep": KEEP_ALL})
    before = snapshot_guids(nas)

    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "apply", "-c", str(config),
                             "--now", NOW, "-y"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ))
    try:
        def receiving_big() -> bool:
            return any(argv[:1] == ["recv"] and "pool/nas/tank/big" in argv[-1]
                       for argv in read_log(backup.path or ""))

        wait_for(receiving_big, 60, "the send of tank/big to start")
        time.sleep(1.0)
        assert proc.poll() is None, "apply finished before it could be killed; make the send slower"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The orphaned zfs processes notice the dead controller (broken pipe / EOF) and the
    # resumable receive saves its state.
    wait_for(lambda: any(ds.get("resume_token") for ds in backup.reload().datasets.values()), 30,
             "the interrupted receive to leave a resume token")

    # The rest needs no throttle (same stand-in state, plain zfs_command).
    write_config(config, {"nas": nas.zfs_command, "backup": backup.zfs_command},
                 [{"host": "nas", "filter": {"tank<": True}, "policy": "keep",
                   "replicate_to": [{"host": "backup", "root": "pool/nas", "initial": "all"}]}],
                 {"keep": KEEP_ALL})
    plan_file = tmp_path / "plan.json"
    assert main(["plan", "-c", str(config), "--now", NOW, "--out", str(plan_file)]) == 0
    capsys.readouterr()
    sends = [a for a in json.loads(plan_file.read_text())["actions"] if a["kind"] == "send"]
    assert any(a["resume_token"] for a in sends), sends

    code = main(["apply", "-c", str(config), "--plan", str(plan_file), "-y"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "resume send" in out
    assert main(["plan", "-c", str(config), "--now", NOW]) == 0
    assert "No changes" in capsys.readouterr().out

    after = snapshot_guids(nas)
    for dataset, guids in before.items():
        assert guids <= after[dataset], f"snapshots of {dataset} lost"
    replicated = snapshot_guids(backup)
    for dataset in ("tank/big", "tank/small"):
        assert before[dataset] <= replicated[f"pool/nas/{dataset}"]


@pytest.mark.parametrize("next_path", ["per_command", "channel_program"])
def test_a_killed_applys_cursor_move_that_lands_during_the_next_apply_is_no_failure(
        next_path: str, tmp_path: Path, standin: Callable[..., StandinState],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 does not stop the zfs commands apply had started: an orphaned ``zfs bookmark``
    (a cursor move) can land after the next apply listed the source and before that apply
    makes the same bookmark. The bookmark then exists and marks the same snapshot: the
    state the action wanted, so it is done, as an orphaned hold or placeholder is, not a
    failure that needs one more apply. The order is forced: the test holds the source
    stand-in's lock, so the killed apply's cursor moves wait for it, and lets them through
    when the next apply, which listed the source before, makes its first cursor move. The
    killed apply moves its cursors one command each (``channel_programs: off``: whether its
    process is root must not matter); the next one either way (``next_path``): a channel
    program's EEXIST for a bookmark is checked the same way."""
    nas = standin("nas", seed=33)
    for name in ("tank/a", "tank/b"):
        nas.filesystem(name)
        hourly_history(nas, name, 3)
    nas.save()
    backup = standin("backup", seed=34)
    backup.filesystem("pool")
    backup.save()
    def configured(name: str, channel: str) -> Path:
        nas_host = {"connection": "local", "zfs_command": nas.zfs_command, "channel_programs": channel}
        return write_config(tmp_path / name, {"nas": nas_host, "backup": backup.zfs_command},
                            [{"host": "nas", "filter": {"tank/a": True, "tank/b": True}, "policy": "keep",
                              "replicate_to": [{"host": "backup", "root": "pool/nas", "initial": "all"}]}],
                            {"keep": KEEP_ALL})

    killed_config = configured("killed.yml", "off")
    config = configured("c.yml", "off" if next_path == "per_command" else "auto")
    before = snapshot_guids(nas)
    lock = open(f"{nas.path}.lock", "a+")  # noqa: SIM115 (held across the kill, closed below)
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "apply", "-c", str(killed_config),
                             "--now", NOW, "-y", "--parallel", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def started(command: str, count: int) -> Callable[[], bool]:
            return lambda: sum(argv[:1] == [command] for argv in read_log(nas.path or "")) >= count

        # The source's holds are in once its sends began; its cursor moves then wait for us.
        wait_for(started("send", 1), 60, "the sends to start")
        fcntl.flock(lock, fcntl.LOCK_EX)
        wait_for(started("bookmark", 2), 60, "the cursor moves to start")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    try:
        def let_the_orphans_land() -> None:
            if not lock.closed:  # the next apply's first action, after its listing
                fcntl.flock(lock, fcntl.LOCK_UN)
                lock.close()
                wait_for(lambda: all(ds["bookmarks"] for name, ds in nas.reload().datasets.items()
                                     if name.startswith("tank/")), 30, "the orphaned cursor moves")

        def orphans_land_first(executor: Any, argv: list[str], what: str) -> None:
            let_the_orphans_land()
            run_zfs(executor, argv, what)

        def orphans_land_before_the_program(executor: Any, pool: str, ops: Any) -> Any:
            let_the_orphans_land()
            return run_program(executor, pool, ops)

        monkeypatch.setattr(apply_module, "run_zfs", orphans_land_first)
        monkeypatch.setattr(apply_module, "run_program", orphans_land_before_the_program)
        as_root = next_path != "per_command"
        monkeypatch.setattr(reconciler.transport.local, "controller_is_root", lambda: as_root)
        code = main(["apply", "-c", str(config), "--now", NOW, "-y"])
        out, err = capsys.readouterr()
    finally:
        lock.close()
    assert code == 0, out + err
    # Made twice each (the orphans', then the next apply's, which found them made and done).
    log = read_log(nas.path or "")
    if next_path == "per_command":
        assert sum(argv[:1] == ["bookmark"] for argv in log) == 4
    else:
        assert sum(argv[:1] == ["bookmark"] for argv in log) == 2
        assert sum(argv[:1] == ["program"] for argv in log) == 1
    assert err.count("done    bookmark ") == 2, err
    assert main(["plan", "-c", str(config), "--now", NOW]) == 0
    assert "No changes" in capsys.readouterr().out
    after = snapshot_guids(nas)
    for dataset in ("tank/a", "tank/b"):
        assert before[dataset] <= after[dataset]
        assert after[dataset] == snapshot_guids(backup)[f"pool/nas/{dataset}"]
