"""The planner against the stand-in zfs: gather -> plan -> run each action's argv ->
gather again. The gathered world must equal simulate(observed, plan) (names, GUIDs,
bookmarks), and a second plan at the same time must be empty. Hourly rounds exercise
schedule, initial sends, placeholders, -I sends, cursor moves and pruning on both sides.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standin.state import StandinState

from reconciler.config.models import Config
from reconciler.domain.actions import DestroyAction, SendAction, SnapshotAction, snapshot_batch_argv
from reconciler.domain.observed import ObservedState
from reconciler.domain.plan import Plan
from reconciler.gather.facts import gather
from reconciler.planning.planner import make_plan
from reconciler.planning.simulate import simulate
from reconciler.transport.hosts import open_executors
from reconciler.transport.interface import with_zfs_command

START = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def run_plan(plan: Plan, commands: dict[str, list[str]]) -> None:
    """A minimal executor for this test (the product's apply lives in reconciler/execute)."""
    done: set[str] = set()
    for action in plan.actions:
        if isinstance(action, SnapshotAction):
            if action.batch not in done:
                done.add(action.batch)
                batch = [a for a in plan.actions if isinstance(a, SnapshotAction) and a.batch == action.batch]
                _run(with_zfs_command(commands[action.host], snapshot_batch_argv(batch)))
        elif isinstance(action, SendAction):
            send = subprocess.Popen(with_zfs_command(commands[action.host], action.send_argv()),
                                    stdout=subprocess.PIPE)
            recv = subprocess.run(with_zfs_command(commands[action.target_host], action.recv_argv()),
                                  stdin=send.stdout, capture_output=True, text=True, check=False)
            assert send.stdout is not None
            send.stdout.close()
            assert send.wait() == 0 and recv.returncode == 0, (action.describe(), recv.stderr)
        elif isinstance(action, DestroyAction):
            for argv in action.argv_batches():
                _run(with_zfs_command(commands[action.host], argv))
        else:
            _run(with_zfs_command(commands[action.host], action.argv()))


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, (argv, result.stderr)


def shape(observed: ObservedState) -> dict[tuple[str, str], Any]:
    """What must agree between simulation and reality: kinds, snapshot and bookmark names, and
    which of them share a GUID (new GUIDs are random in reality, hashed in the simulation)."""
    labels: dict[int, str] = {}
    for host, facts in sorted(observed.hosts.items()):
        for ds in sorted(facts.datasets.values(), key=lambda d: d.name):
            for snap in ds.snapshots:
                labels.setdefault(snap.guid, f"{host}:{ds.name}@{snap.name}")
            for mark in ds.bookmarks:
                labels.setdefault(mark.guid, f"{host}:{ds.name}#{mark.name}")
    return {(host, ds.name): (ds.kind, [(s.name, labels[s.guid]) for s in ds.snapshots],
                              sorted((b.name, labels[b.guid]) for b in ds.bookmarks), ds.resume_token)
            for host, facts in observed.hosts.items() for ds in facts.datasets.values()}



def gather_all(config: Config, hosts: list[str] | None = None) -> ObservedState:
    """gather() through executors opened (and closed) for the call, as the commands do."""
    with open_executors(config, hosts) as executors:
        return gather(config, executors, hosts)


def assert_matches(gathered: ObservedState, simulated: ObservedState, when: str) -> None:
    """Gathering lists only the subtrees the config touches (the whole host while a root
    is missing): what it shows equals the simulation, the rest exists outside its scope."""
    got, expected = shape(gathered), shape(simulated)
    assert got == {key: value for key, value in expected.items() if key in got}, when
    assert all(gathered.exists(*key) for key in expected if key not in got), when


@pytest.mark.soak  # three hours of real stand-in runs, twice: long
@pytest.mark.parametrize("initial", ["newest", "all"])
def test_hourly_rounds_match_simulation_and_converge(
        standin: Callable[..., StandinState], monkeypatch: pytest.MonkeyPatch, initial: str) -> None:
    t0 = int(START.timestamp())
    nas = standin("nas", seed=3, now=t0)
    backup = standin("backup", seed=4, now=t0)
    for name in ("tank/data", "tank/data/docs", "tank/data/scratch"):
        nas.filesystem(name)
    nas.filesystem("tank/data/vol", kind="volume")
    for i in range(4):
        nas.snapshot("tank/data/docs", f"zrepl_old{i}", creation=t0 - (30 - i) * 3600)
    nas.snapshot("tank/data/docs", "manual", creation=t0 - 20 * 3600)
    nas.snapshot("tank/data/docs", "zrepl_pinned", creation=t0 - 19 * 3600, holds=("pin",))
    nas.save()
    backup.filesystem("pool")
    backup.save()
    config = Config.model_validate({
        "hosts": {"nas": {"connection": "local", "zfs_command": nas.zfs_command},
                  "backup": {"connection": "local", "zfs_command": backup.zfs_command}},
        "policies": {"hourly": {
            "snapshots": {"prefix": "zrepl_", "interval": "1h"},
            "keep_source": [{"type": "last_n", "count": 2, "regex": "^zrepl_"}],
            "keep_target": [{"type": "grid", "grid": "1x1h(keep=all) | 3x1h", "regex": "^zrepl_"}]}},
        "filesystems": [{"host": "nas", "filter": {"tank/data<": True, "tank/data/scratch": False},
                         "policy": "hourly",
                         "replicate_to": [{"host": "backup", "root": "pool/nas", "initial": initial}]}],
    })
    commands = {"nas": nas.zfs_command, "backup": backup.zfs_command}
    for hour in range(3):
        now = START + timedelta(hours=hour)
        monkeypatch.setenv("ZFS_STANDIN_NOW", str(int(now.timestamp())))
        observed = gather_all(config)
        plan = make_plan(config, observed, now)
        assert plan.actions and not plan.conflicts
        run_plan(plan, commands)
        gathered = gather_all(config)
        assert_matches(gathered, simulate(observed, plan), f"hour {hour}")
        again = make_plan(config, gathered, now)
        assert [a.describe() for a in again.actions] == [], f"hour {hour}"
    docs = gather_all(config).dataset("nas", "tank/data/docs")
    assert docs is not None
    names = [s.name for s in docs.snapshots]
    assert "manual" in names and "zrepl_pinned" in names and len(names) == 4


def test_interrupted_receive_is_resumed_then_converges(
        standin: Callable[..., StandinState], monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = int(START.timestamp())
    nas = standin("nas", seed=5, now=t0)
    backup = standin("backup", seed=6, now=t0)
    nas.filesystem("tank/data")
    nas.snapshot("tank/data", "zrepl_first", creation=t0 - 7200, size=50_000)
    nas.save()
    backup.filesystem("pool/nas")
    backup.save()
    config = Config.model_validate({
        "hosts": {"nas": {"connection": "local", "zfs_command": nas.zfs_command},
                  "backup": {"connection": "local", "zfs_command": backup.zfs_command}},
        "policies": {"p": {"snapshots": {"prefix": "zrepl_", "interval": "1h"}}},
        "filesystems": [{"host": "nas", "filter": {"tank/data": True}, "policy": "p",
                         "replicate_to": [{"host": "backup", "root": "pool/nas"}]}],
    })
    commands = {"nas": nas.zfs_command, "backup": backup.zfs_command}
    monkeypatch.setenv("ZFS_STANDIN_NOW", str(t0))
    plan = make_plan(config, gather_all(config), START)
    (send,) = [a for a in plan.actions if isinstance(a, SendAction)]
    for action in plan.actions:
        if isinstance(action, SendAction):
            break
        run_plan(Plan(plan.now, plan.fingerprint, (action,)), commands)
    stream = subprocess.run(with_zfs_command(commands["nas"], send.send_argv()), capture_output=True,
                            check=True).stdout
    cut = subprocess.run(with_zfs_command(commands["backup"], send.recv_argv()), input=stream[:-20],
                         capture_output=True, check=False)
    assert cut.returncode != 0
    observed = gather_all(config)
    target = observed.dataset("backup", "pool/nas/tank/data")
    assert target is not None and target.resume_token
    plan = make_plan(config, observed, START)
    sends = [a for a in plan.actions if isinstance(a, SendAction)]
    assert sends[0].resume_token == target.resume_token and sends[0].base is None
    assert not [a for a in plan.actions if a.kind == "abort_resume"]
    run_plan(plan, commands)
    gathered = gather_all(config)
    assert_matches(gathered, simulate(observed, plan), "resumed")
    assert make_plan(config, gathered, START).actions == ()
