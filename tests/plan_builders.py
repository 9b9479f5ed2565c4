"""Helpers to build ObservedState and Config for planner tests (others may import them).

    w = World()
    w.fs("nas", "tank/a")
    w.snap("nas", "tank/a", "zrepl_1", hours_ago=3)
    w.replicate("nas", "tank/a", "backup", "pool/nas/tank/a")   # copies by GUID
    plan = make_plan(simple_config(), w.observed, NOW)
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.config.models import Config
from reconciler.domain.observed import Bookmark, Dataset, HostFacts, HostUnavailable, ObservedState, Snapshot

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def ts(hours_ago: float = 0, now: datetime = NOW) -> int:
    return int((now - timedelta(hours=hours_ago)).timestamp())


def guid_of(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:8], "big") or 1


class World:
    """A mutable builder of observed facts with per-host createtxg counters."""

    def __init__(self) -> None:
        self.observed = ObservedState()
        self._txg: dict[str, int] = {}

    def _next_txg(self, host: str) -> int:
        self._txg[host] = self._txg.get(host, 10) + 1
        return self._txg[host]

    def host(self, host: str) -> HostFacts:
        return self.observed.hosts.setdefault(host, HostFacts(host))

    def fs(self, host: str, name: str, kind: str = "filesystem", resume_token: str | None = None) -> Dataset:
        facts = self.host(host)
        ds = Dataset(name, kind, guid_of(host, name, "ds"), self._next_txg(host), resume_token)
        facts.datasets[name] = ds
        return ds

    def ds(self, host: str, name: str) -> Dataset:
        return self.observed.hosts[host].datasets[name]

    def snap(self, host: str, dataset: str, name: str, hours_ago: float = 0, *, guid: int | None = None,
             holds: tuple[str, ...] = (), written: int | None = 1000) -> Snapshot:
        ds = self.ds(host, dataset)
        snap = Snapshot(name, guid if guid is not None else guid_of(host, dataset, name),
                        self._next_txg(host), ts(hours_ago), len(holds), written, written, holds)
        ds.snapshots.append(snap)
        return snap

    def snaps(self, host: str, dataset: str, names_hours: list[tuple[str, float]]) -> list[Snapshot]:
        return [self.snap(host, dataset, n, h) for n, h in names_hours]

    def bookmark(self, host: str, dataset: str, name: str, of: str) -> Bookmark:
        ds = self.ds(host, dataset)
        snap = ds.snapshot_named(of)
        assert snap is not None, of
        bm = Bookmark(name, snap.guid, snap.createtxg, snap.creation)
        ds.bookmarks.append(bm)
        ds.bookmarks.sort(key=lambda b: b.createtxg)
        return bm

    def destroy(self, host: str, dataset: str, name: str) -> None:
        ds = self.ds(host, dataset)
        ds.snapshots = [s for s in ds.snapshots if s.name != name]

    def replicate(self, src_host: str, src: str, dst_host: str, dst: str,
                  names: list[str] | None = None) -> Dataset:
        """Copy snapshots (all, or ``names``) by GUID to the target, creating it if needed."""
        source = self.ds(src_host, src)
        target = self.observed.dataset(dst_host, dst) or self.fs(dst_host, dst, source.kind)
        for snap in source.snapshots:
            if names is None or snap.name in names:
                target.snapshots.append(Snapshot(snap.name, snap.guid, self._next_txg(dst_host),
                                                 snap.creation, 0, snap.written, snap.referenced))
        return target

    def unavailable(self, host: str, code: str = "unreachable", message: str = "connection refused") -> None:
        self.observed.hosts.pop(host, None)
        self.observed.unavailable[host] = HostUnavailable(host, code, message)


def config_from(data: dict[str, Any]) -> Config:
    return Config.model_validate(data)


def simple_config(*, keep_source: list[dict[str, Any]] | None = None,
                  keep_target: list[dict[str, Any]] | None = None, prefix: str | None = "zrepl_",
                  interval: str = "1h", manage: str | None = None,
                  filter: dict[str, bool] | None = None,
                  targets: list[dict[str, Any]] | None = None, source_host: str = "nas") -> Config:
    """One policy ``p``, one filesystems entry on ``nas``, replicating to ``backup:pool/nas``."""
    policy: dict[str, Any] = {"keep_source": keep_source or [], "keep_target": keep_target or []}
    if prefix is not None:
        policy["snapshots"] = {"prefix": prefix, "interval": interval}
    if manage is not None:
        policy["manage"] = manage
    if targets is None:
        targets = [{"host": "backup", "root": "pool/nas"}]
    hosts = {source_host: {"connection": "local"}}
    hosts.update({t["host"]: {"connection": "local"} for t in targets})
    return config_from({
        "hosts": hosts,
        "policies": {"p": policy},
        "filesystems": [{"host": source_host, "filter": filter or {"tank<": True}, "policy": "p",
                         "replicate_to": targets}],
    })
