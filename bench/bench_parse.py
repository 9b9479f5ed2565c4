"""Benchmark: parse a synthetic ``zfs list`` of 10,000 filesystems x 100 snapshots.

Compares the full strict parse with merely reading the file and splitting it into
lines and fields, each in a fresh subprocess so peak RSS (ru_maxrss) is its own.
Prints a markdown table fragment. Targets: parse <= 3x split, peak RSS < 1 GiB.

    python3 bench/bench_parse.py [--filesystems 10000] [--snapshots 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

BASE_TIME = 1_700_000_000


def write_listing(path: str, filesystems: int, snapshots: int) -> int:
    """Write the listing zfs would print; returns the line count."""
    lines = 0
    txg = 1
    with open(path, "w", encoding="ascii") as out:
        out.write(f"tank\tfilesystem\t{1 << 60}\t1\t{BASE_TIME}\t-\t0\t0\t-\toff\t-\t-\n")
        lines += 1
        for fs in range(filesystems):
            name = f"tank/data/host-{fs // 100:03d}/fs {fs:05d}:vol.d"
            txg += 1
            chunk = [f"{name}\tfilesystem\t{(1 << 62) + txg}\t{txg}\t{BASE_TIME}\t-\t4096\t{1 << 30}\t-"
                     "\toff\t-\t-\n"]
            for snap in range(snapshots):
                txg += 1
                chunk.append(f"{name}@zrepl_2026{snap:04d}_120000_000\tsnapshot\t{(1 << 63) + txg}\t{txg}\t"
                             f"{BASE_TIME + snap * 3600}\t0\t{snap * 4096}\t{1 << 30}\t-\toff\t-\t-\n")
            out.write("".join(chunk))
            lines += 1 + snapshots
    return lines


def child(mode: str, path: str) -> None:
    started = time.perf_counter()
    cpu_started = time.process_time()
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if mode == "split":
        lines = text.split("\n")
        for line in lines:
            line.split("\t")
        count = len(lines)
    elif mode == "floor":
        # A reference point: a line-by-line loop with no checks at all (split, int() the six
        # numbers, build the records), the floor of the parser's earlier line-by-line design.
        import gc

        from reconciler.domain.observed import Dataset, Snapshot

        gc.disable()  # as gathering does around the parser (reconciler/gather/gc_pause.py)
        datasets: dict[str, Dataset] = {}
        for line in text.split("\n"):
            fields = line.split("\t")
            if len(fields) != 12:
                continue
            if fields[1] == "snapshot":
                ds_name, _, short = fields[0].partition("@")
                guid, txg, creation, refs, written, referenced = map(int, fields[2:8])
                snap = Snapshot(short, guid, txg, creation, refs, written, referenced)
                datasets[ds_name].snapshots.append(snap)
            else:
                datasets[fields[0]] = Dataset(fields[0], fields[1], int(fields[2]), int(fields[3]))
        count = sum(len(d.snapshots) for d in datasets.values()) + len(datasets)
    else:
        import gc

        from reconciler.gather.gc_pause import paused_gc
        from reconciler.gather.parse import parse_zfs_list

        # As every command gathers: the collector paused, the records frozen into the
        # oldest generation afterwards (timed: the freeze is part of what gathering costs).
        with paused_gc():
            datasets = parse_zfs_list(text, "bench")
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        # What the records cost CPython's collector afterwards: the young collections that
        # follow any allocation (paused_gc moves the records past them), and a full
        # collection, which walks all long-lived data and runs rarely.
        gc_started = time.process_time()
        gc.collect(1)
        young_cpu = time.process_time() - gc_started
        gc_started = time.process_time()
        gc.collect()
        full_cpu = time.process_time() - gc_started
        count = sum(len(d.snapshots) for d in datasets.values()) + len(datasets)
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"mode": mode, "seconds": elapsed, "cpu": cpu, "rss_kib": rss_kib, "count": count,
                          "young_gc_cpu": young_cpu, "full_gc_cpu": full_cpu}))
        return
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mode": mode, "seconds": elapsed, "cpu": cpu, "rss_kib": rss_kib, "count": count}))


def measure(mode: str, path: str, repeat: int) -> dict[str, float]:
    best: dict[str, float] | None = None
    for _ in range(repeat):
        out = subprocess.run([sys.executable, __file__, "--child", mode, path], check=True,
                             capture_output=True, text=True).stdout
        result = json.loads(out)
        if best is None or result["cpu"] < best["cpu"]:
            best = result
    assert best is not None
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--filesystems", type=int, default=10_000)
    parser.add_argument("--snapshots", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    fd, path = tempfile.mkstemp(prefix="zfs-list-", suffix=".txt")
    os.close(fd)
    try:
        lines = write_listing(path, args.filesystems, args.snapshots)
        size_mib = os.path.getsize(path) / (1 << 20)
        split = measure("split", path, args.repeat)
        floor = measure("floor", path, args.repeat)
        parse = measure("parse", path, args.repeat)
    finally:
        os.unlink(path)
    ratio = parse["cpu"] / split["cpu"]
    wall_ratio = parse["seconds"] / split["seconds"]
    print(f"Listing: {args.filesystems:,} filesystems x {args.snapshots} snapshots = {lines:,} lines, "
          f"{size_mib:.0f} MiB; best of {args.repeat}, Python {sys.version.split()[0]}\n")
    print("| step | CPU time | wall time | peak RSS |")
    print("|---|---:|---:|---:|")
    rows = (("read + split lines and fields", split),
            ("line by line: read + split + int() + records, no checks", floor),
            ("read + full strict parse", parse))
    for label, row in rows:
        print(f"| {label} | {row['cpu']:.2f} s | {row['seconds']:.2f} s | {row['rss_kib'] / 1024:.0f} MiB |")
    print(f"| ratio line-by-line no-checks / split | {floor['cpu'] / split['cpu']:.2f}x | "
          f"{floor['seconds'] / split['seconds']:.2f}x | |")
    print(f"| ratio parse / split | {ratio:.2f}x (target <= 3x) | {wall_ratio:.2f}x | |")
    print(f"| then: young garbage collections | {parse['young_gc_cpu']:.2f} s | | |")
    full = parse["full_gc_cpu"]
    print(f"| then: one full garbage collection (rare: walks all long-lived data) | {full:.2f} s | | |")
    ok = ratio <= 3 and parse["rss_kib"] < (1 << 20)
    verdict = "PASS" if ok else "FAIL"
    print(f"\n{verdict}: parse {ratio:.2f}x split in CPU time, peak RSS {parse['rss_kib'] / 1024:.0f} MiB"
          " (CPU time is the stable measure on a shared machine; best run by CPU time)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
