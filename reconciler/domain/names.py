"""ZFS names and how datasets relate by name: the rules every layer shares.

What zfs accepts as a name (zfs(8) "Naming") and how long it may be, which datasets lie
within which, zrepl's filter decision for one dataset, and the name of a scheduled
snapshot. Pure functions of strings: the configuration, the planner, gathering and apply
all decide by these, so they agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

# OpenZFS: ZFS_MAX_DATASET_NAME_LEN is 256 with the NUL. It bounds a dataset's name and a
# snapshot's or bookmark's full name (dataset@snapshot, dataset#bookmark) alike.
ZFS_MAX_NAME = 255
# ZFS allows alphanumerics, '_', '-', ':', '.', and ' ' in dataset components and
# snapshot names; nothing else, so quotes, '$', '(' are rejected.
ZFS_COMPONENT = r"[A-Za-z0-9_.:\- ]+"
DATASET_NAME = re.compile(rf"^{ZFS_COMPONENT}(/{ZFS_COMPONENT})*$")
SNAPSHOT_NAME_CHARS = re.compile(r"^[A-Za-z0-9_.:\- ]*$")
SNAPSHOT_TIME_FORMAT = "%Y%m%d_%H%M%S"


def check_dataset_name(value: str) -> str:
    """``value`` when it is a valid filesystem or volume name; ValueError saying why not."""
    if not DATASET_NAME.match(value) or any(part.strip() in ("", ".", "..") for part in value.split("/")):
        raise ValueError(
            f"{value!r} is not a valid ZFS dataset name (components of letters, digits,"
            " '_', '-', ':', '.', ' ' separated by '/')")
    if not value[0].isalpha():
        raise ValueError(f"{value!r} is not a valid ZFS dataset name: a pool name starts with a letter")
    if len(value.encode()) > ZFS_MAX_NAME:
        raise ValueError(f"dataset name {value[:40]!r}... is longer than {ZFS_MAX_NAME} bytes")
    return value


def is_within(dataset: str, root: str) -> bool:
    """``dataset`` is ``root`` or lies below it."""
    return dataset == root or dataset.startswith(root + "/")


def ancestors(dataset: str) -> list[str]:
    """The datasets above ``dataset``, the pool first: ``a/b/c`` -> ``a``, ``a/b``."""
    parts = dataset.split("/")
    return ["/".join(parts[:depth]) for depth in range(1, len(parts))]


def lineage(dataset: str) -> list[str]:
    """``dataset`` and the datasets above it, the pool first: ``a/b`` -> ``a``, ``a/b``."""
    return [*ancestors(dataset), dataset]


def filter_decision(filter_map: Mapping[str, bool], dataset: str) -> bool:
    """zrepl's filter: the most specific matching key decides; no match means not selected.

    A key ``tank/a<`` matches ``tank/a`` and its whole subtree, a key ``tank/a`` only that
    dataset; for the same path an explicit key outranks a subtree key."""
    best: tuple[int, int] | None = None  # (path depth, 1 for explicit / 0 for subtree)
    decision = False
    for key, value in filter_map.items():
        subtree = key.endswith("<")
        path = key[:-1] if subtree else key
        if not (is_within(dataset, path) if subtree else dataset == path):
            continue
        rank = (path.count("/") + 1, 0 if subtree else 1)
        if best is None or rank > best:
            best, decision = rank, value
    return decision


def scheduled_snapshot_name(prefix: str, now: datetime) -> str:
    """``<prefix><UTC timestamp>``, e.g. ``zrepl_20261124_120000``."""
    return prefix + now.astimezone(UTC).strftime(SNAPSHOT_TIME_FORMAT)
