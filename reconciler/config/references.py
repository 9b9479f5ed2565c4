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
    strips: dict[int, str]  # replicate_to index -> strip, for the targets that have one


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
        strips = {j: t["strip"] for j, t in enumerate(targets_raw if isinstance(targets_raw, list) else [])
                  if isinstance(t, dict) and isinstance(t.get("strip"), str)}
        entries.append(_Entry(index, _str_or_none(item.get("host")), filter_,
                              _str_or_none(item.get("policy")), targets, strips))
    return entries


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def cross_reference_problems(document: Document) -> list[ConfigProblem]:
    data = document.data
    entries = _entries(data)
    problems = _undefined_references(document, entries)
    problems += _overlapping_claims(document, entries)
    problems += _selected_outside_strip(document, entries)
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
            mapping = Mapping_(root, entry.strips.get(j))
            found = on_host[host].selecting_replicas(entry, mapping)
            if found is not None:
                problems.append(_replica_problem(document, entry, j, host, mapping, *found))
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

    def selecting_replicas(self, source: _Entry, mapping: Mapping_) -> tuple[_Entry, str] | None:
        """The first entry selecting a replica under the root of what ``source`` selects, and its dataset."""
        for other in self.near(mapping.root):
            probe = replica_overlap(source.filter, mapping.root, other.filter, mapping.strip)
            if probe is not None:
                return other, probe
        return None


@dataclass(frozen=True, slots=True)
class Mapping_:
    """``Target.target_dataset`` on plain data: a source dataset's replica under ``root``,
    with ``strip`` left out of its name (``strip`` itself maps to ``root``)."""

    root: str
    strip: str | None = None

    def maps(self, source: str) -> bool:
        return self.strip is None or is_within(source, self.strip)

    def replica(self, source: str) -> str:
        if self.strip is None:
            return f"{self.root}/{source}"
        return self.root + source[len(self.strip):]

    def source(self, below_root: str) -> str:
        """The source of ``root/<below_root>``."""
        return below_root if self.strip is None else f"{self.strip}/{below_root}"


def replica_overlap(source: Mapping[str, bool], root: str, target: Mapping[str, bool],
                    strip: str | None = None) -> str | None:
    """A dataset ``d`` that ``source`` selects while ``target`` selects its replica (``root/d``,
    or with ``strip`` ``root/<d below strip>``), or None.

    Decisions only change at key paths, so it is enough to probe the source's key paths
    and the target filter's key paths below ``root`` (made relative), each also with one
    child that no key names, as ``filters_overlap`` does.
    """
    mapping = Mapping_(root, strip)
    below = {mapping.source(path[len(root) + 1:]) for path in (key.removesuffix("<") for key in target)
             if path != root and is_within(path, root)}
    paths = {key.removesuffix("<") for key in source} | below | ({strip} if strip else set())
    for path in sorted(paths):
        for probe in (path, path + _BELOW):
            if (mapping.maps(probe) and filter_decision(source, probe)
                    and filter_decision(target, mapping.replica(probe))):
                return probe
    return None


def _replica_problem(document: Document, entry: _Entry, j: int, host: str, mapping: Mapping_,
                     other: _Entry, probe: str) -> ConfigProblem:
    where: Path = ("filesystems", entry.index, "replicate_to", j, "root")
    root = mapping.root
    source, replica = _describe_dataset(probe), _describe_dataset(mapping.replica(probe))
    onto = f"onto its own host {host!r}" if entry.host == host else f"to host {host!r}"
    exclusion = _working_exclusion(other, mapping, probe, keep_source=other is entry,
                                   where="" if other is entry else " there")
    if other is entry:
        return document.problem(where, (
            f"replicating {source} {onto} under {root!r} writes {replica}, which this entry's filter "
            "selects again: each run would replicate the replica; use a root outside the selected "
            f"datasets{exclusion}"))
    key = _deciding_key(other.filter, mapping.replica(probe)) or ""
    return document.problem(where, (
        f"replicating {source} {onto} under {root!r} writes {replica}, which filesystems[{other.index}] "
        f"selects on that host ({document.where(('filesystems', other.index, 'filter', key))}): its policy "
        f"{other.policy!r} would snapshot and prune the replica; use a root outside that entry's datasets"
        f"{exclusion}"))


def _working_exclusion(entry: _Entry, mapping: Mapping_, probe: str, *, keep_source: bool, where: str) -> str:
    """`` or exclude it[where] with "ROOT<": false`` when that key would really exclude the
    replica (a more specific key may select it anyway) without excluding the source; else ""."""
    key = f"{mapping.root}<"
    if key in entry.filter:
        return ""
    changed = {**entry.filter, key: False}
    if filter_decision(changed, mapping.replica(probe)) or (
            keep_source and not filter_decision(changed, probe)):
        return ""
    return f" or exclude it{where} with \"{key}\": false"


@dataclass(frozen=True, slots=True)
class _Use:
    """One ``replicate_to`` item of an entry: where its replicas land."""

    entry: _Entry
    j: int
    host: str
    mapping: Mapping_

    @property
    def path(self) -> Path:
        return ("filesystems", self.entry.index, "replicate_to", self.j)

    def replica_filter(self) -> dict[str, bool]:
        """The entry's filter as it selects replica names (keys outside ``strip`` never decide
        inside it; including ones are refused by ``_selected_outside_strip``)."""
        mapped: dict[str, bool] = {}
        for key, value in self.entry.filter.items():
            path = key.removesuffix("<")
            if self.mapping.maps(path):
                mapped[self.mapping.replica(path) + key[len(path):]] = value
        return mapped

    def source_of(self, replica_probe: str) -> str:
        """The source dataset (probe) whose replica ``replica_probe`` is."""
        root = self.mapping.root
        if replica_probe == root or replica_probe.startswith(root + _BELOW):
            return (self.mapping.strip or "") + replica_probe[len(root):]
        return self.mapping.source(replica_probe[len(root) + 1:])


def _colliding_targets(document: Document, entries: list[_Entry]) -> list[ConfigProblem]:
    """Two sources whose replicas would get the same name on one host overwrite each other:
    two source hosts with the same names under one root, or (with ``strip``) two datasets
    whose names differ only in what is stripped."""
    problems = _repeated_targets(document, entries)
    uses = [_Use(entry, j, host, Mapping_(root, entry.strips.get(j))) for entry in entries
            for j, host, root in entry.targets if host is not None and root is not None]
    reported: set[tuple[object, ...]] = set()
    for host, group in _by(uses, lambda use: use.host).items():
        for probe, selecting in shared_selections([use.replica_filter() for use in group]):
            first = group[selecting[0]]
            for use in (group[i] for i in selecting[1:]):
                problem = _collision(document, host, probe, first, use, reported)
                if problem is not None:
                    problems.append(problem)
    return problems


def _collision(document: Document, host: str, probe: str, first: _Use, use: _Use,
               reported: set[tuple[object, ...]]) -> ConfigProblem | None:
    source_first, source = first.source_of(probe), use.source_of(probe)
    if first.entry is not use.entry and first.entry.host == use.entry.host and source_first == source:
        return None  # one dataset claimed by two entries: _overlapping_claims says so
    if first.entry is use.entry and first.j == use.j:
        return None
    classic = (first.mapping == use.mapping and first.mapping.strip is None
               and first.entry.host != use.entry.host)
    key: tuple[object, ...] = ((first.entry.host, use.entry.host, host, first.mapping.root) if classic
                               else (first.path, use.path))
    if key in reported or (first.mapping == use.mapping and first.entry is use.entry):
        return None
    reported.add(key)
    if classic:  # the same names from two hosts under one root
        return document.problem(use.path, (
            f"hosts {first.entry.host!r} and {use.entry.host!r} both replicate "
            f"{_describe_dataset(source)} to {host}:{first.mapping.root} "
            f"(also at {document.where(first.path)}): give each source host its own root"))
    return document.problem(use.path, (
        f"{use.entry.host}:{_describe_dataset(source)} and"
        f" {first.entry.host}:{_describe_dataset(source_first)}"
        f" (replicated by filesystems[{first.entry.index}].replicate_to[{first.j}],"
        f" {document.where(first.path)}) would both be replicated to {host}:{_describe_dataset(probe)}:"
        " give each its own root (or strip less)"))


def _selected_outside_strip(document: Document, entries: list[_Entry]) -> list[ConfigProblem]:
    """With ``strip``, every dataset the filter selects must lie within it: others have no
    replica name."""
    problems: list[ConfigProblem] = []
    for entry in entries:
        for j, strip in entry.strips.items():
            outside = [key for key, value in entry.filter.items()
                       if value and not is_within(key.removesuffix("<"), strip)]
            if outside:
                problems.append(document.problem(
                    ("filesystems", entry.index, "replicate_to", j, "strip"),
                    f"strip {strip!r} must be a prefix of every dataset the filter selects, but"
                    f" {', '.join(repr(k) for k in outside)} selects datasets outside it"
                    f" ({document.where(('filesystems', entry.index, 'filter', outside[0]))}): they would"
                    " have no replica name; strip a shorter prefix"))
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
