"""send | controller | recv: pump, argv, progress, error choice; every pairing through a real sshd."""

from __future__ import annotations

import io
import itertools
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures_sshd import SshServer
from standin.state import StandinState
from test_apply_cli import NOW, hourly_history, write_config

from reconciler.cli import main
from reconciler.config.models import LocalHost, SshHost
from reconciler.domain.actions import SendAction
from reconciler.execute import transfer
from reconciler.execute.progress import LogProgress
from reconciler.execute.transfer import parse_send_size, transfer_error
from reconciler.transport import ssh
from reconciler.transport.interface import CHUNK, StreamRole, with_zfs_command
from reconciler.transport.openssh import client_argv, ssh_argv
from reconciler.transport.process import PipeProcess
from reconciler.transport.pump import TransferResult, pump, relay, stream
from reconciler.transport.ssh import SshExecutor

PY = sys.executable


# --------------------------------------------------------------------------- units

@pytest.mark.parametrize("use_splice", [True, False])
def test_stream_moves_every_byte_with_bounded_buffer(use_splice: bool) -> None:
    size = 5 * CHUNK + 12345
    seen: list[int] = []
    result = stream(["head", "-c", str(size), "/dev/urandom"],
                    [PY, "-c", "import sys, hashlib; d = sys.stdin.buffer.read(); "
                               "sys.stderr.write(str(len(d)))"],
                    on_progress=seen.append, use_splice=use_splice)
    assert result.ok and result.bytes == size
    assert result.recv_stderr.strip() == str(size)
    assert all(a <= b for a, b in itertools.pairwise(seen))


@pytest.mark.parametrize("use_splice", [True, False])
def test_a_stream_much_larger_than_memory_growth_allows_stays_bounded(use_splice: bool) -> None:
    import resource

    size = 512 * 1024**2
    # ru_maxrss is this process's peak so far (KiB): whatever the stream adds shows as growth.
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = stream(["head", "-c", str(size), "/dev/zero"], ["sh", "-c", "wc -c >&2"],
                    use_splice=use_splice)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert result.ok and result.bytes == size and result.recv_stderr.strip() == str(size)
    assert grown < 64 * 1024, f"peak RSS grew {grown} KiB while streaming {size} bytes"


def test_pump_between_plain_pipes() -> None:
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    os.write(w1, b"x" * 1000)
    os.close(w1)
    assert pump(r1, w2) == 1000
    os.close(w2)
    assert os.read(r2, 2000) == b"x" * 1000
    os.close(r1)
    os.close(r2)


def test_receiver_failure_stops_the_sender_and_keeps_both_stderrs() -> None:
    result = stream(["sh", "-c", "echo starting >&2; exec cat /dev/zero"],
                    ["sh", "-c", "head -c 100 >/dev/null; echo 'cannot receive incremental stream: "
                                 "destination pool/a has been modified' >&2; exit 1"])
    assert not result.ok and result.recv_returncode == 1
    assert result.send_returncode != 0  # stopped by us, not left running
    assert "starting" in result.send_stderr and "has been modified" in result.recv_stderr
    action = SendAction("nas", "tank/a", "s2", "backup", "pool/a", "s1", ("s2",))
    error = transfer_error(action, result)
    assert error.code == "diverged" and "has been modified" in str(error)


def test_a_receive_out_of_space_names_the_pool_and_says_it_resumes() -> None:
    result = TransferResult(4096, 1.0, 1, 1, "warning: cannot send 'tank/a@s2': signal received",
                            "cannot receive new filesystem stream: out of space", sender_stopped=True)
    action = SendAction("nas", "tank/a", "s2", "backup", "pool/nas/tank/a", None, ("s2",))
    error = transfer_error(action, result)
    assert error.code == "no_space"
    assert str(error).startswith("out of space on pool pool of backup (receiving pool/nas/tank/a);")
    assert "resumable" in str(error)
    assert "(zfs: cannot receive new filesystem stream: out of space)" in str(error)


def test_sender_failure_is_reported_over_the_receivers_complaint() -> None:
    result = stream(["sh", "-c", "echo \"cannot open 'tank/a@s2': dataset does not exist\" >&2; exit 1"],
                    ["sh", "-c", "cat >/dev/null; echo 'cannot receive: failed to read from stream' >&2; "
                                 "exit 1"])
    action = SendAction("nas", "tank/a", "s2", "backup", "pool/a", "s1", ("s2",))
    error = transfer_error(action, result)
    assert error.code == "dataset_missing" and "recv stderr" in error.stderr


def test_abort_interrupts_a_running_transfer() -> None:
    import threading

    abort = threading.Event()
    result = stream(["cat", "/dev/zero"], ["sh", "-c", "cat >/dev/null"],
                    on_progress=lambda n: abort.set() if n > 10 * CHUNK else None, abort=abort)
    assert result.aborted and not result.ok and result.bytes > 0


def test_abort_is_noticed_while_the_sender_stalls() -> None:
    import threading

    abort = threading.Event()
    timer = threading.Timer(0.3, abort.set)
    timer.start()
    started = time.monotonic()
    result = stream(["sleep", "30"], ["cat"], abort=abort)
    assert result.aborted and time.monotonic() - started < 10


def test_missing_program_is_a_clear_error() -> None:
    from reconciler.errors import ExecError

    with pytest.raises(ExecError, match="not found"):
        stream(["/nonexistent/zfs", "send"], ["cat"])


def test_parse_send_size() -> None:
    assert parse_send_size("full\ttank/a@s\t123\nsize\t123\n") == 123
    assert parse_send_size("incremental\ts1\ttank/a@s2\t7\nsize\t7\n") == 7
    assert parse_send_size("nothing useful\n") is None


@pytest.mark.parametrize(("name", "size"), [
    ("real-send-nP-full.txt", 540496), ("real-send-nP-incremental.txt", 139048),
    ("real-send-nP-intermediates.txt", 279120), ("real-send-nP-from-bookmark.txt", 272864),
    ("real-send-nP-resume.txt", 4342952)])
def test_parse_send_size_of_captured_real_output(name: str, size: int) -> None:
    """`zfs send -nP` as real OpenZFS 2.1 printed it (tests/data/zfs, see its README)."""
    text = (Path(__file__).parent / "data" / "zfs" / name).read_text()
    assert parse_send_size(text) == size


def test_host_argv_quotes_once_for_ssh() -> None:
    local = LocalHost(connection="local", zfs_command=["sudo", "-n", "zfs"])
    assert with_zfs_command(local.zfs_command, ["zfs", "recv", "-s", "-u", "pool/a b"]) == [
        "sudo", "-n", "zfs", "recv", "-s", "-u", "pool/a b"]
    remote = SshHost(connection="ssh", address="backup.example.org", port=2222, user="zrepl",
                     identity_file="~/.ssh/id", known_hosts="/etc/kh", zfs_command=["zfs"])
    argv = ssh_argv(remote, ["zfs", "send", "tank/a b@x:y"])
    assert argv[-1] == shlex.join(["zfs", "send", "tank/a b@x:y"])
    assert argv[-3:-1] == ["backup.example.org", "--"]
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv
    assert "UserKnownHostsFile=\"/etc/kh\"" in argv and argv[argv.index("-p"):][:2] == ["-p", "2222"]
    assert os.path.expanduser("~/.ssh/id") in argv
    assert "-o" in client_argv(remote) and argv[:-1] == client_argv(remote)


def test_log_progress_lines_every_ten_percent() -> None:
    out = io.StringIO()
    bar = LogProgress(out, interval=3600).transfer("full nas:tank/a@s -> b:pool/a", 1000)
    for done in range(0, 1001, 50):
        bar.update(done)
    bar.finish(1000, True)
    lines = out.getvalue().splitlines()
    assert 9 <= len(lines) <= 11
    assert "(50 %)" in lines[4] and "ETA" in lines[4] and "/s" in lines[4]


def test_failed_result_error_when_aborted() -> None:
    action = SendAction("nas", "tank/a", "s2", "backup", "pool/a", None, ("s2",))
    error = transfer_error(action, TransferResult(10, 1.0, -15, 1, "", "", aborted=True))
    assert error.code == "aborted" and "resumable" in str(error)


# --------------------------------------------------------------------------- through sshd

FAST_PAIRINGS = {("local->ssh", "ssh client"), ("ssh->local", "channel"), ("ssh->ssh", "channel")}


def ssh_standin(sshd: SshServer, st: StandinState) -> dict[str, Any]:
    """A host entry reaching the stand-in through the loopback sshd (clock passed along)."""
    return sshd.host_config(zfs_command=["env", f"ZFS_STANDIN_NOW={os.environ['ZFS_STANDIN_NOW']}",
                                         *st.zfs_command])


# Each pairing and each data path at least once in the fast suite; every combination in soak.
@pytest.mark.parametrize(("pairing", "data_path"), [
    pytest.param(pairing, data_path, id=f"{pairing}-{data_path}",
                 marks=() if (pairing, data_path) in FAST_PAIRINGS else pytest.mark.soak)
    for pairing in ("local->ssh", "ssh->local", "ssh->ssh") for data_path in ("ssh client", "channel")])
def test_apply_replicates_through_sshd(pairing: str, data_path: str, sshd: SshServer, tmp_path: Path,
                                       standin: Callable[..., StandinState],
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # The same sends through the system ssh client (big) or channels on the hosts'
    # paramiko connections (small: no handshake per send).
    monkeypatch.setattr(ssh, "SMALL_SEND_BYTES", -1 if data_path == "ssh client" else 1 << 40)
    channels = count_channel_sides(monkeypatch)
    nas = standin("nas", seed=21)
    nas.filesystem("tank/data")
    hourly_history(nas, "tank/data", 5, size=3 * 2**20)
    nas.save()
    backup = standin("backup", seed=22)
    backup.filesystem("pool")
    backup.save()
    source_ssh, target_ssh = pairing.split("->")[0] == "ssh", pairing.split("->")[1] == "ssh"
    hosts = {"nas": ssh_standin(sshd, nas) if source_ssh else nas.zfs_command,
             "backup": ssh_standin(sshd, backup) if target_ssh else backup.zfs_command}
    config = write_config(tmp_path / "c.yml", hosts,
                          [{"host": "nas", "filter": {"tank/data": True}, "policy": "hourly",
                            "replicate_to": [{"host": "backup", "root": "pool/nas"}]}])
    code = main(["apply", "-c", str(config), "--now", NOW, "-y"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    backup.reload()
    nas.reload()
    assert [s["guid"] for s in backup.datasets["pool/nas/tank/data"]["snapshots"]] == \
        [nas.datasets["tank/data"]["snapshots"][-1]["guid"]]
    assert main(["plan", "-c", str(config), "--now", NOW]) == 0
    assert "No changes" in capsys.readouterr().out
    assert len(channels) == (0 if data_path == "ssh client" else source_ssh + target_ssh)


def count_channel_sides(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    made: list[object] = []
    original = ssh.ChannelProcess.__init__

    def counting(self: ssh.ChannelProcess, channel: Any) -> None:
        made.append(channel)
        original(self, channel)

    monkeypatch.setattr(ssh.ChannelProcess, "__init__", counting)
    return made


EXECUTORS: list[SshExecutor] = []  # alive for the test's duration, as apply keeps its own


def channel(sshd: SshServer, command: list[str], role: StreamRole) -> ssh.ChannelProcess:
    """``command`` as a stream side on a channel: what the executor starts for a small stream."""
    EXECUTORS.append(SshExecutor("h", SshHost.model_validate(sshd.host_config(zfs_command=command))))
    side = EXECUTORS[-1].start_stream(["zfs"], role, size_hint=0)
    assert isinstance(side, ssh.ChannelProcess)
    return side


def test_channel_receiver_that_fails_midway_is_reported_and_the_sender_stopped(sshd: SshServer) -> None:
    fail = ["sh", "-c", "head -c 100000 >/dev/null; echo 'cannot receive incremental stream:"
            " checksum mismatch or incomplete stream.' >&2; exit 1"]
    result = relay(lambda: PipeProcess(["cat", "/dev/zero"], StreamRole.SEND),
                   lambda: channel(sshd, fail, StreamRole.RECEIVE))
    assert not result.ok and result.recv_returncode == 1 and result.sender_stopped
    assert "checksum mismatch" in result.recv_stderr
    action = SendAction("nas", "tank/a", "s2", "backup", "pool/a", "s1", ("s2",))
    assert transfer_error(action, result).code == "stream_broken"


def test_channel_sender_to_channel_receiver_moves_every_byte_and_can_be_aborted(sshd: SshServer) -> None:
    payload = 3 * CHUNK + 12345
    result = relay(lambda: channel(sshd, ["head", "-c", str(payload), "/dev/zero"], StreamRole.SEND),
                   lambda: channel(sshd, ["sh", "-c", "test $(wc -c) = " + str(payload)], StreamRole.RECEIVE))
    assert result.ok and result.bytes == payload, result
    abort = threading.Event()
    abort.set()
    started = time.monotonic()
    stopped = relay(lambda: channel(sshd, ["sleep", "30"], StreamRole.SEND),
                    lambda: channel(sshd, ["cat"], StreamRole.RECEIVE), abort=abort)
    assert stopped.aborted and not stopped.ok and time.monotonic() - started < 10


def test_data_path_refuses_an_unknown_host_key(sshd: SshServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    host = SshHost.model_validate(sshd.host_config(known_hosts=str(empty), zfs_command=["cat"]))
    result = stream(ssh_argv(host, ["zfs", "/dev/null"]), ["cat"])
    assert not result.ok
    assert "Host key verification failed" in result.send_stderr
    action = SendAction("nas", "tank/a", "s2", "backup", "pool/a", None, ("s2",))
    assert transfer_error(action, result).code == "host_key_changed"


def test_a_terminal_gets_a_rich_bar_with_bytes_rate_and_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    import pty

    from rich.console import Console

    from reconciler.execute.progress import RichProgress, progress_for_terminal

    monkeypatch.setenv("TERM", "xterm")
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            assert isinstance(progress_for_terminal(tty), RichProgress)
        assert isinstance(progress_for_terminal(io.StringIO()), LogProgress)  # not a TTY: lines
    finally:
        os.close(master)
        os.close(slave)
    out = io.StringIO()
    sink = RichProgress(Console(file=out, force_terminal=True, width=120, no_color=True))
    bar = sink.transfer("full nas:tank/a@s -> b:pool/a", 4 * 1024**2)
    bar.update(1024**2)
    bar.update(2 * 1024**2)
    bar.finish(4 * 1024**2, True)
    text = out.getvalue()
    assert "full nas:tank/a@s -> b:pool/a" in text and "4.0 MiB" in text
    assert "100%" in text or "4.0/4.0" in text


@pytest.mark.parametrize("directory", ["with space", "quote\"and\\backslash"])
def test_data_path_reads_a_known_hosts_path_with_blanks_and_quotes(sshd: SshServer, tmp_path: Path,
                                                                   directory: str) -> None:
    known = tmp_path / directory / "known hosts"
    known.parent.mkdir()
    known.write_text(sshd.known_hosts.read_text())
    host = SshHost.model_validate(sshd.host_config(known_hosts=str(known), zfs_command=["cat"]))
    result = stream(ssh_argv(host, ["zfs", "/dev/null"]), ["cat"])
    assert result.ok, result.send_stderr


def test_the_transfer_is_sized_by_zfs_send_nP_not_by_the_plans_estimate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan's estimate comes from on-disk (compressed) sizes; `zfs send -nP` gives the
    stream's, which picks the path and the progress total. The plan's is the fallback."""
    from reconciler.execute.progress import NullProgress
    from reconciler.execute.transfer import run_send
    from reconciler.transport.local import LocalExecutor

    totals: list[int | None] = []

    class Sink(NullProgress):
        def transfer(self, label: str, total: int | None) -> Any:
            totals.append(total)
            return super().transfer(label, total)

    executors = {"nas": LocalExecutor("nas"), "backup": LocalExecutor("backup")}
    ok = TransferResult(10, 0.1, 0, 0, "", "")
    monkeypatch.setattr(transfer, "relay", lambda *a, **k: ok)
    action = SendAction("nas", "tank/a", "s2", "backup", "pool/tank/a", "s1", ("s2",), estimated_bytes=1024)
    monkeypatch.setattr(transfer, "estimate_send_size", lambda *a, **k: 300 * 1024**2)
    run_send(action, executors, progress=Sink())
    monkeypatch.setattr(transfer, "estimate_send_size", lambda *a, **k: None)  # zfs could not say
    run_send(action, executors, progress=Sink())
    assert totals == [300 * 1024**2, 1024]
