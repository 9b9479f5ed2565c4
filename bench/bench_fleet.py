"""Fleet scale: ``zrepl-reconcile plan`` over 1, 10, 50 and 200 SSH hosts, and the same plan
through Ansible (playbooks/ansible/, the module in check mode) at forks 1, 10 and 50.

    python3 bench/bench_fleet.py                 # everything, prints JSON (~10 min on 2 cores)
    python3 bench/bench_fleet.py --hosts 1,10 --parallel 1,16 --forks 1,10 --ansible-hosts 10

One real OpenSSH sshd on 127.0.0.1 (its own keys; MaxStartups raised for 200 hosts) serves
every host: each host of the configuration is an SSH entry pointing at it, with its own
stand-in zfs state (tests/standin): 10 filesystems of 100 hourly snapshots, and the
replicas of its ring neighbour's 10 (host i replicates to host i+1), so one ``zfs list``
prints ~2,000 snapshot rows. A real host's ``zfs list`` takes its own time on its own CPU;
here every stand-in runs on the same 2 cores, so each ``zfs list`` also sleeps
``--list-latency`` seconds (a remote listing's time, which costs this machine nothing).
The plan is an hourly tick: one snapshot, one incremental send and a cursor per filesystem.

Measured, as the median of ``--runs`` fresh processes: the whole configuration's ``plan``
from one controller (every host's facts; ``settings.parallel_hosts`` 1, 16, 64), one host's
own part (``plan --as host000``: itself and its one target), and ``ansible-playbook -i
<N hosts> apply.yml --check`` (each host plans its own part; together, the same plan).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))

from fixtures_sshd import SSHD, free_port, keygen, wait_for_port  # noqa: E402
from standin.state import StandinState, zfs_command  # noqa: E402

NOW_TS = 1_764_000_000
NOW = "2025-11-24T16:00:00Z"
HOUR = 3600
DATASETS = 10
SNAPSHOTS = 100


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def host_name(i: int) -> str:
    return f"host{i:03d}"


def stamp(ts: int) -> str:
    return time.strftime("%Y%m%d_%H%M%S", time.gmtime(ts))


def start_sshd(directory: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    host_key = keygen(directory / "host_ed25519")
    client_key = keygen(directory / "client_ed25519")
    authorized = directory / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    port = free_port()
    config = directory / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"AuthorizedKeysFile {authorized}",
        f"PidFile {directory / 'sshd.pid'}", "PermitRootLogin prohibit-password", "UsePAM no",
        "StrictModes no",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
        "AllowTcpForwarding no", "X11Forwarding no", "PrintMotd no", "LogLevel ERROR",
        "MaxSessions 200", "MaxStartups 1000:30:2000", "ClientAliveInterval 0", ""]))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    wait_for_port(port, proc, time.monotonic() + 15)
    pub = host_key.with_suffix(".pub").read_text().split()
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    import getpass

    return proc, {"port": port, "user": getpass.getuser(), "client_key": str(client_key),
                  "known_hosts": str(known_hosts)}


def build_states(directory: Path, count: int, latency: float) -> list[Path]:
    """Host i: tank/data/dNN (100 hourly snapshots each, the newest 2 h old) and, under
    backup/<host i-1>, the replicas of host i-1's (every snapshot, same GUIDs)."""
    states = []
    sources: list[StandinState] = []
    for i in range(count):
        st = StandinState(seed=1000 + i, now=NOW_TS, path=directory / f"{host_name(i)}.json")
        st.filesystem("backup")
        for d in range(DATASETS):
            ds = f"tank/data/d{d:02d}"
            st.filesystem(ds)
            for h in range(SNAPSHOTS + 1, 1, -1):
                st.snapshot(ds, "zrepl_" + stamp(NOW_TS - h * HOUR), creation=NOW_TS - h * HOUR, size=1 << 20)
        sources.append(st)
    for i, st in enumerate(sources):
        upstream = sources[(i - 1) % count]
        for d in range(DATASETS):
            ds = f"tank/data/d{d:02d}"
            replica = f"backup/{host_name((i - 1) % count)}/{ds}"
            st.filesystem(replica)
            for snap in upstream.datasets[ds]["snapshots"]:
                st.snapshot(replica, snap["name"], creation=snap["creation"], size=snap["size"],
                            guid=snap["guid"])
    for st in sources:
        st.sleep("list", latency)
        states.append(st.save())
    return states


def write_config(path: Path, states: list[Path], ssh: dict[str, Any], parallel: int) -> Path:
    count = len(states)
    hosts = {host_name(i): {"connection": "ssh", "address": "127.0.0.1", "port": ssh["port"],
                            "user": ssh["user"],
                            "identity_file": ssh["client_key"], "known_hosts": ssh["known_hosts"],
                            "connect_timeout": 30.0, "command_timeout": 300.0,
                            "zfs_command": zfs_command(state, now=NOW_TS)}
             for i, state in enumerate(states)}
    config = {
        "hosts": hosts,
        "settings": {"parallel_hosts": parallel},
        "policies": {"hourly": {
            "snapshots": {"prefix": "zrepl_", "interval": "1h"},
            "keep_source": [{"type": "not_replicated"},
                            {"type": "grid", "grid": "1x1h(keep=all) | 120x1h | 14x1d", "regex": "^zrepl_"}],
            "keep_target": [{"type": "grid", "grid": "1x1h(keep=all) | 120x1h | 30x1d",
                             "regex": "^zrepl_"}]}},
        "filesystems": [{"host": host_name(i), "filter": {"tank/data<": True, "tank/data": False},
                         "policy": "hourly",
                         "replicate_to": [{"host": host_name((i + 1) % count),
                                           "root": f"backup/{host_name(i)}"}]}
                        for i in range(count)],
    }
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}


LAST_CPU = [0.0]  # CPU seconds (user + system) of the last timed() process and its children


def timed(command: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=cwd, timeout=3600)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU[0] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode not in (0, 2):
        raise RuntimeError(f"{' '.join(command[:6])}... exit {done.returncode}: {done.stderr[-2000:]}"
                           f"{done.stdout[-2000:]}")
    return seconds, done.stdout


def plan_once(config: Path, *extra: str) -> tuple[float, dict[str, Any]]:
    seconds, out = timed([sys.executable, "-m", "reconciler.cli", "plan", "-c", str(config), "--now", NOW,
                          "--format", "json", *extra], cli_env())
    doc = json.loads(out)
    return seconds, doc


def median_of(runs: list[float]) -> float:
    return round(statistics.median(runs), 2)


def measure_controller(work: Path, states: list[Path], ssh: dict[str, Any], parallel: int,
                       runs: int) -> dict[str, Any]:
    config = write_config(work / f"fleet-{len(states)}-p{parallel}.yml", states, ssh, parallel)
    times, cpu, doc = [], [], {}
    for _ in range(runs):
        seconds, doc = plan_once(config)
        times.append(round(seconds, 2))
        cpu.append(LAST_CPU[0])
    assert not doc["unavailable"], doc["unavailable"]
    # The plan process's own CPU (the controller's share; sshd and the stand-ins are not its children).
    return {"hosts": len(states), "parallel_hosts": parallel, "seconds": median_of(times), "runs": times,
            "cpu_seconds": median_of(cpu), "actions": len(doc["actions"]), "summary": doc["summary"]}


def measure_own_part(work: Path, states: list[Path], ssh: dict[str, Any], runs: int) -> dict[str, Any]:
    config = write_config(work / f"fleet-{len(states)}-own.yml", states, ssh, 16)
    times, doc = [], {}
    for _ in range(runs):
        seconds, doc = plan_once(config, "--as", host_name(0))
        times.append(round(seconds, 2))
    return {"hosts": len(states), "seconds": median_of(times), "runs": times, "actions": len(doc["actions"])}


def ansible_playbook() -> str:
    found = shutil.which("ansible-playbook") or str(Path(sys.executable).with_name("ansible-playbook"))
    if not os.path.exists(found):
        raise RuntimeError("ansible-core is not installed (pip install -e '.[fleet]')")
    return found


def measure_ansible(work: Path, states: list[Path], ssh: dict[str, Any], forks: int,
                    runs: int) -> dict[str, Any]:
    config = write_config(work / f"fleet-{len(states)}-ansible.yml", states, ssh, 16)
    wrapper = work / "zrepl-reconcile"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m reconciler.cli \"$@\"\n")
    wrapper.chmod(0o755)
    inventory = work / f"inventory-{len(states)}.ini"
    ssh_args = f"-o UserKnownHostsFile={ssh['known_hosts']} -o StrictHostKeyChecking=yes"
    inventory.write_text("\n".join([
        "[fleet]", *(f"{host_name(i)} ansible_host=127.0.0.1" for i in range(len(states))), "",
        "[fleet:vars]", f"ansible_port={ssh['port']}", f"ansible_user={ssh['user']}",
        f"ansible_ssh_private_key_file={ssh['client_key']}", f"ansible_ssh_common_args='{ssh_args}'",
        f"ansible_python_interpreter={sys.executable}", f"zrepl_reconcile_executable={wrapper}",
        f"zrepl_reconcile_config={config}", f"zrepl_reconcile_now={NOW}", ""]))
    control = Path(tempfile.mkdtemp(prefix="zrb-", dir="/tmp"))
    cfg = control / "ansible.cfg"
    cfg.write_text("[defaults]\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(cfg), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control / "cp"), "ANSIBLE_LOCAL_TEMP": str(control / "tmp")}
    times: list[float] = []
    out = ""
    try:
        for _ in range(runs):
            command = [ansible_playbook(), "-i", str(inventory), "-f", str(forks),
                       str(REPO / "playbooks" / "ansible" / "apply.yml"), "--check"]
            seconds, out = timed(command, env, cwd=work)
            times.append(round(seconds, 2))
    finally:
        shutil.rmtree(control, ignore_errors=True)
    changed = sum(1 for line in out.splitlines() if line.startswith("changed: ["))
    failed = sum(1 for line in out.splitlines() if line.startswith("fatal: ["))
    if failed:
        raise RuntimeError(f"ansible: {failed} host(s) failed:\n{out[-3000:]}")
    return {"hosts": len(states), "forks": forks, "seconds": median_of(times), "runs": times,
            "changed_hosts": changed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="1,10,50,200")
    parser.add_argument("--parallel", default="1,4,16,64", help="settings.parallel_hosts values")
    parser.add_argument("--forks", default="1,10,50", help="Ansible forks (empty: skip Ansible)")
    parser.add_argument("--ansible-hosts", default="50", help="fleet sizes run through Ansible")
    parser.add_argument("--list-latency", type=float, default=0.25,
                        help="seconds each zfs list sleeps (a remote host's own listing time)")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.hosts.split(",") if n]
    ansible_sizes = [int(n) for n in args.ansible_hosts.split(",") if n]
    work = Path(tempfile.mkdtemp(prefix="zr-fleet-"))
    sshd, ssh = start_sshd(work)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load": os.getloadavg()[0],
        "list_latency": args.list_latency, "datasets_per_host": DATASETS, "snapshots_per_dataset": SNAPSHOTS,
        "controller": [], "own_part": [], "ansible": []}
    try:
        startup, _ = timed([sys.executable, "-m", "reconciler.cli", "--version"], cli_env())
        results["cli_startup_seconds"] = round(startup, 2)
        for size in sorted(set(sizes) | set(ansible_sizes)):
            directory = work / f"states-{size}"
            directory.mkdir()
            log(f"building {size} stand-in hosts")
            states = build_states(directory, size, args.list_latency)
            if size in sizes:
                for parallel in (int(p) for p in args.parallel.split(",")):
                    runs = args.runs if size * args.list_latency / parallel < 30 else 1
                    log(f"plan: {size} hosts, parallel_hosts {parallel} ({runs} run(s))")
                    results["controller"].append(measure_controller(work, states, ssh, parallel, runs))
                log(f"plan --as {host_name(0)}: {size} hosts")
                results["own_part"].append(measure_own_part(work, states, ssh, args.runs))
            if size in ansible_sizes:
                for forks in (int(f) for f in args.forks.split(",") if f):
                    runs = args.runs if size / forks <= 10 else 1
                    log(f"ansible-playbook apply.yml --check: {size} hosts, forks {forks} ({runs} run(s))")
                    results["ansible"].append(measure_ansible(work, states, ssh, forks, runs))
            shutil.rmtree(directory)
    finally:
        sshd.terminate()
        sshd.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
