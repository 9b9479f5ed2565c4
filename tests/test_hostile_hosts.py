"""Hosts, clocks and outputs that misbehave: every case ends with exit 1 and one clear line
on stderr (exit 0 for an unreachable host in ``plan``, which lists it as unavailable),
and nothing prints a traceback without ``--debug`` (issue 18).

- a port that answers with HTTP, or accepts and stays silent (paramiko's own log lines
  and threads say nothing; our message says what answered);
- ``--now`` outside the supported range, and any string at all as ``--now``;
- a zfs that prints megabytes of garbage, one huge line or an impossible name: the plan
  and every message stay small.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import configure_logging, main
from reconciler.domain.actions import SendAction
from reconciler.errors import clip
from reconciler.execute import zfs_errors
from reconciler.execute.transfer import transfer_error
from reconciler.gather.facts import command_failure
from reconciler.transport.interface import CommandResult
from reconciler.transport.pump import TransferResult
from reconciler.transport.ssh import handshake_failure

NOW = "2025-11-24T16:00:00Z"
HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nhi"
POLICY: dict[str, Any] = {
    "snapshots": {"prefix": "zrepl_", "interval": "1h"},
    "keep_source": [{"type": "grid", "grid": "1x1h(keep=all) | 24x1h | 14x1d", "regex": "^zrepl_"}],
}
MEBIBYTES = 10  # of hostile output


def write_config(path: Path, hosts: dict[str, dict[str, Any]]) -> Path:
    """Every host is a source of ``tank``, so plan and facts read each one (JSON is YAML)."""
    config = {"hosts": hosts, "policies": {"hourly": POLICY},
              "filesystems": [{"host": name, "filter": {"tank<": True}, "policy": "hourly"}
                              for name in hosts]}
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real entry point in its own process: its stderr is what a user sees, with no
    pytest capture or logging plugin in between."""
    return subprocess.run([sys.executable, "-m", "reconciler.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "NO_COLOR": "1"})


def assert_quiet(stderr: str) -> None:
    assert "Traceback" not in stderr and "paramiko" not in stderr and "File \"" not in stderr, stderr


# --------------------------------------------------------------------------- ports that are not SSH

class Server:
    """A TCP server on 127.0.0.1 that handles each connection with ``handle`` in a thread."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.handle = handle
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.connections.append(conn)
            self.handle(conn)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        self.listener.close()
        for conn in self.connections:
            conn.close()
        self.thread.join(5)


def answer_http(conn: socket.socket) -> None:
    conn.sendall(HTTP_RESPONSE)
    conn.close()


def stay_silent(conn: socket.socket) -> None:
    pass  # accepted, never answered; closed at teardown


@pytest.fixture
def http_server() -> Iterator[Server]:
    server = Server(answer_http)
    yield server
    server.close()


@pytest.fixture
def silent_server() -> Iterator[Server]:
    server = Server(stay_silent)
    yield server
    server.close()


def ssh_host(tmp_path: Path, port: int, connect_timeout: float = 1.0) -> dict[str, Any]:
    return {"connection": "ssh", "address": "127.0.0.1", "port": port, "user": "zrepl",
            "identity_file": str(tmp_path / "no-key"), "known_hosts": str(tmp_path / "known_hosts"),
            "connect_timeout": connect_timeout, "command_timeout": 10.0}


@pytest.fixture
def not_ssh(tmp_path: Path, http_server: Server, silent_server: Server) -> Path:
    return write_config(tmp_path / "c.yml", {"web": ssh_host(tmp_path, http_server.port),
                                             "mute": ssh_host(tmp_path, silent_server.port)})


def http_message(port: int) -> str:
    return (f"host 'web': SSH handshake with 127.0.0.1:{port} failed: the server did not answer with"
            " an SSH banner (it sent 'HTTP/1.1 200 OK'); is this its SSH port?")


def silent_message(port: int) -> str:
    return (f"host 'mute': SSH handshake with 127.0.0.1:{port} failed: timed out after 1s waiting for"
            " the SSH banner (the port accepts connections but sends nothing)")


def join_paramiko_threads() -> None:
    """paramiko's transport threads log their failure when they end (the silent port's
    after we close it): wait for that, so the test sees whatever they print."""
    for thread in threading.enumerate():
        if type(thread).__module__.startswith("paramiko"):
            thread.join(5)


def test_plan_lists_ports_that_are_not_ssh_as_unavailable_without_paramiko_noise(
        not_ssh: Path, http_server: Server, silent_server: Server,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "plan", "-c", str(not_ssh), "--now", NOW, "--format", "json")
    join_paramiko_threads()
    err += capsys.readouterr().err
    assert code == 0  # README: unreachable hosts do not fail a plan
    plan = json.loads(out)
    reasons = {u["host"]: u["reason"] for u in plan["unavailable"]}
    assert reasons == {"web": "unreachable: " + http_message(http_server.port),
                       "mute": "timeout: " + silent_message(silent_server.port)}
    assert_quiet(err)
    assert err.strip().splitlines() == [
        "warning: the plan has 2 conflicts, 2 hosts unavailable; nothing is done for the affected"
        " targets (see the plan)"]


def test_plan_in_a_real_process_prints_no_traceback(not_ssh: Path, http_server: Server,
                                                     silent_server: Server) -> None:
    result = run_cli("plan", "-c", str(not_ssh), "--now", NOW)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr + "\n\nSTDOUT\n" + result.stdout
    assert http_message(http_server.port) in result.stdout
    assert silent_message(silent_server.port) in result.stdout


def test_facts_exits_1_with_one_line_naming_the_hosts(not_ssh: Path) -> None:
    result = run_cli("facts", "-c", str(not_ssh))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: 2 hosts could not be read: web (unreachable), mute (timeout)"]


def test_apply_plans_nothing_for_them_and_says_why(not_ssh: Path, http_server: Server) -> None:
    result = run_cli("apply", "-y", "-c", str(not_ssh), "--now", NOW)
    assert result.returncode == 0  # nothing was attempted, so nothing failed
    assert_quiet(result.stderr)
    assert http_message(http_server.port) in result.stdout


def test_debug_shows_paramikos_details(tmp_path: Path, http_server: Server) -> None:
    config = write_config(tmp_path / "c.yml", {"web": ssh_host(tmp_path, http_server.port)})
    result = run_cli("plan", "-c", str(config), "--now", NOW, "--debug")
    assert result.returncode == 0
    assert "paramiko.transport" in result.stderr and "Error reading SSH protocol banner" in result.stderr
    assert "Traceback" in result.stderr


@pytest.mark.parametrize(("sent", "error", "code", "says"), [
    (b"", None, "timeout", "timed out after 2s waiting for the SSH banner (the port accepts"
                           " connections but sends nothing)"),
    (b"", EOFError(), "unreachable", "the server closed the connection without sending an SSH banner"),
    (b"HTTP/1.1 400 Bad Request\r\nServer: x\r\n", EOFError(), "unreachable",
     "the server did not answer with an SSH banner (it sent 'HTTP/1.1 400 Bad Request')"),
    (b"\x00\xff\x1b[2J" + b"z" * 300, None, "unreachable",
     "the server did not answer with an SSH banner (it sent '\\x00\\xff\\x1b[2J" + "z" * 65
     + "… (235 more bytes)')"),
    (b"hello\r\nSSH-2.0-OpenSSH_9.6\r\n", EOFError(), "unreachable",
     "SSH handshake with h:22 failed: the server closed the connection"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", None, "timeout", "SSH handshake with h:22 failed: timed out after 2s"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", Exception("Incompatible ssh peer (no acceptable kex algorithm)"),
     "unreachable", "failed: Incompatible ssh peer (no acceptable kex algorithm)"),
])
def test_handshake_failure_says_what_answered(sent: bytes, error: BaseException | None, code: str,
                                              says: str) -> None:
    failure = handshake_failure("h", "h:22", sent, error, 2.0)
    assert failure.code == code
    assert says in str(failure) and "\n" not in str(failure)


# --------------------------------------------------------------------------- library logging

@pytest.fixture
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    yield
    configure_logging(False)


def test_library_records_are_one_line_and_paramikos_none(restore_logging: None,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(False)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("somelib.sub").warning("first line\nsecond line", exc_info=True)
    logging.getLogger("paramiko.transport").error("Exception (client): Error reading SSH protocol banner")
    logging.getLogger("paramiko.transport").error("Traceback (most recent call last):")
    logging.getLogger("somelib").info("chatter")
    assert capsys.readouterr().err.splitlines() == ["warning: somelib.sub: first line"]


def test_debug_shows_library_records_in_full(restore_logging: None,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(True)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("somelib").warning("first line\nsecond line", exc_info=True)
    logging.getLogger("paramiko.transport").error("Exception (client): Error reading SSH protocol banner")
    err = capsys.readouterr().err
    assert "second line" in err and "Traceback" in err and "ValueError: boom" in err
    assert "ERROR paramiko.transport" in err


class FakeTransport(threading.Thread):
    """Stands for paramiko.Transport: a thread class from a paramiko module."""


FakeTransport.__module__ = "paramiko.transport"


def test_a_thread_that_dies_prints_one_line_and_paramikos_nothing(
        restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(False)

    def fail() -> None:
        raise RuntimeError("thread trouble\nmore")

    for thread in (threading.Thread(target=fail, name="worker"), FakeTransport(target=fail)):
        thread.start()
        thread.join()
    assert capsys.readouterr().err.splitlines() == [
        "internal error in thread worker: RuntimeError: thread trouble\\nmore (run with --debug for a"
        " traceback)"]


# --------------------------------------------------------------------------- clocks

FAKE_ZFS = """#!/bin/sh
printf 'tank\\tfilesystem\\t100\\t1\\t1700000000\\t-\\t0\\t0\\t-\\toff\\t-\\t-\\n'
printf 'tank@zrepl_20231114_221320\\tsnapshot\\t101\\t2\\t1700000000\\t0\\t0\\t0\\t-\\toff\\t-\\t-\\n'
"""


def small_host(directory: Path) -> Path:
    """A config whose one local host answers from a tiny shell script (plans in ~50 ms)."""
    script = directory / "zfs"
    script.write_text(FAKE_ZFS)
    script.chmod(0o755)
    return write_config(directory / "c.yml", {"nas": {"connection": "local", "zfs_command": [str(script)]}})


@pytest.fixture(scope="module")
def small_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_host(tmp_path_factory.mktemp("clock"))


OUT_OF_RANGE = [
    "0001-01-01T00:00:00+01:00",  # year 0 in UTC
    "9999-12-31T23:59:59-01:00",  # year 10000 in UTC
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00-23:59",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999+23:59",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:30:00+01:00",  # 1969 in UTC
    "9000-01-01T00:00:00Z",
    "8999-12-31T23:00:00-01:00",  # 9000 in UTC
]


@pytest.mark.parametrize("command", ["plan", "apply"])
@pytest.mark.parametrize("now", OUT_OF_RANGE)
def test_now_out_of_range_is_a_usage_error(small_config: Path, command: str, now: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["-y"] if command == "apply" else []
    code, out, err = cli(capsys, command, "-c", str(small_config), *extra, "--now", now)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"error: --now '{now}' is out of range: plans are made for times from 1970-01-01T00:00:00Z"
        " up to (not including) 9000-01-01T00:00:00Z"]


@pytest.mark.parametrize("now", ["1970-01-01T00:00:00Z", "1970-01-01T01:00:00+01:00",
                                 "8999-12-31T23:59:59.999999Z", "8999-12-31T22:59:59-01:00"])
def test_the_ends_of_the_range_plan(small_config: Path, now: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "plan", "-c", str(small_config), "--now", now, "--format", "json")
    assert code == 0 and err == ""
    assert json.loads(out)["now"][:4] in ("1970", "8999")


def iso_times() -> st.SearchStrategy[str]:
    """ISO 8601 times anywhere in datetime's range, with any offset (or none)."""
    offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(
        lambda m: ("+" if m >= 0 else "-") + f"{abs(m) // 60:02d}:{abs(m) % 60:02d}")
    return st.builds(lambda d, z: d.isoformat() + z, st.datetimes(),
                     st.one_of(st.just("Z"), st.just(""), offsets))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=40), iso_times()))
def test_any_now_plans_or_is_one_usage_line(small_config: Path, capsys: pytest.CaptureFixture[str],
                                             now: str) -> None:
    code, out, err = cli(capsys, "plan", "-c", str(small_config), f"--now={now}", "--format", "json")
    if code == 0:
        assert json.loads(out)["format_version"] == 1
        return
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --now "), err


def test_a_grid_longer_than_a_millennium_is_a_config_error(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """100,000 buckets of 100 years each overflowed timedelta in the plan's reasons."""
    config = small_host(tmp_path)
    data = json.loads(config.read_text())
    data["policies"]["hourly"]["keep_source"][0]["grid"] = "1x1h | 99999x5200w"
    config.write_text(json.dumps(data, indent=2))
    code, out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW)
    assert (code, out) == (1, "")
    (line,) = err.splitlines()
    assert line.startswith(f"error: {config}:") and line.endswith(
        ": policies.hourly.keep_source[0].grid: interval 2 of 2 '99999x5200w': the grid would span more"
        " than 1000 years; use fewer or shorter intervals")


# --------------------------------------------------------------------------- bounded messages

def test_clip_keeps_one_printable_line_and_counts_what_it_left_out() -> None:
    assert clip("cannot destroy 'tank@a': dataset is busy") == "cannot destroy 'tank@a': dataset is busy"
    assert clip("a" * 1005) == "a" * 1000 + "… (5 more bytes)"
    assert clip("é" * 12, 10) == "é" * 10 + "… (4 more bytes)"  # bytes, as the host sent them
    assert clip("x\x1b[31m\r\n\t" + b"\xff".decode("utf-8", "surrogateescape") + "y") == \
        "x\\x1b[31m\\r\\n\\t\\xffy"
    assert clip("a" + b"\xff".decode("utf-8", "surrogateescape") * 3, 1) == "a… (3 more bytes)"
    assert clip("\x1b" * 1000) == "\\x1b" * 250 + "… (750 more bytes)"  # escapes count too


HUGE = "cannot receive: " + "\x1bgarbage " * (MEBIBYTES << 17)


def test_a_zfs_error_quoting_megabytes_of_stderr_is_short_and_quick() -> None:
    started = time.monotonic()
    error = zfs_errors.exec_error(["zfs", "destroy", "tank@a"], 1, HUGE, what="destroy tank@a")
    assert time.monotonic() - started < 2  # the pattern table read all of it: 8 s
    assert len(str(error)) < 1200 and "more bytes)" in str(error) and "\n" not in str(error)
    assert error.stderr == HUGE  # kept whole for code that inspects it, never printed


def test_a_failed_transfer_quoting_megabytes_of_stderr_is_short() -> None:
    action = SendAction("nas", "tank", "zrepl_2", "backup", "pool/tank", "zrepl_1", ("zrepl_2",))
    result = TransferResult(0, 1.0, 0, 1, HUGE, HUGE)
    assert len(str(transfer_error(action, result))) < 1200


@pytest.mark.parametrize("stderr", [HUGE, "x" * (MEBIBYTES << 20), "permission denied " * 100_000])
def test_a_failed_gather_quoting_megabytes_of_stderr_is_short(stderr: str) -> None:
    argv = ("zfs", "holds", "-H", *(f"tank/a@zrepl_{i:09d}" for i in range(20_000)))
    error = command_failure("nas", CommandResult(argv, 1, "", stderr))
    assert len(str(error)) < 2500 and "\n" not in str(error)


HOSTILE_ZFS = """import os, sys
mode, size = sys.argv[1], int(sys.argv[2])
out, err = sys.stdout.buffer, sys.stderr.buffer
if mode == "stderr":  # megabytes of terminal controls and invalid UTF-8, then failure
    err.write(b"cannot open 'tank': \\x1b[31m\\xff\\xfe garbage\\n" * (size // 40))
    sys.exit(1)
if mode == "stderr-line":
    err.write(b"cannot open: " + b"x" * size)
    sys.exit(1)
if mode == "stdout":
    out.write(os.urandom(size))
elif mode == "line":
    out.write(b"a" * size)
elif mode == "dataset-name":
    out.write(b"tank\\tfilesystem\\t1\\t1\\t1700000000\\t-\\t0\\t0\\t-\\toff\\t-\\t-\\n")
    out.write(b"tank/" + b"n" * size + b"\\tfilesystem\\t2\\t2\\t1700000000\\t-\\t0\\t0\\t-\\toff\\t-\\t-\\n")
elif mode == "snapshot-name":
    out.write(b"tank\\tfilesystem\\t1\\t1\\t1700000000\\t-\\t0\\t0\\t-\\toff\\t-\\t-\\n")
    out.write(b"tank@" + b"s" * size + b"\\tsnapshot\\t2\\t2\\t1700000000\\t0\\t0\\t0\\t-\\toff\\t-\\t-\\n")
"""
HOSTILE = {
    "stderr": "command_failed: host 'nas': ",
    "stderr-line": "command_failed: host 'nas': ",
    "stdout": "bad_output: host 'nas': invalid zfs list output at line 1: character ",
    "line": "bad_output: host 'nas': invalid zfs list output at line 1: expected 12 tab-separated"
            " columns, got 1: 'aaaa",
    "dataset-name": "bad_output: host 'nas': invalid zfs list output at line 2: a name of"
                    f" {(MEBIBYTES << 20) + 5} bytes (zfs allows at most 255): 'tank/nnnn",
    "snapshot-name": "bad_output: host 'nas': invalid zfs list output at line 2: a name of"
                     f" {(MEBIBYTES << 20) + 5} bytes (zfs allows at most 255): 'tank@ssss",
}


def hostile_config(directory: Path, mode: str) -> Path:
    script = directory / "hostile_zfs.py"
    script.write_text(HOSTILE_ZFS)
    command = [sys.executable, str(script), mode, str(MEBIBYTES << 20)]
    return write_config(directory / "c.yml", {"nas": {"connection": "local", "zfs_command": command}})


@pytest.mark.parametrize("mode", sorted(HOSTILE))
def test_the_plan_stays_small_when_zfs_prints_megabytes(tmp_path: Path, mode: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = hostile_config(tmp_path, mode)
    code, out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW, "--format", "json")
    assert code == 0  # an unavailable host does not fail a plan
    assert len(out) < 20_000 and len(err) < 300
    plan = json.loads(out)
    (unavailable,) = plan["unavailable"]
    assert unavailable["reason"].startswith(HOSTILE[mode]) and len(unavailable["reason"]) < 1500
    assert all(len(c["message"]) < 2000 for c in plan["conflicts"])
    assert "\x1b" not in out


@pytest.mark.parametrize("mode", ["stderr", "dataset-name"])
def test_facts_and_text_plans_stay_small_too(tmp_path: Path, mode: str) -> None:
    config = hostile_config(tmp_path, mode)
    started = time.monotonic()
    facts = run_cli("facts", "-c", str(config))
    assert facts.returncode == 1 and len(facts.stdout) < 2000
    code = HOSTILE[mode].split(":")[0]
    assert facts.stderr.splitlines() == [f"error: 1 host could not be read: nas ({code})"]
    plan = run_cli("plan", "-c", str(config), "--now", NOW)
    assert plan.returncode == 0 and plan.stderr == ""
    assert len(plan.stdout) < 10_000 and "\x1b" not in plan.stdout
    assert time.monotonic() - started < 30
