"""Real OpenZFS: replicas that stay safe (issue 13).

Receive properties (readonly=on and canmount=noauto by default, send -p with its excludes,
a volume), encryption (an encrypted source is refused without raw; raw replicas stay
locked, with an unencrypted placeholder below one; raw: false replicates decrypted with a
warning), holds (zrepl's protection levels: the last received snapshot held, a foreign
destroy of it refused, the hold moved; stale holds of ours released, foreign ones kept),
strip, and real faults: the target pool filling up in the middle of a full and of an
incremental receive, and the SSH link cut mid-send.
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

from e2e.conftest import GuestZfs
from e2e.scenario_helpers import (
    KEEP_ALL,
    advance_clock,
    apply,
    assert_applied,
    assert_no_changes,
    bookmarks,
    cli_argv,
    exists,
    guest_now,
    install_wrapper,
    plan,
    policy,
    prop,
    snapshots,
    write_random,
)
from reconciler.planning.naming import last_received_tag, step_hold_tag

pytestmark = pytest.mark.realzfs

ConfigFile = Callable[..., Path]
HOUR = 3600
KEEP = {"p": policy(keep_source=KEEP_ALL, keep_target=KEEP_ALL)}
PASSPHRASE = "correct horse battery\n"


def replicate(filter_: dict[str, bool], root: str, **target: Any) -> list[dict[str, Any]]:
    return [{"host": "src", "filter": filter_, "policy": "p",
             "replicate_to": [{"host": "dst", "root": root, **target}]}]


def holds(guest_zfs: GuestZfs, snapshot: str) -> list[str]:
    out = guest_zfs("holds", "-H", snapshot).stdout
    return sorted(line.split("\t")[1] for line in out.splitlines() if line)


def newest(guest_zfs: GuestZfs, dataset: str) -> str:
    return list(snapshots(guest_zfs, dataset))[-1]


def test_what_openzfs_does_behind_the_safe_defaults(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs) -> None:
    """The measurements behind README "What protects your replicas", with plain zfs commands
    (not the tool): a mounted writable replica is modified by reading it and then refuses the
    next incremental; readonly=on keeps it unmodified and receiving; -o canmount on a volume
    and -o/-x encryption on a raw stream are refused; below a locked raw replica only an
    unencrypted dataset can be created."""
    guest_zfs("create", "src/m")
    write_random(zfs_guest, "/src/m/a", 64)
    zfs_guest.sh("zfs snapshot src/m@a && zfs send src/m@a | zfs recv dst/m")  # mounted, writable
    assert prop(guest_zfs, "dst/m", "mounted") == "yes" and prop(guest_zfs, "dst/m", "readonly") == "off"
    zfs_guest.sh("ls -la /dst/m >/dev/null && cat /dst/m/a >/dev/null && sync && zpool sync dst")
    assert int(prop(guest_zfs, "dst/m", "written")) > 0  # atime updates: reading wrote
    write_random(zfs_guest, "/src/m/b", 64)
    guest_zfs("snapshot", "src/m@b")
    refused = zfs_guest.sh("zfs send -i @a src/m@b | zfs recv dst/m", check=False)
    assert refused.returncode != 0 and "has been modified" in refused.stderr, refused.stderr

    guest_zfs("rollback", "dst/m@a")
    guest_zfs("set", "readonly=on", "dst/m")
    zfs_guest.sh("ls -la /dst/m >/dev/null && cat /dst/m/a >/dev/null && sync && zpool sync dst")
    assert prop(guest_zfs, "dst/m", "written") == "0"
    assert zfs_guest.ssh(["touch", "/dst/m/x"]).returncode != 0
    zfs_guest.sh("zfs send -i @a src/m@b | zfs recv dst/m")  # readonly=on still receives
    assert list(snapshots(guest_zfs, "dst/m")) == ["a", "b"]

    guest_zfs("create", "-V", "8M", "src/mv")
    guest_zfs("snapshot", "src/mv@a")
    volume = zfs_guest.sh("zfs send src/mv@a | zfs recv -o canmount=noauto dst/mv", check=False)
    assert volume.returncode != 0, volume.stderr
    assert "does not apply to datasets of this type" in volume.stderr, volume.stderr
    zfs_guest.sh("zfs send src/mv@a | zfs recv -o readonly=on dst/mv")
    assert prop(guest_zfs, "dst/mv", "readonly") == "on"

    zfs_guest.ssh(["zfs", "create", "-o", "encryption=on", "-o", "keyformat=passphrase", "src/menc"],
                  input=PASSPHRASE, check=True)
    guest_zfs("snapshot", "src/menc@a")
    for option in ("-o encryption=off", "-x encryption"):
        raw = zfs_guest.sh(f"zfs send -w src/menc@a | zfs recv {option} dst/menc", check=False)
        assert raw.returncode != 0 and "raw streams" in raw.stderr, (option, raw.stderr)
    zfs_guest.sh("zfs send -w src/menc@a | zfs recv -o readonly=on -o canmount=noauto dst/menc")
    assert [prop(guest_zfs, "dst/menc", p) for p in ("encryption", "keystatus", "readonly")] == [
        "aes-256-gcm", "unavailable", "on"]
    inherit = guest_zfs("create", "dst/menc/child", check=False)
    assert inherit.returncode != 0 and "key is not loaded" in inherit.stderr, inherit.stderr
    guest_zfs("create", "-o", "encryption=off", "-o", "canmount=off", "dst/menc/child")
    decrypted = zfs_guest.sh("zfs send src/menc@a | zfs recv dst/mclear && zfs get -H -o value encryption"
                             " dst/mclear").stdout.strip()
    assert decrypted == "off"  # a non-raw send of an encrypted source lands decrypted


def test_replicas_are_readonly_and_noauto_and_still_receive_incrementals(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    """(6) and the defaults: readonly=on, canmount=noauto; send -p with the mountpoint and
    shares excluded (the replica inherits its mountpoint); a volume takes readonly only."""
    guest_zfs("create", "-o", "mountpoint=/srv/props", "src/props")
    guest_zfs("set", "com.example:owner=ops", "src/props")
    guest_zfs("create", "-V", "8M", "src/pvol")
    write_random(zfs_guest, "/srv/props/a", 128)
    config = config_file(policies=KEEP, filesystems=replicate({"src/props": True, "src/pvol": True},
                                                              "dst/props", send_properties=True))
    now = guest_now(zfs_guest)
    first = apply(config, now)
    assert_applied(first)
    lines = {line.split(" to ")[0].split()[-1].split("@")[0]: line for line in first.output.splitlines()
             if line.lstrip().startswith("> full send src/")}
    excludes = "-x mountpoint -x sharenfs -x sharesmb"
    assert f"recv -o readonly=on -o canmount=noauto {excludes};" in lines["src/props"]
    assert "recv -o readonly=on;" in lines["src/pvol"]  # a volume takes no filesystem-only property
    replica, volume = "dst/props/src/props", "dst/props/src/pvol"
    assert [prop(guest_zfs, replica, p) for p in ("readonly", "canmount", "mounted")] == [
        "on", "noauto", "no"]
    assert prop(guest_zfs, replica, "mountpoint") == "/dst/props/src/props"  # not the source's /srv/props
    assert prop(guest_zfs, replica, "com.example:owner") == "ops"  # send -p: the rest travelled
    assert prop(guest_zfs, volume, "readonly") == "on" and prop(guest_zfs, volume, "type") == "volume"

    # canmount=noauto: what boot runs (zfs mount -a) leaves the replica alone; mounted by
    # hand it refuses writes and reading it writes nothing (atime).
    zfs_guest.sh("zfs mount -a")
    assert prop(guest_zfs, replica, "mounted") == "no"
    guest_zfs("mount", replica)
    touched = zfs_guest.ssh(["touch", "/dst/props/src/props/stray"])
    assert touched.returncode != 0 and "Read-only file system" in touched.stderr
    zfs_guest.sh("ls -la /dst/props/src/props >/dev/null && cat /dst/props/src/props/a >/dev/null && sync")
    guest_zfs("unmount", replica)
    assert prop(guest_zfs, replica, "written") == "0"
    assert_no_changes(config, now)

    write_random(zfs_guest, "/srv/props/b", 128)
    zfs_guest.ssh(["dd", "if=/dev/urandom", "of=/dev/zvol/src/pvol", "bs=64k", "count=4", "conv=notrunc",
                   "status=none"], check=True)
    now = advance_clock(zfs_guest, HOUR + 60)
    second = apply(config, now)
    assert_applied(second)
    assert "incremental send src/props" in second.output and "incremental send src/pvol" in second.output
    for source, target in (("src/props", replica), ("src/pvol", volume)):
        assert snapshots(guest_zfs, target) == snapshots(guest_zfs, source)
    assert prop(guest_zfs, replica, "readonly") == "on"
    assert_no_changes(config, now)


def test_encrypted_source_needs_raw_and_raw_replicas_stay_locked(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    """(5): without raw the plan refuses (unencrypted_replica, fix raw: true) and nothing
    lands on the target; raw: the replicas stay encrypted with their keys unloaded, and the
    placeholder below one is unencrypted (zfs refuses an encrypted one there); raw: false
    replicates decrypted, with a warning in every plan."""
    zfs_guest.ssh(["zfs", "create", "-o", "encryption=on", "-o", "keyformat=passphrase", "src/vault"],
                  input=PASSPHRASE, check=True)
    guest_zfs("create", "-p", "src/vault/a/b")
    write_random(zfs_guest, "/src/vault/a/b/f", 128)
    selected = {"src/vault": True, "src/vault/a/b": True}
    unset = config_file("unset.yml", policies=KEEP, filesystems=replicate(selected, "dst/sealed"))
    now = guest_now(zfs_guest)
    saved = Path(str(unset) + ".plan.json")
    plan(unset, now, "--out", str(saved))
    shown = json.loads(saved.read_text())
    assert {c["code"] for c in shown["conflicts"]} == {"unencrypted_replica"}
    assert all("raw: true" in c["fix"] for c in shown["conflicts"])
    assert not [a for a in shown["actions"] if a["kind"] in ("send", "create")]
    refused = apply(unset, now)
    assert "unencrypted_replica" in refused.output
    assert not exists(guest_zfs, "dst/sealed")

    raw = config_file("raw.yml", policies=KEEP, filesystems=replicate(selected, "dst/sealed", raw=True))
    sealed = apply(raw, now)
    assert_applied(sealed)
    # Parents first: the placeholder below the raw replica needs that replica received.
    assert "the placeholder dst/sealed/src/vault/a it needs lies below dst/sealed/src/vault" in sealed.output
    below = apply(raw, now)
    assert_applied(below)
    assert "create placeholder dst/sealed/src/vault/a (canmount=off, encryption=off)" in below.output
    for replica in ("dst/sealed/src/vault", "dst/sealed/src/vault/a/b"):
        assert prop(guest_zfs, replica, "encryption") == "aes-256-gcm"
        assert prop(guest_zfs, replica, "keystatus") == "unavailable"  # the key never left the source
    assert prop(guest_zfs, "dst/sealed/src/vault/a", "encryption") == "off"
    assert_no_changes(raw, now)
    zfs_guest.ssh(["sh", "-c", "echo more >>/src/vault/a/b/f"], check=True)
    now = advance_clock(zfs_guest, HOUR + 60)
    assert_applied(apply(raw, now))
    assert snapshots(guest_zfs, "dst/sealed/src/vault/a/b") == snapshots(guest_zfs, "src/vault/a/b")
    assert_no_changes(raw, now)

    clear = config_file("clear.yml", policies=KEEP,
                        filesystems=replicate({"src/vault": True}, "dst/clear", raw=False))
    decrypted = apply(clear, now)
    assert_applied(decrypted)
    assert "raw: false" in decrypted.output and "stored decrypted" in decrypted.output
    assert prop(guest_zfs, "dst/clear/src/vault", "encryption") == "off"
    again = plan(clear, now)
    assert "No changes" in again.output and "stored decrypted" in again.output  # every run


def test_the_last_received_snapshot_is_held_and_a_foreign_destroy_is_refused(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    """(3) and the hold moving: guarantee_incremental holds the replica's newest snapshot;
    zfs refuses a foreign destroy of it; when the next snapshot arrives the hold moves and
    the old base may be pruned; a foreign hold is never released."""
    guest_zfs("create", "src/held")
    write_random(zfs_guest, "/src/held/a", 64)
    policies = {"p": policy(keep_source=KEEP_ALL, keep_target=[{"type": "last_n", "count": 1}])}
    config = config_file(policies=policies, filesystems=replicate({"src/held": True}, "dst/held"))
    now = guest_now(zfs_guest)
    assert_applied(apply(config, now))
    replica, tag = "dst/held/src/held", last_received_tag("src", "dst", "dst/held")
    base = newest(guest_zfs, replica)
    assert holds(guest_zfs, f"{replica}@{base}") == [tag]
    assert holds(guest_zfs, f"src/held@{base}") == []  # the step holds were released after the send
    refused = guest_zfs("destroy", f"{replica}@{base}", check=False)
    assert refused.returncode != 0 and "dataset is busy" in refused.stderr
    assert base in snapshots(guest_zfs, replica)
    guest_zfs("hold", "keep", f"{replica}@{base}")  # an admin's own hold
    assert_no_changes(config, now)

    write_random(zfs_guest, "/src/held/b", 64)
    now = advance_clock(zfs_guest, HOUR + 60)
    moved = apply(config, now)
    assert_applied(moved)
    assert "hold received" in moved.output and f"release hold {tag}" in moved.output
    following = newest(guest_zfs, replica)
    assert following != base and holds(guest_zfs, f"{replica}@{following}") == [tag]
    assert holds(guest_zfs, f"{replica}@{base}") == ["keep"]  # ours moved, the admin's stays
    assert f"keeps {base}: held (tags keep)" in plan(config, now).output
    guest_zfs("release", "keep", f"{replica}@{base}")
    pruned = apply(config, now)
    assert_applied(pruned)
    assert base not in snapshots(guest_zfs, replica)
    assert_no_changes(config, now)


def test_stale_holds_of_ours_are_released_and_foreign_ones_never(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    """A killed apply can leave step holds; the next plan releases the ones no step needs
    (and ours of a target no longer configured) and never touches a foreign hold."""
    guest_zfs("create", "src/stale")
    config = config_file(policies=KEEP, filesystems=replicate({"src/stale": True}, "dst/stale"))
    now = guest_now(zfs_guest)
    assert_applied(apply(config, now))
    snap = newest(guest_zfs, "src/stale")
    ours, gone = step_hold_tag("dst", "dst/stale"), step_hold_tag("dst", "dst/removed")
    for tag in (ours, gone, "zrr-my-own", "keep"):
        guest_zfs("hold", tag, f"src/stale@{snap}")
    shown = plan(config, now, "--detailed-exitcode")
    assert shown.returncode == 2, shown.output
    assert f"release hold {ours}" in shown.output and f"release hold {gone}" in shown.output
    assert_applied(apply(config, now))
    assert holds(guest_zfs, f"src/stale@{snap}") == ["keep", "zrr-my-own"]
    assert_no_changes(config, now)


def test_a_replica_written_by_hand_is_a_conflict_not_a_rollback(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    """(4): readonly=on refuses a stray write; one made anyway (readonly turned off by hand)
    is a conflict with the rollback that fixes it, and nothing is rolled back implicitly."""
    guest_zfs("create", "src/stray")
    write_random(zfs_guest, "/src/stray/a", 64)
    config = config_file(policies=KEEP, filesystems=replicate({"src/stray": True}, "dst/stray"))
    now = guest_now(zfs_guest)
    assert_applied(apply(config, now))
    replica = "dst/stray/src/stray"
    base = newest(guest_zfs, replica)
    guest_zfs("mount", replica)
    assert zfs_guest.ssh(["sh", "-c", f"echo x >/{replica}/stray"]).returncode != 0  # readonly=on
    guest_zfs("set", "readonly=off", replica)
    zfs_guest.ssh(["sh", "-c", f"echo local change >/{replica}/stray && sync"], check=True)
    guest_zfs("unmount", replica)
    before = snapshots(guest_zfs, replica)

    now = advance_clock(zfs_guest, HOUR + 60)
    shown = plan(config, now)
    assert f"{replica} was modified since its newest snapshot {base}" in shown.output, shown.output
    assert f"zfs rollback {replica}@{base}" in shown.output
    assert_applied(apply(config, now))
    assert snapshots(guest_zfs, replica) == before and prop(guest_zfs, replica, "written") != "0"

    guest_zfs("rollback", f"{replica}@{base}")
    healed = apply(config, now)
    assert_applied(healed)
    assert prop(guest_zfs, replica, "readonly") == "on"  # every receive sets it again
    assert snapshots(guest_zfs, replica) == snapshots(guest_zfs, "src/stray")
    assert_no_changes(config, now)


def test_strip_maps_below_the_prefix(pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs,
                                     config_file: ConfigFile) -> None:
    guest_zfs("create", "-p", "src/strip/x/y")
    config = config_file(policies=KEEP, filesystems=replicate({"src/strip<": True}, "dst/flat", strip="src"))
    now = guest_now(zfs_guest)
    assert_applied(apply(config, now))
    for name in ("strip", "strip/x", "strip/x/y"):
        assert snapshots(guest_zfs, f"dst/flat/{name}") == snapshots(guest_zfs, f"src/{name}")
    assert not exists(guest_zfs, "dst/flat/src")
    assert_no_changes(config, now)


# ---------------------------------------------------------------------- real faults

def fill_up(zfs_guest: Any, guest_zfs: GuestZfs, pool: str) -> None:
    """Reserve all but ~12 MiB of the small pool (the fault: a target pool filling up)."""
    available = int(prop(guest_zfs, pool, "available"))
    guest_zfs("create", "-o", f"refreservation={available - (12 << 20)}", f"{pool}/filler")


def free_space(guest_zfs: GuestZfs, pool: str) -> None:
    guest_zfs("destroy", f"{pool}/filler")


def test_target_pool_full_mid_receive_then_converges(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    """(1): the target pool fills up in the middle of a full and of an incremental receive:
    apply says out of space on that pool, the source keeps what the next send needs (its
    base and the step's snapshots, held), and after space is freed the next apply converges
    (resuming the partial receive by its token)."""
    zfs_guest.sh("zpool destroy tiny 2>/dev/null; rm -f /var/tmp/tiny.img; truncate -s 128M /var/tmp/tiny.img"
                 " && zpool create -O mountpoint=/tiny tiny /var/tmp/tiny.img")
    try:
        guest_zfs("create", "src/big")
        write_random(zfs_guest, "/src/big/a", 24 * 1024)
        policies = {"p": policy(keep_source=[{"type": "last_n", "count": 1}], keep_target=KEEP_ALL)}
        config = config_file(policies=policies, filesystems=replicate({"src/big": True}, "tiny/r"))
        fill_up(zfs_guest, guest_zfs, "tiny")
        now = guest_now(zfs_guest)
        full = apply(config, now)
        assert full.returncode == 1, full.output
        assert "out of space" in full.output and "pool tiny" in full.output, full.output
        (step,) = snapshots(guest_zfs, "src/big")  # prune wins, but the step's snapshot stays
        assert holds(guest_zfs, f"src/big@{step}") == [step_hold_tag("dst", "tiny/r")]
        free_space(guest_zfs, "tiny")
        assert_applied(apply(config, now))
        assert snapshots(guest_zfs, "tiny/r/src/big") == snapshots(guest_zfs, "src/big")
        assert_no_changes(config, now)

        write_random(zfs_guest, "/src/big/b", 24 * 1024)
        fill_up(zfs_guest, guest_zfs, "tiny")
        now = advance_clock(zfs_guest, HOUR + 60)
        incremental = apply(config, now)
        assert incremental.returncode == 1, incremental.output
        assert "out of space" in incremental.output and "pool tiny" in incremental.output
        assert step in snapshots(guest_zfs, "src/big")  # the base of the next send is not pruned
        free_space(guest_zfs, "tiny")
        healed = apply(config, now)
        assert_applied(healed)
        assert list(snapshots(guest_zfs, "tiny/r/src/big"))[-1] == list(snapshots(guest_zfs, "src/big"))[-1]
        assert_no_changes(config, now)
    finally:
        zfs_guest.sh("zpool destroy tiny; rm -f /var/tmp/tiny.img", check=False)


def ssh_clients_of(pid: int) -> list[int]:
    """The system ssh clients below process ``pid`` (the bulk data path of a send)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        is_ssh = bool(cmdline) and os.path.basename(cmdline[0]) == b"ssh"
        if ppid == pid and is_ssh and b"recv" in b" ".join(cmdline):
            found.append(int(entry.name))
    return found


# A receive that reads its stream at about 1 MiB/s and records how much it read, so the
# test cuts the link once data is flowing (not after a guessed time).
PROGRESS = "/run/zrr-link-progress"
LINK_WRAPPER = f"""#!/bin/sh
# test wrapper for zrepl-reconcile e2e: a slow receive that counts what it read
if [ "$1" = recv ] || [ "$1" = receive ]; then
  python3 -c 'import sys, time
r, w, n = sys.stdin.buffer, sys.stdout.buffer, 0
while True:
    b = r.read(131072)
    if not b:
        break
    w.write(b); w.flush(); n += len(b)
    open("{PROGRESS}", "w").write(str(n)); time.sleep(0.125)' | zfs "$@"
  exit $?
fi
exec zfs "$@"
"""


def received_bytes(zfs_guest: Any) -> int:
    out = zfs_guest.ssh(["cat", PROGRESS]).stdout.strip()
    return int(out) if out.isdigit() else 0


def test_link_cut_mid_send_is_resumed_by_token(
        pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs, config_file: ConfigFile) -> None:
    """(2): the receiving side's ssh client is killed mid-send (the link drops): apply fails,
    the receive is resumable, the step's snapshot stays held on the source, and the next
    apply resumes by token and releases it."""
    guest_zfs("create", "src/link")
    write_random(zfs_guest, "/src/link/a", 16 * 1024)  # above the small-send size: the ssh client path
    zfs_guest.ssh(["rm", "-f", PROGRESS], check=True)
    slow = install_wrapper(zfs_guest, "zfs-link", LINK_WRAPPER)
    hosts = {"src": zfs_guest.ssh_host_config(), "dst": zfs_guest.ssh_host_config(zfs_command=[slow])}
    slow_config = config_file("slow.yml", policies=KEEP, hosts=hosts,
                              filesystems=replicate({"src/link": True}, "dst/link"))
    config = config_file("plain.yml", policies=KEEP, filesystems=replicate({"src/link": True}, "dst/link"))
    now = guest_now(zfs_guest)
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "400"}
    proc = subprocess.Popen(cli_argv("apply", "-y", "-c", str(slow_config), "--now", now), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    clients: list[int] = []
    while time.monotonic() < deadline and not clients:
        time.sleep(0.5)
        clients = ssh_clients_of(proc.pid)
    assert clients, "no receiving ssh client appeared"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and received_bytes(zfs_guest) < (3 << 20):
        time.sleep(0.5)  # until some MiB arrived: a receive with data is resumable
    assert received_bytes(zfs_guest) >= (3 << 20), "the receive did not get going"
    for pid in clients:
        os.kill(pid, signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, output
    replica = "dst/link/src/link"
    token = ""
    for _ in range(60):  # the receive saves its state once its (cut) stream ends
        listed = guest_zfs("get", "-H", "-p", "-o", "value", "receive_resume_token", replica, check=False)
        token = listed.stdout.strip()
        if listed.returncode == 0 and token not in ("", "-"):
            break
        time.sleep(1)
    assert token not in ("", "-"), output
    (snap,) = snapshots(guest_zfs, "src/link")
    assert holds(guest_zfs, f"src/link@{snap}") == [step_hold_tag("dst", "dst/link")]

    resumed = apply(config, now)
    assert_applied(resumed)
    assert "resume send" in resumed.output, resumed.output
    assert prop(guest_zfs, replica, "receive_resume_token") == "-"
    assert snapshots(guest_zfs, replica) == snapshots(guest_zfs, "src/link")
    assert holds(guest_zfs, f"src/link@{snap}") == []
    assert bookmarks(guest_zfs, "src/link")
    assert_no_changes(config, now)
