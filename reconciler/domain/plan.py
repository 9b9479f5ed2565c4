"""The plan: ordered actions, conflicts as values, per-filesystem explanations, fingerprint."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler import __version__
from reconciler.codes import MetadataPath
from reconciler.domain.actions import Action, DestroyAction, action_from_json
from reconciler.wording import plural

FORMAT_VERSION = 1
NOW_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# The top-level keys the plan's ``digest`` covers, with every action: all that decides what
# ``apply --plan`` runs and against which facts, configuration and tool it is checked.
DIGEST_KEYS = ("format_version", "tool_version", "now", "selection", "fingerprint", "config_digest")

# Conflict codes (DESIGN.md, safety invariant 5).

# Which side of the rule from zrepl's history applies to a filesystem's source pruning.


@dataclass(frozen=True, slots=True)
class Conflict:
    code: str
    host: str
    dataset: str
    message: str
    fix: str = ""  # a suggested manual fix
    source_host: str = ""
    source_dataset: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "host": self.host, "dataset": self.dataset,
                "message": self.message, "fix": self.fix,
                "source": {"host": self.source_host, "dataset": self.source_dataset}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Conflict:
        src = d.get("source") or {}
        return cls(d["code"], d["host"], d["dataset"], d["message"], d.get("fix", ""),
                   src.get("host", ""), src.get("dataset", ""))


@dataclass(frozen=True, slots=True)
class SnapshotVerdict:
    """Why one snapshot (or bookmark, ``#name``) stays or goes: the ``--explain`` line."""

    name: str
    keep: bool
    reason: str  # e.g. "grid 24x1h: bucket 3 (oldest)", "held (tags: x)", "unmanaged", ...


@dataclass(frozen=True, slots=True)
class FilesystemReport:
    """Everything the plan knows about one managed dataset on one host (source or target)."""

    host: str
    dataset: str
    role: str  # "source" | "target"
    policy: str
    prune_rule: str  # a PruneRule (sources); "" for targets
    prune_rule_why: str  # one sentence saying why that case applies
    verdicts: tuple[SnapshotVerdict, ...] = ()
    warnings: tuple[str, ...] = ()  # e.g. snapshots destroyed unreplicated
    # Snapshots the keep rules would destroy but a safety rule keeps (unmanaged, held,
    # incremental base, newest on target): always listed, never kept silently.
    protected: tuple[SnapshotVerdict, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "dataset": self.dataset, "role": self.role,
                "policy": self.policy, "prune_rule": self.prune_rule,
                "prune_rule_why": self.prune_rule_why, "warnings": list(self.warnings),
                "snapshots": [{"name": v.name, "keep": v.keep, "reason": v.reason}
                              for v in self.verdicts],
                "protected": [{"name": v.name, "reason": v.reason} for v in self.protected]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FilesystemReport:
        return cls(d["host"], d["dataset"], d["role"], d["policy"], d["prune_rule"],
                   d["prune_rule_why"],
                   tuple(SnapshotVerdict(s["name"], s["keep"], s["reason"]) for s in d["snapshots"]),
                   tuple(d.get("warnings", ())),
                   tuple(SnapshotVerdict(p["name"], True, p["reason"]) for p in d.get("protected", ())))


@dataclass(frozen=True, slots=True)
class MetadataRoute:
    """How apply runs one host's cursor bookmarks and destroys (channel programs): ``path`` is a
    ``codes.MetadataPath``; ``why`` says why in one phrase. Only snapshot destroys go into a
    channel program: OpenZFS 2.1's ``zfs.sync.destroy`` takes no bookmark (it answers ENOENT,
    measured), so bookmark destroys stay one command each on either path."""

    host: str
    path: str
    why: str
    bookmarks: int  # bookmarks to create
    snapshot_destroys: int  # snapshot names to destroy
    bookmark_destroys: int  # bookmark names to destroy (always one command each)
    pools: tuple[str, ...] = ()

    def describe(self) -> str:
        """The plan's line for this host."""
        work = ", ".join(part for part in (plural(self.bookmarks, "bookmark") if self.bookmarks else "",
                                           plural(self.snapshot_destroys, "snapshot destroy")
                                           if self.snapshot_destroys else "") if part)
        marks = plural(self.bookmark_destroys, "bookmark destroy") if self.bookmark_destroys else ""
        if self.path == MetadataPath.CHANNEL_PROGRAM and work:
            rest = f"; {marks} one command each" if marks else ""
            return (f"metadata on {self.host}: one channel program per pool (zfs program, "
                    f"{plural(len(self.pools), 'pool')}) for {work}{rest}; per-command if refused"
                    f" ({self.why})")
        everything = ", ".join(p for p in (work, marks) if p)
        return f"metadata on {self.host}: per-command for {everything} ({self.why})"

    def explanation(self) -> str:
        """The ``--explain`` line under ``describe()``: what the path means."""
        if self.path == MetadataPath.CHANNEL_PROGRAM:
            return ("channel_programs is auto and zfs runs as root: each pool's cursor bookmarks and snapshot"
                    " destroys run as ONE atomic zfs program (one txg); if zfs refuses it, the host goes back"
                    " to one command per action; bookmarks are destroyed one command each (OpenZFS 2.1's"
                    " zfs.sync.destroy takes no bookmark)")
        return ("one zfs command per bookmark and per destroy (batched per dataset); a channel program needs"
                " zfs as root (SSH user root, or zfs_command with sudo or doas) and channel_programs: auto")

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "path": self.path, "reason": self.why, "bookmarks": self.bookmarks,
                "snapshot_destroys": self.snapshot_destroys, "bookmark_destroys": self.bookmark_destroys,
                "pools": list(self.pools)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MetadataRoute:
        return cls(d["host"], d["path"], d.get("reason", ""), d.get("bookmarks", 0),
                   d.get("snapshot_destroys", 0), d.get("bookmark_destroys", 0), tuple(d.get("pools", ())))


@dataclass(frozen=True, slots=True)
class PlanSelection:
    """The ``--host``/``--filesystem``/``--as`` a plan was computed for (empty: everything), as given."""

    hosts: tuple[str, ...] = ()
    filesystems: tuple[str, ...] = ()
    as_host: str | None = None  # ``--as``: one host's own part

    @classmethod
    def of(cls, hosts: Iterable[str] | None, filesystems: Iterable[str] | None,
           as_host: str | None = None) -> PlanSelection:
        return cls(tuple(hosts or ()), tuple(filesystems or ()), as_host)

    def to_json(self) -> dict[str, Any]:
        """``as`` only when given, so a plan without it reads as it always did."""
        document: dict[str, Any] = {"hosts": list(self.hosts), "filesystems": list(self.filesystems)}
        if self.as_host is not None:
            document["as"] = self.as_host
        return document


def canonical_json(value: Any) -> bytes:
    """One spelling per JSON value (sorted keys, no spaces, ASCII): what digests hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def config_digest(config_json: str) -> str:
    """``sha256:<hex>`` of a configuration's canonical model dump (the plan records it, so
    ``apply --plan`` can tell a changed configuration from changed facts)."""
    return "sha256:" + hashlib.sha256(config_json.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Plan:
    now: datetime
    fingerprint: str
    actions: tuple[Action, ...]
    conflicts: tuple[Conflict, ...] = ()
    filesystems: tuple[FilesystemReport, ...] = ()
    unavailable: tuple[tuple[str, str], ...] = ()  # (host, reason)
    warnings: tuple[str, ...] = ()
    format_version: int = FORMAT_VERSION
    selection: PlanSelection = PlanSelection()
    config_digest: str = ""
    tool_version: str = __version__
    # Per host with bookmark or destroy actions: channel program or one command each.
    metadata: tuple[MetadataRoute, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    def summary(self) -> dict[str, int]:
        counts = Counter(a.kind for a in self.actions)
        out = {"snapshot": counts["snapshot"], "send": counts["send"],
               "destroy": sum(len(a.snapshots) for a in self.actions if isinstance(a, DestroyAction))}
        for kind, n in sorted(counts.items()):
            if kind not in out:
                out[kind] = n
        out["conflicts"] = len(self.conflicts)
        return out

    def to_json(self, *, lazy: bool = False) -> dict[str, Any]:
        """The Plan JSON document. With ``lazy``, ``actions`` and ``filesystems`` are iterators
        that build each entry as it is consumed, so a writer can stream a plan of a million
        destroys without holding all of it as dicts at once."""
        actions = (a.to_json() for a in self.actions)
        filesystems = (f.to_json() for f in self.filesystems)
        return {
            **self.header(),
            "actions": actions if lazy else list(actions),
            "conflicts": [c.to_json() for c in self.conflicts],
            "summary": self.summary(),
            "filesystems": filesystems if lazy else list(filesystems),
            "unavailable": [{"host": h, "reason": r} for h, r in self.unavailable],
            "warnings": list(self.warnings),
            "metadata": [m.to_json() for m in self.metadata],
        }

    def header(self) -> dict[str, Any]:
        """The DIGEST_KEYS of the Plan JSON, in the order they are written. (The ``digest``
        itself is the JSON writer's: it covers the actions as written, render.json.write_json.)"""
        return {"format_version": self.format_version, "tool_version": self.tool_version,
                "now": self.now.astimezone(UTC).strftime(NOW_FORMAT),
                "selection": self.selection.to_json(), "fingerprint": self.fingerprint,
                "config_digest": self.config_digest}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Plan:
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported plan format_version {d.get('format_version')!r}")
        now = datetime.strptime(d["now"], NOW_FORMAT).replace(tzinfo=UTC)
        selection = d.get("selection") or {}
        return cls(
            now=now, fingerprint=d["fingerprint"],
            selection=PlanSelection.of(selection.get("hosts"), selection.get("filesystems"),
                                       selection.get("as")),
            config_digest=d.get("config_digest", ""), tool_version=d.get("tool_version", ""),
            actions=tuple(action_from_json(a) for a in d["actions"]),
            conflicts=tuple(Conflict.from_json(c) for c in d.get("conflicts", ())),
            filesystems=tuple(FilesystemReport.from_json(f) for f in d.get("filesystems", ())),
            unavailable=tuple((u["host"], u["reason"]) for u in d.get("unavailable", ())),
            warnings=tuple(d.get("warnings", ())),
            metadata=tuple(MetadataRoute.from_json(m) for m in d.get("metadata", ())),
        )
