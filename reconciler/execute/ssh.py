"""Run zfs on a remote host over SSH (paramiko), with strict host key checking.

One connection per host, opened on first use and reused for every command (and every
streaming channel). The remote command line is built from the argv with ``shlex.join``
here and nowhere else: the remote login shell parses exactly what we quoted.
"""

from __future__ import annotations

import base64
import hashlib
import os
import select
import shlex
import socket
import threading
import time
from collections.abc import Sequence

import paramiko

from reconciler.codes import HostProblem
from reconciler.config.models import SshHost
from reconciler.errors import TransportError, clip
from reconciler.execute.executor import CommandResult, ReadableStream, WritableStream, with_zfs_command
from reconciler.execute.local import decode

KEEPALIVE_SECONDS = 15
WINDOW_BYTES = 16 << 20  # large window: bulk send streams are throughput bound
READ_BYTES = 1 << 16
RSA_ALGORITHMS = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")
FIRST_BYTES = 200  # of what a server sends first: enough to say what answered instead of sshd


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

    def run(self, argv: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        full = with_zfs_command(self.zfs_command, argv)
        command = shlex.join(full)
        limit = timeout if timeout is not None else self.timeout
        channel = self._open_channel(command)
        try:
            channel.shutdown_write()  # no stdin, like subprocess.DEVNULL: a reader sees EOF
            out, err = self._collect(channel, command, limit)
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

    def open_process(self, argv: Sequence[str]) -> SshProcess:
        full = with_zfs_command(self.zfs_command, argv)
        command = shlex.join(full)
        return SshProcess(self.host, self._open_channel(command), command)

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()
                self._transport = None


class SshProcess:
    """A streaming handle over one SSH channel (see executor.ProcessHandle)."""

    def __init__(self, host: str, channel: paramiko.Channel, command: str) -> None:
        self.host = host
        self.channel = channel
        self.command = command
        self.stdin: WritableStream = channel.makefile_stdin("wb")  # close() sends EOF
        self.stdout: ReadableStream = channel.makefile("rb")
        self.stderr: ReadableStream = channel.makefile_stderr("rb")

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.channel.exit_status_ready():
            if deadline is not None and time.monotonic() >= deadline:
                raise TransportError(self.host, HostProblem.TIMEOUT,
                                     f"command timed out after {timeout:g}s: {clip(self.command)}")
            self.channel.status_event.wait(0.2)
        return self.channel.recv_exit_status()

    def kill(self) -> None:
        # OpenSSH ignores "signal" requests for sessions without a tty; closing the channel
        # hangs up on the remote command, which then dies on its next write.
        self.channel.close()


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
