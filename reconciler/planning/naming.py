"""Names the planner invents: replication cursors, hold tags and synthetic GUIDs (a
scheduled snapshot's name is ``domain.names.scheduled_snapshot_name``).

A replication cursor is a bookmark on the source dataset marking the newest snapshot
replicated to one target: ``zrr-cursor_<target host>_<8 hex>_<snapshot name>`` where
the 8 hex digits are from ``sha256("<target host>:<target root>")`` (``:<strip>`` added
when the target strips a prefix), so two targets on the same host (different roots) have
distinct cursors. The planner finds a target's cursors by that prefix. ZFS limits a full
name (``dataset#bookmark``) to 255 bytes; when the snapshot name does not fit, a hash of
it replaces it.

Hold tags (zrepl's protection levels, ``planning/protection.py``) carry the same 8 hex
digits: ``zrr-step_<target host>_<8 hex>`` on the source's snapshots of a send step, and
``zrr-last-received_<source host>_<8 hex>`` on a replica's last received snapshot. Holds
whose tag starts with ``zrr-step_`` or ``zrr-last-received_`` are ours; no other hold is
ever released.
"""

from __future__ import annotations

import hashlib

from reconciler.domain.names import ZFS_MAX_NAME

CURSOR_PREFIX = "zrr-cursor_"
STEP_HOLD_PREFIX = "zrr-step_"
LAST_RECEIVED_PREFIX = "zrr-last-received_"
OUR_HOLD_PREFIXES = (STEP_HOLD_PREFIX, LAST_RECEIVED_PREFIX)
MAX_HOLD_TAG = 255  # ZFS: MAXNAMELEN with the NUL

def _hex(text: str, digits: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:digits]


def target_key(target_host: str, target_root: str, strip: str | None = None) -> str:
    """The 8 hex digits that tell one replicate_to target from another on the same host."""
    return _hex(f"{target_host}:{target_root}" + (f":{strip}" if strip is not None else ""), 8)


def cursor_prefix(target_host: str, target_root: str, strip: str | None = None) -> str:
    return f"{CURSOR_PREFIX}{target_host}_{target_key(target_host, target_root, strip)}_"


def step_hold_tag(target_host: str, target_root: str, strip: str | None = None) -> str:
    """The tag of a send step's holds on the source (guarantee_resumability)."""
    return _fit_tag(STEP_HOLD_PREFIX, target_host, target_key(target_host, target_root, strip))


def last_received_tag(source_host: str, target_host: str, target_root: str, strip: str | None = None) -> str:
    """The tag of the hold on a replica's last received snapshot (guarantee_incremental)."""
    return _fit_tag(LAST_RECEIVED_PREFIX, source_host, target_key(target_host, target_root, strip))


def is_our_hold(tag: str) -> bool:
    return tag.startswith(OUR_HOLD_PREFIXES)


def _fit_tag(prefix: str, host: str, key: str) -> str:
    room = MAX_HOLD_TAG - len(prefix) - 1 - len(key)
    return f"{prefix}{host[:room]}_{key}"


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
