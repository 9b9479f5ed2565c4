"""Fixtures for the realzfs suite: one QEMU guest per session, fresh pools per module.

``zfs_guest`` boots the cached OpenZFS guest once (building the image first if its
recipe changed; that needs root). The suite is skipped, with one line saying why, only
when QEMU cannot run here at all; ZREPL_RECONCILE_REQUIRE_REALZFS=1 (set by CI wherever
QEMU runs) turns that skip into a failure. A guest that cannot be built or booted is
always an error, never a skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import pytest
from ruamel.yaml import YAML

from reconciler.testbed.guest import (
    Guest,
    GuestError,
    QemuUnavailable,
    boot,
    ensure_image,
    qemu_unavailable_reason,
    recreate_pool,
)

REQUIRE_ENV = "ZREPL_RECONCILE_REQUIRE_REALZFS"
POOLS = ("src", "dst")

GuestZfs = Callable[..., subprocess.CompletedProcess[str]]


def qemu_cannot_run() -> str | None:
    """Why the real suite cannot run on this machine at all, or None when it can.

    Only QEMU itself counts: a missing image that cannot be built (no root, no
    debootstrap) is an error of the guest fixture, not a reason to skip."""
    return qemu_unavailable_reason()


def skip_or_fail(reason: str) -> NoReturn:
    message = f"REALZFS SUITE NOT RUN: {reason}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(message)


_cannot_run: list[str | None] = []


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip realzfs tests from this hook rather than from the fixture: pytest then reports
    the skip at one location, folded into ONE summary line however many tests there are."""
    if item.get_closest_marker("realzfs") is None:
        return
    if not _cannot_run:
        _cannot_run.append(qemu_cannot_run())
    if _cannot_run[0] is not None:
        skip_or_fail(_cannot_run[0])


@pytest.fixture(scope="session")
def zfs_guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    reason = qemu_cannot_run()
    if reason is not None:
        skip_or_fail(reason)
    try:
        image = ensure_image()
        guest = boot("zfs", tmp_path_factory.mktemp("guest"), image=image)
    except QemuUnavailable as exc:
        skip_or_fail(str(exc))
    except GuestError as exc:
        pytest.fail(f"the OpenZFS guest did not come up: {exc}", pytrace=False)
    print(f"\nOpenZFS guest up in {guest.boot_seconds:.1f}s on {guest.address}:{guest.port}")
    try:
        yield guest
    finally:
        guest.stop()


@pytest.fixture(scope="module")
def pools(zfs_guest: Guest) -> tuple[str, ...]:
    """The pools ``src`` and ``dst``, empty at the start of every test module."""
    for pool in POOLS:
        recreate_pool(zfs_guest, pool)
    return POOLS


@pytest.fixture
def guest_zfs(zfs_guest: Guest) -> GuestZfs:
    """``guest_zfs("list", "-H", "src")``: run zfs in the guest; raises on failure unless check=False."""

    def run(*args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return zfs_guest.ssh(["zfs", *args], check=check, timeout=timeout)

    return run


# ---------------------------------------------------------------------- configs

DEFAULT_POLICY: dict[str, Any] = {
    "snapshots": {"prefix": "zrepl_", "interval": "1h"},
    "keep_source": [{"type": "grid", "grid": "1x1h(keep=all) | 24x1h | 14x1d", "regex": "^zrepl_"}],
    "keep_target": [{"type": "grid", "grid": "1x1h(keep=all) | 24x1h | 30x1d", "regex": "^zrepl_"}],
}


def guest_hosts(guest: Guest, names: tuple[str, ...] = ("src", "dst")) -> dict[str, Any]:
    """``hosts:`` entries that all reach the one guest (over separate SSH connections)."""
    return {name: guest.ssh_host_config() for name in names}


def build_config(guest: Guest, *, filesystems: list[dict[str, Any]] | None = None,
                 policies: dict[str, Any] | None = None, hosts: dict[str, Any] | None = None,
                 source_filter: dict[str, bool] | None = None, target_root: str | None = "dst/backup",
                 two_hosts: bool = True) -> dict[str, Any]:
    """A config addressing the guest as host ``src`` (and ``dst`` when two_hosts) with
    one policy ``p``; pass ``filesystems``/``policies``/``hosts`` to override parts."""
    host_names = ("src", "dst") if two_hosts else ("src",)
    target_host = "dst" if two_hosts else "src"
    if filesystems is None:
        entry: dict[str, Any] = {"host": "src", "filter": source_filter or {"src/data<": True}, "policy": "p"}
        if target_root is not None:
            entry["replicate_to"] = [{"host": target_host, "root": target_root}]
        filesystems = [entry]
    return {
        "hosts": hosts if hosts is not None else guest_hosts(guest, host_names),
        "policies": policies if policies is not None else {"p": DEFAULT_POLICY},
        "filesystems": filesystems,
    }


def write_config(path: Path, config: dict[str, Any]) -> Path:
    yaml = YAML()
    yaml.default_flow_style = False
    with path.open("w") as out:
        yaml.dump(config, out)
    return path


@pytest.fixture
def config_file(zfs_guest: Guest, tmp_path: Path) -> Callable[..., Path]:
    """``config_file(**build_config kwargs)`` writes ``tmp_path/zrepl-reconcile.yml`` and returns it."""

    def make(name: str = "zrepl-reconcile.yml", **kwargs: Any) -> Path:
        return write_config(tmp_path / name, build_config(zfs_guest, **kwargs))

    return make


# ---------------------------------------------------------------------- running the product

def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_guest_clock(guest: Guest, ts: int) -> None:
    """ZFS stamps a snapshot's creation with the guest's clock: tests set it to place
    snapshots in time and run the product with --now at the same instant."""
    guest.ssh(["date", "-u", "-s", f"@{ts}"], check=True)


def reconcile(config: Path, *args: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
    """Run the zrepl-reconcile CLI of the working tree, plain text (no colour)."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"}
    command = [sys.executable, "-m", "reconciler.cli", *args[:1], "-c", str(config), *args[1:]]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def snapshots(guest: Guest, dataset: str) -> dict[str, str]:
    """Snapshot name -> GUID of ``dataset`` (in createtxg order); empty when it does not exist."""
    out = guest.ssh(["zfs", "list", "-H", "-p", "-t", "snapshot", "-o", "name,guid", "-s", "createtxg",
                     "-d", "1", dataset])
    if out.returncode != 0:
        return {}
    result: dict[str, str] = {}
    for line in out.stdout.splitlines():
        name, guid = line.split("\t")
        result[name.split("@", 1)[1]] = guid
    return result
