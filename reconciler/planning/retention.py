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
  (zrepl's pruner, daemon/pruner/pruner.go, counts as replicated every snapshot
  older than the replication cursor's snapshot, and the cursor's snapshot itself only
  when a not_replicated rule sets ``keep_snapshot_at_cursor: false``; by default it
  does not count, so not_replicated keeps it — PairPlan.replicated does the same).
  When the cursor's snapshot is gone it counts none as replicated; with no cursor
  bookmark at all it does not prune the filesystem. That decision belongs to the
  caller's ``is_replicated``.)

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
NOT_MATCHING = -3  # a snapshot the grid's regex does not match

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
    ``members[b]`` lists the entries of bucket b youngest first, as zrepl orders them
    (only non-empty buckets appear).
    """

    now: int
    bucket: list[int]
    keep: list[bool]
    members: dict[int, list[int]]


class RetentionGrid:
    """A grid spec prepared once: each bucket's far edge as an age before "now".

    Bucket b holds the entries whose age ``now - date`` satisfies
    ``ends[b-1] <= age < ends[b]`` (zrepl: ``(now - ends[b], now - ends[b-1]]``).
    """

    def __init__(self, intervals: Sequence[GridInterval]) -> None:
        if not intervals:
            raise ValueError("a retention grid needs at least one interval")
        for interval in intervals:
            _check_interval(interval)
        whole_seconds = all(i.length % timedelta(seconds=1) == timedelta(0) for i in intervals)
        # Ages are counted in seconds, or in microseconds when a length needs them.
        self.scale = 1 if whole_seconds else 1_000_000
        unit = timedelta(seconds=1) if whole_seconds else _MICROS
        self.ends: list[int] = []
        total = 0
        for interval in intervals:
            total += interval.length // unit
            self.ends.append(total)
        self.keeps: list[int | None] = [i.keep for i in intervals]

    def fit(self, dates: Sequence[int], now: int | None = None) -> GridFit:
        """Fit entries with creation times ``dates`` (unix seconds) into the grid.

        ``now`` defaults to the youngest date, as zrepl's ``FitEntries``; passing it
        explicitly corresponds to zrepl's ``fitEntriesWithNow``. Ties in date are broken
        by position in ``dates`` exactly as zrepl's stable sorts do: among equal dates
        the entry that comes first is treated as the younger one (destroyed first).
        """
        count = len(dates)
        if now is None:
            now = max(dates) if count else 0
        ends, scale, n_buckets = self.ends, self.scale, len(self.ends)
        bucket = [OLDER_THAN_GRID] * count
        keep = [True] * count
        members: dict[int, list[int]] = {}
        # zrepl sorts youngest-to-oldest with a stable sort, then walks the entries.
        for i in sorted(range(count), key=dates.__getitem__, reverse=True):
            age = (now - dates[i]) * scale
            if age < 0:
                bucket[i] = NEWER_THAN_NOW  # entries in the future are always kept
                continue
            b = bisect_right(ends, age)
            if b < n_buckets:
                bucket[i] = b
                members.setdefault(b, []).append(i)
            else:
                keep[i] = False  # at or beyond the far edge of the last bucket
        for b, entries in members.items():
            limit = self.keeps[b]
            if limit is not None and len(entries) > limit:
                for i in entries[:len(entries) - limit]:  # the youngest go first
                    keep[i] = False
        return GridFit(now=now, bucket=bucket, keep=keep, members=members)


def fit_grid(intervals: Sequence[GridInterval], dates: Sequence[int], now: int | None = None) -> GridFit:
    """zrepl's retentiongrid ``FitEntries`` (``now`` = None) / ``fitEntriesWithNow``."""
    return RetentionGrid(intervals).fit(dates, now)


def _check_interval(interval: GridInterval) -> None:
    # zrepl panics on these; our config parser rejects them, so this is a programming error.
    if interval.keep is not None and interval.keep < 1:
        raise ValueError(f"grid interval keep count must be >= 1 or all, got {interval.keep}")
    if interval.length < timedelta(0):
        raise ValueError(f"grid interval length must not be negative, got {interval.length}")


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


def _matching_indexes(regex: re.Pattern[str], snapshots: Sequence[Snapshot]) -> list[int]:
    if regex.pattern in ("", ".*"):  # matches every name; skip the per-name search
        return list(range(len(snapshots)))
    search = regex.search
    return [i for i, snap in enumerate(snapshots) if search(snap.name)]


def _in_createtxg_order(snapshots: Sequence[Snapshot], indexes: list[int]) -> list[int]:
    """``indexes`` ordered by createtxg, as zrepl's pruner hands snapshots to the rules."""
    txgs = [snapshots[i].createtxg for i in indexes]
    if txgs == sorted(txgs):  # the input contract: already ordered (checked at C speed)
        return indexes
    return sorted(indexes, key=lambda i: snapshots[i].createtxg)


class _GridRule:
    def __init__(self, rule: KeepGrid) -> None:
        intervals = rule.intervals
        self.grid = RetentionGrid(intervals)
        self.regex = re.compile(rule.regex)
        self.label = f"grid {''.join(rule.grid.split())}{_regex_suffix(rule.regex)}"
        self.keep_counts = [i.keep for i in intervals]
        self.bucket_names = self._bucket_names(intervals)
        self.kept_reasons = [self._kept_reason(b) for b in range(len(intervals))]
        span = _format_span(sum((i.length for i in intervals), timedelta(0)))
        self.too_old_reason = f"{self.label}: older than the last bucket ({span} before newest)"
        self.no_match_reason = f"{self.label}: name does not match {rule.regex}"
        self.future_reason = f"{self.label}: newer than the newest match"

    def _bucket_names(self, intervals: Sequence[GridInterval]) -> list[str]:
        names = []
        start = timedelta(0)
        for b, interval in enumerate(intervals):
            end = start + interval.length
            where = f"{_format_span(start)}-{_format_span(end)}" if start else f"up to {_format_span(end)}"
            names.append(f"bucket {b} ({where} before newest)")
            start = end
        return names

    def _kept_reason(self, b: int) -> str:
        keep = self.keep_counts[b]
        if keep is None:
            return f"{self.label}: {self.bucket_names[b]} keeps all"
        return f"{self.label}: {self.bucket_names[b]} keeps its oldest" + ("" if keep == 1 else f" {keep}")

    def judge(self, snapshots: Sequence[Snapshot], is_replicated: IsReplicated) -> _GridJudgement:
        # Among equal creation times, createtxg order decides which one the grid
        # treats as younger (zrepl's stable sort of the pruner's createtxg-ordered list).
        matching = _in_createtxg_order(snapshots, _matching_indexes(self.regex, snapshots))
        fit = self.grid.fit([snapshots[i].creation for i in matching])
        keeps = [False] * len(snapshots)
        placement = [NOT_MATCHING] * len(snapshots)
        for position, i in enumerate(matching):
            keeps[i] = fit.keep[position]
            placement[i] = fit.bucket[position]
        return _GridJudgement(self, snapshots, matching, fit, keeps, placement)


class _GridJudgement:
    def __init__(self, rule: _GridRule, snapshots: Sequence[Snapshot], matching: list[int],
                 fit: GridFit, keeps: list[bool], placement: list[int]) -> None:
        self.rule = rule
        self.snapshots = snapshots
        self.matching = matching
        self.fit = fit
        self.keeps = keeps
        self.placement = placement
        self._already_kept: dict[int, str] = {}

    def why(self, index: int) -> str:
        b = self.placement[index]
        if b >= 0:
            return self.rule.kept_reasons[b] if self.keeps[index] else self._destroyed_in_bucket(b)
        if b == OLDER_THAN_GRID:
            return self.rule.too_old_reason
        if b == NOT_MATCHING:
            return self.rule.no_match_reason
        return self.rule.future_reason

    def _destroyed_in_bucket(self, b: int) -> str:
        reason = self._already_kept.get(b)
        if reason is None:
            keep = self.rule.keep_counts[b] or 0
            kept = self.fit.members[b][-keep:] if keep else []
            names = [self.snapshots[self.matching[p]].name for p in kept]
            head = f"{self.rule.label}: {self.rule.bucket_names[b]} already keeps"
            if len(names) == 1:
                reason = f"{head} {names[0]}"
            else:
                reason = f"{head} its {len(names)} oldest ({names[-1]} .. {names[0]})"
            self._already_kept[b] = reason
        return reason


class _LastNRule:
    def __init__(self, rule: KeepLastN) -> None:
        self.count = rule.count
        self.regex = re.compile(rule.regex)
        self.label = f"last_n {rule.count}{_regex_suffix(rule.regex)}"
        self.no_match_reason = f"{self.label}: name does not match {rule.regex}"

    def judge(self, snapshots: Sequence[Snapshot], is_replicated: IsReplicated) -> _LastNJudgement:
        newest_first = self._newest_first(snapshots, _matching_indexes(self.regex, snapshots))
        rank = [-1] * len(snapshots)
        keeps = [False] * len(snapshots)
        for position, i in enumerate(newest_first):
            rank[i] = position
        for i in newest_first[:self.count]:
            keeps[i] = True
        return _LastNJudgement(self, rank, keeps)

    @staticmethod
    def _newest_first(snapshots: Sequence[Snapshot], matching: list[int]) -> list[int]:
        # zrepl: youngest first by date, then by name descending; we break date ties by
        # createtxg first (the real creation order, DESIGN.md) and then by zrepl's name order.
        creations = [snapshots[i].creation for i in matching]
        txgs = [snapshots[i].createtxg for i in matching]
        if creations == sorted(creations) and txgs == sorted(txgs) and len(set(txgs)) == len(txgs):
            return matching[::-1]  # the common case: input in createtxg and creation order
        return sorted(matching, reverse=True,
                      key=lambda i: (snapshots[i].creation, snapshots[i].createtxg, snapshots[i].name))


class _LastNJudgement:
    def __init__(self, rule: _LastNRule, rank: list[int], keeps: list[bool]) -> None:
        self.rule = rule
        self.rank = rank
        self.keeps = keeps

    def why(self, index: int) -> str:
        rank = self.rank[index]
        if rank < 0:
            return self.rule.no_match_reason
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
        return _FlagJudgement(keeps, "not_replicated: not on every target yet, or the replication cursor's"
                                     " snapshot (keep_snapshot_at_cursor)",
                              "not_replicated: on every target (before this plan or by its sends)")


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
                        is_replicated: IsReplicated = _everything_replicated, *,
                        kept_reasons: bool = True) -> list[RetentionVerdict]:
    """One verdict per input snapshot, in input order: does any of zrepl's keep rules keep it?

    The reason of a kept snapshot names the first rule (in config order) that keeps it
    (and the labels of the other rules that keep it too); the reason of a destroyed one
    says, rule by rule, why none keeps it. Without ``kept_reasons`` a kept snapshot's reason
    is empty (a plan that explains nothing needs only the destroyed ones': most of the cost).
    """
    if not rules:
        return [RetentionVerdict(snap, True, "no keep rules: zrepl keeps everything") for snap in snapshots]
    compiled = _compile_rules(rules)
    judgements = [rule.judge(snapshots, is_replicated) for rule in compiled]
    if len(judgements) == 1:
        keeps, why = judgements[0].keeps, judgements[0].why
        return [RetentionVerdict(snap, keeps[i], why(i) if kept_reasons or not keeps[i] else "")
                for i, snap in enumerate(snapshots)]
    labels = [rule.label for rule in compiled]
    verdicts: list[RetentionVerdict] = []
    append = verdicts.append
    all_flags = zip(*(j.keeps for j in judgements), strict=True)
    for index, (snap, flags) in enumerate(zip(snapshots, all_flags, strict=True)):
        if True in flags:
            if not kept_reasons:
                append(RetentionVerdict(snap, True, ""))
                continue
            first = flags.index(True)
            reason = judgements[first].why(index)
            if flags.count(True) > 1:
                others = [labels[n] for n in range(first + 1, len(flags)) if flags[n]]
                reason = f"{reason} (also kept by {', '.join(others)})"
            append(RetentionVerdict(snap, True, reason))
        else:
            append(RetentionVerdict(snap, False, "; ".join([j.why(index) for j in judgements])))
    return verdicts


def snapshots_to_destroy(rules: Sequence[KeepRule], snapshots: Sequence[Snapshot],
                         is_replicated: IsReplicated = _everything_replicated) -> list[Snapshot]:
    """The snapshots no keep rule keeps, in input order (zrepl's ``PruneSnapshots``)."""
    if not rules:
        return []
    judgements = [rule.judge(snapshots, is_replicated) for rule in _compile_rules(rules)]
    if len(judgements) == 1:
        keeps = judgements[0].keeps
        return [snap for snap, kept in zip(snapshots, keeps, strict=True) if not kept]
    all_flags = zip(*(j.keeps for j in judgements), strict=True)
    return [snap for snap, flags in zip(snapshots, all_flags, strict=True) if True not in flags]
