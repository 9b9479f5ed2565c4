"""A real OpenSSH sshd on 127.0.0.1 (random free port, its own host and client keys).

Used as a pytest plugin from conftest.py. Tests that use the ``sshd`` fixture are
marked ``sshd`` automatically and skipped when /usr/sbin/sshd is not installed
(Debian package openssh-server).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"


@dataclass
class SshServer:
    address: str
    port: int
    user: str
    directory: Path
    host_key: Path  # private host key; .pub next to it
    client_key: Path  # private client key, authorized on the server
    known_hosts: Path  # a known_hosts file listing this server's real host key

    def host_config(self, **overrides: Any) -> dict[str, Any]:
        """An ``ssh`` host entry for the config that reaches this server."""
        entry: dict[str, Any] = {"connection": "ssh", "address": self.address, "port": self.port,
                                 "user": self.user, "identity_file": str(self.client_key),
                                 "known_hosts": str(self.known_hosts), "connect_timeout": 5.0,
                                 "command_timeout": 30.0}
        entry.update(overrides)
        return entry

    def known_hosts_line(self, public_key_file: Path | None = None) -> str:
        pub = (public_key_file or self.host_key.with_suffix(".pub")).read_text().split()
        return f"[{self.address}]:{self.port} {pub[0]} {pub[1]}\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run([SSH_KEYGEN, "-q", "-t", kind, "-N", "", "-C", "zrepl-reconcile-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stderr = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"sshd exited with {proc.returncode}: {stderr}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on port {port}")


def write_config(directory: Path, port: int, host_key: Path, authorized: Path) -> Path:
    config = directory / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
        f"AuthorizedKeysFile {authorized}", f"PidFile {directory / 'sshd.pid'}",
        "PermitRootLogin prohibit-password", "UsePAM no", "StrictModes no",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
        "AllowTcpForwarding no", "X11Forwarding no", "PrintMotd no", "LogLevel ERROR",
        "MaxSessions 50", "MaxStartups 50:30:100", "ClientAliveInterval 0", "",
    ]))
    return config


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    if not os.path.exists(SSHD):
        pytest.skip("openssh-server is not installed (/usr/sbin/sshd)")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    directory = tmp_path_factory.mktemp("sshd")
    host_key = keygen(directory / "host_ed25519")
    client_key = keygen(directory / "client_ed25519")
    authorized = directory / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    port = free_port()
    config = write_config(directory, port, host_key, authorized)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc, time.monotonic() + 15)
        server = SshServer("127.0.0.1", port, getpass.getuser(), directory, host_key, client_key,
                           directory / "known_hosts")
        server.known_hosts.write_text(server.known_hosts_line())
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "sshd" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.sshd)
