"""The one small error tree of the project::

    ReconcileError
    ├── ConfigError        the configuration is invalid (every problem, with its position)
    ├── HostError          a host could not be used: ``host``, ``code`` (a HostProblem)
    │   ├── TransportError the executors: connecting, authenticating, host keys, timeouts,
    │   │                  a lost connection (gathering or applying)
    │   └── GatherError    gathering: what it found wrong in zfs output or a failed listing
    ├── ExecError          an action failed while applying (``code``: a ZfsError)
    │   └── LockError      another apply holds the configuration's lock
    ├── StalePlanError     a saved plan no longer matches the facts
    └── PlanFileError      a saved plan file cannot be read, is not a plan, or was edited

The CLI maps each class to an exit code and prints ``str(error)`` as one clear
message; tracebacks are shown only with ``--debug``.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.codes import HostProblem, ZfsError

MAX_QUOTED_CHARS = 1000  # of a host's output quoted in one message


class ReconcileError(Exception):
    """Base of every error this tool raises on purpose."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in a configuration file, with its position (1-based line/column)."""

    file: str
    line: int
    column: int
    path: str  # dotted field path, e.g. "policies.hourly.keep_source[1].grid"
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class UsageError(ReconcileError):
    """A value given to a command or the API is wrong (exit 1 with one message, unlike
    argparse's exit 2, which would read as "changes pending")."""


class ConfigError(ReconcileError):
    """The configuration is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[ConfigProblem] | ConfigProblem | str) -> None:
        if isinstance(problems, str):
            self.problems: list[ConfigProblem] = []
            message = problems
        else:
            self.problems = [problems] if isinstance(problems, ConfigProblem) else list(problems)
            message = "\n".join(str(p) for p in self.problems)
        super().__init__(message)


class HostError(ReconcileError):
    """A host could not be used; ``code`` says why in a word, the message in the user's terms.

    A code in ``reconciler.codes.HOST_DOWN`` makes every further command on the host
    pointless (apply then skips the host's remaining actions).
    """

    def __init__(self, host: str, code: HostProblem, message: str) -> None:
        self.host = host
        self.code = code
        super().__init__(f"host {host!r}: {message}")


class TransportError(HostError):
    """The executor could not run a command on the host, while gathering or applying:
    unreachable, timeout, auth_failed, host_key_unknown, host_key_changed (a non-zero
    exit of the command itself is a result, not this error)."""


class GatherError(HostError):
    """Gathering found the host's zfs unusable: output that is not valid zfs output
    (bad_output), or a listing that failed (zfs_not_found, permission_denied,
    command_failed, classified from what the host printed)."""


class ExecError(ReconcileError):
    """An action or command failed while applying a plan.

    ``code`` maps zfs stderr to a category: dataset_missing, permission_denied, held,
    busy, exists, no_space, resume_token_invalid, command_failed, timeout, ...
    """

    def __init__(self, message: str, code: str = ZfsError.COMMAND_FAILED, stderr: str = "") -> None:
        self.code = code
        self.stderr = stderr
        super().__init__(message)


class StalePlanError(ReconcileError):
    """A saved plan no longer matches the facts it was computed from."""


class LockError(ExecError):
    """Another apply holds the lock for this configuration."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=ZfsError.LOCKED)


class PlanFileError(ReconcileError):
    """A saved plan file (``apply --plan FILE``) cannot be read, is not a valid plan, or was edited."""


def clip(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """``text`` as one printable line of at most ``limit`` characters (control characters
    and bytes that were not UTF-8 escaped), saying how many bytes were left out: a message
    quoting what a host printed (zfs stderr, a bad line) stays one short readable line
    however much, or whatever, the host sent."""
    head = text[:limit]
    shown, used = (head, len(head)) if head.isprintable() else _printable_prefix(head, limit)
    rest = text[used:]
    return f"{shown}… ({_utf8_length(rest)} more bytes)" if rest else shown


def _printable_prefix(text: str, limit: int) -> tuple[str, int]:
    """The printable form of the longest prefix of ``text`` that fits in ``limit``
    characters once escaped, and the length of that prefix."""
    pieces: list[str] = []
    size = 0
    for used, char in enumerate(text):
        piece = _printable(char)
        if size + len(piece) > limit:
            return "".join(pieces), used
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces), len(text)


def _printable(char: str) -> str:
    if char.isprintable():
        return char
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (decoded with surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return repr(char)[1:-1]  # \n, \t, \x1b, ...: no line breaks or terminal controls


def _utf8_length(text: str) -> int:
    try:
        return len(text.encode("utf-8", "surrogateescape"))  # the bytes the host sent
    except UnicodeEncodeError:
        return len(text.encode("utf-8", "surrogatepass"))
