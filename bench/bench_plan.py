"""Benchmark what `zrepl-reconcile plan` costs on synthetic facts: make_plan, then the output.

    python3 bench/bench_plan.py             # 1,000 and 10,000 filesystems: table and 10k/1k ratios
    python3 bench/bench_plan.py --size 500  # one size: make_plan alone and each format, prints JSON
    python3 bench/bench_plan.py --size 500 --format text   # one measurement in this process

Every filesystem has 100 hourly snapshots (4 days of them, the newest 90 minutes old),
fully replicated to ``backup:pool/nas/...`` with a cursor bookmark, and grids that keep
hourly snapshots for one day and one a day after that. So the plan takes a snapshot,
sends it incrementally, moves the cursor and makes a first mass prune (as after pruning
was switched on or tightened; a steady state destroys one or two per side): 72 snapshots
on each side plus the old cursor, 145 destroys per filesystem, each with its reason
(1.45 million for 10,000 filesystems).

Each measurement runs in a fresh process that builds the facts first (not timed) and
leaves them as the parser does (in the collector's oldest generation), then times
``make_plan`` and, for a format, the CLI's own output path (``print_plan``, stdout sent
to a file). Reported per measurement, the median of ``--runs`` processes: wall time,
peak RSS of the process (ru_maxrss, facts included) and the output size; for the table,
the 10k/1k ratios (linear ~ 10).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.config.models import Config
from reconciler.domain.actions import DestroyAction
from reconciler.domain.observed import Bookmark, Dataset, HostFacts, ObservedState, Snapshot
from reconciler.planning.naming import cursor_prefix
from reconciler.planning.planner import make_plan

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
SNAPSHOTS = 100
FORMATS = ("text", "markdown", "json")
SIZES = (1000, 10000)


def build_config() -> Config:
    return Config.model_validate({
        "hosts": {"nas": {"connection": "local"}, "backup": {"connection": "local"}},
        "policies": {"hourly": {
            "snapshots": {"prefix": "zrepl_", "interval": "1h"},
            "keep_source": [{"type": "not_replicated"},
                            {"type": "grid", "grid": "1x1h(keep=all) | 24x1h | 14x1d", "regex": "^zrepl_"}],
            "keep_target": [{"type": "grid", "grid": "1x1h(keep=all) | 24x1h | 30x1d", "regex": "^zrepl_"}],
        }},
        "filesystems": [{"host": "nas", "filter": {"tank<": True}, "policy": "hourly",
                         "replicate_to": [{"host": "backup", "root": "pool/nas"}]}],
    })


def build_facts(count: int) -> ObservedState:
    nas, backup = HostFacts("nas"), HostFacts("backup")
    nas.datasets["tank"] = Dataset("tank", "filesystem", 1, 1)
    backup.datasets["pool"] = Dataset("pool", "filesystem", 2, 1)
    backup.datasets["pool/nas"] = Dataset("pool/nas", "filesystem", 3, 2)
    backup.datasets["pool/nas/tank"] = Dataset("pool/nas/tank", "filesystem", 4, 3)
    newest = int((NOW - timedelta(minutes=90)).timestamp())
    names = [(NOW - timedelta(minutes=90, hours=SNAPSHOTS - 1 - i)).strftime("zrepl_%Y%m%d_%H%M%S")
             for i in range(SNAPSHOTS)]
    prefix = cursor_prefix("backup", "pool/nas")
    guid = 1000
    for n in range(count):
        name = f"tank/fs{n:05d}"
        src = Dataset(name, "filesystem", guid, 10)
        dst = Dataset(f"pool/nas/{name}", "filesystem", guid + 1, 10)
        guid += 2
        for i, snap_name in enumerate(names):
            creation = newest - (SNAPSHOTS - 1 - i) * 3600
            src.snapshots.append(Snapshot(snap_name, guid, 100 + i, creation, 0, 4096, 1 << 20))
            dst.snapshots.append(Snapshot(snap_name, guid, 100 + i, creation, 0, 4096, 1 << 20))
            guid += 1
        last = src.snapshots[-1]
        src.bookmarks.append(Bookmark(prefix + last.name, last.guid, last.createtxg, last.creation))
        nas.datasets[name] = src
        backup.datasets[dst.name] = dst
    return ObservedState({"nas": nas, "backup": backup})


def peak_rss_mib() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def measure(count: int, fmt: str) -> dict[str, Any]:
    """One measurement in this process: make_plan alone (``fmt`` "plan") or plus a format."""
    from reconciler.commands.plan import print_plan

    config = build_config()
    facts = build_facts(count)
    # Where gathering leaves the facts (reconciler/gather/gc_pause.py).
    gc.freeze()
    gc.unfreeze()
    start = time.perf_counter()
    plan = make_plan(config, facts, NOW)
    planned = time.perf_counter()
    row: dict[str, Any] = {"format": fmt, "plan_seconds": round(planned - start, 2)}
    if fmt != "plan":
        with tempfile.TemporaryFile("w+", encoding="utf-8") as out:
            saved, sys.stdout = sys.stdout, out
            try:
                print_plan(plan, fmt, None)
            finally:
                sys.stdout = saved
            row["render_seconds"] = round(time.perf_counter() - planned, 2)
            row["output_bytes"] = out.buffer.tell()
    row["seconds"] = round(time.perf_counter() - start, 2)
    row["peak_rss_mib"] = peak_rss_mib()
    row["actions"] = len(plan.actions)
    row["destroyed"] = sum(len(a.snapshots) for a in plan.actions if isinstance(a, DestroyAction))
    return row


def fresh(count: int, fmt: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--size", str(count), "--format", fmt],
                         check=True, capture_output=True, text=True).stdout
    row: dict[str, Any] = json.loads(out)
    return row


def median_run(count: int, fmt: str, runs: int) -> dict[str, Any]:
    """The run with the median wall time of ``runs`` fresh processes, with every run's time."""
    rows = [fresh(count, fmt) for _ in range(runs)]
    row = sorted(rows, key=lambda r: r["seconds"])[len(rows) // 2]
    row["runs"] = [r["seconds"] for r in rows]
    return row


def run_size(count: int, runs: int) -> dict[str, Any]:
    """make_plan alone and make_plan + each format, each in fresh processes (median of ``runs``).

    The first keys are those of earlier results.json rows (make_plan alone)."""
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    alone = median_run(count, "plan", runs)
    formats = {}
    for fmt in FORMATS:
        row = median_run(count, fmt, runs)
        formats[fmt] = {k: v for k, v in row.items() if k not in ("format", "actions", "destroyed")}
    return {"filesystems": count, "snapshot_records": 2 * count * SNAPSHOTS,
            "seconds": alone["seconds"], "peak_rss_mib": alone["peak_rss_mib"],
            "actions": alone["actions"], "destroyed": alone["destroyed"], "runs": alone["runs"],
            "formats": formats, "date": date, "load": round(load, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, help="one size: every measurement, each in a fresh process")
    parser.add_argument("--format", choices=("plan", *FORMATS),
                        help="with --size: measure only make_plan (plan) or make_plan + this format, "
                             "in this process")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per measurement (median)")
    args = parser.parse_args()
    if args.size and args.format:
        print(json.dumps(measure(args.size, args.format)))
        return
    if args.size:
        print(json.dumps(run_size(args.size, args.runs)))
        return
    from report import plan_table  # the table of BENCHMARKS.md (bench/ is this script's path)

    print("\n".join(plan_table([run_size(size, args.runs) for size in SIZES])))


if __name__ == "__main__":
    main()
