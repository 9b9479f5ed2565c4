"""The remote command line, and the system OpenSSH client that carries bulk streams.

``remote_command`` is the one place an argv becomes a shell string: the remote login
shell parses exactly what it quoted, for paramiko's commands and channels as for the
ssh client's. ``client_argv`` is the one ssh client command line: the bulk data path
uses the system client, not the paramiko connection (bench/bench_transfer.py measured
paramiko's channel far below the 90 % of a plain ``ssh | cat`` pipe that we require, see
BENCHMARKS.md), with the same strict host key checking against the same known_hosts.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Mapping, Sequence

from reconciler.config.models import SshHost
from reconciler.transport.interface import with_zfs_command


def remote_command(argv: Sequence[str]) -> str:
    """``argv`` as the command line a remote shell splits back into exactly ``argv``."""
    return shlex.join(argv)


def hook_command(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """``env NAME=value ... argv``: a hook with its variables, for a host where only the
    command line reaches the command (sshd passes no variables unless AcceptEnv lists
    them). The configuration refuses a first word with ``=``, which env would take for
    one more variable."""
    return ["env", *(f"{name}={value}" for name, value in env.items()), *argv]


def client_argv(host: SshHost) -> list[str]:
    """OpenSSH client options equivalent to the paramiko executor's: strict host keys, batch.
    ``-F /dev/null``: the user's ~/.ssh/config must not send the data elsewhere than the
    commands (paramiko does not read it either). The remote command follows the ``--``."""
    known_hosts = os.path.expanduser(host.known_hosts)
    argv = ["ssh", "-F", "/dev/null", "-T", "-x", "-a",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={option_value(known_hosts)}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"ConnectTimeout={max(1, math.ceil(host.connect_timeout))}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
            "-o", "LogLevel=ERROR",
            "-p", str(host.port),
            "-l", host.user]
    if host.identity_file:
        argv += ["-i", os.path.expanduser(host.identity_file), "-o", "IdentitiesOnly=yes"]
    argv += [host.address.strip("[]"), "--"]
    return argv


def ssh_argv(host: SshHost, argv: Sequence[str]) -> list[str]:
    """The local argv that runs zfs ``argv`` on ``host`` through the system ssh client."""
    return [*client_argv(host), remote_command(with_zfs_command(host.zfs_command, argv))]


def option_value(value: str) -> str:
    """An ``-o Key=value`` value as OpenSSH reads it: it splits an unquoted value at
    blanks (a known_hosts path with a space became two files), so quote it."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
