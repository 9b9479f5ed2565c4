"""The record of every apply: folding a cycle in (pure, tables), the JSON round trip, and the
state file: where it lives, written atomically, bounded, a corrupt or missing one rebuilt."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.codes import ConflictCode, CycleResult, PairResult
from reconciler.config.models import Config
from reconciler.domain.actions import DestroyAction, SendAction, SnapshotAction
from reconciler.domain.plan import Conflict, FilesystemReport, Plan, PlanSelection
from reconciler.domain.record import MAX_ERROR_CHARS, PairKey, PairRecord, RecordError, StateRecord
from reconciler.execute.apply import DONE, FAILED, SKIPPED, ApplyReport, Outcome
from reconciler.operate.record import Cycle, updated_record
from reconciler.operate.state_file import (
    ROOT_STATE_DIR,
    STATE_DIR_ENV,
    read_state,
    state_directory,
    state_path,
    write_state,
)

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=1)
CONFIG = Config.model_validate({
    "hosts": {"nas": {"connection": "local"}, "backup": {"connection": "local"}},
    "policies": {"p": {"snapshots": {"prefix": "s", "interval": "1h"}}},
    "filesystems": [{"host": "nas", "filter": {"tank<": True}, "policy": "p",
                     "replicate_to": [{"host": "backup", "root": "pool"}]}],
})
SRC_A, PAIR_A = PairKey("nas", "tank/a"), PairKey("nas", "tank/a", "backup", "pool/tank/a")
SRC_B, PAIR_B = PairKey("nas", "tank/b"), PairKey("nas", "tank/b", "backup", "pool/tank/b")
SNAP_A = SnapshotAction("nas", "tank/a", "s1", "b")
SEND_A = SendAction("nas", "tank/a", "s1", "backup", "pool/tank/a", None, ("s1",))
SEND_B = SendAction("nas", "tank/b", "s1", "backup", "pool/tank/b", None, ("s1",))
PRUNE_TARGET_A = DestroyAction("backup", "pool/tank/a", ("s0",))


EVERYTHING = PlanSelection()


def plan(*actions: Any, datasets: tuple[str, ...] = ("tank/a", "tank/b"),
         conflicts: tuple[Conflict, ...] = (), unavailable: tuple[tuple[str, str], ...] = (),
         selection: PlanSelection = EVERYTHING) -> Plan:
    reports = [FilesystemReport("nas", d, "source", "p", "", "") for d in datasets]
    reports += [FilesystemReport("backup", f"pool/{d}", "target", "p", "", "") for d in datasets]
    return Plan(NOW, "sha256:x", tuple(actions), conflicts, tuple(reports), unavailable, selection=selection)


def report(*outcomes: Outcome, stopped: bool = False) -> ApplyReport:
    return ApplyReport(list(outcomes), stopped=stopped)


def previous(*pairs: PairRecord) -> StateRecord:
    return StateRecord("/etc/c.yml", pairs=tuple(pairs))


def results(record: StateRecord) -> dict[PairKey, tuple[str, str]]:
    return {p.key: (p.result, p.error) for p in record.pairs}


# ------------------------------------------------------------------ folding a cycle in


@pytest.mark.parametrize(("cycle", "expected"), [
    (Cycle(NOW, 1.0, plan()), {SRC_A: "ok", PAIR_A: "ok", SRC_B: "ok", PAIR_B: "ok"}),
    (Cycle(NOW, 1.0, plan(SNAP_A, SEND_A), report(Outcome(SNAP_A, DONE), Outcome(SEND_A, FAILED, "boom"))),
     {SRC_A: "ok", PAIR_A: "failed", SRC_B: "ok", PAIR_B: "ok"}),
    (Cycle(NOW, 1.0, plan(SEND_A, PRUNE_TARGET_A),
           report(Outcome(SEND_A, DONE), Outcome(PRUNE_TARGET_A, FAILED, "busy"))),
     {SRC_A: "ok", PAIR_A: "failed", SRC_B: "ok", PAIR_B: "ok"}),  # a replica's destroy: its pair
    (Cycle(NOW, 1.0, plan(SNAP_A, SEND_A),
           report(Outcome(SNAP_A, FAILED, "no space"), Outcome(SEND_A, SKIPPED, "depends on nas:tank/a"))),
     {SRC_A: "failed", PAIR_A: "skipped", SRC_B: "ok", PAIR_B: "ok"}),
    (Cycle(NOW, 1.0, plan(SEND_A, SEND_B),
           report(Outcome(SEND_A, DONE), Outcome(SEND_B, SKIPPED, "stopped on request"), stopped=True)),
     {SRC_A: "ok", PAIR_A: "ok", SRC_B: "ok", PAIR_B: "stopped"}),
    (Cycle(NOW, 1.0, plan(PRUNE_TARGET_A),
           report(Outcome(PRUNE_TARGET_A, SKIPPED, "no longer exists", names=("s0",)))),
     {SRC_A: "ok", PAIR_A: "ok", SRC_B: "ok", PAIR_B: "ok"}),  # a name the re-check dropped is fine
    (Cycle(NOW, 1.0, plan(conflicts=(Conflict(ConflictCode.DIVERGED, "backup", "pool/tank/a", "diverged", "",
                                              "nas", "tank/a"),))),
     {SRC_A: "ok", PAIR_A: "conflict", SRC_B: "ok", PAIR_B: "ok"}),
    (Cycle(NOW, 1.0, plan(unavailable=(("backup", "refused"),), conflicts=tuple(
        Conflict(ConflictCode.HOST_UNAVAILABLE, "backup", f"pool/{d}", "down", "", "nas", d)
        for d in ("tank/a", "tank/b")))),
     {SRC_A: "ok", PAIR_A: "unavailable", SRC_B: "ok", PAIR_B: "unavailable"}),
], ids=["no-changes", "send-failed", "target-destroy-failed", "snapshot-failed", "stopped", "recheck-drop",
        "conflict", "target-down"])
def test_each_pair_gets_its_result(cycle: Cycle, expected: dict[PairKey, str]) -> None:
    record = updated_record(previous(), CONFIG, cycle)
    assert {k: r for k, (r, _) in results(record).items()} == expected
    for pair in record.pairs:
        assert pair.last_attempt == NOW
        assert pair.last_success == (NOW if pair.result == PairResult.OK else None)
        assert bool(pair.error) is (pair.result != PairResult.OK)


def test_last_success_survives_a_failure_and_bytes_are_counted() -> None:
    ok = PairRecord(PAIR_A, EARLIER, PairResult.OK, EARLIER, bytes=5)
    first = updated_record(previous(ok), CONFIG, Cycle(NOW, 2.0, plan(SEND_A), report(
        Outcome(SEND_A, FAILED, "stream broken", "stream_broken", seconds=1.5))))
    pair = first.by_key()[PAIR_A]
    assert (pair.result, pair.last_success, pair.bytes, pair.seconds) == (PairResult.FAILED, EARLIER, 0, 1.5)
    assert pair.error == "full send tank/a@s1 to backup:pool/tank/a: stream broken"
    later = NOW + timedelta(hours=1)
    second = updated_record(first, CONFIG, Cycle(later, 2.0, plan(SEND_A), report(
        Outcome(SEND_A, DONE, seconds=0.5, bytes=4096))))
    pair = second.by_key()[PAIR_A]
    assert (pair.result, pair.last_success, pair.bytes, pair.error) == (PairResult.OK, later, 4096, "")
    assert second.totals.bytes_sent == 4096
    assert second.totals.actions == {("send", "failed"): 1, ("send", "done"): 1}
    assert second.totals.cycles == {"failed": 1, "ok": 1}
    assert second.last_cycle is not None and second.last_cycle.done == 1


def test_errors_are_clipped() -> None:
    record = updated_record(previous(), CONFIG, Cycle(NOW, 1.0, plan(SEND_A), report(
        Outcome(SEND_A, FAILED, "x" * 100_000))))
    assert len(record.by_key()[PAIR_A].error) < MAX_ERROR_CHARS + 40
    error_cycle = updated_record(previous(), CONFIG, Cycle(NOW, 1.0, error="y" * 100_000))
    assert error_cycle.last_cycle is not None and len(error_cycle.last_cycle.error) < MAX_ERROR_CHARS + 40


def test_a_cycle_that_could_not_run_keeps_the_pairs() -> None:
    kept = PairRecord(PAIR_A, EARLIER, PairResult.OK, EARLIER)
    record = updated_record(previous(kept), CONFIG, Cycle(NOW, 0.1, error="lost the config"))
    assert record.pairs == (kept,)
    assert record.last_cycle is not None and record.last_cycle.result == CycleResult.ERROR


@pytest.mark.parametrize(("key", "cycle", "kept"), [
    (PairKey("nas", "tank/gone"), Cycle(NOW, 1.0, plan()), False),  # looked at, not found: gone
    (PairKey("nas", "tank/gone", "backup", "pool/tank/gone"), Cycle(NOW, 1.0, plan()), False),
    (PairKey("nas", "elsewhere/x"), Cycle(NOW, 1.0, plan()), False),  # no longer configured
    (PairKey("nas", "tank/a", "old", "pool/tank/a"), Cycle(NOW, 1.0, plan()), False),  # target removed
    (PairKey("nas", "tank/c"), Cycle(NOW, 1.0, plan(selection=PlanSelection(("backup",)))), True),
    (PairKey("nas", "tank/c"), Cycle(NOW, 1.0, plan(datasets=(), unavailable=(("nas", "refused"),))), True),
], ids=["dataset-gone", "pair-gone", "unconfigured", "target-removed", "outside-selection", "host-down"])
def test_the_record_keeps_only_current_pairs(key: PairKey, cycle: Cycle, kept: bool) -> None:
    old = PairRecord(key, EARLIER, PairResult.OK, EARLIER)
    record = updated_record(previous(old), CONFIG, cycle)
    assert (key in record.by_key()) is kept
    if kept and cycle.unavailable_hosts:
        after = record.by_key()[key]
        assert (after.result, after.last_attempt) == (PairResult.UNAVAILABLE, NOW)
        assert after.last_success == EARLIER
        assert "host nas is unavailable: refused" in after.error


def test_the_record_stays_bounded_over_many_cycles() -> None:
    record = previous()
    sizes = []
    for hour in range(200):
        cycle = Cycle(NOW + timedelta(hours=hour), 1.0, plan(SEND_A), report(
            Outcome(SEND_A, FAILED if hour % 3 else DONE, "e" * 5000, bytes=10)))
        record = updated_record(record, CONFIG, cycle)
        sizes.append(len(json.dumps(record.to_json())))
    assert len(record.pairs) == 4
    # Only values change (an error is there or not), never the amount of entries or text.
    assert max(sizes[-50:]) <= max(sizes[:10]) + 20
    assert max(sizes) < 4000


# ------------------------------------------------------------------ the JSON round trip


def test_round_trip_and_strictness() -> None:
    record = updated_record(previous(), CONFIG, Cycle(NOW, 1.0, plan(SNAP_A, SEND_A), report(
        Outcome(SNAP_A, DONE), Outcome(SEND_A, DONE, bytes=7))))
    data = json.loads(json.dumps(record.to_json()))
    assert StateRecord.from_json(data) == record
    assert set(data) == {"format_version", "tool_version", "config_path", "last_cycle", "pairs", "totals"}
    assert set(data["pairs"][0]) == {"host", "dataset", "target_host", "target_dataset", "last_attempt",
                                     "last_success", "result", "error", "bytes", "seconds"}
    for damage, where in [
        (lambda d: d.update(format_version=2), "format_version"),
        (lambda d: d["pairs"][0].update(result="great"), "pairs[0].result"),
        (lambda d: d["pairs"][1].update(bytes=-1), "pairs[1].bytes"),
        (lambda d: d["pairs"][0].update(last_attempt="yesterday"), "pairs[0].last_attempt"),
        (lambda d: d["totals"]["actions"].update({"Bad Kind": {}}), "totals.actions"),
        (lambda d: d["totals"]["cycles"].update(weird=1), "totals.cycles"),
        (lambda d: d.update(last_cycle=[]), "last_cycle"),
    ]:
        broken = json.loads(json.dumps(data))
        damage(broken)
        with pytest.raises(RecordError, match=where.replace("[", r"\[").replace("]", r"\]")):
            StateRecord.from_json(broken)


# ------------------------------------------------------------------ the state file


def test_where_the_state_file_lives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATE_DIR_ENV)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert state_directory(None) == ROOT_STATE_DIR
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_directory(None) == tmp_path / "xdg" / "zrepl-reconcile"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert state_directory(None) == tmp_path / "home" / ".local" / "state" / "zrepl-reconcile"
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "env"))
    assert state_directory(None) == tmp_path / "env"
    assert state_directory("~/mine") == tmp_path / "home" / "mine"  # the setting wins, ~ expanded
    # One file per configuration, named after it; the same file for the same config by any path.
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "zrepl-reconcile.yml").touch()
    (tmp_path / "b").symlink_to(tmp_path / "a")
    first = state_path(tmp_path / "a" / "zrepl-reconcile.yml", None)
    assert first == state_path(tmp_path / "b" / "zrepl-reconcile.yml", None)
    assert first.name.startswith("zrepl-reconcile-") and first.suffix == ".json"
    assert first != state_path(tmp_path / "other.yml", None)


def test_write_is_atomic_and_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yml"
    path = tmp_path / "deep" / "state" / "c.json"
    record = StateRecord(os.path.realpath(config), pairs=(PairRecord(PAIR_A, NOW, PairResult.OK, NOW),))
    write_state(path, record)
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert read_state(path, config).record == record and read_state(path, config).note == ""
    # A crash while writing (here: the rename fails) leaves the old record and no temporary file.
    newer = StateRecord(record.config_path)

    def broken_replace(*_: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_state(path, newer)
    assert read_state(path, config).record == record
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.json"]


@pytest.mark.parametrize(("content", "why"), [
    (b"", "corrupt"),
    (b"{\"format_version\": 1, \"pairs\": ", "corrupt"),
    (b"\xff\xfe not utf-8", "cannot read"),
    (b"[1, 2, 3]", "corrupt (state: expected an object)"),
    (b'{"format_version": 99}', "corrupt (format_version 99 is not 1)"),
    (b"[" * 100_000 + b"]" * 100_000, "corrupt"),
], ids=["empty", "truncated", "binary", "not-an-object", "newer-format", "deep"])
def test_a_corrupt_state_file_is_reported_and_rebuilt(tmp_path: Path, content: bytes, why: str) -> None:
    config = tmp_path / "c.yml"
    path = tmp_path / "c.json"
    path.write_bytes(content)
    loaded = read_state(path, config)
    assert loaded.record == StateRecord(os.path.realpath(config))
    assert why in loaded.note and str(path) in loaded.note and "\n" not in loaded.note
    write_state(path, updated_record(loaded.record, CONFIG, Cycle(NOW, 1.0, plan())))
    assert read_state(path, config).note == ""


def test_missing_fifo_and_foreign_state_files(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    missing = read_state(tmp_path / "none.json", config)
    assert missing.missing and "no record" in missing.note
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert "not a regular file" in read_state(fifo, config).note  # and it did not block
    other = tmp_path / "other.json"
    write_state(other, StateRecord("/somewhere/else.yml"))
    assert "is the record of /somewhere/else.yml" in read_state(other, config).note
