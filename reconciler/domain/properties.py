"""ZFS properties a replica is received with: which ones apply to which dataset kind, which
a raw stream refuses, and the safe defaults (README "What protects your replicas").

Measured on OpenZFS 2.1.11 (README, "What protects your replicas"; re-measured by
tests/e2e/test_scenarios_replicas.py::test_what_openzfs_does_behind_the_safe_defaults):

- A mounted, writable replica is modified by merely reading it (``atime=on``: after ``ls``
  and ``cat`` its ``written`` is > 0), and the next incremental receive is then refused
  ("destination has been modified since most recent snapshot"). ``readonly=on`` keeps
  ``written`` at 0 and still receives full and incremental streams, raw ones included.
- ``canmount=noauto`` keeps ``zfs mount -a`` (boot) from mounting a replica; with a received
  mountpoint (``send -p``) it would otherwise mount over the backup host's own paths.
- ``zfs recv -o canmount=...`` of a volume fails ("property 'canmount' does not apply to
  datasets of this type"), so filesystem-only properties are left out for volumes.
- A raw stream refuses ``-o``/``-x`` of ``encryption``, ``keyformat`` and ``pbkdf2iters``
  ("encryption property 'X' cannot be set or excluded for raw streams").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# zfs(8): native names are lowercase words; user properties contain a ':' and may use
# lowercase letters, digits and ':', '+', '.', '_', '-'.
NATIVE_PROPERTY = re.compile(r"^[a-z][a-z0-9_]*$")
USER_PROPERTY = re.compile(r"^[a-z0-9_.+-]*:[a-z0-9_.:+-]*$")
MAX_PROPERTY_NAME = 255

# Safe defaults for every receive into a replica (overridable per property).
SAFE_OVERRIDES: Mapping[str, str] = {"readonly": "on", "canmount": "noauto"}
# With send_properties (zfs send -p), these source properties would point the replica at
# the source's mountpoint and shares: excluded (inherited on the replica) by default.
SAFE_EXCLUDES_WITH_SEND_PROPERTIES: tuple[str, ...] = ("mountpoint", "sharenfs", "sharesmb")

# Measured: "encryption property 'X' cannot be set or excluded for raw streams".
RAW_REFUSED = frozenset({"encryption", "keyformat", "pbkdf2iters"})

# Properties zfs computes; a receive cannot set them.
READ_ONLY = frozenset({
    "available", "avail", "clones", "compressratio", "createtxg", "creation", "defer_destroy",
    "encryptionroot", "filesystem_count", "guid", "keystatus", "logicalreferenced", "logicalused",
    "mounted", "name", "objsetid", "origin", "receive_resume_token", "redact_snaps", "refcompressratio",
    "referenced", "snapshot_count", "snapshots_changed", "type", "used", "usedbychildren",
    "usedbydataset", "usedbyrefreservation", "usedbysnapshots", "userrefs", "written",
})

# Properties of one dataset kind only (zfs(8), zfsprops(7)); receiving a volume with -o of a
# filesystem-only property fails, and the reverse likewise.
FILESYSTEM_ONLY = frozenset({
    "aclinherit", "aclmode", "acltype", "atime", "canmount", "casesensitivity", "defcontext", "devices",
    "dnodesize", "exec", "filesystem_limit", "fscontext", "mountpoint", "nbmand", "normalization",
    "overlay", "quota", "recordsize", "refquota", "relatime", "rootcontext", "setuid", "sharenfs",
    "sharesmb", "snapdir", "special_small_blocks", "utf8only", "version", "vscan", "xattr", "zoned",
})
VOLUME_ONLY = frozenset({"volblocksize", "volmode", "volsize"})
_NOT_FOR_KIND: Mapping[str, frozenset[str]] = {"filesystem": VOLUME_ONLY, "volume": FILESYSTEM_ONLY}


def check_property_name(name: str) -> str:
    """``name`` when zfs could have such a property; ValueError saying why not."""
    if len(name) > MAX_PROPERTY_NAME or not (NATIVE_PROPERTY.match(name) or USER_PROPERTY.match(name)):
        raise ValueError(f"{name!r} is not a ZFS property name (a native one like 'readonly', or a user"
                         " property with a ':' like 'com.example:backup')")
    if name in READ_ONLY:
        raise ValueError(f"{name!r} is a read-only property: zfs computes it, a receive cannot set it")
    return name


def applies_to(name: str, kind: str) -> bool:
    """Whether a receive into a dataset of ``kind`` ("filesystem" | "volume") takes ``name``."""
    return name not in _NOT_FOR_KIND.get(kind, frozenset())


def for_kind(names: Iterable[str], kind: str) -> list[str]:
    return [name for name in names if applies_to(name, kind)]
