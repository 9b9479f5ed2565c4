"""End to end against real OpenZFS over real SSH: the controller on the host, the pools
in the guest (hosts ``src`` and ``dst`` are two SSH connections to the same guest).

Each test works in its own dataset tree, so the tests of this module are independent;
the guest's clock is set so that snapshots land at known times (``--now`` matches).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.conftest import GuestZfs, iso, reconcile, set_guest_clock, snapshots
from reconciler.testbed.guest import Guest

pytestmark = pytest.mark.realzfs

HOUR = 3600
LATER = HOUR + 300  # a scheduled snapshot is due again (its creation is a few seconds after --now)
T0 = 1_795_500_000 - 1_795_500_000 % HOUR  # 2026-11-24T05:00:00Z, an hour boundary


def stamp(ts: int) -> str:
    return "zrepl_" + iso(ts).replace("-", "").replace(":", "").replace("T", "_").rstrip("Z")


def write_data(guest: Guest, dataset: str, kib: int = 64) -> None:
    target = shlex.quote("/" + dataset) + "/f$(date +%s%N)"
    guest.sh(f"dd if=/dev/urandom of={target} bs=1k count={kib} status=none")


def assert_no_changes(config: Path, now: int) -> None:
    again = reconcile(config, "plan", "--now", iso(now), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes" in again.stdout


def test_full_then_incremental_with_intermediates_then_no_changes(
        pools: tuple[str, ...], zfs_guest: Guest, guest_zfs: GuestZfs,
        config_file: Callable[..., Path]) -> None:
    sources = ["src/rep/a", "src/rep/with space", "src/rep/co:lon.dot-dash_x"]
    for ds in sources:
        guest_zfs("create", "-p", ds)
        write_data(zfs_guest, ds)
    guest_zfs("create", "dst/rep")
    config = config_file(source_filter={"src/rep<": True}, target_root="dst/rep")

    set_guest_clock(zfs_guest, T0)
    first = reconcile(config, "apply", "-y", "--now", iso(T0))
    assert first.returncode == 0, first.stdout + first.stderr
    for ds in ["src/rep", *sources]:
        assert snapshots(zfs_guest, f"dst/rep/{ds}") == snapshots(zfs_guest, ds), ds
        assert list(snapshots(zfs_guest, ds)) == [stamp(T0)]
    assert_no_changes(config, T0)

    # An hour later: new data, and an unmanaged snapshot in between that must arrive too.
    set_guest_clock(zfs_guest, T0 + HOUR // 2)
    for ds in sources:
        write_data(zfs_guest, ds)
    guest_zfs("snapshot", "src/rep/a@manual: v1.2 in-between_x")
    set_guest_clock(zfs_guest, T0 + LATER)
    second = reconcile(config, "apply", "-y", "--now", iso(T0 + LATER))
    assert second.returncode == 0, second.stdout + second.stderr
    manual = "manual: v1.2 in-between_x"
    assert list(snapshots(zfs_guest, "src/rep/a")) == [stamp(T0), manual, stamp(T0 + LATER)]
    for ds in ["src/rep", *sources]:
        assert snapshots(zfs_guest, f"dst/rep/{ds}") == snapshots(zfs_guest, ds), ds
    assert_no_changes(config, T0 + LATER)


def test_grid_retention_on_source_keeps_held_and_unmanaged(
        pools: tuple[str, ...], zfs_guest: Guest, guest_zfs: GuestZfs,
        config_file: Callable[..., Path]) -> None:
    now = T0 + 48 * HOUR
    ds = "src/ret/a"
    guest_zfs("create", "-p", ds)
    # Hourly snapshots at now-1.5h ... now-12.5h, half an hour off every bucket edge.
    times = [now - HOUR - HOUR // 2 - k * HOUR for k in range(12)]
    script = [f"date -u -s @{ts} >/dev/null && zfs snapshot {shlex.quote(f'{ds}@{stamp(ts)}')}"
              for ts in reversed(times)]
    script.append(f"date -u -s @{now - 11 * HOUR} >/dev/null && zfs snapshot {ds}@manual")
    zfs_guest.sh(" && ".join(script))
    held = stamp(now - HOUR // 2 - 10 * HOUR)
    assert held == stamp(times[9])
    guest_zfs("hold", "keep me", f"{ds}@{held}")
    policy = {"snapshots": {"prefix": "zrepl_", "interval": "1h"},
              "keep_source": [{"type": "grid", "grid": "1x1h(keep=all) | 6x1h", "regex": "^zrepl_"}]}
    config = config_file(source_filter={"src/ret<": True}, target_root=None, policies={"p": policy},
                         two_hosts=False)

    set_guest_clock(zfs_guest, now)
    result = reconcile(config, "apply", "-y", "--now", iso(now))
    assert result.returncode == 0, result.stdout + result.stderr

    # A new snapshot is due (the newest is 1.5h old). Bucket 0 (now-1h, now] keeps it; six
    # 1h buckets keep one each (now-1.5h ... now-6.5h); older ones go, except the held
    # and the unmanaged one.
    expected = {stamp(now), *(stamp(ts) for ts in times[:6]), held, "manual"}
    assert set(snapshots(zfs_guest, ds)) == expected
    assert_no_changes(config, now)


def test_resume_interrupted_full_send(pools: tuple[str, ...], zfs_guest: Guest, guest_zfs: GuestZfs,
                                      config_file: Callable[..., Path]) -> None:
    ds, target = "src/rz/a", "dst/rz/src/rz/a"
    now = T0 + 72 * HOUR
    guest_zfs("create", "-p", ds)
    guest_zfs("create", "-p", "dst/rz/src/rz")
    write_data(zfs_guest, ds, kib=3072)
    set_guest_clock(zfs_guest, now)
    snap = stamp(now)
    guest_zfs("snapshot", "-r", f"src/rz@{snap}")
    zfs_guest.sh(f"zfs send {ds}@{snap} | head -c 1000000 | zfs recv -s -u {target} || true")
    token = guest_zfs("get", "-H", "-o", "value", "receive_resume_token", target).stdout.strip()
    assert token not in ("", "-")
    config = config_file(source_filter={"src/rz<": True}, target_root="dst/rz")

    plan = reconcile(config, "plan", "--now", iso(now), "--format", "json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    sends = [a for a in json.loads(plan.stdout)["actions"] if a["kind"] == "send"]
    resumed = [a for a in sends if a["target"]["dataset"] == target]
    assert resumed and resumed[0]["resume_token"] == token

    result = reconcile(config, "apply", "-y", "--now", iso(now))
    assert result.returncode == 0, result.stdout + result.stderr
    assert snapshots(zfs_guest, target) == snapshots(zfs_guest, ds)
    assert guest_zfs("get", "-H", "-o", "value", "receive_resume_token", target).stdout.strip() == "-"
    assert_no_changes(config, now)


def test_diverged_target_is_a_conflict_and_nothing_is_destroyed(
        pools: tuple[str, ...], zfs_guest: Guest, guest_zfs: GuestZfs,
        config_file: Callable[..., Path]) -> None:
    ds, target = "src/dv/a", "dst/dv/src/dv/a"
    now = T0 + 96 * HOUR
    guest_zfs("create", "-p", ds)
    guest_zfs("create", "dst/dv")
    config = config_file(source_filter={"src/dv<": True}, target_root="dst/dv")
    set_guest_clock(zfs_guest, now)
    first = reconcile(config, "apply", "-y", "--now", iso(now))
    assert first.returncode == 0, first.stdout + first.stderr

    # Someone snapshots the replica; OpenZFS itself would accept the next incremental on top.
    set_guest_clock(zfs_guest, now + HOUR // 2)
    guest_zfs("snapshot", f"{target}@local")
    before = snapshots(zfs_guest, target)
    set_guest_clock(zfs_guest, now + LATER)
    plan = reconcile(config, "plan", "--now", iso(now + LATER), "--format", "json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    data = json.loads(plan.stdout)
    assert [c for c in data["conflicts"] if c["dataset"] == target], data["conflicts"]
    assert not [a for a in data["actions"] if a["kind"] == "send" and a["target"]["dataset"] == target]
    assert not [a for a in data["actions"] if a["kind"] == "destroy" and a["dataset"] == target]

    applied = reconcile(config, "apply", "-y", "--now", iso(now + LATER))
    assert applied.returncode == 0, applied.stdout + applied.stderr  # a conflict is not a failure
    assert target in applied.stdout  # ... but it is named
    assert snapshots(zfs_guest, target) == before


def test_stale_saved_plan_is_refused(pools: tuple[str, ...], zfs_guest: Guest, guest_zfs: GuestZfs,
                                     config_file: Callable[..., Path], tmp_path: Path) -> None:
    ds = "src/st/a"
    now = T0 + 120 * HOUR
    guest_zfs("create", "-p", ds)
    guest_zfs("create", "dst/st")
    config = config_file(source_filter={"src/st<": True}, target_root="dst/st")
    set_guest_clock(zfs_guest, now)
    saved = tmp_path / "plan.json"
    plan = reconcile(config, "plan", "--now", iso(now), "--out", str(saved))
    assert plan.returncode == 0, plan.stdout + plan.stderr

    guest_zfs("snapshot", f"{ds}@made meanwhile")
    stale = reconcile(config, "apply", "-y", "--plan", str(saved))
    assert stale.returncode == 1
    assert "stale" in (stale.stdout + stale.stderr).lower()
    assert set(snapshots(zfs_guest, ds)) == {"made meanwhile"}
    assert snapshots(zfs_guest, f"dst/st/{ds}") == {}
