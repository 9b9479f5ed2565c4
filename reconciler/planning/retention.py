"""zrepl's keep rules with zrepl's exact semantics: which snapshots would zrepl destroy?

A port of zrepl's ``pruning`` package (``pruning.go``, ``keep_grid.go``,
``keep_last_n.go``, ``keep_regex.go``, ``keep_not_replicated.go``) and of
``pruning/retentiongrid/retentiongrid.go``:

- A snapshot is destroyed only when EVERY rule would destroy it; an empty rule list
  keeps everything (``PruneSnapshots`` returns nothing to remove).
- ``grid``: snapshots whose name does not match the rule's regex are not kept by it.
  "now" is the creation time of the youngest matching snapshot. Bucket 0 is
  ``(now - len0, now]``, bucket i+1 ends where bucket i begins; each bucket keeps its
  ``keep`` OLDEST entries (newer ones are destroyed first, ``keep=all`` keeps all);
  entries newer than now are kept, entries at or beyond the far edge of the last
  bucket are destroyed. Like zrepl, the youngest match itself is destroyed when
  bucket 0 has a finite keep count and holds older entries too.
- ``last_n``: keeps the n newest matching snapshots (newest by creation, ties by
  createtxg, then by name descending as zrepl); non-matching ones are not kept by it.
  This follows zrepl after its fix for issue #691 (PR #750): the regex applies even
  when there are fewer than n snapshots.
- ``regex``: keeps snapshots whose name the regex finds a match in (Go's
  ``FindStringIndex`` = Python's ``re.search``); with ``negate`` the non-matching.
- ``not_replicated``: keeps snapshots for which ``is_replicated(snapshot)`` is False.

This module decides nothing about ``manage``, holds or the safety invariants: the
planner filters the verdicts afterwards.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Protocol

from reconciler.config.grid import GridInterval
from reconciler.config.models import KeepGrid, KeepLastN, KeepNotReplicated, KeepRegex, KeepRule
from reconciler.domain.observed import Snapshot

IsReplicated = Callable[[Snapshot], bool]

# Placement of an entry that lies in no bucket (bucket indexes are >= 0).
NEWER_THAN_NOW = -1
OLDER_THAN_GRID = -2

_MICROS = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class RetentionVerdict:
    snapshot: Snapshot
    keep: bool
    reason: str  # which rule keeps it and why, or why every rule lets it go


def _everything_replicated(snapshot: Snapshot) -> bool:
    return True


# ---------------------------------------------------------------- retention grid


@dataclass(frozen=True, slots=True)
class GridFit:
    """Result of fitting entries into a retention grid (zrepl's ``FitEntries``).

    ``bucket[i]`` is the bucket index of entry i, or ``NEWER_THAN_NOW`` /
    ``OLDER_THAN_GRID``; ``keep[i]`` says whether the grid keeps entry i;
    ``members[b]`` lists the entries of bucket b youngest first, as zrepl orders them.
    """

    now: int
    bucket: list[int]
    keep: list[bool]
    members: list[list[int]]


def fit_grid(intervals: Sequence[GridInterval], dates: Sequence[int], now: int | None = None) -> GridFit:
    """Fit entries with creation times ``dates`` (unix seconds) into the grid.

    ``now`` defaults to the youngest date, as zrepl's ``FitEntries``; passing it
    explicitly corresponds to zrepl's ``fitEntriesWithNow``. Ties in date are broken
    by position in ``dates`` exactly as zrepl's stable sorts do: among equal dates
    the entry that comes first is treated as the younger one (destroyed first).
    """
    if not intervals:
        raise ValueError("a retention grid needs at least one interval")
    count = len(dates)
    if now is None:
        now = max(dates) if count else 0
    # Bucket i is (lower[i], upper[i]] with upper[0] = now and upper[i+1] = lower[i].
    # Work in microseconds so any timedelta length compares exactly with whole seconds.
    now_us = now * 1_000_000
    negated_lowers: list[int] = []  # ascending, for bisect
    edge = now_us
    for interval in intervals:
        _check_keep_count(interval)
        edge -= interval.length // _MICROS
        negated_lowers.append(-edge)

    # zrepl sorts youngest-to-oldest with a stable sort, then walks the entries.
    order = sorted(range(count), key=lambda i: -dates[i])
    bucket = [OLDER_THAN_GRID] * count
    members: list[list[int]] = [[] for _ in intervals]
    n_buckets = len(intervals)
    for i in order:
        date_us = dates[i] * 1_000_000
        if date_us > now_us:
            bucket[i] = NEWER_THAN_NOW
            continue
        # The first bucket whose lower edge is older than the date holds it.
        b = bisect_right(negated_lowers, -date_us)
        if b < n_buckets:
            bucket[i] = b
            members[b].append(i)

    keep = [False] * count
    for i in range(count):
        if bucket[i] == NEWER_THAN_NOW:
            keep[i] = True
    for b, entries in enumerate(members):
        for i in entries[_youngest_to_drop(intervals[b], len(entries)):]:
            keep[i] = True
    return GridFit(now=now, bucket=bucket, keep=keep, members=members)


def _check_keep_count(interval: GridInterval) -> None:
    # zrepl panics on these; our config parser rejects them, so this is a programming error.
    if interval.keep is not None and interval.keep < 1:
        raise ValueError(f"grid interval keep count must be >= 1 or all, got {interval.keep}")
    if interval.length < timedelta(0):
        raise ValueError(f"grid interval length must not be negative, got {interval.length}")


def _youngest_to_drop(interval: GridInterval, size: int) -> int:
    """How many of a bucket's entries (youngest first) exceed its keep count."""
    if interval.keep is None:
        return 0
    return max(0, size - interval.keep)


# ---------------------------------------------------------------- compiled rules


class _Judgement(Protocol):
    keeps: list[bool]

    def why(self, index: int) -> str: ...


class _CompiledRule(Protocol):
    label: str

    def judge(self, snapshots: Sequence[Snapshot], is_replicated: IsReplicated) -> _Judgement: ...


def _format_span(delta: timedelta) -> str:
    """Compact human duration: 90000s -> "1d1h"; zero -> "0s"."""
    micros = delta // _MICROS
    if micros % 1_000_000:
        return f"{micros / 1_000_000:g}s"
    seconds = micros // 1_000_000
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def _regex_suffix(regex: str) -> str:
    return "" if regex in ("", ".*") else f" {regex}"


class _GridRule:
    def __init__(self, rule: KeepGrid) -> None:
        self.intervals = rule.intervals
        if not self.intervals:
            raise ValueError(f"grid {rule.grid!r} has no intervals")
        for interval in self.intervals:
            _check_keep_count(interval)
        self.regex = re.compile(rule.regex)
        self.label = f"grid {''.join(rule.grid.split())}{_regex_suffix(rule.regex)}"
        self.bucket_names = self._bucket_names()
        self.grid_span = _format_span(sum((i.length for i in self.intervals), timedelta(0)))

    def _bucket_names(self) -> list[str]:
        names = []
        start = timedelta(0)
        for b, interval in enumerate(self.intervals):
            end = start + interval.length
            where = f"{_format_span(start)}-{_format_span(end)}" if start else f"up to {_format_span(end)}"
            names.append(f"bucket {b} ({where} before newest)")
            start = end
        return names

    def judge(self, snapshots: Sequence[Snapshot], is_replicated: IsReplicated) -> _GridJudgement:
        search = self.regex.search
        matching = [i for i, snap in enumerate(snapshots) if search(snap.name)]
        # zrepl's pruner hands the rules snapshots in createtxg order; among equal
        # creation times that order decides which one the grid treats as younger.
        matching.sort(key=lambda i: snapshots[i].createtxg)
        fit = fit_grid(self.intervals, [snapshots[i].creation for i in matching])
        keeps = [False] * len(snapshots)
        for position, i in enumerate(matching):
            keeps[i] = fit.keep[position]
        return _GridJudgement(self, snapshots, matching, fit, keeps)


class _GridJudgement:
    def __init__(self, rule: _GridRule, snapshots: Sequence[Snapshot], matching: list[int],
                 fit: GridFit, keeps: list[bool]) -> None:
        self.rule = rule
        self.snapshots = snapshots
        self.matching = matching
        self.fit = fit
        self.keeps = keeps
        self._position: dict[int, int] | None = None

    def why(self, index: int) -> str:
        rule = self.rule
        if self._position is None:
            self._position = {i: p for p, i in enumerate(self.matching)}
        position = self._position.get(index)
        if position is None:
            return f"{rule.label}: name does not match {rule.regex.pattern}"
        b = self.fit.bucket[position]
        if b == NEWER_THAN_NOW:
            return f"{rule.label}: newer than the newest match"
        if b == OLDER_THAN_GRID:
            return f"{rule.label}: older than the last bucket ({rule.grid_span} before newest)"
        name = rule.bucket_names[b]
        keep = rule.intervals[b].keep
        if self.keeps[index]:
            if keep is None:
                return f"{rule.label}: {name} keeps all"
            return f"{rule.label}: {name} keeps its oldest" + ("" if keep == 1 else f" {keep}")
        kept = self.fit.members[b][-keep:] if keep else []
        names = [self.snapshots[self.matching[p]].name for p in kept]
        if len(names) == 1:
            return f"{rule.label}: {name} already keeps {names[0]}"
        return f"{rule.label}: {name} already keeps its {len(names)} oldest ({names[-1]} .. {names[0]})"


class _LastNRule:
    def __init__(self, rule: KeepLastN) -> None:
        self.count = rule.count
        self.regex = re.compile(rule.regex)
        self.label = f"last_n {rule.count}{_regex_suffix(rule.regex)}"

    def judge(self, snapshots: Sequence[Snapshot], is_replicated: IsReplicated) -> _LastNJudgement:
        search = self.regex.search
        matching = [i for i, snap in enumerate(snapshots) if search(snap.name)]
        # zrepl: youngest first by date, then by name descending; we break date ties by
        # createtxg first (the real creation order) and fall back to zrepl's name order.
        matching.sort(key=lambda i: (snapshots[i].creation, snapshots[i].createtxg, snapshots[i].name),
                      reverse=True)
        rank = [-1] * len(snapshots)
        keeps = [False] * len(snapshots)
        for position, i in enumerate(matching):
            rank[i] = position
            keeps[i] = position < self.count
        return _LastNJudgement(self, rank, keeps)


class _LastNJudgement:
    def __init__(self, rule: _LastNRule, rank: list[int], keeps: list[bool]) -> None:
        self.rule = rule
        self.rank = rank
        self.keeps = keeps

    def why(self, index: int) -> str:
        rank = self.rank[index]
        if rank < 0:
            return f"{self.rule.label}: name does not match {self.rule.regex.pattern}"
        if self.keeps[index]:
            return f"{self.rule.label}: #{rank + 1} newest"
        return f"{self.rule.label}: #{rank + 1} newest, beyond the newest {self.rule.count}"


class _RegexRule:
    def __init__(self, rule: KeepRegex) -> None:
        self.regex = re.compile(rule.regex)
        self.negate = rule.negate
        self.label = f"regex {'negate ' if rule.negate else ''}{rule.regex}"

    def judge(self, snapshots: Sequence[Snapshot], is_replicated: IsReplicated) -> _FlagJudgement:
        search = self.regex.search
        negate = self.negate
        keeps = [(search(snap.name) is None) == negate for snap in snapshots]
        if negate:
            return _FlagJudgement(keeps, f"{self.label}: name does not match", f"{self.label}: name matches")
        return _FlagJudgement(keeps, self.label, f"{self.label}: name does not match")


class _NotReplicatedRule:
    label = "not_replicated"

    def judge(self, snapshots: Sequence[Snapshot], is_replicated: IsReplicated) -> _FlagJudgement:
        keeps = [not is_replicated(snap) for snap in snapshots]
        return _FlagJudgement(keeps, "not_replicated: not yet on every target",
                              "not_replicated: already replicated")


class _FlagJudgement:
    def __init__(self, keeps: list[bool], kept_reason: str, destroyed_reason: str) -> None:
        self.keeps = keeps
        self.kept_reason = kept_reason
        self.destroyed_reason = destroyed_reason

    def why(self, index: int) -> str:
        return self.kept_reason if self.keeps[index] else self.destroyed_reason


def _compile_rule(rule: KeepRule) -> _CompiledRule:
    if isinstance(rule, KeepGrid):
        return _GridRule(rule)
    if isinstance(rule, KeepLastN):
        return _LastNRule(rule)
    if isinstance(rule, KeepRegex):
        return _RegexRule(rule)
    if isinstance(rule, KeepNotReplicated):
        return _NotReplicatedRule()
    raise TypeError(f"unknown keep rule {rule!r}")


@lru_cache(maxsize=1024)
def _compile_rules_cached(rules: tuple[KeepRule, ...]) -> tuple[_CompiledRule, ...]:
    return tuple(_compile_rule(rule) for rule in rules)


def _compile_rules(rules: Sequence[KeepRule]) -> tuple[_CompiledRule, ...]:
    """Compile regexes and grids once per distinct rule list, not once per filesystem."""
    key = tuple(rules)
    try:
        return _compile_rules_cached(key)
    except TypeError:  # an unhashable rule-like object: compile without caching
        return tuple(_compile_rule(rule) for rule in key)


# ---------------------------------------------------------------- public API


def evaluate_keep_rules(rules: Sequence[KeepRule], snapshots: Sequence[Snapshot],
                        is_replicated: IsReplicated = _everything_replicated) -> list[RetentionVerdict]:
    """One verdict per input snapshot, in input order: does any of zrepl's keep rules keep it?

    The reason of a kept snapshot names the first rule (in config order) that keeps it;
    the reason of a destroyed one says, rule by rule, why none keeps it.
    """
    if not rules:
        return [RetentionVerdict(snap, True, "no keep rules: zrepl keeps everything") for snap in snapshots]
    compiled = _compile_rules(rules)
    judgements = [rule.judge(snapshots, is_replicated) for rule in compiled]
    verdicts: list[RetentionVerdict] = []
    for index, snap in enumerate(snapshots):
        keepers = [j for j in judgements if j.keeps[index]]
        if keepers:
            verdicts.append(RetentionVerdict(snap, True, _kept_reason(index, keepers, judgements, compiled)))
        else:
            verdicts.append(RetentionVerdict(snap, False, "; ".join(j.why(index) for j in judgements)))
    return verdicts


def _kept_reason(index: int, keepers: list[_Judgement], judgements: list[_Judgement],
                 compiled: tuple[_CompiledRule, ...]) -> str:
    reason = keepers[0].why(index)
    if len(keepers) > 1:
        others = [compiled[n].label for n, j in enumerate(judgements) if j.keeps[index]][1:]
        reason += f" (also kept by {', '.join(others)})"
    return reason


def snapshots_to_destroy(rules: Sequence[KeepRule], snapshots: Sequence[Snapshot],
                         is_replicated: IsReplicated = _everything_replicated) -> list[Snapshot]:
    """The snapshots no keep rule keeps, in input order (zrepl's ``PruneSnapshots``)."""
    if not rules:
        return []
    judgements = [rule.judge(snapshots, is_replicated) for rule in _compile_rules(rules)]
    if len(judgements) == 1:
        keeps = judgements[0].keeps
        return [snap for snap, kept in zip(snapshots, keeps, strict=True) if not kept]
    kept_by_any = [any(flags) for flags in zip(*(j.keeps for j in judgements), strict=True)]
    return [snap for snap, kept in zip(snapshots, kept_by_any, strict=True) if not kept]
