"""Shared fixtures: the stand-in zfs (tests/standin) and a real loopback sshd (fixtures_sshd)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fixtures_sshd import pytest_collection_modifyitems, sshd  # noqa: F401  (fixture and hook)
from standin.state import StandinState

NOW = 1_764_000_000  # 2025-11-24T16:00:00Z: a fixed clock for reproducible stand-in facts


@pytest.fixture(autouse=True, scope="session")
def _private_lock_directory(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Apply locks of the tests (and of the CLI processes they start) in a directory of
    their own, not in the machine's /run/lock."""
    import os

    os.environ["ZREPL_RECONCILE_LOCK_DIR"] = str(tmp_path_factory.mktemp("locks"))


@pytest.fixture(autouse=True)
def _private_state_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The record of every apply (state_dir) of each test, and of the CLI processes it
    starts, in a directory of its own: not in /var/lib/zrepl-reconcile (the tests run as
    root), and never shared between tests."""
    directory = tmp_path / "state"
    monkeypatch.setenv("ZREPL_RECONCILE_STATE_DIR", str(directory))
    return directory


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., StandinState]:
    """Factory for stand-in hosts: ``st = standin("nas")`` gives a StandinState saved at
    ``tmp_path/standin-nas.json``; use ``st.zfs_command`` as the host's zfs_command, add
    datasets with ``st.filesystem``/``st.snapshot``, then ``st.save()``. The stand-in's clock
    (ZFS_STANDIN_NOW) is fixed to NOW."""
    monkeypatch.setenv("ZFS_STANDIN_NOW", str(NOW))

    def make(name: str = "host", seed: int = 1, now: int = NOW) -> StandinState:
        state = StandinState(seed=seed, now=now, path=tmp_path / f"standin-{name}.json")
        state.save()
        return state

    return make
