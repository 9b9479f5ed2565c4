"""`zrepl-reconcile demo` against real OpenZFS: plan -> apply -> plan says No changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.demo import run_demo
from reconciler.testbed.guest import Guest

pytestmark = pytest.mark.realzfs


def test_demo_converges_on_real_openzfs(zfs_guest: Guest, tmp_path: Path,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    assert run_demo(tmp_path, guest=zfs_guest, say=lambda _: None) == 0
    out = capfd.readouterr().out  # each step runs as its own process, writing to this fd
    assert "Plan: 4 snapshots to create, 4 sends" in out
    # 4 snapshots, 4 sends, 1 placeholder, 4 cursor bookmarks, and the default protection's
    # holds (guarantee_resumability): 4 step holds and their 4 releases, 4 received holds.
    assert "Apply: 25 done, 0 failed, 0 skipped." in out
    assert out.rstrip().endswith("Demo finished: the second plan is empty.")
    assert "No changes." in out
    # The unmanaged snapshot survives and is explained as such.
    assert "manual-before-upgrade" in out and "unmanaged" in out
