#!/usr/bin/env python3
"""Runs INSIDE the OpenZFS guest (standard library only): copied there by bench/peers/guest.py.

One subcommand per benchmark step, so each step is one SSH round trip from the host:

  install-wrapper                 /usr/local/sbin/zfs-logged (+ zfs/zpool shims in /opt/zfswrap/bin)
  prepare TOOL CURSOR_PREFIX      pools src/dst, 100 filesystems x 50 hourly snapshots named the
                                  TOOL's way on a fixed past timeline, replicated to dst/r, saved
  reset                           restore the saved pools, clear caches and the call log
  setup SCENARIO EPOCH [TAG]      reset, new data for (b), the clock; with TAG the newest snapshot of
                                  every replica held with it (our last-received hold's steady state)
  clock EPOCH                     set the guest clock (the fake timeline)
  write-files                     64 KiB of new data in every filesystem (before scenario b)
  snapstate FILE                  write {target fs: [snapshot names]} to FILE
  moved FILE                      bytes of the snapshots that arrived on dst since FILE (zfs send -nP)
  calls                           JSON counts of the logged zfs/zpool invocations
  run TOOL SCENARIO               run a peer's cycle in the guest, print JSON (seconds, calls, rc)
  big-prepare MIB                 pool pair bsrc/bdst, bsrc/big with MIB of incompressible data
  big-reset                       destroy bdst/big (before each send)
  big-local                       time the in-guest floor: zfs send bsrc/big@s | zfs recv bdst/big
  xfer-prepare MIB BW_MIB         pool pair xsrc/xdst: xsrc/comp (lz4, MIB of 3/4 text, 1/4 random)
                                  and xsrc/bw (BW_MIB of random data), both snapshotted @s
  xfer-reset NAME                 destroy xdst/r/xsrc/NAME and xsrc/NAME's bookmarks
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ZFS = "/usr/sbin/zfs"
ZPOOL = "/usr/sbin/zpool"
LOG = Path("/var/tmp/zfs-calls.log")
WRAPPER = Path("/usr/local/sbin/zfs-logged")
SHIM_DIR = Path("/opt/zfswrap/bin")
SAVED = Path("/dev/shm/saved")
POOL_DIR = "/dev/shm"  # RAM-backed: a txg sync on the emulated disk is slow
POOL_SIZE = "256M"
FILESYSTEMS = 100
ROUNDS = 50
# The fixed timeline: round i at LAST - (ROUNDS-1-i) hours; runs happen at LAST + 5 min
# (nothing due) or LAST + 65 min (one new hourly snapshot due), whatever the real date.
LAST = 1763633400  # 2025-11-20 10:10:00 UTC
HOUR = 3600
PARENT = "src/data"
TARGET_ROOT = "dst/r"
PEERS_BIN = "/opt/peers/bin"

WRAPPER_TEXT = """#!/bin/bash
# Log every invocation (time, program, argv) before running the real command.
printf '%s %s %s\\n' "$EPOCHREALTIME" "${ZFS_LOGGED_PROG:-zfs}" "$*" >> /var/tmp/zfs-calls.log
exec "/usr/sbin/${ZFS_LOGGED_PROG:-zfs}" "$@"
"""
SHIM_TEXT = """#!/bin/sh
ZFS_LOGGED_PROG={prog} exec /usr/local/sbin/zfs-logged "$@"
"""


def sh(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kw)  # type: ignore[call-overload]


def stamp(epoch: int, fmt: str) -> str:
    return time.strftime(fmt, time.gmtime(epoch))


def snapshot_name(tool: str, epoch: int) -> str:
    if tool == "zrepl-reconcile":
        return "zrepl_" + stamp(epoch, "%Y%m%d_%H%M%S")
    if tool == "sanoid":
        return "autosnap_" + stamp(epoch, "%Y-%m-%d_%H:%M:%S") + "_hourly"
    if tool == "zfs-autobackup":
        return "bench-" + stamp(epoch, "%Y%m%d%H%M%S")
    if tool == "pyznap":
        return "pyznap_" + stamp(epoch, "%Y-%m-%d_%H:%M:%S") + "_hourly"
    raise SystemExit(f"unknown tool {tool}")


def install_wrapper() -> None:
    WRAPPER.write_text(WRAPPER_TEXT)
    WRAPPER.chmod(0o755)
    SHIM_DIR.mkdir(parents=True, exist_ok=True)
    for prog in ("zfs", "zpool"):
        shim = SHIM_DIR / prog
        shim.write_text(SHIM_TEXT.format(prog=prog))
        shim.chmod(0o755)


def set_clock(epoch: int) -> None:
    sh(["date", "-u", "-s", f"@{epoch}"])


def filesystems() -> list[str]:
    return [f"{PARENT}/fs{n:03d}" for n in range(FILESYSTEMS)]


def recreate_pools(names: tuple[str, ...], directory: str = POOL_DIR, size: str = POOL_SIZE) -> None:
    for pool in names:
        image = f"{directory}/{pool}.img"
        if subprocess.run([ZPOOL, "list", "-H", pool], capture_output=True).returncode == 0:
            sh([ZPOOL, "destroy", "-f", pool])
        Path(image).unlink(missing_ok=True)
        sh(["truncate", "-s", size, image])
        sh([ZPOOL, "create", "-f", "-O", "compression=off", pool, image])


def prepare(tool: str, cursor_prefix: str) -> dict[str, object]:
    started = time.monotonic()
    real_now = int(time.time())
    recreate_pools(("src", "dst"))
    sh([ZFS, "create", PARENT])
    for fs in filesystems():
        sh([ZFS, "create", fs])
    if tool == "zfs-autobackup":
        sh([ZFS, "set", "autobackup:bench=true", PARENT])
    names = []
    for i in range(ROUNDS):
        epoch = LAST - (ROUNDS - 1 - i) * HOUR
        set_clock(epoch)
        name = snapshot_name(tool, epoch)
        names.append(name)
        sh([ZFS, "snapshot", "-r", f"{PARENT}@{name}"])
    sh([ZFS, "create", "-p", f"{TARGET_ROOT}/src"])
    # Only the newest snapshot goes to the target: receiving 5,050 snapshots costs one
    # txg each (over 10 minutes under emulation); the newest is all a common base needs.
    for fs in [PARENT, *filesystems()]:
        send = subprocess.Popen([ZFS, "send", f"{fs}@{names[-1]}"], stdout=subprocess.PIPE)
        subprocess.run([ZFS, "recv", "-u", f"{TARGET_ROOT}/{fs}"], stdin=send.stdout, check=True)
        assert send.stdout is not None
        send.stdout.close()
        if send.wait() != 0:
            raise SystemExit(f"initial send of {fs} failed")
    if tool == "zrepl-reconcile":
        # The steady state of our tool: a cursor bookmark per source filesystem at the
        # newest replicated snapshot (what apply leaves behind after a send).
        for fs in [PARENT, *filesystems()]:
            sh([ZFS, "bookmark", f"{fs}@{names[-1]}", f"{fs}#{cursor_prefix}{names[-1]}"])
    set_clock(real_now + int(time.monotonic() - started))
    save_pools()
    return {"tool": tool, "snapshots_per_fs": ROUNDS, "filesystems": FILESYSTEMS + 1,
            "seconds": round(time.monotonic() - started, 1)}


def hold_newest(tag: str) -> None:
    """Hold every replica's newest snapshot with ``tag``, in one zfs hold."""
    listed = sh([ZFS, "list", "-H", "-p", "-t", "snapshot", "-o", "name", "-s", "createtxg", "-r",
                 TARGET_ROOT]).stdout.splitlines()
    newest = {name.split("@")[0]: name for name in listed}
    sh([ZFS, "hold", tag, *newest.values()])


def save_pools() -> None:
    sh([ZPOOL, "export", "src"])
    sh([ZPOOL, "export", "dst"])
    SAVED.mkdir(exist_ok=True)
    for pool in ("src", "dst"):
        sh(["cp", "--sparse=always", f"{POOL_DIR}/{pool}.img", str(SAVED / f"{pool}.img")])
    import_pools()


def import_pools() -> None:
    for pool in ("src", "dst"):
        sh([ZPOOL, "import", "-d", f"{POOL_DIR}/{pool}.img", pool])


def reset() -> None:
    for pool in ("src", "dst"):
        if subprocess.run([ZPOOL, "list", "-H", pool], capture_output=True).returncode == 0:
            sh([ZPOOL, "export", pool])
    for pool in ("src", "dst"):
        sh(["cp", "--sparse=always", str(SAVED / f"{pool}.img"), f"{POOL_DIR}/{pool}.img"])
    import_pools()
    for cache in ("/var/cache/sanoid/snapshots.txt", "/var/cache/sanoidsnapshots.txt"):
        Path(cache).unlink(missing_ok=True)
    LOG.write_text("")


def write_files() -> None:
    block = os.urandom(64 * 1024)
    for fs in filesystems():
        (Path("/") / fs / "new.bin").write_bytes(block)
    sh(["sync"])


def snapstate() -> dict[str, list[str]]:
    out = sh([ZFS, "list", "-H", "-p", "-t", "snapshot", "-o", "name", "-r", TARGET_ROOT]).stdout
    state: dict[str, list[str]] = {}
    for line in out.splitlines():
        fs, snap = line.split("@", 1)
        state.setdefault(fs, []).append(snap)
    return state


def moved(before_file: str) -> dict[str, int]:
    """Bytes of the streams that brought the new snapshots (estimated with zfs send -nP on
    the source, from the newest snapshot the target had before)."""
    before: dict[str, list[str]] = json.loads(Path(before_file).read_text())
    after = snapstate()
    total = 0
    sends = 0
    for fs, snaps in after.items():
        old = before.get(fs, [])
        new = [s for s in snaps if s not in set(old)]
        if not new:
            continue
        source = fs[len(TARGET_ROOT) + 1:]
        argv = [ZFS, "send", "-nP"]
        if old:
            argv += ["-I", f"@{old[-1]}"]
        argv.append(f"{source}@{new[-1]}")
        out = sh(argv).stdout
        for line in out.splitlines():
            if line.startswith("size"):
                total += int(line.split()[1])
        sends += 1
    return {"bytes": total, "filesystems_updated": sends}


def calls() -> dict[str, object]:
    lines = LOG.read_text().splitlines() if LOG.exists() else []
    counts: dict[str, int] = {}
    zfs_sub: dict[str, int] = {}
    for line in lines:
        parts = line.split(" ", 3)
        if len(parts) < 3:
            continue
        prog = parts[1]
        counts[prog] = counts.get(prog, 0) + 1
        if prog == "zfs":
            sub = parts[2] if len(parts) > 2 else ""
            zfs_sub[sub] = zfs_sub.get(sub, 0) + 1
    return {"zfs": counts.get("zfs", 0), "zpool": counts.get("zpool", 0), "zfs_by_subcommand": zfs_sub}


SANOID_CONF = """[src/data]
\tuse_template = bench
\trecursive = zfs

[template_bench]
\tfrequently = 0
\thourly = {keep}
\tdaily = 0
\tweekly = 0
\tmonthly = 0
\tyearly = 0
\tautosnap = yes
\tautoprune = yes
"""

PYZNAP_CONF = """[src/data]
frequent = 0
hourly = {keep}
daily = 0
weekly = 0
monthly = 0
yearly = 0
snap = yes
clean = yes
dest = {target}
"""


def peer_commands(tool: str, scenario: str) -> list[list[str]]:
    keep = 30 if scenario == "c" else 60
    if tool == "sanoid":
        conf = Path("/etc/sanoid-bench")
        conf.mkdir(exist_ok=True)
        (conf / "sanoid.conf").write_text(SANOID_CONF.format(keep=keep))
        defaults = Path("/usr/share/sanoid/sanoid.defaults.conf")
        if defaults.exists():
            (conf / "sanoid.defaults.conf").write_text(defaults.read_text())
        return [["sanoid", "--cron", f"--configdir={conf}"],
                ["syncoid", "-r", "--no-sync-snap", "--quiet", PARENT, f"{TARGET_ROOT}/{PARENT}"]]
    if tool == "zfs-autobackup":
        return [[f"{PEERS_BIN}/zfs-autobackup", "--no-holds", "--no-progress", f"--keep-source={keep}",
                 "--keep-target=60", "bench", TARGET_ROOT]]
    if tool == "pyznap":
        conf = Path("/etc/pyznap-bench.conf")
        conf.write_text(PYZNAP_CONF.format(keep=keep, target=f"{TARGET_ROOT}/{PARENT}"))
        return [[f"{PEERS_BIN}/pyznap", "--config", str(conf), "snap"],
                [f"{PEERS_BIN}/pyznap", "--config", str(conf), "send"]]
    raise SystemExit(f"unknown peer {tool}")


def run_peer(tool: str, scenario: str) -> dict[str, object]:
    commands = peer_commands(tool, scenario)
    env = dict(os.environ, PATH=f"{SHIM_DIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    LOG.write_text("")
    started = time.monotonic()
    results = []
    for argv in commands:
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        results.append({"argv": argv, "rc": done.returncode, "stderr": done.stderr[-600:],
                        "stdout": done.stdout[-300:]})
    seconds = time.monotonic() - started
    return {"seconds": seconds, "commands": results}


BIG_POOLS = ("bsrc", "bdst")


def big_prepare(mib: int) -> dict[str, object]:
    recreate_pools(BIG_POOLS, "/var/tmp", "1G")
    sh([ZFS, "create", "bsrc/big"])
    with open("/bsrc/big/data.bin", "wb") as out:
        chunk = os.urandom(1 << 20)
        for i in range(mib):
            # Vary each MiB cheaply so nothing deduplicates or compresses.
            out.write(i.to_bytes(8, "little") + chunk[8:])
    sh(["sync"])
    sh([ZFS, "snapshot", "bsrc/big@s"])
    sh([ZFS, "create", "-p", "bdst/r/bsrc"])
    size = sh([ZFS, "send", "-nP", "bsrc/big@s"]).stdout
    total = next(int(line.split()[1]) for line in size.splitlines() if line.startswith("size"))
    return {"bytes": total}


BIG_TARGET = "bdst/r/bsrc/big"


def big_reset() -> None:
    if subprocess.run([ZFS, "list", "-H", BIG_TARGET], capture_output=True).returncode == 0:
        sh([ZFS, "destroy", "-r", BIG_TARGET])
    for line in sh([ZFS, "list", "-H", "-o", "name", "-t", "bookmark", "bsrc/big"]).stdout.split():
        sh([ZFS, "destroy", line])
    LOG.write_text("")


XFER_POOLS = ("xsrc", "xdst")
WORDS = ("zfs", "send", "receive", "snapshot", "bookmark", "pool", "dataset", "stream", "block",
         "compressed", "replica", "cursor", "retention", "grid", "hourly", "daily", "backup", "nas")


def send_size(*argv: str) -> int:
    out = sh([ZFS, "send", "-nP", *argv]).stdout
    return next(int(line.split()[1]) for line in out.splitlines() if line.startswith("size"))


def xfer_prepare(mib: int, bw_mib: int) -> dict[str, object]:
    """Scenario (e): a filesystem of compressible data (lz4: 3/4 text, 1/4 random); (f): one
    of incompressible data for the bandwidth limit."""
    import random

    recreate_pools(XFER_POOLS, "/var/tmp", "1G")
    sh([ZFS, "create", "-o", "compression=lz4", "xsrc/comp"])
    rng = random.Random(17)
    text = " ".join(rng.choice(WORDS) + str(rng.randrange(1000)) for _ in range(200_000)).encode()
    with open("/xsrc/comp/data", "wb") as out:
        for i in range(mib):
            if i % 4 == 3:
                out.write(os.urandom(1 << 20))
            else:
                start = rng.randrange(len(text) - (1 << 20) - 8) if len(text) > (1 << 20) + 8 else 0
                piece = text[start:start + (1 << 20) - 8].ljust((1 << 20) - 8, b".")
                out.write(i.to_bytes(8, "little") + piece)
    sh([ZFS, "create", "xsrc/bw"])
    with open("/xsrc/bw/data", "wb") as out:
        for _ in range(bw_mib):
            out.write(os.urandom(1 << 20))
    sh(["sync"])
    sh([ZFS, "snapshot", "xsrc/comp@s"])
    sh([ZFS, "snapshot", "xsrc/bw@s"])
    sh([ZFS, "create", "-p", "xdst/r/xsrc"])
    ratio = sh([ZFS, "get", "-H", "-o", "value", "compressratio", "xsrc/comp"]).stdout.strip()
    return {"comp_plain_bytes": send_size("xsrc/comp@s"),
            "comp_compressed_bytes": send_size("-c", "xsrc/comp@s"),
            "comp_ratio": ratio, "bw_bytes": send_size("xsrc/bw@s")}


def release_all(dataset: str) -> None:
    """Every user hold on ``dataset``'s snapshots (an apply's protection holds, e.g. the
    last-received one on a replica), so that a reset can destroy them."""
    snapshots = sh([ZFS, "list", "-H", "-o", "name", "-t", "snapshot", "-r", dataset]).stdout.split()
    if not snapshots:
        return
    for line in sh([ZFS, "holds", "-H", *snapshots]).stdout.splitlines():
        snapshot, tag = line.split("\t")[:2]
        sh([ZFS, "release", tag, snapshot])


def xfer_reset(name: str) -> None:
    target = f"xdst/r/xsrc/{name}"
    if subprocess.run([ZFS, "list", "-H", target], capture_output=True).returncode == 0:
        release_all(target)
        sh([ZFS, "destroy", "-r", target])
    release_all(f"xsrc/{name}")
    for line in sh([ZFS, "list", "-H", "-o", "name", "-t", "bookmark", f"xsrc/{name}"]).stdout.split():
        sh([ZFS, "destroy", line])
    LOG.write_text("")


def big_local() -> dict[str, object]:
    big_reset()
    started = time.monotonic()
    send = subprocess.Popen([ZFS, "send", "bsrc/big@s"], stdout=subprocess.PIPE)
    subprocess.run([ZFS, "recv", "-u", BIG_TARGET], stdin=send.stdout, check=True)
    assert send.stdout is not None
    send.stdout.close()
    send.wait()
    return {"seconds": time.monotonic() - started}


def main(argv: list[str]) -> int:
    command, args = argv[1], argv[2:]
    result: object = None
    if command == "install-wrapper":
        install_wrapper()
    elif command == "prepare":
        result = prepare(args[0], args[1])
    elif command == "reset":
        reset()
    elif command == "setup":  # one round trip before a run: reset, data, clock, snapshot state
        reset()
        if len(args) > 2:
            hold_newest(args[2])
        if args[0] == "b":
            write_files()
        set_clock(int(args[1]))
        Path("/var/tmp/before.json").write_text(json.dumps(snapstate()))
        LOG.write_text("")
    elif command == "collect":  # one round trip after a run
        result = {**calls(), **moved("/var/tmp/before.json"),
                  "call_log_head": LOG.read_text().splitlines()[:300],
                  "source_snapshots_after": len(sh([ZFS, "list", "-H", "-t", "snapshot", "-o", "name",
                                                    "-r", PARENT]).stdout.splitlines())}
    elif command == "clock":
        set_clock(int(args[0]))
    elif command == "write-files":
        write_files()
    elif command == "snapstate":
        Path(args[0]).write_text(json.dumps(snapstate()))
    elif command == "moved":
        result = moved(args[0])
    elif command == "calls":
        result = calls()
    elif command == "run":
        result = run_peer(args[0], args[1])
    elif command == "big-prepare":
        result = big_prepare(int(args[0]))
    elif command == "big-reset":
        big_reset()
    elif command == "big-local":
        result = big_local()
    elif command == "xfer-prepare":
        result = xfer_prepare(int(args[0]), int(args[1]))
    elif command == "xfer-reset":
        xfer_reset(args[0])
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
