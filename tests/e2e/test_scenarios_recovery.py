"""Real OpenZFS: a transfer interrupted during apply and resumed by token, kill -9 of apply
during an incremental send, a saved plan applied and a stale one refused (issue 7,
scenarios 8, 12, 13; the bookmark base of scenario 7 is in test_e2e_more.py).

Receives are interrupted with test wrappers installed as the target host's zfs_command
(a receive that reads only 2 MiB of its stream; one that reads at ~1 MiB/s so apply can
be killed mid-send); the product itself runs unchanged over real SSH.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import GuestZfs, guest_hosts
from e2e.scenario_helpers import (
    CUT_WRAPPER,
    KEEP_ALL,
    SLOW_WRAPPER,
    advance_clock,
    apply,
    assert_applied,
    assert_no_changes,
    cli,
    cli_argv,
    entry,
    exists,
    guest_now,
    install_wrapper,
    iso,
    plan,
    policy,
    prop,
    snapshots,
    write_random,
)
from reconciler.render.json import plan_digest

pytestmark = pytest.mark.realzfs

ConfigFile = Callable[..., Path]
HOUR = 3600


def hosts_with_target_wrapper(guest: Any, wrapper: str) -> dict[str, Any]:
    hosts = guest_hosts(guest)
    hosts["dst"] = guest.ssh_host_config(zfs_command=[wrapper])
    return hosts


def test_interrupted_send_is_resumed_by_token(pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs,
                                              config_file: ConfigFile) -> None:
    guest_zfs("create", "src/res")
    write_random(zfs_guest, "/src/res/blob", 5 * 1024)
    keep = {"p": policy(keep_source=KEEP_ALL, keep_target=KEEP_ALL)}
    cut = install_wrapper(zfs_guest, "zfs-cut", CUT_WRAPPER)
    cutting = config_file("cut.yml", policies=keep, filesystems=[entry("src/res")],
                          hosts=hosts_with_target_wrapper(zfs_guest, cut))
    config = config_file("plain.yml", policies=keep, filesystems=[entry("src/res")])

    now = guest_now(zfs_guest)
    broken = apply(cutting, now)
    assert broken.returncode == 1, broken.output
    assert "resum" in broken.output, broken.output
    token = prop(guest_zfs, "dst/backup/src/res", "receive_resume_token")
    assert token not in ("", "-")

    shown = plan(config, now, "--detailed-exitcode")
    assert shown.returncode == 2, shown.output
    assert "resume send of src/res@" in shown.output, shown.output
    assert token in plan(config, now, "--format", "json").output

    resumed = apply(config, now)
    assert_applied(resumed)
    assert "resume send" in resumed.output
    assert prop(guest_zfs, "dst/backup/src/res", "receive_resume_token") == "-"
    assert snapshots(guest_zfs, "dst/backup/src/res") == snapshots(guest_zfs, "src/res")
    assert_no_changes(config, now)


def all_snapshots(guest_zfs: GuestZfs, *datasets: str) -> set[tuple[str, str]]:
    return {(dataset, f"{name}:{guid}") for dataset in datasets
            for name, guid in snapshots(guest_zfs, dataset).items()}


def test_kill_9_during_a_send_then_converges_without_losing_snapshots(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    guest_zfs("create", "src/kill")
    write_random(zfs_guest, "/src/kill/a", 512)
    keep = {"p": policy(keep_source=KEEP_ALL, keep_target=KEEP_ALL)}
    config = config_file("plain.yml", policies=keep, filesystems=[entry("src/kill")])
    assert_applied(apply(config, guest_now(zfs_guest)))

    write_random(zfs_guest, "/src/kill/big", 6 * 1024)
    guest_zfs("snapshot", "src/kill@zrepl_by_hand")
    before = all_snapshots(guest_zfs, "src/kill", "dst/backup/src/kill")
    slow = install_wrapper(zfs_guest, "zfs-slow", SLOW_WRAPPER)
    slowed = config_file("slow.yml", policies=keep, filesystems=[entry("src/kill")],
                         hosts=hosts_with_target_wrapper(zfs_guest, slow))

    now = advance_clock(zfs_guest, HOUR + 60)
    proc = subprocess.Popen(cli_argv("apply", "-y", "-c", str(slowed), "--now", now),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "400"})
    seen: list[str] = []
    killed = False
    deadline = time.monotonic() + 240
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if "src:src/kill" in line and " / " in line and "%" in line:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        assert time.monotonic() < deadline, "".join(seen)
    proc.wait(timeout=60)
    assert killed and proc.returncode == -signal.SIGKILL, "".join(seen)

    shown = plan(config, now)
    assert "resume send" in shown.output or "incremental send" in shown.output, shown.output
    result = apply(config, now)
    assert_applied(result)
    assert_no_changes(config, now)
    after = all_snapshots(guest_zfs, "src/kill", "dst/backup/src/kill")
    assert before <= after, before - after
    assert snapshots(guest_zfs, "dst/backup/src/kill") == snapshots(guest_zfs, "src/kill")
    assert prop(guest_zfs, "dst/backup/src/kill", "receive_resume_token") == "-"


def test_saved_plan_applies_and_a_stale_one_is_refused(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile,
        tmp_path: Path) -> None:
    guest_zfs("create", "src/stale")
    config = config_file(policies={"p": policy(keep_source=KEEP_ALL, keep_target=KEEP_ALL)},
                         filesystems=[entry("src/stale")])
    # Not later than this machine's clock: apply refuses a saved plan made for a time still to
    # come, and earlier scenarios have moved the guest's clock forward.
    now = min(guest_now(zfs_guest), iso(int(time.time())))
    saved = tmp_path / "plan.json"
    written = plan(config, now, "--out", str(saved))
    assert written.returncode == 0 and saved.is_file(), written.output

    guest_zfs("snapshot", "src/stale@someone-else")
    refused = cli("apply", "-y", "-c", str(config), "--plan", str(saved))
    assert refused.returncode == 1, refused.output
    assert "stale" in refused.output, refused.output
    assert set(snapshots(guest_zfs, "src/stale")) == {"someone-else"}  # nothing was applied
    assert not exists(guest_zfs, "dst/backup/src/stale")

    # An edited plan, its digest rewritten to match (issue 18): refused, nothing received.
    assert plan(config, now, "--out", str(saved)).returncode == 0
    document = json.loads(saved.read_text())
    send = next(a for a in document["actions"] if a["kind"] == "send")
    send["target"]["dataset"] = "dst/elsewhere"
    document["digest"] = plan_digest(document, document["actions"])
    saved.write_text(json.dumps(document))
    refused = cli("apply", "-y", "-c", str(config), "--plan", str(saved))
    assert refused.returncode == 1, refused.output
    assert "was edited: its actions are not what the planner computes" in refused.output, refused.output
    assert "in the file, not computed now: send src:src/stale -> dst:dst/elsewhere" in refused.output
    assert not exists(guest_zfs, "dst/elsewhere") and not exists(guest_zfs, "dst/backup/src/stale")

    # A fresh saved plan applies.
    plan(config, now, "--out", str(saved))
    assert_applied(cli("apply", "-y", "-c", str(config), "--plan", str(saved)))
    assert_no_changes(config, now)


def test_target_out_of_space_is_reported_then_converges_once_there_is_room(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    guest_zfs("create", "src/full")
    write_random(zfs_guest, "/src/full/blob", 4 * 1024)
    guest_zfs("create", "-o", "quota=1M", "dst/small")
    config = config_file(policies={"p": policy(keep_source=KEEP_ALL, keep_target=KEEP_ALL)},
                         filesystems=[entry("src/full", root="dst/small")])
    now = guest_now(zfs_guest)
    failed = apply(config, now)
    assert failed.returncode == 1, failed.output
    assert "out of space" in failed.output, failed.output
    assert "Failed on dst, src" in failed.output

    guest_zfs("set", "quota=none", "dst/small")
    healed = apply(config, now)
    assert_applied(healed)
    assert snapshots(guest_zfs, "dst/small/src/full") == snapshots(guest_zfs, "src/full")
    assert_no_changes(config, now)
