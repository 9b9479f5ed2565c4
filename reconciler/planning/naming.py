"""Names the planner invents: replication cursors and synthetic GUIDs (a scheduled
snapshot's name is ``domain.names.scheduled_snapshot_name``).

A replication cursor is a bookmark on the source dataset marking the newest snapshot
replicated to one target: ``zrr-cursor_<target host>_<8 hex>_<snapshot name>`` where
the 8 hex digits are from ``sha256("<target host>:<target root>")``, so two targets on
the same host (different roots) have distinct cursors. The planner finds a target's
cursors by that prefix. ZFS limits a full name (``dataset#bookmark``) to 255 bytes;
when the snapshot name does not fit, a hash of it replaces it.
"""

from __future__ import annotations

import hashlib

from reconciler.domain.names import ZFS_MAX_NAME

CURSOR_PREFIX = "zrr-cursor_"

def _hex(text: str, digits: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:digits]


def cursor_prefix(target_host: str, target_root: str) -> str:
    return f"{CURSOR_PREFIX}{target_host}_{_hex(f'{target_host}:{target_root}', 8)}_"


def cursor_name(prefix: str, dataset: str, snapshot: str) -> str:
    """The cursor bookmark's short name for ``snapshot``, within ZFS's name length limit."""
    name = prefix + snapshot
    if len(f"{dataset}#{name}".encode()) <= ZFS_MAX_NAME:
        return name
    return prefix + "h" + _hex(snapshot, 16)


def synthetic_guid(*parts: str) -> int:
    """A deterministic non-zero 64-bit GUID for an object the plan creates (simulation only)."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1
