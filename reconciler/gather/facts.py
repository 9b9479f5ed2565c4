"""Gather the observed ZFS state: one ``zfs list`` per host (of the subtrees the config can
touch), holds only where userrefs > 0.

Hosts are gathered in parallel threads, through the executors the caller opened
(``transport.hosts.open_executors``); a host that fails lands in
``ObservedState.unavailable`` with a typed reason and never stops the others.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from reconciler.codes import HostProblem
from reconciler.config.models import Config
from reconciler.domain.actions import LARGE_BLOCKS_PROPERTY, MAX_ARGV_BYTES, sized_groups
from reconciler.domain.names import is_within
from reconciler.domain.observed import Dataset, HostFacts, HostUnavailable, ObservedState
from reconciler.errors import ConfigError, GatherError, HostError, ReconcileError, clip
from reconciler.gather.parse import LIST_TYPES, holds_argv, list_argv, parse_zfs_holds, parse_zfs_list
from reconciler.planning.selection import filter_roots
from reconciler.transport.interface import CommandResult, Executor, zfs_as_root

NOT_FOUND_HINTS = ("command not found", "no such file or directory", "not found")
PERMISSION_HINTS = ("permission denied", "password is required", "a terminal is required",
                    "is not in the sudoers file", "not allowed to execute", "may not run sudo",
                    "insufficient privileges")


def gather(config: Config, executors: Mapping[str, Executor],
           host_names: Iterable[str] | None = None) -> ObservedState:
    """Facts of ``host_names`` (default: every configured host), gathered in parallel
    through ``executors``: the caller's, which it opened and closes (gathering never
    builds an executor, so one connection per host serves gathering and applying)."""
    names = list(config.hosts) if host_names is None else list(dict.fromkeys(host_names))
    unknown = [n for n in names if n not in config.hosts]
    if unknown:
        raise ConfigError(f"unknown host(s): {', '.join(unknown)} (configured: {', '.join(config.hosts)})")
    missing = [n for n in names if n not in executors]
    if missing:
        raise ValueError(f"gather: no executor for host(s) {', '.join(missing)}")
    state = ObservedState()
    roots = listing_roots(config)
    marks = large_block_roots(config)
    items = [(n, executors[n], roots.get(n), marks.get(n)) for n in names]
    for name, outcome in gather_parallel(items, config.settings.parallel_hosts):
        if isinstance(outcome, HostFacts):
            outcome.zfs_as_root = zfs_as_root(executors[name])
            state.hosts[name] = outcome
        else:
            state.unavailable[name] = outcome
    return state


def listing_roots(config: Config) -> dict[str, list[str]]:
    """Per host, the subtrees the configuration can touch: what the source filters select
    and the targets' roots, nested ones left out (their ancestor's listing holds them).
    Gathering lists only these, so a host's unrelated datasets cost nothing."""
    wanted: dict[str, set[str]] = {}
    for entry in config.filesystems:
        wanted.setdefault(entry.host, set()).update(filter_roots(entry))
        for target in entry.replicate_to:
            wanted.setdefault(target.host, set()).add(target.root)
    roots: dict[str, list[str]] = {}
    for host, paths in wanted.items():
        kept: list[str] = []
        for path in sorted(paths):  # an ancestor sorts before its descendants
            if not any(is_within(path, root) for root in kept):
                kept.append(path)
        roots[host] = kept
    return roots


def large_block_roots(config: Config) -> dict[str, list[str]]:
    """Per host, the roots of the targets that ask for plain streams (compressed: false, not
    raw): their replicas' large-blocks mark is read (one ``zfs get`` per such host), since
    OpenZFS refuses a plain incremental onto a replica received with large blocks. A
    configuration without such targets costs nothing."""
    wanted: dict[str, set[str]] = {}
    for entry in config.filesystems:
        for target in entry.replicate_to:
            if not target.large_blocks:
                wanted.setdefault(target.host, set()).add(target.root)
    return {host: sorted(roots) for host, roots in wanted.items()}


def gather_parallel(items: list[tuple[str, Executor, list[str] | None, list[str] | None]], parallel: int = 16
                    ) -> Iterator[tuple[str, HostFacts | HostUnavailable]]:
    """(host, facts or the reason it is unavailable) in the given order, ``parallel`` hosts at
    a time (``settings.parallel_hosts``). Each item: host, executor, the roots to list (None:
    everything) and the roots whose large-blocks marks to read (None: none)."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=min(len(items), parallel),
                            thread_name_prefix="gather") as pool:
        futures = [(name, pool.submit(gather_host_or_reason, executor, name, roots, marks))
                   for name, executor, roots, marks in items]
        for name, future in futures:
            yield name, future.result()


def gather_host_or_reason(executor: Executor, host: str, roots: list[str] | None = None,
                          marks: list[str] | None = None) -> HostFacts | HostUnavailable:
    try:
        facts = gather_host(executor, host, roots)
        if marks:
            fill_large_blocks(executor, host, facts.datasets, marks)
        return facts
    except HostError as exc:  # the transport's failure or what gathering found
        return HostUnavailable(host, exc.code, str(exc))
    except ReconcileError as exc:
        return HostUnavailable(host, HostProblem.COMMAND_FAILED, f"host {host!r}: {clip(str(exc))}")
    except Exception as exc:  # one host's surprise must not hide the others' facts
        return HostUnavailable(host, HostProblem.COMMAND_FAILED,
                               f"host {host!r}: {type(exc).__name__}: {clip(str(exc))}")


def gather_host(executor: Executor, host: str | None = None, roots: list[str] | None = None) -> HostFacts:
    """One host's datasets, snapshots and bookmarks (the subtrees of ``roots``, or all);
    hold tags for held snapshots. When a root does not exist (yet), the whole host is
    listed instead: the plan then sees which of its parents exist."""
    name = host if host is not None else executor.host
    scope = tuple(roots) if roots else None
    result = executor.run(list_argv() if scope is None else [*list_argv(), "-r", *scope])
    if not result.ok and scope is not None and only_vanished(result.stderr):
        scope = None
        result = executor.run(list_argv())
    if not result.ok:
        raise command_failure(name, result)
    datasets = parse_zfs_list(result.stdout, name)
    fill_holds(executor, name, datasets)
    return HostFacts(name, datasets, scope)


def list_datasets(executor: Executor, host: str, names: Iterable[str], *, snapshots: bool = True
                  ) -> dict[str, Dataset]:
    """These datasets of one host as they are now, with their snapshots, bookmarks and hold
    tags: one ``zfs list -d 1`` for all of them (argv-batched); ``snapshots=False``: their
    bookmarks only (no snapshot is listed, so none is there). Missing ones are absent: zfs
    lists the others and names each missing one on stderr."""
    wanted = sorted(set(names))
    found: dict[str, Dataset] = {}
    for batch in batches(wanted, MAX_ARGV_BYTES):
        result = executor.run(dataset_list_argv(batch, snapshots))
        if not result.ok and not only_vanished(result.stderr):
            raise command_failure(host, result)
        listed = parse_zfs_list(result.stdout, host)
        found.update((n, listed[n]) for n in batch if n in listed)
    fill_holds(executor, host, found)
    return found


def dataset_list_argv(datasets: Sequence[str], snapshots: bool = True) -> list[str]:
    """Gathering's listing restricted to these datasets (depth 1: their own snapshots and
    bookmarks; their child datasets are listed too and ignored); without ``snapshots``,
    the same columns for the datasets and their bookmarks."""
    types = LIST_TYPES if snapshots else "filesystem,volume,bookmark"
    return [*list_argv(types), "-d", "1", *datasets]


def fill_holds(executor: Executor, host: str, datasets: dict[str, Dataset]) -> None:
    """Hold tags for every held snapshot, ``zfs holds`` batched within argv limits."""
    held = {f"{ds.name}@{snap.name}": snap
            for ds in datasets.values() for snap in ds.snapshots if snap.userrefs}
    for batch in batches(list(held), MAX_ARGV_BYTES):
        result = executor.run(holds_argv(batch))
        if not result.ok and not only_vanished(result.stderr):
            raise command_failure(host, result)
        for full_name, tags in parse_zfs_holds(result.stdout, host).items():
            snap = held.get(full_name)
            if snap is None:
                raise GatherError(host, HostProblem.BAD_OUTPUT,
                                  f"zfs holds listed {full_name!r}, which was not asked for")
            snap.holds = tags


def large_blocks_argv(roots: Sequence[str]) -> list[str]:
    """The datasets below ``roots`` whose large-blocks mark is set (by ``zfs recv -o``: a
    local value; snapshots show it as inherited and are left out by ``-s local``)."""
    return ["zfs", "get", "-H", "-p", "-r", "-s", "local", "-t", "filesystem,volume", "-o", "name,value",
            LARGE_BLOCKS_PROPERTY, *roots]


def fill_large_blocks(executor: Executor, host: str, datasets: dict[str, Dataset], roots: list[str]) -> None:
    """Set ``large_blocks`` on the datasets below ``roots`` (True where marked, else False);
    a root that does not exist yet is no error (nothing below it was received)."""
    for ds in datasets.values():
        if any(is_within(ds.name, root) for root in roots):
            ds.large_blocks = False
    for batch in batches(roots, MAX_ARGV_BYTES):
        result = executor.run(large_blocks_argv(batch))
        if not result.ok and not only_vanished(result.stderr):
            raise command_failure(host, result)
        for lineno, line in enumerate(result.stdout.splitlines(), 1):
            name, tab, value = line.partition("\t")
            listed = name in datasets or any(is_within(name, root) for root in batch)
            if not tab or "\t" in value or not listed:
                raise GatherError(host, HostProblem.BAD_OUTPUT,
                                  f"invalid zfs get output at line {lineno}: '{clip(line, 200)}'")
            if name in datasets and value == "on":
                datasets[name].large_blocks = True


def written_argv(snapshots: Sequence[str]) -> list[str]:
    return ["zfs", "list", "-H", "-p", "-t", "snapshot", "-o", "name,written", *snapshots]


def snapshot_written(executor: Executor, host: str, snapshots: Iterable[str]) -> dict[str, int]:
    """``dataset@snapshot`` -> bytes written since the previous snapshot, for these
    snapshots (named: listing a dataset's every snapshot costs ~4 ms each in an emulated
    guest, 24 s for 5,000): one ``zfs list`` per argv batch. Apply sizes incremental sends
    with it after the snapshot phase instead of one ``zfs send -nP`` each. A snapshot that
    is gone and unparsable lines are left out."""
    sizes: dict[str, int] = {}
    for batch in batches(sorted(set(snapshots)), MAX_ARGV_BYTES):
        result = executor.run(written_argv(batch))
        if not result.ok and not only_vanished(result.stderr):
            raise command_failure(host, result)
        for line in result.stdout.splitlines():
            name, tab, value = line.partition("\t")
            if tab and value.isdigit():
                sizes[name] = int(value)
    return sizes


def batches(names: list[str], max_bytes: int) -> list[list[str]]:
    """Split ``names`` into argv-sized groups (each name costs its length plus a separator)."""
    return sized_groups(names, lambda name: len(name.encode()) + 1, max_bytes)


def only_vanished(stderr: str) -> bool:
    """A snapshot destroyed between ``zfs list`` and ``zfs holds`` is not a failure."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return bool(lines) and all(line.endswith("dataset does not exist") for line in lines)


def command_failure(host: str, result: CommandResult) -> GatherError:
    """Turn a failed zfs call into a typed GatherError (zfs_not_found, permission_denied, ...).
    What the host printed and the command line (a holds batch is long) are clipped."""
    stderr = result.stderr.strip()
    lowered = stderr.lower()
    command = clip(shlex.join(result.argv))
    detail = clip(stderr.splitlines()[-1]) if stderr else "(no error output)"
    if result.returncode == 127 or (any(h in lowered for h in NOT_FOUND_HINTS) and "dataset" not in lowered):
        return GatherError(host, HostProblem.ZFS_NOT_FOUND, f"zfs command not found: {result.argv[0]!r} "
                           f"(exit {result.returncode}: {detail}); check zfs_command")
    if result.returncode == 126 or any(h in lowered for h in PERMISSION_HINTS):
        return GatherError(host, HostProblem.PERMISSION_DENIED,
                           f"permission denied running {command!r}: {detail} (check zfs_command, sudo rules"
                           " or 'zfs allow' delegation)")
    return GatherError(host, HostProblem.COMMAND_FAILED,
                       f"{command!r} failed with exit {result.returncode}: {detail}")
