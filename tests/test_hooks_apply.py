"""Running snapshot hooks: order (pre, snapshot, post), timeouts, err_is_fatal, post after a
failed pre, stop requests, the environment; with fake executors, then through the CLI on
stand-in hosts with real hook programs, locally and over the loopback sshd."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fixtures_sshd import SshServer
from standin.state import StandinState
from test_apply_cli import NOW, cli, hourly_history, write_config
from test_apply_unit import FakeExecutor, make_config, plan_of, send

from reconciler.codes import HostProblem
from reconciler.config.models import SshHost
from reconciler.domain.actions import (
    Action,
    BookmarkAction,
    DestroyAction,
    PostHookAction,
    PreHookAction,
    SnapshotAction,
)
from reconciler.domain.plan import Plan
from reconciler.errors import ExecError, TransportError
from reconciler.execute.apply import DONE, FAILED, SKIPPED, ApplyReport, apply_plan
from reconciler.transport.interface import CommandResult
from reconciler.transport.local import LocalExecutor
from reconciler.transport.ssh import SshExecutor

SNAP = "zrepl_2"


class HookHost(FakeExecutor):
    """A fake host that also runs hooks: ``hook_exit`` maps a hook's first word (or
    ``word@dataset``) to its exit status, or to "timeout" / "down" (a TransportError)."""

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.hook_exit: dict[str, int | str] = {}
        self.envs: list[dict[str, str]] = []
        self.on_hook: Callable[[], None] = lambda: None

    def run_hook(self, argv: Sequence[str], env: Mapping[str, str], timeout: float) -> CommandResult:
        self.calls.append(["hook", *argv])
        self.envs.append(dict(env))
        self.on_hook()
        outcome = self.hook_exit.get(f"{argv[0]}@{env['ZREPL_RECONCILE_FS']}", self.hook_exit.get(argv[0], 0))
        if outcome == "timeout":
            raise TransportError(self.host, HostProblem.TIMEOUT, f"hook timed out after {timeout:g}s")
        if outcome == "down":
            raise TransportError(self.host, HostProblem.UNREACHABLE, "connection lost")
        assert isinstance(outcome, int)
        return CommandResult(tuple(argv), outcome, "", "frozen solid\n" if outcome else "")


def pre(dataset: str, hook: int, *, fatal: bool = False) -> PreHookAction:
    return PreHookAction("nas", dataset, SNAP, hook, (f"/pre{hook}", "--x"), 30, err_is_fatal=fatal)


def post(dataset: str, hook: int) -> PostHookAction:
    return PostHookAction("nas", dataset, SNAP, hook, (f"/post{hook}",), 30)


def snap(dataset: str, batch: str | None = None) -> SnapshotAction:
    return SnapshotAction("nas", dataset, SNAP, batch or f"nas:tank:db:{SNAP}:{dataset}")


@pytest.fixture
def hosts() -> dict[str, HookHost]:
    return {"nas": HookHost("nas"), "backup": HookHost("backup")}


def run(hosts: dict[str, HookHost], *actions: Action, **kw: Any) -> ApplyReport:
    return apply_plan(plan_of(*actions), make_config(), hosts, **kw)  # type: ignore[arg-type]


def trace(report: ApplyReport) -> list[tuple[str, str, str]]:
    return [(o.status, o.action.kind, o.action.dataset) for o in report.outcomes]


def nas_calls(hosts: dict[str, HookHost]) -> list[str]:
    return [" ".join(c[:2] if c[0] == "hook" else c[:3]) for c in hosts["nas"].calls]


def test_pre_hooks_the_snapshot_and_post_hooks_run_in_that_order(hosts: dict[str, HookHost]) -> None:
    report = run(hosts, pre("tank/db", 0), pre("tank/db", 1), snap("tank/db"), post("tank/db", 1),
                 post("tank/db", 0), snap("tank/a", "k"), snap("tank/b", "k"))
    assert nas_calls(hosts) == ["hook /pre0", "hook /pre1", f"zfs snapshot tank/db@{SNAP}", "hook /post1",
                                "hook /post0", f"zfs snapshot tank/a@{SNAP}"]
    assert hosts["nas"].calls[-1] == ["zfs", "snapshot", f"tank/a@{SNAP}", f"tank/b@{SNAP}"]  # still atomic
    assert report.ok and len(report.done) == 7
    assert hosts["nas"].envs[0] == {"ZREPL_RECONCILE_FS": "tank/db", "ZREPL_RECONCILE_SNAPNAME": SNAP,
                                    "ZREPL_RECONCILE_HOOK": "pre"}
    assert hosts["nas"].envs[-1]["ZREPL_RECONCILE_HOOK"] == "post"


@pytest.mark.parametrize("failure", [3, "timeout"])
def test_a_fatal_pre_failure_skips_the_snapshot_and_what_depends_on_it_but_post_runs(
        hosts: dict[str, HookHost], failure: int | str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reconciler.execute.apply.run_send",
                        lambda *a, **k: type("R", (), {"seconds": 0.1, "bytes": 10})())
    hosts["nas"].hook_exit["/pre0@tank/db"] = failure
    report = run(hosts, pre("tank/db", 0, fatal=True), pre("tank/db", 1), snap("tank/db"),
                 post("tank/db", 1), post("tank/db", 0),
                 pre("tank/other", 0, fatal=True), snap("tank/other"), post("tank/other", 0),
                 send("tank/db"), send("tank/other"), BookmarkAction("nas", "tank/db", SNAP, "zrr-cursor"),
                 DestroyAction("nas", "tank/db", ("zrepl_0",)))
    assert trace(report) == [
        (FAILED, "pre_hook", "tank/db"), (SKIPPED, "pre_hook", "tank/db"), (SKIPPED, "snapshot", "tank/db"),
        (SKIPPED, "post_hook", "tank/db"),  # hook 1 was cut off by the fatal hook 0 (zrepl's stack)
        (DONE, "post_hook", "tank/db"),  # hook 0's post runs although its pre failed (zrepl #392)
        (DONE, "pre_hook", "tank/other"), (DONE, "snapshot", "tank/other"), (DONE, "post_hook", "tank/other"),
        (SKIPPED, "send", "tank/db"), (DONE, "send", "tank/other"),
        (SKIPPED, "bookmark", "tank/db"), (SKIPPED, "destroy", "tank/db")]
    assert f"zfs snapshot tank/db@{SNAP}" not in nas_calls(hosts)
    failed = report.failed[0]
    assert "err_is_fatal: the snapshot tank/db@zrepl_2 and what depends on it are skipped" in failed.message
    assert failed.code == ("timeout" if failure == "timeout" else "command_failed")
    if failure == 3:
        assert "exited with status 3: frozen solid" in failed.message
    assert "pre_hook failed" in report.outcomes[2].message
    assert not report.ok


def test_a_failing_pre_hook_without_err_is_fatal_only_reports(hosts: dict[str, HookHost]) -> None:
    hosts["nas"].hook_exit["/pre0"] = 1
    report = run(hosts, pre("tank/db", 0), pre("tank/db", 1), snap("tank/db"), post("tank/db", 1),
                 post("tank/db", 0), DestroyAction("nas", "tank/db", ("zrepl_0",)))
    assert trace(report)[:5] == [
        (FAILED, "pre_hook", "tank/db"), (DONE, "pre_hook", "tank/db"), (DONE, "snapshot", "tank/db"),
        (DONE, "post_hook", "tank/db"), (DONE, "post_hook", "tank/db")]
    assert "err_is_fatal is false: tank/db@zrepl_2 is taken anyway" in report.failed[0].message
    assert not report.ok  # the apply says a hook failed (exit 1), though nothing was held back


def test_post_runs_after_a_failed_snapshot_and_its_failure_blocks_nothing(hosts: dict[str, HookHost]) -> None:
    hosts["nas"].fail[f"tank/db@{SNAP}"] = "cannot create snapshots : out of space"
    hosts["nas"].hook_exit["/post0"] = 2
    report = run(hosts, pre("tank/db", 0), snap("tank/db"), post("tank/db", 0))
    assert trace(report) == [(DONE, "pre_hook", "tank/db"), (FAILED, "snapshot", "tank/db"),
                             (FAILED, "post_hook", "tank/db")]
    hosts["nas"].fail.clear()
    again = run(hosts, pre("tank/db", 0), snap("tank/db"), post("tank/db", 0), snap("tank/a", "k"))
    assert trace(again)[-2:] == [(FAILED, "post_hook", "tank/db"), (DONE, "snapshot", "tank/a")]


def test_a_post_only_hook_runs_when_its_filesystems_hooks_began(hosts: dict[str, HookHost]) -> None:
    hosts["nas"].hook_exit["/pre1"] = 1
    report = run(hosts, pre("tank/db", 1, fatal=True), snap("tank/db"), post("tank/db", 2),
                 post("tank/db", 0))
    # hook 0 (post only) comes before the failing hook 1: entered; hook 2 comes after: cut off.
    assert trace(report) == [(FAILED, "pre_hook", "tank/db"), (SKIPPED, "snapshot", "tank/db"),
                             (SKIPPED, "post_hook", "tank/db"), (DONE, "post_hook", "tank/db")]
    assert nas_calls(hosts) == ["hook /pre1", "hook /post0"]


def test_nothing_runs_on_a_host_that_is_down_and_post_does_not_run_for_a_pre_never_run(
        hosts: dict[str, HookHost]) -> None:
    hosts["nas"].hook_exit["/pre0"] = hosts["nas"].hook_exit["/post0"] = "down"
    report = run(hosts, pre("tank/db", 0), snap("tank/db"), post("tank/db", 0),
                 pre("tank/db2", 0), snap("tank/db2"), post("tank/db2", 0))
    assert trace(report) == [(FAILED, "pre_hook", "tank/db"), (SKIPPED, "snapshot", "tank/db"),
                             (FAILED, "post_hook", "tank/db"),  # entered: it is tried (the freeze may hold)
                             (SKIPPED, "pre_hook", "tank/db2"), (SKIPPED, "snapshot", "tank/db2"),
                             (SKIPPED, "post_hook", "tank/db2")]
    assert "unavailable" in report.outcomes[3].message
    assert "taken anyway" not in report.outcomes[0].message  # not with its host down


def test_a_stop_request_after_a_pre_hook_still_runs_its_post_hook(hosts: dict[str, HookHost]) -> None:
    stop = threading.Event()
    hosts["nas"].on_hook = stop.set  # the stop arrives while the first pre hook runs
    report = run(hosts, pre("tank/db", 0), pre("tank/db", 1), snap("tank/db"), post("tank/db", 1),
                 post("tank/db", 0), pre("tank/db2", 0), snap("tank/db2"), post("tank/db2", 0), stop=stop)
    assert trace(report) == [
        (DONE, "pre_hook", "tank/db"), (SKIPPED, "pre_hook", "tank/db"), (SKIPPED, "snapshot", "tank/db"),
        (SKIPPED, "post_hook", "tank/db"), (DONE, "post_hook", "tank/db"),
        (SKIPPED, "pre_hook", "tank/db2"), (SKIPPED, "snapshot", "tank/db2"),
        (SKIPPED, "post_hook", "tank/db2")]
    assert report.stopped


def test_apply_refuses_hooks_away_from_their_snapshot(hosts: dict[str, HookHost]) -> None:
    plan = Plan(datetime(2026, 11, 24, 12, tzinfo=UTC), "sha256:x",
                (pre("tank/db", 0), snap("tank/a", "k"), snap("tank/db"), post("tank/db", 0)))
    with pytest.raises(ExecError, match=r"hooks right around their own snapshot.*: snapshot nas:tank/a comes"
                                        r" after pre_hook nas:tank/db"):
        apply_plan(plan, make_config(), hosts)  # type: ignore[arg-type]
    assert hosts["nas"].calls == []


# --------------------------------------------------------------------------- the executors


def env_dump(path: Path, *, exit_code: int = 0, sleep: float = 0.0) -> list[str]:
    """A hook program that appends one JSON line (its argv, its hook variables, the time)
    to ``path``, then sleeps and exits with ``exit_code``."""
    code = ("import json, os, sys, time\n"
            "rec = {'argv': sys.argv[1:], 'ssh': 'SSH_CONNECTION' in os.environ,"
            " 'env': {k: v for k, v in os.environ.items() if k.startswith('ZREPL_RECONCILE_') and"
            " k.rsplit('_', 1)[-1] in ('FS', 'SNAPNAME', 'HOOK')}}\n"
            f"open({str(path)!r}, 'a').write(json.dumps(rec) + '\\n')\n"
            f"time.sleep({sleep})\n"
            f"sys.exit({exit_code})\n")
    return [sys.executable, "-c", code]


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_local_hook_gets_its_variables_and_arguments_as_given(tmp_path: Path) -> None:
    log = tmp_path / "log"
    executor = LocalExecutor("nas", ["zfs-not-used"])
    env = {"ZREPL_RECONCILE_FS": "tank/a b:c", "ZREPL_RECONCILE_SNAPNAME": "zrepl_x",
           "ZREPL_RECONCILE_HOOK": "pre"}
    result = executor.run_hook([*env_dump(log), "$(reboot)", "a b", "zfs"], env, 10)
    assert result.ok
    (rec,) = records(log)
    assert rec["argv"] == ["$(reboot)", "a b", "zfs"] and rec["env"] == env
    assert executor.run_hook(["/nonexistent/hook"], env, 10).returncode == 127
    assert executor.run_hook([str(tmp_path)], env, 10).returncode == 126


def test_local_hook_timeout_kills_its_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # The hook starts a child in its group and waits: both must be gone after the timeout.
    script = f"sleep 60 & echo $$ $! > '{pids}'; wait"
    executor = LocalExecutor("nas")
    started = time.monotonic()
    with pytest.raises(TransportError, match="hook timed out after 2s and was killed with its process group"
                       ) as info:
        executor.run_hook(["/bin/sh", "-c", script], {}, 2)
    assert info.value.code == HostProblem.TIMEOUT
    assert time.monotonic() - started < 10
    for pid in map(int, pids.read_text().split()):
        assert gone_soon(pid), pid


def gone_soon(pid: int, within: float = 5.0) -> bool:
    """A killed process closes its pipes (which ends the hook's wait) a moment before it
    turns into a zombie: give that moment, never the hook's 60 s."""
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped by its parent, here init) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_ssh_hook_passes_its_variables_through_env_quoted_once(sshd: SshServer, tmp_path: Path) -> None:
    log = tmp_path / "log"
    executor = SshExecutor("nas", SshHost.model_validate(sshd.host_config()))
    try:
        env = {"ZREPL_RECONCILE_FS": "tank/a b:c", "ZREPL_RECONCILE_SNAPNAME": "zrepl_$(x)",
               "ZREPL_RECONCILE_HOOK": "post"}
        result = executor.run_hook([*env_dump(log), "a b", "'q'", ";true"], env, 20)
        assert result.ok, result.stderr
        assert result.argv[:4] == ("env", "ZREPL_RECONCILE_FS=tank/a b:c",
                                   "ZREPL_RECONCILE_SNAPNAME=zrepl_$(x)", "ZREPL_RECONCILE_HOOK=post")
        (rec,) = records(log)
        assert rec["argv"] == ["a b", "'q'", ";true"] and rec["env"] == env
        failing = executor.run_hook(env_dump(log, exit_code=4), env, 20)
        assert failing.returncode == 4
    finally:
        executor.close()


def test_ssh_hook_timeout_closes_its_channel_and_the_connection_stays_usable(sshd: SshServer,
                                                                            tmp_path: Path) -> None:
    executor = SshExecutor("nas", SshHost.model_validate(sshd.host_config()))
    try:
        started = time.monotonic()
        with pytest.raises(TransportError, match="hook timed out after 1s; its SSH channel was closed"):
            executor.run_hook(env_dump(tmp_path / "log", sleep=30), {}, 1)
        assert time.monotonic() - started < 8
        assert executor.run_hook(["true"], {}, 10).ok
    finally:
        executor.close()


# --------------------------------------------------------------------------- through the CLI


def hooked_policy(pre: list[str] | None, post: list[str] | None, **extra: Any) -> dict[str, Any]:
    hook: dict[str, Any] = {key: value for key, value in (("pre", pre), ("post", post)) if value}
    return {"db": {"snapshots": {"prefix": "zrepl_", "interval": "1h", "hooks": [{**hook, **extra}]},
                   "keep_source": [{"type": "not_replicated"}]}}


def setup_hosts(tmp_path: Path, standin: Callable[..., StandinState], policies: dict[str, Any],
                nas_host: Callable[[StandinState], Any] | None = None,
                ) -> tuple[Path, StandinState, StandinState]:
    nas = standin("nas", seed=3)
    for ds in ("tank/db", "tank/db/wal"):
        nas.filesystem(ds)
        hourly_history(nas, ds, 4)
    nas.save()
    backup = standin("backup", seed=4)
    backup.filesystem("pool")
    backup.save()
    hosts = {"nas": nas_host(nas) if nas_host else nas.zfs_command, "backup": backup.zfs_command}
    config = write_config(tmp_path / "zrepl-reconcile.yml", hosts,
                          [{"host": "nas", "filter": {"tank/db<": True}, "policy": "db",
                            "replicate_to": [{"host": "backup", "root": "pool/nas"}]}], policies)
    return config, nas, backup


def snapshot_calls(st: StandinState) -> list[str]:
    return [argv[1] for argv in st.log() if argv[:1] == ["snapshot"]]


def test_apply_runs_each_filesystems_hooks_around_its_own_snapshot(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "hooks.log"
    config, nas, backup = setup_hosts(tmp_path, standin, hooked_policy(env_dump(log), env_dump(log)))
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
    assert code == 0, out + err
    name = "zrepl_20251124_160000"
    hooks = [(r["env"]["ZREPL_RECONCILE_HOOK"], r["env"]["ZREPL_RECONCILE_FS"]) for r in records(log)]
    assert hooks == [("pre", "tank/db"), ("post", "tank/db"), ("pre", "tank/db/wal"), ("post", "tank/db/wal")]
    assert {r["env"]["ZREPL_RECONCILE_SNAPNAME"] for r in records(log)} == {name}
    # One snapshot each, between its hooks (the stand-in logs each zfs call).
    assert snapshot_calls(nas) == [f"tank/db@{name}", f"tank/db/wal@{name}"]
    backup.reload()
    assert name in backup.snapshot_names("pool/nas/tank/db/wal")
    assert "done    run pre hook" in err and "done    run post hook" in err
    code, out, _ = cli(capsys, "plan", "-c", str(config), "--now", NOW, "--detailed-exitcode")
    assert code == 0 and "No changes" in out


def test_apply_with_a_failing_fatal_pre_hook_skips_only_that_filesystem(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "hooks.log"
    failing = [sys.executable, "-c",
               "import os, sys; sys.exit(os.environ['ZREPL_RECONCILE_FS'] == 'tank/db/wal')"]
    config, nas, backup = setup_hosts(tmp_path, standin,
                                      hooked_policy(failing, env_dump(log), err_is_fatal=True))
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
    assert code == 1, out + err
    name = "zrepl_20251124_160000"
    assert snapshot_calls(nas) == [f"tank/db@{name}"]
    assert [r["env"]["ZREPL_RECONCILE_FS"] for r in records(log)] == ["tank/db", "tank/db/wal"]  # post hooks
    assert "failed  run pre hook" in err and "exited with status 1" in err
    backup.reload()
    assert name in backup.snapshot_names("pool/nas/tank/db")
    assert "pool/nas/tank/db/wal" not in backup.datasets


def test_apply_with_a_hung_pre_hook_kills_it_takes_the_snapshot_and_runs_post(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "hooks.log"
    config, nas, _backup = setup_hosts(tmp_path, standin,
                                       hooked_policy(env_dump(log, sleep=60), env_dump(log), timeout="3s"))
    started = time.monotonic()
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y",
                         "--filesystem", "tank/db/wal")
    assert code == 1, out + err
    assert time.monotonic() - started < 30
    assert "hook timed out after 3s" in err
    assert snapshot_calls(nas) == ["tank/db/wal@zrepl_20251124_160000"]  # err_is_fatal false: taken anyway
    assert [r["env"]["ZREPL_RECONCILE_HOOK"] for r in records(log)] == ["pre", "post"]


@pytest.mark.soak  # slow: an sshd session per hook; test_ssh_hook_timeout_* keeps SSH hooks in the fast suite
def test_apply_runs_hooks_over_ssh_on_the_filesystems_host(
        sshd: SshServer, tmp_path: Path, standin: Callable[..., StandinState],
        capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "hooks.log"

    def over_ssh(st: StandinState) -> dict[str, Any]:
        return sshd.host_config(zfs_command=["env", f"ZFS_STANDIN_NOW={os.environ['ZFS_STANDIN_NOW']}",
                                             *st.zfs_command])

    policies = hooked_policy(env_dump(log), env_dump(log))
    config, nas, _backup = setup_hosts(tmp_path, standin, policies, over_ssh)
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
    assert code == 0, out + err
    recs = records(log)
    assert [(r["env"]["ZREPL_RECONCILE_HOOK"], r["env"]["ZREPL_RECONCILE_FS"]) for r in recs] == [
        ("pre", "tank/db"), ("post", "tank/db"), ("pre", "tank/db/wal"), ("post", "tank/db/wal")]
    assert all(r["ssh"] for r in recs)  # run by sshd, not by this process
    assert snapshot_calls(nas) == ["tank/db@zrepl_20251124_160000", "tank/db/wal@zrepl_20251124_160000"]


def test_a_saved_plan_runs_its_hooks_and_is_refused_when_the_hooks_changed(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "hooks.log"
    policies = hooked_policy(env_dump(log), env_dump(log), err_is_fatal=True)
    config, nas, _backup = setup_hosts(tmp_path, standin, policies)
    saved = tmp_path / "plan.json"
    assert cli(capsys, "plan", "-c", str(config), "--now", NOW, "--out", str(saved))[0] == 0
    document = json.loads(saved.read_text())
    assert [a["kind"] for a in document["actions"][:3]] == ["pre_hook", "snapshot", "post_hook"]
    assert document["actions"][0]["command"] == env_dump(log) and document["actions"][0]["err_is_fatal"]
    assert document["summary"]["pre_hook"] == 2

    # The configuration's pre hook changes after the plan was saved: refused, nothing run.
    changed = hooked_policy([*env_dump(log), "--other"], env_dump(log), err_is_fatal=True)
    text = json.loads(config.read_text())
    text["policies"] = changed
    other = tmp_path / "changed.yml"
    other.write_text(json.dumps(text))
    code, out, err = cli(capsys, "apply", "-c", str(other), "--plan", str(saved), "-y")
    assert code == 1 and "configuration changed" in err and "command: the file lacks '--other'" in err
    assert records(log) == [] and snapshot_calls(nas) == []

    code, out, err = cli(capsys, "apply", "-c", str(config), "--plan", str(saved), "-y")
    assert code == 0, out + err
    assert [r["env"]["ZREPL_RECONCILE_HOOK"] for r in records(log)] == ["pre", "post", "pre", "post"]
