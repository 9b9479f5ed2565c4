"""Channel programs (``zfs program``): a host's cursor bookmarks and snapshot
destroys as ONE Lua program per pool instead of one zfs process each.

The program is fixed text (``channel.lua``, first line ``SCRIPT_MARKER``) sent on the
command's stdin; the names travel as its arguments, never inside Lua source. Measured on
OpenZFS 2.1.11 (the QEMU guest, docs/architecture.md):

- ``zfs program -j POOL - ARGS`` reads the script from stdin (also over SSH); success
  prints ``{"return":{"1":0,"2":16}}`` (a Lua list becomes an object keyed "1", "2", ...;
  no newline at the end) and exits 0.
- A Lua error or a refusal prints nothing on stdout, exits 1 and says why on stderr after
  "Channel program execution failed:"; a non-root user (even with ``zfs allow``) gets
  "Permission denied. Channel programs must be run as root.". Changes made before a Lua
  error stay (no rollback), so the script checks its whole argument list first.
- ``zfs.sync.bookmark(snap, bm)``: 0, EEXIST 17 (bookmark exists), ENOENT 2 (no snapshot).
  ``zfs.sync.destroy(ds@snap)``: 0 (also for a snapshot that does not exist), EBUSY 16
  (held), EEXIST 17 (a clone's origin: it has dependent clones), EXDEV 18 (another pool).
  ``zfs.sync.destroy(ds#bm)`` answers ENOENT and destroys nothing: 2.1 cannot destroy a
  bookmark in a program, so bookmark destroys stay one ``zfs destroy ds#bm`` each.
- All sync calls of one program happen in one txg (snapshots taken in one program share
  their createtxg). Default limits: 10,000,000 Lua instructions, 10 MiB memory; 2,000
  destroys in one program stayed far within both (39 s under emulation, one txg).
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from reconciler.codes import ZfsError
from reconciler.domain.actions import MAX_ARGV_BYTES, sized_groups
from reconciler.transport.interface import Executor

SCRIPT_MARKER = "-- zrepl-reconcile channel program v1"
# Names per program: a program runs in syncing context (the pool's txg waits for it), so
# a mass prune is cut into programs of at most this many operations (2,000 measured fine).
MAX_PROGRAM_OPS = 1000
# (operation, errno) -> (ZfsError code, message), as zfs.sync.* returns them (OpenZFS 2.1.11,
# Linux errnos, measured); the same errno means different things to the two operations.
ERRNO_CODES: dict[tuple[str, int], tuple[str, str]] = {
    ("destroy", 16): (ZfsError.BUSY, "the snapshot is busy (held)"),
    ("destroy", 17): (ZfsError.BUSY, "the snapshot has dependent clones"),
    ("bookmark", 2): (ZfsError.DATASET_MISSING, "the snapshot does not exist"),
    ("bookmark", 17): (ZfsError.EXISTS, "a bookmark of that name already exists"),
    ("destroy", 1): (ZfsError.PERMISSION_DENIED, "permission denied"),
    ("bookmark", 1): (ZfsError.PERMISSION_DENIED, "permission denied"),
    ("destroy", 28): (ZfsError.NO_SPACE, "out of space"),
    ("bookmark", 28): (ZfsError.NO_SPACE, "out of space"),
}


@functools.cache
def script() -> bytes:
    """The channel program's text, as shipped (``channel.lua``)."""
    return resources.files("reconciler.execute").joinpath("channel.lua").read_bytes()


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a program: ``bookmark SNAP BM`` or ``destroy SNAP``."""

    words: tuple[str, ...]

    @classmethod
    def bookmark(cls, snapshot: str, bookmark: str) -> Op:
        return cls(("bookmark", snapshot, bookmark))

    @classmethod
    def destroy(cls, snapshot: str) -> Op:
        return cls(("destroy", snapshot))

    def cost(self) -> int:
        """Bytes of argv (each word with its NUL, as execve counts)."""
        return sum(len(word.encode()) + 1 for word in self.words)


def program_argv(pool: str, ops: Sequence[Op]) -> list[str]:
    """``zfs program -j POOL - WORDS...``: the script comes on stdin."""
    return ["zfs", "program", "-j", pool, "-", *(word for op in ops for word in op.words)]


def chunked(ops: Sequence[Op], max_ops: int = MAX_PROGRAM_OPS, max_bytes: int = MAX_ARGV_BYTES
            ) -> list[tuple[int, int]]:
    """(start, end) slices of ``ops``, each at most ``max_ops`` operations and ``max_bytes``
    of argv (the same bound as every batched zfs command)."""
    groups = sized_groups(ops, Op.cost, max_bytes, fixed=len(b"zfs\0program\0-j\0-\0") + 64,
                          max_items=max_ops)
    ends = list(itertools.accumulate(len(group) for group in groups))
    return list(zip([0, *ends[:-1]], ends, strict=True))


@dataclass(frozen=True, slots=True)
class ProgramResult:
    """What one program did: an errno per operation, or why zfs refused the whole program
    (``refusal``; then it changed nothing the script did not report: see the module docstring)."""

    errnos: tuple[int, ...] = ()
    refusal: str = ""


def run_program(executor: Executor, pool: str, ops: Sequence[Op]) -> ProgramResult:
    """Run one program; TransportError (the host is down) is the caller's."""
    argv = program_argv(pool, ops)
    result = executor.run(argv, input=script())
    if result.ok:
        errnos = parse_return(result.stdout, len(ops))
        if errnos is not None:
            return ProgramResult(errnos)
        return ProgramResult(refusal=f"unexpected output {result.stdout[:120]!r}")
    return ProgramResult(refusal=refusal_text(result.stderr, result.returncode))


def parse_return(stdout: str, count: int) -> tuple[int, ...] | None:
    """The errnos in ``{"return": {"1": 0, ...}}``; None unless exactly ``count`` integers."""
    try:
        document = json.loads(stdout)
    except ValueError:
        return None
    returned = document.get("return") if isinstance(document, dict) else None
    if not isinstance(returned, dict):
        return None
    try:
        errnos = tuple(returned[str(n)] for n in range(1, count + 1))
    except KeyError:
        return None
    if len(returned) != count or not all(isinstance(e, int) and not isinstance(e, bool) for e in errnos):
        return None
    return errnos


def refusal_text(stderr: str, returncode: int) -> str:
    """zfs's own reason in one line ("Permission denied. Channel programs must be run as root.")."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Channel program execution failed")
             and not line.startswith(("stack traceback", "[C]:"))]
    return lines[0] if lines else f"exit {returncode}"


def errno_error(op: Op, errno: int) -> tuple[str, str]:
    """(ZfsError code, message) for the errno a program returned for ``op``."""
    code, message = ERRNO_CODES.get((op.words[0], errno), (ZfsError.COMMAND_FAILED, "zfs refused it"))
    return code, f"{message} (zfs program: errno {errno})"
