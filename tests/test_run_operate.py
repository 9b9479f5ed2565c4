"""``run`` as a service: --max-consecutive-failures, systemd's notify protocol (on a real unix
datagram socket), the record and metrics of each cycle, and the unit in playbooks/."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML
from standin.state import StandinState
from test_apply_cli import NOW, cli
from test_run_loop import loop_config, read_until  # noqa: F401  (fixture)

from reconciler.cli import build_parser
from reconciler.execute.lock import ConfigLock
from reconciler.operate.notify import Notifier, one_line

PLAYBOOKS = Path(__file__).parent.parent / "playbooks"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A unix datagram socket standing in for systemd's, and its path for NOTIFY_SOCKET."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    try:
        yield sock, path
    finally:
        sock.close()


def received(sock: socket.socket, until: str, timeout: float = 60.0) -> list[str]:
    """Datagrams (decoded) until one contains ``until``."""
    messages: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
        if until in messages[-1]:
            return messages
    raise AssertionError(f"{until!r} not received; got {messages}")


def start(config: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "-c", str(config), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def finish(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out


# ------------------------------------------------------------------ the notify protocol


def test_run_speaks_the_notify_protocol(loop_config: tuple[Path, StandinState, StandinState],  # noqa: F811
                                        notify_socket: tuple[socket.socket, str]) -> None:
    config, _nas, _backup = loop_config
    sock, path = notify_socket
    proc = start(config, "--every", "1h", env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    try:
        messages = received(sock, "next at")
        proc.send_signal(signal.SIGTERM)
        messages += received(sock, "STOPPING=1")
        out = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert messages[0].splitlines()[0] == "READY=1"
    assert messages[0].splitlines()[1].startswith("STATUS=started; reconciling")
    statuses = [m for m in messages if m.startswith("STATUS=")]
    assert statuses[0] == "STATUS=cycle 1: reconciling"
    assert any(m.startswith("STATUS=cycle 1 done: Apply: ") and " 0 failed" in m for m in statuses)
    assert "WATCHDOG=1" in messages  # pinged every 0.1 s while the cycle ran
    assert messages[-1] == "STOPPING=1\nSTATUS=stopped by SIGTERM"


def test_abstract_socket_names_and_the_watchdog_environment(tmp_path: Path) -> None:
    name = f"@zrepl-reconcile-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name[1:])
        sock.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": name})
        assert notifier.ready("a\nb  c") is True
        assert sock.recv(100) == b"READY=1\nSTATUS=a b c"  # STATUS= stays one line
    assert Notifier({}).enabled is False and Notifier({}).status("x") is False
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}).status("x") is False  # never raises
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_seconds == 30.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_seconds is None  # not ours
    assert Notifier({"WATCHDOG_USEC": str(10**6), "WATCHDOG_PID": str(os.getpid())}).watchdog_seconds == 1.0
    assert Notifier({"WATCHDOG_USEC": "soon"}).watchdog_seconds is None
    assert one_line("x" * 1000) == "x" * 400


# ------------------------------------------------------------------ failed cycles in a row


def test_max_consecutive_failures_ends_the_loop(loop_config: tuple[Path, StandinState, StandinState],  # noqa: F811
                                                notify_socket: tuple[socket.socket, str]) -> None:
    config, _nas, _backup = loop_config
    sock, path = notify_socket
    lock = ConfigLock(config)
    lock.acquire()  # every cycle finds the configuration locked
    try:
        proc = start(config, "--every", "1s", "--max-consecutive-failures", "2", env={"NOTIFY_SOCKET": path})
        out = finish(proc)
    finally:
        lock.release()
    assert proc.returncode == 1, out
    assert "cycle 1 failed" in out and "cycle 2 failed" in out and "cycle 3" not in out
    assert "2 failed cycles in a row (--max-consecutive-failures 2); exiting with 1" in out
    messages = received(sock, "STOPPING=1", timeout=5)
    assert messages[-1].startswith("STOPPING=1\nSTATUS=exiting after 2 failed cycles in a row")


@pytest.mark.soak  # slow: several real cycles of `run`; the limit itself is tested in the fast suite
def test_a_good_cycle_resets_the_count(loop_config: tuple[Path, StandinState, StandinState]) -> None:  # noqa: F811
    config, _nas, _backup = loop_config
    lock = ConfigLock(config)
    lock.acquire()
    proc = start(config, "--every", "1s", "--max-consecutive-failures", "2")
    try:
        read_until(proc, "cycle 1 failed")
        lock.release()
        read_until(proc, "cycle 2 done")
        lock.acquire()  # from the next cycle on, every one fails again
        out = finish(proc)
    finally:
        lock.release()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1 and "2 failed cycles in a row" in out
    failed = [int(line.split("cycle ")[1].split()[0]) for line in out.splitlines() if " failed: " in line]
    assert len(failed) == 2 and failed[0] >= 3 and failed[1] == failed[0] + 1  # counted anew after cycle 2


def test_max_consecutive_failures_must_be_positive(loop_config: tuple[Path, StandinState, StandinState],  # noqa: F811
                                                   ) -> None:
    config, _nas, _backup = loop_config
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["run", "-c", str(config), "--max-consecutive-failures", "0"])
    assert exc.value.code == 1


# ------------------------------------------------------------------ the record and metrics of a run


LoopConfig = tuple[Path, StandinState, StandinState]


def test_run_records_each_cycle_and_writes_metrics(
        loop_config: LoopConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    config, _nas, _backup = loop_config
    metrics = tmp_path / "run.prom"
    code, out, _err = cli(capsys, "run", "--once", "-c", str(config), "--now", NOW,
                          "--metrics-file", str(metrics))
    assert code == 0, out
    assert "state: no record at" in out  # run logs its notes with the others
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    samples = families["zrepl_reconcile_replication_lag_seconds"].samples
    lags = {s.labels["filesystem"]: s.value for s in samples}
    assert lags == {"tank": 0, "tank/a": 0, "tank/b": 0}
    code, out, _err = cli(capsys, "status", "-c", str(config), "--now", NOW, "--max-lag", "1h")
    assert code == 0 and out.startswith("OK: 3 filesystems, 3 targets")


def test_a_cycle_that_cannot_run_is_recorded(loop_config: LoopConfig,  # noqa: F811
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config, _nas, _backup = loop_config
    assert cli(capsys, "run", "--once", "-c", str(config), "--now", NOW)[0] == 0
    # A selection the configuration does not manage: the cycle cannot plan.
    code, out, _err = cli(capsys, "run", "--once", "-c", str(config), "--now", NOW,
                          "--filesystem", "other/x")
    assert code == 1 and "cycle 1 failed: --filesystem other/x" in out
    code, out, _err = cli(capsys, "status", "-c", str(config), "--now", NOW)
    assert code == 2
    assert "the last cycle at 2025-11-24T16:00:00Z could not run: --filesystem other/x" in out
    # The next good cycle clears it.
    assert cli(capsys, "run", "--once", "-c", str(config), "--now", NOW)[0] == 0
    assert cli(capsys, "status", "-c", str(config), "--now", NOW)[0] == 0


# ------------------------------------------------------------------ the playbooks


def unit_settings(text: str) -> dict[str, dict[str, str]]:
    """A systemd unit's sections and keys (our unit sets each key once)."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert key not in current, f"{key} set twice"
            current[key] = value
    return sections


def test_the_systemd_unit_is_a_notify_service_with_a_watchdog() -> None:
    text = (PLAYBOOKS / "systemd" / "zrepl-reconcile.service").read_text()
    unit = unit_settings(text)
    service = unit["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "10min" and service["Restart"] == "on-failure"
    assert service["StateDirectory"] == "zrepl-reconcile"
    assert {"StartLimitIntervalSec", "StartLimitBurst"} <= set(unit["Unit"])
    assert "#OnFailure=notify-failure@%n.service" in text  # the example, to enable by hand
    argv = shlex.split(service["ExecStart"])
    args = build_parser().parse_args(argv[1:])  # the unit's command line is one the CLI accepts
    assert (args.command, args.every, args.max_consecutive_failures) == ("run", "10m", 3)
    assert args.config == "/etc/zrepl-reconcile/zrepl-reconcile.yml"


def test_the_prometheus_rules_are_valid_yaml_with_the_two_alerts() -> None:
    rules = YAML(typ="safe").load((PLAYBOOKS / "prometheus" / "alerts.yaml").read_text())
    assert set(rules) == {"groups"}
    [group] = rules["groups"]
    assert group["name"] == "zrepl-reconcile"
    alerts = {rule["alert"]: rule for rule in group["rules"]}
    assert set(alerts) == {"ZfsReplicationLagging", "ZfsReconcileCycleFailed"}
    for rule in alerts.values():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert isinstance(rule["expr"], str) and rule["annotations"]["summary"]
    lag = alerts["ZfsReplicationLagging"]["expr"]
    assert "zrepl_reconcile_replication_lag_seconds" in lag
    assert "2 * zrepl_reconcile_snapshot_interval_seconds" in lag
    assert alerts["ZfsReconcileCycleFailed"]["expr"] == "zrepl_reconcile_last_cycle_failed == 1"


def test_every_metric_the_rules_and_docs_name_is_written(
        loop_config: LoopConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    config, _nas, _backup = loop_config
    metrics = tmp_path / "m.prom"
    assert cli(capsys, "apply", "-y", "-c", str(config), "--now", NOW, "--metrics-file", str(metrics))[0] == 0
    written = {s.name for f in text_string_to_metric_families(metrics.read_text()) for s in f.samples}
    documented = set(re.findall(r"`(zrepl_reconcile_[a-z_]+)`",
                                (Path(__file__).parent.parent / "docs" / "operate.md").read_text()))
    rules = (PLAYBOOKS / "prometheus" / "alerts.yaml").read_text()
    in_rules = set(re.findall(r"zrepl_reconcile_[a-z_]+", rules))
    assert in_rules <= written
    assert documented == written
