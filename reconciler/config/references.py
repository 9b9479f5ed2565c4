"""Cross references that need the whole file: undefined hosts and policies, a dataset claimed
by two entries of one host, replicas that an entry selects again, and two source hosts
writing the same names under one target root.

These read the plain data (not the models), so they are found even when some entries have
problems of their own: one pass reports everything. Filters are compared by probing only
the paths where a decision can change, so thousands of entries stay fast.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from reconciler.config.document import Document
from reconciler.config.wording import Path, did_you_mean
from reconciler.domain.names import filter_decision, is_within, lineage
from reconciler.errors import ConfigProblem

_T = TypeVar("_T")
_K = TypeVar("_K", bound=Hashable)
_BELOW = "/\uffff"  # a child name no filter key can contain: stands for "any other child"


def _deciding_key(filter_: Mapping[str, bool], dataset: str) -> str | None:
    best_key, best = None, (-1, False)
    for key in filter_:
        subtree = key.endswith("<")
        path = key[:-1] if subtree else key
        if dataset == path or (subtree and dataset.startswith(path + "/")):
            rank = (len(path), not subtree)
            if rank > best:
                best_key, best = key, rank
    return best_key


def filters_overlap(a: Mapping[str, bool], b: Mapping[str, bool]) -> str | None:
    """The first dataset both filters select, or None.

    Decisions only change at key paths, so it is enough to probe every key path and,
    for each, one child that no key names (``path/\\uffff``). The result is either a
    dataset name or ``path/\\uffff`` meaning "the children of path".
    """
    paths = sorted({key.removesuffix("<") for key in (*a, *b)})
    for path in paths:
        for probe in (path, path + _BELOW):
            if filter_decision(a, probe) and filter_decision(b, probe):
                return probe
    return None


def _describe_dataset(probe: str) -> str:
    return f"the children of {probe.removesuffix(_BELOW)}" if probe.endswith(_BELOW) else probe


@dataclass(frozen=True, slots=True)
class _Entry:
    index: int
    host: str | None
    filter: dict[str, bool]
    policy: str | None
    targets: list[tuple[int, str | None, str | None]]  # (index, host, root)


def _entries(data: dict[str, Any]) -> list[_Entry]:
    raw = data.get("filesystems")
    entries: list[_Entry] = []
    for index, item in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(item, dict):
            continue
        filter_raw = item.get("filter")
        filter_ = ({k: v for k, v in filter_raw.items() if isinstance(v, bool)}
                   if isinstance(filter_raw, dict) else {})
        targets_raw = item.get("replicate_to")
        targets = [(j, _str_or_none(t.get("host")), _str_or_none(t.get("root")))
                   for j, t in enumerate(targets_raw if isinstance(targets_raw, list) else [])
                   if isinstance(t, dict)]
        entries.append(_Entry(index, _str_or_none(item.get("host")), filter_,
                              _str_or_none(item.get("policy")), targets))
    return entries


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def cross_reference_problems(document: Document) -> list[ConfigProblem]:
    data = document.data
    entries = _entries(data)
    problems = _undefined_references(document, entries)
    problems += _overlapping_claims(document, entries)
    problems += _replicas_selected_again(document, entries)
    problems += _colliding_targets(document, entries)
    return problems


def _undefined_references(document: Document, entries: list[_Entry]) -> list[ConfigProblem]:
    hosts, policies = document.data.get("hosts"), document.data.get("policies")
    problems: list[ConfigProblem] = []

    def check(name: str | None, defined: Any, what: str, path: Path) -> None:
        if name is None or not isinstance(defined, dict) or name in defined:
            return
        known = ", ".join(sorted(defined)) or "none"
        plural = {"host": "hosts", "policy": "policies"}[what]
        problems.append(document.problem(
            path, f"undefined {what} {name!r}{did_you_mean(name, defined)} (defined {plural}: {known})"))

    for entry in entries:
        base: Path = ("filesystems", entry.index)
        check(entry.host, hosts, "host", (*base, "host"))
        check(entry.policy, policies, "policy", (*base, "policy"))
        for j, host, _root in entry.targets:
            check(host, hosts, "host", (*base, "replicate_to", j, "host"))
    return problems


def shared_selections(filters: Sequence[Mapping[str, bool]]) -> list[tuple[str, list[int]]]:
    """Each probe dataset selected by two or more of ``filters``, with their indexes.

    The probes are those of ``filters_overlap`` over all filters at once; each probe is
    only checked against filters with a key at or above it (the only ones that can
    select it), so thousands of entries stay fast.
    """
    owners: dict[str, list[int]] = {}
    for index, filter_ in enumerate(filters):
        for path in {key.removesuffix("<") for key in filter_}:
            owners.setdefault(path, []).append(index)
    shared: list[tuple[str, list[int]]] = []
    for path in sorted(owners):
        candidates = sorted({i for ancestor in lineage(path) for i in owners.get(ancestor, [])})
        for probe in (path, path + _BELOW):
            selecting = [i for i in candidates if filter_decision(filters[i], probe)]
            if len(selecting) > 1:
                shared.append((probe, selecting))
    return shared


def _by(items: Iterable[_T], key: Callable[[_T], _K]) -> dict[_K, list[_T]]:
    groups: dict[_K, list[_T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def _overlapping_claims(document: Document, entries: list[_Entry]) -> list[ConfigProblem]:
    """A dataset may belong to one entry per host: two policies on one dataset fight each other."""
    problems: list[ConfigProblem] = []
    reported: set[tuple[int, int]] = set()
    for host, group in _by(entries, lambda e: e.host).items():
        if host is None:
            continue
        for probe, selecting in shared_selections([e.filter for e in group]):
            earlier = group[selecting[0]]
            for later in (group[i] for i in selecting[1:]):
                if (earlier.index, later.index) in reported:
                    continue
                reported.add((earlier.index, later.index))
                problems.append(_claim_problem(document, host, probe, earlier, later))
    return problems


def _claim_problem(document: Document, host: str, probe: str,
                   earlier: _Entry, later: _Entry) -> ConfigProblem:
    first = ("filesystems", earlier.index, "filter", _deciding_key(earlier.filter, probe) or "")
    second = ("filesystems", later.index, "filter", _deciding_key(later.filter, probe) or "")
    verb = "are" if probe.endswith(_BELOW) else "is"
    return document.problem(second, (
        f"{_describe_dataset(probe)} on host {host!r} {verb} claimed by "
        f"filesystems[{earlier.index}] ({document.where(first)}) and "
        f"filesystems[{later.index}] ({document.where(second)}): "
        "a dataset must belong to one entry per host"), key=True)


def _replicas_selected_again(document: Document, entries: list[_Entry]) -> list[ConfigProblem]:
    """A target root where an entry on the target host selects the replicas (``root/<source>``).

    That entry's policy would snapshot and prune the replicas (the sends then find the
    target diverged), and when it is the sending entry itself each run replicates the replica.
    """
    problems: list[ConfigProblem] = []
    on_host = {host: _KeyPaths(group) for host, group in _by(entries, lambda e: e.host).items() if host}
    for entry in entries:
        for j, host, root in entry.targets:
            if host is None or root is None or host not in on_host:
                continue
            found = on_host[host].selecting_replicas(entry, root)
            if found is not None:
                problems.append(_replica_problem(document, entry, j, host, root, *found))
    return problems


class _KeyPaths:
    """The filter key paths of the entries on one host, to find those that reach into a root."""

    def __init__(self, group: list[_Entry]) -> None:
        self.owners: dict[str, list[_Entry]] = {}
        for entry in group:
            for path in {key.removesuffix("<") for key in entry.filter}:
                self.owners.setdefault(path, []).append(entry)
        self.paths = sorted(self.owners)

    def near(self, root: str) -> list[_Entry]:
        """Entries with a key at or above ``root`` or below it: the only ones that can select below it."""
        found = {e.index: e for path in lineage(root) for e in self.owners.get(path, [])}
        start = bisect.bisect_left(self.paths, root + "/")
        for path in self.paths[start:bisect.bisect_left(self.paths, root + "0")]:  # "0" follows "/"
            found.update((e.index, e) for e in self.owners[path])
        return [found[i] for i in sorted(found)]

    def selecting_replicas(self, source: _Entry, root: str) -> tuple[_Entry, str] | None:
        """The first entry selecting a replica under ``root`` of what ``source`` selects, and its dataset."""
        for other in self.near(root):
            probe = replica_overlap(source.filter, root, other.filter)
            if probe is not None:
                return other, probe
        return None


def replica_overlap(source: Mapping[str, bool], root: str, target: Mapping[str, bool]) -> str | None:
    """A dataset ``d`` that ``source`` selects while ``target`` selects its replica ``root/d``, or None.

    Decisions only change at key paths, so it is enough to probe the source's key paths
    and the target filter's key paths below ``root`` (made relative), each also with one
    child that no key names, as ``filters_overlap`` does.
    """
    below = {path[len(root) + 1:] for path in (key.removesuffix("<") for key in target)
             if path != root and is_within(path, root)}
    for path in sorted({key.removesuffix("<") for key in source} | below):
        for probe in (path, path + _BELOW):
            if filter_decision(source, probe) and filter_decision(target, f"{root}/{probe}"):
                return probe
    return None


def _replica_problem(document: Document, entry: _Entry, j: int, host: str, root: str,
                     other: _Entry, probe: str) -> ConfigProblem:
    where: Path = ("filesystems", entry.index, "replicate_to", j, "root")
    source, replica = _describe_dataset(probe), _describe_dataset(f"{root}/{probe}")
    onto = f"onto its own host {host!r}" if entry.host == host else f"to host {host!r}"
    exclusion = _working_exclusion(other, root, probe, keep_source=other is entry,
                                   where="" if other is entry else " there")
    if other is entry:
        return document.problem(where, (
            f"replicating {source} {onto} under {root!r} writes {replica}, which this entry's filter "
            "selects again: each run would replicate the replica; use a root outside the selected "
            f"datasets{exclusion}"))
    key = _deciding_key(other.filter, f"{root}/{probe}") or ""
    return document.problem(where, (
        f"replicating {source} {onto} under {root!r} writes {replica}, which filesystems[{other.index}] "
        f"selects on that host ({document.where(('filesystems', other.index, 'filter', key))}): its policy "
        f"{other.policy!r} would snapshot and prune the replica; use a root outside that entry's datasets"
        f"{exclusion}"))


def _working_exclusion(entry: _Entry, root: str, probe: str, *, keep_source: bool, where: str) -> str:
    """`` or exclude it[where] with "ROOT<": false`` when that key would really exclude the
    replica (a more specific key may select it anyway) without excluding the source; else ""."""
    key = f"{root}<"
    if key in entry.filter:
        return ""
    changed = {**entry.filter, key: False}
    if filter_decision(changed, f"{root}/{probe}") or (keep_source and not filter_decision(changed, probe)):
        return ""
    return f" or exclude it{where} with \"{key}\": false"


def _colliding_targets(document: Document, entries: list[_Entry]) -> list[ConfigProblem]:
    """Two source hosts replicating the same dataset names under one target root overwrite each other."""
    problems = _repeated_targets(document, entries)
    uses = [(entry, j, host, root) for entry in entries for j, host, root in entry.targets
            if host is not None and root is not None]
    reported: set[tuple[str | None, str | None, str, str]] = set()
    for (host, root), group in _by(uses, lambda use: (use[2], use[3])).items():
        firsts: dict[int, tuple[_Entry, int, str, str]] = {}
        for use in group:
            firsts.setdefault(use[0].index, use)  # an entry's first use of this target
        users = list(firsts.values())
        for probe, selecting in shared_selections([use[0].filter for use in users]):
            first_entry, first_j = users[selecting[0]][0], users[selecting[0]][1]
            for entry, j, _h, _r in (users[i] for i in selecting[1:]):
                pair = (first_entry.host, entry.host, host, root)
                if entry.host == first_entry.host or pair in reported:
                    continue  # same source host: _overlapping_claims keeps its datasets apart
                reported.add(pair)
                first: Path = ("filesystems", first_entry.index, "replicate_to", first_j)
                problems.append(document.problem(("filesystems", entry.index, "replicate_to", j), (
                    f"hosts {first_entry.host!r} and {entry.host!r} both replicate "
                    f"{_describe_dataset(probe)} to {host}:{root} "
                    f"(also at {document.where(first)}): give each source host its own root")))
    return problems


def _repeated_targets(document: Document, entries: list[_Entry]) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    for entry in entries:
        seen: dict[tuple[str | None, str | None], int] = {}
        for j, host, root in entry.targets:
            if (host, root) in seen and host is not None and root is not None:
                first: Path = ("filesystems", entry.index, "replicate_to", seen[(host, root)])
                problems.append(document.problem(
                    ("filesystems", entry.index, "replicate_to", j),
                    f"target {host}:{root} is listed twice (first at {document.where(first)})"))
            seen.setdefault((host, root), j)
    return problems
