"""The closed vocabulary of actions a plan may contain, and the one order they run in.

Each action is a frozen, slotted dataclass that declares its ``kind`` once (a ``Kind``
literal), with ``describe()`` (one human line), ``argv()`` (the exact zfs command; the
executor replaces the leading ``"zfs"`` with the host's ``zfs_command``), a ``reason``,
``to_json()`` and ``from_json()`` (the public Plan JSON contract, docs/plan-json.md).
Rendering and executing read the very same objects.

Closed: ``Action`` is the union of every class, ``ACTION_CLASSES`` (kind -> class, for
reading a saved plan) is derived from it, and the code that treats kinds differently
(rendering, simulate, apply, the planner's order) matches on the action or its kind and
ends in ``assert_never``, so mypy names every place a new kind must be handled.
"""

from __future__ import annotations

import itertools
import json
import shlex
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, ClassVar, Literal, Self, TypeVar, get_args

from reconciler.errors import PlanFileError, clip
from reconciler.wording import plural

# Every action kind, in EXECUTION ORDER: the planner writes a plan's actions in this
# order and apply runs them in the plan's order. Each step may rely on the ones before:
# snapshots first (the sends carry them), placeholders before the receives into them,
# a stale partial receive discarded before the send that replaces it, holds before the
# sends they protect (a send step's snapshots), a hold on what a send made arrive only
# after it (the last received snapshot), the cursor bookmark moved only after its send,
# holds released once sends, new holds and cursors are done (never without a hold in
# between), and destroys last (invariant 3: a base goes only once its bookmark exists).
#
# The first three kinds are ONE phase, the snapshot phase: a filesystem's pre hooks run
# right before its snapshot and its post hooks right after it (an application stays
# frozen no longer than its own snapshot takes), so they interleave per filesystem and
# share a rank; ``out_of_order`` checks that each hook sits right next to its snapshot.
Kind = Literal["pre_hook", "snapshot", "post_hook", "create", "abort_resume", "hold", "send", "hold_received",
               "bookmark", "release", "destroy"]
EXECUTION_ORDER: tuple[Kind, ...] = get_args(Kind)
SNAPSHOT_PHASE: tuple[Kind, ...] = ("pre_hook", "snapshot", "post_hook")
KIND_RANK: Mapping[Kind, int] = {kind: 0 if kind in SNAPSHOT_PHASE else rank
                                 for rank, kind in enumerate(EXECUTION_ORDER)}

# A transfer that moves no byte for this long is stopped (Target.stall_timeout's default).
DEFAULT_STALL_SECONDS = 600
# Set on every receive of a stream that keeps large blocks (zfs send -L, and -w which
# implies it): OpenZFS then refuses any later incremental without -L ("incremental send
# stream requires -L (--large-block), to match previous receive", measured on 2.1), so a
# plan must know which replicas need it. A user property, set with ``zfs recv -o``.
LARGE_BLOCKS_PROPERTY = "zrepl-reconcile:large_blocks"

# Linux ARG_MAX is far larger, but ssh, sshd and sudo add their own limits; stay well
# inside. Every batched zfs command (destroy, holds, list) uses this bound.
MAX_ARGV_BYTES = 64 * 1024

T = TypeVar("T")


def sized_groups(items: Iterable[T], cost: Callable[[T], int], max_bytes: int = MAX_ARGV_BYTES,
                 fixed: int = 0, max_items: int | None = None) -> list[list[T]]:
    """``items`` in order, in groups whose ``fixed`` bytes plus each item's ``cost`` stay
    within ``max_bytes`` (and at most ``max_items`` items); an item too big alone gets a
    group of its own. The one argv-size bound of every batched zfs command."""
    groups: list[list[T]] = []
    size = 0
    for item in items:
        each = cost(item)
        if not groups or size + each > max_bytes or (max_items is not None and len(groups[-1]) >= max_items):
            groups.append([])
            size = fixed
        groups[-1].append(item)
        size += each
    return groups


def snapshot_ref(dataset: str, name: str) -> str:
    """``dataset@name`` for a snapshot, ``dataset#name`` for a ``#bookmark`` name."""
    if name.startswith("#"):
        return f"{dataset}{name}"
    return f"{dataset}@{name}"


@dataclass(frozen=True, slots=True)
class SnapshotAction:
    """Take one snapshot. Actions sharing ``batch`` are taken in ONE atomic ``zfs snapshot``."""

    kind: ClassVar[Literal["snapshot"]] = "snapshot"
    host: str
    dataset: str
    snapshot: str
    batch: str
    reason: str = ""

    def describe(self) -> str:
        return f"create snapshot {self.dataset}@{self.snapshot}"

    def argv(self) -> list[str]:
        return ["zfs", "snapshot", f"{self.dataset}@{self.snapshot}"]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "host": self.host, "dataset": self.dataset,
                "snapshot": self.snapshot, "batch": self.batch, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(data["host"], data["dataset"], data["snapshot"],
                   data.get("batch", f"{data['host']}:{data['dataset']}"), data.get("reason", ""))


def snapshot_batch_argv(actions: list[SnapshotAction]) -> list[str]:
    """One atomic ``zfs snapshot a@x b@x ...`` for actions of the same batch."""
    return ["zfs", "snapshot", *(f"{a.dataset}@{a.snapshot}" for a in actions)]


# The variables a hook finds in its environment (zrepl's ZREPL_FS, ZREPL_SNAPNAME and
# ZREPL_HOOKTYPE under our own prefix).
HOOK_ENV_FS = "ZREPL_RECONCILE_FS"
HOOK_ENV_SNAPNAME = "ZREPL_RECONCILE_SNAPNAME"
HOOK_ENV_HOOK = "ZREPL_RECONCILE_HOOK"


@dataclass(frozen=True, slots=True)
class _HookAction:
    """One edge of a snapshot hook (``snapshots.hooks[hook]`` of the filesystem's policy):
    ``command`` (an argv, never a shell string) run on ``host`` around the snapshot
    ``dataset@snapshot``, killed after ``timeout`` seconds. The fields pre and post share."""

    kind: ClassVar[Literal["pre_hook", "post_hook"]]
    edge: ClassVar[Literal["pre", "post"]]
    host: str
    dataset: str
    snapshot: str
    hook: int  # its position in the policy's snapshots.hooks, from 0
    command: tuple[str, ...]
    timeout: int  # seconds
    reason: str = ""

    def env(self) -> dict[str, str]:
        """The variables the hook runs with, added to its host's environment."""
        return {HOOK_ENV_FS: self.dataset, HOOK_ENV_SNAPNAME: self.snapshot, HOOK_ENV_HOOK: self.edge}

    def command_text(self) -> str:
        """The argv as one line a person can read: quoted as a POSIX shell would split it
        back, control characters escaped, at most ``clip``'s length. For showing only: the
        hook runs the argv itself."""
        return clip(shlex.join(self.command))

    def argv(self) -> list[str]:
        return list(self.command)

    def snapshot_key(self) -> tuple[str, str, str]:
        """(host, dataset, snapshot): the snapshot this hook runs around."""
        return self.host, self.dataset, self.snapshot

    def _json(self) -> dict[str, Any]:
        return {"kind": self.kind, "host": self.host, "dataset": self.dataset, "snapshot": self.snapshot,
                "hook": self.hook, "command": list(self.command), "timeout_seconds": self.timeout}


@dataclass(frozen=True, slots=True)
class PreHookAction(_HookAction):
    """Run a pre hook right before the filesystem's snapshot. When it fails (non-zero exit,
    timeout) and ``err_is_fatal``, the filesystem's further pre hooks and its snapshot are
    skipped (and what depends on the snapshot); otherwise the failure is only reported."""

    kind: ClassVar[Literal["pre_hook"]] = "pre_hook"
    edge: ClassVar[Literal["pre"]] = "pre"
    err_is_fatal: bool = False

    def describe(self) -> str:
        return f"run pre hook {self.command_text()} before {self.dataset}@{self.snapshot}"

    def to_json(self) -> dict[str, Any]:
        return {**self._json(), "err_is_fatal": self.err_is_fatal, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(data["host"], data["dataset"], data["snapshot"], data["hook"], tuple(data["command"]),
                   data["timeout_seconds"], data.get("reason", ""), bool(data.get("err_is_fatal", False)))


@dataclass(frozen=True, slots=True)
class PostHookAction(_HookAction):
    """Run a post hook right after the filesystem's snapshot: also when a pre hook of the
    same hook failed or the snapshot failed (zrepl #392: a freeze must always be undone);
    not when its hook was never entered (an earlier pre hook failed with err_is_fatal, or
    the filesystem was skipped before its hooks began)."""

    kind: ClassVar[Literal["post_hook"]] = "post_hook"
    edge: ClassVar[Literal["post"]] = "post"

    def describe(self) -> str:
        return f"run post hook {self.command_text()} after {self.dataset}@{self.snapshot}"

    def to_json(self) -> dict[str, Any]:
        return {**self._json(), "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(data["host"], data["dataset"], data["snapshot"], data["hook"], tuple(data["command"]),
                   data["timeout_seconds"], data.get("reason", ""))


HookAction = PreHookAction | PostHookAction


@dataclass(frozen=True, slots=True)
class CreateAction:
    """Create a missing parent of a replication target as an unmounted placeholder.

    ``encryption_off``: below an encrypted dataset whose key is not loaded (a raw replica)
    zfs refuses a child that would inherit the encryption ("encryption root's key is not
    loaded or provided"); an unencrypted placeholder works, and raw receives below it stay
    encrypted (measured on OpenZFS 2.1)."""

    kind: ClassVar[Literal["create"]] = "create"
    host: str
    dataset: str
    reason: str = ""
    encryption_off: bool = False

    @property
    def properties(self) -> dict[str, str]:
        """``zfs create -o`` NAME=VALUE."""
        return {"canmount": "off", **({"encryption": "off"} if self.encryption_off else {})}

    def describe(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.properties.items())
        return f"create placeholder {self.dataset} ({options})"

    def argv(self) -> list[str]:
        options = [word for k, v in self.properties.items() for word in ("-o", f"{k}={v}")]
        return ["zfs", "create", *options, self.dataset]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "host": self.host, "dataset": self.dataset, "properties": self.properties,
                "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        properties = data.get("properties") or {}
        return cls(data["host"], data["dataset"], data.get("reason", ""),
                   encryption_off=properties.get("encryption") == "off")


@dataclass(frozen=True, slots=True)
class SendAction:
    """Replicate ``snapshots`` of ``host:dataset`` to ``target_host:target_dataset``.

    ``base`` is the incremental base: a snapshot name, a ``#bookmark`` or None (full
    send). With ``resume_token`` set, the send resumes an interrupted receive instead.
    """

    kind: ClassVar[Literal["send"]] = "send"
    host: str
    dataset: str
    snapshot: str  # the newest snapshot that arrives
    target_host: str
    target_dataset: str
    base: str | None
    snapshots: tuple[str, ...]
    resume_token: str | None = None
    raw: bool = False
    estimated_bytes: int | None = None
    reason: str = ""
    compressed: bool = False  # non-raw: zfs send -L -c -e (Target.compressed)
    bandwidth_limit: int | None = None  # bytes per second through the relay; None: unlimited
    stall_timeout: int = DEFAULT_STALL_SECONDS  # seconds without a byte moved before it is stopped

    @property
    def large_blocks(self) -> bool:
        """The stream keeps large blocks: -L, or -w (raw implies -L -c -e)."""
        return self.raw or self.compressed

    def stream_flags(self) -> list[str]:
        """The flags that decide how the stream looks: ``-w`` (raw), ``-L -c -e`` (compressed)."""
        if self.raw:
            return ["-w"]
        return ["-L", "-c", "-e"] if self.compressed else []
    send_properties: bool = False  # zfs send -p
    overrides: tuple[tuple[str, str], ...] = ()  # zfs recv -o NAME=VALUE, in order
    excludes: tuple[str, ...] = ()  # zfs recv -x NAME

    def describe(self) -> str:
        target = f"{self.target_host}:{self.target_dataset}"
        if self.resume_token:
            return f"resume send of {self.dataset}@{self.snapshot} to {target}"
        if self.base is None:
            return f"full send {self.dataset}@{self.snapshot} to {target}"
        return (f"incremental send {self.dataset} {self.base} -> @{self.snapshot} to {target}"
                f" ({plural(len(self.snapshots), 'snapshot')})")

    def send_argv(self) -> list[str]:
        if self.resume_token:
            return ["zfs", "send", "-t", self.resume_token]
        argv = ["zfs", "send", *self.stream_flags()]
        if self.send_properties:
            argv.append("-p")
        if self.base is not None:
            # -I sends every intermediate snapshot; from a bookmark only -i is allowed,
            # so the planner emits a bookmark-based send for one snapshot at a time.
            argv += ["-i" if self.base.startswith("#") else "-I", snapshot_ref(self.dataset, self.base)]
        argv.append(f"{self.dataset}@{self.snapshot}")
        return argv

    def estimate_argv(self) -> list[str]:
        """``zfs send -nP ...`` for a size estimate (parsable 'size' line)."""
        argv = self.send_argv()
        return [argv[0], argv[1], "-n", "-P", *argv[2:]]

    def recv_options(self) -> list[str]:
        """``-o NAME=VALUE ... -x NAME ...``: applied on every receive, resumed ones too (the
        properties a partial receive set stay when it is resumed without them)."""
        return [*(w for k, v in self.overrides for w in ("-o", f"{k}={v}")),
                *(w for k in self.excludes for w in ("-x", k))]

    def recv_argv(self) -> list[str]:
        marker = ["-o", f"{LARGE_BLOCKS_PROPERTY}=on"] if self.large_blocks else []
        return ["zfs", "recv", "-s", "-u", *marker, *self.recv_options(), self.target_dataset]

    def argv(self) -> list[str]:
        return self.send_argv()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "host": self.host, "dataset": self.dataset,
            "source": {"host": self.host, "dataset": self.dataset, "snapshot": self.snapshot},
            "target": {"host": self.target_host, "dataset": self.target_dataset},
            "base": self.base, "snapshots": list(self.snapshots),
            "resume_token": self.resume_token, "raw": self.raw, "send_properties": self.send_properties,
            "properties": {"override": dict(self.overrides), "exclude": list(self.excludes)},
            "estimated_bytes": self.estimated_bytes, "reason": self.reason,
            "compressed": self.compressed, "bandwidth_limit": self.bandwidth_limit,
            "stall_timeout_seconds": self.stall_timeout,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        properties = data.get("properties") or {}
        return cls(
            host=data["source"]["host"], dataset=data["source"]["dataset"],
            snapshot=data["source"]["snapshot"], target_host=data["target"]["host"],
            target_dataset=data["target"]["dataset"], base=data.get("base"),
            snapshots=tuple(data.get("snapshots", ())), resume_token=data.get("resume_token"),
            raw=bool(data.get("raw", False)), estimated_bytes=data.get("estimated_bytes"),
            reason=data.get("reason", ""), compressed=bool(data.get("compressed", False)),
            bandwidth_limit=data.get("bandwidth_limit"),
            stall_timeout=data.get("stall_timeout_seconds", DEFAULT_STALL_SECONDS),
            send_properties=bool(data.get("send_properties", False)),
            overrides=tuple(properties.get("override", {}).items()),
            excludes=tuple(properties.get("exclude", ())))


@dataclass(frozen=True, slots=True)
class AbortResumeAction:
    """Discard a partial receive whose resume token can no longer be used (``zfs recv -A``)."""

    kind: ClassVar[Literal["abort_resume"]] = "abort_resume"
    host: str
    dataset: str
    reason: str = ""

    def describe(self) -> str:
        return f"discard partial receive state of {self.dataset}"

    def argv(self) -> list[str]:
        return ["zfs", "recv", "-A", self.dataset]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "host": self.host, "dataset": self.dataset, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(data["host"], data["dataset"], data.get("reason", ""))


@dataclass(frozen=True, slots=True)
class BookmarkAction:
    """Create bookmark ``dataset#bookmark`` of ``dataset@snapshot`` (replication cursors)."""

    kind: ClassVar[Literal["bookmark"]] = "bookmark"
    host: str
    dataset: str
    snapshot: str
    bookmark: str  # short name without '#'
    reason: str = ""

    def describe(self) -> str:
        return f"bookmark {self.dataset}@{self.snapshot} as #{self.bookmark}"

    def argv(self) -> list[str]:
        return ["zfs", "bookmark", f"{self.dataset}@{self.snapshot}", f"{self.dataset}#{self.bookmark}"]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "host": self.host, "dataset": self.dataset,
                "snapshot": self.snapshot, "bookmark": f"#{self.bookmark}", "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(data["host"], data["dataset"], data["snapshot"], data["bookmark"].lstrip("#"),
                   data.get("reason", ""))


@dataclass(frozen=True, slots=True)
class _TagAction:
    """A user hold (``tag``) on ``dataset@snapshot``: the fields hold and release share."""

    kind: ClassVar[Literal["hold", "hold_received", "release"]]
    host: str
    dataset: str
    snapshot: str
    tag: str
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "host": self.host, "dataset": self.dataset,
                "snapshot": self.snapshot, "tag": self.tag, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(data["host"], data["dataset"], data["snapshot"], data["tag"], data.get("reason", ""))


@dataclass(frozen=True, slots=True)
class HoldAction(_TagAction):
    """Place user hold ``tag`` on ``dataset@snapshot``: zfs refuses to destroy it until released."""

    kind: ClassVar[Literal["hold"]] = "hold"

    def describe(self) -> str:
        return f"hold {self.dataset}@{self.snapshot} with tag {self.tag}"

    def argv(self) -> list[str]:
        return ["zfs", "hold", self.tag, f"{self.dataset}@{self.snapshot}"]


@dataclass(frozen=True, slots=True)
class HoldReceivedAction(_TagAction):
    """Place user hold ``tag`` on ``dataset@snapshot`` that a send of this plan made arrive
    (the last received snapshot of a replica): after the sends, before the old hold's release."""

    kind: ClassVar[Literal["hold_received"]] = "hold_received"

    def describe(self) -> str:
        return f"hold received {self.dataset}@{self.snapshot} with tag {self.tag}"

    def argv(self) -> list[str]:
        return ["zfs", "hold", self.tag, f"{self.dataset}@{self.snapshot}"]


@dataclass(frozen=True, slots=True)
class ReleaseAction(_TagAction):
    """Release user hold ``tag`` from ``dataset@snapshot``."""

    kind: ClassVar[Literal["release"]] = "release"

    def describe(self) -> str:
        return f"release hold {self.tag} on {self.dataset}@{self.snapshot}"

    def argv(self) -> list[str]:
        return ["zfs", "release", self.tag, f"{self.dataset}@{self.snapshot}"]


@dataclass(frozen=True, slots=True)
class DestroyAction:
    """Destroy snapshots (short names) and bookmarks (``#name``) of one dataset.

    ``reasons`` is a tuple of (name, reason) pairs so the action stays hashable.
    """

    kind: ClassVar[Literal["destroy"]] = "destroy"
    host: str
    dataset: str
    snapshots: tuple[str, ...]
    reasons: tuple[tuple[str, str], ...] = ()
    reason: str = ""
    # ``reasons`` as a dict, built on the first ``reason_for``: asking for every name of a
    # first mass prune (thousands per dataset) must not rebuild it each time.
    _by_name: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def describe(self) -> str:
        return f"destroy {plural(len(self.snapshots), 'snapshot')} of {self.dataset}"

    def reason_for(self, name: str) -> str:
        by_name = self._by_name
        if by_name is None:
            by_name = dict(self.reasons)
            object.__setattr__(self, "_by_name", by_name)
        return by_name.get(name, self.reason)

    def reasons_in_order(self, empty: str = "") -> list[str]:
        """``reason_for(name)`` for every name in ``snapshots`` order, ``empty`` instead of an
        empty reason.

        Rendering walks a million of these: one mapping per call, not kept on the action."""
        by_name = self._by_name if self._by_name is not None else dict(self.reasons)
        reasons = list(map(by_name.get, self.snapshots, repeat(self.reason)))
        if empty and "" in reasons:
            reasons = [reason or empty for reason in reasons]
        return reasons

    def rows(self, empty: str = "") -> list[tuple[str, str]]:
        """(name, reason) for every name in ``snapshots`` order (see ``reasons_in_order``)."""
        return list(zip(self.snapshots, self.reasons_in_order(empty), strict=True))

    def argv_batches(self, max_bytes: int = MAX_ARGV_BYTES) -> list[list[str]]:
        """``zfs destroy ds@a,b,c`` commands, split so that each whole argv (UTF-8 bytes, each
        argument with its terminating NUL, as execve counts) stays within ``max_bytes``;
        bookmarks one each."""
        marks = [["zfs", "destroy", f"{self.dataset}{name}"]
                 for name in self.snapshots if name.startswith("#")]
        # "zfs\0destroy\0" + "dataset@"; each name adds itself and a comma (the last one its NUL).
        fixed = len(b"zfs\0destroy\0") + len(self.dataset.encode()) + 1
        names = sized_groups((n for n in self.snapshots if not n.startswith("#")),
                             lambda name: len(name.encode()) + 1, max_bytes, fixed)
        return [*marks, *(["zfs", "destroy", f"{self.dataset}@{','.join(group)}"] for group in names)]

    def argv(self) -> list[str]:
        """The first command; ``argv_batches()`` gives every command this action runs."""
        return self.argv_batches()[0]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "host": self.host, "dataset": self.dataset,
                "snapshots": list(self.snapshots), "reasons": dict(self.reasons),
                "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        reasons = data.get("reasons", {})
        return cls(data["host"], data["dataset"], tuple(data["snapshots"]),
                   tuple((n, reasons[n]) for n in data["snapshots"] if n in reasons), data.get("reason", ""))


Action = (PreHookAction | SnapshotAction | PostHookAction | CreateAction | SendAction | AbortResumeAction
          | BookmarkAction | HoldAction | HoldReceivedAction | ReleaseAction | DestroyAction)
TagAction = HoldAction | HoldReceivedAction | ReleaseAction

# The registry for reading a saved plan: every class of the union, by the kind it declares.
ACTION_CLASSES: Mapping[str, type[Action]] = {cls.kind: cls for cls in get_args(Action)}


def action_from_json(data: Mapping[str, Any]) -> Action:
    """Rebuild an action from its Plan JSON form (``apply --plan FILE``); a kind this version
    does not know is an invalid plan, not something to guess at."""
    kind = data.get("kind")
    cls = ACTION_CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise PlanFileError(f"unknown action kind {json.dumps(kind)} "
                            f"(this version knows {', '.join(EXECUTION_ORDER)})")
    return cls.from_json(data)


def tag_batch_argv(actions: list[TagAction]) -> list[str]:
    """One ``zfs hold TAG a@x b@y`` / ``zfs release TAG ...`` for actions of one kind, host and
    tag. zfs takes each snapshot on its own (measured: one that fails does not stop the
    others, and the command then exits 1)."""
    first = actions[0]
    return [*first.argv()[:2], first.tag, *(f"{a.dataset}@{a.snapshot}" for a in actions)]


def out_of_order(actions: Iterable[Action]) -> tuple[Action, Action] | None:
    """The first (earlier, later) pair that breaks EXECUTION_ORDER, or None when in order.

    In the snapshot phase a filesystem's pre hooks (in hook order) come right before its
    snapshot and its post hooks (in reverse hook order) right after it, and a snapshot
    with hooks is alone in its batch (apply takes a batch at its first member: other
    members would be taken before their hooks ran)."""
    listed = list(actions)
    batch_sizes = Counter((a.host, a.batch) for a in listed if isinstance(a, SnapshotAction))
    previous: Action | None = None
    for action in listed:
        if previous is not None and not (KIND_RANK[previous.kind] <= KIND_RANK[action.kind]
                                         and hook_may_follow(previous, action)):
            return previous, action
        previous = action
    if isinstance(previous, PreHookAction):
        return previous, previous  # the last action: a pre hook without its snapshot
    for hooked in hooked_snapshots(listed):
        if batch_sizes[(hooked.host, hooked.batch)] > 1:
            other = next(a for a in listed if isinstance(a, SnapshotAction) and a is not hooked
                         and (a.host, a.batch) == (hooked.host, hooked.batch))
            return other, hooked
    return None


def hooked_snapshots(actions: list[Action]) -> list[SnapshotAction]:
    """The snapshots that have a hook right before or after them."""
    found: list[SnapshotAction] = []
    for before, after in itertools.pairwise(actions):
        if isinstance(before, PreHookAction) and isinstance(after, SnapshotAction):
            found.append(after)
        elif isinstance(before, SnapshotAction) and isinstance(after, PostHookAction) and \
                (not found or found[-1] is not before):
            found.append(before)
    return found


def hook_may_follow(before: Action, after: Action) -> bool:
    """Whether ``after`` may come right after ``before`` as far as hooks go: a pre hook is
    followed by a later pre hook or the snapshot of the same filesystem, a post hook
    follows the snapshot or an earlier-listed (higher) post hook of it."""
    if isinstance(before, PreHookAction):
        if isinstance(after, PreHookAction):
            return after.snapshot_key() == before.snapshot_key() and after.hook > before.hook
        return isinstance(after, SnapshotAction) and (after.host, after.dataset, after.snapshot) == \
            before.snapshot_key()
    if isinstance(after, PostHookAction):
        if isinstance(before, PostHookAction):
            return before.snapshot_key() == after.snapshot_key() and before.hook > after.hook
        return isinstance(before, SnapshotAction) and (before.host, before.dataset, before.snapshot) == \
            after.snapshot_key()
    return True
