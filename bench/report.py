"""Render bench/results.json into BENCHMARKS.md (tables) and docs/benchmarks.png (the plot)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from reconciler.wording import human_bytes

TOOLS = ("zrepl-reconcile", "sanoid", "zfs-autobackup", "pyznap")
PER_COMMAND = "zrepl-reconcile-per-command"  # ours with channel_programs: off, when measured
LABEL = {"zrepl-reconcile": "zrepl-reconcile (host controller, over SSH)",
         PER_COMMAND: "zrepl-reconcile, channel_programs: off (one zfs command per bookmark/destroy)",
         "sanoid": "sanoid + syncoid (in guest)",
         "zfs-autobackup": "zfs-autobackup (in guest)",
         "pyznap": "pyznap (in guest)"}
SCENARIO_TITLE = {
    "a": "(a) 101 datasets x 50 snapshots, nothing to do",
    "b": "(b) one new snapshot per filesystem + incremental replication to the second pool",
    "c": "(c) retention pruning: keep 30 of 50 on the source (2,020 snapshots destroyed)",
}


def same_run(row: dict[str, Any], ours: dict[str, Any] | None) -> bool:
    """Whether ``row`` was measured in the run of ``ours`` (rows carry their run's start as
    ``run``; ratios only compare rows of one run: the shared machine's speed varies)."""
    return ours is None or row.get("run") == ours.get("run")


def scenario_table(name: str, rows: dict[str, Any]) -> list[str]:
    present = [t for t in (TOOLS[0], PER_COMMAND, *TOOLS[1:]) if t in rows]
    ours_row = rows.get("zrepl-reconcile")
    peers = [t for t in present if t not in ("zrepl-reconcile", PER_COMMAND) and rows[t]["ok"]
             and same_run(rows[t], ours_row)]
    best_time = min((rows[t]["seconds"] for t in peers), default=None)
    best_calls = min((rows[t]["zfs"] for t in peers), default=None)
    floor_calls = 2 if name == "a" else None
    out = [f"### {SCENARIO_TITLE[name]}", "",
           "| tool | wall time (median) | runs | zfs calls | zpool calls | bytes moved | "
           "source snapshots after | time / best peer | calls / best peer | ok |",
           "|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for tool in present:
        r = rows[tool]
        t_ratio = f"{r['seconds'] / best_time:.2f}x" if best_time else "-"
        c_ratio = f"{r['zfs'] / best_calls:.3f}x" if best_calls else "-"
        runs = ", ".join(f"{s:.1f}" for s in r.get("runs", []))
        if not same_run(r, ours_row):
            t_ratio = c_ratio = "(earlier run)"
        out.append(f"| {LABEL[tool]} | {r['seconds']:.2f} s | {runs} | {r['zfs']} | {r['zpool']} | "
                   f"{human_bytes(r['bytes'])} | {r['source_snapshots_after']} | {t_ratio} | {c_ratio} | "
                   f"{'yes' if r['ok'] else 'NO'} |")
    for tool in TOOLS:
        if tool not in rows:
            out.append(f"| {LABEL[tool]} | not measured in this run (time budget) | | | | | | | | |")
    out.append("")
    if floor_calls:
        ours = rows.get("zrepl-reconcile")
        if ours:
            out.append(f"Physical floor: {floor_calls} zfs calls (one `zfs list` per host); "
                       f"zrepl-reconcile made {ours['zfs']}.")
            out.append("")
    out.append("zfs calls by subcommand (first run):")
    out.append("")
    for tool in present:
        by_sub = rows[tool].get("zfs_by_subcommand", {})
        subs = ", ".join(f"`{k}` {v}" for k, v in sorted(by_sub.items(), key=lambda kv: -kv[1]))
        out.append(f"- {tool}: {subs}")
    failed = [t for t in present if not rows[t]["ok"]]
    for tool in failed:
        for command in rows[tool]["commands"]:
            if command["rc"] != 0:
                err = command["stderr"].strip().replace("\n", " ")[-300:]
                out.append(f"- **{tool} failed**: `{' '.join(command['argv'])}` exit {command['rc']}: {err}")
    out.append("")
    return out


def protection_table(real: dict[str, Any]) -> list[str]:
    """Scenario (b) under each protection level (issue 13)."""
    rows = real.get("protection", {})
    if not rows:
        return []
    base = rows.get("guarantee_nothing")
    out = ["### (b) under each protection level (`replicate_to[].protection`, issue 13)", "",
           "| level | wall time (median) | runs | zfs calls | `hold` / `release` calls"
           " | time / guarantee_nothing | ok |", "|---|---:|---|---:|---:|---:|---|"]
    for level in ("guarantee_nothing", "guarantee_incremental", "guarantee_resumability"):
        r = rows.get(level)
        if r is None:
            continue
        subs = r.get("zfs_by_subcommand")
        tags = f"{subs.get('hold', 0)} / {subs.get('release', 0)}" if subs is not None else "-"
        ratio = f"{r['seconds'] / base['seconds']:.3f}x" if base else "-"
        default = " (default)" if level == real.get("protection_default") else ""
        runs = runs_text(r.get("runs", []))
        out.append(f"| {level}{default} | {r['seconds']:.2f} s | {runs} | {r['zfs']} | {tags} | {ratio} |"
                   f" {'yes' if r['ok'] else 'NO'} |")
    calls = real.get("protection_calls")
    quiet = real.get("scenarios", {}).get("b", {}).get("zrepl-reconcile", {}).get("seconds")
    if calls:
        rounds = calls["rounds"][1:] or calls["rounds"]  # the first round ran on a cold cache
        def med(key: str) -> float:
            return statistics.median(r[key] for r in rounds)
        step, last = med("step_hold") + med("step_release"), med("last_hold") + med("last_release")
        out += ["", "The extra zfs calls themselves, timed in the same guest on (b)'s restored pools"
                f" ({calls['date']}; median of rounds 2-{len(calls['rounds'])}, round 1 on a cold cache"
                f" took {calls['rounds'][0]['step_hold']:.1f} s for the step hold):", "",
                "| call (one batched `zfs hold`/`zfs release` each, as apply runs them) | snapshots | time |",
                "|---|---:|---:|",
                f"| step hold (`zrr-step_...`, source) | {calls['source_snapshots']} |"
                f" {med('step_hold'):.2f} s |",
                f"| step release | {calls['source_snapshots']} | {med('step_release'):.2f} s |",
                f"| last-received hold (`zrr-last-received_...`, target) | {calls['target_snapshots']} |"
                f" {med('last_hold'):.2f} s |",
                f"| last-received release | {calls['target_snapshots']} | {med('last_release'):.2f} s |",
                "",
                f"Per (b) cycle: `guarantee_incremental` adds {last:.1f} s, `guarantee_resumability`"
                f" {step + last:.1f} s" + (f" ({last / quiet:.0%} and {(step + last) / quiet:.0%} of (b)'s"
                                          f" {quiet:.0f} s quiet run above)." if quiet else ".")]
    measured = real.get("protection_measured")
    if measured:
        out += ["", f"(Measured {measured['date']}, {measured['runs_per_level']} run(s) per level, load"
                f" average {' '.join(measured.get('load_before', []))} at start"
                + (f"; {measured['note']}" if measured.get("note") else "") + ".)"]
    out.append("")
    return out


def runs_text(runs: list[float]) -> str:
    return ", ".join(f"{s:.1f}" for s in runs)


def full_send_table(d: dict[str, Any]) -> list[str]:
    mib = d["bytes"] / 2**20
    pipe, ours, local = d["plain_pipe_seconds"], d["ours_seconds"], d["guest_local_seconds"]
    best_pipe = min(d["plain_pipe"])
    return [
        f"### (d) one {d['mib']} MiB filesystem, full send ({mib:.0f} MiB stream from `zfs send -nP`)", "",
        "| path | wall time (median) | runs | MiB/s | vs plain pipe (medians) | vs plain pipe (best runs) |",
        "|---|---:|---|---:|---:|---:|",
        f"| plain pipe: `ssh guest zfs send` \\| `ssh guest zfs recv` (host, two fresh connections) | "
        f"{pipe:.1f} s | {runs_text(d['plain_pipe'])} | {mib / pipe:.1f} | 100 % | 100 % |",
        f"| zrepl-reconcile apply (gather + plan + send\\|recv via the controller + cursor) | "
        f"{ours:.1f} s | {runs_text(d['ours'])} | {mib / ours:.1f} | {100 * pipe / ours:.0f} % | "
        f"{100 * best_pipe / min(d['ours']):.0f} % |",
        *([f"| zrepl-reconcile's send\\|recv alone (the time apply reports for the transfer) | "
           f"{d['ours_transfer_seconds']:.1f} s | {runs_text(d['ours_transfer'])} | "
           f"{mib / d['ours_transfer_seconds']:.1f} | {100 * pipe / d['ours_transfer_seconds']:.0f} % | "
           f"{100 * best_pipe / min(d['ours_transfer']):.0f} % |"] if d.get("ours_transfer") else []),
        f"| reference: `zfs send \\| zfs recv` inside the guest (no SSH) | {local:.1f} s | "
        f"{runs_text(d['guest_local'])} | {mib / local:.1f} | {100 * pipe / local:.0f} % | "
        f"{100 * best_pipe / min(d['guest_local']):.0f} % |",
        "",
        f"zrepl-reconcile's zfs calls in (d): {d['ours_calls'].get('zfs')} "
        f"({', '.join(f'`{k}` {v}' for k, v in d['ours_calls'].get('zfs_by_subcommand', {}).items())}); "
        f"plain pipe: {d['plain_pipe_calls']}.", ""]


def parallel_table(levels: dict[str, Any], peers: dict[str, Any]) -> list[str]:
    """(b) with settings.parallel_sends 1, 2, 4 beside the best peer's row of (b)."""
    ours = peers.get("zrepl-reconcile")
    ok_peers = [(t, r) for t, r in peers.items() if t not in ("zrepl-reconcile", PER_COMMAND) and r.get("ok")
                and same_run(r, ours)]
    best = min(ok_peers, key=lambda tr: tr[1]["seconds"], default=None)
    out = ["### (b) with parallel sends (`settings.parallel_sends` / `apply --parallel N`)", "",
           "| zrepl-reconcile | wall time (median) | runs | zfs calls | time / best peer | ok |",
           "|---|---:|---|---:|---:|---|"]
    for level, row in sorted(levels.items(), key=lambda kv: int(kv[0])):
        ratio = f"{row['seconds'] / best[1]['seconds']:.2f}x" if best else "-"
        out.append(f"| --parallel {level} | {row['seconds']:.2f} s | {runs_text(row['runs'])} | "
                   f"{row['zfs']} | {ratio} | {'yes' if row['ok'] else 'NO'} |")
    if best:
        out.append(f"| best peer: {LABEL[best[0]]} (table above) | {best[1]['seconds']:.2f} s | "
                   f"{runs_text(best[1].get('runs', []))} | {best[1]['zfs']} | 1.00x | yes |")
    out += ["", "zfs calls by subcommand: " + "; ".join(
        f"--parallel {level}: " + ", ".join(f"`{k}` {v}" for k, v in sorted(
            row.get("zfs_by_subcommand", {}).items(), key=lambda kv: -kv[1]))
        for level, row in sorted(levels.items(), key=lambda kv: int(kv[0]))), ""]
    return out


def median(values: list[float]) -> float:
    import statistics
    return statistics.median(values)


def compressed_table(e: dict[str, Any]) -> list[str]:
    out = [f"### (e) one {e['mib']} MiB filesystem of compressible data (lz4, compressratio "
           f"{e['comp_ratio']}), full send, compressed vs plain stream", "",
           "| `compressed` | stream (`zfs send -nP`) | bytes on the wire (median) | transfer (median) | "
           "apply wall time (median) | runs (wall) |",
           "|---|---:|---:|---:|---:|---|"]
    for key, flags, size in (("true", "`-L -c -e`", e["comp_compressed_bytes"]),
                             ("false", "plain", e["comp_plain_bytes"])):
        runs = e["runs"][key]
        if not runs:
            continue
        wire = human_bytes(int(median([r["bytes"] for r in runs])))
        walls = [r["seconds"] for r in runs]
        out.append(f"| {key} ({flags}) | {human_bytes(size)} | {wire} | "
                   f"{median([r['transfer_seconds'] for r in runs]):.1f} s | "
                   f"{median(walls):.1f} s | {runs_text(walls)} |")
    out.append("")
    return out


def bandwidth_table(f: dict[str, Any]) -> list[str]:
    from reconciler.config.rates import parse_rate

    rate = parse_rate(f["limit"])
    expected = f["bytes"] / rate
    out = [f"### (f) bandwidth limit: a {f['mib']} MiB send with `bandwidth_limit: {f['limit']}`", "",
           f"Expected: {human_bytes(f['bytes'])} / {f['limit']} = {expected:.2f} s"
           " (target: within ±10 %). The limit governs the stream: from its first bytes to its"
           " end (apply's `streamed at ... for ...s`); the whole send's time also holds both"
           " sides' start-up (two SSH sessions, `zfs send` and `zfs recv` in the emulated guest)"
           " and the receive's final commit.", "",
           "| run | bytes | whole send | streaming time | measured rate (streaming) | vs expected |",
           "|---:|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(f["runs"], 1):
        timed = r.get("stream_seconds") or r["transfer_seconds"]
        out.append(f"| {i} (guest over SSH) | {human_bytes(r['bytes'])} | {r['transfer_seconds']:.2f} s | "
                   f"{timed:.2f} s | {human_bytes(int(r['bytes'] / timed))}/s | "
                   f"{100 * (timed / expected - 1):+.1f} % |")
    local = f.get("local_pipe_seconds", [])
    local_bytes = f.get("local_pipe_bytes", 0)
    for i, seconds in enumerate(local, 1):
        out.append(f"| {i} (host: the same relay between two local pipes) | {human_bytes(local_bytes)} | "
                   f"{seconds:.2f} s | {seconds:.2f} s | {human_bytes(int(local_bytes / seconds))}/s | "
                   f"{100 * (seconds / (local_bytes / rate) - 1):+.1f} % |")
    out.append("")
    if f.get("note"):
        out += [f["note"], ""]
    return out


PLAN_FORMATS = ("text", "markdown", "json")
# The targets for `zrepl-reconcile plan` at 10,000 filesystems x 100 snapshots.
PLAN_TARGET_SECONDS, PLAN_TARGET_RSS_MIB = 10.0, 1536


def plan_table(rows: list[dict[str, Any]]) -> list[str]:
    """bench_plan.py's rows: make_plan alone and make_plan + each format (fresh processes)."""
    formats = [f for f in PLAN_FORMATS if any(f in r.get("formats", {}) for r in rows)]
    out = ["| filesystems | snapshot records | actions | destroys | make_plan alone | "
           + " | ".join(f"make_plan + `--format {f}` (render; output)" for f in formats) + " |",
           "|---:|---:|---:|---:|---:|" + "---:|" * len(formats)]
    for r in rows:
        cells = [f"{r['filesystems']:,}", f"{r['snapshot_records']:,}", f"{r['actions']:,}",
                 f"{r['destroyed']:,}" if "destroyed" in r else "-",
                 f"{r['seconds']:.2f} s, {r['peak_rss_mib']:,} MiB"]
        for fmt in formats:
            m = r.get("formats", {}).get(fmt)
            cells.append(f"**{m['seconds']:.2f} s**, {m['peak_rss_mib']:,} MiB ({m['render_seconds']:.2f} s; "
                         f"{m['output_bytes'] / 2**20:,.0f} MiB)" if m else "-")
        out.append(f"| {' | '.join(cells)} |")
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        ratios = [f"make_plan {last['seconds'] / max(first['seconds'], 1e-9):.1f}x"]
        for fmt in formats:
            a, b = first.get("formats", {}).get(fmt), last.get("formats", {}).get(fmt)
            if a and b:
                ratios.append(f"{fmt} {b['seconds'] / max(a['seconds'], 1e-9):.1f}x")
        out += ["", f"Growth {first['filesystems']:,} -> {last['filesystems']:,} filesystems "
                f"({last['filesystems'] / first['filesystems']:.0f}x the facts; linear = equal): "
                f"{', '.join(ratios)} the wall time."]
    big = next((r for r in reversed(rows) if r["filesystems"] == 10000 and r.get("formats")), None)
    if big:
        slowest = max(big["formats"].items(), key=lambda kv: kv[1]["seconds"])
        fattest = max(big["formats"].items(), key=lambda kv: kv[1]["peak_rss_mib"])
        met = (slowest[1]["seconds"] < PLAN_TARGET_SECONDS
               and fattest[1]["peak_rss_mib"] < PLAN_TARGET_RSS_MIB)
        out += ["", f"Target for the whole `plan` at 10,000 x 100 (< {PLAN_TARGET_SECONDS:.0f} s and "
                f"< {PLAN_TARGET_RSS_MIB / 1024:.1f} GiB in every format): **{'met' if met else 'missed'}**; "
                f"slowest {slowest[0]} {slowest[1]['seconds']:.2f} s, largest peak RSS "
                f"{fattest[0]} {fattest[1]['peak_rss_mib']:,} MiB."]
    return [*out, ""]


def plan_measured(rows: list[dict[str, Any]]) -> str:
    dated = [r for r in rows if "date" in r]
    if not dated:
        return ""
    loads = ", ".join(f"{r['load']:.2f}" for r in dated)
    return f" Measured {dated[0]['date']} (load average before each size: {loads})."


FLEET_METHOD = (
    "One real sshd on 127.0.0.1 serves every host; each host is an SSH entry of the configuration with "
    "its own stand-in zfs state: {datasets} filesystems of {snapshots} hourly snapshots and the replicas "
    "of its ring neighbour's (host i replicates to host i+1), about {rows:,} snapshot rows per `zfs list`. "
    "Every `zfs list` also sleeps {latency:.0f} ms: a real host lists on its own CPU and disks, while here "
    "all stand-ins, sshd sessions and the controller share the 2 cores, so that sleep stands for the "
    "remote time that parallel gathering overlaps. The plan is an hourly tick (per filesystem a snapshot, "
    "an incremental send and a cursor). Wall time of the whole command (Python start included: "
    "`--version` alone takes {startup} s), median of 3 fresh processes (1 where a run takes over 30 s). "
    "Measured {date}, load average {load:.2f} at start.")
FLEET_ANSIBLE = (
    "The same plan through Ansible: `ansible-playbook -i <N hosts> playbooks/ansible/apply.yml --check` "
    "(Ansible's default SSH connection, no pipelining, to the same sshd): on each host the module runs "
    "`zrepl-reconcile plan --as <host>`, which reads that host and its one target; the hosts' parts "
    "together are exactly the controller's plan (tests/test_fleet_ownership.py). Every host reports "
    "changed (an hourly tick is due).")


def seconds_cell(row: dict[str, Any] | None, digits: int = 2) -> str:
    return f"{row['seconds']:.{digits}f} s" if row else "-"


def fleet_section(fleet: dict[str, Any]) -> list[str]:
    """bench_fleet.py: plan over many SSH hosts from one controller, and through Ansible."""
    out = ["## Fleet scale: `plan` over 1 to 200 SSH hosts, and through Ansible (`bench/bench_fleet.py`)", ""]
    if "error" in fleet:
        return [*out, f"Not measured in this run: {fleet['error']}", ""]
    rows = fleet.get("controller", [])
    sizes = sorted({r["hosts"] for r in rows})
    parallels = sorted({r["parallel_hosts"] for r in rows})
    own = {r["hosts"]: r for r in fleet.get("own_part", [])}
    cell = {(r["hosts"], r["parallel_hosts"]): r for r in rows}
    out += [FLEET_METHOD.format(
        datasets=fleet["datasets_per_host"], snapshots=fleet["snapshots_per_dataset"],
        rows=2 * fleet["datasets_per_host"] * fleet["snapshots_per_dataset"],
        latency=fleet["list_latency"] * 1000,
        startup=fleet.get("cli_startup_seconds", "?"), date=fleet["date"], load=fleet["load"]), "",
        "| hosts | " + " | ".join(f"`parallel_hosts: {p}`" for p in parallels)
        + " | the plan process's own CPU (`parallel_hosts: 16`) | one host's own part (`plan --as host000`)"
        " | actions |",
        "|---:|" + "---:|" * len(parallels) + "---:|---:|---:|"]
    for size in sizes:
        cells = [seconds_cell(cell.get((size, parallel))) for parallel in parallels]
        actions = next((cell[(size, p)]["actions"] for p in parallels if (size, p) in cell), "-")
        cpu = cell.get((size, 16), {}).get("cpu_seconds")
        cpu_cell = f"{cpu:.2f} s" if cpu is not None else "-"
        out.append(f"| {size} | {' | '.join(cells)} | {cpu_cell} | {seconds_cell(own.get(size))} "
                   f"| {actions} |")
    out += ["", *fleet_growth(cell, sizes, parallels, own), ""]
    ansible = fleet.get("ansible", [])
    if ansible:
        if fleet.get("ansible_date"):
            out += [f"(Ansible measured {fleet['ansible_date']}, load average "
                    f"{fleet['ansible_load']:.2f} at start, with the controller's plan it is compared with.)",
                    ""]
        forks = sorted({r["forks"] for r in ansible})
        by = {(r["hosts"], r["forks"]): r for r in ansible}
        out += [FLEET_ANSIBLE, "",
                "| hosts | " + " | ".join(f"forks {f}" for f in forks)
                + " | one controller, `parallel_hosts: 16` |",
                "|---:|" + "---:|" * len(forks) + "---:|"]
        # The controller's plan from the same run as Ansible's, when Ansible was measured apart.
        same_run = {(r["hosts"], r["parallel_hosts"]): r for r in fleet.get("ansible_controller", [])} or cell
        for size in sorted({r["hosts"] for r in ansible}):
            cells = [seconds_cell(by.get((size, f)), 1) for f in forks]
            out.append(f"| {size} | {' | '.join(cells)} | {seconds_cell(same_run.get((size, 16)))} |")
        out += ["", *ansible_growth(by, forks, same_run), ""]
    return out


def fleet_growth(cell: dict[tuple[int, int], dict[str, Any]], sizes: list[int], parallels: list[int],
                 own: dict[int, dict[str, Any]]) -> list[str]:
    """The sentences the table supports: growth with hosts at each parallelism, per-host cost."""
    lines = []
    if len(sizes) >= 2:
        first, last = sizes[0], sizes[-1]
        parts = []
        for parallel in parallels:
            a, b = cell.get((first, parallel)), cell.get((last, parallel))
            if a and b:
                per_host = (b["seconds"] - a["seconds"]) / (last - first)
                parts.append(f"`parallel_hosts: {parallel}` {b['seconds'] / a['seconds']:.1f}x "
                             f"({per_host * 1000:.0f} ms per added host)")
        lines.append(f"From {first} to {last} hosts ({last // max(first, 1)}x the hosts): "
                     + "; ".join(parts) + ".")
    big = sizes[-1] if sizes else None
    if big is not None and (big, 1) in cell:
        serial = cell[(big, 1)]["seconds"]
        best = min((cell[(big, p)] for p in parallels if (big, p) in cell), key=lambda r: r["seconds"])
        lines.append(f"At {big} hosts, reading them {best['parallel_hosts']} at a time is "
                     f"{serial / best['seconds']:.1f}x faster than one at a time ({serial:.1f} s -> "
                     f"{best['seconds']:.1f} s).")
    cpu = [(size, cell[(size, 16)]["cpu_seconds"]) for size in sizes
           if (size, 16) in cell and "cpu_seconds" in cell[(size, 16)]]
    if len(cpu) >= 2:
        (first, a), (last, b) = cpu[0], cpu[-1]
        lines.append(f"The plan process itself needs {(b - a) / (last - first) * 1000:.0f} ms of CPU per "
                     "added host (paramiko's key exchange, reading ~2,000 rows, planning). The rest of each "
                     "host's cost here, its sshd session and its stand-in zfs (a Python process), is the "
                     "hosts' own CPU on a real fleet, but here it competes for the same 2 cores: that, not "
                     "the listing's latency, bounds the parallel runs.")
        wide = [p for p in parallels if p > 16]
        if wide and all((last, p) in cell and cell[(last, p)]["seconds"] >= cell[(last, 16)]["seconds"]
                        for p in wide):
            lines.append(f"For the same reason {', '.join(map(str, wide))} at a time is no faster than 16 "
                         "on this machine: more processes only take turns on the 2 cores.")
    if own:
        times = [r["seconds"] for r in own.values()]
        lines.append(f"One host's own part takes {min(times):.2f}-{max(times):.2f} s whatever the fleet's "
                     "size: it reads only that host and its targets.")
    return lines


def ansible_growth(by: dict[tuple[int, int], dict[str, Any]], forks: list[int],
                   cell: dict[tuple[int, int], dict[str, Any]]) -> list[str]:
    lines = []
    for size in sorted({h for h, _ in by}):
        serial = by.get((size, 1))
        if serial:
            lines.append(f"{size} hosts at forks 1: {serial['seconds'] / size:.2f} s per host (an SSH login, "
                         "the module's transfer and a `plan --as` process each).")
        best = min((by[(size, f)] for f in forks if (size, f) in by), key=lambda r: r["seconds"])
        ctl = cell.get((size, 16))
        if ctl:
            lines.append(f"Best Ansible run at {size} hosts (forks {best['forks']}): "
                         f"{best['seconds']:.1f} s, "
                         f"{best['seconds'] / ctl['seconds']:.1f}x the single controller's plan: on these 2 "
                         "shared cores every host's Python, SSH and stand-in run here too; on a real fleet "
                         "each host plans on its own CPU, so forks spread that cost over the hosts.")
    return lines


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    real = results.get("realzfs", {}).get("scenarios", {})
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.8))
    colors = {"zrepl-reconcile": "#1f77b4", "sanoid": "#ff7f0e", "zfs-autobackup": "#2ca02c",
              "pyznap": "#d62728"}
    for ax, key, title in ((axes[0], "seconds", "wall time (s)"),
                           (axes[1], "zfs", "zfs invocations (log scale)")):
        width = 0.2
        for i, tool in enumerate(TOOLS):
            xs, ys = [], []
            for j, scenario in enumerate(("a", "b", "c")):
                row = real.get(scenario, {}).get(tool)
                if row is not None:
                    xs.append(j + (i - 1.5) * width)
                    ys.append(max(row[key], 0.5))
            if xs:
                ax.bar(xs, ys, width, label=tool, color=colors[tool])
        ax.set_xticks(range(3), ["(a) nothing to do", "(b) snapshot+replicate", "(c) prune 2,020"])
        ax.set_title(title)
        if key == "zfs":
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    d = results.get("realzfs", {}).get("d")
    if d:
        mib = d["bytes"] / 2**20
        labels = ["plain pipe\n(ssh|ssh)", "zrepl-reconcile\napply", "in-guest\nsend|recv"]
        values = [mib / d["plain_pipe_seconds"], mib / d["ours_seconds"], mib / d["guest_local_seconds"]]
        axes[3].bar(labels, values, color=["grey", colors["zrepl-reconcile"], "lightgrey"])
        axes[3].set_title(f"(d) {d['mib']} MiB full send: MiB/s (wall)")
    plan = results.get("plan", [])
    if plan:
        xs = [r["filesystems"] for r in plan]
        axes[2].plot(xs, [r["seconds"] for r in plan], "o-", label="make_plan alone")
        for fmt in PLAN_FORMATS:
            if all(fmt in r.get("formats", {}) for r in plan):
                axes[2].plot(xs, [r["formats"][fmt]["seconds"] for r in plan], "o-",
                             label=f"make_plan + --format {fmt}")
        first = plan[0]
        slowest = max([first["seconds"], *(f["seconds"] for f in first.get("formats", {}).values())])
        base = slowest / first["filesystems"]
        axes[2].plot(xs, [base * x for x in xs], "--", color="grey", label="linear from 1,000 (slowest)")
        axes[2].set_xlabel("filesystems (x100 snapshots, replicated)")
        axes[2].set_ylabel("seconds")
        axes[2].set_title("plan (and its output) on synthetic facts")
        axes[2].legend(fontsize=8)
    fig.suptitle("zrepl-reconcile vs peers on real OpenZFS 2.1 (QEMU guest, software emulation)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def write_report(results: dict[str, Any], markdown: Path, png: Path) -> None:
    from notes import NOTES  # the measured causes and method text, kept next to the numbers

    m = results.get("machine", {})
    real = results.get("realzfs", {})
    lines = ["# Benchmarks", "",
             f"Date: {m.get('date', '?')}. Machine: {m.get('os', '?')}, {m.get('cpus', '?')} CPUs "
             f"({m.get('cpu', '?')}), {m.get('mem_gib', '?')} GiB RAM, Python {m.get('python', '?')}; "
             f"load average at start {' '.join(m.get('load', []))} (the 2 cores are shared with other "
             "jobs: expect noise; medians are reported).", "",
             "Reproduce everything with `python3 bench/run_all.py` (results in `bench/results.json`; "
             "`--report-only` re-renders this page and the plot).", "",
             "![benchmarks](docs/benchmarks.png)", "",
             NOTES["method"].format(
                 versions="; ".join(v for v in real.get("guest", {}).get("versions", []) if v),
                 boot=real.get("boot_seconds", "?"),
                 install=real.get("guest", {}).get("install_seconds", "?"),
                 zettarepl=real.get("guest", {}).get("zettarepl_pip", "?")), ""]
    lines += ["## Peers on real OpenZFS", ""]
    for scenario in ("a", "b", "c"):
        rows = real.get("scenarios", {}).get(scenario)
        if rows:
            lines += scenario_table(scenario, rows)
    if real.get("b_parallel"):
        lines += parallel_table(real["b_parallel"], real.get("scenarios", {}).get("b", {}))
    if "d" in real:
        lines += full_send_table(real["d"])
    if real.get("e"):
        lines += compressed_table(real["e"])
    if real.get("f"):
        lines += bandwidth_table(real["f"])
    if real.get("e") or real.get("f") or real.get("b_parallel"):
        lines += [NOTES["transfers"], ""]
    if real.get("protection"):
        lines += protection_table(real)
        lines += [NOTES["protection"], ""]
    lines += [NOTES["analysis"], ""]
    if results.get("plan"):
        lines += ["## `zrepl-reconcile plan` on synthetic facts (`bench/bench_plan.py`)", "",
                  "Each filesystem has 100 hourly snapshots (4 days) replicated to one target with a "
                  "cursor bookmark, under grids that keep hourly snapshots for a day and dailies after: "
                  "the plan snapshots, sends, moves the cursor and makes the first mass prune, 72 "
                  "snapshots on each side plus the old cursor (145 destroys per filesystem, each with "
                  "its reason). Each cell is the median of 3 fresh processes (every run in "
                  "`bench/results.json`): facts built first (not timed), then `make_plan` alone, or "
                  "`make_plan` and the CLI's output path for that format (stdout to a file); wall time "
                  "and peak RSS of the process (facts included), in brackets the rendering's share and "
                  "the output's size." + plan_measured(results["plan"]), ""]
        lines += plan_table(results["plan"])
    if results.get("fleet"):
        lines += fleet_section(results["fleet"])
    if results.get("parse"):
        lines += ["## Parsing `zfs list` (`bench/bench_parse.py`)", "", results["parse"], ""]
    lines += [NOTES["structure"], ""]
    if results.get("render"):
        lines += ["## Rendering one huge destroy (`bench/bench_render.py`)", "", results["render"], ""]
    if results.get("transfer"):
        lines += ["## Transfer path on loopback SSH (`bench/bench_transfer.py --mib 256`)", "",
                  results["transfer"], ""]
    markdown.write_text("\n".join(lines).rstrip() + "\n")
    plot(results, png)
