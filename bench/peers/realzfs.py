"""Host side of the peer benchmark on real OpenZFS (issue 8): one QEMU guest, four tools.

Every tool sees the same data (101 datasets: src/data and 100 children, 50 hourly
snapshots each on a fixed past timeline, already replicated to dst/r), named the way
that tool names its snapshots, restored from a saved pool image before every run. Every
zfs/zpool call goes through /usr/local/sbin/zfs-logged in the guest, so counts are exact.

zrepl-reconcile runs on the host (the controller) and reaches the guest over SSH with
``zfs_command: [/usr/local/sbin/zfs-logged]``: the real user path. The peers run inside
the guest with the wrapper first in PATH.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.config.models import DEFAULT_PROTECTION
from reconciler.planning.naming import cursor_prefix, last_received_tag
from reconciler.planning.protection import KEEPS_LAST_RECEIVED
from reconciler.testbed.guest import Guest

BENCH_DIR = Path(__file__).resolve().parents[1]
REPO = BENCH_DIR.parent

HELPER = Path(__file__).resolve().parent / "guest_helper.py"
GUEST_HELPER = "/usr/local/lib/bench_helper.py"
WRAPPER = "/usr/local/sbin/zfs-logged"
LAST = 1763633400  # keep in sync with guest_helper.LAST
NOTHING_DUE = LAST + 5 * 60
ONE_DUE = LAST + 65 * 60
TOOLS = ("zrepl-reconcile", "sanoid", "zfs-autobackup", "pyznap")
# Ours again with `channel_programs: off`: one zfs command per bookmark and destroy,
# for (b) and (c) with and without channel programs side by side
# (`--tools zrepl-reconcile,zrepl-reconcile-per-command --scenarios b,c`).
PER_COMMAND = "zrepl-reconcile-per-command"
OURS = ("zrepl-reconcile", PER_COMMAND)
SCENARIOS = ("a", "b", "c")
APT_PACKAGES = ("sanoid", "python3-venv", "mbuffer", "pv", "lzop")
PIP_PACKAGES = ("zfs-autobackup", "pyznap")
SLOW_RUN_SECONDS = 90.0  # a single run slower than this is not repeated (time budget)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def helper(guest: Guest, *args: str, timeout: float = 1800) -> Any:
    result = guest.ssh(["python3", GUEST_HELPER, *args], timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"guest helper {args} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def install(guest: Guest, peers: bool = True) -> dict[str, Any]:
    """The zfs-logging wrapper, and (``peers``) the peers from Debian's archive and PyPI,
    installed now into the running guest."""
    facts: dict[str, Any] = {}
    guest.ssh(["sh", "-c", f"cat > {GUEST_HELPER}"], input=HELPER.read_text(), check=True)
    helper(guest, "install-wrapper")
    started = time.monotonic()
    have = not peers or guest.ssh(["sh", "-c", "command -v syncoid && test -x /opt/peers/bin/pyznap"]
                                  ).returncode == 0
    if not have:
        guest.sh("apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                 + " ".join(APT_PACKAGES) + " >/tmp/apt.log 2>&1", timeout=1800)
        # The host's CA bundle: PyPI may be reached through an intercepting proxy.
        guest.ssh(["sh", "-c", "cat > /tmp/host-ca.crt"],
                  input=Path("/etc/ssl/certs/ca-certificates.crt").read_text(), check=True)
        guest.sh("python3 -m venv /opt/peers && /opt/peers/bin/pip install -q --cert /tmp/host-ca.crt "
                 + " ".join(PIP_PACKAGES) + " >/tmp/pip.log 2>&1", timeout=1800)
    facts["install_seconds"] = round(time.monotonic() - started, 1)
    zettarepl = guest.ssh(["sh", "-c", "/opt/peers/bin/pip download --cert /tmp/host-ca.crt -q --no-deps "
                           "-d /tmp/zt zettarepl 2>&1 | tail -1"])
    facts["zettarepl_pip"] = (zettarepl.stdout or zettarepl.stderr).strip() or "downloaded"
    versions = guest.sh(
        "zfs version | head -1; dpkg-query -W -f='${Version}\\n' sanoid; "
        "/opt/peers/bin/pip show zfs-autobackup pyznap | grep ^Version; uname -r; nproc")
    facts["versions"] = versions.stdout.split("\n")
    return facts


def data_tool(tool: str) -> str:
    """The tool whose data layout and guest-side steps a row uses (our variants share ours)."""
    return "zrepl-reconcile" if tool in OURS else tool


def our_config(guest: Guest, workdir: Path, keep_source: int, big: bool = False, parallel: int = 1,
               protection: str | None = None, channel_programs: str = "auto") -> Path:
    """zrepl-reconcile's config for a scenario (JSON is YAML); ``parallel``: settings.parallel_sends;
    ``protection``: both levels (None: the default); ``channel_programs``: the hosts' option
    (auto: the guest's zfs runs as root, so one ``zfs program`` per pool for bookmarks and destroys)."""
    ssh = {**guest.ssh_host_config(zfs_command=[WRAPPER]), "channel_programs": channel_programs}
    if big:
        config: dict[str, Any] = {
            "hosts": {"src": ssh, "dst": ssh},
            "policies": {"copy": {"keep_source": [], "keep_target": []}},
            "filesystems": [{"host": "src", "filter": {"bsrc/big": True}, "policy": "copy",
                             "replicate_to": [{"host": "dst", "root": "bdst/r"}]}]}
    else:
        config = {
            "hosts": {"src": ssh, "dst": ssh},
            "policies": {"hourly": {
                "snapshots": {"prefix": "zrepl_", "interval": "1h"},
                "keep_source": [{"type": "not_replicated"},
                                {"type": "last_n", "count": keep_source, "regex": "^zrepl_"}],
                "keep_target": [{"type": "last_n", "count": 60, "regex": "^zrepl_"}]}},
            "filesystems": [{"host": "src", "filter": {"src/data<": True}, "policy": "hourly",
                             "replicate_to": [{"host": "dst", "root": "dst/r"}]}]}
        if protection is not None:
            target = config["filesystems"][0]["replicate_to"][0]
            target["protection"] = {"initial": protection, "incremental": protection}
    if parallel > 1:
        config["settings"] = {"parallel_sends": parallel}
    name = f"ours-keep{keep_source}-p{parallel}-{protection or 'default'}-{channel_programs}.yml"
    path = workdir / ("big.yml" if big else name)
    path.write_text(json.dumps(config, indent=1))
    return path


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# apply's own line per finished send: "done    full send ... (256.4 MiB in 20.1s)", a limited
# one with "; streamed at 4.0 MiB/s for 8.03s, limit 4.0 MiB/s" before the ")". Groups: size,
# unit, the whole send's seconds, the streaming seconds (limited sends only).
SEND_DONE = re.compile(r"^done\s+(?:full |incremental |resume )?send .*\(([\d.]+) (\w?i?B) in ([\d.]+)s"
                       r"(?:; (?:streamed at [\d.]+ \w?i?B/s for ([\d.]+)s)?[^)]*)?\)$", re.MULTILINE)
SIZE_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


# The console script beside this interpreter (a venv's bin/ need not be on PATH), else PATH's.
_BESIDE = Path(sys.executable).with_name("zrepl-reconcile")
OURS_CLI = [str(_BESIDE) if _BESIDE.exists() else "zrepl-reconcile"]


def run_ours(guest: Guest, config: Path, now_epoch: int) -> dict[str, Any]:
    argv = [*OURS_CLI, "apply", "-y", "-c", str(config), "--now", iso(now_epoch)]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.monotonic() - started
    sends = [float(m.group(3)) for m in SEND_DONE.finditer(done.stdout + done.stderr)]
    return {"seconds": seconds, "send_seconds": sum(sends) if sends else None,
            "commands": [{"argv": argv, "rc": done.returncode,
                          "stderr": done.stderr[-800:], "stdout": done.stdout[-800:]}]}


def one_run(guest: Guest, workdir: Path, tool: str, scenario: str, parallel: int = 1,
            protection: str | None = None) -> dict[str, Any]:
    now = ONE_DUE if scenario == "b" else NOTHING_DUE
    # Our steady state holds each replica's newest snapshot (the last-received hold) when the
    # protection level keeps one: as the previous apply left it.
    level = protection or DEFAULT_PROTECTION
    hold = [last_received_tag("src", "dst", "dst/r")] if (
        tool in OURS and level in KEEPS_LAST_RECEIVED) else []
    helper(guest, "setup", scenario, str(now), *hold)
    if tool in OURS:
        result = run_ours(guest, our_config(guest, workdir, 30 if scenario == "c" else 60,
                                            parallel=parallel, protection=protection,
                                            channel_programs="off" if tool == PER_COMMAND else "auto"), now)
    else:
        result = helper(guest, "run", tool, scenario)
    result.update(helper(guest, "collect"))
    result["ok"] = all(c["rc"] == 0 for c in result["commands"])
    return result


def median_runs(fn: Callable[[], dict[str, Any]], runs: int) -> dict[str, Any]:
    results = [fn()]
    if results[0]["seconds"] <= SLOW_RUN_SECONDS:
        results += [fn() for _ in range(runs - 1)]
    summary = dict(results[0])
    summary["runs"] = [round(r["seconds"], 2) for r in results]
    summary["seconds"] = statistics.median(r["seconds"] for r in results)
    summary["zfs_runs"] = [r["zfs"] for r in results]
    summary["ok"] = all(r["ok"] for r in results)
    return summary


def scenarios(guest: Guest, workdir: Path, runs: int, out: dict[str, Any],
              save: Callable[[], None], tools: tuple[str, ...], which: tuple[str, ...] = SCENARIOS) -> None:
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    prefix = cursor_prefix("dst", "dst/r")
    for tool in tools if which else ():
        log(f"preparing the data for {tool}")
        out.setdefault("prepare", {})[tool] = helper(guest, "prepare", data_tool(tool), prefix)
        for scenario in which:
            log(f"{tool}: scenario ({scenario})")
            result = median_runs(functools.partial(one_run, guest, workdir, tool, scenario), runs)
            result["run"] = started  # the report compares only rows of one run
            out.setdefault("scenarios", {}).setdefault(scenario, {})[tool] = result
            log(f"  {result['seconds']:.2f} s, {result['zfs']} zfs calls, {result['bytes']} bytes, "
                f"ok={result['ok']}")
            save()
            if tool == "zrepl-reconcile" and scenario == "b":
                parallel_b(guest, workdir, runs, out, save)


PARALLEL_LEVELS = (1, 2, 4)


def parallel_b(guest: Guest, workdir: Path, runs: int, out: dict[str, Any], save: Callable[[], None]) -> None:
    """Scenario (b) again with settings.parallel_sends 1, 2 and 4 (interleaved per run)."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for _ in range(runs):
        for level in PARALLEL_LEVELS:
            log(f"zrepl-reconcile: scenario (b) --parallel {level}")
            rows.setdefault(str(level), []).append(one_run(guest, workdir, "zrepl-reconcile", "b", level))
    summary: dict[str, Any] = {}
    for level, results in rows.items():
        summary[level] = {"runs": [round(r["seconds"], 2) for r in results],
                          "seconds": statistics.median(r["seconds"] for r in results),
                          "zfs": results[0]["zfs"],
                          "zfs_by_subcommand": results[0].get("zfs_by_subcommand", {}),
                          "bytes": results[0]["bytes"], "ok": all(r["ok"] for r in results)}
        log(f"  --parallel {level}: {summary[level]['seconds']:.2f} s, {summary[level]['zfs']} zfs calls")
    out["b_parallel"] = summary
    save()


def send_line(result: dict[str, Any]) -> re.Match[str]:
    """apply's ``done ... send`` line for the one send of ``result``."""
    text = result["commands"][0]["stdout"] + result["commands"][0]["stderr"]
    match = SEND_DONE.search(text)
    if match is None or result["commands"][0]["rc"] != 0:
        raise RuntimeError(f"zrepl-reconcile failed: {text[-800:]}")
    return match


def moved_and_seconds(result: dict[str, Any]) -> tuple[int, float]:
    """Bytes through the relay and transfer seconds from apply's line for the one send."""
    match = send_line(result)
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2)]), float(match.group(3))


def xfer_config(guest: Guest, workdir: Path, name: str, **target: Any) -> Path:
    ssh = guest.ssh_host_config(zfs_command=[WRAPPER])
    config = {"hosts": {"src": ssh, "dst": ssh},
              "policies": {"copy": {"keep_source": [], "keep_target": []}},
              "filesystems": [{"host": "src", "filter": {f"xsrc/{name}": True}, "policy": "copy",
                               "replicate_to": [{"host": "dst", "root": "xdst/r", **target}]}]}
    tag = re.sub(r"[^A-Za-z0-9]+", "_", "-".join(f"{k}{v}" for k, v in target.items()))
    path = workdir / f"xfer-{name}-{tag}.yml"
    path.write_text(json.dumps(config, indent=1))
    return path


def transfers(guest: Guest, workdir: Path, runs: int, out: dict[str, Any], save: Callable[[], None],
              mib: int = 256, bw_mib: int = 32, limit: str = "4MiB/s", which: tuple[str, ...] = ("e", "f")
              ) -> None:
    """(e) compressed vs plain streams of compressible data; (f) a bandwidth-limited send."""
    mib = mib if "e" in which else 1
    log(f"scenarios {', '.join(which)}: preparing {mib} MiB compressible and {bw_mib} MiB random")
    prepared = helper(guest, "xfer-prepare", str(mib), str(bw_mib))
    e: dict[str, Any] = {"mib": mib, **prepared, "runs": {"true": [], "false": []}}
    for _ in range(runs if "e" in which else 0):
        for compressed in (True, False):
            helper(guest, "xfer-reset", "comp")
            config = xfer_config(guest, workdir, "comp", compressed=compressed)
            result = run_ours(guest, config, int(time.time()))
            moved, transfer = moved_and_seconds(result)
            e["runs"][str(compressed).lower()].append(
                {"seconds": round(result["seconds"], 2), "transfer_seconds": transfer, "bytes": moved})
            log(f"  (e) compressed={compressed}: {moved} bytes, {result['seconds']:.1f} s")
    if "e" in which:
        out["e"] = e
        save()
    if "f" not in which:
        return
    f: dict[str, Any] = {"mib": bw_mib, "limit": limit, "bytes": prepared["bw_bytes"], "runs": []}
    for _ in range(runs):
        helper(guest, "xfer-reset", "bw")
        result = run_ours(guest, xfer_config(guest, workdir, "bw", bandwidth_limit=limit), int(time.time()))
        moved, transfer = moved_and_seconds(result)
        streamed = send_line(result).group(4)  # a limited send's own streaming time
        f["runs"].append({"seconds": round(result["seconds"], 2), "transfer_seconds": transfer,
                          "stream_seconds": float(streamed) if streamed else None, "bytes": moved})
        log(f"  (f) {limit}: {moved} bytes in {transfer:.2f} s (streaming {streamed} s)")
    out["f"] = f
    save()


PROTECTION_LEVELS = ("guarantee_nothing", "guarantee_incremental", "guarantee_resumability")


def protection_costs(guest: Guest, workdir: Path, runs: int, out: dict[str, Any],
                     save: Callable[[], None]) -> None:
    """Scenario (b) under each protection level (issue 13), the runs interleaved so that load
    on the shared machine hits every level alike."""
    log("protection levels: preparing zrepl-reconcile's data")
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    helper(guest, "prepare", "zrepl-reconcile", cursor_prefix("dst", "dst/r"))
    results: dict[str, list[dict[str, Any]]] = {level: [] for level in PROTECTION_LEVELS}
    for round_ in range(max(runs, 1)):
        for level in PROTECTION_LEVELS:
            log(f"protection {level}: scenario (b), run {round_ + 1}")
            result = one_run(guest, workdir, "zrepl-reconcile", "b", protection=level)
            results[level].append(result)
            log(f"  {result['seconds']:.2f} s, {result['zfs']} zfs calls, ok={result['ok']}")
    for level, rows in results.items():
        summary = dict(rows[0])
        summary["runs"] = [round(r["seconds"], 2) for r in rows]
        summary["seconds"] = statistics.median(r["seconds"] for r in rows)
        summary["ok"] = all(r["ok"] for r in rows)
        summary.pop("call_log_head", None)
        out.setdefault("protection", {})[level] = summary
    out["protection_default"] = DEFAULT_PROTECTION
    out["protection_measured"] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                  "load_after": Path("/proc/loadavg").read_text().split()[:3],
                                  "load_before": load_before, "runs_per_level": max(runs, 1)}
    save()


def plain_ssh(guest: Guest, argv: list[str]) -> list[str]:
    """A fresh SSH connection, no multiplexing: what a user's plain pipe does."""
    base = guest.ssh_argv()
    cut = base.index("ControlMaster=auto") - 1
    return [*base[:cut], *base[cut + 6:], "--", shlex.join(argv)]


def plain_pipe(guest: Guest) -> float:
    helper(guest, "big-reset")
    started = time.monotonic()
    send = subprocess.Popen(plain_ssh(guest, ["zfs", "send", "bsrc/big@s"]), stdout=subprocess.PIPE)
    recv = subprocess.run(plain_ssh(guest, ["zfs", "recv", "-u", "bdst/r/bsrc/big"]), stdin=send.stdout)
    assert send.stdout is not None
    send.stdout.close()
    if send.wait() != 0 or recv.returncode != 0:
        raise RuntimeError("plain pipe failed")
    return time.monotonic() - started


def big_ours(guest: Guest, workdir: Path) -> dict[str, Any]:
    helper(guest, "big-reset")
    return run_ours(guest, our_config(guest, workdir, 0, big=True), int(time.time()))


def full_send(guest: Guest, workdir: Path, runs: int, mib: int) -> dict[str, Any]:
    log(f"scenario (d): {mib} MiB full send")
    prepared = helper(guest, "big-prepare", str(mib))
    pipe, ours, local, transfer = [], [], [], []
    calls: dict[str, Any] = {}
    for _ in range(runs):  # interleaved, so load changes hit both alike
        pipe.append(plain_pipe(guest))
        result = big_ours(guest, workdir)
        result.update(helper(guest, "calls"))
        if result["commands"][0]["rc"] != 0:
            raise RuntimeError(f"zrepl-reconcile failed in (d): {result['commands'][0]['stderr']}")
        ours.append(result["seconds"])
        if result["send_seconds"] is not None:
            transfer.append(result["send_seconds"])
        calls = {k: result[k] for k in ("zfs", "zfs_by_subcommand")}
        local.append(helper(guest, "big-local")["seconds"])
    return {"bytes": prepared["bytes"], "mib": mib, "plain_pipe": pipe, "ours": ours, "guest_local": local,
            "ours_calls": calls, "plain_pipe_calls": 2,
            "plain_pipe_seconds": statistics.median(pipe), "ours_seconds": statistics.median(ours),
            "guest_local_seconds": statistics.median(local),
            "ours_transfer": transfer,
            "ours_transfer_seconds": statistics.median(transfer) if transfer else None}


def run(guest: Guest, workdir: Path, runs: int, scenario_runs: int, mib: int, out: dict[str, Any],
        save: Callable[[], None], tools: tuple[str, ...] = TOOLS,
        which: tuple[str, ...] = (*SCENARIOS, "d")) -> None:
    peers = any(t not in OURS for t in tools)
    fresh = install(guest, peers=peers)
    # Without the peers, keep the facts of the run that measured them (their versions).
    kept = {} if peers else {k: v for k, v in out.get("guest", {}).items()
                             if k in ("versions", "install_seconds", "zettarepl_pip")}
    out["guest"] = {**fresh, **kept}
    save()
    only_protection = tuple(which) == ("p",)  # the other rows and their guest facts stay as measured
    if not only_protection:
        out["guest"]["load_before"] = Path("/proc/loadavg").read_text().split()[:3]
    if "d" in which:
        out["d"] = full_send(guest, workdir, runs, mib)  # first: a target metric, and cheap
        save()
    if "e" in which or "f" in which:
        transfers(guest, workdir, runs, out, save, which=tuple(s for s in ("e", "f") if s in which))
    scenarios(guest, workdir, scenario_runs, out, save, tools, tuple(s for s in SCENARIOS if s in which))
    if "p" in which and "zrepl-reconcile" in tools:
        protection_costs(guest, workdir, max(scenario_runs, 2), out, save)
    if not only_protection:
        out["guest"]["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    save()
