"""Hypothesis properties of the keep rules, and a check against a naive, line-by-line
transcription of zrepl's pruning code (PruneSnapshots, KeepGrid/retentiongrid,
KeepLastN, KeepRegex, KeepNotReplicated on zrepl master).

Checked and deliberately NOT asserted in general: "the grid never destroys the
youngest matching snapshot" and "a second run destroys nothing more". zrepl keeps the
oldest entries of every bucket, bucket 0 included, so with a finite keep count in
bucket 0 the youngest match is destroyed, "now" moves, and a second run can destroy
more (see test_retention.py). Both hold when bucket 0 is keep=all, asserted below.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from test_retention_helpers import grid, keep_regex, last_n, names, not_replicated, snap

from reconciler.config.grid import GridInterval
from reconciler.config.models import KeepGrid, KeepLastN, KeepNotReplicated, KeepRegex, KeepRule
from reconciler.domain.observed import Snapshot
from reconciler.planning.retention import evaluate_keep_rules, fit_grid, snapshots_to_destroy

SETTINGS = settings(max_examples=100, deadline=None)

PREFIXES = ("zrepl_", "manual_", "other_")
REGEXES = (".*", "^zrepl_", "^manual_", "_0", "1$", "^(zrepl|manual)_")
DURATIONS = ("5s", "10s", "30s", "1m", "2m")
KEEPS = ("all", "1", "2", "3")


# ------------------------------------------------- strategies


@st.composite
def snapshot_lists(draw: st.DrawFn, max_size: int = 25) -> list[Snapshot]:
    prefixes = draw(st.lists(st.sampled_from(PREFIXES), max_size=max_size))
    # coarse clocks make equal creation times (and thus zrepl's tie-breaking) common
    step = draw(st.sampled_from((1, 50)))
    creations = draw(st.lists(st.integers(0, 400 // step), min_size=len(prefixes), max_size=len(prefixes)))
    creations = [c * step for c in creations]
    # createtxg = position + 1: the input contract (ordered by createtxg)
    return [snap(f"{p}{n:03d}", c, n + 1) for n, (p, c) in enumerate(zip(prefixes, creations, strict=True))]


@st.composite
def grid_specs(draw: st.DrawFn, first_keep_all: bool = False) -> str:
    parts = draw(st.integers(1, 4))
    # the config parser rejects intervals shorter than a previous finite-keep one
    lengths = sorted(draw(st.lists(st.sampled_from(range(len(DURATIONS))), min_size=parts, max_size=parts)))
    specs = []
    for n, length in enumerate(lengths):
        keep = "all" if first_keep_all and n == 0 else draw(st.sampled_from(KEEPS))
        specs.append(f"{draw(st.integers(1, 3))}x{DURATIONS[length]}(keep={keep})")
    return " | ".join(specs)


def grid_rules(first_keep_all: bool = False) -> st.SearchStrategy[KeepGrid]:
    return st.builds(grid, grid_specs(first_keep_all), st.sampled_from(REGEXES))


def keep_rules(first_keep_all: bool = False) -> st.SearchStrategy[KeepRule]:
    return st.one_of(
        grid_rules(first_keep_all),
        st.builds(last_n, st.integers(1, 6), st.sampled_from(REGEXES)),
        st.builds(keep_regex, st.sampled_from(REGEXES), st.booleans()),
        st.just(not_replicated()),
    )


replication_seeds = st.integers(0, 2**32 - 1)


def replication_oracle(seed: int) -> Callable[[Snapshot], bool]:
    """A deterministic, arbitrary is_replicated answer per snapshot name."""
    return lambda s: random.Random(f"{seed}:{s.name}").random() < 0.6


# ------------------------------------------------- zrepl, transcribed naively


def zrepl_fit_entries_with_now(intervals: Sequence[GridInterval], entries: list[tuple[int, int]],
                               now: int) -> set[int]:
    """retentiongrid.go fitEntriesWithNow over (id, date) entries -> removed ids."""
    buckets: list[tuple[int | None, timedelta, timedelta, list[tuple[int, int]]]] = []
    older_than_or_eq = timedelta(seconds=now)
    for interval in intervals:
        younger_than = older_than_or_eq - interval.length
        buckets.append((interval.keep, older_than_or_eq, younger_than, []))
        older_than_or_eq = younger_than
    remove: set[int] = set()
    for ident, date in entries:
        d = timedelta(seconds=date)
        if timedelta(seconds=now) < d:
            continue  # unconditionally keep entries that are in the future
        for _, upper, lower, members in buckets:
            if (d < upper or d == upper) and d > lower:
                members.append((ident, date))
                break
        else:
            remove.add(ident)  # older than the oldest bucket
    for keep, _, _, members in buckets:
        if keep is None or len(members) - keep <= 0:
            continue
        members.sort(key=lambda e: -e[1])  # stable, youngest-to-oldest
        remove |= {ident for ident, _ in members[:len(members) - keep]}
    return remove


def zrepl_fit_entries(intervals: Sequence[GridInterval], entries: list[tuple[int, int]]) -> set[int]:
    """retentiongrid.go FitEntries: now = youngest, entries stably sorted youngest first."""
    if not entries:
        return set()
    entries = sorted(entries, key=lambda e: -e[1])
    return zrepl_fit_entries_with_now(intervals, entries, entries[0][1])


def zrepl_keep_rule(rule: KeepRule, snapshots: list[Snapshot],
                    replicated: Callable[[Snapshot], bool]) -> set[str]:
    """The destroy list of one rule, as zrepl's KeepRule(snaps) returns it."""
    if isinstance(rule, KeepNotReplicated):
        return {s.name for s in snapshots if replicated(s)}
    if isinstance(rule, KeepRegex):
        found = [re.search(rule.regex, s.name) is not None for s in snapshots]
        return {s.name for s, f in zip(snapshots, found, strict=True) if f == rule.negate}
    matching = [s for s in snapshots if re.search(rule.regex, s.name)]
    destroy = {s.name for s in snapshots if not re.search(rule.regex, s.name)}
    if isinstance(rule, KeepLastN):
        # zrepl: date desc, then name desc; DESIGN.md puts createtxg before the name.
        matching.sort(key=lambda s: (s.creation, s.createtxg, s.name), reverse=True)
        return destroy | {s.name for s in matching[rule.count:]}
    assert isinstance(rule, KeepGrid)
    by_id = dict(enumerate(matching))
    removed = zrepl_fit_entries(rule.intervals, [(i, s.creation) for i, s in by_id.items()])
    return destroy | {by_id[i].name for i in removed}


def zrepl_prune_snapshots(rules: Sequence[KeepRule], snapshots: list[Snapshot],
                          replicated: Callable[[Snapshot], bool]) -> set[str]:
    """pruning.go PruneSnapshots: removed by every rule; no rules -> nothing."""
    if not rules:
        return set()
    counts: dict[str, int] = {}
    for rule in rules:
        for name in zrepl_keep_rule(rule, snapshots, replicated):
            counts[name] = counts.get(name, 0) + 1
    return {name for name, count in counts.items() if count == len(rules)}


# ------------------------------------------------- properties


@SETTINGS
@given(snapshot_lists(), st.lists(keep_rules(), max_size=4), replication_seeds)
def test_matches_zrepl_transcription(inputs: list[Snapshot], rules: list[KeepRule], seed: int) -> None:
    replicated = replication_oracle(seed)
    # zrepl's pruner hands snapshots over in createtxg order
    expected = zrepl_prune_snapshots(rules, inputs, replicated)
    assert names(snapshots_to_destroy(rules, inputs, replicated)) == expected


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from((5, 10, 30, 60)), st.sampled_from((None, 1, 2))),
                min_size=1, max_size=5),
       st.lists(st.integers(-200, 100), max_size=30), st.one_of(st.none(), st.integers(-50, 50)))
def test_fit_grid_matches_zrepl_fit_entries(buckets: list[tuple[int, int | None]], dates: list[int],
                                            now: int | None) -> None:
    intervals = tuple(GridInterval(timedelta(seconds=length), keep) for length, keep in buckets)
    fit = fit_grid(intervals, dates, now)
    if now is None:
        expected = zrepl_fit_entries(intervals, list(enumerate(dates)))
    else:
        ordered = sorted(enumerate(dates), key=lambda e: -e[1])
        expected = zrepl_fit_entries_with_now(intervals, ordered, now)
    assert {i for i, kept in enumerate(fit.keep) if not kept} == expected


@SETTINGS
@given(snapshot_lists(), keep_rules(), keep_rules(), replication_seeds)
def test_union_of_rules(inputs: list[Snapshot], a: KeepRule, b: KeepRule, seed: int) -> None:
    replicated = replication_oracle(seed)
    both = names(snapshots_to_destroy([a, b], inputs, replicated))
    assert both == names(snapshots_to_destroy([a], inputs, replicated)) & names(
        snapshots_to_destroy([b], inputs, replicated))


@SETTINGS
@given(snapshot_lists())
def test_empty_rules_keep_everything(inputs: list[Snapshot]) -> None:
    assert snapshots_to_destroy([], inputs) == []
    assert all(v.keep for v in evaluate_keep_rules([], inputs))


@SETTINGS
@given(snapshot_lists(), grid_rules(first_keep_all=True))
def test_grid_with_keep_all_first_bucket_keeps_youngest_match(inputs: list[Snapshot], rule: KeepGrid) -> None:
    matching = [s for s in inputs if re.search(rule.regex, s.name)]
    if matching:
        youngest = max(s.creation for s in matching)
        gone = names(snapshots_to_destroy([rule], inputs))
        assert all(s.name not in gone for s in matching if s.creation == youngest)


@SETTINGS
@given(snapshot_lists(), st.integers(1, 8), st.sampled_from(REGEXES))
def test_last_n_keeps_min_n_matching(inputs: list[Snapshot], count: int, regex: str) -> None:
    kept = [v.snapshot for v in evaluate_keep_rules([last_n(count, regex)], inputs) if v.keep]
    matching = [s for s in inputs if re.search(regex, s.name)]
    assert len(kept) == min(count, len(matching))
    assert all(re.search(regex, s.name) for s in kept)
    # the kept ones are the newest: none destroyed matching one is strictly newer
    if kept:
        oldest_kept = min(s.creation for s in kept)
        assert all(s.creation <= oldest_kept for s in matching if s not in kept)


@SETTINGS
@given(snapshot_lists(), st.lists(keep_rules(first_keep_all=True), min_size=1, max_size=4), replication_seeds)
def test_second_run_destroys_nothing_when_bucket_zero_keeps_all(
        inputs: list[Snapshot], rules: list[KeepRule], seed: int) -> None:
    replicated = replication_oracle(seed)
    gone = names(snapshots_to_destroy(rules, inputs, replicated))
    survivors = [s for s in inputs if s.name not in gone]
    assert snapshots_to_destroy(rules, survivors, replicated) == []


@SETTINGS
@given(snapshot_lists(), st.lists(keep_rules(), max_size=4), replication_seeds, st.randoms())
def test_input_order_does_not_matter(inputs: list[Snapshot], rules: list[KeepRule], seed: int,
                                     rnd: random.Random) -> None:
    replicated = replication_oracle(seed)
    shuffled = list(inputs)
    rnd.shuffle(shuffled)
    assert names(snapshots_to_destroy(rules, shuffled, replicated)) == names(
        snapshots_to_destroy(rules, inputs, replicated))


@SETTINGS
@given(snapshot_lists(), st.lists(keep_rules(), max_size=4), replication_seeds)
def test_verdicts_agree_with_destroy_list_and_name_first_keeper(
        inputs: list[Snapshot], rules: list[KeepRule], seed: int) -> None:
    replicated = replication_oracle(seed)
    verdicts = evaluate_keep_rules(rules, inputs, replicated)
    assert [v.snapshot for v in verdicts] == inputs
    assert [v.snapshot for v in verdicts if not v.keep] == snapshots_to_destroy(rules, inputs, replicated)
    for v in verdicts:
        assert v.reason
        if v.keep and rules:
            first = next(r for r in rules if v.snapshot not in snapshots_to_destroy([r], inputs, replicated))
            alone = evaluate_keep_rules([first], inputs, replicated)[inputs.index(v.snapshot)]
            assert v.reason.startswith(alone.reason)
