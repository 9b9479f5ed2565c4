"""Every code the tool gives a machine: one closed set each, written once.

Codes are strings in the Plan JSON and in reports (StrEnum members compare equal to,
and print as, their values), so consumers keep matching on the strings.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ExitCode(IntEnum):
    """What the process exits with (README "Exit codes")."""

    OK = 0  # success, or no changes
    ERROR = 1  # an error, a failed or stopped apply; never "changes pending"
    CHANGES = 2  # changes pending (plan --detailed-exitcode)
    UNHEALTHY = 2  # status: a target lags, a last apply failed, a host is unreachable (CHANGES's alias)


class ConflictCode(StrEnum):
    """Why the plan does nothing for a target (DESIGN.md, safety invariant 5) or a source."""

    NO_COMMON_SNAPSHOT = "no_common_snapshot"
    DIVERGED = "diverged"
    GUID_MISMATCH = "guid_mismatch"
    TARGET_NOT_FILESYSTEM = "target_not_filesystem"
    HOST_UNAVAILABLE = "host_unavailable"
    CLAIMED_TWICE = "claimed_twice"
    TARGET_POOL_MISSING = "target_pool_missing"
    NAME_TOO_LONG = "name_too_long"
    LARGE_BLOCKS_REQUIRED = "large_blocks_required"  # a replica with large blocks, plain streams asked
    UNENCRYPTED_REPLICA = "unencrypted_replica"  # an encrypted source would be (or is) replicated decrypted


class HostProblem(StrEnum):
    """Why a host could not be used: by its transport (gathering or applying) or its zfs output."""

    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    AUTH_FAILED = "auth_failed"
    HOST_KEY_UNKNOWN = "host_key_unknown"
    HOST_KEY_CHANGED = "host_key_changed"
    ZFS_NOT_FOUND = "zfs_not_found"
    PERMISSION_DENIED = "permission_denied"
    BAD_OUTPUT = "bad_output"
    COMMAND_FAILED = "command_failed"


# Failures that make every further command on the host pointless.
HOST_DOWN = frozenset({HostProblem.UNREACHABLE, HostProblem.AUTH_FAILED, HostProblem.HOST_KEY_UNKNOWN,
                       HostProblem.HOST_KEY_CHANGED})


class ZfsError(StrEnum):
    """Why a command failed while applying (zfs stderr classified, or the apply's own)."""

    DATASET_MISSING = "dataset_missing"
    PERMISSION_DENIED = "permission_denied"
    HELD = "held"
    BUSY = "busy"
    DIVERGED = "diverged"
    EXISTS = "exists"
    NO_SPACE = "no_space"
    RESUME_TOKEN_INVALID = "resume_token_invalid"
    RESUME_STATE_EXISTS = "resume_state_exists"
    NOT_HELD = "not_held"  # zfs release of a tag the snapshot does not hold
    STREAM_BROKEN = "stream_broken"
    TIMEOUT = "timeout"
    ZFS_NOT_FOUND = "zfs_not_found"
    UNREACHABLE = "unreachable"  # the system ssh client of the data path could not connect
    HOST_KEY_CHANGED = "host_key_changed"  # ... or refused the host key (unknown or changed)
    AUTH_FAILED = "auth_failed"
    COMMAND_FAILED = "command_failed"
    LOCKED = "locked"  # another apply holds the configuration's lock
    ABORTED = "aborted"  # a second stop signal interrupted a transfer
    STALLED = "stalled"  # no byte moved for the target's stall_timeout: stopped, resumable
    LARGE_BLOCKS_REQUIRED = "large_blocks_required"  # recv refused a stream without -L (see ConflictCode)


class MetadataPath(StrEnum):
    """How apply runs a host's cursor bookmarks and snapshot destroys (the plan's ``metadata``)."""

    CHANNEL_PROGRAM = "channel_program"  # one ``zfs program`` per pool (root only)
    PER_COMMAND = "per_command"  # one zfs command per action


class PruneRule(StrEnum):
    """Which side of the rule from zrepl's history applies to a source's pruning."""

    PRUNE_WINS = "prune_wins"  # keep_source has no not_replicated: pruning proceeds regardless
    REPLICATION_PROTECTED = "replication_protected"  # not_replicated: unreplicated never destroyed


class PairResult(StrEnum):
    """What the last apply cycle did for one filesystem (and target): the state file's ``result``."""

    OK = "ok"  # everything planned for it was done (or nothing was needed)
    FAILED = "failed"  # an action failed
    SKIPPED = "skipped"  # an action was skipped because another failed, none of its own failed
    STOPPED = "stopped"  # a stop request ended the apply before its actions ran
    CONFLICT = "conflict"  # the plan did nothing there: a conflict that needs a person
    UNAVAILABLE = "unavailable"  # its host (or the target's) could not be reached


class CycleResult(StrEnum):
    """How one apply/run cycle ended, as the state file and the metrics record it."""

    OK = "ok"
    FAILED = "failed"  # some action failed (or a saved plan's action was skipped)
    STOPPED = "stopped"  # a signal stopped it between actions
    ERROR = "error"  # it could not plan or apply at all (the message says why)
