"""Local and SSH executors against real processes and a real loopback sshd; the host table."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import pytest
from fixtures_sshd import SshServer, free_port, keygen

from reconciler.config.models import Config, LocalHost, SshHost
from reconciler.errors import ConfigError, TransportError
from reconciler.transport import ssh
from reconciler.transport.hosts import make_executor, open_executors
from reconciler.transport.interface import StreamingExecutor, StreamRole
from reconciler.transport.local import LocalExecutor
from reconciler.transport.process import PipeProcess
from reconciler.transport.pump import TransferResult, relay
from reconciler.transport.ssh import ChannelProcess, SshExecutor, fingerprint


def ssh_executor(server: SshServer, **overrides: object) -> SshExecutor:
    return SshExecutor("remote", SshHost.model_validate(server.host_config(**overrides)))


def ssh_keygen_fingerprint(public_key: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key)], capture_output=True,
                         text=True, check=True).stdout
    return out.split()[1]


PAYLOAD = 3 << 20
# What a receiving side prints: the size and digest of the stream it got.
DIGEST = ["python3", "-c", "import hashlib, sys; d = sys.stdin.buffer.read(); "
                           "sys.stderr.write(f'{len(d)} {hashlib.sha256(d).hexdigest()}')"]


def round_trip(sender: StreamingExecutor, receiver: StreamingExecutor,
               size_hint: int | None) -> TransferResult:
    """PAYLOAD bytes from the sender's side to the receiver's, both started by their executors
    (whose zfs_command is the command: "zfs" is replaced by it)."""
    return relay(lambda: sender.start_stream(["zfs"], StreamRole.SEND, size_hint),
                 lambda: receiver.start_stream(["zfs"], StreamRole.RECEIVE, size_hint))


def sent_digest() -> str:
    return f"{PAYLOAD} {hashlib.sha256(bytes(PAYLOAD)).hexdigest()}"


# ----------------------------------------------------------------------------- local

def test_local_replaces_leading_zfs_and_never_uses_a_shell() -> None:
    ex = LocalExecutor("nas", ["echo", "sudo-ish"])
    result = ex.run(["zfs", "list", "a b;$(reboot)", "c'd"])
    assert result.ok and result.stdout == "sudo-ish list a b;$(reboot) c'd\n"
    assert result.argv == ("echo", "sudo-ish", "list", "a b;$(reboot)", "c'd")


def test_local_missing_command_is_127() -> None:
    result = LocalExecutor("nas", ["/nonexistent/zfs"]).run(["zfs", "list"])
    assert result.returncode == 127 and "command not found" in result.stderr


def test_local_timeout_is_typed() -> None:
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        LocalExecutor("nas", ["sleep"]).run(["zfs", "10"], timeout=0.3)
    assert info.value.code == "timeout" and "timed out after 0.3s" in str(info.value)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("size_hint", [None, 0, 1 << 40])
def test_local_streams_run_as_pipes_whatever_their_size(size_hint: int | None) -> None:
    sender = LocalExecutor("nas", ["head", "-c", str(PAYLOAD), "/dev/zero"])
    side = sender.start_stream(["zfs"], StreamRole.SEND, size_hint)
    try:
        assert isinstance(side, PipeProcess) and side.pipe_fd() is not None
    finally:
        side.stop()
    result = round_trip(sender, LocalExecutor("nas", DIGEST), size_hint)
    assert result.ok and result.bytes == PAYLOAD and result.recv_stderr == sent_digest()


def test_make_executor_picks_transport() -> None:
    assert isinstance(make_executor("a", LocalHost(connection="local")), LocalExecutor)
    remote = SshHost(connection="ssh", address="127.0.0.1", port=free_port())
    assert isinstance(make_executor("b", remote), SshExecutor)  # no connection until first use


def two_hosts() -> Config:
    return Config.model_validate({
        "hosts": {"nas": {"connection": "local"},
                  "backup": {"connection": "ssh", "address": "127.0.0.1", "port": free_port()}},
        "policies": {"p": {"snapshots": {"prefix": "zrepl_", "interval": "1h"}}},
        "filesystems": [{"host": "nas", "filter": {"tank<": True}, "policy": "p"}]})


def test_open_executors_closes_every_one_however_the_block_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[str] = []
    monkeypatch.setattr(LocalExecutor, "close", lambda self: closed.append(self.host))
    monkeypatch.setattr(SshExecutor, "close", lambda self: closed.append(self.host))
    with open_executors(two_hosts()) as executors:
        assert list(executors) == ["nas", "backup"] and closed == []
    assert sorted(closed) == ["backup", "nas"]
    closed.clear()
    with pytest.raises(RuntimeError, match="boom"), open_executors(two_hosts(), ["backup"]) as executors:
        assert list(executors) == ["backup"]
        raise RuntimeError("boom")
    assert closed == ["backup"]


def test_open_executors_refuses_an_unknown_host_in_the_words_of_gathering() -> None:
    with pytest.raises(ConfigError, match=r"unknown host\(s\): nope \(configured: nas, backup\)"), \
            open_executors(two_hosts(), ["nas", "nope"]):
        pass


# ----------------------------------------------------------------------------- ssh

def test_ssh_key_auth_quotes_argv_once_and_reuses_connection(sshd: SshServer) -> None:
    ex = ssh_executor(sshd, zfs_command=["printf", "%s|"])
    try:
        result = ex.run(["zfs", "a b", "c'd", "$(id)", "e\"f"])
        assert result.ok, result.stderr
        assert result.stdout == "a b|c'd|$(id)|e\"f|"
        transport = ex.transport()
        assert ex.run(["zfs", "x"]).stdout == "x|"
        assert ex.transport() is transport
    finally:
        ex.close()


def test_ssh_run_gives_the_command_no_stdin(sshd: SshServer) -> None:
    ex = ssh_executor(sshd, zfs_command=["cat"])
    try:
        assert ex.run(["zfs"], timeout=10).stdout == ""
    finally:
        ex.close()


def test_ssh_nonzero_exit_and_stderr_are_returned(sshd: SshServer) -> None:
    ex = ssh_executor(sshd, zfs_command=["/nonexistent/zfs"])
    try:
        result = ex.run(["zfs", "list"])
        assert result.returncode == 127 and "/nonexistent/zfs" in result.stderr
    finally:
        ex.close()


def test_ssh_unknown_host_key_refused_with_fingerprint(sshd: SshServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    for known in (empty, tmp_path / "missing"):
        with pytest.raises(TransportError) as info:
            ssh_executor(sshd, known_hosts=str(known)).run(["zfs", "list"])
        assert info.value.code == "host_key_unknown"
        message = str(info.value)
        assert "ssh-ed25519" in message
        assert ssh_keygen_fingerprint(sshd.host_key.with_suffix(".pub")) in message


def test_ssh_changed_host_key_refused(sshd: SshServer, tmp_path: Path) -> None:
    other = keygen(tmp_path / "impostor")
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line(other.with_suffix(".pub")))
    with pytest.raises(TransportError) as info:
        ssh_executor(sshd, known_hosts=str(known)).run(["zfs", "list"])
    assert info.value.code == "host_key_changed"
    message = str(info.value)
    assert ssh_keygen_fingerprint(sshd.host_key.with_suffix(".pub")) in message
    assert ssh_keygen_fingerprint(other.with_suffix(".pub")) in message


def test_ssh_wrong_client_key_is_auth_failed(sshd: SshServer, tmp_path: Path) -> None:
    stranger = keygen(tmp_path / "stranger")
    with pytest.raises(TransportError) as info:
        ssh_executor(sshd, identity_file=str(stranger)).run(["zfs", "list"])
    assert info.value.code == "auth_failed" and "authentication as" in str(info.value)


def test_ssh_connection_refused_is_unreachable() -> None:
    config = SshHost(connection="ssh", address="127.0.0.1", port=free_port(), connect_timeout=3)
    with pytest.raises(TransportError) as info:
        SshExecutor("gone", config).run(["zfs", "list"])
    assert info.value.code == "unreachable" and "Connection refused" in str(info.value)


def test_ssh_command_timeout_keeps_connection_usable(sshd: SshServer) -> None:
    ex = ssh_executor(sshd, zfs_command=["sleep"])
    try:
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            ex.run(["zfs", "20"], timeout=1)
        assert info.value.code == "timeout" and time.monotonic() - started < 5
        assert ex.run(["zfs", "0"]).ok
    finally:
        ex.close()


@pytest.mark.parametrize(("size_hint", "kind"), [
    (0, ChannelProcess), (ssh.SMALL_SEND_BYTES, ChannelProcess),
    (ssh.SMALL_SEND_BYTES + 1, PipeProcess), (None, PipeProcess)])
def test_ssh_streams_take_a_channel_when_small_and_the_ssh_client_otherwise(
        sshd: SshServer, size_hint: int | None, kind: type) -> None:
    head = ["head", "-c", str(PAYLOAD), "/dev/zero"]
    sender = ssh_executor(sshd, zfs_command=head)
    receiver = ssh_executor(sshd, zfs_command=DIGEST)
    try:
        side = receiver.start_stream(["zfs"], StreamRole.RECEIVE, size_hint)
        assert type(side) is kind and (side.pipe_fd() is None) == (kind is ChannelProcess)
        side.end_input()
        side.wait(10)
        for remote_sender in (True, False):
            source = sender if remote_sender else LocalExecutor("nas", head)
            result = round_trip(source, receiver, size_hint)
            assert result.ok and result.bytes == PAYLOAD, result
            assert result.recv_stderr == sent_digest()
    finally:
        sender.close()
        receiver.close()


def test_fingerprint_matches_ssh_keygen(sshd: SshServer) -> None:
    import paramiko

    key = paramiko.PKey.from_path(str(sshd.host_key))
    assert fingerprint(key) == ssh_keygen_fingerprint(sshd.host_key.with_suffix(".pub"))
