"""zrepl grid specs: table tests of what parses, what each malformed form says, and zrepl's order rule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.config.grid import (
    MAX_BUCKETS,
    GridInterval,
    format_duration,
    format_grid,
    parse_duration,
    parse_grid,
)

H = timedelta(hours=1)
D = timedelta(days=1)


@pytest.mark.parametrize(("spec", "expected"), [
    ("1x1h", [GridInterval(H, 1)]),
    ("3x1h", [GridInterval(H, 1)] * 3),
    ("1x1h(keep=all)", [GridInterval(H, None)]),
    ("2x1d(keep=5)", [GridInterval(D, 5)] * 2),
    ("1x1h(keep=all) | 24x1h | 14x1d",
     [GridInterval(H, None)] + [GridInterval(H, 1)] * 24 + [GridInterval(D, 1)] * 14),
    ("  2 x 30m ( keep=3)  ", [GridInterval(timedelta(minutes=30), 3)] * 2),  # zrepl: blanks before keep
    ("1x1h( keep=all)", [GridInterval(H, None)]),
    ("1x90s|1x1w", [GridInterval(timedelta(seconds=90), 1), GridInterval(timedelta(weeks=1), 1)]),
    ("1x1h|1x1h", [GridInterval(H, 1)] * 2),  # equal lengths are not a decrease
    # zrepl's exception: shorter intervals may follow when everything before is keep=all
    ("1x1d(keep=all) | 1x1h", [GridInterval(D, None), GridInterval(H, 1)]),
    ("1x1d(keep=all) | 1x1h(keep=all) | 1x1m", [GridInterval(D, None), GridInterval(H, None),
                                                 GridInterval(timedelta(minutes=1), 1)]),
])
def test_valid_grids(spec: str, expected: list[GridInterval]) -> None:
    assert list(parse_grid(spec)) == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("", "empty grid: expected intervals like '1x1h(keep=all) | 24x1h | 14x1d'"),
    ("   ", "empty grid"),
    ("24h", "interval 1 of 1 '24h': expected COUNTxDURATION with an optional (keep=N|all)"),
    ("x1h", "interval 1 of 1 'x1h': expected COUNTxDURATION"),
    ("1x1h | 24h", "interval 2 of 2 '24h': expected COUNTxDURATION"),
    ("0x1h", "interval 1 of 1 '0x1h': the count must be at least 1"),
    ("-1x1h", "interval 1 of 1 '-1x1h': expected COUNTxDURATION"),
    ("1x1y", "interval 1 of 1 '1x1y': invalid duration '1y': expected a positive integer and a unit s, m, "
        "h, d or w"),
    ("1x1ms", "invalid duration '1ms'"),
    ("1x0h", "invalid duration '0h': must be greater than zero"),
    ("1xh", "invalid duration 'h'"),
    ("1x1.5h", "invalid duration '1.5h'"),
    ("1x1h(keep=0)", "keep must be a positive integer or 'all', not '0'"),
    ("1x1h(keep=-1)", "keep must be a positive integer or 'all', not '-1'"),
    ("1x1h(keep=many)", "keep must be a positive integer or 'all', not 'many'"),
    ("1x1h(keep=ALL)", "not 'ALL'"),
    ("1x1h(count=2)", "unknown interval parameter 'count=2'; only keep=N or keep=all"),
    # zrepl's ^\s*keep=(.+)\s*$ keeps trailing blanks in the value and allows none around '='
    ("1x1h(keep = all)", "interval 1 of 1 '1x1h(keep = all)': blanks around '=' or after the value in "
        "(keep = all) are rejected, as by zrepl: write (keep=N) or (keep=all)"),
    ("1x1h(keep= all)", "interval 1 of 1 '1x1h(keep= all)': blanks around '=' or after the value in "
        "(keep= all) are rejected"),
    ("1x1h(keep =2)", "interval 1 of 1 '1x1h(keep =2)': blanks around '='"),
    ("1x1h | 1x1d(keep=all )", "interval 2 of 2 '1x1d(keep=all )': blanks around '=' or after the value in "
        "(keep=all ) are rejected, as by zrepl: write (keep=N) or (keep=all)"),
    ("2x1h(keep=5 )", "interval 1 of 1 '2x1h(keep=5 )': blanks around '=' or after the value in (keep=5 )"),
    ("1x1h( keep = 3 )", "blanks around '=' or after the value in ( keep = 3 )"),
    ("1x1h(keep=)", "keep must be a positive integer or 'all', not ''"),
    ("1x1h()", "unknown interval parameter ''"),
    ("1x1h(keep=1", "expected COUNTxDURATION"),
    ("1x1h | ", "interval 2 of 2 is empty (a stray '|'?)"),
    ("| 1x1h", "interval 1 of 2 is empty"),
    ("1x1d | 1x1h", "interval 2 of 2 '1x1h' is shorter than the interval before it (1d); interval lengths "
        "must not"
                    " decrease (only keep=all intervals may precede a shorter one)"),
    ("1x1h(keep=all) | 1x1d | 1x1h", "interval 3 of 3 '1x1h' is shorter than the interval before it (1d)"),
    ("1x1d(keep=2) | 1x1h", "interval 2 of 2 '1x1h' is shorter"),
    (f"{MAX_BUCKETS + 1}x1s", f"grid has more than {MAX_BUCKETS} buckets"),
    ("1x99999999999w", "longer than 100 years"),
    ("1x1h | 99999x5200w", "interval 2 of 2 '99999x5200w': the grid would span more than 1000 years"),
    ("10x5200w | 1x5200w", "interval 2 of 2 '1x5200w': the grid would span more than 1000 years"),
])
def test_malformed_grids_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_grid(spec)
    assert message in str(info.value)


def test_a_grid_of_1000_years_is_accepted() -> None:
    assert len(parse_grid("1x1h(keep=all) | 10x5200w")) == 11  # 364,000 days and 1 h: under 366,000


@pytest.mark.parametrize(("text", "seconds"), [("1s", 1), ("10m", 600), ("1h", 3600), ("2d", 172800),
                                               ("1w", 604800), (" 5 m ", 300)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1", "h", "1y", "0s", "-1h", "1.5h", "1h30m", "١h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format_duration_uses_the_largest_exact_unit() -> None:
    assert [format_duration(timedelta(seconds=s)) for s in (1, 60, 90, 3600, 86400, 604800, 1209600)] == \
        ["1s", "1m", "90s", "1h", "1d", "1w", "2w"]


def test_format_grid_folds_runs() -> None:
    spec = "1x1h(keep=all)|24x1h|14x1d(keep=2)"
    assert format_grid(parse_grid(spec)) == "1x1h(keep=all) | 24x1h | 14x1d(keep=2)"


_interval = st.tuples(st.integers(1, 5), st.sampled_from(["30s", "1m", "1h", "1d", "1w"]),
                      st.sampled_from(["", "(keep=all)", "(keep=1)", "(keep=3)"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(_interval, min_size=1, max_size=5))
def test_format_grid_round_trips(parts: list[tuple[int, str, str]]) -> None:
    spec = " | ".join(f"{n}x{d}{k}" for n, d, k in parts)
    try:
        parsed = parse_grid(spec)
    except ValueError as exc:
        assert "shorter than the interval before it" in str(exc)
        return
    assert parse_grid(format_grid(parsed)) == parsed
    assert len(parsed) == sum(n for n, _, _ in parts)
