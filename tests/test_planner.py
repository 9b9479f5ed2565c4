"""Table tests of make_plan: schedule, replication, retention with safety filters, order."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from plan_builders import NOW, World, config_from, simple_config

from reconciler.codes import PruneRule
from reconciler.domain.actions import (
    BookmarkAction,
    CreateAction,
    DestroyAction,
    SendAction,
    SnapshotAction,
)
from reconciler.domain.plan import Plan
from reconciler.planning.naming import cursor_prefix
from reconciler.planning.planner import hosts_needed, make_plan
from reconciler.planning.simulate import simulate
from reconciler.render.markdown import render_markdown
from reconciler.render.text import render_text_to_string

LAST1 = [{"type": "last_n", "count": 1}]
PREFIX = cursor_prefix("backup", "pool/nas")


HOLD_KINDS = ("hold", "hold_received", "release")


def kinds(plan: Plan, holds: bool = False) -> list[str]:
    """The plan's action kinds; without the holds of the default protection level unless
    ``holds`` (tests/test_protection.py is about those)."""
    return [a.kind for a in plan.actions if holds or a.kind not in HOLD_KINDS]


def of(plan: Plan, cls: type[Any]) -> list[Any]:
    return [a for a in plan.actions if isinstance(a, cls)]


def world(*snaps: tuple[str, float], host: str = "nas", ds: str = "tank") -> World:
    w = World()
    w.fs(host, ds)
    w.fs("backup", "pool")
    w.fs("backup", "pool/nas")
    w.snaps(host, ds, list(snaps))
    return w


def assert_converges(cfg: Any, w: World, plan: Plan) -> None:
    again = make_plan(cfg, simulate(w.observed, plan), plan.now)
    assert [a.describe() for a in again.actions] == []


# ------------------------------------------------------------------ schedule


@pytest.mark.parametrize(("newest_age_h", "due"), [(0.5, False), (1.0, True), (2, True), (None, True)])
def test_snapshot_schedule_interval(newest_age_h: float | None, due: bool) -> None:
    w = world() if newest_age_h is None else world(("zrepl_x", newest_age_h))
    w.snap("nas", "tank", "manual_newer", 0)  # unmanaged snapshots do not reset the clock
    plan = make_plan(simple_config(targets=[]), w.observed, NOW)
    assert [a.snapshot for a in of(plan, SnapshotAction)] == (["zrepl_20261124_120000"] if due else [])


def test_snapshots_batched_per_policy_and_pool() -> None:
    w = World()
    for name in ("tank", "tank/a", "tank/b"):
        w.fs("nas", name)
    w.fs("nas", "fast")
    w.fs("nas", "fast/x")
    cfg = simple_config(targets=[], filter={"tank<": True, "fast/x": True})
    snaps = of(make_plan(cfg, w.observed, NOW), SnapshotAction)
    assert [(a.dataset, a.batch) for a in snaps] == [
        ("fast/x", "nas:fast:p:zrepl_20261124_120000"),
        ("tank", "nas:tank:p:zrepl_20261124_120000"),
        ("tank/a", "nas:tank:p:zrepl_20261124_120000"),
        ("tank/b", "nas:tank:p:zrepl_20261124_120000"),
    ]


def test_snapshot_skipped_when_name_exists() -> None:
    w = world(("zrepl_20261124_120000", 2))  # a clock skew made an equally named old one
    assert of(make_plan(simple_config(targets=[]), w.observed, NOW), SnapshotAction) == []


def test_policy_without_schedule_takes_no_snapshots() -> None:
    w = world(("auto_1", 5))
    cfg = simple_config(prefix=None, manage="^auto_", targets=[])
    assert make_plan(cfg, w.observed, NOW).actions == ()


# ------------------------------------------------------------------ replication


def test_initial_newest_with_placeholders_parent_first() -> None:
    w = World()
    w.fs("nas", "tank")
    w.fs("nas", "tank/a")
    w.fs("backup", "pool")
    w.snaps("nas", "tank", [("zrepl_1", 3), ("zrepl_2", 2)])
    w.snaps("nas", "tank/a", [("zrepl_1", 3), ("zrepl_2", 2)])
    cfg = simple_config(interval="1d", targets=[{"host": "backup", "root": "pool/nas/deep"}])
    plan = make_plan(cfg, w.observed, NOW)
    assert [a.dataset for a in of(plan, CreateAction)] == ["pool/nas", "pool/nas/deep"]
    sends = of(plan, SendAction)
    assert [(s.target_dataset, s.base, s.snapshots) for s in sends] == [
        ("pool/nas/deep/tank", None, ("zrepl_2",)),
        ("pool/nas/deep/tank/a", None, ("zrepl_2",)),
    ]
    assert kinds(plan) == ["create", "create", "send", "send", "bookmark", "bookmark"]
    assert_converges(cfg, w, plan)


def test_initial_all_sends_oldest_then_incremental() -> None:
    w = world(("zrepl_1", 3), ("zrepl_2", 2), ("zrepl_3", 1.5))
    cfg = simple_config(interval="1d", targets=[{"host": "backup", "root": "pool/nas", "initial": "all",
                                                 "raw": True}])
    sends = of(make_plan(cfg, w.observed, NOW), SendAction)
    assert [(s.base, s.snapshot, s.snapshots, s.raw) for s in sends] == [
        (None, "zrepl_1", ("zrepl_1",), True),
        ("zrepl_1", "zrepl_3", ("zrepl_2", "zrepl_3"), True),
    ]
    assert sends[0].send_argv() == ["zfs", "send", "-w", "tank@zrepl_1"]


def test_incremental_from_newest_common_includes_planned_snapshot() -> None:
    w = world(("zrepl_1", 5), ("zrepl_2", 4), ("zrepl_3", 3))
    w.replicate("nas", "tank", "backup", "pool/nas/tank", ["zrepl_1", "zrepl_2"])
    cfg = simple_config()
    plan = make_plan(cfg, w.observed, NOW)
    (send,) = of(plan, SendAction)
    assert (send.base, send.snapshot, send.snapshots) == (
        "zrepl_2", "zrepl_20261124_120000", ("zrepl_3", "zrepl_20261124_120000"))
    assert send.send_argv() == ["zfs", "send", "-L", "-c", "-e", "-I", "tank@zrepl_2",
                                "tank@zrepl_20261124_120000"]
    (bm,) = of(plan, BookmarkAction)
    assert (bm.snapshot, bm.bookmark) == ("zrepl_20261124_120000", PREFIX + "zrepl_20261124_120000")
    assert kinds(plan) == ["snapshot", "send", "bookmark"]
    # zrepl_3's size is known, the planned snapshot's is not: no partial sum (apply asks
    # `zfs send -nP`; a partial one could send a big catch-up down the small-send path).
    assert send.estimated_bytes is None
    assert_converges(cfg, w, plan)


def test_estimate_counts_a_planned_snapshot_with_the_filesystems_written() -> None:
    w = world(("zrepl_1", 5), ("zrepl_2", 4), ("zrepl_3", 3))
    w.replicate("nas", "tank", "backup", "pool/nas/tank", ["zrepl_1", "zrepl_2"])
    w.ds("nas", "tank").written = 5000
    (send,) = of(make_plan(simple_config(), w.observed, NOW), SendAction)
    assert send.snapshots == ("zrepl_3", "zrepl_20261124_120000")
    assert send.estimated_bytes == 1000 + 5000


def test_estimate_is_the_sum_of_written_when_every_snapshot_exists() -> None:
    w = world(("zrepl_1", 5), ("zrepl_2", 4), ("zrepl_3", 3))
    w.replicate("nas", "tank", "backup", "pool/nas/tank", ["zrepl_1"])
    (send,) = of(make_plan(simple_config(interval="1d"), w.observed, NOW), SendAction)
    assert send.snapshots == ("zrepl_2", "zrepl_3")
    assert send.estimated_bytes == 2000  # written of zrepl_2 + zrepl_3 (1000 each)


def test_matching_is_by_guid_not_name() -> None:
    w = world(("zrepl_1", 5), ("zrepl_2", 4))
    target = w.replicate("nas", "tank", "backup", "pool/nas/tank", ["zrepl_1"])
    target.snapshots[0].name = "renamed_on_target"  # same GUID, other name: still the base
    (send,) = of(make_plan(simple_config(interval="1d"), w.observed, NOW), SendAction)
    assert (send.base, send.snapshots) == ("zrepl_1", ("zrepl_2",))


def test_bookmark_as_base_when_base_snapshot_pruned() -> None:
    w = world(("zrepl_1", 5), ("zrepl_2", 4), ("zrepl_3", 3), ("zrepl_4", 2))
    w.replicate("nas", "tank", "backup", "pool/nas/tank", ["zrepl_1", "zrepl_2"])
    w.bookmark("nas", "tank", PREFIX + "zrepl_2", "zrepl_2")
    w.destroy("nas", "tank", "zrepl_2")
    cfg = simple_config(interval="1d")
    plan = make_plan(cfg, w.observed, NOW)
    sends = of(plan, SendAction)
    assert [(s.base, s.snapshot, s.snapshots) for s in sends] == [
        ("#" + PREFIX + "zrepl_2", "zrepl_3", ("zrepl_3",)),
        ("zrepl_3", "zrepl_4", ("zrepl_4",)),
    ]
    assert sends[0].send_argv() == ["zfs", "send", "-L", "-c", "-e", "-i", f"tank#{PREFIX}zrepl_2",
                                    "tank@zrepl_3"]
    (destroy,) = of(plan, DestroyAction)
    assert destroy.snapshots == ("#" + PREFIX + "zrepl_2",)  # the cursor moved to zrepl_4
    assert_converges(cfg, w, plan)


def test_missing_cursor_is_recreated_when_target_up_to_date() -> None:
    w = world(("zrepl_1", 0.5))
    w.replicate("nas", "tank", "backup", "pool/nas/tank")
    plan = make_plan(simple_config(), w.observed, NOW)
    assert [(a.kind, a.snapshot) for a in of(plan, BookmarkAction)] == [("bookmark", "zrepl_1")]


def test_resume_token_then_continue_incrementally() -> None:
    from reconciler.domain.resume_token import encode_resume_token

    w = world(("zrepl_1", 5), ("zrepl_2", 4), ("zrepl_3", 3))
    target = w.replicate("nas", "tank", "backup", "pool/nas/tank", ["zrepl_1"])
    s1, s2 = w.ds("nas", "tank").snapshots[:2]
    target.resume_token = encode_resume_token(s2.guid, "tank@zrepl_2", fromguid=s1.guid, bytes_=10)
    cfg = simple_config(interval="1d")
    plan = make_plan(cfg, w.observed, NOW)
    sends = of(plan, SendAction)
    assert [(s.resume_token is not None, s.base, s.snapshots) for s in sends] == [
        (True, "zrepl_1", ("zrepl_2",)), (False, "zrepl_2", ("zrepl_3",))]
    assert sends[0].send_argv() == ["zfs", "send", "-t", target.resume_token]
    assert_converges(cfg, w, plan)


@pytest.mark.parametrize("token", ["1-bogus-10-00", "RESUME"])
def test_undecodable_resume_token_is_aborted_then_planned_normally(token: str) -> None:
    w = world(("zrepl_1", 5), ("zrepl_2", 4))
    target = w.replicate("nas", "tank", "backup", "pool/nas/tank", ["zrepl_1"])
    target.resume_token = token
    cfg = simple_config(interval="1d")
    plan = make_plan(cfg, w.observed, NOW)
    assert kinds(plan) == ["abort_resume", "send", "bookmark"]
    report = next(f for f in plan.filesystems if f.role == "target")
    assert any("discarding the partial receive" in w for w in report.warnings)
    assert_converges(cfg, w, plan)


def test_resume_of_snapshot_gone_on_source_aborts() -> None:
    from reconciler.domain.resume_token import encode_resume_token

    w = world(("zrepl_1", 5), ("zrepl_2", 4))
    w.fs("backup", "pool/nas/tank", resume_token=encode_resume_token(12345, "tank@gone"))
    plan = make_plan(simple_config(interval="1d"), w.observed, NOW)
    assert kinds(plan) == ["abort_resume", "send", "bookmark"]
    assert of(plan, SendAction)[0].base is None


# ------------------------------------------------------------------ conflicts


def _diverged() -> World:
    w = world(("zrepl_1", 5), ("zrepl_2", 4))
    w.replicate("nas", "tank", "backup", "pool/nas/tank", ["zrepl_1"])
    w.snap("backup", "pool/nas/tank", "local_change", 3)
    return w


def _no_common() -> World:
    w = world(("zrepl_1", 5))
    w.fs("backup", "pool/nas/tank")
    w.snap("backup", "pool/nas/tank", "zrepl_0", 6)
    return w


def _guid_mismatch() -> World:
    w = world(("zrepl_1", 5), ("zrepl_2", 4))
    w.replicate("nas", "tank", "backup", "pool/nas/tank", ["zrepl_1"])
    w.snap("backup", "pool/nas/tank", "zrepl_2", 4, guid=999)
    return w


def _not_filesystem() -> World:
    w = world(("zrepl_1", 5))
    w.fs("backup", "pool/nas/tank", kind="volume")
    return w


def _empty_target() -> World:
    w = world(("zrepl_1", 5))
    w.fs("backup", "pool/nas/tank")
    return w


def _target_down() -> World:
    w = world(("zrepl_1", 5))
    w.unavailable("backup")
    return w


@pytest.mark.parametrize(("build", "code", "fix_part"), [
    (_diverged, "diverged", "zfs rollback -r pool/nas/tank@zrepl_1"),
    (_no_common, "no_common_snapshot", "zfs destroy -r pool/nas/tank"),
    (_guid_mismatch, "guid_mismatch", "zfs rollback -r pool/nas/tank@zrepl_1"),
    (_not_filesystem, "target_not_filesystem", "zfs rename"),
    (_empty_target, "no_common_snapshot", "zfs destroy pool/nas/tank"),
    (_target_down, "host_unavailable", "ssh backup"),
])
def test_conflicts_block_send_and_target_destroy(build: Any, code: str, fix_part: str) -> None:
    w = build()
    cfg = simple_config(interval="1d", keep_target=[{"type": "regex", "regex": "^nothing"}])
    plan = make_plan(cfg, w.observed, NOW)
    (conflict,) = plan.conflicts
    assert (conflict.code, conflict.host, conflict.dataset) == (code, "backup", "pool/nas/tank")
    assert fix_part in conflict.fix and conflict.message
    assert not of(plan, SendAction) and not of(plan, CreateAction)
    assert all(a.host != "backup" for a in plan.actions)
    assert "recv -F" not in " ".join(" ".join(a.argv()) for a in plan.actions)


def test_source_host_unavailable() -> None:
    w = world(("zrepl_1", 5))
    w.unavailable("nas", "auth_failed", "permission denied (publickey)")
    plan = make_plan(simple_config(), w.observed, NOW)
    assert plan.actions == ()
    assert [(c.code, c.host) for c in plan.conflicts] == [("host_unavailable", "nas")]
    assert plan.unavailable == (("nas", "auth_failed: permission denied (publickey)"),)


def test_claimed_twice_is_a_conflict_and_left_alone() -> None:
    w = World()
    w.fs("nas", "tank")
    w.fs("nas", "tank/a")
    cfg = config_from({
        "hosts": {"nas": {"connection": "local"}},
        "policies": {"p": {"snapshots": {"prefix": "zrepl_", "interval": "1h"}}},
        "filesystems": [{"host": "nas", "filter": {"tank<": True}, "policy": "p"},
                        {"host": "nas", "filter": {"tank/a": True}, "policy": "p"}],
    })
    plan = make_plan(cfg, w.observed, NOW)
    assert [(c.code, c.dataset) for c in plan.conflicts] == [("claimed_twice", "tank/a")]
    assert [a.dataset for a in plan.actions] == ["tank"]
    assert "filesystems[0]" in plan.conflicts[0].message and "filesystems[1]" in plan.conflicts[0].message


# ------------------------------------------------------------------ the rule from zrepl's history


def _stalled(protect: bool, at_cursor: bool = True) -> tuple[Any, World]:
    """Target unreachable; the cursor says zrepl_2 was replicated; zrepl_3/4 were not."""
    w = world(("zrepl_1", 50), ("zrepl_2", 40), ("zrepl_3", 30), ("zrepl_4", 20))
    w.bookmark("nas", "tank", PREFIX + "zrepl_2", "zrepl_2")
    w.unavailable("backup")
    rules: list[dict[str, Any]] = [{"type": "last_n", "count": 1}]
    if protect:
        rules.insert(0, {"type": "not_replicated", "keep_snapshot_at_cursor": at_cursor})
    return simple_config(keep_source=rules, interval="1w"), w


def test_prune_wins_without_not_replicated() -> None:
    cfg, w = _stalled(protect=False)
    plan = make_plan(cfg, w.observed, NOW)
    (destroy,) = of(plan, DestroyAction)
    assert destroy.snapshots == ("zrepl_1", "zrepl_2", "zrepl_3")
    src = next(f for f in plan.filesystems if f.role == "source")
    assert src.prune_rule == PruneRule.PRUNE_WINS and "unreachable" in src.prune_rule_why
    assert src.warnings == ("destroyed unreplicated: zrepl_3 (target backup:pool/nas/tank unreachable)",)
    # also in the plan's top-level warnings (Plan JSON "warnings"), naming the filesystem
    assert plan.warnings == ("nas:tank: destroyed unreplicated: zrepl_3 (target backup:pool/nas/tank"
                             " unreachable)",)
    assert plan.to_json()["warnings"] == list(plan.warnings)


def test_replication_protected_with_not_replicated() -> None:
    cfg, w = _stalled(protect=True)
    plan = make_plan(cfg, w.observed, NOW, explain=True)
    (destroy,) = of(plan, DestroyAction)
    # Only what is older than the cursor: its own snapshot stays, as zrepl's default
    # keep_snapshot_at_cursor: true keeps it (the next incremental base).
    assert destroy.snapshots == ("zrepl_1",)
    src = next(f for f in plan.filesystems if f.role == "source")
    assert src.prune_rule == PruneRule.REPLICATION_PROTECTED and "unreachable" in src.prune_rule_why
    assert src.warnings == ()
    verdicts = {v.name: v for v in src.verdicts}
    assert verdicts["zrepl_3"].keep and "not_replicated" in verdicts["zrepl_3"].reason
    assert verdicts["zrepl_2"].keep and "not_replicated" in verdicts["zrepl_2"].reason
    assert verdicts["#" + PREFIX + "zrepl_2"].keep


def test_keep_snapshot_at_cursor_false_lets_the_cursors_snapshot_go() -> None:
    cfg, w = _stalled(protect=True, at_cursor=False)
    (destroy,) = of(make_plan(cfg, w.observed, NOW), DestroyAction)
    assert destroy.snapshots == ("zrepl_1", "zrepl_2")  # at or before the cursor


def test_protected_without_cursor_keeps_everything_for_unreachable_target() -> None:
    cfg, w = _stalled(protect=True)
    w.ds("nas", "tank").bookmarks.clear()
    assert of(make_plan(cfg, w.observed, NOW), DestroyAction) == []


def test_prune_wins_with_conflicting_target_lists_unreplicated() -> None:
    w = _diverged()
    w.snap("nas", "tank", "zrepl_3", 3)
    w.bookmark("nas", "tank", PREFIX + "zrepl_1", "zrepl_1")
    cfg = simple_config(keep_source=LAST1, interval="1w")
    plan = make_plan(cfg, w.observed, NOW)
    (destroy,) = of(plan, DestroyAction)
    assert destroy.snapshots == ("zrepl_1", "zrepl_2")  # base zrepl_1 has a bookmark: may go
    src = next(f for f in plan.filesystems if f.role == "source")
    assert src.warnings == ("destroyed unreplicated: zrepl_2 (target backup:pool/nas/tank in conflict:"
                            " diverged)",)


# ------------------------------------------------------------------ safety filters


def test_unmanaged_and_held_never_destroyed_and_explained() -> None:
    w = world(("zrepl_1", 5), ("manual", 4))
    w.snap("nas", "tank", "zrepl_held", 3, holds=("backup-job",))
    w.snap("nas", "tank", "zrepl_2", 0.5)
    cfg = simple_config(keep_source=LAST1, targets=[])
    plan = make_plan(cfg, w.observed, NOW, explain=True)
    (destroy,) = of(plan, DestroyAction)
    assert destroy.snapshots == ("zrepl_1",)
    assert destroy.reason_for("zrepl_1").startswith("last_n 1")
    verdicts = {v.name: v for v in plan.filesystems[0].verdicts}
    assert verdicts["manual"].keep and verdicts["manual"].reason.startswith("unmanaged")
    assert verdicts["zrepl_held"].keep and verdicts["zrepl_held"].reason.startswith("held (tags backup-job)")
    assert verdicts["zrepl_2"].keep


def test_unmanaged_and_held_that_rules_would_destroy_are_listed_without_explain() -> None:
    # DESIGN invariant 2: such snapshots are listed as unmanaged / held, never silently.
    w = world(("zrepl_1", 5), ("manual", 4))
    w.snap("nas", "tank", "zrepl_held", 3, holds=("backup-job",))
    w.snap("nas", "tank", "zrepl_2", 0.5)
    plan = make_plan(simple_config(keep_source=LAST1, targets=[]), w.observed, NOW)
    report = plan.filesystems[0]
    assert report.verdicts == ()
    assert [(v.name, v.reason.split(" ")[0]) for v in report.protected] == [
        ("manual", "unmanaged"), ("zrepl_held", "held")]
    text = render_text_to_string(plan, width=200)
    assert "= keeps zrepl_held: held (tags backup-job), although the keep rules would destroy it" in text
    assert "keeps `manual`: unmanaged" in render_markdown(plan)
    again = Plan.from_json(plan.to_json())
    assert again.filesystems[0].protected == report.protected


def test_source_base_without_bookmark_is_kept_for_conflicting_target() -> None:
    w = _diverged()
    w.snap("nas", "tank", "zrepl_3", 3)
    plan = make_plan(simple_config(keep_source=LAST1, interval="1w"), w.observed, NOW, explain=True)
    (destroy,) = of(plan, DestroyAction)
    assert destroy.snapshots == ("zrepl_2",)
    verdict = next(v for v in plan.filesystems[0].verdicts if v.name == "zrepl_1")
    assert verdict.keep and "incremental base" in verdict.reason


def test_target_newest_and_base_never_destroyed() -> None:
    w = world(("zrepl_1", 5), ("zrepl_2", 4))
    w.replicate("nas", "tank", "backup", "pool/nas/tank")
    w.snap("nas", "tank", "zrepl_3", 0.5)
    cfg = simple_config(keep_target=[{"type": "regex", "regex": "^nothing"}])
    plan = make_plan(cfg, w.observed, NOW, explain=True)
    destroys = {(a.host, a.dataset): a for a in of(plan, DestroyAction)}
    assert destroys[("backup", "pool/nas/tank")].snapshots == ("zrepl_1", "zrepl_2")
    target = next(f for f in plan.filesystems if f.role == "target")
    kept = {v.name: v.reason for v in target.verdicts if v.keep}
    assert list(kept) == ["zrepl_3"] and "invariant 4" in kept["zrepl_3"]
    assert_converges(cfg, w, plan)


def test_target_retention_uses_keep_target_and_manage() -> None:
    w = world(("zrepl_1", 5), ("zrepl_2", 4), ("zrepl_3", 0.5))
    w.replicate("nas", "tank", "backup", "pool/nas/tank")
    w.snap("backup", "pool/nas/tank", "zrepl_3", 0.5)
    w.ds("backup", "pool/nas/tank").snapshots[-1].guid = w.ds("nas", "tank").snapshots[-1].guid
    del w.ds("backup", "pool/nas/tank").snapshots[-1]
    cfg = simple_config(keep_target=[{"type": "last_n", "count": 2}])
    plan = make_plan(cfg, w.observed, NOW)
    (destroy,) = [a for a in of(plan, DestroyAction) if a.host == "backup"]
    assert destroy.snapshots == ("zrepl_1",)


def test_destroy_names_are_short_and_batched_one_action_per_dataset() -> None:
    w = world(*[(f"zrepl_{i:02d}", 50 - i) for i in range(10)])
    plan = make_plan(simple_config(keep_source=LAST1, targets=[], interval="1w"), w.observed, NOW)
    (destroy,) = of(plan, DestroyAction)
    assert destroy.snapshots == tuple(f"zrepl_{i:02d}" for i in range(9))
    assert destroy.argv_batches() == [["zfs", "destroy", "tank@" + ",".join(destroy.snapshots)]]


# ------------------------------------------------------------------ selection restrictions


def test_hosts_and_filesystems_restrictions() -> None:
    w = World()
    for name in ("tank", "tank/a", "tank/b"):
        w.fs("nas", name)
    cfg = simple_config(targets=[])
    assert [a.dataset for a in make_plan(cfg, w.observed, NOW, filesystems=["tank/a"]).actions] == ["tank/a"]
    assert make_plan(cfg, w.observed, NOW, hosts=["other"]).actions == ()
    assert hosts_needed(simple_config()) == {"nas", "backup"}
    # --host <target host>: the source is read too (what to send is decided there)
    assert hosts_needed(simple_config(), hosts=["backup"]) == {"nas", "backup"}
    assert hosts_needed(simple_config(), filesystems=["tank/a"]) == {"nas", "backup"}
    assert hosts_needed(simple_config(), filesystems=["pool/nas/tank/a"]) == {"nas", "backup"}
    assert hosts_needed(simple_config(), filesystems=["pool"]) == {"nas", "backup"}
    assert hosts_needed(simple_config(), filesystems=["other"]) == set()
    assert hosts_needed(simple_config(filter={"tank<": True, "tank/x<": False}),
                        filesystems=["tank/x/y"]) == set()


def _backup_world() -> World:
    """nas:tank, tank/a replicated to backup (tank/a up to date with old snapshots to prune),
    and a local-only entry on backup itself."""
    w = world(("zrepl_1", 30), ("zrepl_2", 20), ("zrepl_3", 0.5))
    w.fs("nas", "tank/a")
    w.snaps("nas", "tank/a", [("zrepl_1", 30), ("zrepl_2", 20), ("zrepl_3", 0.5)])
    w.replicate("nas", "tank", "backup", "pool/nas/tank")
    w.replicate("nas", "tank/a", "backup", "pool/nas/tank/a")
    w.bookmark("nas", "tank", f"{PREFIX}old", "zrepl_1")
    return w


def test_host_of_a_target_selects_the_pairs_into_it() -> None:
    """--host backup: the sends into backup, backup's pruning and the pairs' cursors; not the
    source's own snapshots or pruning (a source-side matter of host nas)."""
    w = _backup_world()
    w.snap("nas", "tank", "zrepl_4", 0.2)  # not on backup yet
    cfg = simple_config(keep_source=LAST1, keep_target=LAST1)
    full = make_plan(cfg, w.observed, NOW)
    plan = make_plan(cfg, w.observed, NOW, hosts=["backup"])
    assert not of(plan, SnapshotAction)
    assert [(s.dataset, s.snapshots) for s in of(plan, SendAction)] == [("tank", ("zrepl_4",))]
    destroys = {(d.host, d.dataset): d.snapshots for d in of(plan, DestroyAction)}
    assert destroys == {("backup", "pool/nas/tank"): ("zrepl_1", "zrepl_2", "zrepl_3"),
                        ("backup", "pool/nas/tank/a"): ("zrepl_1", "zrepl_2"),
                        ("nas", "tank"): (f"#{PREFIX}old",)}  # the pair's old cursor only
    assert [b.dataset for b in of(plan, BookmarkAction)] == ["tank", "tank/a"]
    assert {f.role for f in plan.filesystems} == {"target"}
    # every other action of the selection is one the full plan has too
    assert {a.describe() for a in plan.actions if a.kind != "destroy"} <= {a.describe() for a in full.actions}
    again = make_plan(cfg, simulate(w.observed, plan), NOW, hosts=["backup"])
    assert [a.describe() for a in again.actions] == []


def test_host_of_source_and_target_restrictions_intersect() -> None:
    w = _backup_world()
    cfg = simple_config(keep_target=LAST1)
    plan = make_plan(cfg, w.observed, NOW, hosts=["backup"], filesystems=["tank/a"])
    assert {(d.host, d.dataset) for d in of(plan, DestroyAction)} == {("backup", "pool/nas/tank/a")}
    assert make_plan(cfg, w.observed, NOW, hosts=["nas"], filesystems=["pool/nas/tank/a"]).actions == \
        make_plan(cfg, w.observed, NOW, hosts=["backup"], filesystems=["pool/nas/tank/a"]).actions


def test_target_dataset_as_filesystem_selects_the_pair_replicating_into_it() -> None:
    w = _backup_world()
    cfg = simple_config(keep_target=LAST1)
    plan = make_plan(cfg, w.observed, NOW, filesystems=["pool/nas/tank/a"])
    assert not plan.conflicts and not of(plan, SnapshotAction)
    assert [(d.host, d.dataset, d.snapshots) for d in of(plan, DestroyAction)] == [
        ("backup", "pool/nas/tank/a", ("zrepl_1", "zrepl_2"))]
    assert [(f.host, f.dataset) for f in plan.filesystems] == [("backup", "pool/nas/tank/a")]
    root = make_plan(cfg, w.observed, NOW, filesystems=["pool/nas"])
    assert {(d.dataset, d.snapshots) for d in of(root, DestroyAction)} == {
        ("pool/nas/tank", ("zrepl_1", "zrepl_2")), ("pool/nas/tank/a", ("zrepl_1", "zrepl_2")),
        ("tank", (f"#{PREFIX}old",))}  # the pair's cursor moves with it


def test_unmatched_filesystem_warns_and_unselected_entries_do_not_blame_hosts() -> None:
    w = _backup_world()
    w.observed.hosts.pop("backup")  # not gathered: nothing selected needs it
    cfg = config_from({
        "hosts": {"nas": {"connection": "local"}, "backup": {"connection": "local"}},
        "policies": {"p": {"snapshots": {"prefix": "zrepl_", "interval": "1h"}}},
        "filesystems": [{"host": "nas", "filter": {"tank<": True}, "policy": "p"},
                        {"host": "backup", "filter": {"pool/own<": True}, "policy": "p"}]})
    plan = make_plan(cfg, w.observed, NOW, filesystems=["tank/nope"])
    assert not plan.conflicts and plan.actions == () and not plan.unavailable
    assert plan.warnings == ("--filesystem tank/nope: no selected dataset on nas is or lies below it, and"
                             " no replica of one would; nothing is planned for it",)


def test_source_unavailable_is_one_conflict_per_filter_root() -> None:
    w = world(("zrepl_1", 5))
    w.unavailable("nas")
    cfg = simple_config(filter={"tank<": True, "tank/new": True, "tank/x": False})
    plan = make_plan(cfg, w.observed, NOW)
    assert [(c.code, c.host, c.dataset) for c in plan.conflicts] == [
        ("host_unavailable", "nas", "tank"), ("host_unavailable", "nas", "tank/new")]
    assert all(c.source_dataset == c.dataset and "nas:" + c.dataset in c.message for c in plan.conflicts)
    narrowed = make_plan(cfg, w.observed, NOW, filesystems=["tank/a"])
    assert [c.dataset for c in narrowed.conflicts] == ["tank/a"]


def test_filter_naming_missing_dataset_warns() -> None:
    w = World()
    w.fs("nas", "tank")
    plan = make_plan(simple_config(targets=[], filter={"tank<": True, "tank/gone": True}), w.observed, NOW)
    assert any("'tank/gone'" in m for m in plan.warnings)


def test_every_source_report_states_the_rule() -> None:
    w = world(("zrepl_1", 0.5))
    plan = make_plan(simple_config(), w.observed, NOW)
    src = [f for f in plan.filesystems if f.role == "source"]
    assert src and all(f.prune_rule == PruneRule.PRUNE_WINS and f.prune_rule_why for f in src)


def test_plan_is_deterministic_and_json_round_trips() -> None:
    w = _diverged()
    w.snap("nas", "tank", "zrepl_3", 3)
    cfg = simple_config(keep_source=LAST1)
    a, b = make_plan(cfg, w.observed, NOW), make_plan(cfg, w.observed, NOW)
    assert a == b
    assert Plan.from_json(a.to_json()).actions == a.actions
    later = make_plan(cfg, w.observed, NOW + timedelta(hours=1))
    assert later.fingerprint == a.fingerprint  # facts, not the clock


def test_missing_target_pool_is_a_conflict() -> None:
    w = world(("zrepl_1", 5))
    cfg = simple_config(interval="1d", targets=[{"host": "backup", "root": "nopool/nas"}])
    plan = make_plan(cfg, w.observed, NOW)
    assert [c.code for c in plan.conflicts] == ["target_pool_missing"]
    assert plan.actions == ()


def test_explain_lists_conflicting_target_snapshots_as_kept() -> None:
    plan = make_plan(simple_config(interval="1d"), _diverged().observed, NOW, explain=True)
    target = next(f for f in plan.filesystems if f.role == "target")
    assert [(v.name, v.keep) for v in target.verdicts] == [("zrepl_1", True), ("local_change", True)]
    assert "diverged" in target.verdicts[0].reason


def test_benchmark_scenario_converges() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
    from bench_plan import NOW as BENCH_NOW
    from bench_plan import build_config, build_facts

    cfg, facts = build_config(), build_facts(50)
    plan = make_plan(cfg, facts, BENCH_NOW)
    assert len(of(plan, SendAction)) == 50 and len(of(plan, DestroyAction)) == 100
    assert make_plan(cfg, simulate(facts, plan), BENCH_NOW).actions == ()


# ------------------------------------------------------------------ placeholders later replicated


def _widened(raw: bool = False) -> tuple[Any, Plan, World]:
    """Filter tank/a< (pool/nas/tank becomes a placeholder), applied, then widened to tank<."""
    w = World()
    w.fs("nas", "tank")
    w.fs("nas", "tank/a")
    w.snaps("nas", "tank", [("zrepl_1", 5)])
    w.snaps("nas", "tank/a", [("zrepl_1", 5)])
    w.fs("backup", "pool")
    targets = [{"host": "backup", "root": "pool/nas", "raw": raw}]
    narrow = simple_config(interval="1d", filter={"tank/a<": True}, targets=targets)
    first = make_plan(narrow, w.observed, NOW)
    assert [a.dataset for a in of(first, CreateAction)] == ["pool/nas", "pool/nas/tank"]
    w.observed = simulate(w.observed, first)
    wide = simple_config(interval="1d", filter={"tank<": True}, targets=targets)
    return wide, make_plan(wide, w.observed, NOW), w


def test_placeholder_later_replicated_is_a_conflict_with_a_workable_fix() -> None:
    """The planner never runs recv -F itself; the fix it suggests must work: zfs destroy cannot
    remove a placeholder with children, a full receive with recv -F keeps them."""
    cfg, plan, w = _widened()
    (conflict,) = plan.conflicts
    assert (conflict.code, conflict.dataset) == ("no_common_snapshot", "pool/nas/tank")
    assert "placeholder" in conflict.message
    assert "zfs destroy" not in conflict.fix and "children (pool/nas/tank/a)" in conflict.fix
    assert "on nas: `zfs send tank@zrepl_1 | ssh backup zfs recv -F pool/nas/tank`" in conflict.fix
    assert not any(a.dataset == "pool/nas/tank" for a in plan.actions)
    # the suggested receive, as the planner models it: the placeholder gets tank@zrepl_1
    w.replicate("nas", "tank", "backup", "pool/nas/tank")
    after = make_plan(cfg, w.observed, NOW)
    assert after.conflicts == () and kinds(after) == ["bookmark"]


def test_placeholder_fix_for_raw_sends_swaps_in_a_replica_received_beside_it() -> None:
    cfg, plan, w = _widened(raw=True)
    (conflict,) = plan.conflicts
    assert "zfs recv -F" not in conflict.fix
    assert ("on nas: `zfs send -w tank@zrepl_1 | ssh backup zfs recv -u pool/nas/tank.new`; then on"
            " backup: `zfs rename pool/nas/tank/a pool/nas/tank.new/a; zfs destroy pool/nas/tank;"
            " zfs rename pool/nas/tank.new pool/nas/tank`") in conflict.fix
    w.replicate("nas", "tank", "backup", "pool/nas/tank")  # the swapped-in replica, as modelled
    assert make_plan(cfg, w.observed, NOW).conflicts == ()


def test_restricted_plan_sends_managed_parents_instead_of_placeholders() -> None:
    """--filesystem tank/a/b while tank/a (managed) has no replica yet: tank/a is sent in
    full, so no placeholder takes the place of its replica."""
    w = World()
    for name in ("tank", "tank/a", "tank/a/b"):
        w.fs("nas", name)
        w.snaps("nas", name, [("zrepl_1", 5)])
    w.fs("backup", "pool")
    cfg = simple_config(interval="1d", filter={"tank/a<": True})
    plan = make_plan(cfg, w.observed, NOW, filesystems=["tank/a/b"])
    assert [a.dataset for a in of(plan, CreateAction)] == ["pool/nas", "pool/nas/tank"]
    assert [(s.dataset, s.base) for s in of(plan, SendAction)] == [("tank/a", None), ("tank/a/b", None)]
    assert [f.dataset for f in plan.filesystems if f.role == "source"] == ["tank/a/b"]
    assert any("also sends nas:tank/a" in m for m in plan.warnings)
    everything = make_plan(cfg, simulate(w.observed, plan), NOW)
    assert everything.conflicts == () and everything.actions == ()


def test_restricted_plan_snapshots_a_managed_parent_that_has_none_yet() -> None:
    """--filesystem tank/b (or --host <target>) while tank, managed, has no snapshot at all:
    tank is snapshotted and sent first, as the unrestricted plan would do, instead of a
    placeholder that would later block tank's own first send (no_common_snapshot)."""
    w = World()
    w.fs("nas", "tank")
    w.fs("nas", "tank/b")
    w.snaps("nas", "tank/b", [("zrepl_1", 5)])
    w.fs("backup", "pool")
    w.fs("backup", "pool/nas")
    cfg = simple_config(interval="1d", filter={"tank<": True})
    for selection in ({"filesystems": ["tank/b"]}, {"hosts": ["backup"]}):
        plan = make_plan(cfg, w.observed, NOW, **selection)  # type: ignore[arg-type]
        assert of(plan, CreateAction) == [], selection
        assert [a.dataset for a in of(plan, SnapshotAction)][:1] == ["tank"], selection
        assert [s.dataset for s in of(plan, SendAction)][:1] == ["tank"], selection
        assert any("also snapshots and sends nas:tank" in m for m in plan.warnings), plan.warnings
        everything = make_plan(cfg, simulate(w.observed, plan), NOW)
        assert everything.conflicts == (), (selection, everything.conflicts)


def test_an_unavailable_hosts_fix_fits_the_failure() -> None:
    """A local host whose zfs is missing is not told to try ssh."""
    w = world(("zrepl_1", 5))
    w.unavailable("backup", "zfs_not_found", "zfs: not found")
    (conflict,) = make_plan(simple_config(interval="1d"), w.observed, NOW).conflicts
    assert conflict.fix == "install zfs on backup or set its zfs_command (e.g. [sudo, -n, zfs])"
    w.unavailable("backup", "unreachable", "connection refused")
    (conflict,) = make_plan(simple_config(interval="1d"), w.observed, NOW).conflicts
    assert "`ssh backup zfs list`" in conflict.fix


def test_names_longer_than_zfs_allows_are_conflicts_not_actions() -> None:
    """ZFS refuses names over 255 bytes (dataset@snapshot included): the plan says so
    instead of planning commands that must fail."""
    w = World()
    deep = "tank/" + "d" * 120
    w.fs("nas", "tank")
    w.fs("nas", deep)
    w.snaps("nas", deep, [("zrepl_1", 5)])
    w.fs("backup", "pool")
    long_root = "pool/" + "r" * 130
    cfg = simple_config(interval="1d", filter={deep: True},
                        targets=[{"host": "backup", "root": long_root}])
    plan = make_plan(cfg, w.observed, NOW)
    (conflict,) = plan.conflicts
    assert conflict.code == "name_too_long" and conflict.dataset == f"{long_root}/{deep}"
    assert of(plan, SendAction) == [] and of(plan, CreateAction) == []
    cfg = simple_config(interval="1h", prefix="p" * 120, manage="^p", filter={deep: True}, targets=[])
    plan = make_plan(cfg, w.observed, NOW)
    assert of(plan, SnapshotAction) == []
    (conflict,) = plan.conflicts
    assert conflict.code == "name_too_long" and "shorten snapshots.prefix" in conflict.fix
