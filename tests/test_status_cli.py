"""``status``, the record apply writes, the metrics file and ``on_failure``, through the real
CLI against stand-in zfs hosts (and one SSH host over the loopback sshd)."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fixtures_sshd import SshServer
from prometheus_client.parser import text_string_to_metric_families
from standin.state import StandinState, zfs_command
from test_apply_cli import HOUR, NOW, NOW_TS, cli, hourly_history, write_config

from reconciler import api
from reconciler.domain.plan import Plan
from reconciler.operate.record import Cycle

LATER = "2025-11-24T19:00:00Z"  # three hours after the apply at NOW
NOW_DT = datetime.fromtimestamp(NOW_TS, UTC)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def down_host() -> dict[str, Any]:
    """An SSH host where nothing listens: unreachable at once."""
    return {"connection": "ssh", "address": "127.0.0.1", "port": closed_port(), "connect_timeout": 2}


Setup = tuple[Path, StandinState, StandinState]


@pytest.fixture
def setup(tmp_path: Path, standin: Callable[..., StandinState]) -> Callable[..., Setup]:
    """nas: tank/a, tank/b (10 h of hourly snapshots) replicated to backup:pool/nas, and
    optionally to a second target ``offsite`` that is down."""

    def make(*, offsite_down: bool = False, settings: dict[str, Any] | None = None) -> Setup:
        nas = standin("nas", seed=21)
        for ds in ("tank/a", "tank/b"):
            nas.filesystem(ds)
            hourly_history(nas, ds, 10)
        nas.save()
        backup = standin("backup", seed=22)
        backup.filesystem("pool")
        backup.save()
        hosts: dict[str, Any] = {"nas": nas.zfs_command, "backup": backup.zfs_command}
        targets = [{"host": "backup", "root": "pool/nas"}]
        if offsite_down:
            hosts["offsite"] = down_host()
            targets.append({"host": "offsite", "root": "vault"})
        config = write_config(tmp_path / "zrepl-reconcile.yml", hosts,
                              [{"host": "nas", "filter": {"tank<": True}, "policy": "hourly",
                                "replicate_to": targets}])
        if settings:
            data = json.loads(config.read_text())
            data["settings"] = settings
            config.write_text(json.dumps(data))
        return config, nas, backup

    return make


def status_json(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = cli(capsys, "status", "-c", str(config), "--format", "json", *args)
    assert code in (0, 2), out + err
    return code, json.loads(out)


def metrics(path: Path) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of a metrics file, parsed back with prometheus-client's own parser."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def pair_labels(dataset: str, target_host: str, target_dataset: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"host": "nas", "filesystem": dataset, "target_host": target_host,
                         "target_filesystem": target_dataset}.items()))


# ------------------------------------------------------------------ exit codes and JSON


def test_healthy_after_apply_then_lagging(setup: Callable[..., Setup], capsys: pytest.CaptureFixture[str],
                                          _private_state_directory: Path) -> None:
    config, _nas, _backup = setup()
    code, _out, err = cli(capsys, "apply", "-y", "-c", str(config), "--now", NOW)
    assert code == 0
    assert "state: no record at" in err  # the first apply says it starts the record
    [state_file] = _private_state_directory.iterdir()
    assert state_file.name.startswith("zrepl-reconcile-") and state_file.suffix == ".json"

    code, data = status_json(capsys, config, "--now", NOW, "--max-lag", "1h")
    assert code == 0 and data["healthy"] is True and data["problems"] == []
    assert set(data) == {"format_version", "now", "healthy", "max_lag_seconds", "state_file", "problems",
                         "notes", "hosts", "last_cycle", "filesystems"}
    assert data["state_file"] == str(state_file) and data["notes"] == []
    fs = {f["dataset"]: f for f in data["filesystems"]}
    assert set(fs) == {"tank", "tank/a", "tank/b"}
    a = fs["tank/a"]
    assert set(a) == {"host", "dataset", "policy", "reachable", "snapshot_interval_seconds", "snapshots",
                      "written_bytes", "referenced_bytes", "last_apply", "problems", "targets"}
    assert (a["snapshots"], a["snapshot_interval_seconds"], a["last_apply"]["result"]) == (10, 3600, "ok")
    [target] = a["targets"]
    assert set(target) == {"host", "dataset", "reachable", "healthy", "newest_replicated", "lag_seconds",
                           "waiting", "snapshots", "written_bytes", "referenced_bytes", "last_apply",
                           "problems"}
    assert target["newest_replicated"] == {"name": "zrepl_20251124_160000", "creation": NOW}
    assert (target["lag_seconds"], target["waiting"], target["snapshots"]) == (0, 0, 1)
    assert target["last_apply"]["result"] == "ok" and target["last_apply"]["bytes"] > 0
    assert data["last_cycle"]["result"] == "ok" and data["last_cycle"]["done"] > 0

    # Three hours later nothing ran: the lag is 3h, over --max-lag 2h: exit 2.
    code, data = status_json(capsys, config, "--now", LATER, "--max-lag", "2h")
    assert code == 2 and data["healthy"] is False
    assert data["max_lag_seconds"] == 7200
    assert sum("lag 3h 00m exceeds --max-lag 2h 00m" in p for p in data["problems"]) == 3
    # Without --max-lag the lag alone is not a problem.
    assert status_json(capsys, config, "--now", LATER)[0] == 0


def test_failed_apply_and_unreachable_target_exit_2(setup: Callable[..., Setup],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config, _nas, backup = setup(offsite_down=True)
    backup.reload()
    backup.inject("recv", "cannot receive: out of space", match="pool/nas/tank/a", remaining=None)
    backup.save()
    code, _out, _err = cli(capsys, "apply", "-y", "-c", str(config), "--now", NOW)
    assert code == 1
    code, data = status_json(capsys, config, "--now", NOW)
    assert code == 2
    problems = "\n".join(data["problems"])
    assert "host offsite is unreachable" in problems
    assert "nas:tank/a -> backup:pool/nas/tank/a: last apply failed at 2025-11-24T16:00:00Z" in problems
    assert "out of space" in problems
    fs = {f["dataset"]: f for f in data["filesystems"]}
    targets = {t["host"]: t for t in fs["tank/b"]["targets"]}
    assert targets["backup"]["healthy"] is True
    assert targets["offsite"]["reachable"] is False and targets["offsite"]["healthy"] is False
    assert targets["offsite"]["last_apply"]["result"] == "unavailable"
    assert targets["offsite"]["lag_seconds"] == 10 * HOUR  # nothing there: the oldest snapshot's age
    assert data["hosts"] == [{"host": "backup", "reachable": True, "reason": ""},
                             {"host": "nas", "reachable": True, "reason": ""},
                             {"host": "offsite", "reachable": False, "reason": data["hosts"][2]["reason"]}]
    # --host narrows as for plan: only what touches backup, where tank/a failed.
    code, data = status_json(capsys, config, "--now", NOW, "--host", "backup", "--filesystem", "tank/b")
    assert code == 0 and [f["dataset"] for f in data["filesystems"]] == ["tank/b"]


def test_text_and_markdown(setup: Callable[..., Setup], capsys: pytest.CaptureFixture[str]) -> None:
    config, _nas, _backup = setup(offsite_down=True)
    assert cli(capsys, "apply", "-y", "-c", str(config), "--now", NOW)[0] == 0
    code, out, _err = cli(capsys, "status", "-c", str(config), "--now", LATER, "--max-lag", "2h")
    assert code == 2
    lines = out.splitlines()
    assert lines[0].startswith("UNHEALTHY: ") and "3 filesystems, 6 targets" in lines[0]  # Nagios reads this
    assert lines[1].split() == ["FILESYSTEM", "TARGET", "NEWEST", "REPLICATED", "LAG", "WAITING", "SNAPSHOTS",
                                "WRITTEN", "LAST", "APPLY"]
    row = next(line for line in lines if line.startswith("nas:tank/a ") and " backup " in line)
    assert row.split()[2:6] == ["zrepl_20251124_160000", "3h", "00m", "0"]
    assert "offsite (unreachable)" in out and "\nProblems:\n" in out
    code, out, _err = cli(capsys, "status", "-c", str(config), "--now", NOW, "--format", "markdown",
                          "--host", "backup")
    assert code == 0
    assert out.startswith("**OK: 3 filesystems, 3 targets; worst lag 0s**\n")
    assert "| `nas:tank/a` | backup | `zrepl_20251124_160000` | 0s | 0 | 10 / 1 |" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--max-lag", "soon"], "--max-lag"),
    (["--host", "nowhere"], "--host nowhere: not a host"),
    (["--filesystem", "other/x"], "not managed"),
    (["--now", "yesterday"], "--now"),
    (["--metrics-file", "/tmp/metrics.txt"], "--metrics-file: '/tmp/metrics.txt' does not end in .prom"),
], ids=["max-lag", "host", "filesystem", "now", "metrics-file"])
def test_errors_exit_1(setup: Callable[..., Setup], capsys: pytest.CaptureFixture[str], args: list[str],
                       message: str) -> None:
    config, _nas, _backup = setup()
    code, _out, err = cli(capsys, "status", "-c", str(config), *args)
    assert code == 1 and message in err


def test_a_bad_config_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("hosts: {}\n")
    code, _out, err = cli(capsys, "status", "-c", str(bad))
    assert code == 1 and "error:" in err


# ------------------------------------------------------------------ the state file through the CLI


def test_a_corrupt_state_file_is_reported_and_rebuilt(setup: Callable[..., Setup],
                                                      capsys: pytest.CaptureFixture[str],
                                                      _private_state_directory: Path) -> None:
    config, _nas, _backup = setup()
    assert cli(capsys, "apply", "-y", "-c", str(config), "--now", NOW)[0] == 0
    [state_file] = _private_state_directory.iterdir()
    state_file.write_text('{"format_version": 1, "pairs": [{"host": ')
    code, out, err = cli(capsys, "status", "-c", str(config), "--now", NOW)
    assert code == 0 and "is corrupt" in out and "Traceback" not in out + err
    assert "never" in out  # no record: nothing known about the last applies
    code, _out, err = cli(capsys, "apply", "-y", "-c", str(config), "--now", NOW)
    assert code == 0
    assert [line for line in err.splitlines() if "state:" in line] == [
        next(line for line in err.splitlines() if "is corrupt" in line)]  # one line
    code, data = status_json(capsys, config, "--now", NOW)
    assert data["notes"] == [] and data["last_cycle"]["result"] == "ok"


def test_an_unwritable_state_dir_does_not_fail_the_apply(setup: Callable[..., Setup], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    config, _nas, _backup = setup(settings={"state_dir": str(blocker / "state")})
    code, _out, err = cli(capsys, "apply", "-y", "-c", str(config), "--now", NOW)
    assert code == 0 and "state: cannot write" in err


# ------------------------------------------------------------------ metrics


def test_metrics_from_apply_and_status(setup: Callable[..., Setup], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "textfile" / "zrepl.prom"
    path.parent.mkdir()
    config, _nas, _backup = setup(offsite_down=True, settings={"metrics_file": str(path)})
    assert cli(capsys, "apply", "-y", "-c", str(config), "--now", NOW)[0] == 0
    found = metrics(path)
    lag = found["zrepl_reconcile_replication_lag_seconds"]
    assert lag[pair_labels("tank/a", "backup", "pool/nas/tank/a")] == 0
    assert lag[pair_labels("tank/a", "offsite", "vault/tank/a")] == 10 * HOUR
    assert found["zrepl_reconcile_snapshots_pending"][pair_labels("tank/a", "offsite", "vault/tank/a")] == 1
    assert found["zrepl_reconcile_host_up"] == {(("host", "backup"),): 1, (("host", "nas"),): 1,
                                                (("host", "offsite"),): 0}
    assert found["zrepl_reconcile_last_cycle_failed"] == {(): 0}
    assert found["zrepl_reconcile_last_cycle_timestamp_seconds"] == {(): NOW_TS}
    success = found["zrepl_reconcile_last_success_timestamp_seconds"]
    assert success[pair_labels("tank/a", "backup", "pool/nas/tank/a")] == NOW_TS
    assert pair_labels("tank/a", "offsite", "vault/tank/a") not in success  # never succeeded
    assert found["zrepl_reconcile_last_attempt_timestamp_seconds"][
        pair_labels("tank/a", "offsite", "vault/tank/a")] == NOW_TS
    assert found["zrepl_reconcile_actions_total"][(("kind", "send"), ("result", "done"))] == 3
    assert found["zrepl_reconcile_cycles_total"][(("result", "ok"),)] == 1
    assert found["zrepl_reconcile_sent_bytes_total"][()] > 0
    source = (("filesystem", "tank/a"), ("host", "nas"))
    assert found["zrepl_reconcile_snapshots"][(*source, ("role", "source"))] == 10
    assert found["zrepl_reconcile_snapshot_interval_seconds"][source] == 3600
    assert oct(stat.S_IMODE(path.stat().st_mode)) in ("0o644", "0o664", "0o600")
    assert [p.name for p in path.parent.iterdir()] == ["zrepl.prom"]  # no temporary file left

    # status writes them too (--metrics-file overrides the setting), judged at its own time.
    other = tmp_path / "textfile" / "status.prom"
    assert cli(capsys, "status", "-c", str(config), "--now", LATER, "--metrics-file", str(other))[0] == 2
    lag = metrics(other)["zrepl_reconcile_replication_lag_seconds"]
    assert lag[pair_labels("tank/a", "backup", "pool/nas/tank/a")] == 3 * HOUR
    assert metrics(other)["zrepl_reconcile_status_timestamp_seconds"] == {(): NOW_TS + 3 * HOUR}


def test_a_metrics_file_that_cannot_be_written_is_one_line(setup: Callable[..., Setup], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    config, _nas, _backup = setup()
    missing = tmp_path / "no-such-dir" / "m.prom"
    code, _out, err = cli(capsys, "apply", "-y", "-c", str(config), "--now", NOW,
                          "--metrics-file", str(missing))
    assert code == 0 and f"metrics: cannot write {missing}" in err
    code, _out, err = cli(capsys, "status", "-c", str(config), "--now", NOW, "--metrics-file", str(missing))
    assert code == 0 and "metrics: cannot write" in err


# ------------------------------------------------------------------ on_failure


def hook(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "hook.py"
    script.write_text(f"import sys, json, time\n{body}\n")
    return [sys.executable, str(script)]


def test_on_failure_gets_the_report(setup: Callable[..., Setup], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    received = tmp_path / "received.json"
    argv = hook(tmp_path, f"open({str(received)!r}, 'w').write(sys.stdin.read()); print('paged ops')")
    config, _nas, backup = setup(offsite_down=True, settings={"on_failure": argv})
    backup.reload()
    backup.inject("recv", "cannot receive: out of space", match="pool/nas/tank/a", remaining=None)
    backup.save()
    code, _out, err = cli(capsys, "apply", "-y", "-c", str(config), "--now", NOW)
    assert code == 1
    assert f"on_failure: ran {sys.executable}: paged ops" in err
    report = json.loads(received.read_text())
    assert set(report) == {"format_version", "tool_version", "config", "machine", "at", "result", "seconds",
                           "error", "summary", "failed", "failed_not_listed", "unavailable", "conflicts",
                           "conflicts_not_listed"}
    assert (report["result"], report["at"], report["config"]) == ("failed", NOW, os.path.realpath(config))
    [failed] = report["failed"]
    assert (failed["kind"], failed["host"], failed["dataset"], failed["target_host"]) == (
        "send", "nas", "tank/a", "backup")
    assert "out of space" in failed["message"] and failed["code"]
    assert report["unavailable"][0]["host"] == "offsite"
    assert report["summary"]["failed"] == 1 and report["summary"]["done"] > 0


def test_on_failure_runs_for_an_unreachable_host_only_and_not_on_success(
        setup: Callable[..., Setup], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    argv = hook(tmp_path, f"open({str(marker)!r}, 'a').write(json.load(sys.stdin)['result'] + '\\n')")
    config, _nas, _backup = setup(settings={"on_failure": argv})
    assert cli(capsys, "apply", "-y", "-c", str(config), "--now", NOW)[0] == 0
    assert not marker.exists()  # a clean cycle calls nobody
    down, _nas2, _backup2 = setup(offsite_down=True, settings={"on_failure": argv})
    code, _out, _err = cli(capsys, "apply", "-y", "-c", str(down), "--now", NOW)
    assert code == 0  # an unreachable target does not fail the apply, but someone is told
    assert marker.read_text() == "ok\n"


@pytest.mark.parametrize(("body", "timeout", "said"), [
    ("time.sleep(30)", 0.5, "did not finish within 0.5s and was killed"),
    ("print('no route to pager'); sys.exit(3)", 10.0, "failed with exit 3: no route to pager"),
    (None, 10.0, "could not start"),
], ids=["timeout", "exit-3", "not-found"])
def test_on_failure_troubles_are_one_line_never_fatal(setup: Callable[..., Setup], tmp_path: Path,
                                                      body: str | None, timeout: float, said: str) -> None:
    argv = hook(tmp_path, body) if body is not None else [str(tmp_path / "no-such-command")]
    config, _nas, _backup = setup(settings={"on_failure": argv})
    loaded = api.load(config)
    cycle = Cycle(NOW_DT, 1.0, Plan(NOW_DT, "sha256:x", (), unavailable=(("offsite", "refused"),)))
    notes = api.after_cycle(config, loaded, cycle, on_failure_timeout=timeout)
    [line] = [n for n in notes if n.startswith("on_failure:")]
    assert said in line and "\n" not in line


def test_a_cycle_that_could_not_run_calls_on_failure(setup: Callable[..., Setup], tmp_path: Path,
                                                     _private_state_directory: Path) -> None:
    received = tmp_path / "received.json"
    argv = hook(tmp_path, f"open({str(received)!r}, 'w').write(sys.stdin.read())")
    config, _nas, _backup = setup(settings={"on_failure": argv})
    notes = api.after_cycle(config, api.load(config), Cycle(NOW_DT, 0.5, error="no executor for host x"))
    assert any(n.startswith("on_failure: ran") for n in notes)
    report = json.loads(received.read_text())
    assert (report["result"], report["error"]) == ("error", "no executor for host x")
    status = api.status(config, api.load(config), now=NOW_DT)
    assert any("the last cycle at 2025-11-24T16:00:00Z could not run: no executor" in p
               for p in status.status.problems)


# ------------------------------------------------------------------ over SSH


@pytest.mark.soak  # slow: an apply and a status through the loopback sshd
def test_status_over_the_loopback_sshd(tmp_path: Path, standin: Callable[..., StandinState], sshd: SshServer,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    nas = standin("nas", seed=31)
    nas.filesystem("tank/a")
    hourly_history(nas, "tank/a", 5)
    nas.save()
    backup = standin("backup", seed=32)
    backup.filesystem("pool")
    backup.save()
    assert backup.path is not None
    config = write_config(tmp_path / "ssh.yml", {
        "nas": nas.zfs_command,
        "backup": sshd.host_config(zfs_command=zfs_command(backup.path, now=NOW_TS))},
        [{"host": "nas", "filter": {"tank/a": True}, "policy": "hourly",
          "replicate_to": [{"host": "backup", "root": "pool/nas"}]}])
    assert cli(capsys, "apply", "-y", "-c", str(config), "--now", NOW)[0] == 0
    code, data = status_json(capsys, config, "--now", LATER, "--max-lag", "4h")
    assert code == 0
    [target] = data["filesystems"][0]["targets"]
    assert (target["reachable"], target["lag_seconds"], target["snapshots"]) == (True, 3 * HOUR, 1)
    code, data = status_json(capsys, config, "--now", LATER, "--max-lag", "2h")
    assert code == 2
