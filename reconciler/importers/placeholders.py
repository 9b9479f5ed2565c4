"""Placeholders: values the old configuration does not name, written so that nobody mistakes
them for a real one.

Every placeholder contains ``FILL-IN``. A host address ends in ``.example``, a domain that
never resolves (RFC 2606): forgotten, it makes the host unreachable, never a wrong host. A
placeholder pool or root names a pool that does not exist: forgotten, the plan selects
nothing there or reports the target pool as missing. ``validate`` lists every placeholder
left in a configuration.
"""

from __future__ import annotations

from reconciler.config.models import Config, SshHost

MARK = "FILL-IN"


def host_address(name: str) -> str:
    """The address of a host the old configuration knows only by a name or an identity."""
    return f"{MARK}-{name}.example"


POOL = f"{MARK}-pool"  # a filter's pool where the old tool matched every pool
ROOT = f"{MARK}-root_fs"  # the receiving dataset of a sink the import did not see


def find_placeholders(config: Config) -> list[str]:
    """Each place of ``config`` that still holds a placeholder, as ``path: value``."""
    found: list[str] = []
    for name, host in config.hosts.items():
        if isinstance(host, SshHost) and MARK in host.address:
            found.append(f"hosts.{name}.address: {host.address}")
    for index, entry in enumerate(config.filesystems):
        found += [f"filesystems[{index}].filter: {key}" for key in entry.filter if MARK in key]
        found += [f"filesystems[{index}].replicate_to[{j}].root: {target.root}"
                  for j, target in enumerate(entry.replicate_to) if MARK in target.root]
    for name, policy in config.policies.items():
        if policy.manage is not None and MARK in policy.manage:
            found.append(f"policies.{name}.manage: {policy.manage}")
    return found
