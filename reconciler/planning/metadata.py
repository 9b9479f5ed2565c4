"""Which path apply takes for each host's cursor bookmarks and destroys, pure (channel programs).

A host whose zfs runs as root (the fact ``HostFacts.zfs_as_root``, gathered from its
executor) and whose configuration says ``channel_programs: auto`` gets one ``zfs program``
per pool for its bookmarks and snapshot destroys; every other host one command per
action. Apply falls back to one command per action when zfs refuses the program.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from reconciler.codes import MetadataPath
from reconciler.config.models import Config, LocalHost, wrapped_as_root
from reconciler.domain.actions import Action, BookmarkAction, DestroyAction
from reconciler.domain.observed import ObservedState
from reconciler.domain.plan import MetadataRoute


@dataclass(slots=True)
class _Work:
    bookmarks: int = 0
    snapshot_destroys: int = 0
    bookmark_destroys: int = 0
    pools: set[str] = field(default_factory=set)


def pool_of(dataset: str) -> str:
    """The pool a dataset lives in: its first component (what ``zfs program`` is run on)."""
    return dataset.split("/", 1)[0]


def metadata_routes(config: Config, observed: ObservedState, actions: Iterable[Action]
                    ) -> tuple[MetadataRoute, ...]:
    """One route per host that has bookmark or destroy actions, in order of first appearance."""
    work: dict[str, _Work] = {}
    for action in actions:
        if isinstance(action, BookmarkAction):
            entry = work.setdefault(action.host, _Work())
            entry.bookmarks += 1
            entry.pools.add(pool_of(action.dataset))
        elif isinstance(action, DestroyAction):
            entry = work.setdefault(action.host, _Work())
            marks = sum(1 for name in action.snapshots if name.startswith("#"))
            entry.bookmark_destroys += marks
            entry.snapshot_destroys += len(action.snapshots) - marks
            if len(action.snapshots) > marks:
                entry.pools.add(pool_of(action.dataset))
    routes = []
    for host, entry in work.items():
        path, why = route(config, observed, host)
        if not (entry.bookmarks or entry.snapshot_destroys):
            path = MetadataPath.PER_COMMAND  # only bookmark destroys: zfs.sync.destroy takes none
            why = "bookmark destroys only: OpenZFS 2.1 channel programs cannot destroy bookmarks"
        routes.append(MetadataRoute(host, path, why, entry.bookmarks, entry.snapshot_destroys,
                                    entry.bookmark_destroys, tuple(sorted(entry.pools))))
    return tuple(routes)


def route(config: Config, observed: ObservedState, host: str) -> tuple[MetadataPath, str]:
    """(path, why) for one host, from its configuration and its gathered facts."""
    settings = config.hosts.get(host)
    facts = observed.hosts.get(host)
    if settings is None or facts is None:
        return MetadataPath.PER_COMMAND, "no facts gathered for this host"
    if settings.channel_programs == "off":
        return MetadataPath.PER_COMMAND, "channel_programs: off"
    if wrapped_as_root(settings.zfs_command):
        who = f"zfs_command runs {settings.zfs_command[0]}"
    elif isinstance(settings, LocalHost):
        who = "the controller runs as root"
    else:
        who = f"SSH user {settings.user}"
    if not facts.zfs_as_root:
        not_root = ("the controller is not root and zfs_command has no sudo or doas"
                    if isinstance(settings, LocalHost) else f"user {settings.user} is not root")
        return MetadataPath.PER_COMMAND, not_root
    return MetadataPath.CHANNEL_PROGRAM, who
