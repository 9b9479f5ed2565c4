"""Per-host runs of one configuration at the same time converge without acting on the same
dataset (``--as``; the model is in reconciler/planning/selection.py).

Three stand-in hosts: alpha and beta replicate to each other and, under one shared root
(so both need the same placeholders), to vault, which only receives. Each round all three
runs (``--as alpha``, ``--as beta``, ``--as vault``) plan and apply concurrently, an hour
after the previous round (new snapshots, sends, pruning on both sides). Every round:
nothing failed or was skipped, the zfs commands that changed something (tagged by the
stand-in with the run that issued them) changed disjoint datasets (except the shared
placeholders, which either run may create), and the unrestricted plan is empty.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from standin.state import StandinState, read_tagged_log

from reconciler import api
from reconciler.config.models import Config, LocalHost
from reconciler.domain.actions import CreateAction
from reconciler.domain.plan import Plan
from reconciler.execute.apply import ApplyReport
from reconciler.transport.local import LocalExecutor

NOW_TS = 1_764_000_000  # conftest.NOW
HOUR = 3600
RUNS = ("alpha", "beta", "vault")
POLICY: dict[str, Any] = {
    "snapshots": {"prefix": "zrepl_", "interval": "1h"},
    "keep_source": [{"type": "not_replicated"},
                    {"type": "grid", "grid": "1x1h(keep=all) | 6x1h | 2x1d", "regex": "^zrepl_"}],
    "keep_target": [{"type": "grid", "grid": "1x1h(keep=all) | 3x1h | 1x1d", "regex": "^zrepl_"}],
}


def stamp(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%d_%H%M%S")


def fleet(tmp_path: Path, standin: Callable[..., StandinState]) -> tuple[Path, dict[str, StandinState]]:
    hosts: dict[str, StandinState] = {}
    for seed, (name, datasets) in enumerate((("alpha", ["tank/a", "tank/a/x"]),
                                              ("beta", ["tank/b", "tank/b/y"]), ("vault", []))):
        st = standin(name, seed=10 + seed)
        st.filesystem("backup" if name != "vault" else "pool")
        for ds in datasets:
            st.filesystem(ds)
            for h in range(30, 1, -1):
                st.snapshot(ds, "zrepl_" + stamp(NOW_TS - h * HOUR), creation=NOW_TS - h * HOUR, size=4096)
        st.save()
        hosts[name] = st
    config = {
        "hosts": {name: {"connection": "local", "zfs_command": st.zfs_command} for name, st in hosts.items()},
        "policies": {"hourly": POLICY},
        "filesystems": [
            {"host": "alpha", "filter": {"tank/a<": True}, "policy": "hourly",
             "replicate_to": [{"host": "beta", "root": "backup/alpha"},
                              {"host": "vault", "root": "pool/fleet"}]},
            {"host": "beta", "filter": {"tank/b<": True}, "policy": "hourly",
             "replicate_to": [{"host": "alpha", "root": "backup/beta"},
                              {"host": "vault", "root": "pool/fleet"}]},
        ],
    }
    path = tmp_path / "zrepl-reconcile.yml"
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")
    return path, hosts


def changed_datasets(argv: list[str]) -> list[tuple[str, bool]]:
    """(dataset, is a create) for each dataset a stand-in zfs invocation changed."""
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command in ("create", "recv", "receive"):
        return [(rest[-1], command == "create")]
    if command in ("snapshot", "snap", "destroy", "bookmark", "hold", "release"):
        refs = [word for word in rest if "@" in word or "#" in word]
        if command == "bookmark":
            refs = refs[-1:]
        return [(ref.split("@")[0].split("#")[0], False) for ref in refs]
    return []  # list, get, holds, send: they read


def changes_by_run(hosts: dict[str, StandinState]) -> dict[str, set[tuple[str, str, bool]]]:
    by_run: dict[str, set[tuple[str, str, bool]]] = {}
    for host, st in hosts.items():
        assert st.path is not None
        for tag, argv in read_tagged_log(st.path):
            by_run.setdefault(tag, set()).update((host, ds, create) for ds, create in changed_datasets(argv))
        Path(f"{st.path}.tags.log").unlink(missing_ok=True)
    return by_run


def assert_disjoint(by_run: dict[str, set[tuple[str, str, bool]]], config: Config) -> None:
    seen: dict[tuple[str, str], str] = {}
    for run, changes in sorted(by_run.items()):
        for host, dataset, create in sorted(changes):
            first = seen.setdefault((host, dataset), run)
            if first != run:
                assert create and config.role_of(host, dataset) is None, (
                    f"{first} and {run} both changed {host}:{dataset}")


def tagged_executors(config: Config, run: str, clock: int) -> dict[str, LocalExecutor]:
    """What ``--as run`` opens (every host here is a local stand-in), its commands tagged."""
    executors = {}
    for name, host in config.hosts.items():
        assert isinstance(host, LocalHost)
        executors[name] = LocalExecutor(name, ["env", f"ZFS_STANDIN_TAG={run}", f"ZFS_STANDIN_NOW={clock}",
                                               *host.zfs_command], host.command_timeout)
    return executors


@pytest.mark.soak  # long: CI runs it in the soak suite (tests/run), not the fast one
def test_concurrent_per_host_runs_converge_without_sharing_a_dataset(
        tmp_path: Path, standin: Callable[..., StandinState]) -> None:
    path, hosts = fleet(tmp_path, standin)
    config = api.load(path)
    start = datetime.fromtimestamp(NOW_TS, UTC)
    for round_ in range(3):
        now = start + timedelta(hours=round_)
        results: dict[str, tuple[Plan, ApplyReport]] = {}
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(RUNS))

        def one_run(run: str, now: datetime = now, barrier: threading.Barrier = barrier,
                    results: dict[str, tuple[Plan, ApplyReport]] = results,
                    errors: list[BaseException] = errors) -> None:
            try:
                executors = tagged_executors(config, run, int(now.timestamp()))
                barrier.wait(30)
                plan = api.plan(config, as_host=run, now=now, executors=executors)
                results[run] = plan, api.apply(plan, config, executors)
            except BaseException as exc:  # reported below, with the run's name
                errors.append(exc)

        threads = [threading.Thread(target=one_run, args=(run,), name=f"run-{run}") for run in RUNS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        for run, (plan, report) in results.items():
            assert report.ok and not report.skipped, (run, [o.line() for o in report.outcomes])
            assert not plan.conflicts, (run, plan.conflicts)
        assert results["vault"][0].actions == ()
        if round_ == 0:  # the first round sends everything: both need the shared placeholders
            for run in ("alpha", "beta"):
                assert {a.dataset for a in results[run][0].actions if isinstance(a, CreateAction)} >= {
                    "pool/fleet", "pool/fleet/tank"}
        assert_disjoint(changes_by_run(hosts), config)
        whole = api.plan(config, now=now)
        assert [a.describe() for a in whole.actions] == [], f"round {round_}"
        assert not whole.conflicts
    vault = hosts["vault"].reload()
    assert {"pool/fleet/tank/a/x", "pool/fleet/tank/b/y"} <= set(vault.datasets)


@pytest.mark.fleet
def test_concurrent_run_once_processes_as_each_host_converge(
        tmp_path: Path, standin: Callable[..., StandinState]) -> None:
    """The same as the systemd units of a fleet run it: ``run --once --as HOST`` processes,
    each with its own copy of the configuration (its own machine's file and lock)."""
    path, hosts = fleet(tmp_path, standin)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "NO_COLOR": "1"}
    for round_ in range(3):
        clock = NOW_TS + round_ * HOUR
        now = datetime.fromtimestamp(clock, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        procs = {}
        for run in RUNS:
            copy = tmp_path / f"{run}.yml"
            shutil.copyfile(path, copy)
            procs[run] = subprocess.Popen(
                [sys.executable, "-m", "reconciler.cli", "run", "--once", "--as", run, "-c", str(copy),
                 "--now", now], env={**env, "ZFS_STANDIN_TAG": run, "ZFS_STANDIN_NOW": str(clock)},
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for run, proc in procs.items():
            out, _ = proc.communicate(timeout=180)
            assert proc.returncode == 0, f"{run}:\n{out}"
            assert " 0 failed, 0 skipped" in out or "No changes" in out or "0 to " in out, f"{run}:\n{out}"
        assert_disjoint(changes_by_run(hosts), api.load(path))
        check = subprocess.run([sys.executable, "-m", "reconciler.cli", "plan", "-c", str(path), "--now", now,
                                "--detailed-exitcode"], env=env, capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "No changes" in check.stdout


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from reconciler.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_as_on_the_command_line(tmp_path: Path, standin: Callable[..., StandinState],
                                capsys: pytest.CaptureFixture[str]) -> None:
    path, hosts = fleet(tmp_path, standin)
    now = datetime.fromtimestamp(NOW_TS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, out, err = cli(capsys, "plan", "-c", str(path), "--as", "vault", "--now", now,
                         "--detailed-exitcode")
    assert code == 0, out + err
    assert "No changes" in out and "vault is the source of no filesystems entry" in out
    code, out, err = cli(capsys, "plan", "-c", str(path), "--as", "alpha", "--host", "beta")
    assert code == 1 and "--as alpha and --host exclude each other" in err
    saved = tmp_path / "alpha-plan.json"
    code, out, err = cli(capsys, "plan", "-c", str(path), "--as", "alpha", "--now", now, "--out", str(saved),
                         "--detailed-exitcode")
    assert code == 2, out + err
    assert json.loads(saved.read_text())["selection"]["as"] == "alpha"
    assert "backup/beta" not in out  # beta's sends into alpha are beta's part
    code, out, err = cli(capsys, "apply", "-c", str(path), "--plan", str(saved), "--as", "beta", "-y")
    assert code == 1 and "--as beta differs from the selection the plan was computed for (--as alpha)" in err
    code, out, err = cli(capsys, "apply", "-c", str(path), "--plan", str(saved), "-y")
    assert code == 0 and " 0 failed" in out, out + err
    assert "pool/fleet/tank/a" in hosts["vault"].reload().datasets
    assert "pool/fleet/tank/b" not in hosts["vault"].datasets
    code, out, err = cli(capsys, "plan", "-c", str(path), "--as", "alpha", "--now", now,
                         "--detailed-exitcode")
    assert code == 0 and "No changes" in out, out + err
