"""Fast tests for what the real-OpenZFS runs (tests/e2e/test_scenarios_*.py) showed.

A target written to after its newest snapshot makes OpenZFS refuse the next incremental
receive ("destination ... has been modified since most recent snapshot"); the stand-in
never reports a filesystem's ``written``, so only the real suite found it. The plan now
reports it as a conflict with the rollback that fixes it, instead of a failed apply.

After ``kill -9`` of apply during a send, the cut-off ``zfs recv -s`` in the guest drained
what was in flight and saved its state a few seconds later, after the next apply had
gathered its token: OpenZFS refused the older token ("kernel modules must be upgraded to
receive this stream", EINVAL). A resume now reads the target's token right before it
starts and waits, a bounded number of times, while the old receive is busy.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from plan_builders import NOW, World, simple_config

from reconciler.domain.actions import SendAction
from reconciler.domain.resume_token import encode_resume_token
from reconciler.errors import ExecError
from reconciler.execute import progress, transfer
from reconciler.execute.transfer import run_send, transfer_error
from reconciler.gather.parse import parse_zfs_list
from reconciler.planning.planner import make_plan
from reconciler.transport.interface import CommandResult
from reconciler.transport.pump import TransferResult

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
    bar = progress._LogTransfer(progress.LogProgress(out), "incr a -> b", 624, interval=0.0)
    bar.update(1536)
    line = out.getvalue()
    assert "estimated 624 B" in line and "ETA" not in line and "-" not in line.split(":", 1)[1]


def test_receiver_cut_off_is_reported_as_resumable_not_as_the_stopped_senders_exit() -> None:
    # Real run: the receive read 2 MiB and failed; the controller then stopped the sending
    # system ssh client, which exits 255 on SIGTERM. The cause is the receiver's.
    action = SendAction("src", "src/res", "s1", "dst", "dst/backup/src/res", None, ("s1",))
    stderr = "cannot receive new filesystem stream: checksum mismatch or incomplete stream.\n"
    error = transfer_error(action, TransferResult(2 << 20, 3.0, 255, 1, "", stderr, sender_stopped=True))
    assert error.code == "stream_broken" and "resum" in str(error), str(error)


TOGUID, FROMGUID = 0x1234_5678_9ABC, 0x0FED_CBA9
PLANNED = encode_resume_token(TOGUID, "tank@zrepl_2", fromguid=FROMGUID, bytes_=2 << 20)
ADVANCED = encode_resume_token(TOGUID, "tank@zrepl_2", fromguid=FROMGUID, bytes_=5 << 20)
OTHER = encode_resume_token(TOGUID + 1, "tank@zrepl_3", fromguid=FROMGUID, bytes_=1 << 20)
RESUME = SendAction("nas", "tank", "zrepl_2", "backup", "pool/nas/tank", "zrepl_1", ("zrepl_2",),
                    resume_token=PLANNED)


class TokenTarget:
    """The target host's executor: answers ``zfs get receive_resume_token`` from a list."""

    host = "backup"

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.calls: list[list[str]] = []

    def run(self, argv: list[str], *, timeout: float | None = None) -> CommandResult:
        self.calls.append(list(argv))
        token = self.tokens.pop(0) if len(self.tokens) > 1 else self.tokens[0]
        return CommandResult(tuple(argv), 0, token + "\n", "")

    def close(self) -> None:
        pass


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def transfer(self, label: str, total: int | None) -> progress.TransferProgress:
        return progress.NullProgress().transfer(label, total)


def fake_sends(monkeypatch: pytest.MonkeyPatch, *errors: str) -> list[str | None]:
    """Each attempt records its token and fails with the next error code (then succeeds)."""
    used: list[str | None] = []
    pending = list(errors)

    def once(action: SendAction, *_: object) -> TransferResult:
        used.append(action.resume_token)
        if pending:
            raise ExecError("zfs said no", code=pending.pop(0))
        return TransferResult(1, 1.0, 0, 0, "", "")

    monkeypatch.setattr(transfer, "_run_send_once", once)
    return used


def test_resume_uses_the_targets_current_token_when_the_receive_saved_more(
        monkeypatch: pytest.MonkeyPatch) -> None:
    used = fake_sends(monkeypatch)
    target, sink = TokenTarget(ADVANCED), Lines()
    run_send(RESUME, {"backup": target}, progress=sink)
    assert used == [ADVANCED]
    get = ["zfs", "get", "-H", "-p", "-o", "value", "receive_resume_token", "pool/nas/tank"]
    assert target.calls == [get]
    assert any("saved more since the plan (2.0 MiB -> 5.0 MiB)" in line for line in sink.lines), sink.lines


def test_resume_waits_while_the_old_receive_is_busy_then_retries_with_a_fresh_token(
        monkeypatch: pytest.MonkeyPatch) -> None:
    used = fake_sends(monkeypatch, "busy", "resume_token_invalid")
    waits: list[float] = []
    sink = Lines()
    run_send(RESUME, {"backup": TokenTarget(PLANNED, PLANNED, ADVANCED)},
             progress=sink, sleep=waits.append)
    assert used == [PLANNED, PLANNED, ADVANCED]
    assert waits == list(transfer.RESUME_RETRY_WAITS[:2])
    assert sum("retry   resume send of tank@zrepl_2" in line for line in sink.lines) == 2


def test_resume_gives_up_after_the_bounded_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_sends(monkeypatch, *["busy"] * 10)
    waits: list[float] = []
    with pytest.raises(ExecError) as raised:
        run_send(RESUME, {"backup": TokenTarget(PLANNED)}, sleep=waits.append)
    assert raised.value.code == "busy" and waits == list(transfer.RESUME_RETRY_WAITS)


@pytest.mark.parametrize(("now", "says"), [("-", "is gone"), (OTHER, "no longer the one planned")])
def test_resume_refuses_when_the_partial_receive_is_gone_or_another(
        monkeypatch: pytest.MonkeyPatch, now: str, says: str) -> None:
    used = fake_sends(monkeypatch)
    with pytest.raises(ExecError) as raised:
        run_send(RESUME, {"backup": TokenTarget(now)}, sleep=lambda _: None)
    assert says in str(raised.value) and "run plan again" in str(raised.value)
    assert used == []


def test_a_plain_send_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    used = fake_sends(monkeypatch, "busy")
    plain = SendAction("nas", "tank", "zrepl_2", "backup", "pool/nas/tank", "zrepl_1", ("zrepl_2",))
    with pytest.raises(ExecError):
        run_send(plain, {"backup": TokenTarget("-")}, sleep=lambda _: None)
    assert used == [None]
