"""Observed ZFS state: plain slotted records built by the fast parser in ``gather``.

Snapshots and bookmarks are identified by GUID and ordered by createtxg, never by
name or creation time alone (as zrepl does). These are deliberately not pydantic
models: a host may have a million snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.codes import HostProblem


def _size(value: int | str | None) -> int | None:
    """A size as zfs printed it (checked digits, or "-" for none) or already converted."""
    if not isinstance(value, str):
        return value
    return None if value == "-" else int(value)


class Snapshot:
    """One snapshot. ``written`` (bytes written since the previous snapshot, for send-size
    estimates) and ``referenced`` may be given as the text zfs printed (digits or "-",
    checked by the parser): they are converted on first read, because only the snapshots
    a plan sends ever need them and a host may list a million."""

    __slots__ = ("_referenced", "_written", "createtxg", "creation", "guid", "holds", "name", "userrefs")

    def __init__(self, name: str, guid: int, createtxg: int, creation: int, userrefs: int = 0,
                 written: int | str | None = None, referenced: int | str | None = None,
                 holds: tuple[str, ...] = ()) -> None:
        self.name = name  # short name, without "dataset@"
        self.guid = guid
        self.createtxg = createtxg
        self.creation = creation  # unix seconds
        self.userrefs = userrefs
        self._written = written
        self._referenced = referenced
        self.holds = holds  # hold tags; filled only for snapshots with userrefs > 0

    @property
    def written(self) -> int | None:
        value = self._written
        if isinstance(value, str):
            value = self._written = _size(value)
        return value

    @written.setter
    def written(self, value: int | None) -> None:
        self._written = value

    @property
    def referenced(self) -> int | None:
        value = self._referenced
        if isinstance(value, str):
            value = self._referenced = _size(value)
        return value

    @referenced.setter
    def referenced(self, value: int | None) -> None:
        self._referenced = value

    @property
    def held(self) -> bool:
        return self.userrefs > 0

    def _key(self) -> tuple[object, ...]:
        return (self.name, self.guid, self.createtxg, self.creation, self.userrefs, self.written,
                self.referenced, self.holds)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Snapshot):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the other records

    def __repr__(self) -> str:
        fields = ("name", "guid", "createtxg", "creation", "userrefs", "written", "referenced", "holds")
        return f"Snapshot({', '.join(f'{f}={v!r}' for f, v in zip(fields, self._key(), strict=True))})"


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
    # Received with large blocks (its zrepl-reconcile:large_blocks property is set): then
    # every later incremental needs -L. None: not asked (gather reads it only on target
    # hosts where some target sends plain streams).
    large_blocks: bool | None = None
    # Native encryption as zfs lists it: the cipher ("aes-256-gcm") or "off"; the encryption
    # root (None when unencrypted); "available" / "unavailable" key (None when unencrypted).
    encryption: str = "off"
    encryption_root: str | None = None
    key_status: str | None = None

    @property
    def encrypted(self) -> bool:
        return self.encryption != "off"

    @property
    def key_loaded(self) -> bool:
        return self.key_status == "available"

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


@dataclass(slots=True)
class HostFacts:
    host: str  # host name as in the config
    datasets: dict[str, Dataset] = field(default_factory=dict)  # by full dataset name
    # The subtrees that were listed (``zfs list -r ROOT...``), or None: the whole host.
    scope: tuple[str, ...] | None = None
    # zfs runs as root there (SSH user root, sudo/doas, a root controller): OpenZFS runs
    # channel programs (``zfs program``) for root only. Set by gather from the executor.
    zfs_as_root: bool = False

    def exists(self, name: str) -> bool:
        """The dataset exists: it was listed, or it is an ancestor of a listed subtree's
        root (ZFS has no orphans), which a scoped listing does not show itself."""
        return name in self.datasets or any(root.startswith(name + "/") for root in self.scope or ())


@dataclass(frozen=True, slots=True)
class HostUnavailable:
    host: str
    code: str  # a HostProblem
    message: str


def unavailable_reason(problem: HostUnavailable | None) -> str:
    """Why a host is unavailable, in one phrase; ``problem`` is None when no facts were gathered."""
    return f"{problem.code}: {problem.message}" if problem is not None else "no facts gathered"


def unavailable_fix(host: str, problem: HostUnavailable | None) -> str:
    """What to check about an unavailable host, by kind of failure (a local host has no SSH
    to blame); ``problem`` is None when no facts were gathered at all."""
    fix = _UNAVAILABLE_FIXES.get(problem.code, "") if problem is not None else ""
    return (fix or "check host {host} and run plan again").format(host=host)


_UNAVAILABLE_FIXES: dict[str, str] = {
    HostProblem.UNREACHABLE: "check that {host} is up and reachable (address, port, firewall), e.g."
                             " `ssh {host} zfs list`",
    HostProblem.TIMEOUT: "check that {host} answers in time (network, load), e.g. `ssh {host} zfs list`",
    HostProblem.AUTH_FAILED: "check the user and identity_file of host {host} (its authorized_keys), e.g."
                             " `ssh -i IDENTITY USER@{host} zfs list`",
    HostProblem.HOST_KEY_UNKNOWN: "verify {host}'s host key out of band, then add it to the host's"
                                  " known_hosts file",
    HostProblem.HOST_KEY_CHANGED: "find out why {host}'s host key changed before trusting the new one",
    HostProblem.ZFS_NOT_FOUND: "install zfs on {host} or set its zfs_command (e.g. [sudo, -n, zfs])",
    HostProblem.PERMISSION_DENIED: "let the user run zfs on {host} (zfs allow, or zfs_command:"
                                   " [sudo, -n, zfs])",
}


@dataclass(slots=True)
class ObservedState:
    hosts: dict[str, HostFacts] = field(default_factory=dict)
    unavailable: dict[str, HostUnavailable] = field(default_factory=dict)

    def dataset(self, host: str, name: str) -> Dataset | None:
        facts = self.hosts.get(host)
        return facts.datasets.get(name) if facts else None

    def exists(self, host: str, name: str) -> bool:
        facts = self.hosts.get(host)
        return facts is not None and facts.exists(name)
