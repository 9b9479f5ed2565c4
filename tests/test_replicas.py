"""Replicas that stay safe (issue 13), planned: receive properties, encryption awareness,
zrepl's protection levels as holds, the strip mapping and its configuration checks.

The real-OpenZFS behaviour these rely on is measured in tests/e2e/test_scenarios_replicas.py
and the README ("What protects your replicas"); tests/test_replicas_standin.py runs them
through apply against the stand-in zfs.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plan_builders import NOW, World, simple_config

from reconciler.codes import ConflictCode
from reconciler.config.load import load_config_text
from reconciler.config.models import Config, Target
from reconciler.domain.actions import (
    CreateAction,
    HoldAction,
    HoldReceivedAction,
    ReleaseAction,
    SendAction,
)
from reconciler.domain.plan import Plan
from reconciler.errors import ConfigError
from reconciler.planning.naming import last_received_tag, step_hold_tag
from reconciler.planning.planner import make_plan
from reconciler.planning.simulate import simulate

STEP = step_hold_tag("backup", "pool/nas")
LAST = last_received_tag("nas", "backup", "pool/nas")


def of(plan: Plan, cls: type[Any]) -> list[Any]:
    return [a for a in plan.actions if isinstance(a, cls)]


def tags(plan: Plan) -> list[tuple[str, str, str, str]]:
    """(kind, dataset, snapshot, tag) of every hold action."""
    return [(a.kind, a.dataset, a.snapshot, a.tag) for a in plan.actions
            if isinstance(a, HoldAction | HoldReceivedAction | ReleaseAction)]


def converges(config: Config, w: World, plan: Plan) -> None:
    again = make_plan(config, simulate(w.observed, plan), NOW)
    assert [a.describe() for a in again.actions] == []


def replicated(*names: str) -> World:
    """nas:tank with snapshots ``names`` (hourly, oldest first), all on backup:pool/nas/tank."""
    w = World()
    w.fs("nas", "tank")
    w.fs("backup", "pool")
    w.fs("backup", "pool/nas")
    w.snaps("nas", "tank", [(n, len(names) - i + 1) for i, n in enumerate(names)])
    w.replicate("nas", "tank", "backup", "pool/nas/tank")
    return w


def config(**target: Any) -> Config:
    return simple_config(interval="1d", targets=[{"host": "backup", "root": "pool/nas", **target}])


# ------------------------------------------------------------------ receive properties


def test_every_receive_gets_the_safe_properties_a_volume_only_readonly() -> None:
    w = World()
    w.fs("nas", "tank")
    w.fs("nas", "tank/vol", kind="volume")
    w.fs("backup", "pool")
    w.snaps("nas", "tank", [("zrepl_1", 2)])
    w.snaps("nas", "tank/vol", [("zrepl_1", 2)])
    plan = make_plan(config(), w.observed, NOW)
    fs, vol = of(plan, SendAction)
    large = ["-o", "zrepl-reconcile:large_blocks=on"]  # compressed (default): the replica is marked
    assert fs.recv_argv() == ["zfs", "recv", "-s", "-u", *large, "-o", "readonly=on", "-o", "canmount=noauto",
                              "pool/nas/tank"]
    assert vol.recv_argv() == ["zfs", "recv", "-s", "-u", *large, "-o", "readonly=on", "pool/nas/tank/vol"]
    assert fs.send_argv() == ["zfs", "send", "-L", "-c", "-e", "tank@zrepl_1"]


@pytest.mark.parametrize(("properties", "send_properties", "overrides", "excludes"), [
    ({}, True, [("readonly", "on"), ("canmount", "noauto")], ["mountpoint", "sharenfs", "sharesmb"]),
    ({"override": {"readonly": "off", "compression": "zstd"}}, False,
     [("readonly", "off"), ("canmount", "noauto"), ("compression", "zstd")], []),
    ({"exclude": ["canmount", "mountpoint"]}, True, [("readonly", "on")], ["canmount", "mountpoint"]),
    ({"override": {"mountpoint": "/backup/x"}}, True,
     [("readonly", "on"), ("canmount", "noauto"), ("mountpoint", "/backup/x")], ["sharenfs", "sharesmb"]),
    ({"exclude": []}, True, [("readonly", "on"), ("canmount", "noauto")], []),
])
def test_overrides_merge_over_the_defaults_and_exclusions_replace_them(
        properties: dict[str, Any], send_properties: bool, overrides: list[tuple[str, str]],
        excludes: list[str]) -> None:
    target = Target.model_validate({"host": "b", "root": "pool", "properties": properties,
                                    "send_properties": send_properties})
    assert list(target.receive_overrides("filesystem")) == overrides
    assert list(target.receive_excludes("filesystem")) == excludes


def test_send_properties_is_zfs_send_p_and_travels_into_the_plan_json() -> None:
    w = replicated("zrepl_1", "zrepl_2")
    w.snaps("nas", "tank", [("zrepl_3", 0.5)])
    plan = make_plan(config(send_properties=True), w.observed, NOW)
    (send,) = of(plan, SendAction)
    assert send.send_argv() == ["zfs", "send", "-L", "-c", "-e", "-p", "-I", "tank@zrepl_2", "tank@zrepl_3"]
    data = send.to_json()
    assert data["send_properties"] is True
    assert data["properties"] == {"override": {"readonly": "on", "canmount": "noauto"},
                                  "exclude": ["mountpoint", "sharenfs", "sharesmb"]}
    assert SendAction.from_json(data) == send


# ------------------------------------------------------------------ encryption


def encrypted(w: World, host: str, name: str, key: str = "available") -> None:
    ds = w.ds(host, name)
    ds.encryption, ds.encryption_root, ds.key_status = "aes-256-gcm", name, key


def test_an_encrypted_source_without_raw_is_a_conflict_with_the_fix() -> None:
    w = World()
    w.fs("nas", "tank")
    encrypted(w, "nas", "tank")
    w.fs("backup", "pool")
    w.snaps("nas", "tank", [("zrepl_1", 2)])
    plan = make_plan(config(), w.observed, NOW)
    (conflict,) = plan.conflicts
    assert conflict.code == ConflictCode.UNENCRYPTED_REPLICA == "unencrypted_replica"
    assert "is encrypted (aes-256-gcm, encryption root tank)" in conflict.message
    assert "set raw: true" in conflict.fix and "raw: false" in conflict.fix
    assert not of(plan, SendAction) and not of(plan, CreateAction)


def test_raw_false_replicates_decrypted_and_warns_every_plan() -> None:
    w = replicated("zrepl_1")
    encrypted(w, "nas", "tank")
    plan = make_plan(config(raw=False), w.observed, NOW)
    assert plan.conflicts == () and [(a.dataset, a.tag) for a in of(plan, HoldAction)] == [
        ("pool/nas/tank", LAST)]
    assert any("raw: false" in x and "stored decrypted" in x for x in plan.warnings)
    again = make_plan(config(raw=False), simulate(w.observed, plan), NOW)
    assert again.actions == () and any("stored decrypted" in x for x in again.warnings)


def test_a_raw_send_onto_a_replica_received_decrypted_is_a_conflict() -> None:
    w = replicated("zrepl_1")
    encrypted(w, "nas", "tank")
    w.snaps("nas", "tank", [("zrepl_2", 0.5)])
    plan = make_plan(config(raw=True), w.observed, NOW)
    (conflict,) = plan.conflicts
    assert conflict.code == "unencrypted_replica" and "zfs refuses a raw receive" in conflict.message
    assert "zfs rename pool/nas/tank pool/nas/tank.decrypted" in conflict.fix


def test_a_raw_replica_with_its_key_loaded_is_a_warning() -> None:
    w = replicated("zrepl_1")
    encrypted(w, "nas", "tank")
    encrypted(w, "backup", "pool/nas/tank", key="available")
    plan = make_plan(config(raw=True), w.observed, NOW)
    report = next(f for f in plan.filesystems if f.role == "target")
    assert any("zfs unload-key pool/nas/tank" in x for x in report.warnings)


def test_placeholders_below_a_locked_raw_replica_are_unencrypted_and_wait_for_it() -> None:
    w = World()
    for name in ("tank", "tank/a", "tank/a/b"):
        w.fs("nas", name)
        encrypted(w, "nas", name)
    w.fs("backup", "pool")
    w.snaps("nas", "tank", [("zrepl_1", 2)])
    w.snaps("nas", "tank/a/b", [("zrepl_1", 2)])
    cfg = simple_config(interval="1d", filter={"tank": True, "tank/a/b": True},
                        targets=[{"host": "backup", "root": "pool/nas", "raw": True}])
    first = make_plan(cfg, w.observed, NOW)
    assert [s.target_dataset for s in of(first, SendAction)] == ["pool/nas/tank"]
    report = next(f for f in first.filesystems if f.dataset == "pool/nas/tank/a/b")
    assert any("is not sent yet: the placeholder pool/nas/tank/a it needs lies below pool/nas/tank" in x
               for x in report.warnings), report.warnings
    after = simulate(w.observed, first)
    raw = after.dataset("backup", "pool/nas/tank")
    assert raw is not None
    raw.encryption, raw.encryption_root, raw.key_status = "aes-256-gcm", raw.name, "unavailable"
    second = make_plan(cfg, after, NOW)
    (create,) = of(second, CreateAction)
    assert create.argv() == ["zfs", "create", "-o", "canmount=off", "-o", "encryption=off", "pool/nas/tank/a"]
    assert create.to_json()["properties"] == {"canmount": "off", "encryption": "off"}
    assert [s.target_dataset for s in of(second, SendAction)] == ["pool/nas/tank/a/b"]


# ------------------------------------------------------------------ protection levels


@pytest.mark.parametrize(("level", "expected"), [
    ("guarantee_resumability", [
        ("hold", "tank", "zrepl_2", STEP), ("hold", "tank", "zrepl_3", STEP),
        ("hold_received", "pool/nas/tank", "zrepl_3", LAST),
        ("release", "pool/nas/tank", "zrepl_2", LAST),
        ("release", "tank", "zrepl_2", STEP), ("release", "tank", "zrepl_3", STEP)]),
    ("guarantee_incremental", [
        ("hold_received", "pool/nas/tank", "zrepl_3", LAST), ("release", "pool/nas/tank", "zrepl_2", LAST)]),
    ("guarantee_nothing", [("release", "pool/nas/tank", "zrepl_2", LAST)]),
])
def test_protection_levels_as_holds(level: str, expected: list[tuple[str, str, str, str]]) -> None:
    w = replicated("zrepl_1", "zrepl_2")
    w.ds("backup", "pool/nas/tank").snapshots[-1].holds = (LAST,)
    w.ds("backup", "pool/nas/tank").snapshots[-1].userrefs = 1
    w.snaps("nas", "tank", [("zrepl_3", 0.5)])
    cfg = config(protection={"initial": level, "incremental": level})
    plan = make_plan(cfg, w.observed, NOW)
    assert tags(plan) == expected
    converges(cfg, w, plan)


def test_a_full_send_holds_by_the_initial_level() -> None:
    w = World()
    w.fs("nas", "tank")
    w.fs("backup", "pool")
    w.snaps("nas", "tank", [("zrepl_1", 2)])
    cfg = config(protection={"initial": "guarantee_nothing", "incremental": "guarantee_incremental"})
    plan = make_plan(cfg, w.observed, NOW)
    assert tags(plan) == [("hold_received", "pool/nas/tank", "zrepl_1", LAST)]
    cfg = config(protection={"initial": "guarantee_resumability", "incremental": "guarantee_nothing"})
    assert tags(make_plan(cfg, w.observed, NOW)) == [("hold", "tank", "zrepl_1", STEP),
                                                     ("release", "tank", "zrepl_1", STEP)]


def test_step_holds_of_an_unfinished_step_stay_until_it_resumes_then_go() -> None:
    from reconciler.domain.resume_token import encode_resume_token

    w = replicated("zrepl_1")
    w.snaps("nas", "tank", [("zrepl_2", 0.5)])
    step = w.ds("nas", "tank").snapshots
    for snap in step:  # what a killed apply left: both snapshots of the step held
        snap.holds, snap.userrefs = (STEP,), 1
    w.ds("backup", "pool/nas/tank").resume_token = encode_resume_token(
        step[1].guid, "tank@zrepl_2", step[0].guid, 4096)
    plan = make_plan(config(), w.observed, NOW)
    assert [s.resume_token is not None for s in of(plan, SendAction)] == [True]
    assert [(k, s) for k, _d, s, t in tags(plan) if t == STEP] == [("release", "zrepl_1"),
                                                                    ("release", "zrepl_2")]

    w.unavailable("backup")  # the target unreachable: nobody knows whether the step resumes
    assert [t for t in tags(make_plan(config(), w.observed, NOW)) if t[3] == STEP] == []


def test_holds_released_by_the_plan_do_not_keep_a_snapshot_from_pruning_but_foreign_ones_do() -> None:
    w = replicated("zrepl_1", "zrepl_2", "zrepl_3")
    first, second = w.ds("nas", "tank").snapshots[:2]
    first.holds, first.userrefs = (step_hold_tag("backup", "pool/gone"),), 1  # ours, stale
    second.holds, second.userrefs = ("keep",), 1  # someone else's
    cfg = simple_config(interval="1d", keep_source=[{"type": "last_n", "count": 1}])
    plan = make_plan(cfg, w.observed, NOW)
    destroyed = [n for a in plan.actions if a.kind == "destroy" and a.dataset == "tank"
                 for n in a.snapshots]  # type: ignore[attr-defined]
    assert destroyed == ["zrepl_1"]
    assert ("release", "tank", "zrepl_1", step_hold_tag("backup", "pool/gone")) in tags(plan)
    assert not any(t[3] == "keep" for t in tags(plan))
    converges(cfg, w, plan)


def test_explain_says_what_happens_to_holds_of_ours() -> None:
    w = replicated("zrepl_1")
    w.snaps("nas", "tank", [("zrepl_2", 0.5)])
    plan = make_plan(config(), w.observed, NOW, explain=True)
    source = next(f for f in plan.filesystems if f.role == "source")
    (verdict,) = [v for v in source.verdicts if v.name == "zrepl_2"]
    assert (f"hold {STEP} while the send to backup:pool/nas/tank runs (guarantee_resumability)"
            in verdict.reason)
    target = next(f for f in plan.filesystems if f.role == "target")
    (verdict,) = [v for v in target.verdicts if v.name == "zrepl_2"]
    assert f"hold {LAST}: the last received snapshot" in verdict.reason


# ------------------------------------------------------------------ strip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b b", "c:1", "d.e"]), min_size=0, max_size=4),
       st.sampled_from([None, "tank", "tank/a"]))
def test_strip_mapping_and_its_inverse(below: list[str], strip: str | None) -> None:
    target = Target(host="backup", root="pool/nas", strip=strip)
    source = "/".join(["tank", "a", *below]) if strip else "/".join(["tank", *below])
    replica = target.target_dataset(source)
    assert target.source_dataset(replica) == source
    assert replica == "pool/nas" + (source[len(strip):] if strip else "/" + source)


def test_strip_plans_below_the_prefix_and_role_of_maps_back() -> None:
    w = World()
    w.fs("nas", "tank")
    w.fs("nas", "tank/data")
    w.fs("backup", "pool")
    w.snaps("nas", "tank/data", [("zrepl_1", 2)])
    cfg = simple_config(interval="1d", filter={"tank/data": True},
                        targets=[{"host": "backup", "root": "pool/nas", "strip": "tank"}])
    plan = make_plan(cfg, w.observed, NOW)
    assert [s.target_dataset for s in of(plan, SendAction)] == ["pool/nas/data"]
    role = cfg.role_of("backup", "pool/nas/data")
    assert role is not None and role.source == "tank/data" and role.target is not None
    assert cfg.role_of("backup", "pool/nas/tank/data") is None


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(textwrap.dedent(text), "c.yml")
    return [line.removeprefix("c.yml:") for line in str(info.value).splitlines()]


HEAD = """\
hosts: {nas: {connection: local}, web: {connection: local}, backup: {connection: local}}
policies: {p: {snapshots: {prefix: z_, interval: 1h}}}
filesystems:
"""


def test_two_sources_landing_on_one_replica_is_an_error_naming_both() -> None:
    found = problems(HEAD + """\
  - {host: nas, filter: {"tank/data<": true}, policy: p,
     replicate_to: [{host: backup, root: pool/r, strip: tank}]}
  - {host: nas, filter: {"tank2/data<": true}, policy: p,
     replicate_to: [{host: backup, root: pool/r, strip: tank2}]}
""")
    assert found == ["7:21: filesystems[1].replicate_to[0]: nas:tank2/data and nas:tank/data (replicated by"
                     " filesystems[0].replicate_to[0], c.yml:5:21) would both be replicated to"
                     " backup:pool/r/data: give each its own root (or strip less)"]


def test_a_strip_that_is_not_a_prefix_of_the_selection_is_an_error() -> None:
    found = problems(HEAD + """\
  - {host: nas, filter: {"tank<": true, "tank/x": false}, policy: p,
     replicate_to: [{host: backup, root: pool/r, strip: tank/data}]}
""")
    assert len(found) == 1 and "replicate_to[0].strip: strip 'tank/data' must be a prefix" in found[0]
    assert "'tank<' selects datasets outside it" in found[0]


def test_strips_that_keep_names_apart_are_fine_and_replicas_selected_again_are_found() -> None:
    load_config_text(textwrap.dedent(HEAD + """\
  - {host: nas, filter: {"tank/data<": true}, policy: p,
     replicate_to: [{host: backup, root: pool/r, strip: tank}]}
  - {host: web, filter: {"tank/data<": true}, policy: p,
     replicate_to: [{host: backup, root: pool/w, strip: tank}]}
"""), "c.yml")
    found = problems(HEAD + """\
  - {host: nas, filter: {"tank<": true}, policy: p, replicate_to: [{host: nas, root: tank/r, strip: tank}]}
""")
    assert len(found) == 1 and "writes tank/r" in found[0] and "selects again" in found[0], found


@pytest.mark.parametrize(("target", "message"), [
    ({"raw": True, "properties": {"override": {"encryption": "off"}}},
     "a raw receive cannot set or exclude encryption"),
    ({"properties": {"override": {"readonly": "on"}, "exclude": ["readonly"]}},
     "readonly is both overridden and excluded"),
    ({"properties": {"override": {"Bad Name": "x"}}}, "is not a ZFS property name"),
    ({"properties": {"exclude": ["used"]}}, "'used' is a read-only property"),
    ({"protection": {"initial": "guarantee_everything"}}, "guarantee_resumability"),
])
def test_target_options_are_checked(target: dict[str, Any], message: str) -> None:
    found = problems(HEAD + """\
  - {host: nas, filter: {"tank<": true}, policy: p, replicate_to: [{host: backup, root: pool/r}]}
""".replace("{host: backup, root: pool/r}", "{host: backup, root: pool/r, " +
            ", ".join(f"{k}: {_flow(v)}" for k, v in target.items()) + "}"))
    assert any(message in line for line in found), found


def _flow(value: Any) -> str:
    import json
    return json.dumps(value)


def test_a_conflict_fix_that_destroys_the_replica_releases_our_holds_first() -> None:
    w = replicated("zrepl_1")
    target = w.ds("backup", "pool/nas/tank")
    target.snapshots[0].holds, target.snapshots[0].userrefs = (LAST, "keep"), 2
    w.ds("nas", "tank").snapshots.clear()  # the source was recreated: no common snapshot
    w.snaps("nas", "tank", [("zrepl_9", 1)])
    (conflict,) = make_plan(config(), w.observed, NOW).conflicts
    assert conflict.code == "no_common_snapshot"
    assert conflict.fix.startswith(f"on backup: `zfs release {LAST} pool/nas/tank@zrepl_1`; `zfs destroy -r")
    assert "keep" not in conflict.fix  # someone else's hold: theirs to release
