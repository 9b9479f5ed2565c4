"""zrepl's pruning test tables (zrepl master: pruning/*_test.go; the retentiongrid ones
live in test_zrepl_vectors.py), plus reason-string and edge-case tables.

zrepl's stub snapshots carry no createtxg; we give each the position in zrepl's input
list (createtxg = position + 1), which is the order zrepl's pruner passes them in.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from test_retention_helpers import (
    grid,
    keep_regex,
    last_n,
    names,
    not_replicated,
    snap,
    snaps,
    stub_intervals,
)

from reconciler.config.models import KeepRule
from reconciler.domain.observed import Snapshot
from reconciler.planning.retention import (
    NEWER_THAN_NOW,
    OLDER_THAN_GRID,
    evaluate_keep_rules,
    fit_grid,
    snapshots_to_destroy,
)

MIN = 60
HOUR = 3600


def destroyed(rules: Sequence[KeepRule], inputs: Sequence[Snapshot],
              replicated: dict[str, bool] | None = None) -> set[str]:
    if replicated is None:
        return names(snapshots_to_destroy(rules, inputs))
    return names(snapshots_to_destroy(rules, inputs, lambda s: replicated[s.name]))


# ------------------------------------------------- pruning/retentiongrid/retentiongrid_test.go


# zrepl's own retentiongrid_test.go cases are in test_zrepl_vectors.py (with the rest of
# zrepl's pruning tests); here only what they do not show.


def test_grid_bucket_placement_reported() -> None:
    fit = fit_grid(stub_intervals("10m|10m"), [60, 0, -600, -1200, -1201], now=0)
    assert fit.bucket == [NEWER_THAN_NOW, 0, 1, OLDER_THAN_GRID, OLDER_THAN_GRID]


# ------------------------------------------------- pruning/pruning_test.go TestPruneSnapshots

S1 = [snap("foo_123"), snap("foo_456"), snap("bar_123")]


@pytest.mark.parametrize(("case", "rules", "inputs", "expected"), [
    ("simple", [keep_regex("foo_")], S1, {"bar_123"}),
    ("multipleRules", [keep_regex("foo_"), keep_regex("bar_")], S1, set()),
    # notInS1 would remove all, bar_ would remove all but bar_, i.e. foo_.*
    ("onlyThoseRemovedByAllAreRemoved", [keep_regex("notInS1"), keep_regex("bar_")], S1,
     {"foo_123", "foo_456"}),
    ("noRulesKeepsAll", [], S1, set()),
    ("nilRulesKeepsAll", (), S1, set()),
    ("noSnaps", [keep_regex("foo_")], [], set()),
    ("multiple_grids_with_disjoint_regexes",
     [grid("1x10s | 1x10s", "^p1_"), grid("1x10s | 1x10s", "^p2_")],
     snaps(("p1_a", 4), ("p2_a", 5), ("p1_b", 14), ("p2_b", 15), ("p1_c", 29), ("p2_c", 30)),
     {"p1_a", "p2_a"}),
])
def test_prune_snapshots(case: str, rules: Sequence[KeepRule], inputs: list[Snapshot],
                         expected: set[str]) -> None:
    assert destroyed(rules, inputs) == expected, case


# ------------------------------------------------- pruning/keep_last_n_test.go TestKeepLastN


def o(minutes: int) -> int:
    return 123 + minutes * MIN


LAST_N_S1 = snaps(("1", o(10)), ("2", o(20)), ("3", o(15)), ("4", o(30)), ("5", o(30)))


@pytest.mark.parametrize(("case", "rules", "inputs", "expected"), [
    ("keep2", [last_n(2, "")], LAST_N_S1, {"1", "2", "3"}),
    ("keep1OfTwoWithSameTime", [last_n(1, "")], LAST_N_S1, {"1", "2", "3", "4"}),
    ("keepMany", [last_n(100, "")], LAST_N_S1, set()),
    ("empty_input", [last_n(100, "")], [], set()),
    ("empty_regex", [last_n(4, "")], LAST_N_S1, {"1"}),
    ("multiple_regexes", [last_n(2, "^a"), last_n(2, "^b")],
     snaps(("a1", o(10)), ("b1", o(11)), ("a2", o(20)), ("b2", o(21)), ("a3", o(30)), ("b3", o(31))),
     {"a1", "b1"}),
    # zrepl master after PR #750 (issue #691) uses count 4 here: more than there are
    # snapshots, and the regex must still apply. Count 3 is the pre-fix version.
    ("keep_more_than_matching", [last_n(4, "a")], snaps(("a1", o(10)), ("b1", o(11)), ("a2", o(12))), {"b1"}),
    ("keep_more_than_matching_count3", [last_n(3, "a")],
     snaps(("a1", o(10)), ("b1", o(11)), ("a2", o(12))), {"b1"}),
])
def test_keep_last_n(case: str, rules: Sequence[KeepRule], inputs: list[Snapshot],
                     expected: set[str]) -> None:
    assert destroyed(rules, inputs) == expected, case


def test_keep_last_n_count_must_be_positive() -> None:
    # keep_last_n_test.go TestKeepLastN/mustBePositive (enforced by the config model)
    with pytest.raises(ValueError):
        last_n(0)
    with pytest.raises(ValueError):
        last_n(-5)


def test_keep_last_n_empty_regex_allowed() -> None:
    # keep_last_n_test.go TestKeepLastN/emptyRegexAllowed
    assert last_n(23, "").regex == ""


def test_keep_last_n_same_time_ties_go_by_createtxg() -> None:
    # DESIGN.md: ties in last_n go by createtxg (zrepl breaks them by name descending,
    # which agrees whenever names sort like creation order).
    inputs = [snap("b", 100, createtxg=1), snap("a", 100, createtxg=2)]
    assert destroyed([last_n(1)], inputs) == {"b"}


def test_keep_last_n_same_time_and_txg_ties_go_by_name_descending() -> None:
    # zrepl keep_last_n.go: "then lexicographically descending (e.g. b, a)"
    inputs = [snap("a", 100, createtxg=7), snap("b", 100, createtxg=7)]
    assert destroyed([last_n(1)], inputs) == {"a"}


# ------------------------------------------------- pruning/keep_regex_test.go


def test_keep_regex_negation() -> None:
    # keep_regex_test.go TestKeepRegexNegation
    inputs = [snap("zrepl_foobar"), snap("zrepl"), snap("barfoo")]
    assert destroyed([keep_regex("^zrepl_")], inputs) == {"zrepl", "barfoo"}
    assert destroyed([keep_regex("^zrepl_", negate=True)], inputs) == {"zrepl_foobar"}


def test_keep_regex_is_unanchored_search() -> None:
    # Go's FindStringIndex / MatchString find a match anywhere in the name.
    assert destroyed([keep_regex("foo")], [snap("a_foo_b"), snap("bar")]) == {"bar"}


# ------------------------------------------------- pruning/keep_not_replicated_test.go


def test_keep_not_replicated_destroys_only_replicated() -> None:
    # keep_not_replicated_test.go TestNewKeepNotReplicated/destroysOnlyReplicated
    inputs = [snap("1"), snap("2"), snap("3")]
    assert destroyed([not_replicated()], inputs, {"1": True, "2": False, "3": True}) == {"1", "3"}


def test_keep_not_replicated_empty() -> None:
    # keep_not_replicated_test.go TestNewKeepNotReplicated/empty
    assert destroyed([not_replicated()], [], {}) == set()


def test_keep_not_replicated_default_treats_everything_as_replicated() -> None:
    assert destroyed([not_replicated()], [snap("a")]) == {"a"}


# ------------------------------------------------- zrepl docs/configuration/prune.rst example


def test_docs_grid_example() -> None:
    # prune.rst "Policy grid" example: grid 1x1h(keep=all) | 2x2h | 1x3h, snapshots
    # a..D with a the most recent; result keeps a, b, c, j, p, z.
    ages = {"a": 0, "b": 0.3, "c": 0.6}
    ages |= {letter: 1.1 + 0.27 * n for n, letter in enumerate("defghij")}
    ages |= {letter: 3.1 + 0.3 * n for n, letter in enumerate("klmnop")}
    ages |= {letter: 5.1 + 0.3 * n for n, letter in enumerate("qrstuvwxyz")}
    ages |= {letter: 8.2 + 0.2 * n for n, letter in enumerate("ABCD")}
    now = 1_000_000
    order = sorted(ages, key=lambda name: -ages[name])  # oldest first = createtxg order
    inputs = snaps(*((name, now - round(ages[name] * HOUR)) for name in order))
    kept = names(inputs) - destroyed([grid("1x1h(keep=all) | 2x2h | 1x3h")], inputs)
    assert kept == {"a", "b", "c", "j", "p", "z"}


# ------------------------------------------------- grid rule behaviour (keep_grid.go)


def test_grid_ignores_non_matching_and_uses_youngest_match_as_now() -> None:
    # keep_grid.go: non-matching snapshots are not kept by the rule, and a younger
    # non-matching snapshot does not move "now".
    inputs = snaps(("zrepl_1", 0), ("zrepl_2", 3000), ("manual", 100_000))
    assert destroyed([grid("1x1h(keep=all)", "^zrepl_")], inputs) == {"manual"}


def test_grid_without_matches_destroys_everything() -> None:
    assert destroyed([grid("1x1h", "^zrepl_")], snaps(("a", 0), ("b", 1))) == {"a", "b"}


def test_grid_destroys_youngest_when_bucket_zero_keeps_one() -> None:
    # zrepl keeps the OLDEST per bucket, also in bucket 0: the youngest match can go.
    inputs = snaps(("s1", 0), ("s2", 600), ("s3", 1200))
    assert destroyed([grid("1x1h")], inputs) == {"s2", "s3"}


def test_grid_is_not_idempotent_when_it_destroys_the_youngest() -> None:
    # zrepl's "now" moves when the youngest match is destroyed, so a second prune can
    # destroy more. We reproduce that rather than hide it.
    rules = [grid("1x10s | 1x10s")]
    first = snaps(("s4", 4), ("s12", 12), ("s20", 20))
    assert destroyed(rules, first) == {"s20"}
    second = [s for s in first if s.name != "s20"]
    assert destroyed(rules, second) == {"s12"}


def test_grid_equal_creation_times_follow_zrepls_stable_sort() -> None:
    # Entries with equal dates keep createtxg order in zrepl's youngest-first stable
    # sort, so the lower createtxg counts as younger and is destroyed first.
    inputs = [snap("x", 100, createtxg=1), snap("y", 100, createtxg=2), snap("z", 50, createtxg=0)]
    assert destroyed([grid("1x1h(keep=2)")], inputs) == {"x"}


def test_grid_equal_creation_times_use_createtxg_not_input_order() -> None:
    # zrepl's pruner sorts by createtxg before pruning; so do we, whatever the input order.
    inputs = [snap("y", 100, createtxg=2), snap("x", 100, createtxg=1), snap("z", 50, createtxg=0)]
    assert destroyed([grid("1x1h(keep=2)")], inputs) == {"x"}


def test_grid_handles_large_grids() -> None:
    inputs = snaps(*((f"zrepl_{n:04d}", n * HOUR) for n in range(24 * 40)))
    gone = destroyed([grid("1x1h(keep=all) | 24x1h | 14x1d")], inputs)
    kept = sorted(names(inputs) - gone)
    # 1 (bucket 0, keep=all) + 24 hourly + 14 daily
    assert len(kept) == 1 + 24 + 14


# ------------------------------------------------- verdicts and reasons


def test_verdicts_in_input_order_with_reasons() -> None:
    rules: list[KeepRule] = [
        not_replicated(), grid("1x1h(keep=all) | 2x1h", "^zrepl_"), keep_regex("^manual_")]
    inputs = snaps(("zrepl_a", 0), ("manual_x", 100), ("zrepl_b", 1800), ("zrepl_c", 3000),
                   ("zrepl_d", 7000), ("zrepl_e", 7300), ("zrepl_f", 10_800))
    replicated = {s.name: s.name != "zrepl_f" for s in inputs}
    verdicts = evaluate_keep_rules(rules, inputs, lambda s: replicated[s.name])
    assert [v.snapshot.name for v in verdicts] == [s.name for s in inputs]
    by_name = {v.snapshot.name: v for v in verdicts}
    assert not by_name["zrepl_a"].keep
    assert by_name["zrepl_a"].reason == (
        "not_replicated: on every target (before this plan or by its sends); "
        "grid 1x1h(keep=all)|2x1h ^zrepl_: older than the last bucket (3h before newest); "
        "regex ^manual_: name does not match")
    assert by_name["manual_x"].keep and by_name["manual_x"].reason == "regex ^manual_"
    assert by_name["zrepl_b"].keep
    assert by_name["zrepl_b"].reason == (
        "grid 1x1h(keep=all)|2x1h ^zrepl_: bucket 2 (2h-3h before newest) keeps its oldest")
    assert not by_name["zrepl_c"].keep
    assert "bucket 2 (2h-3h before newest) already keeps zrepl_b" in by_name["zrepl_c"].reason
    assert by_name["zrepl_d"].keep
    assert "bucket 1 (1h-2h before newest) keeps its oldest" in by_name["zrepl_d"].reason
    assert by_name["zrepl_e"].keep
    assert "bucket 0 (up to 1h before newest) keeps all" in by_name["zrepl_e"].reason
    assert by_name["zrepl_f"].keep
    assert by_name["zrepl_f"].reason == (
        "not_replicated: not on every target yet, or the replication cursor's snapshot"
        " (keep_snapshot_at_cursor) (also kept by grid 1x1h(keep=all)|2x1h ^zrepl_)")


def test_reasons_last_n_and_negated_regex() -> None:
    inputs = snaps(("zrepl_1", 1), ("other", 2), ("zrepl_2", 3), ("zrepl_3", 4))
    verdicts = {v.snapshot.name: v for v in evaluate_keep_rules([last_n(2, "^zrepl_")], inputs)}
    assert verdicts["zrepl_3"].reason == "last_n 2 ^zrepl_: #1 newest"
    assert verdicts["zrepl_2"].reason == "last_n 2 ^zrepl_: #2 newest"
    assert verdicts["zrepl_1"].reason == "last_n 2 ^zrepl_: #3 newest, beyond the newest 2"
    assert verdicts["other"].reason == "last_n 2 ^zrepl_: name does not match ^zrepl_"
    negated = {v.snapshot.name: v for v in evaluate_keep_rules([keep_regex("^zrepl_", negate=True)], inputs)}
    assert negated["other"].keep and negated["other"].reason == "regex negate ^zrepl_: name does not match"
    assert not negated["zrepl_1"].keep and negated["zrepl_1"].reason == "regex negate ^zrepl_: name matches"


def test_reason_when_bucket_keeps_several() -> None:
    inputs = snaps(("s1", 0), ("s2", 10), ("s3", 20), ("s4", 30))
    verdicts = {v.snapshot.name: v for v in evaluate_keep_rules([grid("1x1h(keep=2)")], inputs)}
    assert verdicts["s1"].reason.endswith("keeps its oldest 2")
    assert verdicts["s4"].reason.endswith("already keeps its 2 oldest (s1 .. s2)")


def test_empty_rules_reason() -> None:
    [verdict] = evaluate_keep_rules([], [snap("a")])
    assert verdict.keep and "no keep rules" in verdict.reason


def test_snapshots_to_destroy_in_input_order() -> None:
    inputs = snaps(("c", 1), ("a", 2), ("b", 3), ("keep", 4))
    assert [s.name for s in snapshots_to_destroy([keep_regex("keep")], inputs)] == ["c", "a", "b"]
