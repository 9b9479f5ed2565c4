"""Fast tests for what the real-OpenZFS runs (tests/e2e/test_scenarios_*.py) showed.

A target written to after its newest snapshot makes OpenZFS refuse the next incremental
receive ("destination ... has been modified since most recent snapshot"); the stand-in
never reports a filesystem's ``written``, so only the real suite found it. The plan now
reports it as a conflict with the rollback that fixes it, instead of a failed apply.
"""

from __future__ import annotations

import io
from pathlib import Path

from plan_builders import NOW, World, simple_config

from reconciler.domain.actions import SendAction
from reconciler.execute.transfer import TransferResult, _LogTransfer, transfer_error
from reconciler.gather.parse import parse_zfs_list
from reconciler.planning.planner import make_plan

REAL_LIST = Path(__file__).parent / "data" / "zfs" / "real-zfs-list.txt"


def replicated_world(target_written: int | None) -> World:
    w = World()
    w.fs("nas", "tank")
    w.fs("backup", "pool")
    w.fs("backup", "pool/nas")
    w.snaps("nas", "tank", [("zrepl_1", 5), ("zrepl_2", 4)])
    target = w.replicate("nas", "tank", "backup", "pool/nas/tank", ["zrepl_1"])
    target.written = target_written
    return w


def test_target_written_since_newest_snapshot_is_a_conflict_not_a_failed_send() -> None:
    plan = make_plan(simple_config(interval="1d"), replicated_world(14848).observed, NOW)
    (conflict,) = plan.conflicts
    assert (conflict.code, conflict.host, conflict.dataset) == ("diverged", "backup", "pool/nas/tank")
    assert "modified since its newest snapshot zrepl_1" in conflict.message
    assert "zfs rollback pool/nas/tank@zrepl_1" in conflict.fix
    assert not [a for a in plan.actions if isinstance(a, SendAction)]
    assert all(a.host != "backup" for a in plan.actions)


def test_unmodified_target_gets_the_incremental() -> None:
    for written in (0, None):
        plan = make_plan(simple_config(interval="1d"), replicated_world(written).observed, NOW)
        assert not plan.conflicts
        (send,) = [a for a in plan.actions if isinstance(a, SendAction)]
        assert send.base == "zrepl_1"


def test_nothing_to_send_is_no_conflict_even_when_modified() -> None:
    w = replicated_world(4096)
    w.replicate("nas", "tank", "backup", "pool/nas/tank", ["zrepl_2"])
    plan = make_plan(simple_config(interval="1d"), w.observed, NOW)
    assert not plan.conflicts


def test_parser_keeps_a_filesystems_written_from_real_output() -> None:
    datasets = parse_zfs_list(REAL_LIST.read_text(), "guest")
    assert datasets["dst/replica"].written == 0
    assert datasets["dst/partial-full"].written == 1982464
    assert all(ds.written is not None for ds in datasets.values())


def test_log_progress_past_a_low_send_estimate_shows_no_negative_eta() -> None:
    # Real OpenZFS 2.1 estimated 624 B for an incremental zvol stream of 1.5 KiB.
    out = io.StringIO()
    progress = _LogTransfer(out, "incr a -> b", 624, interval=0.0)
    progress.update(1536)
    line = out.getvalue()
    assert "estimated 624 B" in line and "ETA" not in line and "-" not in line.split(":", 1)[1]


def test_receiver_cut_off_is_reported_as_resumable_not_as_the_stopped_senders_exit() -> None:
    # Real run: the receive read 2 MiB and failed; the controller then stopped the sending
    # system ssh client, which exits 255 on SIGTERM. The cause is the receiver's.
    action = SendAction("src", "src/res", "s1", "dst", "dst/backup/src/res", None, ("s1",))
    stderr = "cannot receive new filesystem stream: checksum mismatch or incomplete stream.\n"
    error = transfer_error(action, TransferResult(2 << 20, 3.0, 255, 1, "", stderr, sender_stopped=True))
    assert error.code == "stream_broken" and "resum" in str(error), str(error)
