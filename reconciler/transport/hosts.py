"""The host table: the executor of each configured host (local subprocess or SSH), and
``open_executors``, which owns them for the duration of a ``with`` block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from reconciler.config.models import Config, HostConfig, LocalHost, SshHost
from reconciler.errors import ConfigError
from reconciler.transport.interface import StreamingExecutor
from reconciler.transport.local import LocalExecutor
from reconciler.transport.ssh import SshExecutor


def make_executor(name: str, host: HostConfig, *, here: bool = False) -> StreamingExecutor:
    """The executor for one host. SSH connects lazily, so this never touches the network.
    ``here``: this machine is that host (``--as``), so its zfs_command runs locally whatever
    its connection says (a fleet's shared configuration reaches every host by SSH)."""
    if isinstance(host, LocalHost) or (here and isinstance(host, SshHost)):
        return LocalExecutor(name, host.zfs_command, host.command_timeout)
    if isinstance(host, SshHost):
        return SshExecutor(name, host)
    raise ConfigError(f"host {name!r}: unknown connection type {type(host).__name__}")


def executors_for(config: Config, names: Iterable[str] | None = None, *,
                  here: str | None = None) -> dict[str, StreamingExecutor]:
    """Executors for ``names`` (default: every configured host), keyed by host name, in
    the order given; host ``here`` is this machine (``make_executor``). Nothing is connected
    yet; whoever builds them closes them (prefer ``open_executors``, which does)."""
    wanted = list(config.hosts) if names is None else list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in config.hosts]
    if unknown:
        raise ConfigError(f"unknown host(s): {', '.join(unknown)} (configured: {', '.join(config.hosts)})")
    return {name: make_executor(name, config.hosts[name], here=name == here) for name in wanted}


@contextlib.contextmanager
def open_executors(config: Config, names: Iterable[str] | None = None, *, here: str | None = None
                   ) -> Iterator[dict[str, StreamingExecutor]]:
    """The executors of ``names`` (default: every configured host) for the ``with`` block;
    every one is closed when it ends, however it ends. SSH hosts connect on first use, so
    a host that is never asked anything costs nothing, and one connection per host serves
    every command and stream of the block."""
    executors = executors_for(config, names, here=here)
    with contextlib.ExitStack() as closing:
        for executor in executors.values():
            closing.callback(executor.close)
        yield executors
