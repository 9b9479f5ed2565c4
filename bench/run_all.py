#!/usr/bin/env python3
"""Every benchmark in one command; results in bench/results.json, BENCHMARKS.md and docs/benchmarks.png.

    python3 bench/run_all.py                  # everything (~30-40 min on 2 shared cores)
    python3 bench/run_all.py --skip-realzfs   # the synthetic ones (plan, parse, render, transfer, fleet)
    python3 bench/run_all.py --only-fleet     # only the fleet-scale one (bench/bench_fleet.py, ~10 min)
    python3 bench/run_all.py --report-only    # re-render BENCHMARKS.md and the plot from results.json

The real-OpenZFS part boots one QEMU guest (reconciler/testbed/guest.py), installs the peers
into it (Debian: sanoid/syncoid; PyPI: zfs-autobackup, pyznap), runs scenarios (a)-(d)
for every tool and stops the guest. See bench/peers/realzfs.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
RESULTS = BENCH / "results.json"
PLAN_SIZES = (1000, 2500, 5000, 10000)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    release = Path("/etc/os-release").read_text().splitlines()
    os_name = next((line.split("=", 1)[1].strip('"') for line in release if line.startswith("PRETTY_NAME=")),
                   platform.system())
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu,
            "cpus": os.cpu_count(), "mem_gib": round(int(mem) / 2**20, 1), "os": os_name,
            "python": platform.python_version(), "load": Path("/proc/loadavg").read_text().split()[:3]}


def run_plan_bench() -> list[dict[str, Any]]:
    rows = []
    for size in PLAN_SIZES:
        log(f"bench_plan --size {size}")
        out = subprocess.run([sys.executable, str(BENCH / "bench_plan.py"), "--size", str(size)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out))
    return rows


def run_text_bench(script: str, *args: str) -> str:
    log(f"{script} {' '.join(args)}")
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True)
    failure = f"\n(exit {done.returncode}: {done.stderr[-400:]})" if done.returncode else ""
    return done.stdout.strip() + failure


def run_fleet_bench() -> dict[str, Any]:
    """bench_fleet.py: plan over 1..200 SSH hosts and through Ansible (needs the fleet extra)."""
    log("bench_fleet (plan over 1, 10, 50, 200 SSH hosts; Ansible at forks 1, 10, 50)")
    done = subprocess.run([sys.executable, str(BENCH / "bench_fleet.py")], capture_output=True, text=True)
    if done.returncode:
        return {"error": f"exit {done.returncode}: {done.stderr[-600:]}"}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def attached_guest(info: Path) -> Any:
    """A guest booted earlier (e.g. by `python3 -m reconciler.testbed.guest`; saves the ~6 min
    of boot and peer installation when iterating); it is stopped at the end as usual."""
    from reconciler.testbed.guest import Guest, ensure_image
    facts = json.loads(info.read_text())
    run_dir = Path(facts["workdir"])
    return Guest(name=facts["name"], image=ensure_image(), workdir=run_dir, port=facts["port"],
                 pid=facts["pid"], overlay=run_dir / "overlay.qcow2", console=run_dir / "console.log",
                 known_hosts=run_dir / "known_hosts", control_dir=Path(facts["control_dir"]))


def run_realzfs(results: dict[str, Any], runs: int, scenario_runs: int, mib: int,
                tools: tuple[str, ...], scenarios: tuple[str, ...], attach: str | None) -> None:
    from peers import realzfs

    from reconciler.testbed.guest import boot, ensure_image

    def save() -> None:
        RESULTS.write_text(json.dumps(results, indent=1, default=str))

    workdir = Path(tempfile.mkdtemp(prefix="zr-bench-"))
    if attach:
        guest = attached_guest(Path(attach))
    else:
        log("booting the OpenZFS guest")
        guest = boot("bench", workdir, image=ensure_image())
    # Merged into earlier results: a run of some tools or scenarios keeps the others' rows.
    results["realzfs"] = {**results.get("realzfs", {})}
    if scenarios != ("p",):
        results["realzfs"]["boot_seconds"] = round(guest.boot_seconds, 1)
    try:
        realzfs.run(guest, workdir, runs, scenario_runs, mib, results["realzfs"], save, tools, scenarios)
    finally:
        guest.stop()
        save()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--scenario-runs", type=int, default=0,
                        help="runs per tool for scenarios (a)-(c) (default: --runs)")
    parser.add_argument("--mib", type=int, default=256, help="size of scenario (d)'s filesystem")
    parser.add_argument("--skip-realzfs", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-fleet", action="store_true", help="leave out bench_fleet.py")
    parser.add_argument("--only-fleet", action="store_true", help="run only bench_fleet.py")
    parser.add_argument("--attach", metavar="JSON",
                        help="use a running guest (JSON: name, port, pid, workdir, control_dir)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--tools", default="zrepl-reconcile,sanoid,zfs-autobackup,pyznap")
    parser.add_argument("--scenarios", default="a,b,c,d",
                        help="real-OpenZFS scenarios to run; p: (b) under each protection level")
    args = parser.parse_args()
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    # Only the protection levels (--scenarios p): the other figures and their machine facts stay
    # as measured; the protection rows carry their own date and load.
    only_protection = args.skip_synthetic and args.scenarios == "p"
    if not args.report_only:
        if not args.only_fleet and not only_protection:  # the page's date and machine: the whole run's
            results["machine"] = machine()
        if args.only_fleet:
            args.skip_synthetic = args.skip_realzfs = True
            results["fleet"] = run_fleet_bench()
            RESULTS.write_text(json.dumps(results, indent=1, default=str))
        if not args.skip_synthetic:
            results["plan"] = run_plan_bench()
            results["parse"] = run_text_bench("bench_parse.py")
            results["render"] = run_text_bench("bench_render.py")
            results["transfer"] = run_text_bench("bench_transfer.py", "--mib", "256")
            if not args.skip_fleet:
                results["fleet"] = run_fleet_bench()
            RESULTS.write_text(json.dumps(results, indent=1, default=str))
        if not args.skip_realzfs:
            run_realzfs(results, args.runs, args.scenario_runs or args.runs, args.mib,
                        tuple(args.tools.split(",")), tuple(args.scenarios.split(",")), args.attach)
    from report import write_report
    write_report(results, REPO / "BENCHMARKS.md", REPO / "docs" / "benchmarks.png")
    log("wrote BENCHMARKS.md and docs/benchmarks.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
