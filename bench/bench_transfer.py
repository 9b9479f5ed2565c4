#!/usr/bin/env python3
"""Throughput of the send | recv data path: which transport reaches >= 90 % of a plain pipe?

Starts a throwaway OpenSSH sshd on 127.0.0.1 (the test suite's fixture helpers), then
moves the same N MiB from a remote ``head -c N /dev/zero`` ("zfs send") into a local
``cat > /dev/null`` ("zfs recv") in several ways:

  plain pipe          ssh host 'head -c N /dev/zero' | cat > /dev/null   (the shell's pipe: the floor)
  system ssh + pump   pump.stream(): ssh client stdout -> controller (os.splice) -> cat stdin
  system ssh + copy   the same with the 1 MiB read/write buffer instead of splice
  paramiko channel    SshExecutor.start_stream() of a small send: paramiko channel -> controller
                      -> cat stdin (the path apply takes for sends up to SMALL_SEND_BYTES)

and the same for local -> local (no ssh) as a reference. Median of --runs runs each.

    python3 bench/bench_transfer.py [--mib 512] [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fixtures_sshd import free_port as pick_port  # noqa: E402
from fixtures_sshd import keygen, wait_for_port, write_config  # noqa: E402

from reconciler.config.models import SshHost  # noqa: E402
from reconciler.transport.interface import StreamRole  # noqa: E402
from reconciler.transport.openssh import client_argv, remote_command  # noqa: E402
from reconciler.transport.process import PipeProcess  # noqa: E402
from reconciler.transport.pump import relay, stream  # noqa: E402
from reconciler.transport.ssh import SshExecutor  # noqa: E402

SINK = ["sh", "-c", "cat > /dev/null"]


def start_sshd(directory: Path) -> tuple[subprocess.Popen[bytes], SshHost]:
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    host_key = keygen(directory / "host_ed25519")
    client_key = keygen(directory / "client_ed25519")
    authorized = directory / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    port = pick_port()
    config = write_config(directory, port, host_key, authorized)
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    wait_for_port(port, proc, time.monotonic() + 15)
    pub = host_key.with_suffix(".pub").read_text().split()
    known = directory / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    host = SshHost(connection="ssh", address="127.0.0.1", port=port, user=getpass.getuser(),
                   identity_file=str(client_key), known_hosts=str(known), zfs_command=["zfs"])
    return proc, host


def source_argv(nbytes: int) -> list[str]:
    return ["head", "-c", str(nbytes), "/dev/zero"]


def sender(host: SshHost | None, nbytes: int) -> list[str]:
    """``head -c N /dev/zero`` here, or on ``host`` through the system ssh client."""
    if host is None:
        return source_argv(nbytes)
    return [*client_argv(host), remote_command(source_argv(nbytes))]


def plain_pipe(host: SshHost | None, nbytes: int) -> float:
    """The shell pipeline a user would type: no controller in between."""
    left = sender(host, nbytes)
    start = time.monotonic()
    subprocess.run(["sh", "-c", f"{shlex.join(left)} | cat > /dev/null"], check=True)
    return time.monotonic() - start


def controller(host: SshHost | None, nbytes: int, use_splice: bool) -> float:
    left = sender(host, nbytes)
    start = time.monotonic()
    # As apply runs it: with an abort event (the pump then polls before each chunk).
    result = stream(left, SINK, use_splice=use_splice, abort=threading.Event())
    assert result.ok and result.bytes == nbytes, result
    return time.monotonic() - start


def paramiko_channel(host: SshHost, nbytes: int) -> float:
    executor = SshExecutor("bench", host.model_copy(update={"zfs_command": source_argv(nbytes)}))
    executor.run(["true"])  # connect and authenticate outside the timing, as in apply
    start = time.monotonic()
    # "zfs" becomes the zfs_command (head -c N); size 0 is a small send: a channel.
    result = relay(lambda: executor.start_stream(["zfs"], StreamRole.SEND, 0),
                   lambda: PipeProcess(SINK, StreamRole.RECEIVE), abort=threading.Event())
    elapsed = time.monotonic() - start
    executor.close()
    assert result.ok and result.bytes == nbytes, result
    return elapsed


def measure(fn: Callable[[], float], runs: int) -> float:
    return statistics.median(fn() for _ in range(runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    nbytes = args.mib * 2**20
    rows: list[tuple[str, str, float]] = []
    failures: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        sshd, host = start_sshd(Path(tmp))
        try:
            cases: list[tuple[str, str, Callable[[], float]]] = [
                ("local", "plain pipe", lambda: plain_pipe(None, nbytes)),
                ("local", "controller (splice)", lambda: controller(None, nbytes, True)),
                ("local", "controller (1 MiB copy)", lambda: controller(None, nbytes, False)),
                ("ssh", "plain pipe", lambda: plain_pipe(host, nbytes)),
                ("ssh", "system ssh + controller (splice)", lambda: controller(host, nbytes, True)),
                ("ssh", "system ssh + controller (1 MiB copy)", lambda: controller(host, nbytes, False)),
                ("ssh", "paramiko channel + controller", lambda: paramiko_channel(host, nbytes)),
            ]
            for path, name, fn in cases:
                try:
                    seconds = measure(fn, args.runs)
                except Exception as exc:  # paramiko fails outright on large streams: report it
                    failures.append((path, name, f"{type(exc).__name__}: {exc}"))
                    print(f"{path:5} {name:40} FAILED: {type(exc).__name__}: {exc}", flush=True)
                    continue
                rows.append((path, name, seconds))
                print(f"{path:5} {name:40} {seconds:7.2f} s  {args.mib / seconds:8.1f} MiB/s", flush=True)
        finally:
            sshd.terminate()
            sshd.wait()
    floor = {path: secs for path, name, secs in rows if name == "plain pipe"}
    print(f"\n{args.mib} MiB, median of {args.runs}, {os.cpu_count()} CPUs\n")
    print("| path | transport | MiB/s | vs plain pipe |")
    print("|---|---|---:|---:|")
    for path, name, secs in rows:
        print(f"| {path} | {name} | {args.mib / secs:.0f} | {100 * floor[path] / secs:.0f} % |")
    for path, name, error in failures:
        print(f"| {path} | {name} | failed: {error} | - |")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"mib": args.mib, "runs": args.runs,
             "results": [{"path": p, "transport": n, "seconds": s, "mib_per_s": args.mib / s,
                          "vs_plain_pipe": floor[p] / s} for p, n, s in rows],
             "failures": [{"path": p, "transport": n, "error": e} for p, n, e in failures]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
