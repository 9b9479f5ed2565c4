"""The QEMU test bed's pure parts (reconciler/testbed): no guest is booted here.

What a user of the harness relies on: software emulation unless KVM truly works, SSH
forwarded on 127.0.0.1 only, only our own QEMU ever killed (also by the watchdog when
the booting process dies), strict known_hosts, the image cache keyed by the recipe,
and the Debian mirror read from the host's apt configuration.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.testbed import guest as vm

SCRIPT = vm.BUILD_SCRIPT


def image(tmp_path: Path, manifest: str = "recipe_hash=x\n") -> vm.ImagePaths:
    (tmp_path / "manifest.txt").write_text(manifest)
    return vm.ImagePaths.of(tmp_path)


# ---------------------------------------------------------------------- QEMU command line

def test_software_emulation_unless_kvm_truly_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm, "kvm_works", lambda: False)
    assert vm.accel_arguments()[:2] == ["-accel", "tcg,thread=multi,tb-size=512"]
    monkeypatch.setattr(vm, "kvm_works", lambda: True)
    assert vm.accel_arguments() == ["-accel", "kvm", "-cpu", "host"]


def test_qemu_forwards_ssh_on_loopback_only_and_records_its_pid(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm, "qemu_binary", lambda: "/usr/bin/qemu-system-x86_64")
    monkeypatch.setattr(vm, "kvm_works", lambda: False)
    overlay, pidfile = tmp_path / "overlay.qcow2", tmp_path / "qemu.pid"
    argv = vm.qemu_argv(image(tmp_path), overlay, tmp_path / "console.log", pidfile, 40022)
    netdev = argv[argv.index("-netdev") + 1]
    assert "hostfwd=tcp:127.0.0.1:40022-:22" in netdev and netdev.count("hostfwd") == 1
    assert "-nodefaults" in argv and argv[argv.index("-pidfile") + 1] == str(pidfile)
    assert argv[argv.index("-drive") + 1].startswith(f"file={overlay},")


def test_ready_line_comes_from_the_image_manifest(tmp_path: Path) -> None:
    assert image(tmp_path).ready_line == vm.READY_LINE
    assert image(tmp_path, "ready_line=OTHER-READY\n").ready_line == "OTHER-READY"


def test_known_hosts_names_the_forwarded_port(tmp_path: Path) -> None:
    key = tmp_path / "host_ed25519.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake zfsguest\n")
    known = tmp_path / "known_hosts"
    vm.write_known_hosts(known, 40022, key)
    assert known.read_text() == "[127.0.0.1]:40022 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake\n"


# ---------------------------------------------------------------------- only our QEMU is killed

@pytest.fixture
def fake_qemu(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A process whose command line looks like our QEMU on ``overlay`` (argv[0] qemu-system-…)."""
    overlay = tmp_path / "overlay.qcow2"
    overlay.write_bytes(b"")
    proc = subprocess.Popen(["qemu-system-x86_64", "-c", "import time; time.sleep(60)", str(overlay)],
                            executable=sys.executable)
    deadline = time.monotonic() + 10
    while not Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(b"qemu-system"):
        assert time.monotonic() < deadline, "the fake QEMU did not start"
        time.sleep(0.01)  # until exec: a fresh fork still shows pytest's command line
    try:
        yield proc, overlay
    finally:
        proc.kill()
        proc.wait()


def test_is_our_qemu_checks_the_command_line(fake_qemu: tuple[subprocess.Popen[bytes], Path],
                                             tmp_path: Path) -> None:
    proc, overlay = fake_qemu
    assert vm.is_our_qemu(proc.pid, overlay)
    assert not vm.is_our_qemu(proc.pid, tmp_path / "another-overlay.qcow2")
    assert not vm.is_our_qemu(os.getpid(), overlay)  # a live process that is not a QEMU


def test_kill_qemu_stops_only_a_matching_process_and_drops_the_overlay(
        fake_qemu: tuple[subprocess.Popen[bytes], Path], tmp_path: Path) -> None:
    proc, overlay = fake_qemu
    vm.kill_qemu(proc.pid, tmp_path / "another-overlay.qcow2")
    assert proc.poll() is None  # not ours: untouched
    vm.kill_qemu(proc.pid, overlay)
    assert proc.wait(timeout=10) != 0 and not overlay.exists()


def test_watchdog_stops_the_qemu_once_its_owner_is_gone(
        fake_qemu: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, overlay = fake_qemu
    owner = subprocess.Popen(["sleep", "0.3"])
    owner.wait()  # reaped: its PID is gone, as when the booting process is SIGKILLed
    started = time.monotonic()
    vm.watch(owner.pid, proc.pid, overlay, period=0.05)
    assert proc.wait(timeout=10) != 0 and time.monotonic() - started < 10
    assert not overlay.exists()


def test_watchdog_leaves_the_qemu_alone_while_its_owner_lives(
        fake_qemu: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, overlay = fake_qemu
    # The QEMU ends by itself: the watchdog returns without touching anything else.
    proc.kill()
    proc.wait()
    vm.watch(os.getpid(), proc.pid, overlay, period=0.05)
    assert overlay.exists()


# ---------------------------------------------------------------------- build-image.sh

def build_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **(env or {})})


def recipe_hash() -> str:
    return hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:16]


def test_image_directory_is_keyed_by_the_recipe_hash_under_the_cache(tmp_path: Path) -> None:
    out = build_script("--print-dir", env={"XDG_CACHE_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{tmp_path}/zrepl-reconcile-vm/{recipe_hash()}"


@pytest.mark.skipif(os.geteuid() != 0, reason="simulates sudo, which only root can")
def test_under_sudo_the_image_goes_to_the_invoking_users_cache() -> None:
    nobody_home = subprocess.run(["getent", "passwd", "65534"], capture_output=True, text=True
                                 ).stdout.split(":")[5]
    env = {k: v for k, v in os.environ.items() if k != "XDG_CACHE_HOME"}
    env.update(SUDO_UID="65534", SUDO_GID="65534", HOME="/root")
    out = subprocess.run(["bash", str(SCRIPT), "--print-dir"], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == f"{nobody_home}/.cache/zrepl-reconcile-vm/{recipe_hash()}"


def test_building_without_root_is_refused_with_the_sudo_command(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("runs as root here")
    out = build_script(env={"XDG_CACHE_HOME": str(tmp_path)})
    assert out.returncode != 0 and "sudo" in out.stderr


@pytest.mark.parametrize(("files", "mirror"), [
    ({"sources.list.d/debian.sources":
      "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n\n"
      "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"},
     "http://mirror.example/debian"),
    ({"sources.list": "deb http://security.example/debian-security bookworm-security main\n"
                      "deb [arch=amd64] http://one-line.example/debian bookworm main\n"},
     "http://one-line.example/debian"),
])
def test_the_mirror_is_read_from_the_hosts_apt_configuration(tmp_path: Path, files: dict[str, str],
                                                              mirror: str) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    # An image already built for this recipe does not change the answer.
    built = tmp_path / "cache" / "zrepl-reconcile-vm" / recipe_hash() / "manifest.txt"
    built.parent.mkdir(parents=True)
    built.write_text("recipe_hash=x\n")
    out = build_script("--print-mirror", env={"ZREPL_RECONCILE_HOST_APT": str(tmp_path),
                                              "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert (out.returncode, out.stdout.strip()) == (0, mirror), out.stderr


def test_no_mirror_is_a_clear_error(tmp_path: Path) -> None:
    out = build_script("--print-mirror", env={"ZREPL_RECONCILE_HOST_APT": str(tmp_path)})
    assert out.returncode != 0 and "cannot find a Debian mirror" in out.stderr


def test_no_mirror_host_name_is_written_in_the_recipe() -> None:
    text = SCRIPT.read_text()
    assert "debian.org" not in text and "http://" not in text and "https://" not in text


def test_qemu_check_says_whether_qemu_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm.shutil, "which", lambda name: None)
    reason = vm.qemu_unavailable_reason()
    assert reason is not None and "not installed" in reason


def test_the_guests_ssh_line_quotes_a_known_hosts_path_with_blanks(tmp_path: Path) -> None:
    g = vm.Guest(name="g", image=image(tmp_path), workdir=tmp_path, port=40022, pid=1,
                 overlay=tmp_path / "o", console=tmp_path / "c", known_hosts=tmp_path / "my demo" / "kh",
                 control_dir=tmp_path)
    argv = g.ssh_argv()
    assert f'UserKnownHostsFile="{tmp_path}/my demo/kh"' in argv
