"""Benchmark: rendering ONE destroy of many names grows linearly with its size.

    python3 bench/bench_render.py [--names 10000] [--repeat 5]

bench_plan.py renders many filesystems with ~145 destroys each; this measures the other
shape of a first mass prune: one dataset with a long history, every snapshot destroyed
with its reason. Per-name work that walks the whole destroy (as when every row rebuilt
the reasons' mapping: 18 s for 20,000 names as text) is invisible at 145 names and
quadratic here. Each format renders a destroy of ``--names`` and of 10x as many names
(best of ``--repeat`` runs each, in this process). The 10x/1x ratio of linear code is
15-25 here (the larger output no longer fits the CPU caches), of quadratic code 100 or
more (180 when the text rows rebuilt the mapping). Prints a markdown table fragment and
PASS when every ratio is below 40, FAIL (exit 1) otherwise: ratios, not absolute times,
as the machine is shared.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from reconciler.domain.actions import DestroyAction
from reconciler.domain.plan import Plan
from reconciler.render.json import write_json
from reconciler.render.markdown import write_markdown
from reconciler.render.text import render_text_to_string

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
GROWTH = 10
LINEAR_ENOUGH = 40  # for 10x the names: linear code measures 15-25, quadratic 100 or more


def one_huge_destroy(names: int) -> Plan:
    snapshots = tuple(f"zrepl_{i:07d}" for i in range(names))
    reasons = tuple((name, f"grid 24x1h: bucket {i} already keeps zrepl_x")
                    for i, name in enumerate(snapshots))
    return Plan(NOW, "sha256:" + "0" * 64, (DestroyAction("nas", "tank/fs", snapshots, reasons),))


def write_text(plan: Plan) -> None:
    render_text_to_string(plan, terminal=False)


FORMATS: dict[str, Callable[[Plan], None]] = {
    "text": write_text,
    "markdown": lambda plan: write_markdown(plan, io.StringIO()),
    "json": lambda plan: write_json(plan, io.StringIO()),
}


def best_seconds(render: Callable[[Plan], None], plan: Plan, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        render(plan)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=10_000, help="names of the smaller destroy")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (best)")
    args = parser.parse_args()
    small, large = one_huge_destroy(args.names), one_huge_destroy(args.names * GROWTH)
    print(f"One destroy of {args.names:,} and of {args.names * GROWTH:,} names, each with its reason; "
          f"best of {args.repeat}, Python {sys.version.split()[0]}\n")
    print(f"| format | {args.names:,} names | {args.names * GROWTH:,} names | ratio |")
    print("|---|---:|---:|---:|")
    worst = 0.0
    for name, render in FORMATS.items():
        first = best_seconds(render, small, args.repeat)
        second = best_seconds(render, large, args.repeat)
        ratio = second / max(first, 1e-9)
        worst = max(worst, ratio)
        print(f"| {name} | {first:.3f} s | {second:.3f} s | {ratio:.1f}x |")
    ok = worst < LINEAR_ENOUGH
    print(f"\n{'PASS' if ok else 'FAIL'}: the largest ratio is {worst:.1f}x for {GROWTH}x the names "
          f"(linear below {LINEAR_ENOUGH}x, quadratic 100x or more)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
