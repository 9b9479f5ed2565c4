"""Boot and drive the cached Debian 12 + OpenZFS guest (see build-image.sh).

Standard library only, so the test fixtures and a demo command can both use it:

    image = ensure_image()                 # builds once (root), then cached
    guest = boot("e2e", Path("/tmp/run"))  # ~17 s under software emulation
    guest.ssh(["zfs", "version"], check=True)
    guest.stop()

The guest is reachable only on 127.0.0.1 (QEMU user networking forwards one port to
its sshd). Its host key is known from the build, so every connection checks it
strictly. QEMU's forwarded port accepts one pending connection at a time, so the
system ssh client here shares one master connection (ControlMaster) for all commands.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

VM_DIR = Path(__file__).resolve().parent
BUILD_SCRIPT = VM_DIR / "build-image.sh"
READY_LINE = "ZREPL-RECONCILE-GUEST-READY"  # for an image whose manifest names no ready_line
WATCHDOG_PERIOD_SECONDS = 2.0
GUEST_USER = "root"
GUEST_ADDRESS = "127.0.0.1"
GUEST_MEMORY_MB = 2048
GUEST_CPUS = 2
BOOT_TIMEOUT_SECONDS = 300.0  # warm boot is ~17 s; the host's 2 cores are shared
SSH_TIMEOUT_SECONDS = 120.0


class GuestError(RuntimeError):
    """The guest could not be built, booted or reached."""


class QemuUnavailable(GuestError):
    """QEMU cannot run on this machine at all (the only reason to skip the real suite)."""


@dataclass(frozen=True)
class ImagePaths:
    directory: Path
    disk: Path
    kernel: Path
    initrd: Path
    identity_file: Path
    host_public_key: Path
    manifest: dict[str, str]

    @classmethod
    def of(cls, directory: Path) -> ImagePaths:
        manifest = dict(
            line.split("=", 1)
            for line in (directory / "manifest.txt").read_text().splitlines()
            if "=" in line)
        return cls(directory=directory, disk=directory / "disk.qcow2", kernel=directory / "vmlinuz",
                   initrd=directory / "initrd.img", identity_file=directory / "id_ed25519",
                   host_public_key=directory / "host_ed25519.pub", manifest=manifest)

    @property
    def ready_line(self) -> str:
        """What the guest prints on its console once sshd is up (build-image.sh writes it)."""
        return self.manifest.get("ready_line", READY_LINE)

    def hold(self) -> int:
        """A shared lock on the image's recipe (build-image.sh deletes old images only when
        it can lock them exclusively); the returned descriptor holds it until closed."""
        lock = self.directory.parent / f".lock-{self.directory.name}"
        fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_SH)
        return fd


# ---------------------------------------------------------------------- the image

def image_directory() -> Path:
    """Where build-image.sh caches the image of its current recipe (built or not)."""
    out = subprocess.run(["bash", str(BUILD_SCRIPT), "--print-dir"], capture_output=True, text=True,
                         check=True)
    return Path(out.stdout.strip())


def ensure_image(*, log: Path | None = None) -> ImagePaths:
    """The cached image, built first when its recipe has no image yet (needs root)."""
    directory = image_directory()
    if (directory / "manifest.txt").is_file():
        return ImagePaths.of(directory)
    if os.geteuid() != 0:
        raise GuestError(f"the guest image {directory} is not built and building it needs root: "
                         f"run sudo {BUILD_SCRIPT}")
    log_path = log or directory.parent / f"build-{directory.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the OpenZFS guest image (about 5 minutes, log: {log_path})", file=sys.stderr)
    with log_path.open("wb") as out:
        status = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=out, stderr=subprocess.STDOUT).returncode
    if status != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-60:]
        raise GuestError(f"build-image.sh failed (exit {status}); last lines of {log_path}:\n"
                         + "\n".join(tail))
    return ImagePaths.of(directory)


# ---------------------------------------------------------------------- QEMU

def qemu_binary() -> str:
    found = shutil.which("qemu-system-x86_64")
    if found is None:
        raise QemuUnavailable(
            "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86 qemu-utils)")
    return found


def qemu_unavailable_reason() -> str | None:
    """Why QEMU cannot run on this machine at all (the one reason to skip the real suite),
    or None: both tools are installed and an empty machine starts and quits."""
    if shutil.which("qemu-system-x86_64") is None or shutil.which("qemu-img") is None:
        return "qemu-system-x86_64/qemu-img not installed (apt-get install qemu-system-x86 qemu-utils)"
    try:
        probe = subprocess.run(["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
                                "-monitor", "stdio"], input="quit\n", capture_output=True, text=True,
                               timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"qemu-system-x86_64 does not start: {exc}"
    if probe.returncode != 0:
        return f"qemu-system-x86_64 does not start: {probe.stderr.strip()[-300:]}"
    return None


def kvm_works() -> bool:
    """KVM only where it truly runs a stock kernel: a usable /dev/kvm from a real
    hypervisor (not kvm_pvm, whose guests hang at boot) on a CPU with vmx/svm."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or Path("/sys/module/kvm_pvm").exists():
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    words = set(flags.split())
    return "vmx" in words or "svm" in words


def accel_arguments() -> list[str]:
    if kvm_works():
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi,tb-size=512", "-cpu", "max"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((GUEST_ADDRESS, 0))
        return int(sock.getsockname()[1])


def qemu_argv(image: ImagePaths, overlay: Path, console: Path, pidfile: Path, port: int) -> list[str]:
    return [
        qemu_binary(), *accel_arguments(),
        "-m", str(GUEST_MEMORY_MB), "-smp", str(GUEST_CPUS),
        "-nodefaults", "-display", "none",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-append", "root=/dev/vda rw console=ttyS0 quiet",
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-netdev", f"user,id=n0,hostfwd=tcp:{GUEST_ADDRESS}:{port}-:22",
        "-device", "virtio-net-pci,netdev=n0",
        "-device", "virtio-rng-pci",
        "-serial", f"file:{console}",
        "-daemonize", "-pidfile", str(pidfile),
    ]


def create_overlay(base: Path, overlay: Path) -> None:
    # The backing path must be absolute: a relative one is resolved against the
    # overlay's directory (and failed in practice).
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base.resolve()), "-F", "qcow2",
                    str(overlay)], check=True, capture_output=True)


def is_our_qemu(pid: int, overlay: Path) -> bool:
    """Only kill a PID that is still a QEMU running our overlay (PIDs get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and b"qemu-system" in cmdline[0] and any(
        str(overlay).encode() in part for part in cmdline)


def quoted(value: str) -> str:
    """An ssh ``-o Key=value`` value: OpenSSH splits an unquoted one at blanks."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def kill_qemu(pid: int, overlay: Path) -> None:
    """SIGTERM, then SIGKILL, while ``pid`` is still a QEMU on ``overlay``; then drop the overlay."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not (process_alive(pid) and is_our_qemu(pid, overlay)):
            break
        os.kill(pid, sig)
        end = time.monotonic() + 10
        while process_alive(pid) and time.monotonic() < end:
            time.sleep(0.2)
    with contextlib.suppress(OSError):
        overlay.unlink()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our child, not yet reaped) is as good as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# ---------------------------------------------------------------------- the guest

@dataclass
class Guest:
    """A running guest and the facts a zrepl-reconcile config needs to reach it."""

    name: str
    image: ImagePaths
    workdir: Path
    port: int
    pid: int
    overlay: Path
    console: Path
    known_hosts: Path
    control_dir: Path
    boot_seconds: float = 0.0
    stopped: bool = field(default=False)
    image_lock: int | None = None

    address: str = GUEST_ADDRESS
    user: str = GUEST_USER

    @property
    def identity_file(self) -> Path:
        return self.image.identity_file

    def ssh_host_config(self, zfs_command: list[str] | None = None) -> dict[str, object]:
        """The ``hosts:`` entry of a zrepl-reconcile config for this guest."""
        entry: dict[str, object] = {
            "connection": "ssh", "address": self.address, "port": self.port, "user": self.user,
            "identity_file": str(self.identity_file), "known_hosts": str(self.known_hosts)}
        if zfs_command is not None:
            entry["zfs_command"] = zfs_command
        return entry

    def ssh_argv(self, argv: list[str] | None = None) -> list[str]:
        """The system ssh command line for ``argv`` in the guest (joined with shlex once)."""
        base = [
            "ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(self.identity_file),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={quoted(str(self.known_hosts))}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=15",
            "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_dir}/cm",
            "-o", "ControlPersist=600",
            f"{self.user}@{self.address}",
        ]
        if argv:
            base += ["--", shlex.join(argv)]
        return base

    def ssh(self, argv: list[str], *, input: str | bytes | None = None, check: bool = False,
            timeout: float = SSH_TIMEOUT_SECONDS, text: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the guest over the shared SSH connection."""
        data: str | bytes | None = input
        if text and isinstance(data, bytes):
            data = data.decode()
        result = subprocess.run(self.ssh_argv(argv), input=data, capture_output=True, text=text,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise GuestError(f"in guest {self.name}: {shlex.join(argv)} exited {result.returncode}: "
                             f"{result.stderr!s}".rstrip())
        return result  # bytes when text=False (typed as str for the common case)

    def sh(self, script: str, *, check: bool = True, timeout: float = SSH_TIMEOUT_SECONDS
           ) -> subprocess.CompletedProcess[str]:
        """Run a fixed shell script in the guest (pipelines of test setup, never product commands)."""
        return self.ssh(["sh", "-c", script], check=check, timeout=timeout)

    def wait_for_ssh(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                result = self.ssh(["true"], timeout=30)
            except subprocess.TimeoutExpired:
                last = "timed out"
                continue
            if result.returncode == 0:
                return
            last = result.stderr.strip()
            time.sleep(1)
        raise GuestError(f"guest {self.name} announced ready but SSH on port {self.port} fails: {last}")

    def stop(self, timeout: float = 60.0) -> None:
        """Power off; then kill the recorded PID only if it is still our QEMU."""
        if self.stopped:
            return
        self.stopped = True
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            # Plain `poweroff` can exit 255 as the link drops; --no-block returns first.
            self.ssh(["systemctl", "--no-block", "poweroff"], timeout=20)
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            subprocess.run([*self.ssh_argv()[:-1], "-O", "exit", f"{self.user}@{self.address}"],
                           capture_output=True, timeout=10)
        deadline = time.monotonic() + timeout
        while process_alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        kill_qemu(self.pid, self.overlay)
        shutil.rmtree(self.control_dir, ignore_errors=True)
        if self.image_lock is not None:
            os.close(self.image_lock)
            self.image_lock = None

    def __enter__(self) -> Guest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def recreate_pool(guest: Guest, pool: str, size: str = "512M") -> None:
    """A fresh, empty file-backed pool /var/tmp/<pool>.img (destroyed first if present)."""
    image = f"/var/tmp/{pool}.img"
    guest.sh(f"if zpool list -H {pool} >/dev/null 2>&1; then zpool destroy -f {pool}; fi; "
             f"rm -f {image} && truncate -s {size} {image} && zpool create -f {pool} {image}")


def write_known_hosts(path: Path, port: int, host_public_key: Path) -> None:
    key_type, key_data = host_public_key.read_text().split()[:2]
    path.write_text(f"[{GUEST_ADDRESS}]:{port} {key_type} {key_data}\n")


def wait_for_ready_line(console: Path, pid: int, timeout: float, name: str,
                        ready_line: str = READY_LINE) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if console.is_file() and ready_line in console.read_text(errors="replace"):
            return
        if not process_alive(pid):
            raise GuestError(f"QEMU of guest {name} exited during boot; console:\n{console_tail(console)}")
        time.sleep(0.25)
    raise GuestError(
        f"guest {name} printed no ready line within {timeout:g}s; console:\n{console_tail(console)}")


def console_tail(console: Path, lines: int = 40) -> str:
    try:
        return "\n".join(console.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no console log)"


def start_qemu(image: ImagePaths, run_dir: Path, name: str) -> tuple[int, int]:
    """Start QEMU daemonized; returns (pid, port). Retries when the port was taken meanwhile."""
    overlay, console, pidfile = run_dir / "overlay.qcow2", run_dir / "console.log", run_dir / "qemu.pid"
    for _ in range(5):
        port = free_port()
        console.unlink(missing_ok=True)
        pidfile.unlink(missing_ok=True)
        result = subprocess.run(qemu_argv(image, overlay, console, pidfile, port), capture_output=True,
                                text=True, timeout=60)
        if result.returncode == 0:
            return int(pidfile.read_text().strip()), port
        if "hostfwd" not in result.stderr and "forwarding" not in result.stderr:
            raise GuestError(f"QEMU failed to start guest {name}: {result.stderr.strip()}")
    raise GuestError(f"QEMU could not forward a free port for guest {name}: {result.stderr.strip()}")


def start_watchdog(qemu_pid: int, overlay: Path) -> None:
    """A detached process that stops our QEMU when this process dies without stopping it
    (SIGKILL, a CI timeout), where atexit never runs; it exits with the QEMU."""
    subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--watch", str(os.getpid()),
                      str(qemu_pid), str(overlay)], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def watch(owner: int, qemu_pid: int, overlay: Path, period: float = WATCHDOG_PERIOD_SECONDS) -> None:
    """The watchdog's loop: SIGTERM, then SIGKILL, to ``qemu_pid`` once ``owner`` is gone."""
    while process_alive(qemu_pid):
        if not process_alive(owner):
            kill_qemu(qemu_pid, overlay)
            return
        time.sleep(period)


def boot(name: str, workdir: Path, *, image: ImagePaths | None = None,
         timeout: float = BOOT_TIMEOUT_SECONDS) -> Guest:
    """Boot a fresh guest (a throwaway overlay on the cached image) and wait until SSH works."""
    image = image or ensure_image()
    started = time.monotonic()
    run_dir = (workdir / name).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    overlay = run_dir / "overlay.qcow2"
    overlay.unlink(missing_ok=True)
    create_overlay(image.disk, overlay)
    # A short directory: a ControlPath socket must fit in 108 bytes.
    control_dir = Path(tempfile.mkdtemp(prefix="zr-ssh-"))
    image_lock = image.hold()
    try:
        pid, port = start_qemu(image, run_dir, name)
    except BaseException:
        os.close(image_lock)  # no guest to release it at stop()
        raise
    start_watchdog(pid, overlay)
    known_hosts = run_dir / "known_hosts"
    write_known_hosts(known_hosts, port, image.host_public_key)
    guest = Guest(name=name, image=image, workdir=run_dir, port=port, pid=pid, overlay=overlay,
                  console=run_dir / "console.log", known_hosts=known_hosts, control_dir=control_dir,
                  image_lock=image_lock)
    atexit.register(guest.stop)  # never leave a QEMU behind, even when the caller forgets
    try:
        wait_for_ready_line(guest.console, pid, timeout, name, image.ready_line)
        guest.wait_for_ssh()
    except BaseException:
        guest.stop(timeout=5)
        raise
    guest.boot_seconds = time.monotonic() - started
    return guest


def main(argv: list[str]) -> int:
    """`python3 guest.py [workdir]`: boot, print the connection facts, wait for Enter, stop.
    `guest.py --qemu-check` says whether QEMU can run here (exit 0) or why not (exit 1);
    `guest.py --watch OWNER QEMU_PID OVERLAY` is the watchdog that boot starts."""
    if argv[1:2] == ["--watch"]:
        watch(int(argv[2]), int(argv[3]), Path(argv[4]))
        return 0
    if argv[1:2] == ["--qemu-check"]:
        reason = qemu_unavailable_reason()
        print(reason or "QEMU runs here")
        return 0 if reason is None else 1
    workdir = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="zr-guest-"))
    guest = boot("manual", workdir)
    print(f"guest up in {guest.boot_seconds:.1f}s")
    print("ssh:", shlex.join(guest.ssh_argv()))
    with contextlib.suppress(EOFError, KeyboardInterrupt):
        input("press Enter to stop the guest ")
    guest.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
