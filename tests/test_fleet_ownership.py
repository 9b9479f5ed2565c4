"""``--as H``: a host's own part of a shared configuration, for per-host runs in a fleet.

Ownership (reconciler/planning/selection.py): a source host owns its source datasets and
every pair they send from (the sends, the replica's pruning, cursors, placeholders); a host
owns nothing of what it only receives. The properties over random fleets:

1. Disjoint: two hosts' parts never act on the same (host, dataset), except that both may
   create the same empty placeholder (a parent of replicas of both).
2. A partition: the hosts' parts together are exactly the unrestricted plan's actions.
3. Converged: the parts applied one after the other, each planned before any was applied
   (as concurrent runs plan), leave nothing for the unrestricted plan to do.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plan_builders import NOW, World, config_from, simple_config
from plan_schema import validate_plan

from reconciler.config.models import Config, LocalHost
from reconciler.domain.actions import Action, CreateAction, SendAction
from reconciler.domain.observed import ObservedState
from reconciler.domain.plan import Plan
from reconciler.errors import UsageError
from reconciler.execute.apply import DONE, FAILED, apply_plan
from reconciler.planning.planner import hosts_needed, make_plan
from reconciler.planning.selection import check_selection, select
from reconciler.planning.simulate import copy_state, simulate
from reconciler.render.json import render_json
from reconciler.transport.hosts import executors_for
from reconciler.transport.interface import CommandResult
from reconciler.transport.local import LocalExecutor
from reconciler.transport.ssh import SshExecutor

HOSTS = ("alpha", "beta", "vault")


# ------------------------------------------------------------------ the model, by example


def two_way() -> Config:
    """alpha and beta replicate to each other and, under ONE shared root, to vault."""
    policy = {"snapshots": {"prefix": "zrepl_", "interval": "1h"},
              "keep_source": [{"type": "not_replicated"}, {"type": "last_n", "count": 2}],
              "keep_target": [{"type": "last_n", "count": 3}]}
    return config_from({
        "hosts": {h: {"connection": "local"} for h in HOSTS},
        "policies": {"p": policy},
        "filesystems": [
            {"host": "alpha", "filter": {"tank/a<": True}, "policy": "p",
             "replicate_to": [{"host": "beta", "root": "backup/alpha"},
                              {"host": "vault", "root": "pool/fleet"}]},
            {"host": "beta", "filter": {"tank/b<": True}, "policy": "p",
             "replicate_to": [{"host": "alpha", "root": "backup/beta"},
                              {"host": "vault", "root": "pool/fleet"}]},
        ],
    })


def two_way_world() -> World:
    w = World()
    for host, name in (("alpha", "tank/a"), ("beta", "tank/b")):
        w.fs(host, "tank")
        w.fs(host, name)
        w.fs(host, "backup")
        for i, hours in enumerate((30, 20, 10, 3)):
            w.snap(host, name, f"zrepl_{i}", hours)
    w.fs("vault", "pool")
    return w


def keys(plan: Plan) -> list[tuple[str, str]]:
    """(host, dataset) of every action, and each send's target too."""
    touched = []
    for action in plan.actions:
        touched.append((action.host, action.dataset))
        if isinstance(action, SendAction):
            touched.append((action.target_host, action.target_dataset))
    return touched


def test_a_source_host_owns_its_datasets_and_every_pair_they_send_from() -> None:
    config, w = two_way(), two_way_world()
    part = make_plan(config, w.observed, NOW, as_host="alpha")
    assert {(a.kind, a.host) for a in part.actions} == {
        ("snapshot", "alpha"), ("send", "alpha"), ("create", "beta"), ("create", "vault"),
        ("bookmark", "alpha"), ("destroy", "alpha"),
        # the default protection: step holds on alpha, the last received snapshots held on beta, vault
        ("hold", "alpha"), ("hold_received", "beta"), ("hold_received", "vault"), ("release", "alpha")}
    sends = sorted((a.target_host, a.target_dataset) for a in part.actions if isinstance(a, SendAction))
    assert sends == [("beta", "backup/alpha/tank/a"), ("vault", "pool/fleet/tank/a")]
    # --host alpha is everything that touches alpha: beta's sends into alpha too.
    touching = make_plan(config, w.observed, NOW, hosts=["alpha"])
    assert ("alpha", "backup/beta/tank/b") in keys(touching)
    assert ("alpha", "backup/beta/tank/b") not in keys(part)
    assert part.selection.as_host == "alpha" and part.selection.hosts == ()


def test_a_host_that_only_receives_owns_nothing_and_the_plan_says_whose_runs_do() -> None:
    config = simple_config()
    w = World()
    w.fs("nas", "tank")
    w.snap("nas", "tank", "zrepl_1", 3)
    w.fs("backup", "pool")
    part = make_plan(config, w.observed, NOW, as_host="backup")
    assert part.actions == () and part.filesystems == ()
    assert part.warnings == ("--as backup: backup is the source of no filesystems entry, so its own part is"
                             " empty; the replicas it receives are reconciled by the runs of their source"
                             " host (nas)",)
    assert hosts_needed(config, as_host="backup") == set()
    assert hosts_needed(config, as_host="nas") == {"nas", "backup"}
    assert hosts_needed(config, hosts=["backup"]) == {"nas", "backup"}
    whole = make_plan(config, w.observed, NOW)
    assert make_plan(config, w.observed, NOW, as_host="nas").actions == whole.actions
    assert [s.name for s in select(config, w.observed, as_host="nas").selected] == ["tank"]


def test_as_is_one_known_host_and_not_combined_with_host() -> None:
    config = simple_config()
    with pytest.raises(UsageError, match="--as elsewhere: not a host of the configuration"):
        check_selection(config, None, None, "elsewhere")
    with pytest.raises(UsageError, match="--as nas and --host exclude each other"):
        check_selection(config, ["backup"], None, "nas")
    with pytest.raises(UsageError, match=r"--filesystem pool/x: not managed .* in the part host backup owns"):
        check_selection(config, None, ["pool/x"], "backup")
    check_selection(config, None, ["pool/nas/tank/a"], "nas")  # nas's replica: nas's part


def test_the_plan_json_records_as_and_only_when_given() -> None:
    config, w = two_way(), two_way_world()
    part = json.loads(render_json(make_plan(config, w.observed, NOW, as_host="beta")))
    validate_plan(part)
    assert part["selection"] == {"hosts": [], "filesystems": [], "as": "beta"}
    whole = json.loads(render_json(make_plan(config, w.observed, NOW)))
    assert whole["selection"] == {"hosts": [], "filesystems": []}
    assert Plan.from_json(part).selection.as_host == "beta"


def test_the_host_a_run_is_as_runs_its_zfs_here() -> None:
    config = config_from({
        "hosts": {"nas": {"connection": "ssh", "address": "nas.example.org",
                          "zfs_command": ["sudo", "-n", "zfs"]},
                  "backup": {"connection": "ssh", "address": "backup.example.org"}},
        "policies": {"p": {"snapshots": {"prefix": "zrepl_", "interval": "1h"}}},
        "filesystems": [{"host": "nas", "filter": {"tank<": True}, "policy": "p",
                         "replicate_to": [{"host": "backup", "root": "pool/nas"}]}],
    })
    executors = executors_for(config, here="nas")
    try:
        assert isinstance(executors["nas"], LocalExecutor)
        assert executors["nas"].zfs_command == ("sudo", "-n", "zfs")
        assert isinstance(executors["backup"], SshExecutor)
        assert isinstance(executors_for(config)["nas"], SshExecutor)
    finally:
        for executor in executors.values():
            executor.close()
    assert not isinstance(config.hosts["nas"], LocalHost)  # the configuration is as written


# ------------------------------------------------------------------ the properties over random fleets

SOURCES = {"alpha": ["tank/a", "tank/a/x", "tank/a/x/y", "tank/c"], "beta": ["tank/b", "tank/b/z", "data"]}
STATES = ["missing", "missing", "prefix", "prefix", "diverged", "empty", "held", "unreachable"]


@dataclass
class Fleet:
    config: Config
    observed: ObservedState


@st.composite
def fleets(draw: st.DrawFn) -> Fleet:
    w = World()
    entries: list[dict[str, Any]] = []
    shared = draw(st.booleans())  # alpha and beta under one root on vault: shared placeholders
    vault_down = draw(st.integers(0, 7)) == 0
    for host in ("alpha", "beta"):
        other = "beta" if host == "alpha" else "alpha"
        w.fs(host, "backup")
        names = draw(st.lists(st.sampled_from(SOURCES[host]), min_size=1, max_size=3, unique=True))
        for name in sorted(names):
            parts = name.split("/")
            for depth in range(1, len(parts) + 1):
                parent = "/".join(parts[:depth])
                if w.observed.dataset(host, parent) is None:
                    w.fs(host, parent)
            age = 100.0
            for i in range(draw(st.integers(0, 4))):
                age -= draw(st.sampled_from([1, 3, 25]))
                held = ("k",) if draw(st.integers(0, 9)) == 0 else ()
                w.snap(host, name, f"zrepl_{i}", max(age, 0.1), holds=held)
        targets = []
        if draw(st.booleans()):
            targets.append({"host": other, "root": f"backup/{host}"})
        if draw(st.integers(0, 3)):
            targets.append({"host": "vault", "root": "pool/fleet" if shared else f"pool/{host}"})
        entries.append({"host": host, "filter": {n: True for n in names},
                        "policy": draw(st.sampled_from("pq")), "replicate_to": targets})
    w.fs("vault", "pool")
    if shared and draw(st.booleans()):
        w.fs("vault", "pool/fleet")
    for entry in entries:
        for target in entry["replicate_to"]:
            for name in sorted(entry["filter"]):
                _target_state(draw, w, entry["host"], name, target["host"], f"{target['root']}/{name}")
    if vault_down:
        w.unavailable("vault")
    config = config_from({
        "hosts": {h: {"connection": "local"} for h in HOSTS},
        "policies": {
            "p": {"snapshots": {"prefix": "zrepl_", "interval": "1h",
                                "hooks": [{"pre": ["/usr/local/sbin/db-freeze"],
                                           "post": ["/usr/local/sbin/db-thaw"]}]},
                  "keep_source": [{"type": "not_replicated"}, {"type": "last_n", "count": 2}],
                  "keep_target": [{"type": "last_n", "count": 2}]},
            "q": {"snapshots": {"prefix": "zrepl_", "interval": "1d"},
                  "keep_source": [{"type": "last_n", "count": 1}], "keep_target": []}},
        "filesystems": entries,
    })
    return Fleet(config, w.observed)


def _target_state(draw: st.DrawFn, w: World, host: str, source: str, target_host: str, target: str) -> None:
    state = draw(st.sampled_from(STATES))
    snaps = w.ds(host, source).snapshots
    if state in ("missing", "unreachable") or (not snaps and state != "empty"):
        return
    parts = target.split("/")
    for depth in range(2, len(parts)):
        parent = "/".join(parts[:depth])
        if w.observed.dataset(target_host, parent) is None:
            w.fs(target_host, parent)
    if state == "empty":
        w.fs(target_host, target)
        return
    upto = draw(st.integers(1, len(snaps)))
    w.replicate(host, source, target_host, target, [s.name for s in snaps[:upto]])
    if state == "diverged":
        w.snap(target_host, target, "local_change", 0.2)
    elif state == "held":
        victim = w.ds(target_host, target).snapshots[0]
        victim.userrefs, victim.holds = 1, ("pin",)


def acted_on(action: Action) -> list[tuple[str, str]]:
    if isinstance(action, SendAction):
        return [(action.host, action.dataset), (action.target_host, action.target_dataset)]
    return [(action.host, action.dataset)]


def parts_of(fleet: Fleet) -> dict[str, Plan]:
    return {host: make_plan(fleet.config, fleet.observed, NOW, as_host=host) for host in HOSTS}


FLEET_SETTINGS = settings(max_examples=75, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FLEET_SETTINGS
@given(fleets())
def test_two_hosts_parts_never_act_on_the_same_dataset(fleet: Fleet) -> None:
    parts = parts_of(fleet)
    owner: dict[tuple[str, str], str] = {}
    for host, plan in parts.items():
        for action in plan.actions:
            for key in acted_on(action):
                first = owner.setdefault(key, host)
                if first == host:
                    continue
                # Only an empty placeholder two source hosts' replicas need may be in both parts.
                assert isinstance(action, CreateAction), (key, first, host, action.describe())
                assert fleet.config.role_of(*key) is None, key


@FLEET_SETTINGS
@given(fleets())
def test_the_hosts_parts_are_exactly_the_whole_plan(fleet: Fleet) -> None:
    whole = make_plan(fleet.config, fleet.observed, NOW)
    parts = parts_of(fleet)
    together = Counter(str(a.to_json()) for plan in parts.values() for a in plan.actions
                       if not isinstance(a, CreateAction))
    assert together == Counter(str(a.to_json()) for a in whole.actions if not isinstance(a, CreateAction))
    creates = {(a.host, a.dataset) for plan in parts.values() for a in plan.actions
               if isinstance(a, CreateAction)}
    assert creates == {(a.host, a.dataset) for a in whole.actions if isinstance(a, CreateAction)}
    assert sorted(repr(c.to_json()) for p in parts.values() for c in p.conflicts) == sorted(
        repr(c.to_json()) for c in whole.conflicts)


@FLEET_SETTINGS
@given(fleets())
def test_the_parts_planned_together_then_applied_in_turn_converge(fleet: Fleet) -> None:
    state = fleet.observed
    for _ in range(8):  # one more round per level of new replicas waiting for a parent
        parts = parts_of(replace(fleet, observed=state))  # every run plans before any applies
        for plan in parts.values():
            state = simulate(state, _without_existing_creates(state, plan))
        warnings = [w for p in parts.values() for f in p.filesystems for w in f.warnings]
        if not any("is not sent yet: " in w for w in warnings):
            break
    again = make_plan(fleet.config, state, NOW)
    assert [a.describe() for a in again.actions] == []


def _without_existing_creates(state: ObservedState, plan: Plan) -> Plan:
    """Apply counts a placeholder another run created meanwhile as done; so does this."""
    current = copy_state(state)
    kept = tuple(a for a in plan.actions
                 if not (isinstance(a, CreateAction) and current.exists(a.host, a.dataset)))
    return Plan(now=plan.now, fingerprint=plan.fingerprint, actions=kept)


# ------------------------------------------------------------------ the one shared action


class Placeholders:
    """An executor on which some datasets already exist (another run created them)."""

    def __init__(self, host: str, existing: set[str]) -> None:
        self.host, self.existing = host, existing
        self.calls: list[list[str]] = []

    def run(self, argv: Any, *, timeout: float | None = None) -> CommandResult:
        self.calls.append(list(argv))
        if argv[1] == "create" and argv[-1] in self.existing:
            return CommandResult(tuple(argv), 1, "", f"cannot create '{argv[-1]}': dataset already exists\n")
        if argv[1] == "create":
            return CommandResult(tuple(argv), 1, "", f"cannot create '{argv[-1]}': permission denied\n")
        return CommandResult(tuple(argv), 0, "", "")

    def close(self) -> None:
        pass


def test_a_placeholder_another_run_created_meanwhile_counts_as_done() -> None:
    plan = Plan(now=NOW, fingerprint="sha256:x",
                actions=(CreateAction("vault", "pool/fleet"), CreateAction("vault", "pool/other")))
    vault = Placeholders("vault", {"pool/fleet"})
    report = apply_plan(plan, two_way(), {"vault": vault})  # type: ignore[dict-item]
    assert [(o.status, o.action.dataset, o.message) for o in report.outcomes] == [
        (DONE, "pool/fleet", "already exists (created meanwhile)"),
        (FAILED, "pool/other", report.outcomes[1].message)]  # any other failure still fails
    assert "permission" in report.outcomes[1].message
