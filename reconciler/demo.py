"""The one-command demo: real OpenZFS, plan -> apply -> plan ("No changes").

Where this host has ZFS (the ``zfs`` command and the kernel module) and we are root,
two file-backed pools are made here; otherwise the cached Debian 12 + OpenZFS guest is
booted under QEMU (built on first use, which needs root) and driven over real SSH with
strict host keys, exactly as a user's backup host would be.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.errors import ReconcileError

if TYPE_CHECKING:
    from reconciler.testbed.guest import Guest

SOURCE_DATASETS = ("src/docs", "src/my photos:2024", "src/docs/drafts v1.2")
EXPLAINED = "src/docs"  # the filesystem whose snapshots the last plan explains
DEMO_MARK = "org.zrepl-reconcile:demo"  # user property on the pools the demo creates
POLICY = """\
policies:
  demo:
    snapshots: {prefix: zrepl_, interval: 10m}
    keep_source:
      - type: not_replicated          # keep what the backup does not have yet
      - {type: last_n, count: 3, regex: "^zrepl_"}
    keep_target:
      - {type: grid, grid: "1x1h(keep=all) | 24x1h | 7x1d", regex: "^zrepl_"}
"""


class DemoError(ReconcileError):
    pass


def host_has_zfs() -> bool:
    return shutil.which("zfs") is not None and Path("/sys/module/zfs").is_dir() and os.geteuid() == 0


def demo_config(host_entry: str, src_pool: str, dst_pool: str) -> str:
    return (f"# written by `zrepl-reconcile demo`\nhosts:\n  demo: {host_entry}\n" + POLICY
            + f"filesystems:\n  - host: demo\n    filter: {{\"{src_pool}<\": true}}\n    policy: demo\n"
            f"    replicate_to:\n      - {{host: demo, root: {dst_pool}/backup}}\n")


def seed_script(src_pool: str, dst_pool: str, image_dir: str, *, mount: bool) -> str:
    """Fresh file-backed pools with a few datasets (names with spaces, colons, dots) and data.

    On the user's own host the pools stay unmounted (nothing appears in /) and an
    existing pool of the same name is replaced only when an earlier demo created it; in
    the throwaway guest they are mounted so the demo replicates some real data.
    """
    own_host = not mount
    lines = ["set -e"]
    mountpoint = "" if mount else "-O mountpoint=none"
    if own_host:
        # A pool of that name is replaced only when an earlier demo made it (marked); both
        # are checked before anything is created, so a refusal leaves nothing behind.
        for pool in (src_pool, dst_pool):
            lines += [f"if zpool list -H {pool} >/dev/null 2>&1 &&"
                      f" [ \"$(zfs get -H -o value {DEMO_MARK} {pool})\" != yes ]; then",
                      f"  echo 'demo: a pool named {pool} exists and the demo did not create it;"
                      " not touching it' >&2; exit 1",
                      "fi"]
    for pool in (src_pool, dst_pool):
        image = shlex.quote(f"{image_dir}/{pool}.img")
        lines += [f"if zpool list -H {pool} >/dev/null 2>&1; then zpool destroy -f {pool}; fi",
                  f"rm -f {image}; truncate -s 256M {image}",
                  f"zpool create -f {mountpoint} -O {DEMO_MARK}=yes {pool} {image}"]
    for name in SOURCE_DATASETS:
        dataset = name.replace("src", src_pool, 1)
        lines.append(f"zfs create -p '{dataset}'")
        if mount:
            lines.append(f"dd if=/dev/urandom of=\"$(zfs get -H -o value mountpoint '{dataset}')/data.bin\""
                         " bs=64k count=16 status=none")
    # A snapshot the demo policy does not manage: the plan must leave it alone.
    lines.append(f"zfs snapshot '{src_pool}/docs@manual-before-upgrade'")
    return "\n".join(lines)


def run_cli(title: str, argv: Sequence[str]) -> int:
    """Run the command as a user does: its own process, printing to this terminal."""
    print(f"\n$ zrepl-reconcile {' '.join(argv)}    # {title}", flush=True)
    return subprocess.run([sys.executable, "-m", "reconciler.cli", *argv], check=False).returncode


def run_steps(config: Path, src_pool: str) -> int:
    """plan -> apply -y -> plan --detailed-exitcode; 0 only when the last plan has no changes."""
    c = ["-c", str(config)]
    if run_cli("what would change", ["plan", *c]) != 0:
        return 1
    if run_cli("do it", ["apply", "-y", *c]) != 0:
        return 1
    explained = EXPLAINED.replace("src", src_pool, 1)
    code = run_cli(f"again: nothing left to do, and why each snapshot of {explained} stays",
                   ["plan", "--detailed-exitcode", "--explain", explained, *c])
    if code == 0:
        print("\nDemo finished: the second plan is empty.")
        return 0
    print(f"\nDemo: the second plan exited {code}, expected 0 (no changes)", file=sys.stderr)
    return 1


def boot_guest(workdir: Path, say: Callable[[str], None]) -> Guest:
    import reconciler.testbed.guest as vm

    say("demo: no ZFS on this host; booting the OpenZFS guest under QEMU"
        " (the image is built once and cached)")
    try:
        guest = vm.boot("demo", workdir, image=vm.ensure_image())
    except vm.GuestError as exc:
        raise DemoError(f"demo: the OpenZFS guest is not available: {exc}") from None
    say(f"demo: guest up in {guest.boot_seconds:.0f}s on {guest.address}:{guest.port}")
    return guest


def run_demo(workdir: Path | None = None, *, keep: bool = False, guest: Guest | None = None,
             say: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> int:
    """Run the demo; ``guest`` reuses an already booted test-bed guest (the e2e suite's)."""
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="zrepl-reconcile-demo-"))
            if not keep:
                stack.callback(shutil.rmtree, workdir, True)
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "zrepl-reconcile.yml"
        if guest is None and host_has_zfs():
            say("demo: this host has ZFS; using file-backed pools zrrdemo_src and zrrdemo_dst")
            src, dst = "zrrdemo_src", "zrrdemo_dst"
            if subprocess.run(["sh", "-c", seed_script(src, dst, str(workdir), mount=False)]).returncode:
                raise DemoError("demo: could not create the demo pools (see above)")
            if not keep:
                stack.callback(subprocess.run, ["sh", "-c", f"zpool destroy {src}; zpool destroy {dst}"])
            config.write_text(demo_config(json.dumps({"connection": "local"}), src, dst))
        else:
            if guest is None:
                guest = boot_guest(workdir, say)
                if not keep:
                    stack.callback(guest.stop)
                else:
                    say(f"demo: guest left running (pid {guest.pid}); ssh: {' '.join(guest.ssh_argv())}")
            guest.sh(seed_script("src", "dst", "/var/tmp", mount=True))
            # JSON is YAML: the entry's paths need no further quoting.
            src = "src"
            config.write_text(demo_config(json.dumps(guest.ssh_host_config()), src, "dst"))
        say(f"demo: desired state in {config}:\n" + config.read_text())
        return run_steps(config, src)
    return 1  # pragma: no cover (ExitStack does not swallow exceptions)
