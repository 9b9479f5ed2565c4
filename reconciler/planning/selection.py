"""Which datasets each ``filesystems`` entry selects, with zrepl's filter semantics.

zrepl's ``DatasetMapFilter``: a key ``tank/a<`` matches ``tank/a`` and its whole subtree,
a key ``tank/a`` matches only that dataset. The most specific matching key (the longest
path) decides; for the same path an explicit entry overrides a subtree entry. A dataset
no key matches is not selected; ``false`` excludes. Filesystems and volumes qualify.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from reconciler.config.models import Config, FilesystemEntry, Policy
from reconciler.domain.observed import Dataset, ObservedState
from reconciler.domain.plan import HOST_UNAVAILABLE, Conflict

CLAIMED_TWICE = "claimed_twice"


@dataclass(frozen=True, slots=True)
class Selected:
    """One source dataset chosen by one ``filesystems`` entry."""

    host: str
    dataset: Dataset
    entry_index: int
    entry: FilesystemEntry
    policy_name: str
    policy: Policy

    @property
    def name(self) -> str:
        return self.dataset.name


@dataclass(slots=True)
class Selection:
    selected: list[Selected] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unavailable_hosts: set[str] = field(default_factory=set)


def is_within(dataset: str, root: str) -> bool:
    """``dataset`` is ``root`` or lies below it."""
    return dataset == root or dataset.startswith(root + "/")


def filter_decision(filter_map: Mapping[str, bool], dataset: str) -> bool:
    """zrepl's filter: the most specific matching key decides; no match means not selected."""
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


def entry_selected(entry_index: int, entry: FilesystemEntry, hosts: Collection[str] | None) -> bool:
    return hosts is None or entry.host in hosts


def wanted_by_restriction(dataset: str, filesystems: Collection[str] | None) -> bool:
    """``--filesystem``: the dataset equals or lies below one of the names."""
    return filesystems is None or any(is_within(dataset, name) for name in filesystems)


def filter_roots(entry: FilesystemEntry) -> list[str]:
    """The paths of the entry's filter keys that include (``tank<`` -> ``tank``)."""
    return [key.rstrip("<") for key, value in entry.filter.items() if value]


def select(config: Config, observed: ObservedState, *, hosts: Collection[str] | None = None,
           filesystems: Collection[str] | None = None) -> Selection:
    """Every selected source dataset, in (host, dataset) order; claims by two entries are conflicts."""
    result = Selection()
    claims: dict[tuple[str, str], Selected] = {}
    for index, entry in enumerate(config.filesystems):
        if not entry_selected(index, entry, hosts):
            continue
        if entry.host in observed.unavailable or entry.host not in observed.hosts:
            result.unavailable_hosts.add(entry.host)
            result.conflicts.append(_source_unavailable(observed, entry))
            continue
        datasets = observed.hosts[entry.host].datasets
        _warn_missing_filter_paths(entry, index, datasets, filesystems, result.warnings)
        policy = config.policies[entry.policy]
        for name in sorted(datasets):
            if not wanted_by_restriction(name, filesystems) or not filter_decision(entry.filter, name):
                continue
            chosen = Selected(entry.host, datasets[name], index, entry, entry.policy, policy)
            first = claims.get((entry.host, name))
            if first is not None:
                result.conflicts.append(_claimed_twice(first, chosen))
                continue
            claims[(entry.host, name)] = chosen
    claimed_twice = {(c.host, c.dataset) for c in result.conflicts if c.code == CLAIMED_TWICE}
    result.selected = sorted((s for key, s in claims.items() if key not in claimed_twice),
                             key=lambda s: (s.host, s.name))
    return result


def _warn_missing_filter_paths(entry: FilesystemEntry, index: int, datasets: Mapping[str, Dataset],
                               filesystems: Collection[str] | None, warnings: list[str]) -> None:
    for key in entry.filter:
        path = key.rstrip("<")
        if path not in datasets and wanted_by_restriction(path, filesystems):
            warnings.append(f"filesystems[{index}] ({entry.host}): filter entry {key!r} names a dataset"
                            " that does not exist")


def _source_unavailable(observed: ObservedState, entry: FilesystemEntry) -> Conflict:
    problem = observed.unavailable.get(entry.host)
    why = f"{problem.code}: {problem.message}" if problem else "no facts gathered"
    roots = ", ".join(filter_roots(entry)) or ", ".join(entry.filter)
    return Conflict(HOST_UNAVAILABLE, entry.host, roots,
                    f"source host {entry.host} is unavailable ({why}); nothing is planned for {roots}",
                    f"check connectivity and credentials, e.g. `ssh {entry.host} zfs list`",
                    entry.host, roots)


def _claimed_twice(first: Selected, second: Selected) -> Conflict:
    return Conflict(
        CLAIMED_TWICE, first.host, first.name,
        f"{first.host}:{first.name} is selected by filesystems[{first.entry_index}] (policy"
        f" {first.policy_name}) and filesystems[{second.entry_index}] (policy {second.policy_name});"
        " it is left alone until exactly one entry selects it",
        f"exclude it in one entry, e.g. add \"{first.name}\": false to the filter of"
        f" filesystems[{second.entry_index}]",
        first.host, first.name)
