"""Run zfs on a remote host over SSH (paramiko), with strict host key checking.

One connection per host, opened on first use and reused for every command (and every
small stream's channel). The remote command line is built from the argv by
``openssh.remote_command`` and nowhere else: the remote login shell parses exactly
what we quoted.

A stream's side runs on a channel of that connection when the stream is small
(estimated at most SMALL_SEND_BYTES, the common incremental): a new ssh client would
cost a handshake, more than the bytes (peer benchmark (b): a hundred sends). A bigger
or unsized one runs through the system ssh client (openssh.py), for throughput.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import select
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

import paramiko

from reconciler.codes import HostProblem
from reconciler.config.models import SshHost, wrapped_as_root
from reconciler.errors import TransportError, clip
from reconciler.transport.interface import (
    KILL_GRACE,
    STDERR_KEEP,
    CommandResult,
    ProcessHandle,
    StreamRole,
    with_zfs_command,
)
from reconciler.transport.local import decode
from reconciler.transport.openssh import hook_command, remote_command, ssh_argv
from reconciler.transport.process import PipeProcess

KEEPALIVE_SECONDS = 15
WINDOW_BYTES = 16 << 20  # large window: bulk send streams are throughput bound
READ_BYTES = 1 << 16
RSA_ALGORITHMS = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")
FIRST_BYTES = 200  # of what a server sends first: enough to say what answered instead of sshd
# Streams estimated up to this size use channels on the host's SSH connection (paramiko:
# ~100 MiB/s here, so under 0.1 s) instead of a system ssh client each (a handshake).
SMALL_SEND_BYTES = 8 << 20


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:…`` fingerprint, as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


class SshExecutor:
    """Executor for ``connection: ssh`` hosts."""

    def __init__(self, host: str, config: SshHost) -> None:
        self.host = host
        self.config = config
        self.zfs_command = tuple(config.zfs_command)
        self.timeout = config.command_timeout
        self._transport: paramiko.Transport | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ connection

    def transport(self) -> paramiko.Transport:
        """The host's one connection; opened, verified and authenticated on first use."""
        with self._lock:
            if self._transport is None or not self._transport.is_active():
                self._transport = self._connect()
            return self._transport

    def _connect(self) -> paramiko.Transport:
        cfg = self.config
        where = f"{cfg.address}:{cfg.port}"
        known = self._known_keys()
        try:
            plain = socket.create_connection((cfg.address, cfg.port), timeout=cfg.connect_timeout)
        except TimeoutError:
            raise TransportError(self.host, HostProblem.TIMEOUT, f"cannot connect to {where}: "
                                 f"timed out after {cfg.connect_timeout:g}s") from None
        except OSError as exc:
            raise TransportError(self.host, HostProblem.UNREACHABLE,
                                 f"cannot connect to {where}: {exc.strerror or exc}"
                                 ) from None
        sock = FirstBytesSocket(fileno=plain.detach())
        transport = paramiko.Transport(sock, default_window_size=WINDOW_BYTES)
        try:
            prefer_known_key_types(transport, known)
            transport.start_client(timeout=cfg.connect_timeout)
            if not transport.initial_kex_done:  # start_client gave up waiting, without a word
                raise handshake_failure(self.host, where, sock.first_bytes, None, cfg.connect_timeout)
            self._verify_host_key(transport, known)
            self._authenticate(transport)
        except TransportError:
            transport.close()
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            transport.close()
            raise handshake_failure(self.host, where, sock.first_bytes, exc, cfg.connect_timeout) from None
        transport.set_keepalive(KEEPALIVE_SECONDS)
        return transport

    def _known_keys(self) -> dict[str, paramiko.PKey]:
        """The keys known_hosts lists for this host (by key type); empty when none."""
        path = os.path.expanduser(self.config.known_hosts)
        keys = paramiko.HostKeys()
        try:
            keys.load(path)
        except FileNotFoundError:
            return {}
        except (OSError, paramiko.SSHException) as exc:
            raise TransportError(self.host, HostProblem.HOST_KEY_UNKNOWN,
                                 f"cannot read known_hosts {path}: {exc}") from None
        entry = keys.lookup(known_hosts_name(self.config.address, self.config.port))
        return dict(entry) if entry is not None else {}

    def _verify_host_key(self, transport: paramiko.Transport, known: dict[str, paramiko.PKey]) -> None:
        key = transport.get_remote_server_key()
        name = known_hosts_name(self.config.address, self.config.port)
        path = self.config.known_hosts
        offered = f"{key.get_name()} {fingerprint(key)}"
        expected = known.get(key.get_name())
        if expected is None and not known:
            raise TransportError(self.host, HostProblem.HOST_KEY_UNKNOWN,
                                 f"host key of {name} is not in {path}: the server offered {offered}; "
                                 f"verify it and add it (e.g. ssh-keyscan -p {self.config.port} "
                                 f"{self.config.address} >> {path}) before connecting")
        if expected is None or expected.asbytes() != key.asbytes():
            was = ", ".join(f"{k.get_name()} {fingerprint(k)}" for k in known.values())
            raise TransportError(self.host, HostProblem.HOST_KEY_CHANGED,
                                 f"HOST KEY CHANGED for {name}: the server offered {offered} but {path} "
                                 f"lists {was}; refusing to connect (possible man-in-the-middle); if the "
                                 "change is legitimate, replace the entry in known_hosts")

    def _authenticate(self, transport: paramiko.Transport) -> None:
        user = self.config.user
        target = f"{user}@{self.config.address}:{self.config.port}"
        keys = [self._identity()] if self.config.identity_file else list(paramiko.Agent().get_keys())
        if not keys:
            raise TransportError(self.host, HostProblem.AUTH_FAILED,
                                 f"no identity_file configured and no keys in the SSH agent for {target}")
        for key in keys:
            try:
                transport.auth_publickey(user, key)
            except paramiko.AuthenticationException:
                continue
            if transport.is_authenticated():
                return
        what = self.config.identity_file or "the SSH agent's keys"
        raise TransportError(self.host, HostProblem.AUTH_FAILED,
                             f"authentication as {target} failed (publickey with {what})")

    def _identity(self) -> paramiko.PKey:
        assert self.config.identity_file is not None
        path = os.path.expanduser(self.config.identity_file)
        try:
            return paramiko.PKey.from_path(path)
        except paramiko.PasswordRequiredException:
            raise TransportError(self.host, HostProblem.AUTH_FAILED, f"identity file {path} is"
                                 " encrypted; load it into ssh-agent instead") from None
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise TransportError(self.host, HostProblem.AUTH_FAILED,
                                 f"cannot read identity file {path}: {exc}") from None

    # ------------------------------------------------------------------ commands

    def _open_channel(self, command: str) -> paramiko.Channel:
        transport = self.transport()
        try:
            channel = transport.open_session(timeout=self.config.connect_timeout)
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(self.host, HostProblem.UNREACHABLE,
                                 f"SSH connection to {self.config.address} lost: {clip(str(exc))}") from None
        return channel

    @property
    def zfs_as_root(self) -> bool:
        """zfs runs as root there: the SSH user is root, or zfs_command is sudo/doas."""
        return self.config.user == "root" or wrapped_as_root(self.zfs_command)

    def run(self, argv: Sequence[str], *, timeout: float | None = None, input: bytes | None = None
            ) -> CommandResult:
        full = with_zfs_command(self.zfs_command, argv)
        command = remote_command(full)
        limit = timeout if timeout is not None else self.timeout
        channel = self._open_channel(command)
        try:
            if input:  # small (a channel program): sent whole before reading any output
                try:
                    channel.sendall(input)
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    raise TransportError(self.host, HostProblem.UNREACHABLE,
                                         f"SSH connection to {self.config.address} lost: {clip(str(exc))}"
                                         ) from None
            channel.shutdown_write()  # then EOF (without input: like subprocess.DEVNULL)
            out, err = self._collect(channel, command, limit)
            status = channel.recv_exit_status()
        finally:
            channel.close()
        return CommandResult(tuple(full), status, decode(out), decode(err))

    def run_hook(self, argv: Sequence[str], env: Mapping[str, str], timeout: float) -> CommandResult:
        """The hook on a channel of the host's connection. sshd takes no environment variables
        unless its AcceptEnv lists them, so they travel in the command line, as ``env
        NAME=value ... argv`` quoted once (``remote_command``). At ``timeout`` the channel is
        closed: sshd hangs up on the command, which ends at its next read or write of them."""
        full = hook_command(argv, env)
        command = remote_command(full)
        channel = self._open_channel(command)
        try:
            channel.shutdown_write()
            try:
                out, err = self._collect(channel, command, timeout)
            except TransportError as exc:
                if exc.code != HostProblem.TIMEOUT:
                    raise
                raise TransportError(self.host, HostProblem.TIMEOUT,
                                     f"hook timed out after {timeout:g}s; its SSH channel was closed:"
                                     f" {clip(command)}") from None
            status = channel.recv_exit_status()
        finally:
            channel.close()
        return CommandResult(tuple(full), status, decode(out), decode(err))

    def _collect(self, channel: paramiko.Channel, command: str, limit: float) -> tuple[bytes, bytes]:
        """Read stdout and stderr together until the command exits (no pipe can fill up)."""
        deadline = time.monotonic() + limit
        out, err = bytearray(), bytearray()
        while True:
            while channel.recv_ready():
                out += channel.recv(READ_BYTES)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(READ_BYTES)
            if channel.exit_status_ready() and (channel.eof_received or channel.closed) \
                    and not channel.recv_ready() and not channel.recv_stderr_ready():
                return bytes(out), bytes(err)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportError(self.host, HostProblem.TIMEOUT,
                                     f"command timed out after {limit:g}s: {clip(command)}")
            if not self.transport().is_active():
                raise TransportError(self.host, HostProblem.UNREACHABLE,
                                     f"SSH connection to {self.config.address} lost")
            select.select([channel], [], [], min(remaining, 1.0))

    def start_stream(self, argv: Sequence[str], role: StreamRole, size_hint: int | None) -> ProcessHandle:
        """A small stream on a channel of the host's connection (no handshake), a big or
        unsized one through the system ssh client (throughput); see the module docstring."""
        if size_hint is not None and size_hint <= SMALL_SEND_BYTES:
            full = with_zfs_command(self.zfs_command, argv)
            return ChannelProcess(self._open_channel(remote_command(full)))
        return PipeProcess(ssh_argv(self.config, argv), role)

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()
                self._transport = None


class ChannelProcess:
    """A command on an exec channel of the host's existing SSH connection, carrying one
    side of a stream (see interface.ProcessHandle); the bytes pass through Python."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self.channel = channel

    def fileno(self) -> int:
        return self.channel.fileno()

    def pipe_fd(self) -> None:
        return None

    def read(self, size: int) -> bytes:
        data: bytes = self.channel.recv(size)
        return data

    def write(self, data: bytes) -> None:
        try:
            self.channel.sendall(data)
        except (OSError, EOFError) as exc:
            raise BrokenPipeError(str(exc)) from None

    def end_input(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.channel.shutdown_write()

    def running(self) -> bool:
        return not self.channel.exit_status_ready()

    def stop(self) -> None:
        # OpenSSH ignores "signal" requests for sessions without a tty: closing the channel
        # hangs up on the remote command (a receive keeps its resumable state), which then
        # dies on its next write.
        self.channel.close()

    def wait(self, timeout: float | None = None) -> int:
        if not self.channel.status_event.wait(timeout):
            raise subprocess.TimeoutExpired("ssh channel", timeout or 0.0)
        # OpenSSH may send the exit status before the last of the command's output (the
        # real suite lost zfs recv's "out of space" that way): wait for the channel's EOF.
        drained = time.monotonic() + KILL_GRACE
        while not (self.channel.eof_received or self.channel.closed) and time.monotonic() < drained:
            time.sleep(0.01)
        return int(self.channel.recv_exit_status())

    def stderr(self) -> str:
        chunks = []
        while self.channel.recv_stderr_ready():
            chunks.append(self.channel.recv_stderr(STDERR_KEEP))
        return b"".join(chunks)[-STDERR_KEEP:].decode("utf-8", "replace")


class FirstBytesSocket(socket.socket):
    """A connected socket that keeps the first bytes the server sent: paramiko's own words
    for a failed handshake ("Error reading SSH protocol banner", "No existing session")
    do not say what answered instead of an SSH server; these bytes do."""

    first_bytes = b""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        if len(self.first_bytes) < FIRST_BYTES:
            self.first_bytes += data[:FIRST_BYTES - len(self.first_bytes)]
        return data


def handshake_failure(host: str, where: str, sent: bytes, error: BaseException | None,
                      timeout: float) -> TransportError:
    """The failed SSH handshake with ``where`` in the user's terms, from what the server
    sent first; ``error`` is None when the handshake did not finish within ``timeout``."""
    failed = f"SSH handshake with {where} failed"
    if not sent:
        if error is None:
            return TransportError(host, HostProblem.TIMEOUT,
                                  f"{failed}: timed out after {timeout:g}s waiting for"
                                  " the SSH banner (the port accepts connections but sends nothing)")
        return TransportError(host, HostProblem.UNREACHABLE,
                              f"{failed}: the server closed the connection without sending an SSH banner")
    # RFC 4253 lets a server send other lines before its "SSH-" version line.
    if b"\nSSH-" not in b"\n" + sent:
        first_line = sent.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "surrogateescape")
        return TransportError(host, HostProblem.UNREACHABLE,
                              f"{failed}: the server did not answer with an SSH banner"
                              f" (it sent '{clip(first_line, 80)}'); is this its SSH port?")
    if error is None:
        return TransportError(host, HostProblem.TIMEOUT, f"{failed}: timed out after {timeout:g}s")
    reason = clip(str(error)) or "the server closed the connection"
    return TransportError(host, HostProblem.UNREACHABLE, f"{failed}: {reason}")


def prefer_known_key_types(transport: paramiko.Transport, known: dict[str, paramiko.PKey]) -> None:
    """Negotiate a host key type that known_hosts lists, as OpenSSH does, so a host known
    only by its RSA key is not refused for offering ed25519 first."""
    if not known:
        return
    options = transport.get_security_options()
    wanted: list[str] = []
    for key_type in known:
        wanted += list(RSA_ALGORITHMS) if key_type == "ssh-rsa" else [key_type]
    available = list(options.key_types)
    options.key_types = [t for t in wanted if t in available] + [t for t in available if t not in wanted]
