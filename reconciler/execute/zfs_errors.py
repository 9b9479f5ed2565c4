"""Map ``zfs`` stderr (OpenZFS 2.1 and 2.2 wording) to typed ExecError codes.

The apply report must say *why* an action failed in words a user can act on, and the
apply loop must decide by category (e.g. a ``held`` snapshot is not a reason to stop
the other filesystems). zfs has no machine-readable errors, so we match its stable
English phrases, most specific first; anything unknown stays ``command_failed`` with
the last stderr line, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.codes import ZfsError
from reconciler.errors import ExecError, clip

# zfs names its problem in a few lines at the start, an ssh client at the end; a broken
# host may print megabytes, which every pattern would read (~1 s per MB for the table).
READ_CHARS = 1 << 16


@dataclass(frozen=True, slots=True)
class Pattern:
    code: str
    regex: re.Pattern[str]
    message: str  # what it means for the user; the raw stderr line is appended


def _p(code: str, regex: str, message: str) -> Pattern:
    return Pattern(code, re.compile(regex, re.IGNORECASE | re.DOTALL), message)


# Most specific first: e.g. "resume ... does not exist" must not become dataset_missing,
# and "it's being held" must win over the generic "dataset is busy" printed beside it.
PATTERNS: tuple[Pattern, ...] = (
    # OpenSSH client messages (send/recv run through the system ssh client).
    _p(ZfsError.HOST_KEY_CHANGED, r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED"
       r"|No \S+ host key is known for",
       "the SSH host key is unknown or changed (check known_hosts); the data path was refused"),
    _p(ZfsError.AUTH_FAILED, r"Permission denied \((publickey|password|keyboard)",
       "SSH authentication failed (check user and identity_file)"),
    _p(ZfsError.UNREACHABLE, r"ssh: connect to host|Could not resolve hostname|ssh_exchange_identification"
       r"|kex_exchange_identification|Connection closed by remote host",
       "the host could not be reached over SSH"),
    _p(ZfsError.ZFS_NOT_FOUND, r"(zfs|sudo): (command )?not found|No such file or directory: '?zfs"
       r"|exec: .*zfs.*: not found",
       "the zfs command was not found on the host (check zfs_command)"),
    _p(ZfsError.RESUME_TOKEN_INVALID,
       r"resume token is corrupt|invalid resume token|kernel modules must be upgraded to receive"
       r"|kernel (module )?lacks resume|resuming (is|was) not supported"
       r"|cannot resume send:.*(no longer exists|does not exist|modified)"
       r"|token.*(invalid|corrupt)|bad resume token|unsupported resume token",
       "the target refused the resume token of the interrupted receive; if this repeats,"
       " discard the partial state with 'zfs recv -A <target>' and the next plan sends afresh"),
    _p(ZfsError.RESUME_STATE_EXISTS,
       r"contains partially-complete state|partially-complete state from \"?zfs receive -s",
       "the target holds an interrupted receive; it must be resumed or aborted first"),
    _p(ZfsError.LARGE_BLOCKS_REQUIRED, r"requires -L \(--large-block\)|stream requires -L",
       "the replica was received with large blocks (zfs send -L) and refuses a plain stream: set"
       " compressed: true for this target again, or start a new replica"),
    _p(ZfsError.DIVERGED,
       r"has been modified\s+since most recent snapshot|destination .* has been modified"
       r"|most recent snapshot of .* does not\s+match incremental source"
       r"|destination has snapshots|local origin for clone .* does not exist"
       r"|incremental source .* no longer exists",
       "the target diverged from the source (modified or has other snapshots);"
       " it needs a manual decision, e.g. roll it back to the common snapshot"),
    _p(ZfsError.NOT_HELD, r"no such tag on this dataset",
       "the snapshot does not hold that tag (zfs release)"),
    _p(ZfsError.HELD, r"it's being held|is being held|dataset is held|snapshot is held",
       "the snapshot has a user hold (zfs holds) and cannot be destroyed"),
    _p(ZfsError.EXISTS,
       r"destination '?[^']*'? exists|dataset already exists|already exists"
       r"|must specify -F to overwrite|tag already exists",
       "the target already exists (zrepl-reconcile never overwrites with recv -F)"),
    _p(ZfsError.EXISTS, r"bookmark exists", "a bookmark of that name already exists"),
    _p(ZfsError.BUSY, r"dataset is busy|pool is busy|resource busy|device busy",
       "the dataset is busy (mounted and in use, a clone depends on it, or a hold)"),
    _p(ZfsError.NO_SPACE, r"out of space|no space left|quota exceeded|insufficient space",
       "out of space on the pool (or quota reached)"),
    _p(ZfsError.PERMISSION_DENIED,
       r"permission denied|must be run as root|operation not permitted|a password is required"
       r"|insufficient privileges|sudo: .* may not run|not allowed to execute|unable to open /dev/zfs",
       "permission denied: the user lacks zfs privileges (zfs allow, or sudo for zfs_command)"),
    _p(ZfsError.DATASET_MISSING,
       r"dataset does not exist|could not find any snapshots to destroy|no such pool"
       r"|could not find .* (snapshot|bookmark)|snapshot does not exist|bookmark does not exist"
       r"|bookmark '[^']*' does not exist"
       r"|no such (dataset|snapshot|bookmark|file or directory)",
       "the dataset or snapshot does not exist (anymore)"),
    _p(ZfsError.STREAM_BROKEN,
       r"failed to read from stream|checksum mismatch|invalid stream|incomplete stream"
       r"|stream .* (truncated|corrupt)|broken pipe|signal received|connection (closed|reset)",
       "the send stream was interrupted; the receive is resumable and the next plan resumes it"),
    _p(ZfsError.TIMEOUT, r"timed out|timeout", "the command timed out"),
)


def classify(stderr: str) -> tuple[str, str]:
    """(code, user message) for a zfs stderr text; ``command_failed`` when unknown."""
    text = ends(stderr)
    for pattern in PATTERNS:
        if pattern.regex.search(text):
            return pattern.code, pattern.message
    return ZfsError.COMMAND_FAILED, "the command failed"


def significant_line(stderr: str) -> str:
    """The stderr line that names the problem: zfs prints it first, hints ('use -F') after."""
    lines = [line.strip() for line in ends(stderr).strip().splitlines() if line.strip()]
    for line in lines:
        if line.lower().startswith(("cannot", "error", "could not", "warning: cannot")):
            return line
    return lines[-1] if lines else ""


def ends(stderr: str) -> str:
    """The start and the end of a long stderr (READ_CHARS in all), where the words are."""
    if len(stderr) <= READ_CHARS:
        return stderr
    return stderr[:READ_CHARS // 2] + "\n" + stderr[-(READ_CHARS // 2):]


def exec_error(argv: Sequence[str], returncode: int | None, stderr: str, *, what: str = "") -> ExecError:
    """An ExecError whose message names the action, the category and zfs's own words
    (its line clipped: a broken host may print megabytes on one line)."""
    code, meaning = classify(stderr)
    detail = clip(significant_line(stderr))
    status = f"exit {returncode}" if returncode is not None else "killed"
    message = f"{what}: {meaning}" if what else meaning
    message += f" (zfs: {detail})" if detail else f" ({status})"
    return ExecError(message, code=code, stderr=stderr)
