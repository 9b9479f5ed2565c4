"""Observed ZFS state: plain slotted records built by the fast parser in ``gather``.

Snapshots and bookmarks are identified by GUID and ordered by createtxg, never by
name or creation time alone (as zrepl does). These are deliberately not pydantic
models: a host may have a million snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Snapshot:
    name: str  # short name, without "dataset@"
    guid: int
    createtxg: int
    creation: int  # unix seconds
    userrefs: int = 0
    written: int | None = None  # bytes written since the previous snapshot (send-size estimate)
    referenced: int | None = None
    holds: tuple[str, ...] = ()  # hold tags; filled only for snapshots with userrefs > 0

    @property
    def held(self) -> bool:
        return self.userrefs > 0


@dataclass(slots=True)
class Bookmark:
    name: str  # short name, without "dataset#"
    guid: int
    createtxg: int
    creation: int


@dataclass(slots=True)
class Dataset:
    name: str  # full name, e.g. "tank/data/a b:c"
    kind: str  # "filesystem" | "volume"
    guid: int
    createtxg: int
    resume_token: str | None = None  # receive_resume_token, None when "-"
    snapshots: list[Snapshot] = field(default_factory=list)  # ordered by createtxg
    bookmarks: list[Bookmark] = field(default_factory=list)  # ordered by createtxg
    # Bytes written since the newest snapshot (zfs "written"); > 0 on a target means an
    # incremental receive fails with "has been modified since most recent snapshot".
    written: int | None = None

    @property
    def pool(self) -> str:
        return self.name.split("/", 1)[0]

    def newest_snapshot(self) -> Snapshot | None:
        return self.snapshots[-1] if self.snapshots else None

    def snapshot_named(self, name: str) -> Snapshot | None:
        for snap in self.snapshots:
            if snap.name == name:
                return snap
        return None

    def snapshot_by_guid(self, guid: int) -> Snapshot | None:
        for snap in self.snapshots:
            if snap.guid == guid:
                return snap
        return None

    def bookmark_named(self, name: str) -> Bookmark | None:
        for bm in self.bookmarks:
            if bm.name == name:
                return bm
        return None


@dataclass(slots=True)
class HostFacts:
    host: str  # host name as in the config
    datasets: dict[str, Dataset] = field(default_factory=dict)  # by full dataset name


@dataclass(frozen=True, slots=True)
class HostUnavailable:
    host: str
    code: str  # a GatherError code: unreachable, auth_failed, host_key_unknown, ...
    message: str


@dataclass(slots=True)
class ObservedState:
    hosts: dict[str, HostFacts] = field(default_factory=dict)
    unavailable: dict[str, HostUnavailable] = field(default_factory=dict)

    def dataset(self, host: str, name: str) -> Dataset | None:
        facts = self.hosts.get(host)
        return facts.datasets.get(name) if facts else None
