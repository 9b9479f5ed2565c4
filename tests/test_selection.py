"""zrepl's filter semantics: subtree keys, explicit overrides, most specific path wins."""

from __future__ import annotations

import pytest
from plan_builders import World, config_from

from reconciler.planning.selection import filter_decision, select

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
