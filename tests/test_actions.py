"""The action vocabulary is closed: one kind per class, one registry, one execution order.

Every kind is read back from its Plan JSON, ordered by the planner, simulated and known
to the saved-plan schema; an unknown kind is an invalid plan.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any, get_args

import pytest

from reconciler.domain.actions import (
    ACTION_CLASSES,
    EXECUTION_ORDER,
    AbortResumeAction,
    Action,
    BookmarkAction,
    CreateAction,
    DestroyAction,
    HoldAction,
    HoldReceivedAction,
    Kind,
    PostHookAction,
    PreHookAction,
    ReleaseAction,
    SendAction,
    SnapshotAction,
    action_from_json,
    out_of_order,
)
from reconciler.domain.observed import Dataset, HostFacts, ObservedState, Snapshot
from reconciler.domain.plan import Plan
from reconciler.errors import PlanFileError
from reconciler.planfile.read import plan_schema_text
from reconciler.planning.planner import order_actions
from reconciler.planning.simulate import simulate

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)

ONE_OF_EACH: dict[Kind, Action] = {
    "pre_hook": PreHookAction("nas", "tank/a", "zrepl_2", 0, ("/usr/local/sbin/db-freeze", "--fast"), 30,
                              "policy db: snapshots.hooks[0].pre", err_is_fatal=True),
    "snapshot": SnapshotAction("nas", "tank/a", "zrepl_2", "nas:tank/a", "due"),
    "post_hook": PostHookAction("nas", "tank/a", "zrepl_2", 0, ("/usr/local/sbin/db-thaw",), 30,
                                "policy db: snapshots.hooks[0].post"),
    "create": CreateAction("backup", "pool/tank", "missing parent", encryption_off=True),
    "abort_resume": AbortResumeAction("backup", "pool/tank/b", "stale token"),
    "hold": HoldAction("nas", "tank/a", "zrepl_1", "zrr_send", "protects the base"),
    "send": SendAction("nas", "tank/a", "zrepl_2", "backup", "pool/tank/a", "#zrr-cursor", ("zrepl_2",),
                       estimated_bytes=4096, raw=True, reason="behind", send_properties=True,
                       overrides=(("readonly", "on"), ("com.example:x", "a=b")), excludes=("mountpoint",)),
    "bookmark": BookmarkAction("nas", "tank/a", "zrepl_2", "zrr-cursor2", "cursor"),
    "hold_received": HoldReceivedAction("backup", "pool/tank/a", "zrepl_2", "zrr-last-received_nas",
                                        "the last received snapshot"),
    "release": ReleaseAction("nas", "tank/a", "zrepl_1", "zrr_send", "sent"),
    "destroy": DestroyAction("nas", "tank/a", ("zrepl_0", "#zrr-cursor"), (("zrepl_0", "old"),), "moved"),
}


def test_every_class_declares_one_kind_and_the_registry_has_them_all() -> None:
    classes = get_args(Action)
    assert sorted(cls.kind for cls in classes) == sorted(get_args(Kind)) == sorted(EXECUTION_ORDER)
    assert {kind: type(action) for kind, action in ONE_OF_EACH.items()} == dict(ACTION_CLASSES)
    assert all(action.kind == kind for kind, action in ONE_OF_EACH.items())


def test_the_saved_plan_schema_knows_exactly_the_vocabulary_in_execution_order() -> None:
    action = json.loads(plan_schema_text())["$defs"]["action"]
    assert action["properties"]["kind"]["enum"] == list(EXECUTION_ORDER)
    dispatched = [rule["if"]["properties"]["kind"]["const"] for rule in action["allOf"]]
    assert sorted(dispatched) == sorted(EXECUTION_ORDER)


@pytest.mark.parametrize("kind", EXECUTION_ORDER)
def test_every_kind_is_read_back_from_its_plan_json(kind: Kind) -> None:
    action = ONE_OF_EACH[kind]
    data = json.loads(json.dumps(action.to_json()))
    assert data["kind"] == kind
    assert action_from_json(data) == action


@pytest.mark.parametrize("data", [{"kind": "format", "host": "nas", "dataset": "tank"}, {"host": "nas"},
                                  {"kind": 3}])
def test_an_unknown_kind_is_an_invalid_plan_not_a_value_error(data: dict[str, Any]) -> None:
    with pytest.raises(PlanFileError, match="unknown action kind") as caught:
        action_from_json(data)
    assert not isinstance(caught.value, ValueError | KeyError)
    assert str(caught.value).endswith(f"(this version knows {', '.join(EXECUTION_ORDER)})")


def test_the_planner_orders_kinds_by_the_one_execution_order() -> None:
    later_send = SendAction("nas", "tank/a", "zrepl_3", "backup", "pool/tank/a", "zrepl_2", ("zrepl_3",))
    child_send = SendAction("nas", "tank/a/b", "zrepl_2", "backup", "pool/tank/a/b", None, ("zrepl_2",))
    actions = [*ONE_OF_EACH.values(), later_send, child_send]
    random.Random(7).shuffle(actions)
    ordered = order_actions(actions)
    assert list(dict.fromkeys(a.kind for a in ordered)) == list(EXECUTION_ORDER)
    sends = [a for a in ordered if isinstance(a, SendAction)]
    # Parents first; two sends to one target keep the order they were planned in.
    expected = [a for a in actions if a in (ONE_OF_EACH["send"], later_send)] + [child_send]
    assert sends == expected
    assert out_of_order(ordered) is None
    assert out_of_order(ordered[::-1]) == (ordered[-1], ordered[-2])


def test_simulate_places_and_releases_a_hold_without_touching_the_observed_state() -> None:
    snap = Snapshot("zrepl_1", 11, 5, 0, 1, None, None, ("manual",))
    dataset = Dataset("tank/a", "filesystem", 1, 1, snapshots=[snap])
    observed = ObservedState({"nas": HostFacts("nas", {"tank/a": dataset})})
    held = simulate(observed, Plan(NOW, "sha256:x", (ONE_OF_EACH["hold"],)))
    after = held.dataset("nas", "tank/a")
    assert after is not None
    assert (after.snapshots[0].userrefs, after.snapshots[0].holds) == (2, ("manual", "zrr_send"))
    assert (snap.userrefs, snap.holds) == (1, ("manual",))
    released = simulate(held, Plan(NOW, "sha256:x", (ONE_OF_EACH["release"],)))
    again = released.dataset("nas", "tank/a")
    assert again is not None and again.snapshots[0] == snap


def hooks(dataset: str, *indexes: int) -> tuple[list[PreHookAction], SnapshotAction, list[PostHookAction]]:
    pre = [PreHookAction("nas", dataset, "zrepl_2", i, (f"/pre{i}",), 30) for i in indexes]
    post = [PostHookAction("nas", dataset, "zrepl_2", i, (f"/post{i}",), 30) for i in reversed(indexes)]
    return pre, SnapshotAction("nas", dataset, "zrepl_2", f"nas:{dataset}"), post


def test_the_planner_puts_each_filesystems_hooks_right_around_its_own_snapshot() -> None:
    pre_a, snap_a, post_a = hooks("tank/a", 0, 1, 2)
    pre_b, snap_b, post_b = hooks("tank/b", 0)
    batch = [SnapshotAction("nas", f"tank/{n}", "zrepl_2", "nas:tank:p:zrepl_2") for n in "cd"]
    actions: list[Action] = [*pre_a, snap_a, *post_a, *pre_b, snap_b, *post_b, *batch, ONE_OF_EACH["create"]]
    random.Random(3).shuffle(actions)
    ordered = order_actions(actions)
    assert ordered == [*pre_a, snap_a, *post_a, *pre_b, snap_b, *post_b, *batch, ONE_OF_EACH["create"]]
    assert out_of_order(ordered) is None


@pytest.mark.parametrize("broken", [
    "pre after snapshot", "post before snapshot", "another snapshot between", "pre hooks out of order",
    "post hooks in hook order", "hooked snapshot in a shared batch", "pre hook without snapshot"])
def test_out_of_order_refuses_hooks_away_from_their_snapshot(broken: str) -> None:
    pre, snap, post = hooks("tank/a", 0, 1)
    _, other, _ = hooks("tank/b")
    plans: dict[str, list[Action]] = {
        "pre after snapshot": [pre[0], snap, pre[1], *post],
        "post before snapshot": [*pre, post[0], snap, post[1]],
        "another snapshot between": [*pre, other, snap, *post],
        "pre hooks out of order": [pre[1], pre[0], snap, *post],
        "post hooks in hook order": [*pre, snap, post[1], post[0]],
        "hooked snapshot in a shared batch": [*pre, snap, *post,
                                              SnapshotAction("nas", "tank/b", "zrepl_2", snap.batch)],
        "pre hook without snapshot": [ONE_OF_EACH["destroy"], pre[0]][1:],
    }
    assert out_of_order([*pre, snap, *post]) is None
    assert out_of_order(plans[broken]) is not None
