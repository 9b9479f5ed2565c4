"""zrepl's filter semantics: subtree keys, explicit overrides, most specific path wins."""

from __future__ import annotations

import pytest
from plan_builders import World, config_from, simple_config

from reconciler.planning.selection import (
    Restriction,
    describe_managed,
    filter_decision,
    may_select_within,
    select,
    unmanaged_filesystems,
)

FILTER = {"tank<": True, "tank/scratch<": False, "tank/scratch/keep": True, "tank/vm": False,
          "tank/vm<": True, "other": True}


@pytest.mark.parametrize(("dataset", "expected"), [
    ("tank", True),
    ("tank/a", True),
    ("tank/a/b", True),
    ("tankx", False),             # a subtree key matches whole components only
    ("tank/scratch", False),
    ("tank/scratch/x", False),
    ("tank/scratch/keep", True),  # more specific explicit entry wins
    ("tank/scratch/keep/sub", False),  # explicit (non-subtree) entries do not extend below
    ("tank/vm", False),           # same path: the explicit entry overrides the subtree entry
    ("tank/vm/disk0", True),
    ("other", True),
    ("other/child", False),
    ("unrelated", False),
])
def test_filter_decision(dataset: str, expected: bool) -> None:
    assert filter_decision(FILTER, dataset) is expected


def test_select_filesystems_and_volumes_with_restriction() -> None:
    w = World()
    w.fs("nas", "tank")
    w.fs("nas", "tank/a")
    w.fs("nas", "tank/vol", kind="volume")
    w.fs("nas", "tank/scratch")
    cfg = config_from({
        "hosts": {"nas": {"connection": "local"}},
        "policies": {"p": {"snapshots": {"prefix": "z_", "interval": "1h"}}},
        "filesystems": [{"host": "nas", "filter": {"tank<": True, "tank/scratch": False}, "policy": "p"}],
    })
    chosen = [s.name for s in select(cfg, w.observed).selected]
    assert chosen == ["tank", "tank/a", "tank/vol"]
    assert [s.name for s in select(cfg, w.observed, filesystems=["tank/a"]).selected] == ["tank/a"]
    assert select(cfg, w.observed, hosts=["elsewhere"]).selected == []


@pytest.mark.parametrize(("name", "expected"), [
    ("tank", True), ("tank/scratch", True),  # tank/scratch/keep is selected below it
    ("tank/scratch/other", False), ("tank/scratch/keep", True), ("tank/scratch/keep/sub", False),
    ("tank/vm", True), ("tank/vm/disk0", True), ("other", True), ("other/child", False),
    ("", False), ("unrelated", False),
])
def test_may_select_within(name: str, expected: bool) -> None:
    """Could the filter select the name or a dataset below it, whatever datasets exist?"""
    assert may_select_within(FILTER, name) is expected


def test_filesystem_may_name_a_source_or_a_target_dataset() -> None:
    cfg = simple_config(filter={"tank<": True, "tank/tmp": False, "tank/tmp<": False})
    assert unmanaged_filesystems(cfg, None, ["tank/a", "pool/nas/tank/a", "pool/nas", "pool",
                                             "tank/tmp", "pool/nas/tank/tmp/x", "pool/other", "tankx"]) == [
        "tank/tmp", "pool/nas/tank/tmp/x", "pool/other", "tankx"]
    assert unmanaged_filesystems(cfg, ["backup"], ["tank/a"]) == []  # the pair into backup
    assert unmanaged_filesystems(cfg, ["nas"], ["pool/nas/tank/a"]) == []
    assert describe_managed(cfg) == "nas: tank< (except tank/tmp, tank/tmp<) -> backup:pool/nas/..."


def test_restriction_selects_pairs_by_either_end() -> None:
    w = World()
    for name in ("tank", "tank/a"):
        w.fs("nas", name)
    cfg = simple_config(targets=[{"host": "backup", "root": "pool/nas"}, {"host": "off", "root": "vault"}])
    by_host = select(cfg, w.observed, hosts=["backup"]).selected
    assert [(s.name, s.source_side, [t.host for t in s.targets]) for s in by_host] == [
        ("tank", False, ["backup"]), ("tank/a", False, ["backup"])]
    by_target = select(cfg, w.observed, filesystems=["vault/tank/a"]).selected
    assert [(s.name, s.source_side, [t.host for t in s.targets]) for s in by_target] == [
        ("tank/a", False, ["off"])]
    whole = select(cfg, w.observed, hosts=["nas"], filesystems=["tank/a"]).selected
    assert [(s.name, s.source_side, len(s.targets)) for s in whole] == [("tank/a", True, 2)]
    assert Restriction.of(["off"], None).hosts_needed(cfg) == {"nas", "off"}
    assert Restriction.of(None, ["pool/nas/tank"]).hosts_needed(cfg) == {"nas", "backup"}
