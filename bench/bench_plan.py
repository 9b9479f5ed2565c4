"""Benchmark make_plan on synthetic facts: N filesystems x 100 snapshots replicated to one target.

    python3 bench/bench_plan.py            # 1,000 and 10,000 filesystems, each in a subprocess
    python3 bench/bench_plan.py --size 500 # one size in this process, prints JSON

Every filesystem has 100 hourly snapshots (the newest 90 minutes old) fully replicated
to ``backup:pool/nas/...`` with a cursor bookmark, so the plan takes a snapshot, sends
it, moves the cursor and prunes with grid rules on both sides: the busy steady state.
Reported: wall time of make_plan alone (facts built beforehand), peak RSS of the
process (ru_maxrss, facts included), and the 10k/1k time ratio (linear growth ~ 10).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from reconciler.config.models import Config
from reconciler.domain.observed import Bookmark, Dataset, HostFacts, ObservedState, Snapshot
from reconciler.planning.naming import cursor_prefix
from reconciler.planning.planner import make_plan

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
SNAPSHOTS = 100


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


def run_one(count: int) -> dict[str, float | int]:
    config = build_config()
    facts = build_facts(count)
    start = time.perf_counter()
    plan = make_plan(config, facts, NOW)
    seconds = time.perf_counter() - start
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"filesystems": count, "snapshot_records": 2 * count * SNAPSHOTS, "seconds": round(seconds, 2),
            "peak_rss_mib": round(rss_kib / 1024), "actions": len(plan.actions)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, help="run one size in this process and print JSON")
    args = parser.parse_args()
    if args.size:
        print(json.dumps(run_one(args.size)))
        return
    results = []
    for size in (1000, 10000):
        out = subprocess.run([sys.executable, __file__, "--size", str(size)], check=True,
                             capture_output=True, text=True).stdout
        results.append(json.loads(out))
    print("| filesystems | snapshot records | make_plan wall time | peak RSS | actions |")
    print("|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['filesystems']:,} | {r['snapshot_records']:,} | {r['seconds']:.2f} s"
              f" | {r['peak_rss_mib']:,} MiB | {r['actions']:,} |")
    ratio = results[1]["seconds"] / max(results[0]["seconds"], 1e-9)
    print(f"\nTime ratio 10k/1k: {ratio:.1f} (10.0 = linear).")


if __name__ == "__main__":
    main()
