"""Parallel sends (settings.parallel_sends, apply --parallel N): what must stay ordered stays
ordered, failures stay isolated, a stop starts no further send; on the stand-in an apply
with N = 4 converges, and kill -9 at random moments of it loses nothing."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from standin.state import StandinState, locked
from test_apply_cli import NOW, NOW_TS, cli, hourly_history, write_config
from test_apply_kill import KEEP_ALL, THROTTLE, snapshot_guids, wait_for

from reconciler.domain.actions import Action, SendAction
from reconciler.errors import ExecError
from reconciler.execute import apply as apply_module
from reconciler.execute.apply import DONE, SKIPPED, _Applier, same_dataset_dependencies, send_dependencies
from reconciler.execute.progress import NullProgress
from reconciler.transport.pump import TransferResult


def send(source: str, target: str, snapshot: str = "s2", host: str = "nas", target_host: str = "backup",
         base: str | None = "s1") -> SendAction:
    return SendAction(host, source, snapshot, target_host, target, base, (snapshot,))


# --------------------------------------------------------------------------- dependencies

def test_send_dependencies() -> None:
    sends = [
        send("tank/a", "pool/tank/a", base=None),          # 0: a parent's first send
        send("tank/a/b", "pool/tank/a/b", base=None),      # 1: its child: after 0
        send("tank/c", "pool/tank/c", "s2"),               # 2: independent
        send("tank/c", "pool/tank/c", "s3", base="s2"),    # 3: the chain of 2: after 2
        send("tank/c", "off/tank/c", target_host="offsite"),  # 4: same source, other target: free
        send("pool/tank/a", "cold/a", host="backup", target_host="cold"),  # 5: sent on: after 0
        send("tank/a", "pool/tank/a", "s3", base="s2"),    # 6: into a dataset being sent from: after 0, 5
    ]
    assert send_dependencies(sends) == [set(), {0}, set(), {2}, set(), {0}, {0, 5}]


def test_cursor_moves_and_destroys_wait_only_for_their_own_dataset() -> None:
    from reconciler.domain.actions import DestroyAction

    destroys = [DestroyAction("nas", "tank/a", ("s1",)), DestroyAction("nas", "tank/b", ("s1",)),
                DestroyAction("nas", "tank/a", ("#c1",)), DestroyAction("backup", "tank/a", ("s1",))]
    assert same_dataset_dependencies(destroys) == [set(), set(), {0}, set()]


# --------------------------------------------------------------------------- the send phase

class FakeSends:
    """Stands in for run_send: records starts and ends, holds the first ``hold`` sends at a
    barrier (they can only pass it together: proof that they ran at the same time)."""

    def __init__(self, hold: int, fail: set[str] | None = None) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str]] = []
        self.barrier = threading.Barrier(hold, timeout=20) if hold > 1 else None
        self.held = 0
        self.hold = hold
        self.fail = fail or set()
        self.running = 0
        self.most = 0

    def __call__(self, action: SendAction, executors: Mapping[str, Any], **_: Any) -> TransferResult:
        with self.lock:
            self.events.append(("start", action.target_dataset))
            self.running += 1
            self.most = max(self.most, self.running)
            wait = self.barrier is not None and self.held < self.hold
            self.held += 1
        if wait:
            assert self.barrier is not None
            self.barrier.wait()
        with self.lock:
            self.running -= 1
            self.events.append(("end", action.target_dataset))
        if action.target_dataset in self.fail:
            raise ExecError("cannot receive: injected", code="command_failed")
        return TransferResult(10, 0.01, 0, 0, "", "")

    def index(self, event: str, dataset: str) -> int:
        return self.events.index((event, dataset))


def run_phase(monkeypatch: pytest.MonkeyPatch, fake: FakeSends, sends: list[SendAction], parallel: int,
              stop: threading.Event | None = None) -> Any:
    monkeypatch.setattr(apply_module, "run_send", fake)
    monkeypatch.setattr(apply_module, "snapshot_written", lambda *a, **k: {})
    executors: dict[str, Any] = {"nas": None, "backup": None, "offsite": None, "cold": None}
    config: Any = None  # only destroys read the configuration
    applier = _Applier(config, executors, NullProgress(), stop, None, parallel)
    return applier.run(list[Action](sends))


def test_independent_sends_run_together_up_to_n(monkeypatch: pytest.MonkeyPatch) -> None:
    sends = [send(f"tank/fs{i}", f"pool/tank/fs{i}") for i in range(8)]
    fake = FakeSends(hold=4)
    report = run_phase(monkeypatch, fake, sends, 4)
    assert [o.status for o in report.outcomes] == [DONE] * 8
    assert fake.most == 4  # the first four met at the barrier; never more than four


def test_ordering_holds_under_parallel_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    sends = [send("tank/a", "pool/tank/a", base=None), send("tank/a/b", "pool/tank/a/b", base=None),
             send("tank/c", "pool/tank/c"), send("tank/c", "pool/tank/c", "s3", base="s2"),
             send("tank/d", "pool/tank/d")]
    fake = FakeSends(hold=3)  # 0, 2 and 4 start together; 1 and 3 wait for their predecessors
    report = run_phase(monkeypatch, fake, sends, 4)
    assert all(o.status == DONE for o in report.outcomes)
    assert fake.index("end", "pool/tank/a") < fake.index("start", "pool/tank/a/b")
    starts = [d for e, d in fake.events if e == "start"]
    ends = [d for e, d in fake.events if e == "end"]
    assert starts.count("pool/tank/c") == 2 and ends.index("pool/tank/c") < len(ends)
    first_c_end = fake.events.index(("end", "pool/tank/c"))
    second_c_start = [i for i, ev in enumerate(fake.events) if ev == ("start", "pool/tank/c")][1]
    assert first_c_end < second_c_start


def test_a_failed_send_skips_only_what_depends_on_it(monkeypatch: pytest.MonkeyPatch) -> None:
    sends = [send("tank/a", "pool/tank/a", base=None), send("tank/a/b", "pool/tank/a/b", base=None),
             send("tank/c", "pool/tank/c")]
    report = run_phase(monkeypatch, FakeSends(hold=1, fail={"pool/tank/a"}), sends, 4)
    status = {o.action.target_dataset: o.status for o in report.outcomes if isinstance(o.action, SendAction)}
    assert status == {"pool/tank/a": "failed", "pool/tank/a/b": SKIPPED, "pool/tank/c": DONE}


def test_cursor_moves_after_parallel_sends_skip_only_the_failed_filesystems(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.domain.actions import BookmarkAction
    from reconciler.transport.interface import CommandResult

    class Ok:
        def __init__(self) -> None:
            self.calls: list[list[str]] = []

        def run(self, argv: list[str], **_: Any) -> CommandResult:
            self.calls.append(list(argv))
            return CommandResult(tuple(argv), 0, "", "")

    nas = Ok()
    monkeypatch.setattr(apply_module, "run_send", FakeSends(hold=1, fail={"pool/tank/a"}))
    monkeypatch.setattr(apply_module, "snapshot_written", lambda *a, **k: {})
    executors: dict[str, Any] = {"nas": nas, "backup": Ok()}
    config: Any = None
    actions: list[Action] = [send("tank/a", "pool/tank/a"), send("tank/c", "pool/tank/c"),
                             *(BookmarkAction("nas", ds, "s2", "cursor") for ds in ("tank/a", "tank/c"))]
    report = _Applier(config, executors, NullProgress(), None, None, 4).run(actions)
    status = {(o.action.kind, o.action.dataset): o.status for o in report.outcomes}
    assert status == {("send", "tank/a"): "failed", ("send", "tank/c"): DONE,
                      ("bookmark", "tank/a"): SKIPPED, ("bookmark", "tank/c"): DONE}
    assert nas.calls == [["zfs", "bookmark", "tank/c@s2", "tank/c#cursor"]]


def test_a_stop_request_starts_no_further_send(monkeypatch: pytest.MonkeyPatch) -> None:
    stop = threading.Event()
    sends = [send(f"tank/fs{i}", f"pool/tank/fs{i}") for i in range(6)]

    class Stopping(FakeSends):
        def __call__(self, action: SendAction, executors: Mapping[str, Any], **kw: Any) -> TransferResult:
            result = super().__call__(action, executors, **kw)  # both running ones met first
            stop.set()  # before either ends: no free slot is filled after this
            return result

    fake = Stopping(hold=2)
    report = run_phase(monkeypatch, fake, sends, 2, stop)
    assert report.stopped
    assert [o.status for o in report.outcomes].count(DONE) == 2  # the two already running finished
    assert [o.status for o in report.outcomes].count(SKIPPED) == 4


# --------------------------------------------------------------------------- on the stand-in

def eight_filesystems(tmp_path: Path, standin: Callable[..., StandinState], size: int = 4096,
                      zfs_wrapper: list[str] | None = None) -> tuple[Path, StandinState, StandinState]:
    nas = standin("nas", seed=41)
    for name in ("tank/a", "tank/a/x", "tank/a/y", "tank/b", "tank/b/z", "tank/c", "tank/d", "tank/e"):
        nas.filesystem(name)
        hourly_history(nas, name, 4, size=size)
    nas.save()
    backup = standin("backup", seed=42)
    backup.filesystem("pool")
    backup.save()
    config = write_config(tmp_path / "c.yml",
                          {"nas": nas.zfs_command, "backup": [*(zfs_wrapper or []), *backup.zfs_command]},
                          [{"host": "nas", "filter": {"tank<": True}, "policy": "keep",
                            "replicate_to": [{"host": "backup", "root": "pool/nas", "initial": "all"}]}],
                          {"keep": KEEP_ALL})
    return config, nas, backup


def converged(capsys: pytest.CaptureFixture[str], config: Path, nas: StandinState, backup: StandinState,
              before: dict[str, set[int]]) -> None:
    code, out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW, "--detailed-exitcode")
    assert code == 0 and "No changes" in out, out + err
    after, replicated = snapshot_guids(nas), snapshot_guids(backup)
    for dataset, guids in before.items():
        if dataset == "tank":
            continue
        assert guids <= after[dataset], f"snapshots of {dataset} lost"
        assert after[dataset] == replicated[f"pool/nas/{dataset}"], dataset


def test_parallel_apply_of_eight_filesystems_converges(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    config, nas, backup = eight_filesystems(tmp_path, standin)
    before = snapshot_guids(nas)
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y", "--parallel", "4")
    assert code == 0, out + err
    # Not a terminal: one whole line per event, never two threads' text in one line.
    events = [line for line in err.splitlines() if line.startswith(("done ", "failed ", "skipped "))]
    assert len(events) >= 8 + 8  # every send and every cursor move, at least
    assert all(line.count("done ") == 1 and line.count(" send ") <= 1 for line in events), events
    converged(capsys, config, nas, backup, before)


def test_run_once_with_parallel_sends_from_settings_converges(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    config, nas, backup = eight_filesystems(tmp_path, standin)
    data = json.loads(config.read_text(encoding="utf-8"))
    data["settings"] = {"parallel_sends": 4}
    config.write_text(json.dumps(data), encoding="utf-8")
    before = snapshot_guids(nas)
    code, out, err = cli(capsys, "run", "--once", "-c", str(config), "--now", NOW)
    assert code == 0, out + err
    converged(capsys, config, nas, backup, before)


def test_parallel_sends_from_settings_and_the_flag_is_checked(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    config, _nas, _backup = eight_filesystems(tmp_path, standin)
    with pytest.raises(SystemExit):
        cli(capsys, "apply", "-c", str(config), "--parallel", "0")
    assert "not a whole number from 1 to 64" in capsys.readouterr().err


@pytest.mark.soak  # the fast suite kills an apply in tests/test_apply_kill.py
@pytest.mark.parametrize("moments", [pytest.param(20, id="20-moments")])
def test_kill_9_at_random_moments_of_a_parallel_apply_then_it_converges(
        moments: int, tmp_path: Path, standin: Callable[..., StandinState],
        capsys: pytest.CaptureFixture[str]) -> None:
    """kill -9 at random moments of `apply --parallel 4` (each next apply resumes what the
    last one left: tokens, placeholders, half-moved cursors), then one apply converges: 20
    moments, in the soak suite (KILL_SEED picks them).

    A moment is counted in the apply's own events, not in time from its start: after a
    random one of its planned actions ended, and a little later, so it lands inside the
    apply (a send, a cursor move, a release) however busy the machine is; a blind sleep
    from the start lands in the CLI's start-up when the machine is loaded, and proves
    nothing. kill -9 does not stop the zfs commands the apply had started: the test waits
    for the orphaned receives (they save their resume state), and lets the other orphans
    (holds, cursor moves, releases) race the next apply, as they would in life; each is
    done by whichever lands second (``made_meanwhile``, the holds' "already so"). When the
    kills so far let the apply converge, every filesystem gets one more snapshot, so each
    of the 20 moments interrupts real work."""
    throttled = [sys.executable, "-c", THROTTLE]
    config, nas, backup = eight_filesystems(tmp_path, standin, size=1 << 20, zfs_wrapper=throttled)
    before = snapshot_guids(nas)
    rng = random.Random(int(os.environ.get("KILL_SEED", "17")))
    for moment in range(moments):
        actions = planned_actions(capsys, config)
        if not actions:  # converged before the moments ran out: new snapshots to send
            more_snapshots(nas, f"more_{moment}")
            actions = planned_actions(capsys, config)
        # Skewed towards the start (a quarter of the work on average), so that 20 kills
        # still leave work to each other; a late moment still comes about one time in five.
        kill_after_events(config, 1 + int(actions * rng.random() ** 3), rng.uniform(0.0, 0.2))
        # Orphaned receivers notice the dead controller and save their state.
        wait_for(lambda: not receivers_running(backup), 60, "the orphaned receives to end")
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y", "--parallel", "4")
    assert code == 0, out + err
    converged(capsys, config, nas, backup, before)


def more_snapshots(nas: StandinState, name: str) -> None:
    """A new snapshot of every filesystem (under the stand-in's lock: orphans may write)."""
    with locked(nas.path or ""):
        nas.reload()
        for dataset in nas.datasets:
            if dataset.startswith("tank/"):
                nas.snapshot(dataset, name, creation=NOW_TS - 60, size=1 << 20)
        nas.save()


def planned_actions(capsys: pytest.CaptureFixture[str], config: Path) -> int:
    code, out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW, "--format", "json")
    assert code == 0, out + err
    return len(json.loads(out)["actions"])


def kill_after_events(config: Path, events: int, later: float) -> None:
    """Run ``apply --parallel 4``; kill -9 it ``later`` seconds after its ``events``-th event
    line (an action ended: "done", "failed" or "skipped"), or let it end first."""
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "apply", "-c", str(config),
                             "--now", NOW, "-y", "--parallel", "4"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    assert proc.stderr is not None
    try:
        seen = 0
        for line in proc.stderr:
            seen += line.startswith(("done ", "failed ", "skipped "))
            if seen >= events:
                break
        time.sleep(later)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()


def receivers_running(backup: StandinState) -> bool:
    """Whether a stand-in ``zfs recv`` on this state file is still alive."""
    marker = str(backup.path)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in cmdline]
        if marker in words and "recv" in words:
            return True
    return False

