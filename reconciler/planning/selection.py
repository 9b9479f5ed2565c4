"""Which datasets each ``filesystems`` entry selects, with zrepl's filter semantics.

zrepl's ``DatasetMapFilter``: a key ``tank/a<`` matches ``tank/a`` and its whole subtree,
a key ``tank/a`` matches only that dataset. The most specific matching key (the longest
path) decides; for the same path an explicit entry overrides a subtree entry. A dataset
no key matches is not selected; ``false`` excludes. Filesystems and volumes qualify.

``--host`` and ``--filesystem`` narrow a plan (``Restriction``). A source dataset is
selected whole (its snapshots, its source pruning and every replication pair) when its
host and name pass; a replication pair alone (sends into the target, target pruning,
the pair's cursor bookmark on the source) when its source OR target host passes and its
source OR target dataset name passes. So ``--host backup`` covers every replica backup
receives, and ``--filesystem pool/nas/tank/a`` the replication into that target dataset.

``--as H`` is a host's own part, for per-host runs of one shared configuration (a fleet:
every host runs ``run --as <itself>``). Ownership: a source host owns its source datasets
and every replication pair they send from, so H's part is its source datasets whole (their
snapshots, source pruning, cursor bookmarks and holds) and each of their pairs (the sends,
the replica's pruning, aborting a stale partial receive, the placeholders above a new
replica), and nothing of the pairs H only receives: their source's run does those. Every
dataset is thereby acted on by one host's run (a replica by its source's), so two hosts'
runs never act on the same dataset; the one exception is an empty placeholder that pairs of
two source hosts need (the same target root), which either run may create and the other
then finds (apply counts "already exists" as done). A host that is the source of nothing
has an empty part. Loading already refuses a dataset that is both a source and a replica.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace

from reconciler.codes import ConflictCode
from reconciler.config.models import Config, FilesystemEntry, Policy, Target
from reconciler.domain.names import ancestors, check_dataset_name, filter_decision, is_within
from reconciler.domain.observed import Dataset, ObservedState, unavailable_fix, unavailable_reason
from reconciler.domain.plan import Conflict
from reconciler.errors import UsageError


@dataclass(frozen=True, slots=True)
class Selected:
    """One source dataset chosen by one ``filesystems`` entry."""

    host: str
    dataset: Dataset
    entry_index: int
    entry: FilesystemEntry
    policy_name: str
    policy: Policy
    # The replicate_to targets whose (source, target) pairs the plan covers.
    targets: tuple[Target, ...] = ()
    # False when only some pairs are selected (``--host <target host>``, ``--filesystem
    # <target dataset>``): no snapshots are taken and the source is not pruned.
    source_side: bool = True

    @property
    def name(self) -> str:
        return self.dataset.name


@dataclass(slots=True)
class Selection:
    selected: list[Selected] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unavailable_hosts: set[str] = field(default_factory=set)


def wanted_by_restriction(dataset: str, filesystems: Collection[str] | None) -> bool:
    """``--filesystem``: the dataset equals or lies below one of the names."""
    return filesystems is None or any(is_within(dataset, name) for name in filesystems)


def filter_roots(entry: FilesystemEntry) -> list[str]:
    """The paths of the entry's filter keys that include (``tank<`` -> ``tank``)."""
    return [key.rstrip("<") for key, value in entry.filter.items() if value]


def may_select_within(filter_map: Mapping[str, bool], name: str) -> bool:
    """Could the filter select ``name`` or a dataset below it (whatever datasets exist)?

    A dataset's decision depends only on the keys on its path, so it suffices to try
    ``name``, every key path below it, and a fresh child of each of them.
    """
    candidates = [name, name + "/\0"]
    for key in filter_map:
        path = key.rstrip("<")
        if is_within(path, name):
            candidates += [path, path + "/\0"]
    return any(filter_decision(filter_map, candidate) for candidate in candidates)


def target_may_contain(entry: FilesystemEntry, target: Target, name: str) -> bool:
    """Could a target dataset of this pair equal or lie below ``name``?"""
    if is_within(target.root, name):  # the root itself or one of its ancestors
        return any(entry.filter.values())
    prefix = target.root + "/"
    return name.startswith(prefix) and may_select_within(entry.filter, name[len(prefix):])


@dataclass(frozen=True, slots=True)
class Restriction:
    """``--host``/``--as`` and ``--filesystem`` (None: unrestricted); see the module docstring."""

    hosts: frozenset[str] | None = None
    filesystems: tuple[str, ...] | None = None
    # ``--as``: ``hosts`` is that one host, and a pair is chosen by its source host only.
    owned_only: bool = False

    @classmethod
    def of(cls, hosts: Collection[str] | None, filesystems: Collection[str] | None,
           as_host: str | None = None) -> Restriction:
        names = None if filesystems is None else tuple(filesystems)
        if as_host is not None:
            return cls(frozenset((as_host,)), names, owned_only=True)
        return cls(None if hosts is None else frozenset(hosts), names)

    def pair_hosts_ok(self, source_host: str, target_host: str) -> bool:
        """A pair by its hosts: either end for ``--host``, its source (the owner) for ``--as``."""
        return self.host_ok(source_host) if self.owned_only else self.host_ok(source_host, target_host)

    def host_ok(self, *hosts: str) -> bool:
        return self.hosts is None or any(h in self.hosts for h in hosts)

    def name_ok(self, *datasets: str) -> bool:
        return self.filesystems is None or any(wanted_by_restriction(d, self.filesystems) for d in datasets)

    def source(self, host: str, dataset: str) -> bool:
        """The source dataset is selected whole (snapshots, source pruning, every pair)."""
        return self.host_ok(host) and self.name_ok(dataset)

    def pair(self, host: str, dataset: str, target: Target) -> bool:
        """The (source, target) pair is selected (sends, target pruning, its cursor)."""
        return self.pair_hosts_ok(host, target.host) and self.name_ok(dataset, target.target_dataset(dataset))

    # Without facts (which hosts to gather, which flags make sense): what the config allows.

    def entry_source_may_match(self, entry: FilesystemEntry) -> bool:
        return self.host_ok(entry.host) and (
            self.filesystems is None or any(may_select_within(entry.filter, n) for n in self.filesystems))

    def pair_may_match(self, entry: FilesystemEntry, target: Target) -> bool:
        return self.pair_hosts_ok(entry.host, target.host) and (
            self.filesystems is None
            or any(may_select_within(entry.filter, n) or target_may_contain(entry, target, n)
                   for n in self.filesystems))

    def touches(self, entry: FilesystemEntry) -> bool:
        """Could this entry contribute anything to the plan?"""
        return self.entry_source_may_match(entry) or any(self.pair_may_match(entry, t)
                                                          for t in entry.replicate_to)

    def hosts_needed(self, config: Config) -> set[str]:
        """The hosts whose facts a plan needs: sources of touched entries and their pairs' targets."""
        needed: set[str] = set()
        for entry in config.filesystems:
            whole = self.entry_source_may_match(entry)
            targets = [t.host for t in entry.replicate_to if whole or self.pair_may_match(entry, t)]
            if whole or targets:
                needed.add(entry.host)
                needed.update(targets)
        return needed


def unmanaged_filesystems(config: Config, hosts: Collection[str] | None,
                          filesystems: Collection[str], as_host: str | None = None) -> list[str]:
    """The ``--filesystem`` names no entry (source or replication target) could select."""
    return [name for name in filesystems
            if not any(Restriction.of(hosts, [name], as_host).touches(entry) for entry in config.filesystems)]


def describe_managed(config: Config) -> str:
    """What the configuration manages, one ``;``-separated item per ``filesystems`` entry."""
    items = []
    for entry in config.filesystems:
        keys = ", ".join(key for key, value in entry.filter.items() if value) or "(nothing)"
        excluded = [key for key, value in entry.filter.items() if not value]
        text = f"{entry.host}: {keys}" + (f" (except {', '.join(excluded)})" if excluded else "")
        for target in entry.replicate_to:
            text += f" -> {target.host}:{target.root}/..."
        items.append(text)
    return "; ".join(items)


def select(config: Config, observed: ObservedState, *, hosts: Collection[str] | None = None,
           filesystems: Collection[str] | None = None, as_host: str | None = None) -> Selection:
    """Every selected source dataset, in (host, dataset) order; claims by two entries are conflicts.

    Entries the restriction cannot touch are skipped without looking at their hosts, so
    a host that was not gathered because nothing selected needs it is not "unavailable".
    """
    restriction = Restriction.of(hosts, filesystems, as_host)
    result = Selection()
    if as_host is not None:
        result.warnings += _owns_nothing(config, as_host)
    claims: dict[tuple[str, str], Selected] = {}
    matched: set[str] = set()  # --filesystem names that selected something
    looked: set[str] = set()  # hosts whose datasets were looked at
    for index, entry in enumerate(config.filesystems):
        if not restriction.touches(entry):
            continue
        if entry.host in observed.unavailable or entry.host not in observed.hosts:
            result.unavailable_hosts.add(entry.host)
            result.conflicts += _source_unavailable(observed, entry, index, restriction)
            continue
        looked.add(entry.host)
        datasets = observed.hosts[entry.host].datasets
        if restriction.host_ok(entry.host):
            _warn_missing_filter_paths(entry, index, datasets, filesystems, result.warnings)
        policy = config.policies[entry.policy]
        for name in sorted(datasets):
            if not filter_decision(entry.filter, name):
                continue
            whole = restriction.source(entry.host, name)
            targets = tuple(entry.replicate_to) if whole else tuple(
                t for t in entry.replicate_to if restriction.pair(entry.host, name, t))
            if not whole and not targets:
                continue
            matched.update(_names_matched(restriction, name, targets))
            chosen = Selected(entry.host, datasets[name], index, entry, entry.policy, policy, targets, whole)
            first = claims.get((entry.host, name))
            if first is not None:
                result.conflicts.append(_claimed_twice(first, chosen))
                continue
            claims[(entry.host, name)] = chosen
    claimed_twice = {(c.host, c.dataset) for c in result.conflicts if c.code == ConflictCode.CLAIMED_TWICE}
    if restriction.hosts is not None or restriction.filesystems is not None:
        _add_parent_pairs(observed, claims, claimed_twice, result.warnings)
    result.selected = sorted((s for key, s in claims.items() if key not in claimed_twice),
                             key=lambda s: (s.host, s.name))
    _warn_unmatched_filesystems(config, restriction, matched, looked, result.warnings)
    return result


def _add_parent_pairs(observed: ObservedState, claims: dict[tuple[str, str], Selected],
                      claimed_twice: set[tuple[str, str]], warnings: list[str]) -> None:
    """A restricted plan also sends the managed parents a new replica needs.

    Without them the plan would create a placeholder where the parent's own replica
    belongs (``--filesystem tank/a/b`` while ``tank/a`` is managed but not yet on the
    target), and that empty placeholder would later block the parent's first full send
    (it would need ``recv -F``). The unrestricted plan sends the parent anyway.
    """
    for item in list(claims.values()):
        for target in item.targets:
            if target.host not in observed.hosts or observed.exists(target.host,
                                                                    target.target_dataset(item.name)):
                continue
            for parent in reversed(ancestors(item.name)):
                if observed.exists(target.host, target.target_dataset(parent)):
                    break
                key = (item.host, parent)
                dataset = observed.dataset(item.host, parent)
                if dataset is None or key in claimed_twice or not filter_decision(item.entry.filter, parent):
                    continue
                chosen = claims.get(key)
                if chosen is not None and target in chosen.targets:
                    if dataset.snapshots or chosen.source_side:
                        continue
                    targets = chosen.targets  # selected for its pairs only, but has nothing to send
                else:
                    targets = (*chosen.targets, target) if chosen is not None else (target,)
                # A parent without any snapshot yet is also snapshotted by its schedule (it
                # has nothing to prune), as the unrestricted plan would: else only a
                # placeholder could go there, and it would block the parent's first send.
                source_side = (chosen.source_side if chosen else False) or not dataset.snapshots
                claims[key] = Selected(item.host, dataset, item.entry_index, item.entry, item.policy_name,
                                       item.policy, targets, source_side)
                also = "snapshots and sends" if not dataset.snapshots else "sends"
                warnings.append(f"selection: also {also} {item.host}:{parent} to {target.host}:"
                                f"{target.target_dataset(parent)}, which {target.target_dataset(item.name)}"
                                " needs as parent (a placeholder there would block its own replication)")


def _owns_nothing(config: Config, host: str) -> list[str]:
    """``--as`` a host that is the source of no entry: say whose runs reconcile what it receives."""
    if any(entry.host == host for entry in config.filesystems):
        return []
    senders = sorted({e.host for e in config.filesystems if any(t.host == host for t in e.replicate_to)})
    receives = (f"; the replicas it receives are reconciled by the runs of their source host"
                f" ({', '.join(senders)})") if senders else ""
    return [f"--as {host}: {host} is the source of no filesystems entry, so its own part is empty{receives}"]


def _names_matched(restriction: Restriction, name: str, targets: tuple[Target, ...]) -> list[str]:
    if restriction.filesystems is None:
        return []
    datasets = [name, *(t.target_dataset(name) for t in targets)]
    return [n for n in restriction.filesystems if any(is_within(d, n) for d in datasets)]


def _warn_unmatched_filesystems(config: Config, restriction: Restriction, matched: set[str],
                                looked: set[str], warnings: list[str]) -> None:
    """A ``--filesystem`` the config manages but no existing dataset matched: say so."""
    for name in restriction.filesystems or ():
        if name in matched:
            continue
        narrowed = replace(restriction, filesystems=(name,))
        hosts = sorted({e.host for e in config.filesystems if narrowed.touches(e)} & looked)
        if hosts:
            warnings.append(f"--filesystem {name}: no selected dataset on {', '.join(hosts)} is or lies"
                            " below it, and no replica of one would; nothing is planned for it")


def _warn_missing_filter_paths(entry: FilesystemEntry, index: int, datasets: Mapping[str, Dataset],
                               filesystems: Collection[str] | None, warnings: list[str]) -> None:
    for key in entry.filter:
        path = key.rstrip("<")
        if path not in datasets and wanted_by_restriction(path, filesystems):
            warnings.append(f"filesystems[{index}] ({entry.host}): filter entry {key!r} names a dataset"
                            " that does not exist")


def _source_unavailable(observed: ObservedState, entry: FilesystemEntry, index: int,
                        restriction: Restriction) -> list[Conflict]:
    """One conflict per filter root the plan would have covered (``dataset`` stays one name)."""
    problem = observed.unavailable.get(entry.host)
    return [Conflict(ConflictCode.HOST_UNAVAILABLE, entry.host, root,
                     f"source host {entry.host} is unavailable ({unavailable_reason(problem)});"
                     f" nothing is planned for {entry.host}:{root} or below it (filesystems[{index}])",
                     unavailable_fix(entry.host, problem),
                     entry.host, root)
            for root in _unavailable_roots(entry, restriction)]


def _unavailable_roots(entry: FilesystemEntry, restriction: Restriction) -> list[str]:
    """The filter roots, narrowed to the ``--filesystem`` names that lie below one."""
    roots = filter_roots(entry) or [key.rstrip("<") for key in entry.filter]
    if restriction.filesystems is None:
        return roots
    narrowed: set[str] = set()
    for root in roots:
        for name in restriction.filesystems:
            if is_within(root, name):
                narrowed.add(root)
            elif is_within(name, root) and may_select_within(entry.filter, name):
                narrowed.add(name)
    return sorted(narrowed) or roots


def _claimed_twice(first: Selected, second: Selected) -> Conflict:
    return Conflict(
        ConflictCode.CLAIMED_TWICE, first.host, first.name,
        f"{first.host}:{first.name} is selected by filesystems[{first.entry_index}] (policy"
        f" {first.policy_name}) and filesystems[{second.entry_index}] (policy {second.policy_name});"
        " it is left alone until exactly one entry selects it",
        f"exclude it in one entry, e.g. add \"{first.name}\": false to the filter of"
        f" filesystems[{second.entry_index}]",
        first.host, first.name)


def check_selection(config: Config, hosts: list[str] | None,
                    filesystems: list[str] | None = None, as_host: str | None = None) -> None:
    """Refuse flags that cannot select anything, before any host is contacted: a plan for
    them would be empty (or blame hosts that were never asked) instead of saying why."""
    if as_host is not None and hosts:
        raise UsageError(f"--as {as_host} and --host exclude each other: --as is a host's own part (for a"
                         " run on that host), --host everything that touches a host; give one")
    if as_host is not None and as_host not in config.hosts:
        raise UsageError(f"--as {as_host}: not a host of the configuration "
                         f"(configured: {', '.join(config.hosts)})")
    unknown = [h for h in hosts or () if h not in config.hosts]
    if unknown:
        raise UsageError(f"--host {', '.join(unknown)}: not a host of the configuration "
                         f"(configured: {', '.join(config.hosts)})")
    for name in filesystems or ():
        try:
            check_dataset_name(name)
        except ValueError as exc:
            raise UsageError(f"--filesystem: {exc}") from None
    unmanaged = unmanaged_filesystems(config, hosts, filesystems or (), as_host)
    if as_host is not None:
        hosts = [as_host]
    if unmanaged:
        on_hosts = (f" in the part host {as_host} owns (its source datasets and their replicas)"
                    if as_host is not None else f" on host {', '.join(hosts)}" if hosts else "")
        elsewhere = ([n for n in unmanaged if not unmanaged_filesystems(config, None, [n])]
                     if hosts else [])
        where = f"in {as_host}'s own part" if as_host is not None else f"on {', '.join(hosts or ())}"
        hint = f" ({', '.join(elsewhere)} is managed, but not {where})" if elsewhere else ""
        raise UsageError(
            f"--filesystem {', '.join(unmanaged)}: not managed by the configuration{on_hosts}: no"
            f" filesystems entry selects it or a dataset below it, and it is not a replica (target"
            f" dataset) of one{hint}. Give a source dataset or a target dataset; managed:"
            f" {describe_managed(config)}")
