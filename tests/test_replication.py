"""Replication helpers: destroy re-check (invariants), simulate, fingerprint, cursor names."""

from __future__ import annotations

import copy

import pytest
from plan_builders import NOW, World, simple_config

from reconciler.domain.actions import SendAction
from reconciler.domain.observed import ObservedState
from reconciler.planning.fingerprint import facts_fingerprint
from reconciler.planning.invariants import check_destroy_allowed
from reconciler.planning.naming import cursor_name, cursor_prefix
from reconciler.planning.planner import make_plan
from reconciler.planning.simulate import copy_state, simulate

PREFIX = cursor_prefix("backup", "pool/nas")


def _source() -> World:
    w = World()
    w.fs("nas", "tank")
    w.fs("backup", "pool")
    w.snaps("nas", "tank", [("zrepl_1", 5), ("manual", 4), ("zrepl_2", 3), ("zrepl_3", 2)])
    w.snap("nas", "tank", "zrepl_held", 1, holds=("hold1",))
    return w


def test_check_destroy_allowed_refuses_each_invariant() -> None:
    w = _source()
    ds = w.ds("nas", "tank")
    base = ds.snapshot_named("zrepl_2")
    assert base is not None
    refusals = dict(check_destroy_allowed(
        "^zrepl_", ds, ["zrepl_1", "manual", "zrepl_2", "zrepl_held", "tank@zrepl_3", "#userbm",
                        "#" + PREFIX + "x", "gone"], bases={base.guid}))
    assert set(refusals) == {"manual", "zrepl_2", "zrepl_held", "tank@zrepl_3", "#userbm"}
    assert refusals["manual"].startswith("invariant 2: unmanaged")
    assert refusals["zrepl_held"] == "invariant 2: held (tags hold1)"
    assert refusals["zrepl_2"].startswith("invariant 3")
    assert refusals["tank@zrepl_3"].startswith("invariant 1")


def test_check_destroy_allowed_base_with_bookmark_may_go_on_source_only() -> None:
    w = _source()
    w.bookmark("nas", "tank", PREFIX + "zrepl_2", "zrepl_2")
    ds = w.ds("nas", "tank")
    base = ds.snapshot_named("zrepl_2")
    assert base is not None
    assert check_destroy_allowed("^zrepl_", ds, ["zrepl_2"], bases={base.guid}) == []
    # ... unless the bookmark goes in the same destroy
    assert check_destroy_allowed("^zrepl_", ds, ["zrepl_2", "#" + PREFIX + "zrepl_2"], bases={base.guid})
    # on a target a bookmark does not stand in for the base, and the newest is refused
    refused = check_destroy_allowed("^zrepl_", ds, ["zrepl_2", "zrepl_held"], bases={base.guid}, target=True)
    assert [r.name for r in refused] == ["zrepl_2", "zrepl_held"]


def test_simulate_does_not_mutate_its_input() -> None:
    w = _source()
    cfg = simple_config(keep_source=[{"type": "last_n", "count": 1}])
    before = copy.deepcopy(w.observed)
    plan = make_plan(cfg, w.observed, NOW)
    after = simulate(w.observed, plan)
    assert w.observed == before
    assert after != before
    target = after.dataset("backup", "pool/nas/tank")
    assert target is not None and [s.name for s in target.snapshots] == ["zrepl_20261124_120000"]
    source = after.dataset("nas", "tank")
    assert source is not None
    assert [b.name for b in source.bookmarks] == [PREFIX + "zrepl_20261124_120000"]
    assert target.snapshots[0].guid == source.snapshots[-1].guid


def test_fingerprint_tracks_facts_and_config() -> None:
    w = _source()
    cfg = simple_config()
    first = facts_fingerprint(cfg, w.observed)
    assert first.startswith("sha256:") and first == facts_fingerprint(cfg, w.observed)
    w.ds("nas", "tank").snapshots[0].userrefs = 1
    held = facts_fingerprint(cfg, w.observed)
    assert held != first
    w.fs("backup", "pool/nas")  # a placeholder parent appeared
    assert facts_fingerprint(cfg, w.observed) != held
    assert facts_fingerprint(simple_config(interval="2h"), w.observed) != facts_fingerprint(cfg, w.observed)
    w.fs("nas", "unselected")
    assert facts_fingerprint(cfg, w.observed, filesystems=["tank"]) == facts_fingerprint(cfg, w.observed)


def test_fingerprint_covers_the_kind_of_a_targets_parents_and_only_selected_targets() -> None:
    w = _source()
    cfg = simple_config(targets=[{"host": "backup", "root": "pool/nas"}, {"host": "other", "root": "p2"}])
    w.fs("backup", "pool")
    w.fs("other", "p2")
    only_backup = facts_fingerprint(cfg, w.observed, hosts=["backup"])
    w.fs("other", "p2/tank")  # a change on the unselected target: the --host backup plan still holds
    assert facts_fingerprint(cfg, w.observed, hosts=["backup"]) == only_backup
    w.fs("backup", "pool/nas")
    as_filesystem = facts_fingerprint(cfg, w.observed)
    w.fs("backup", "pool/nas", kind="volume")  # the same name, now a volume in the way
    as_volume = facts_fingerprint(cfg, w.observed)
    assert as_volume != as_filesystem


def test_cursor_name_stays_within_zfs_limit() -> None:
    long_snap = "s" * 240
    name = cursor_name(PREFIX, "tank/data", long_snap)
    assert name.startswith(PREFIX) and len(f"tank/data#{name}") <= 255
    assert cursor_name(PREFIX, "tank", "zrepl_1") == PREFIX + "zrepl_1"
    assert cursor_prefix("backup", "pool/a") != cursor_prefix("backup", "pool/b")


def test_destroy_guard_from_config_and_fresh_facts() -> None:
    from reconciler.planning.invariants import destroy_guard

    w = _source()
    w.replicate("nas", "tank", "backup", "pool/nas/tank", ["zrepl_1", "zrepl_2"])
    cfg = simple_config()
    src_guard = destroy_guard(cfg, w.observed, "nas", "tank")
    base = w.ds("nas", "tank").snapshot_named("zrepl_2")
    assert base is not None
    assert (src_guard.manage, src_guard.bases, src_guard.target) == ("^zrepl_", frozenset({base.guid}), False)
    assert [r.name for r in src_guard.check(w.ds("nas", "tank"), ["zrepl_1", "zrepl_2"])] == ["zrepl_2"]
    tgt_guard = destroy_guard(cfg, w.observed, "backup", "pool/nas/tank")
    assert tgt_guard.target and tgt_guard.bases == frozenset({base.guid})
    refused = tgt_guard.check(w.ds("backup", "pool/nas/tank"), ["zrepl_1", "zrepl_2"])
    assert [r.name for r in refused] == ["zrepl_2"]
    stranger = destroy_guard(cfg, w.observed, "backup", "pool")
    assert stranger.check(w.ds("nas", "tank"), ["zrepl_1"])  # unmanaged: everything refused


def _versions(host: str, name: str, spec: str, w: World) -> None:
    """zrepl's fsvlist: "@a,1 #b,2": GUID and createtxg both equal the number."""
    from reconciler.domain.observed import Bookmark, Snapshot

    ds = w.fs(host, name)
    for item in spec.split():
        label, number = item.split(",")
        n = int(number)
        if label.startswith("#"):
            ds.bookmarks.append(Bookmark(label[1:], n, n, n))
        else:
            ds.snapshots.append(Snapshot(label[1:], n, n, n))


@pytest.mark.parametrize(("receiver", "sender", "expected"), [
    # zrepl replication/logic/diff IncrementalPath vectors, as sends or conflicts
    ("@a,1 @b,2", "@a,1 @b,2 @c,3 @d,4", [("b", "d", ("c", "d"))]),
    ("@a,1 @b,2", "@c,3 @d,4", "no_common_snapshot"),
    ("@a,1 @b1,2", "@a,1 @b2,3", "diverged"),
    ("@a,1 @b,2 @c,3", "@a,1 @c,3 @d,4", [("c", "d", ("d",))]),
    ("@c,3", "@a,1 @b,2 @c,3", []),
    ("@a,1", "#a,1 @b,2", [("#a", "b", ("b",))]),
    ("@a,1", "#a,1 #b,2 @c,3", [("#a", "c", ("c",))]),
    ("@a,1", "#a,1 @a,1 @b,2", [("a", "b", ("b",))]),
    ("@a,1", "@a,1 #a,1 @b,2", [("a", "b", ("b",))]),
])
def test_incremental_path_like_zrepl(receiver: str, sender: str, expected: object) -> None:
    w = World()
    w.fs("backup", "pool")
    w.fs("backup", "pool/nas")
    _versions("nas", "tank", sender, w)
    _versions("backup", "pool/nas/tank", receiver, w)
    cfg = simple_config(prefix=None, manage="^$")
    plan = make_plan(cfg, w.observed, NOW)
    if isinstance(expected, str):
        assert [c.code for c in plan.conflicts] == [expected]
        assert plan.actions == ()
        return
    sends = [(a.base, a.snapshot, a.snapshots) for a in plan.actions if isinstance(a, SendAction)]
    assert sends == expected


@pytest.mark.parametrize("volume", ["pool/nas", "pool/nas/tank"])
def test_volume_ancestor_of_a_target_is_target_not_filesystem(volume: str) -> None:
    """A volume cannot have children: no placeholder, no send, no destroy below it."""
    w = World()
    w.fs("nas", "tank")
    w.fs("nas", "tank/a")
    w.snaps("nas", "tank/a", [("zrepl_1", 5)])
    w.fs("backup", "pool")
    w.fs("backup", volume, kind="volume")
    cfg = simple_config(interval="1d", filter={"tank/a": True},
                        keep_target=[{"type": "regex", "regex": "^nothing"}])
    plan = make_plan(cfg, w.observed, NOW)
    (conflict,) = plan.conflicts
    assert (conflict.code, conflict.host, conflict.dataset) == (
        "target_not_filesystem", "backup", "pool/nas/tank/a")
    assert f"backup:{volume} (" in conflict.message and "is a volume" in conflict.message
    assert f"zfs rename {volume} {volume}.old" in conflict.fix and "replicate_to" in conflict.fix
    assert plan.actions == ()  # no create, no send, no cursor, no destroy
    fixed = _renamed(w, volume)
    assert [a.kind for a in make_plan(cfg, fixed, NOW).actions if "hold" not in a.kind
            and a.kind != "release"][-2:] == ["send", "bookmark"]


def _renamed(w: World, volume: str) -> ObservedState:
    """The suggested fix, applied: the volume moved away, the target parents missing."""
    state = copy_state(w.observed)
    datasets = state.hosts["backup"].datasets
    datasets[volume + ".old"] = datasets.pop(volume)
    return state
