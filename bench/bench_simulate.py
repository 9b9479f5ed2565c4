#!/usr/bin/env python3
"""How long `simulate` takes: the demo configuration over 30 days (three filesystems, a
snapshot every 10 minutes: 4,320 plans), and bigger inventories.

    python3 bench/bench_simulate.py                 # the demo, 30 days
    python3 bench/bench_simulate.py --filesystems 50 --targets 2 --days 90 --interval 1h

Prints one JSON object: runs, wall and CPU seconds, runs per second, snapshots at the end.
The facts start empty (the datasets exist, no snapshots): the simulation fills them up to
the steady state of the keep rules, which is the expensive part.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reconciler.config.grid import parse_duration
from reconciler.config.load import load_config
from reconciler.config.models import Config
from reconciler.domain.observed import Dataset, HostFacts, ObservedState
from reconciler.planning.forecast import forecast

START = datetime(2026, 11, 24, 12, tzinfo=UTC)
DEMO = Path(__file__).resolve().parents[1] / "playbooks" / "demo-local.yml"


def demo() -> tuple[Config, ObservedState, timedelta]:
    config = load_config(DEMO)
    names = ["src", "src/docs", "src/photos", "src/docs/drafts", "dst", "dst/backup"]
    datasets = {n: Dataset(n, "filesystem", i + 1, i + 1) for i, n in enumerate(names)}
    return config, ObservedState({"local": HostFacts("local", datasets)}), timedelta(minutes=10)


def inventory(filesystems: int, targets: int, interval: str) -> tuple[Config, ObservedState, timedelta]:
    hosts: dict[str, dict[str, str]] = {"nas": {"connection": "local"}}
    for t in range(targets):
        hosts[f"backup{t}"] = {"connection": "ssh", "address": f"backup{t}.example.org"}
    config = Config.model_validate({
        "hosts": hosts,
        "policies": {"p": {"snapshots": {"prefix": "zrepl_", "interval": interval},
                           "keep_source": [{"type": "not_replicated"},
                                           {"type": "grid", "grid": "1x1h(keep=all) | 24x1h | 14x1d",
                                            "regex": "^zrepl_"}],
                           "keep_target": [{"type": "grid", "grid": "1x1h(keep=all) | 24x1h | 30x1d | 12x30d",
                                            "regex": "^zrepl_"}]}},
        "filesystems": [{"host": "nas", "filter": {"tank/data<": True}, "policy": "p",
                         "replicate_to": [{"host": f"backup{t}", "root": "pool/nas"}
                                          for t in range(targets)]}],
    })
    names = ["tank", "tank/data", *(f"tank/data/fs{i:03d}" for i in range(filesystems - 1))]
    nas = {n: Dataset(n, "filesystem", i + 1, i + 1) for i, n in enumerate(names)}
    observed = ObservedState({"nas": HostFacts("nas", nas)})
    for t in range(targets):
        observed.hosts[f"backup{t}"] = HostFacts(f"backup{t}", {"pool": Dataset("pool", "filesystem", 1, 1)})
    return config, observed, parse_duration(interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--filesystems", type=int, default=0, help="0: the demo configuration")
    parser.add_argument("--targets", type=int, default=1)
    parser.add_argument("--interval", default="1h")
    args = parser.parse_args()
    if args.filesystems:
        config, observed, step = inventory(args.filesystems, args.targets, args.interval)
        label = f"{args.filesystems} filesystems x {args.targets} targets, every {args.interval}"
    else:
        config, observed, step = demo()
        label = "the demo configuration (playbooks/demo-local.yml), every 10m"
    wall, cpu = time.perf_counter(), time.process_time()
    result = forecast(config, observed, START, days=args.days, step=step)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    snapshots = sum(len(ds.snapshots) for facts in result.final.hosts.values()
                    for ds in facts.datasets.values())
    print(json.dumps({"what": label, "days": args.days, "runs": result.runs, "wall_seconds": round(wall, 2),
                      "cpu_seconds": round(cpu, 2), "runs_per_second": round(result.runs / cpu),
                      "snapshots_at_the_end": snapshots,
                      "load": Path("/proc/loadavg").read_text().split()[:3]}))


if __name__ == "__main__":
    main()
