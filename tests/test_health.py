"""planning/health.py: lag, snapshots waiting and problems, as tables of facts -> expected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler.codes import PairResult
from reconciler.config.models import Config
from reconciler.domain.observed import Bookmark, Dataset, HostFacts, HostUnavailable, ObservedState, Snapshot
from reconciler.domain.record import PairKey, PairRecord, StateRecord
from reconciler.planning.health import (
    Replicated,
    assess,
    format_duration,
    last_apply_problem,
    newest_by_cursor,
    newest_on_target,
    replication_lag,
    snapshots_waiting,
    space_of,
)
from reconciler.planning.naming import cursor_prefix

T0 = 1_764_000_000
HOUR = 3600
NOW = datetime.fromtimestamp(T0 + 10 * HOUR, UTC)


def snap(name: str, guid: int, txg: int, creation: int, written: int | None = 100) -> Snapshot:
    return Snapshot(name, guid, txg, creation, written=written, referenced=1000 + txg)


def dataset(name: str, snaps: list[Snapshot], bookmarks: list[Bookmark] | None = None) -> Dataset:
    return Dataset(name, "filesystem", 1, 1, snapshots=snaps, bookmarks=bookmarks or [])


# Source: s1..s4, one hour apart, guids 11..14, txgs 1..4.
SOURCE = dataset("tank/a", [snap(f"s{i}", 10 + i, i, T0 + i * HOUR) for i in range(1, 5)])


@pytest.mark.parametrize(("target_snaps", "expected"), [
    ([], None),  # nothing arrived
    ([(11, 5)], "s1"),
    ([(11, 5), (12, 6)], "s2"),
    ([(11, 5), (12, 6), (99, 7)], "s2"),  # a target-only snapshot (diverged) is not replicated
    ([(14, 5)], "s4"),  # initial: newest
    ([(98, 5), (99, 6)], None),  # nothing in common: by GUID, never by name
], ids=["empty", "first", "second", "newer-unknown", "newest-only", "no-common"])
def test_newest_on_target_by_guid(target_snaps: list[tuple[int, int]], expected: str | None) -> None:
    target = dataset("pool/a", [snap(f"s{g % 10}", g, txg, 0) for g, txg in target_snaps])
    found = newest_on_target(SOURCE, target)
    assert (found.name if found else None) == expected


def test_newest_on_target_counts_a_bookmark_the_source_pruned_to() -> None:
    source = dataset("tank/a", [snap("s3", 13, 3, T0 + 3 * HOUR)], [Bookmark("s2", 12, 2, T0 + 2 * HOUR)])
    target = dataset("pool/a", [snap("s2", 12, 9, T0 + 2 * HOUR)])
    assert newest_on_target(source, target) == Replicated("#s2", T0 + 2 * HOUR, 2)
    assert newest_on_target(source, None) is None  # the target dataset does not exist yet


@pytest.mark.parametrize(("cursors", "expected"), [
    ([], None),
    ([Bookmark("c_s2", 12, 2, T0 + 2 * HOUR)], Replicated("s2", T0 + 2 * HOUR, 2)),
    ([Bookmark("c_s1", 11, 1, T0 + HOUR), Bookmark("c_s3", 13, 3, T0 + 3 * HOUR)],
     Replicated("s3", T0 + 3 * HOUR, 3)),
    ([Bookmark("c_gone", 77, 0, T0)], Replicated("#c_gone", T0, 0)),  # its snapshot was pruned
], ids=["none", "one", "newest-of-two", "snapshot-pruned"])
def test_newest_by_cursor(cursors: list[Bookmark], expected: Replicated | None) -> None:
    assert newest_by_cursor(SOURCE, cursors) == expected


@pytest.mark.parametrize(("replicated", "initial", "waiting", "lag"), [
    (Replicated("s4", T0 + 4 * HOUR, 4), "newest", 0, 6 * HOUR),
    (Replicated("s2", T0 + 2 * HOUR, 2), "newest", 2, 8 * HOUR),
    (None, "newest", 1, 9 * HOUR),  # nothing yet: the first send carries the newest only...
    (None, "all", 4, 9 * HOUR),  # ... or all; the lag is the age of the oldest waiting
], ids=["up-to-date", "two-behind", "never-newest", "never-all"])
def test_waiting_and_lag(replicated: Replicated | None, initial: str, waiting: int, lag: int) -> None:
    assert snapshots_waiting(SOURCE, replicated, initial) == waiting
    assert replication_lag(SOURCE, replicated, int(NOW.timestamp())) == lag


def test_no_snapshot_no_lag_and_space() -> None:
    empty = dataset("tank/e", [])
    assert replication_lag(empty, None, T0) is None
    assert snapshots_waiting(empty, None, "newest") == 0
    space = space_of(SOURCE)
    assert space is not None
    assert (space.snapshots, space.written_bytes, space.referenced_bytes) == (4, 400, 1004)
    assert space_of(None) is None
    assert space_of(dataset("x", [snap("a", 1, 1, 0, written=None)])).written_bytes == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(("seconds", "text"), [(5, "5s"), (125, "2m"), (3 * HOUR + 300, "3h 05m"),
                                               (2 * 86400 + 4 * HOUR, "2d 04h")])
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(("result", "problem"), [
    (PairResult.OK, False), (PairResult.SKIPPED, False), (PairResult.STOPPED, False),
    (PairResult.UNAVAILABLE, False),  # the host is the problem, said once
    (PairResult.FAILED, True), (PairResult.CONFLICT, True)])
def test_last_apply_problem(result: PairResult, problem: bool) -> None:
    record = PairRecord(PairKey("nas", "tank/a", "backup", "pool/a"), NOW, result, error="boom")
    text = last_apply_problem(record)
    assert bool(text) is problem
    if problem:
        assert "nas:tank/a -> backup:pool/a" in text and "boom" in text


# ------------------------------------------------------------------ assess: the whole status

CONFIG: dict[str, Any] = {
    "hosts": {"nas": {"connection": "local"}, "backup": {"connection": "local"}},
    "policies": {"p": {"snapshots": {"prefix": "s", "interval": "1h"}}},
    "filesystems": [{"host": "nas", "filter": {"tank/a": True}, "policy": "p",
                     "replicate_to": [{"host": "backup", "root": "pool"}]}],
}


def observed(target: list[int] | None, *, cursor_guid: int | None = None) -> ObservedState:
    """nas:tank/a as SOURCE; backup:pool/tank/a with those source GUIDs, or backup down (None)."""
    bookmarks = [Bookmark(cursor_prefix("backup", "pool") + "x", cursor_guid, cursor_guid - 10,
                          T0 + (cursor_guid - 10) * HOUR)] if cursor_guid else []
    source = dataset("tank/a", SOURCE.snapshots, bookmarks)
    state = ObservedState({"nas": HostFacts("nas", {"tank/a": source})})
    if target is None:
        state.unavailable["backup"] = HostUnavailable("backup", "unreachable", "host 'backup': refused")
    else:
        snaps = [snap(f"s{g - 10}", g, 20 + g, T0 + (g - 10) * HOUR) for g in target]
        state.hosts["backup"] = HostFacts("backup", {"pool": dataset("pool", []),
                                                     "pool/tank": dataset("pool/tank", []),
                                                     "pool/tank/a": dataset("pool/tank/a", snaps)})
    return state


def record(result: PairResult = PairResult.OK) -> StateRecord:
    key = PairKey("nas", "tank/a", "backup", "pool/tank/a")
    return StateRecord("/c.yml", pairs=(PairRecord(key, NOW, result, error="x failed"),))


@pytest.mark.parametrize(("facts", "state", "max_lag", "problems"), [
    (observed([11, 12, 13, 14]), record(), 7 * HOUR, []),
    (observed([11, 12, 13, 14]), record(), 5 * HOUR, ["lag 6h 00m exceeds --max-lag 5h 00m"]),
    (observed([11, 12, 13, 14]), record(PairResult.FAILED), None,
     ["last apply failed at 2025-11-25T02:00:00Z: x failed"]),
    (observed([11, 12, 13, 14]), None, None, []),  # no record yet: nothing failed
    (observed(None, cursor_guid=12), record(), 9 * HOUR, ["host backup is unreachable"]),
    (observed(None, cursor_guid=12), record(), 7 * HOUR,
     ["host backup is unreachable", "lag 8h 00m exceeds"]),  # the cursor tells the lag of a target down
], ids=["healthy", "lagging", "failed", "no-record", "down", "down-and-lagging"])
def test_assess_problems(facts: ObservedState, state: StateRecord | None, max_lag: int | None,
                         problems: list[str]) -> None:
    config = Config.model_validate(CONFIG)
    status = assess(config, facts, state, NOW, max_lag=timedelta(seconds=max_lag) if max_lag else None)
    assert status.healthy is (not problems)
    assert len(status.problems) == len(problems), status.problems
    for expected, found in zip(problems, status.problems, strict=True):
        assert expected in found
    [fs] = status.filesystems
    [target] = fs.targets
    assert target.reachable is ("backup" in facts.hosts)
    assert target.lag_seconds == (6 * HOUR if target.reachable else 8 * HOUR)
    assert fs.interval_seconds == HOUR and fs.space is not None and fs.space.snapshots == 4


def test_assess_keeps_the_record_of_a_source_host_that_is_down() -> None:
    config = Config.model_validate(CONFIG)
    facts = ObservedState({"backup": HostFacts("backup", {})},
                          {"nas": HostUnavailable("nas", "unreachable", "host 'nas': refused")})
    status = assess(config, facts, record(PairResult.FAILED), NOW)
    [fs] = status.filesystems
    assert (fs.host, fs.dataset, fs.reachable) == ("nas", "tank/a", False)
    assert fs.targets[0].last_apply is not None and fs.targets[0].last_apply.result == PairResult.FAILED
    assert status.problems[0].startswith("host nas is unreachable")
    assert not status.healthy


def test_assess_narrows_like_plan() -> None:
    config = Config.model_validate({**CONFIG, "filesystems": [
        *CONFIG["filesystems"], {"host": "nas", "filter": {"tank/b": True}, "policy": "p"}]})
    facts = observed([14])
    facts.hosts["nas"].datasets["tank/b"] = dataset("tank/b", [])
    assert [f.dataset for f in assess(config, facts, None, NOW).filesystems] == ["tank/a", "tank/b"]
    narrowed = assess(config, facts, None, NOW, filesystems=["tank/b"]).filesystems
    assert [f.dataset for f in narrowed] == ["tank/b"]
    only_pairs = assess(config, facts, None, NOW, hosts=["backup"]).filesystems
    assert [(f.dataset, len(f.targets)) for f in only_pairs] == [("tank/a", 1)]
