"""Smoke tests of the harness itself: the guest runs real OpenZFS, reachable over real SSH."""

from __future__ import annotations

import time

import pytest

from e2e.conftest import GuestZfs
from reconciler.testbed.guest import Guest

pytestmark = pytest.mark.realzfs


def test_guest_runs_openzfs_2_1(zfs_guest: Guest, guest_zfs: GuestZfs) -> None:
    version = guest_zfs("version").stdout
    assert "zfs-2.1" in version
    assert "zfs-kmod-2.1" in version


def test_pools_are_fresh_and_listable(pools: tuple[str, ...], guest_zfs: GuestZfs) -> None:
    out = guest_zfs("list", "-H", "-p", "-o", "name,type", "-t", "filesystem").stdout
    names = {line.split("\t")[0] for line in out.splitlines()}
    assert names == {"src", "dst"}


def test_snapshot_send_recv_in_guest(pools: tuple[str, ...], zfs_guest: Guest, guest_zfs: GuestZfs) -> None:
    guest_zfs("create", "-p", "src/smoke/a")
    zfs_guest.sh("dd if=/dev/urandom of=/src/smoke/a/blob bs=64k count=16 status=none")
    guest_zfs("snapshot", "src/smoke/a@one")
    zfs_guest.sh("zfs send src/smoke/a@one | zfs recv -s -u dst/smoke-a")
    zfs_guest.sh("echo more >>/src/smoke/a/blob")
    guest_zfs("snapshot", "src/smoke/a@two")
    zfs_guest.sh("zfs send -I src/smoke/a@one src/smoke/a@two | zfs recv -s -u dst/smoke-a")
    src = guest_zfs("list", "-H", "-p", "-t", "snapshot", "-o", "name,guid", "-r", "src/smoke/a").stdout
    dst = guest_zfs("list", "-H", "-p", "-t", "snapshot", "-o", "name,guid", "-r", "dst/smoke-a").stdout
    src_guids = [line.split("\t")[1] for line in src.splitlines()]
    dst_guids = [line.split("\t")[1] for line in dst.splitlines()]
    assert len(src_guids) == 2
    assert src_guids == dst_guids  # a received snapshot keeps its GUID


def test_reused_ssh_connection_is_fast(zfs_guest: Guest) -> None:
    zfs_guest.ssh(["true"], check=True)
    started = time.monotonic()
    rounds = 5
    for _ in range(rounds):
        zfs_guest.ssh(["true"], check=True)
    per_call = (time.monotonic() - started) / rounds
    print(f"\nssh round trip over the shared connection: {per_call * 1000:.0f} ms")
    assert per_call < 2.0


def test_product_ssh_executor_lists_with_strict_host_key(pools: tuple[str, ...], zfs_guest: Guest) -> None:
    from reconciler.config.models import SshHost
    from reconciler.transport import ssh

    config = SshHost.model_validate(zfs_guest.ssh_host_config())
    executor = ssh.SshExecutor("guest", config)
    try:
        started = time.monotonic()
        result = executor.run(["zfs", "list", "-H", "-o", "name", "src"])
        print(f"\nSshExecutor: connect + zfs list in {time.monotonic() - started:.2f}s")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "src"
    finally:
        executor.close()


def test_product_ssh_executor_refuses_unknown_host_key(zfs_guest: Guest, tmp_path: object) -> None:
    from pathlib import Path

    from reconciler.config.models import SshHost
    from reconciler.errors import TransportError
    from reconciler.transport import ssh

    wrong = Path(str(tmp_path)) / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{zfs_guest.port} ssh-ed25519 "
                     "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    config = SshHost.model_validate({**zfs_guest.ssh_host_config(), "known_hosts": str(wrong)})
    executor = ssh.SshExecutor("guest", config)
    try:
        with pytest.raises(TransportError, match="HOST KEY CHANGED"):
            executor.run(["zfs", "list", "-H", "-o", "name"])
    finally:
        executor.close()
