"""zrepl's own pruning test vectors, ported one by one (table-driven).

Sources (github.com/zrepl/zrepl; the versions current on master, i.e. after zrepl 0.7.0's
"Fix last_n keep rule behavior" (issue #691, PR #750) and the 0.3 retentiongrid rewrite):

- ``pruning/retentiongrid/retentiongrid_test.go``: TestEmptyInput, TestIntervalBoundariesAndAlignment,
  TestKeepsOldestSnapsInABucket, TestRespectsKeepCountAll, TestComplex
- ``pruning/pruning_test.go`` TestPruneSnapshots (incl. multiple_grids_with_disjoint_regexes, issue #292)
- ``pruning/keep_last_n_test.go`` TestKeepLastN (+ mustBePositive, emptyRegexAllowed)
- ``pruning/keep_regex_test.go`` TestKeepRegexNegation
- ``pruning/keep_not_replicated_test.go`` TestNewKeepNotReplicated
- ``daemon/pruner/pruner_test.go`` TestPruner_Prune (the planning part: what each filesystem destroys)
- ``docs/configuration/prune.rst`` "Policy grid" worked example (bucket mapping and result)
- ``config/samples/*.yml``: every grid spec zrepl's TestSampleConfigsAreParsedWithoutErrors must accept
- maintainer-worked examples in issues #712 and #716, and specs configcheck rejects (#712, #122)

Translation rules:

- zrepl's stub snapshots have no createtxg. zrepl's pruner hands the rules the snapshots sorted
  by createtxg (daemon/pruner/pruner.go ``sort.Slice(tfsvs, ... CreateTXG <)``), so each stub gets
  createtxg = its position in zrepl's input list + 1.
- ``time.Unix(secs, 0)`` becomes ``creation = secs``; stubs without a date have creation 0.
- retentiongrid's ``gridFromString("10m,-1|10m|10m,2|1h")`` (keep -1 = all, default 1) is ported
  literally; ``FitEntries`` (now = youngest entry) is ``fit_grid(..., now=None)`` and
  ``fitEntriesWithNow(now, ...)`` is ``fit_grid(..., now=now)``.
- Where a retentiongrid test uses ``FitEntries`` (now = youngest), the same vector is also run
  through the full ``grid`` keep rule, which is what a plan uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from reconciler.config.grid import GridInterval, parse_grid
from reconciler.config.models import KeepGrid, KeepLastN, KeepNotReplicated, KeepRegex, KeepRule
from reconciler.domain.observed import Snapshot
from reconciler.planning.retention import (
    NEWER_THAN_NOW,
    OLDER_THAN_GRID,
    evaluate_keep_rules,
    fit_grid,
    snapshots_to_destroy,
)

SEC = 1
MIN = 60
HOUR = 3600
DAY = 86400

# ----------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Stub:
    """zrepl's ``stubSnap{name, replicated, date}`` (pruning_test.go)."""

    name: str
    replicated: bool = False
    date: int = 0


def to_snapshots(stubs: Sequence[Stub]) -> list[Snapshot]:
    return [Snapshot(name=s.name, guid=1000 + i, createtxg=i + 1, creation=s.date)
            for i, s in enumerate(stubs)]


def prune(rules: Sequence[KeepRule], stubs: Sequence[Stub]) -> set[str]:
    """zrepl's ``PruneSnapshots(inputs, rules)`` as a set of names."""
    replicated = {s.name: s.replicated for s in stubs}
    gone = snapshots_to_destroy(rules, to_snapshots(stubs), lambda snap: replicated[snap.name])
    return {s.name for s in gone}


def grid(spec: str, regex: str) -> KeepGrid:
    return KeepGrid(type="grid", grid=spec, regex=regex)


def last_n(count: int, regex: str) -> KeepLastN:
    return KeepLastN(type="last_n", count=count, regex=regex)


def keep_regex(regex: str, negate: bool) -> KeepRegex:
    return KeepRegex(type="regex", regex=regex, negate=negate)


def not_replicated() -> KeepNotReplicated:
    return KeepNotReplicated(type="not_replicated")


def go_duration(text: str) -> timedelta:
    """``time.ParseDuration`` for the forms retentiongrid_test.go uses ("10m", "1h", "1m")."""
    units = {"s": SEC, "m": MIN, "h": HOUR}
    return timedelta(seconds=int(text[:-1]) * units[text[-1]])


def grid_from_string(gs: str) -> tuple[GridInterval, ...]:
    """retentiongrid_test.go ``gridFromString``: "DURATION[,KEEP]|..." with KEEP -1 = all, default 1."""
    intervals = []
    for part in gs.split("|"):
        duration, _, keep = part.partition(",")
        count = int(keep or "1")
        intervals.append(GridInterval(go_duration(duration), None if count == -1 else count))
    return tuple(intervals)


# ------------------------------------------------- pruning/retentiongrid/retentiongrid_test.go


@dataclass(frozen=True)
class GridVector:
    test: str
    grid: str  # gridFromString syntax
    now: int | None  # None: FitEntries (now = youngest); else fitEntriesWithNow(now)
    entries: tuple[tuple[str, bool, int], ...]  # testSnap{Name, ShouldKeep, date}
    # the same vector as a `grid` keep rule (only for FitEntries vectors)
    rule_spec: str | None = None


GRID_VECTORS = [
    GridVector("TestIntervalBoundariesAndAlignment", "10m|10m|10m", 0, (
        ("0", True, 1 * MIN),     # before now => keep unconditionally
        ("1", True, 0),           # 1st interval left edge => inclusive
        ("2", True, -10 * MIN),   # 2nd interval left edge => inclusive
        ("3", True, -20 * MIN),   # 3rd interval left edge => inclusive
        ("4", False, -30 * MIN),  # 3rd interval right edge => exclusive
        ("5", False, -40 * MIN),  # after last interval => remove unconditionally
    )),
    GridVector("TestKeepsOldestSnapsInABucket", "1m,2", None, (
        ("1", True, 1),
        ("2", True, 2),
        ("3", False, 3),
        ("4", False, 4),
        ("5", False, 5),
    ), rule_spec="1x1m(keep=2)"),
    GridVector("TestRespectsKeepCountAll", "1m,-1|1m,1", None, (
        ("a", True, 0),
        ("b", True, -1),
        ("c", True, -2),
        ("d", False, -60),
        ("e", True, -61),
    ), rule_spec="1x1m(keep=all) | 1x1m"),
    GridVector("TestComplex", "10m,-1|10m|10m,2|1h", 0, (
        ("1", True, 3 * MIN),               # pre-now must always be kept
        ("b1", True, -6 * MIN),             # 1st interval allows unlimited entries
        ("b3", True, -8 * MIN),
        ("b2", True, -9 * MIN),
        ("a", False, -11 * MIN),            # 2nd interval allows 1 entry
        ("c", True, -19 * MIN),
        ("foo", True, -25 * MIN),           # 3rd interval allows 2 entries
        ("bar", True, -26 * MIN),
        ("border", False, -30 * MIN),       # at the left edge of the 4th interval
        ("d", True, -HOUR - 15 * MIN),      # right in the 4th interval
        ("q", False, -HOUR - 30 * MIN),     # on the right edge of 4th interval => not in it => delete
        ("e", False, -HOUR - 31 * MIN),     # older than 4th interval => always delete
        ("f", False, -2 * HOUR),
    )),
]


@pytest.mark.parametrize("vector", GRID_VECTORS, ids=[v.test for v in GRID_VECTORS])
def test_retentiongrid_fit_entries(vector: GridVector) -> None:
    fit = fit_grid(grid_from_string(vector.grid), [date for _, _, date in vector.entries], vector.now)
    kept = {name for (name, _, _), keep in zip(vector.entries, fit.keep, strict=True) if keep}
    assert kept == {name for name, should_keep, _ in vector.entries if should_keep}


@pytest.mark.parametrize("vector", [v for v in GRID_VECTORS if v.rule_spec],
                         ids=[v.test for v in GRID_VECTORS if v.rule_spec])
def test_retentiongrid_vector_through_grid_rule(vector: GridVector) -> None:
    assert vector.rule_spec is not None
    stubs = [Stub(name, False, date) for name, _, date in vector.entries]
    assert prune([grid(vector.rule_spec, ".*")], stubs) == \
        {name for name, should_keep, _ in vector.entries if not should_keep}


def test_retentiongrid_empty_input() -> None:
    # retentiongrid_test.go TestEmptyInput: gridFromString("10m|10m|10m|1h").FitEntries([]) -> both empty
    fit = fit_grid(grid_from_string("10m|10m|10m|1h"), [])
    assert fit.keep == [] and fit.bucket == [] and fit.members == {}
    assert prune([grid("3x10m | 1x1h", ".*")], []) == set()


# ------------------------------------------------- pruning/pruning_test.go TestPruneSnapshots


@dataclass(frozen=True)
class PruneVector:
    source: str
    case: str
    rules: tuple[KeepRule, ...]
    inputs: tuple[Stub, ...]
    exp_destroy: frozenset[str] = field(default_factory=frozenset)


S1 = (Stub("foo_123"), Stub("foo_456"), Stub("bar_123"))


def o(minutes: int) -> int:
    """keep_last_n_test.go: ``time.Unix(123, 0).Add(minutes * time.Minute)``."""
    return 123 + minutes * MIN


LAST_N_S1 = (Stub("1", date=o(10)), Stub("2", date=o(20)), Stub("3", date=o(15)),
             Stub("4", date=o(30)), Stub("5", date=o(30)))

PRUNE_VECTORS = [
    # ---- pruning_test.go TestPruneSnapshots
    PruneVector("pruning_test.go TestPruneSnapshots", "simple",
                (keep_regex("foo_", False),), S1, frozenset({"bar_123"})),
    PruneVector("pruning_test.go TestPruneSnapshots", "multipleRules",
                (keep_regex("foo_", False), keep_regex("bar_", False)), S1, frozenset()),
    PruneVector("pruning_test.go TestPruneSnapshots", "onlyThoseRemovedByAllAreRemoved",
                (keep_regex("notInS1", False),  # would remove all
                 keep_regex("bar_", False)),    # would remove all but bar_, i.e. foo_.*
                S1, frozenset({"foo_123", "foo_456"})),
    PruneVector("pruning_test.go TestPruneSnapshots", "noRulesKeepsAll", (), S1, frozenset()),
    PruneVector("pruning_test.go TestPruneSnapshots", "nilRulesKeepsAll", (), S1, frozenset()),
    PruneVector("pruning_test.go TestPruneSnapshots", "noSnaps",
                (keep_regex("foo_", False),), (), frozenset()),
    PruneVector("pruning_test.go TestPruneSnapshots", "multiple_grids_with_disjoint_regexes",
                (grid("1x10s | 1x10s", "^p1_"), grid("1x10s | 1x10s", "^p2_")),
                (Stub("p1_a", False, 4), Stub("p2_a", False, 5), Stub("p1_b", False, 14),
                 Stub("p2_b", False, 15), Stub("p1_c", False, 29), Stub("p2_c", False, 30)),
                frozenset({"p1_a", "p2_a"})),
    # ---- keep_last_n_test.go TestKeepLastN
    PruneVector("keep_last_n_test.go TestKeepLastN", "keep2",
                (last_n(2, ""),), LAST_N_S1, frozenset({"1", "2", "3"})),
    # keep one of two with same time
    PruneVector("keep_last_n_test.go TestKeepLastN", "keep1OfTwoWithSameTime",
                (last_n(1, ""),), LAST_N_S1, frozenset({"1", "2", "3", "4"})),
    PruneVector("keep_last_n_test.go TestKeepLastN", "keepMany",
                (last_n(100, ""),), LAST_N_S1, frozenset()),
    PruneVector("keep_last_n_test.go TestKeepLastN", "empty_input",
                (last_n(100, ""),), (), frozenset()),
    PruneVector("keep_last_n_test.go TestKeepLastN", "empty_regex",
                (last_n(4, ""),), LAST_N_S1, frozenset({"1"})),
    PruneVector("keep_last_n_test.go TestKeepLastN", "multiple_regexes",
                (last_n(2, "^a"), last_n(2, "^b")),
                (Stub("a1", False, o(10)), Stub("b1", False, o(11)), Stub("a2", False, o(20)),
                 Stub("b2", False, o(21)), Stub("a3", False, o(30)), Stub("b3", False, o(31))),
                frozenset({"a1", "b1"})),
    # master after PR #750 / zrepl 0.7.0 (issue #691): count 4 > number of snapshots, the regex still applies
    PruneVector("keep_last_n_test.go TestKeepLastN", "keep_more_than_matching",
                (last_n(4, "a"),),
                (Stub("a1", False, o(10)), Stub("b1", False, o(11)), Stub("a2", False, o(12))),
                frozenset({"b1"})),
    # the same case as it was written before PR #750 (count 3); same expectation
    PruneVector("keep_last_n_test.go TestKeepLastN (pre-#750)", "keep_more_than_matching_count3",
                (last_n(3, "a"),),
                (Stub("a1", False, o(10)), Stub("b1", False, o(11)), Stub("a2", False, o(12))),
                frozenset({"b1"})),
    # ---- keep_not_replicated_test.go TestNewKeepNotReplicated
    PruneVector("keep_not_replicated_test.go TestNewKeepNotReplicated", "destroysOnlyReplicated",
                (not_replicated(),),
                (Stub("1", replicated=True), Stub("2", replicated=False), Stub("3", replicated=True)),
                frozenset({"1", "3"})),
    PruneVector("keep_not_replicated_test.go TestNewKeepNotReplicated", "empty",
                (not_replicated(),), (), frozenset()),
    # ---- keep_regex_test.go TestKeepRegexNegation (each rule's KeepRule destroy list)
    PruneVector("keep_regex_test.go TestKeepRegexNegation", "non-negated",
                (keep_regex("^zrepl_", False),),
                (Stub("zrepl_foobar"), Stub("zrepl"), Stub("barfoo")),
                frozenset({"zrepl", "barfoo"})),
    PruneVector("keep_regex_test.go TestKeepRegexNegation", "negated",
                (keep_regex("^zrepl_", True),),
                (Stub("zrepl_foobar"), Stub("zrepl"), Stub("barfoo")),
                frozenset({"zrepl_foobar"})),
]


@pytest.mark.parametrize("vector", PRUNE_VECTORS, ids=[f"{v.source}::{v.case}" for v in PRUNE_VECTORS])
def test_prune_snapshots(vector: PruneVector) -> None:
    assert prune(vector.rules, vector.inputs) == set(vector.exp_destroy)


# keep_last_n_test.go TestKeepLastN/mustBePositive: NewKeepLastN(count 0) and (count -5) error
@pytest.mark.parametrize("count", [0, -5])
def test_keep_last_n_must_be_positive(count: int) -> None:
    with pytest.raises(ValueError):
        last_n(count, "foo")


def test_keep_last_n_empty_regex_allowed() -> None:
    # keep_last_n_test.go TestKeepLastN/emptyRegexAllowed: NewKeepLastN(count 23, regex "") succeeds
    assert last_n(23, "").count == 23


# ------------------------------------------------- daemon/pruner/pruner_test.go TestPruner_Prune


def test_pruner_prune_plans() -> None:
    # mockFS versions all have Creation time.Unix(0,0) and Guid = index; the rules are
    # MustKeepRegex("^keep", false). exp destroyed: zroot/foo {drop_c}, zroot/bar {drop_g};
    # zroot/baz plans {drop_i} too but its destroy fails permanently (an executor matter).
    filesystems = {
        "zroot/foo": (["keep_a", "keep_b", "drop_c", "keep_d"], {"drop_c"}),
        "zroot/bar": (["keep_e", "keep_f", "drop_g"], {"drop_g"}),
        "zroot/baz": (["keep_h", "drop_i"], {"drop_i"}),
    }
    rules = (keep_regex("^keep", False),)
    for fs, (names, expected) in filesystems.items():
        assert prune(rules, [Stub(name) for name in names]) == expected, fs


# ------------------------------------------------- docs/configuration/prune.rst "Policy grid" example

# grid: 1x1h(keep=all) | 2x2h | 1x3h; @a is the most recent, @D almost 9 hours older than @a.
# Ages (hours before @a) chosen inside the buckets the docs' mapping assigns:
DOC_BUCKETS = {
    0: ("abc", 0.0, 0.3),            # Bucket1: a, b, c
    1: ("defghij", 1.1, 0.3),        # Bucket2: d,e,f,g,h,i,j
    2: ("klmnop", 3.1, 0.3),         # Bucket3: k,l,m,n,o,p
    3: ("qrstuvwxyz", 5.1, 0.3),     # Bucket4: q,r,s,t,u,v,w,x,y,z
    OLDER_THAN_GRID: ("ABCD", 8.1, 0.28),  # No bucket: A,B,C,D
}
DOC_NOW = 1_700_000_000


def _doc_snapshots() -> tuple[list[Stub], dict[str, int]]:
    ages: dict[str, float] = {}
    expected_bucket: dict[str, int] = {}
    for bucket, (letters, first, step) in DOC_BUCKETS.items():
        for n, letter in enumerate(letters):
            ages[letter] = first + step * n
            expected_bucket[letter] = bucket
    oldest_first = sorted(ages, key=lambda letter: -ages[letter])
    stubs = [Stub(letter, False, DOC_NOW - round(ages[letter] * HOUR)) for letter in oldest_first]
    return stubs, expected_bucket


def test_docs_grid_example_bucket_mapping() -> None:
    stubs, expected_bucket = _doc_snapshots()
    fit = fit_grid(parse_grid("1x1h(keep=all) | 2x2h | 1x3h"), [s.date for s in stubs])
    assert fit.now == DOC_NOW
    assert {s.name: b for s, b in zip(stubs, fit.bucket, strict=True)} == expected_bucket


def test_docs_grid_example_result() -> None:
    # "Result after pruning: a b c | j | p | z"
    stubs, _ = _doc_snapshots()
    kept = {s.name for s in stubs} - prune([grid("1x1h(keep=all) | 2x2h | 1x3h", "^[a-zA-Z]$")], stubs)
    assert kept == set("abcjpz")


# ------------------------------------------------- maintainer-worked examples from zrepl issues


def test_issue_716_grid_bucket_keeps_oldest() -> None:
    # problame on #716: now = 2023-06-11_18:45:03 (the newest snapshot), grid 1x1h(keep=all) | 24x1h;
    # 19:13:45 and 19:58:45 (2023-06-10) fall into different 1h buckets and are kept; 19:28:45 and
    # 19:43:45 share 19:13:45's bucket, are newer, and are removed (keep=1).
    base = 1_686_441_600  # 2023-06-11T00:00:00Z
    at = {
        "zrepl_2023-06-10_19:13:45": base - 4 * HOUR - 46 * MIN - 15,
        "zrepl_2023-06-10_19:28:45": base - 4 * HOUR - 31 * MIN - 15,
        "zrepl_2023-06-10_19:43:45": base - 4 * HOUR - 16 * MIN - 15,
        "zrepl_2023-06-10_19:58:45": base - 4 * HOUR - 1 * MIN - 15,
        "zrepl_2023-06-11_18:45:03": base + 18 * HOUR + 45 * MIN + 3,
    }
    stubs = [Stub(name, False, date) for name, date in at.items()]
    assert prune([grid("1x1h(keep=all) | 24x1h", "^zrepl_")], stubs) == \
        {"zrepl_2023-06-10_19:28:45", "zrepl_2023-06-10_19:43:45"}


def test_issue_712_youngest_destroyed_when_first_bucket_is_keep_1() -> None:
    # problame on #712: without a keep=all first bucket, when the two youngest snapshots fall
    # into the same 1h bucket, grid destroys the younger of the two (buckets keep their oldest).
    stubs = [Stub("zrepl_older", False, 0), Stub("zrepl_youngest", False, 50 * MIN)]
    assert prune([grid("24x1h | 7x1d", "^zrepl_")], stubs) == {"zrepl_youngest"}


# ------------------------------------------------- grid specs zrepl accepts / rejects

H, D = timedelta(hours=1), timedelta(days=1)


def _expand(*runs: tuple[int, timedelta, int | None]) -> tuple[GridInterval, ...]:
    out: list[GridInterval] = []
    for count, length, keep in runs:
        out += [GridInterval(length, keep)] * count
    return tuple(out)


# config_test.go TestSampleConfigsAreParsedWithoutErrors parses every config/samples/*.yml;
# these are all grid specs in those samples, plus the prune.rst example.
VALID_SPECS = [
    ("samples/{local,pull,push,pull_ssh}.yml keep_receiver", "1x1h(keep=all) | 24x1h | 35x1d | 6x30d",
     _expand((1, H, None), (24, H, 1), (35, D, 1), (6, 30 * D, 1))),
    ("samples/{pull,push,pull_ssh}.yml keep_sender; quickstart_backup_to_external_disk.yml snapjob",
     "1x1h(keep=all) | 24x1h | 14x1d", _expand((1, H, None), (24, H, 1), (14, D, 1))),
    ("samples/quickstart_backup_to_external_disk.yml push_to_drive keep_receiver",
     "1x1h(keep=all) | 24x1h | 360x1d", _expand((1, H, None), (24, H, 1), (360, D, 1))),
    ("samples/quickstart_continuous_server_backup_sender.yml keep_receiver",
     "1x1h(keep=all) | 24x1h | 30x1d | 6x30d",
     _expand((1, H, None), (24, H, 1), (30, D, 1), (6, 30 * D, 1))),
    ("samples/quickstart_fan_out_replication_source.yml snapshots",
     "1x1h(keep=all) | 24x1h | 30x1d | 12x30d",
     _expand((1, H, None), (24, H, 1), (30, D, 1), (12, 30 * D, 1))),
    ("docs prune.rst example", "1x1h(keep=all) | 2x2h | 1x3h",
     _expand((1, H, None), (2, 2 * H, 1), (1, 3 * H, 1))),
    ("pruning_test.go multiple_grids_with_disjoint_regexes", "1x10s | 1x10s",
     _expand((2, timedelta(seconds=10), 1))),
    ("issue #712 (maintainer's suggestion, as configcheck accepts it)",
     "1x1m(keep=all) | 24x1h | 7x1d | 4x7d | 6x30d",
     _expand((1, timedelta(minutes=1), None), (24, H, 1), (7, D, 1), (4, 7 * D, 1), (6, 30 * D, 1))),
]


@pytest.mark.parametrize(("source", "spec", "expected"), VALID_SPECS, ids=[v[0] for v in VALID_SPECS])
def test_zrepl_accepts_grid_spec(source: str, spec: str, expected: tuple[GridInterval, ...]) -> None:
    assert parse_grid(spec) == expected


INVALID_SPECS = [
    # issue #712: "zrepl configcheck complains about 1m(keep=all)" (no repeat count)
    ("issue #712", "1m(keep=all) | 24x1h | 7x1d | 4x7d | 6x30d"),
    # issue #122: "zrepl doesn't seem to recognise 1y or 2y"
    ("issue #122", "1x1h(keep=all) | 24x1h | 1x1y"),
]


@pytest.mark.parametrize(("source", "spec"), INVALID_SPECS, ids=[v[0] for v in INVALID_SPECS])
def test_zrepl_rejects_grid_spec(source: str, spec: str) -> None:
    with pytest.raises(ValueError):
        parse_grid(spec)


# ------------------------------------------------- bucket placement the retentiongrid comments state


def test_interval_boundaries_placement() -> None:
    # TestIntervalBoundariesAndAlignment's comments, as bucket indexes: left (younger) edge inclusive,
    # right (older) edge exclusive; future entries are outside every bucket.
    fit = fit_grid(grid_from_string("10m|10m|10m"),
                   [1 * MIN, 0, -10 * MIN, -20 * MIN, -30 * MIN, -40 * MIN], now=0)
    assert fit.bucket == [NEWER_THAN_NOW, 0, 1, 2, OLDER_THAN_GRID, OLDER_THAN_GRID]


def _replicated_by(flags: dict[str, bool]) -> Callable[[Snapshot], bool]:
    return lambda snap: flags[snap.name]


def test_verdicts_agree_with_destroy_list_on_every_prune_vector() -> None:
    # evaluate_keep_rules (what the plan renders) must say the same as snapshots_to_destroy.
    for v in PRUNE_VECTORS:
        flags = {s.name: s.replicated for s in v.inputs}
        verdicts = evaluate_keep_rules(v.rules, to_snapshots(v.inputs), _replicated_by(flags))
        assert {x.snapshot.name for x in verdicts if not x.keep} == set(v.exp_destroy), v.case
