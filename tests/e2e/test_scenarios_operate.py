"""Operating it on real OpenZFS: `status` after an apply with one target down reports the lag of
each target and exits 2; the metrics file after a `run` parses and has the lag of each target."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from e2e.conftest import DEFAULT_POLICY, GuestZfs, build_config, iso, reconcile, set_guest_clock, write_config
from e2e.test_e2e_basic import HOUR, T0, stamp, write_data
from reconciler.testbed.guest import Guest, free_port

pytestmark = pytest.mark.realzfs


def about(seconds: float, expected: int) -> bool:
    return expected - 60 <= seconds <= expected


def test_status_and_metrics_with_one_target_down(pools: tuple[str, ...], zfs_guest: Guest,
                                                 guest_zfs: GuestZfs, tmp_path: Path) -> None:
    now = T0 + 900 * HOUR
    guest_zfs("create", "-p", "src/op/a")
    write_data(zfs_guest, "src/op/a")
    hosts = {"src": zfs_guest.ssh_host_config(), "dst": zfs_guest.ssh_host_config(),
             "offsite": {**zfs_guest.ssh_host_config(), "port": free_port(), "connect_timeout": 3}}
    config = write_config(tmp_path / "op.yml", build_config(
        zfs_guest, hosts=hosts, policies={"p": DEFAULT_POLICY},
        filesystems=[{"host": "src", "filter": {"src/op/a": True}, "policy": "p",
                      "replicate_to": [{"host": "dst", "root": "dst/op"},
                                       {"host": "offsite", "root": "vault"}]}]))

    set_guest_clock(zfs_guest, now)
    applied = reconcile(config, "apply", "-y", "--now", iso(now))
    print(applied.stdout, applied.stderr)
    assert applied.returncode == 0 and " 0 failed" in applied.stdout  # a target down does not fail it
    assert stamp(now) in guest_zfs("list", "-H", "-t", "snapshot", "-o", "name", "dst/op/src/op/a").stdout

    later = now + 3 * HOUR
    status = reconcile(config, "status", "--now", iso(later), "--max-lag", "2h", "--format", "json")
    print(status.stdout, status.stderr)
    assert status.returncode == 2
    data = json.loads(status.stdout)
    assert data["healthy"] is False
    [fs] = data["filesystems"]
    targets = {t["host"]: t for t in fs["targets"]}
    assert targets["dst"]["newest_replicated"]["name"] == stamp(now)
    # ZFS stamps a snapshot with the guest's clock, a second or two after --now.
    assert about(targets["dst"]["lag_seconds"], 3 * HOUR) and targets["dst"]["waiting"] == 0
    assert targets["dst"]["last_apply"]["result"] == "ok" and targets["dst"]["last_apply"]["bytes"] > 0
    assert targets["offsite"]["reachable"] is False and targets["offsite"]["newest_replicated"] is None
    assert about(targets["offsite"]["lag_seconds"], 3 * HOUR) and targets["offsite"]["waiting"] == 1
    assert targets["offsite"]["last_apply"]["result"] == "unavailable"
    problems = "\n".join(data["problems"])
    assert "host offsite is unreachable" in problems
    assert re.search(r"src:src/op/a -> dst:dst/op/src/op/a: lag (3h 00m|2h 59m) exceeds --max-lag 2h 00m",
                     problems)
    text = reconcile(config, "status", "--now", iso(later), "--max-lag", "4h")
    assert text.returncode == 2 and text.stdout.startswith("UNHEALTHY: 1 problem")  # only the host

    # A run cycle three hours later: a new snapshot reaches dst; offsite is still down.
    set_guest_clock(zfs_guest, later)
    metrics = tmp_path / "zrepl.prom"
    ran = reconcile(config, "run", "--once", "--now", iso(later), "--metrics-file", str(metrics))
    print(ran.stdout, ran.stderr)
    assert ran.returncode == 0
    lag = {s.labels["target_host"]: s.value
           for family in text_string_to_metric_families(metrics.read_text())
           if family.name == "zrepl_reconcile_replication_lag_seconds" for s in family.samples}
    assert set(lag) == {"dst", "offsite"}
    assert about(lag["dst"], 0) and about(lag["offsite"], 3 * HOUR)
    up = {s.labels["host"]: s.value for family in text_string_to_metric_families(metrics.read_text())
          if family.name == "zrepl_reconcile_host_up" for s in family.samples}
    assert up == {"src": 1, "dst": 1, "offsite": 0}
