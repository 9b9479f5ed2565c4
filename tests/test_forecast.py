"""The planner run forward in time (planning/forecast.py): counts per day, outages and the rule
from zrepl's history, and purity (no zfs beyond the facts it is given)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler.config.models import Config
from reconciler.domain.observed import Dataset, HostFacts, ObservedState
from reconciler.planning.forecast import Outage, OutageSpec, forecast

START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def config(keep_source: list[dict[str, Any]], interval: str = "1h") -> Config:
    return Config.model_validate({
        "hosts": {"nas": {"connection": "local"},
                  "backup": {"connection": "ssh", "address": "backup.example.org"}},
        "policies": {"p": {"snapshots": {"prefix": "zrepl_", "interval": interval},
                           "keep_source": keep_source,
                           "keep_target": [{"type": "grid", "grid": "1x1h(keep=all) | 24x1h | 7x1d",
                                            "regex": "^zrepl_"}]}},
        "filesystems": [{"host": "nas", "filter": {"tank/data<": True}, "policy": "p",
                         "replicate_to": [{"host": "backup", "root": "pool/nas"}]}],
    })


def facts() -> ObservedState:
    return ObservedState({
        "nas": HostFacts("nas", {"tank": Dataset("tank", "filesystem", 1, 1),
                                 "tank/data": Dataset("tank/data", "filesystem", 2, 2)}),
        "backup": HostFacts("backup", {"pool": Dataset("pool", "filesystem", 3, 1)})})


PROTECTED = [{"type": "not_replicated"}, {"type": "last_n", "count": 5, "regex": "^zrepl_"}]
PRUNE_WINS = [{"type": "last_n", "count": 5, "regex": "^zrepl_"}]


def test_a_month_day_by_day_reaches_the_steady_state_of_the_keep_rules() -> None:
    result = forecast(config(PROTECTED), facts(), START, days=30, step=timedelta(hours=1))
    assert result.runs == 30 * 24 and len(result.rows) == 31
    (group,) = result.groups
    assert group.side == ("nas", "tank/data") and group.targets == (("backup", "pool/nas/tank/data"),)
    day0, day1, last = result.rows[0][group.side], result.rows[1][group.side], result.rows[-1][group.side]
    assert day0.source.count == 0 and day0.targets[group.targets[0]].count == 0
    assert day1.taken == 24 and day1.sent == 24
    assert last.source.count == 5  # last_n 5 (the cursor's snapshot, the newest, is one of them)
    target = last.targets[group.targets[0]]
    assert target.count == 1 + 24 + 7  # the grid: 1h keep=all, 24 hourly, 7 daily (plus the newest)
    assert target.newest == last.source.newest  # everything reached the target
    assert last.waiting == 0 and sum(r[group.side].destroyed_unreplicated for r in result.rows) == 0


def test_an_outage_with_not_replicated_keeps_what_waits_and_catches_up() -> None:
    outage = Outage("backup", START + timedelta(days=2), START + timedelta(days=4))
    result = forecast(config(PROTECTED), facts(), START, days=6, step=timedelta(hours=1), outages=[outage])
    side = result.groups[0].side
    during = result.rows[3][side]
    assert during.down == ("backup",) and during.sent == 0
    assert during.source.count > 24 and during.waiting == during.source.count - 1  # all but the cursor's
    assert all(row[side].destroyed_unreplicated == 0 for row in result.rows)
    after = result.rows[5][side]
    assert after.waiting == 0 and after.source.count == 5 and after.down == ()


def test_an_outage_without_not_replicated_prunes_anyway_and_says_so() -> None:
    outage = Outage("backup", START + timedelta(days=2), START + timedelta(days=4))
    result = forecast(config(PRUNE_WINS), facts(), START, days=6, step=timedelta(hours=1), outages=[outage])
    side = result.groups[0].side
    during = result.rows[3][side]
    assert during.source.count == 5  # bounded disk use
    assert during.destroyed_unreplicated >= 19  # a day's snapshots went without reaching the target
    assert during.waiting == 5


def test_an_outage_of_the_source_host_does_nothing_there() -> None:
    outage = Outage("nas", START + timedelta(days=1), START + timedelta(days=2))
    result = forecast(config(PROTECTED), facts(), START, days=3, step=timedelta(hours=1), outages=[outage])
    side = result.groups[0].side
    assert result.rows[2][side].taken == 0 and result.rows[2][side].down == ("nas",)
    assert result.rows[3][side].taken == 24


def test_outage_specs_resolve_against_the_start() -> None:
    spec = OutageSpec("backup", timedelta(days=1), START + timedelta(days=2))
    assert spec.at(START) == Outage("backup", START + timedelta(days=1), START + timedelta(days=2))


def test_samples_cover_every_run_for_the_plot() -> None:
    from reconciler.render.plot import side_series

    result = forecast(config(PROTECTED), facts(), START, days=2, step=timedelta(hours=2))
    series = side_series(result)
    assert set(series) == {"nas (source)", "backup (target)"}
    assert len(series["nas (source)"]) == result.runs == 24
    assert series["backup (target)"][-1][1] > 0


def test_the_facts_given_are_not_changed() -> None:
    observed = facts()
    forecast(config(PROTECTED), observed, START, days=1, step=timedelta(hours=1))
    assert observed.dataset("nas", "tank/data").snapshots == []  # type: ignore[union-attr]
    assert observed.dataset("backup", "pool/nas/tank/data") is None


@pytest.mark.parametrize("days", [1, 3])
def test_rows_are_at_whole_days_whatever_the_step(days: int) -> None:
    result = forecast(config(PROTECTED, "7h"), facts(), START, days=days, step=timedelta(hours=7))
    assert len(result.rows) == days + 1
    assert result.runs == -(-days * 24 // 7)


def test_progress_is_called_once_a_day() -> None:
    seen: list[tuple[int, int]] = []
    forecast(config(PROTECTED), facts(), START, days=3, step=timedelta(hours=5),
             progress=lambda day, days: seen.append((day, days)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
