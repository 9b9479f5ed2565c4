"""Shared fixtures: the stand-in zfs (tests/standin) and a real loopback sshd (fixtures_sshd)."""

from __future__ import annotations

import compileall
from collections.abc import Callable
from pathlib import Path

import pytest
from fixtures_sshd import pytest_collection_modifyitems as mark_sshd_items
from fixtures_sshd import sshd  # noqa: F401  (fixture)
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


@pytest.fixture(autouse=True)
def _controller_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests run as root on some machines and not on others: a local host's zfs counts
    as not root (one command per action, no channel program) unless a test says otherwise
    (``monkeypatch.setattr(reconciler.transport.local, "controller_is_root", lambda: True)``)."""
    import reconciler.transport.local

    monkeypatch.setattr(reconciler.transport.local, "controller_is_root", lambda: False)


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


def pytest_configure(config: pytest.Config) -> None:
    """Bytecode for the product and the stand-in, once, before any worker starts: the tests
    start thousands of stand-in ``zfs`` and hundreds of CLI processes, and where
    PYTHONDONTWRITEBYTECODE is set (or on a clean clone) each would compile its modules
    from source again (the stand-in: about 40% of a call)."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller did it
        return
    here = Path(__file__).resolve().parent
    for directory in (here.parent / "reconciler", here / "standin"):
        compileall.compile_dir(str(directory), quiet=2)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``soak`` tests run only when ``-m`` names them: the fast suite's ``-m "not realzfs
    and not fleet"`` stays fast without having to exclude them. (Also marks the tests that
    use the sshd fixture.)"""
    mark_sshd_items(items)
    if "soak" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="soak test: run with -m soak (tests/run does)")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip)
