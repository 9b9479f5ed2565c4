"""Capture real OpenZFS outputs from the guest as parser fixtures (tests/data/zfs/real-*.txt).

    python3 -m e2e.vm.capture [OUTDIR]     (from tests/; boots a guest, captures, stops it)

or ``capture_fixtures(guest, outdir)`` on a running guest. It recreates the pools ``src``
and ``dst``, builds the scenario below, and writes:

- ``real-<what>.txt``: a command's stdout, byte for byte;
- ``real-err-<what>.txt``: ``# exit N`` on the first line, then the command's stderr.

GUIDs, txgs and times differ on every capture; names and layout do not.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reconciler.gather.zfs_output import LIST_COLUMNS as COLUMNS
from reconciler.testbed.guest import Guest, boot, recreate_pool

DEFAULT_OUTDIR = Path(__file__).resolve().parents[2] / "data" / "zfs"

LIST_COLUMNS = ",".join(COLUMNS)
LIST_ARGV = ["zfs", "list", "-H", "-p", "-t", "filesystem,volume,snapshot,bookmark", "-o", LIST_COLUMNS]

T1, T2, T3 = "zrepl_20261124_100000", "zrepl_20261124_110000", "zrepl_20261124_120000"
SPACE_FS = "src/data/with space"
COLON_FS = "src/data/colon:name"
DOTS_FS = "src/data/dots.and-dashes_under"
SPACE_SNAP = "snap with space"
COLON_SNAP = "zrepl_2026-11-24T12:00:00Z"
HELD = f"src/data@{T3}"
ENC = "src/enc"  # encrypted (passphrase), with a child inheriting it
SEALED = "dst/sealed"  # its raw replica: the key never loaded here


@dataclass(frozen=True)
class Captured:
    file: str
    argv: list[str]
    returncode: int


def q(*words: str) -> str:
    return shlex.join(words)


def build_scenario(guest: Guest) -> str:
    """Datasets, snapshots, bookmarks, holds and two interrupted receives; returns a resume token."""
    for pool in ("src", "dst"):
        recreate_pool(guest, pool)
    guest.sh("; ".join([
        "set -e",
        q("zfs", "create", "-p", "src/data/nested/deeper"),
        q("zfs", "create", SPACE_FS),
        q("zfs", "create", COLON_FS),
        q("zfs", "create", DOTS_FS),
        q("zfs", "create", "src/data/big"),
        q("zfs", "create", "-V", "16M", "src/vol"),
        "dd if=/dev/urandom of=/src/data/file bs=64k count=4 status=none",
        "dd if=/dev/urandom of=/src/data/big/blob bs=1M count=6 status=none",
        q("zfs", "snapshot", "-r", f"src/data@{T1}"),
        "dd if=/dev/urandom of=/src/data/file2 bs=64k count=2 status=none",
        q("zfs", "snapshot", "-r", f"src/data@{T2}"),
        "echo more >>/src/data/file",
        q("zfs", "snapshot", "-r", f"src/data@{T3}"),
        q("zfs", "snapshot", f"{SPACE_FS}@{SPACE_SNAP}"),
        q("zfs", "snapshot", f"{COLON_FS}@{COLON_SNAP}"),
        q("zfs", "snapshot", f"{DOTS_FS}@v1.0-rc_1"),
        q("zfs", "snapshot", "src/vol@v1"),
        q("zfs", "bookmark", f"src/data@{T1}", f"src/data#{T1}"),
        q("zfs", "bookmark", f"{SPACE_FS}@{SPACE_SNAP}", f"{SPACE_FS}#book mark"),
        q("zfs", "bookmark", f"src/data/nested@{T2}", "src/data/nested#zrepl_CURSOR_G_dst"),
        q("zfs", "hold", "keep", HELD),
        q("zfs", "hold", "tag with space", HELD),
        q("zfs", "hold", "zrepl_hold", f"src/data/nested@{T1}"),
        # A replica for the incremental and divergence errors.
        f"zfs send {q(f'src/data/nested@{T1}')} | zfs recv -u dst/replica",
        # Encryption: an encryption root and a child; the root's raw replica (keystatus
        # unavailable) with an unencrypted placeholder below it, and a replica received
        # without raw (decrypted).
        f"echo 'correct horse battery' | zfs create -o encryption=on -o keyformat=passphrase {ENC}",
        q("zfs", "create", f"{ENC}/child"),
        f"dd if=/dev/urandom of=/{ENC}/secret bs=64k count=2 status=none",
        q("zfs", "snapshot", "-r", f"{ENC}@{T1}"),
        q("zfs", "bookmark", f"{ENC}@{T1}", f"{ENC}#{T1}"),
        f"zfs send -w {q(f'{ENC}@{T1}')} | zfs recv -u -o readonly=on {SEALED}",
        q("zfs", "create", "-o", "canmount=off", "-o", "encryption=off", f"{SEALED}/placeholder"),
        f"zfs send {q(f'{ENC}@{T1}')} | zfs recv -u dst/decrypted",
        q("zfs", "snapshot", f"{ENC}@{T2}"),
        # An interrupted full receive into a new dataset...
        f"zfs send {q(f'src/data/big@{T1}')} | head -c 2000000 | zfs recv -s -u dst/partial-full || true",
        # ...and an interrupted incremental receive into an existing one.
        f"zfs send {q(f'src/data/big@{T1}')} | zfs recv -u dst/partial-incr",
        "dd if=/dev/urandom of=/src/data/big/blob2 bs=1M count=4 status=none",
        q("zfs", "snapshot", "src/data/big@more"),
        f"zfs send -i {q(f'@{T1}')} src/data/big@more | head -c 1500000"
        " | zfs recv -s -u dst/partial-incr || true",
    ]), timeout=600)
    token = guest.ssh(["zfs", "get", "-H", "-o", "value", "receive_resume_token", "dst/partial-full"],
                      check=True).stdout.strip()
    if token in ("", "-"):
        raise RuntimeError("the interrupted receive left no resume token")
    return token


def stdout_captures(token: str) -> dict[str, list[str]]:
    return {
        "real-zfs-list.txt": LIST_ARGV,
        "real-zfs-holds.txt": ["zfs", "holds", "-H", HELD, f"src/data/nested@{T1}", f"src/data@{T2}"],
        "real-zfs-holds-none.txt": ["zfs", "holds", "-H", f"src/data@{T2}"],
        "real-send-nP-full.txt": ["zfs", "send", "-nP", f"src/data@{T3}"],
        "real-send-nP-incremental.txt": ["zfs", "send", "-nP", "-i", f"@{T2}", f"src/data@{T3}"],
        "real-send-nP-intermediates.txt": ["zfs", "send", "-nP", "-I", f"@{T1}", f"src/data@{T3}"],
        "real-send-nP-from-bookmark.txt": ["zfs", "send", "-nP", "-i", f"src/data#{T1}", f"src/data@{T3}"],
        "real-send-nP-resume.txt": ["zfs", "send", "-nP", "-t", token],
        "real-zfs-version.txt": ["zfs", "version"],
    }


def prepare_error_states(guest: Guest) -> None:
    """Targets in the states the error captures need (modified, diverged)."""
    guest.sh("; ".join([
        "set -e",
        f"zfs send {q(f'src/data/nested@{T1}')} | zfs recv -u dst/modified",
        "zfs set mountpoint=/mnt/modified dst/modified && zfs mount dst/modified",
        "echo changed >/mnt/modified/changed && sync",
        f"zfs send {q(f'src/data/nested@{T1}')} | zfs recv -u dst/diverged",
        "zfs snapshot dst/diverged@local_newer",
        f"zfs send {q(f'src/data/nested/deeper@{T1}')} | zfs recv -u dst/unrelated",
    ]))


def error_captures() -> dict[str, list[str]]:
    incremental = f"zfs send -i {q(f'@{T1}')} {q(f'src/data/nested@{T2}')}"
    return {
        "real-err-destroy-held.txt": ["zfs", "destroy", HELD],
        "real-err-destroy-batch-held.txt": ["zfs", "destroy", f"src/data@{T2},{T3}"],
        "real-err-destroy-missing-snapshot.txt": ["zfs", "destroy", "src/data@does_not_exist"],
        "real-err-destroy-missing-dataset.txt": ["zfs", "destroy", "src/nope@x"],
        "real-err-destroy-missing-bookmark.txt": ["zfs", "destroy", "src/data#does_not_exist"],
        "real-err-list-missing.txt": [*LIST_ARGV, "src/nope"],
        "real-err-snapshot-missing.txt": ["zfs", "snapshot", "src/nope@x"],
        "real-err-snapshot-exists.txt": ["zfs", "snapshot", f"src/data@{T3}"],
        "real-err-bookmark-exists.txt": ["zfs", "bookmark", f"src/data@{T1}", f"src/data#{T1}"],
        "real-err-holds-missing.txt": ["zfs", "holds", "-H", "src/data@does_not_exist"],
        "real-err-send-bad-token.txt": ["zfs", "send", "-t", "1-bogus-token-0"],
        "real-err-recv-modified.txt": ["sh", "-c", f"{incremental} | zfs recv -u dst/modified"],
        "real-err-recv-no-common-snapshot.txt": ["sh", "-c", f"{incremental} | zfs recv -u dst/unrelated"],
        "real-err-recv-full-onto-existing.txt": [
            "sh", "-c", f"zfs send {q(f'src/data/nested@{T2}')} | zfs recv -u dst/replica"],
        "real-err-recv-full-onto-partial.txt": [
            "sh", "-c", f"zfs send {q(f'src/data/big@{T1}')} | zfs recv -s -u dst/partial-full"],
        "real-err-recv-incremental-onto-partial.txt": [
            "sh", "-c",
            f"zfs send -i {q(f'@{T1}')} {q(f'src/data/big@{T2}')} | zfs recv -s -u dst/partial-incr"],
        "real-err-recv-missing-parent.txt": [
            "sh", "-c", f"zfs send {q(f'src/data/nested@{T1}')} | zfs recv -u dst/no/such/parent"],
        # Issue 13, replicas: what the planner avoids and apply reads.
        "real-err-recv-raw-encryption-property.txt": [
            "sh", "-c", f"zfs send -w {q(f'{ENC}@{T1}')} | zfs recv -u -o encryption=off dst/raw-refused"],
        "real-err-recv-raw-onto-unencrypted.txt": [
            "sh", "-c", f"zfs send -w -i {q(f'@{T1}')} {q(f'{ENC}@{T2}')} | zfs recv -u dst/decrypted"],
        "real-err-create-below-locked.txt": ["zfs", "create", "-o", "canmount=off", f"{SEALED}/refused"],
        "real-err-recv-canmount-volume.txt": [
            "sh", "-c", "zfs send src/vol@v1 | zfs recv -u -o canmount=noauto dst/volume-refused"],
        "real-err-hold-exists.txt": ["zfs", "hold", "keep", HELD],
        "real-err-release-missing-tag.txt": ["zfs", "release", "no-such-tag", HELD],
    }


def observation_captures() -> dict[str, list[str]]:
    """Behaviour worth pinning down, captured after the errors above."""
    incremental = f"zfs send -i {q(f'@{T1}')} {q(f'src/data/nested@{T2}')}"
    return {
        # OpenZFS 2.1 accepts an incremental whose base is an OLDER target snapshot, even
        # when the target has a newer snapshot of its own (only a modified head is
        # refused): divergence must be detected by the planner, zfs will not refuse it.
        "real-recv-onto-newer-snapshot.txt": [
            "sh", "-c", f"{incremental} | zfs recv -u dst/diverged && "
            "zfs list -H -p -t snapshot -o name,guid,createtxg -r dst/diverged"],
        # A batch destroy (fs@a,b) with one held snapshot fails as a whole: nothing is destroyed.
        "real-list-after-failed-batch-destroy.txt": [
            "zfs", "list", "-H", "-t", "snapshot", "-o", "name", "-d", "1", "src/data"],
    }


def capture_fixtures(guest: Guest, outdir: Path = DEFAULT_OUTDIR) -> list[Captured]:
    outdir.mkdir(parents=True, exist_ok=True)
    token = build_scenario(guest)
    done: list[Captured] = []
    for name, argv in stdout_captures(token).items():
        result = guest.ssh(argv, check=True)
        (outdir / name).write_text(result.stdout)
        done.append(Captured(name, argv, result.returncode))
    prepare_error_states(guest)
    for name, argv in error_captures().items():
        result = guest.ssh(argv)
        if result.returncode == 0:
            raise RuntimeError(f"{shlex.join(argv)} was expected to fail but succeeded")
        (outdir / name).write_text(f"# exit {result.returncode}\n{result.stderr}")
        done.append(Captured(name, argv, result.returncode))
    for name, argv in observation_captures().items():
        result = guest.ssh(argv, check=True)
        (outdir / name).write_text(result.stdout)
        done.append(Captured(name, argv, result.returncode))
    write_index(outdir, done, guest.ssh(["zfs", "version"], check=True).stdout.split()[0])
    return done


def write_index(outdir: Path, captured: list[Captured], version: str) -> None:
    """The per-file commands, so the README does not have to repeat them by hand."""
    lines = [f"# Captured from {version} by tests/e2e/vm/capture.py; file, exit code, command", ""]
    lines += [f"{c.file}\t{c.returncode}\t{shlex.join(c.argv)}" for c in captured]
    (outdir / "real-INDEX.tsv").write_text("\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    outdir = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTDIR
    with boot("capture", Path(tempfile.mkdtemp(prefix="zr-capture-"))) as guest:
        captured = capture_fixtures(guest, outdir)
    print(f"wrote {len(captured)} files to {outdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
