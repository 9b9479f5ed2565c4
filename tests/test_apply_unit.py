"""apply_plan with fake executors: order, atomic batches, isolation, destroy re-check, stop."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.codes import HostProblem
from reconciler.config.models import Config
from reconciler.domain.actions import (
    KIND_RANK,
    MAX_ARGV_BYTES,
    Action,
    BookmarkAction,
    CreateAction,
    DestroyAction,
    HoldAction,
    HoldReceivedAction,
    ReleaseAction,
    SendAction,
    SnapshotAction,
)
from reconciler.domain.plan import Plan
from reconciler.errors import ExecError, TransportError
from reconciler.execute import apply as apply_module
from reconciler.execute.apply import (
    DONE,
    FAILED,
    SKIPPED,
    ApplyReport,
    apply_plan,
    batch_names,
)
from reconciler.transport.interface import CommandResult

LIST_HEADER = ("name", "type", "guid", "createtxg", "creation", "userrefs", "written", "referenced",
               "receive_resume_token")


class FakeExecutor:
    """Records every argv; ``fail`` maps an argv substring to stderr; ``datasets`` answers
    ``zfs list -d 1 <ds>`` with (name, guid, userrefs) snapshot rows and #bookmarks."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.calls: list[list[str]] = []
        self.fail: dict[str, str] = {}
        self.down = False
        self.datasets: dict[str, list[tuple[str, int, int]]] = {}

    def run(self, argv: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        if self.down:
            raise TransportError(self.host, HostProblem.UNREACHABLE, "connection refused")
        argv = list(argv)
        self.calls.append(argv)
        joined = " ".join(argv)
        for needle, stderr in self.fail.items():
            if needle in joined:
                return CommandResult(tuple(argv), 1, "", stderr)
        if argv[:2] == ["zfs", "list"] and "-d" in argv:
            return self.listing(argv[argv.index("-d") + 2:], "snapshot" in argv[argv.index("-t") + 1])
        if argv[:2] == ["zfs", "list"]:  # the sends' sizes: none known, each send asks -nP
            return CommandResult(tuple(argv), 0, "", "")
        if argv[:2] == ["zfs", "holds"]:
            return CommandResult(tuple(argv), 0, "".join(f"{n}\tkeep\tThu Jan  1 0:00 1970\n"
                                                         for n in argv[3:]), "")
        return CommandResult(tuple(argv), 0, "", "")

    def listing(self, names: list[str], snapshots: bool = True) -> CommandResult:
        """Like zfs: missing datasets named on stderr (exit 1), the others listed (their
        bookmarks only without ``snapshots``)."""
        rows: list[str] = []
        missing = [n for n in names if n not in self.datasets]
        for name in names:
            if name in missing:
                continue
            rows.append(f"{name}\tfilesystem\t99\t1\t0\t-\t0\t0\t-\toff\t-\t-")
            for txg, (snap, guid, refs) in enumerate(self.datasets[name], start=2):
                if not snap.startswith("#") and not snapshots:
                    continue
                if snap.startswith("#"):
                    rows.append(f"{name}{snap}\tbookmark\t{guid}\t{txg}\t0\t-\t-\t-\t-\t-\t-\t-")
                else:
                    rows.append(f"{name}@{snap}\tsnapshot\t{guid}\t{txg}\t0\t{refs}\t0\t0\t-\toff\t-\t-")
        stderr = "".join(f"cannot open '{n}': dataset does not exist\n" for n in missing)
        return CommandResult(("zfs",), 1 if missing else 0, "".join(r + "\n" for r in rows), stderr)

    def close(self) -> None:
        pass


def make_config(**policy: object) -> Config:
    return Config.model_validate({
        "hosts": {"nas": {"connection": "local"}, "backup": {"connection": "local"}},
        "policies": {"p": {"snapshots": {"prefix": "zrepl_", "interval": "1h"}, **policy}},
        "filesystems": [{"host": "nas", "filter": {"tank<": True}, "policy": "p",
                         "replicate_to": [{"host": "backup", "root": "pool"}]}],
    })


def plan_of(*actions: Action) -> Plan:
    """A plan of ``actions`` in the planner's order of kinds, the given order within a kind."""
    ordered = tuple(sorted(actions, key=lambda a: KIND_RANK[a.kind]))
    return Plan(now=datetime(2026, 11, 24, 12, tzinfo=UTC), fingerprint="sha256:x", actions=ordered)


def send(ds: str, snap: str = "zrepl_2") -> SendAction:
    return SendAction("nas", ds, snap, "backup", f"pool/{ds}", "zrepl_1", (snap,))


@pytest.fixture
def hosts() -> dict[str, FakeExecutor]:
    return {"nas": FakeExecutor("nas"), "backup": FakeExecutor("backup")}


def run(plan: Plan, hosts: dict[str, FakeExecutor], **kw: object) -> ApplyReport:
    return apply_plan(plan, make_config(), hosts, **kw)  # type: ignore[arg-type]


def statuses(report: ApplyReport) -> list[tuple[str, str]]:
    return [(o.status, o.action.kind) for o in report.outcomes]


def test_apply_runs_the_plans_order_and_refuses_a_plan_out_of_it(hosts: dict[str, FakeExecutor]) -> None:
    report = run(plan_of(CreateAction("backup", "pool/b"), CreateAction("backup", "pool/a")), hosts)
    assert hosts["backup"].calls == [["zfs", "create", "-o", "canmount=off", "pool/b"],
                                     ["zfs", "create", "-o", "canmount=off", "pool/a"]]
    assert report.ok
    hosts["backup"].calls.clear()
    unordered = Plan(now=datetime(2026, 11, 24, 12, tzinfo=UTC), fingerprint="sha256:x",
                     actions=(CreateAction("backup", "pool/a"),
                              SnapshotAction("nas", "tank/a", "zrepl_2", "k")))
    with pytest.raises(ExecError, match=r"not in execution order .*: snapshot nas:tank/a comes after create"):
        run(unordered, hosts)
    assert hosts["backup"].calls == [] and hosts["nas"].calls == []


def test_snapshot_batch_is_one_atomic_command(hosts: dict[str, FakeExecutor]) -> None:
    report = run(plan_of(SnapshotAction("nas", "tank/a", "zrepl_2", "k"),
                         SnapshotAction("nas", "tank/b", "zrepl_2", "k"),
                         SnapshotAction("nas", "tank/c", "zrepl_2", "other")), hosts)
    assert hosts["nas"].calls == [["zfs", "snapshot", "tank/a@zrepl_2", "tank/b@zrepl_2"],
                                  ["zfs", "snapshot", "tank/c@zrepl_2"]]
    assert [o.status for o in report.outcomes] == [DONE, DONE, DONE]


def test_failed_snapshot_batch_is_retried_one_by_one_and_only_the_broken_member_fails(
        hosts: dict[str, FakeExecutor], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reconciler.execute.apply.run_send",
                        lambda *a, **k: type("R", (), {"seconds": 0.1, "bytes": 10})())
    hosts["nas"].fail["tank/a@zrepl_2"] = "cannot create snapshots : out of space"
    report = run(plan_of(SnapshotAction("nas", "tank/a", "zrepl_2", "k"),
                         SnapshotAction("nas", "tank/b", "zrepl_2", "k"),
                         send("tank/a"), send("tank/b"),
                         SnapshotAction("nas", "tank/c", "zrepl_2", "k2"), send("tank/c")), hosts)
    assert hosts["nas"].calls[:3] == [["zfs", "snapshot", "tank/a@zrepl_2", "tank/b@zrepl_2"],
                                      ["zfs", "snapshot", "tank/a@zrepl_2"],
                                      ["zfs", "snapshot", "tank/b@zrepl_2"]]
    by = {(o.action.kind, o.action.dataset): o for o in report.outcomes}
    assert by[("snapshot", "tank/a")].status == FAILED and by[("snapshot", "tank/a")].code == "no_space"
    assert "out of space" in by[("snapshot", "tank/a")].message
    assert by[("snapshot", "tank/b")].status == DONE
    assert "on its own" in by[("snapshot", "tank/b")].message
    assert by[("send", "tank/a")].status == SKIPPED
    assert by[("send", "tank/b")].status == DONE and by[("send", "tank/c")].status == DONE
    assert by[("snapshot", "tank/c")].status == DONE
    assert not report.ok and len(report.failed) == 1


def test_snapshot_batch_on_a_host_that_is_down_fails_every_member_without_retrying(
        hosts: dict[str, FakeExecutor], monkeypatch: pytest.MonkeyPatch) -> None:
    def down(argv: list[str], **kw: object) -> object:
        raise TransportError("nas", HostProblem.UNREACHABLE, "nas: cannot connect: connection refused")

    monkeypatch.setattr(hosts["nas"], "run", down)
    report = run(plan_of(SnapshotAction("nas", "tank/a", "zrepl_2", "k"),
                         SnapshotAction("nas", "tank/b", "zrepl_2", "k"), send("tank/a")), hosts)
    assert [(o.status, o.action.kind) for o in report.outcomes] == [
        (FAILED, "snapshot"), (FAILED, "snapshot"), (SKIPPED, "send")]
    assert "unavailable" in report.skipped[0].message


def test_failed_send_skips_cursor_and_destroys_of_source_and_target_only(
        hosts: dict[str, FakeExecutor], monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_send(action: SendAction, *args: object, **kw: object) -> object:
        if action.dataset == "tank/a":
            raise ExecError("destination has been modified", code="diverged")
        return type("R", (), {"seconds": 0.1, "bytes": 10})()

    monkeypatch.setattr("reconciler.execute.apply.run_send", fake_send)
    hosts["nas"].datasets = {"tank/b": [("zrepl_0", 1, 0), ("zrepl_2", 2, 0)]}
    hosts["backup"].datasets = {"pool/tank/b": [("zrepl_2", 2, 0)]}
    report = run(plan_of(
        send("tank/a"), send("tank/b"),
        BookmarkAction("nas", "tank/a", "zrepl_2", "zrr-cursor_x"),
        BookmarkAction("nas", "tank/b", "zrepl_2", "zrr-cursor_x"),
        DestroyAction("nas", "tank/a", ("zrepl_0",)), DestroyAction("backup", "pool/tank/a", ("zrepl_0",)),
        DestroyAction("nas", "tank/b", ("zrepl_0",))), hosts)
    got = [(o.status, o.action.kind, o.action.dataset) for o in report.outcomes]
    assert got == [(FAILED, "send", "tank/a"), (DONE, "send", "tank/b"),
                   (SKIPPED, "bookmark", "tank/a"), (DONE, "bookmark", "tank/b"),
                   (SKIPPED, "destroy", "tank/a"), (SKIPPED, "destroy", "pool/tank/a"),
                   (DONE, "destroy", "tank/b")]
    assert not report.ok and "diverged" in report.skipped[0].message


def test_failed_placeholder_skips_sends_below_it(hosts: dict[str, FakeExecutor]) -> None:
    hosts["backup"].fail["zfs create"] = "cannot create 'pool/tank': permission denied"
    report = run(plan_of(CreateAction("backup", "pool/tank"), send("tank/a")), hosts)
    assert statuses(report) == [(FAILED, "create"), (SKIPPED, "send")]
    assert report.failed[0].code == "permission_denied"


def test_holds_and_releases_run_around_the_send_and_a_failed_hold_stops_what_it_protects(
        hosts: dict[str, FakeExecutor], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reconciler.execute.apply.run_send",
                        lambda *a, **k: type("R", (), {"seconds": 0.1, "bytes": 10})())
    hosts["nas"].fail["tank/b@zrepl_1"] = "cannot hold snapshot 'tank/b@zrepl_1': dataset does not exist"
    both = ("tank/a", "tank/b")
    report = run(plan_of(*(HoldAction("nas", ds, "zrepl_1", "zrr_send") for ds in both),
                         send("tank/a"), send("tank/b"),
                         *(ReleaseAction("nas", ds, "zrepl_1", "zrr_send") for ds in both)), hosts)
    # One command for the tag's holds; it failed, so each ran alone: tank/b's failure skips
    # its send and its release, tank/a goes on.
    assert statuses(report) == [(DONE, "hold"), (FAILED, "hold"), (DONE, "send"), (SKIPPED, "send"),
                                (SKIPPED, "release"), (DONE, "release")]
    # Between holds and sends: the incrementals' sizes, one listing of their snapshots by
    # name for the host (never a dataset's every snapshot: that is what makes listings slow).
    assert hosts["nas"].calls == [["zfs", "hold", "zrr_send", "tank/a@zrepl_1", "tank/b@zrepl_1"],
                                  ["zfs", "hold", "zrr_send", "tank/a@zrepl_1"],
                                  ["zfs", "hold", "zrr_send", "tank/b@zrepl_1"],
                                  ["zfs", "list", "-H", "-p", "-t", "snapshot", "-o", "name,written",
                                   "tank/a@zrepl_2", "tank/b@zrepl_2"],
                                  ["zfs", "release", "zrr_send", "tank/a@zrepl_1"]]


def test_holds_of_one_tag_are_one_command_and_a_hold_already_there_is_done(
        hosts: dict[str, FakeExecutor]) -> None:
    names = ("tank/a", "tank/b", "tank/c")
    report = run(plan_of(*(HoldReceivedAction("backup", f"pool/{ds}", "zrepl_2", "zrr-last-received_nas_1")
                           for ds in names),
                         *(ReleaseAction("backup", f"pool/{ds}", "zrepl_1", "zrr-last-received_nas_1")
                           for ds in names)), hosts)
    assert hosts["backup"].calls == [
        ["zfs", "hold", "zrr-last-received_nas_1", *(f"pool/{ds}@zrepl_2" for ds in names)],
        ["zfs", "release", "zrr-last-received_nas_1", *(f"pool/{ds}@zrepl_1" for ds in names)]]
    assert report.ok and len(report.done) == 6
    # A batch that failed halfway (zfs does each snapshot on its own): run again one by one,
    # a hold already there and a release of a hold already gone are what was wanted.
    hosts["backup"].calls.clear()
    hosts["backup"].fail = {
        "zrepl_2 pool/tank/b@zrepl_2": "cannot hold snapshot 'pool/tank/c@zrepl_2': dataset does not exist",
        "hold zrr-last-received_nas_1 pool/tank/a@zrepl_2": "cannot hold snapshot 'pool/tank/a@zrepl_2': tag"
                                                            " already exists on this dataset",
        "release zrr-last-received_nas_1 pool/tank/a@": "cannot release hold from snapshot"
                                                        " 'pool/tank/a@zrepl_1': no such tag on this dataset"}
    report = run(plan_of(*(HoldReceivedAction("backup", f"pool/{ds}", "zrepl_2", "zrr-last-received_nas_1")
                           for ds in names),
                         *(ReleaseAction("backup", f"pool/{ds}", "zrepl_1", "zrr-last-received_nas_1")
                           for ds in names)), hosts)
    assert report.ok, [o.line() for o in report.outcomes]
    assert [o.message for o in report.outcomes] == ["already held", "", "", "was not held", "", ""]


def test_a_long_batch_of_holds_is_split_within_argv_limits(hosts: dict[str, FakeExecutor]) -> None:
    holds = [HoldAction("nas", f"tank/{'d' * 200}{i:04d}", "zrepl_1", "zrr-step_backup_1")
             for i in range(700)]
    report = run(plan_of(*holds), hosts)
    assert report.ok and len(report.done) == 700
    assert len(hosts["nas"].calls) == 3
    assert all(sum(len(w.encode()) + 1 for w in call) <= MAX_ARGV_BYTES for call in hosts["nas"].calls)
    assert [a for call in hosts["nas"].calls for a in call[3:]] == [f"{h.dataset}@zrepl_1" for h in holds]


def test_destroy_recheck_drops_held_newest_and_vanished(hosts: dict[str, FakeExecutor]) -> None:
    # On the target: zrepl_3 is newest (invariant 4), zrepl_1 became held, zrepl_9 vanished.
    hosts["backup"].datasets = {"pool/tank/a": [("zrepl_0", 10, 0), ("zrepl_1", 11, 1), ("zrepl_2", 12, 0),
                                                ("zrepl_3", 13, 0)]}
    hosts["nas"].datasets = {"tank/a": [("zrepl_2", 12, 0), ("zrepl_3", 13, 0)]}
    report = run(plan_of(DestroyAction("backup", "pool/tank/a",
                                       ("zrepl_0", "zrepl_1", "zrepl_3", "zrepl_9"))), hosts)
    done = [o.names for o in report.done]
    skipped = {o.names[0]: o.message for o in report.skipped}
    assert done == [("zrepl_0",)]
    assert "held" in skipped["zrepl_1"] and "newest" in skipped["zrepl_3"]
    assert "no longer exists" in skipped["zrepl_9"]
    assert ["zfs", "destroy", "pool/tank/a@zrepl_0"] in hosts["backup"].calls
    assert report.ok  # dropping unsafe names is not a failure


def test_destroy_recheck_protects_the_incremental_base_on_the_source(hosts: dict[str, FakeExecutor]) -> None:
    # The target's newest snapshot zrepl_2 is the base; the source has no bookmark of it.
    hosts["nas"].datasets = {"tank/a": [("zrepl_1", 1, 0), ("zrepl_2", 2, 0), ("zrepl_3", 3, 0)]}
    hosts["backup"].datasets = {"pool/tank/a": [("zrepl_1", 1, 0), ("zrepl_2", 2, 0)]}
    report = run(plan_of(DestroyAction("nas", "tank/a", ("zrepl_1", "zrepl_2"))), hosts)
    assert [o.names for o in report.done] == [("zrepl_1",)]
    assert "base" in report.skipped[0].message
    # With a bookmark of the base (e.g. the cursor) the snapshot may go.
    hosts["nas"].datasets["tank/a"].append(("#zrr-cursor_backup_x_zrepl_2", 2, 0))
    report = run(plan_of(DestroyAction("nas", "tank/a", ("zrepl_2",))), hosts)
    assert [o.names for o in report.done] == [("zrepl_2",)]


def test_destroy_of_unmanaged_snapshot_is_refused_even_if_planned(hosts: dict[str, FakeExecutor]) -> None:
    hosts["nas"].datasets = {"tank/a": [("manual", 1, 0), ("zrepl_2", 2, 0)]}
    report = run(plan_of(DestroyAction("nas", "tank/a", ("manual",))), hosts)
    assert not report.done and "unmanaged" in report.skipped[0].message
    assert not any(c[:2] == ["zfs", "destroy"] for c in hosts["nas"].calls)


def test_destroy_batches_failures_are_per_batch(hosts: dict[str, FakeExecutor]) -> None:
    hosts["nas"].datasets = {"tank/a": [("zrepl_1", 1, 0), ("zrepl_2", 2, 0), ("zrepl_3", 3, 0),
                                        ("#zrr-cursor_old", 1, 0)]}
    hosts["nas"].fail["tank/a#zrr"] = "cannot destroy 'tank/a#zrr-cursor_old': permission denied"
    report = run(plan_of(DestroyAction("nas", "tank/a", ("zrepl_1", "zrepl_2", "#zrr-cursor_old"))), hosts)
    assert [(o.status, o.names) for o in report.outcomes] == [
        (FAILED, ("#zrr-cursor_old",)), (DONE, ("zrepl_1", "zrepl_2"))]


def test_destroy_phase_relists_once_per_host_not_once_per_destroy(hosts: dict[str, FakeExecutor]) -> None:
    names = ["tank/a", "tank/b", "tank/c"]
    rows = [("zrepl_1", 1, 0), ("zrepl_2", 2, 0), ("#zrr-cursor_backup_x_zrepl_2", 2, 0)]
    hosts["nas"].datasets = {ds: rows for ds in names}
    hosts["backup"].datasets = {f"pool/{ds}": [("zrepl_2", 2, 0)] for ds in names[:2]}  # pool/tank/c gone
    report = run(plan_of(*(DestroyAction("nas", ds, ("zrepl_1",)) for ds in names)), hosts)
    assert [o.names for o in report.done] == [("zrepl_1",)] * 3
    lists = {h: [c for c in e.calls if c[:2] == ["zfs", "list"]] for h, e in hosts.items()}
    assert [c[c.index("-d") + 2:] for c in lists["nas"]] == [names]
    assert [c[c.index("-d") + 2:] for c in lists["backup"]] == [[f"pool/{ds}" for ds in names]]


def test_old_cursor_destroys_relist_bookmarks_only(hosts: dict[str, FakeExecutor]) -> None:
    """A dataset whose destroys are all cursor bookmarks is re-listed without its snapshots
    (the slow part of a listing) and without its replicas: a bookmark's re-check needs only
    whether it is there. A snapshot destroy in the same phase still gets the whole listing."""
    rows = [("zrepl_1", 1, 0), ("zrepl_2", 2, 0), ("#zrr-cursor_backup_x_zrepl_1", 1, 0),
            ("#zrr-cursor_backup_x_zrepl_2", 2, 0)]
    hosts["nas"].datasets = {"tank/a": rows, "tank/b": rows}
    hosts["backup"].datasets = {"pool/tank/a": [("zrepl_2", 2, 0)], "pool/tank/b": [("zrepl_2", 2, 0)]}
    report = run(plan_of(DestroyAction("nas", "tank/a", ("#zrr-cursor_backup_x_zrepl_1", "#gone")),
                         DestroyAction("nas", "tank/b", ("zrepl_1", "#zrr-cursor_backup_x_zrepl_1"))), hosts)
    assert [(o.status, o.names) for o in report.outcomes] == [
        (SKIPPED, ("#gone",)), (DONE, ("#zrr-cursor_backup_x_zrepl_1",)),
        (DONE, ("#zrr-cursor_backup_x_zrepl_1",)), (DONE, ("zrepl_1",))]
    lists = {h: [c for c in e.calls if c[:2] == ["zfs", "list"]] for h, e in hosts.items()}
    assert [(c[c.index("-t") + 1], c[c.index("-d") + 2:]) for c in lists["nas"]] == [
        ("filesystem,volume,snapshot,bookmark", ["tank/b"]), ("filesystem,volume,bookmark", ["tank/a"])]
    assert [c[c.index("-d") + 2:] for c in lists["backup"]] == [["pool/tank/b"]]


def test_a_long_destroy_phase_relists_what_remains_once_the_listing_is_old(
        hosts: dict[str, FakeExecutor], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reconciler.execute.apply.FRESH_SECONDS", -1.0)  # every listing is "old"
    names = ["tank/a", "tank/b", "tank/c"]
    hosts["nas"].datasets = {ds: [("zrepl_1", 1, 0), ("zrepl_2", 2, 0)] for ds in names}
    report = run(plan_of(*(DestroyAction("nas", ds, ("zrepl_1",)) for ds in names)), hosts)
    assert [o.names for o in report.done] == [("zrepl_1",)] * 3
    lists = [c for c in hosts["nas"].calls if c[:2] == ["zfs", "list"]]
    assert [c[c.index("-d") + 2:] for c in lists] == [names, names[1:], names[2:]]


def test_destroy_fails_when_its_host_cannot_be_relisted(hosts: dict[str, FakeExecutor]) -> None:
    hosts["nas"].datasets = {"tank/a": [("zrepl_1", 1, 0), ("zrepl_2", 2, 0)]}
    hosts["nas"].fail["zfs list"] = "cannot iterate filesystems: I/O error"
    report = run(plan_of(DestroyAction("nas", "tank/a", ("zrepl_1",))), hosts)
    assert [o.status for o in report.outcomes] == [FAILED]
    assert not any(c[:2] == ["zfs", "destroy"] for c in hosts["nas"].calls)


def test_batch_names() -> None:
    assert batch_names("a b/c", ["zfs", "destroy", "a b/c@x,y"]) == ("x", "y")
    assert batch_names("a b/c", ["zfs", "destroy", "a b/c#bm"]) == ("#bm",)


def test_unreachable_host_skips_its_remaining_actions(hosts: dict[str, FakeExecutor]) -> None:
    hosts["backup"].down = True
    report = run(plan_of(CreateAction("backup", "pool/x"), CreateAction("backup", "pool/y"),
                         SnapshotAction("nas", "tank/a", "zrepl_2", "k")), hosts)
    assert statuses(report) == [(DONE, "snapshot"), (FAILED, "create"), (SKIPPED, "create")]
    assert "unavailable" in report.skipped[0].message


def test_stop_between_actions_skips_the_rest(hosts: dict[str, FakeExecutor]) -> None:
    stop = threading.Event()

    class Sink:
        def line(self, text: str) -> None:
            if text.startswith("done") and "tank/a" in text:
                stop.set()  # as a SIGTERM arriving during the first action

        def transfer(self, label: str, total: int | None) -> object:
            raise AssertionError("no transfer expected")

    report = run(plan_of(SnapshotAction("nas", "tank/a", "zrepl_2", "k1"),
                         SnapshotAction("nas", "tank/b", "zrepl_2", "k2"),
                         CreateAction("backup", "pool/z")), hosts, stop=stop, progress=Sink())
    assert statuses(report) == [(DONE, "snapshot"), (SKIPPED, "snapshot"), (SKIPPED, "create")]
    assert report.stopped and report.ok
    assert "Stopped" in report.summary_line()


def test_missing_executor_is_an_error(hosts: dict[str, FakeExecutor]) -> None:
    del hosts["backup"]
    with pytest.raises(ExecError, match="no executor for host"):
        run(plan_of(send("tank/a")), hosts)


# --------------------------------------------------------------------------- properties

DATASETS = ("tank/a", "tank/b", "tank/a/c")


def action_strategy() -> Any:
    from hypothesis import strategies as st

    ds = st.sampled_from(DATASETS)
    return st.one_of(
        st.builds(lambda d: SnapshotAction("nas", d, "zrepl_2", "k"), ds),
        st.builds(lambda d: send(d), ds),
        st.builds(lambda d: BookmarkAction("nas", d, "zrepl_2", "zrr-cursor_x"), ds),
        st.builds(lambda d: DestroyAction("nas", d, ("zrepl_0",)), ds),
        st.builds(lambda d: DestroyAction("backup", f"pool/{d}", ("zrepl_0",)), ds),
        st.builds(lambda d: CreateAction("backup", f"pool/{d}"), ds),
    )


def test_property_every_action_is_accounted_for_and_nothing_runs_after_its_send_failed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(action_strategy(), max_size=10, unique=True), st.sets(st.sampled_from(DATASETS)))
    def check(actions: list[Action], failing: set[str]) -> None:
        def fake_send(action: SendAction, *args: object, **kw: object) -> object:
            if action.dataset in failing:
                raise ExecError("cannot receive: out of space", code="no_space")
            return type("R", (), {"seconds": 0.0, "bytes": 1})()

        monkeypatch.setattr("reconciler.execute.apply.run_send", fake_send)
        executors = {"nas": FakeExecutor("nas"), "backup": FakeExecutor("backup")}
        for ex in executors.values():
            for d in DATASETS:
                ex.datasets[d] = ex.datasets[f"pool/{d}"] = [("zrepl_0", 1, 0), ("zrepl_1", 2, 0),
                                                             ("zrepl_2", 3, 0)]
        report = apply_plan(plan_of(*actions), make_config(), executors)  # type: ignore[arg-type]
        # Every action is reported (destroys possibly per name).
        assert {id(o.action) for o in report.outcomes} == {id(a) for a in actions}
        status = {id(o.action): o.status for o in report.outcomes}
        order = plan_of(*actions).actions
        for position, action in enumerate(order):
            if action.kind not in ("bookmark", "destroy") or status[id(action)] != DONE:
                continue
            # No cursor move or destroy on a filesystem after a send touching it did not happen.
            for earlier in order[:position]:
                if isinstance(earlier, SendAction) and status[id(earlier)] != DONE:
                    touched = {(earlier.host, earlier.dataset), (earlier.target_host, earlier.target_dataset)}
                    assert (action.host, action.dataset) not in touched, (action, earlier)

    check()


class HoldingZfs:
    """zfs hold/release as OpenZFS 2.1 does them (measured): each snapshot on its own, a
    failing one (missing snapshot, tag already there / not there) does not stop the
    others, and the command then exits 1 naming each failure."""

    def __init__(self, host: str, snapshots: set[str], held: set[tuple[str, str]]) -> None:
        self.host = host
        self.snapshots = snapshots
        self.held = held
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        argv = list(argv)
        self.calls.append(argv)
        verb, tag, refs = argv[1], argv[2], argv[3:]
        errors = []
        for ref in refs:
            if ref not in self.snapshots:
                errors.append(f"cannot {verb} snapshot '{ref}': dataset does not exist")
            elif verb == "hold" and (ref, tag) in self.held:
                errors.append(f"cannot hold snapshot '{ref}': tag already exists on this dataset")
            elif verb == "release" and (ref, tag) not in self.held:
                errors.append(f"cannot release hold from snapshot '{ref}': no such tag on this dataset")
            elif verb == "hold":
                self.held.add((ref, tag))
            else:
                self.held.discard((ref, tag))
        return CommandResult(tuple(argv), 1 if errors else 0, "", "\n".join(errors))

    def close(self) -> None:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["hold", "release"]), st.sampled_from(["t1", "t2"]),
                          st.integers(0, 5), st.booleans(), st.booleans()), min_size=1, max_size=12,
                unique_by=lambda t: (t[0], t[1], t[2])))
def test_batched_holds_end_where_one_by_one_would(steps: list[tuple[str, str, int, bool, bool]]) -> None:
    """The fast path (one zfs hold/release per kind, host and tag) against the reference
    (each action alone): the same holds in the end, the same status for every action."""
    snapshots = {f"tank/d{i}@s" for i in range(6)}
    held = {(f"tank/d{i}@s", tag) for kind, tag, i, _missing, already in steps
            if (kind == "release") == already}  # what makes the action a no-op, or not
    missing = {f"tank/d{i}@s" for _kind, _tag, i, gone, _already in steps if gone}
    actions: list[Action] = [(HoldAction if kind == "hold" else ReleaseAction)("nas", f"tank/d{i}", "s", tag)
                             for kind, tag, i, _gone, _already in steps]

    def outcome(one_by_one: bool) -> tuple[set[tuple[str, str]], list[tuple[str, str, str]]]:
        zfs = HoldingZfs("nas", snapshots - missing, set(held))
        with pytest.MonkeyPatch.context() as mp:
            if one_by_one:  # the reference: every action its own group, its own command
                mp.setattr(apply_module, "tag_batches", lambda acts: {
                    (a.kind, a.host, f"{a.tag}\0{a.dataset}"): [a] for a in acts
                    if isinstance(a, HoldAction | ReleaseAction)})
                mp.setattr(apply_module, "_tag_group", lambda a: (a.kind, a.host, f"{a.tag}\0{a.dataset}"))
            report = apply_plan(plan_of(*actions), make_config(), {"nas": zfs})  # type: ignore[dict-item]
        # Statuses, not messages: after a batch, "already held" may be the batch's own doing.
        return zfs.held, sorted((o.status, o.action.kind, o.action.dataset) for o in report.outcomes)

    assert outcome(one_by_one=False) == outcome(one_by_one=True)


class GuidsOf(FakeExecutor):
    """``zfs bookmark`` fails with "bookmark exists"; ``zfs get guid`` answers from ``guids``."""

    def __init__(self, guids: dict[str, str]) -> None:
        super().__init__("nas")
        self.guids = guids
        self.fail = {"zfs bookmark": "cannot create bookmark 'tank/a#cursor': bookmark exists"}

    def run(self, argv: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        if list(argv[:2]) == ["zfs", "get"]:
            self.calls.append(list(argv))
            names = list(argv[7:])
            if any(n not in self.guids for n in names):
                return CommandResult(tuple(argv), 1, "", "cannot open: dataset does not exist")
            return CommandResult(tuple(argv), 0, "".join(self.guids[n] + "\n" for n in names), "")
        return super().run(argv, timeout=timeout)


@pytest.mark.parametrize(("guids", "status"), [
    pytest.param({"tank/a@zrepl_2": "7", "tank/a#cursor": "7"}, DONE, id="same-snapshot"),
    pytest.param({"tank/a@zrepl_2": "7", "tank/a#cursor": "8"}, FAILED, id="another-snapshot"),
    pytest.param({"tank/a@zrepl_2": "7"}, FAILED, id="gone-again"),
])
def test_a_cursor_bookmark_made_meanwhile_is_done_only_when_it_marks_the_same_snapshot(
        guids: dict[str, str], status: str) -> None:
    """An orphaned cursor move of a killed apply may land between this apply's listing and
    its own: a bookmark of that name marking the same snapshot (GUID) is what it wanted."""
    nas = GuidsOf(guids)
    report = run(plan_of(BookmarkAction("nas", "tank/a", "zrepl_2", "cursor")), {"nas": nas, "backup": nas})
    assert [o.status for o in report.outcomes] == [status]
    assert nas.calls[-1] == ["zfs", "get", "-H", "-p", "-o", "value", "guid", "tank/a@zrepl_2",
                             "tank/a#cursor"]
    if status == DONE:
        assert report.outcomes[0].message == "already exists (made meanwhile), marking the same snapshot"
    else:
        assert "bookmark of that name already exists" in report.outcomes[0].message
