"""Replication of one source dataset to one target: conflicts, sends, resume, cursor.

Snapshots are matched by GUID, never by name alone, and ordered by createtxg. The
incremental base is the newest target snapshot whose GUID exists on the source as a
snapshot or a bookmark. A target that diverged (snapshots newer than the base, no
common snapshot while it has snapshots, equal names with different GUIDs) or is of
another kind than the source is a conflict: no send, no destroy there, and never an
implicit ``recv -F``.

``plan_pair`` is pure and looks at one (source, target) pair only; the planner adds
placeholders for missing parents (they depend on the other pairs) and orders sends.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import TypedDict

from reconciler.codes import ConflictCode
from reconciler.config.models import Target
from reconciler.domain.actions import LARGE_BLOCKS_PROPERTY, AbortResumeAction, BookmarkAction, SendAction
from reconciler.domain.names import ZFS_MAX_NAME, ancestors, is_within
from reconciler.domain.observed import (
    Bookmark,
    Dataset,
    ObservedState,
    Snapshot,
    unavailable_fix,
    unavailable_reason,
)
from reconciler.domain.plan import Conflict
from reconciler.domain.resume_token import decode_resume_token
from reconciler.planning.naming import cursor_name, cursor_prefix, is_our_hold
from reconciler.planning.selection import Selected
from reconciler.wording import plural

# Beyond the codes of reconciler.domain.plan: the target host has no such pool.

OK = "ok"
UNREACHABLE = "unreachable"
IN_CONFLICT = "conflict"


@dataclass(slots=True)
class SourceView:
    """A source dataset as it will be after this plan's snapshots, indexed by GUID."""

    host: str
    dataset: Dataset
    snapshots: list[Snapshot]  # createtxg order, planned snapshots included
    by_guid: dict[int, Snapshot]
    bookmarks_by_guid: dict[int, list[Bookmark]]
    longest_name: int  # bytes of the longest snapshot name (ZFS limits dataset@snapshot)

    @classmethod
    def build(cls, host: str, dataset: Dataset, planned: list[Snapshot]) -> SourceView:
        snapshots = dataset.snapshots + planned if planned else dataset.snapshots
        bookmarks: dict[int, list[Bookmark]] = {}
        for bm in dataset.bookmarks:
            bookmarks.setdefault(bm.guid, []).append(bm)
        longest = max((len(s.name.encode()) for s in snapshots), default=0)
        return cls(host, dataset, snapshots, {s.guid: s for s in snapshots}, bookmarks, longest)

    def txg_of(self, guid: int) -> int | None:
        snap = self.by_guid.get(guid)
        if snap is not None:
            return snap.createtxg
        marks = self.bookmarks_by_guid.get(guid)
        return marks[0].createtxg if marks else None

    def after(self, createtxg: int) -> list[Snapshot]:
        return [s for s in self.snapshots if s.createtxg > createtxg]


@dataclass(slots=True)
class PairPlan:
    """What the plan does for one (source dataset, target) pair and what it knows afterwards."""

    source: Selected
    target: Target
    target_dataset: str
    state: str  # OK | UNREACHABLE | IN_CONFLICT
    observed_target: Dataset | None = None
    conflict: Conflict | None = None
    abort: AbortResumeAction | None = None
    sends: list[SendAction] = field(default_factory=list)
    creates_target: bool = False  # a full send creates the target dataset
    target_after: list[Snapshot] = field(default_factory=list)  # after planned receives
    on_target: set[int] = field(default_factory=set)  # GUIDs on the target after the plan
    base_guid: int | None = None  # newest common snapshot after the plan (incremental base)
    replicated_txg: int | None = None  # source createtxg up to which everything counts as replicated
    cursors: list[Bookmark] = field(default_factory=list)  # this target's cursors on the source
    cursor_create: BookmarkAction | None = None
    cursor_destroy: list[str] = field(default_factory=list)  # short bookmark names
    warnings: list[str] = field(default_factory=list)
    plan_warnings: list[str] = field(default_factory=list)  # also among the plan's top-level warnings
    target_children: list[str] = field(default_factory=list)  # listed only for an empty target

    @property
    def target_host(self) -> str:
        return self.target.host

    def replicated(self, snap: Snapshot) -> bool:
        """Is ``snap`` on this target after the plan (by GUID), or older than what was replicated?

        As zrepl's pruner, the snapshot at the replication cursor (the newest common one,
        the next incremental base) does not count while a not_replicated rule keeps
        ``keep_snapshot_at_cursor`` (its default): not_replicated then keeps it too."""
        if snap.guid == self.base_guid and self.source.policy.keeps_snapshot_at_cursor:
            return False
        if snap.guid in self.on_target:
            return True
        return self.replicated_txg is not None and snap.createtxg <= self.replicated_txg

    def describe_state(self) -> str:
        where = f"{self.target.host}:{self.target_dataset}"
        if self.state == UNREACHABLE:
            return f"target {where} is unreachable"
        if self.conflict is not None:
            return f"target {where} is in conflict ({self.conflict.code})"
        if self.sends:
            n = sum(len(s.snapshots) for s in self.sends)
            return f"target {where} is reachable and gets {plural(n, 'snapshot')} in this plan"
        return f"target {where} is reachable and up to date"


def plan_pair(source: SourceView, selected: Selected, target: Target, observed: ObservedState) -> PairPlan:
    target_dataset = target.target_dataset(selected.name)
    pair = PairPlan(selected, target, target_dataset, OK)
    prefix = cursor_prefix(target.host, target.root, target.strip)
    pair.cursors = sorted((b for b in source.dataset.bookmarks if b.name.startswith(prefix)),
                          key=lambda b: (b.createtxg, b.name))
    if target.host in observed.unavailable or target.host not in observed.hosts:
        return _unreachable(pair, observed)
    existing = observed.dataset(target.host, target_dataset)
    pair.observed_target = existing
    blocker = non_filesystem_ancestor(observed, target.host, target_dataset)
    if len(target_dataset.encode()) + 1 + source.longest_name > ZFS_MAX_NAME:
        _conflict(pair, ConflictCode.NAME_TOO_LONG,
                  f"{target_dataset} with its snapshots' names would exceed the {ZFS_MAX_NAME} bytes ZFS"
                  f" allows ({len(target_dataset.encode())} bytes before '@')",
                  f"choose a shorter replicate_to root than {target.root!r} for {target.host}")
    elif blocker is not None:
        _blocked_by(pair, blocker)
    elif existing is None and not observed.exists(target.host, target_dataset.split("/")[0]):
        _conflict(pair, ConflictCode.TARGET_POOL_MISSING,
                  f"{target.host} has no pool {target_dataset.split('/')[0]} for {target_dataset}",
                  f"fix replicate_to root {target.root!r}, or create the pool on {target.host}")
    elif refuses_unencrypted(pair, source.dataset, existing):
        pass
    elif existing is None:
        _plan_initial(pair, source)
    else:
        if not existing.snapshots:
            pair.target_children = children_of(observed, target.host, target_dataset)
        _plan_existing(pair, source, existing)
    if pair.state == OK:
        _move_cursor(pair, source, prefix)
    return pair


def refuses_unencrypted(pair: PairPlan, source: Dataset, existing: Dataset | None) -> bool:
    """Record a conflict when an encrypted source would be, or is, replicated decrypted
    (syncoid's bug, sanoid #548): without ``raw`` a send decrypts, and zfs refuses a raw
    receive on top of a replica received decrypted before. ``raw: false`` says decrypted on
    purpose: the plan warns, every run. True when there is a conflict."""
    target = pair.target
    where = f"{target.host}:{pair.target_dataset}"
    if not source.encrypted:
        return False
    what = (f"{pair.source.host}:{source.name} is encrypted ({source.encryption}, encryption root"
            f" {source.encryption_root})")
    if target.raw is None:
        _conflict(pair, ConflictCode.UNENCRYPTED_REPLICA,
                  f"{what}, but its replicate_to {target.host}:{target.root} does not say raw: a send without"
                  f" raw would store it decrypted on {target.host}",
                  "set raw: true on that replicate_to (zfs send -w: the data stays encrypted on"
                  f" {target.host}, whose key is never loaded there), or raw: false to replicate it"
                  " decrypted on purpose")
        return True
    if target.raw and existing is not None and (existing.snapshots or existing.resume_token) \
            and not existing.encrypted:
        name = shlex.quote(existing.name)
        _conflict(pair, ConflictCode.UNENCRYPTED_REPLICA,
                  f"{what}, but the replica {where} is unencrypted (it was received without raw); zfs"
                  " refuses a raw receive on top of an unencrypted dataset",
                  f"on {target.host}: `zfs rename {name} {shlex.quote(existing.name + '.decrypted')}`"
                  " (and destroy it once the raw replica is complete); the next plan sends it raw in full")
        return True
    if not target.raw:
        message = (f"{where}: {what} and replicate_to says raw: false, so the replica on {target.host}"
                   " is stored decrypted")
        pair.warnings.append(message)
        pair.plan_warnings.append(message)
    elif existing is not None and existing.encrypted and existing.key_loaded:
        root = shlex.quote(existing.encryption_root or existing.name)
        pair.warnings.append(f"{where}: the key of this raw replica is loaded on {target.host} (keystatus"
                             f" available), so {target.host} can read it; `zfs unload-key {root}` there"
                             " if it should not")
    return False


def children_of(observed: ObservedState, host: str, dataset: str) -> list[str]:
    facts = observed.hosts.get(host)
    prefix = dataset + "/"
    return sorted(name for name in (facts.datasets if facts else ()) if name.startswith(prefix))


def _unreachable(pair: PairPlan, observed: ObservedState) -> PairPlan:
    pair.state = UNREACHABLE
    problem = observed.unavailable.get(pair.target.host)
    pair.conflict = Conflict(
        ConflictCode.HOST_UNAVAILABLE, pair.target.host, pair.target_dataset,
        f"target host {pair.target.host} is unavailable ({unavailable_reason(problem)});"
        f" nothing is sent to {pair.target_dataset}",
        unavailable_fix(pair.target.host, problem),
        pair.source.host, pair.source.name)
    if pair.cursors:
        newest = pair.cursors[-1]
        pair.replicated_txg = newest.createtxg
        pair.base_guid = newest.guid
    return pair


def non_filesystem_ancestor(observed: ObservedState, host: str, target_dataset: str) -> Dataset | None:
    """The nearest existing ancestor of the target that is not a filesystem (a volume).

    Only filesystems have children: neither a placeholder nor a received dataset can be
    created below a volume. Ancestors are listed whenever they matter: a listing scoped
    to the target root includes the root and below, and a volume has no descendants, so
    one above an existing root is impossible (a missing root makes gather list the host).
    """
    for name in reversed(ancestors(target_dataset)):
        ancestor = observed.dataset(host, name)
        if ancestor is not None and ancestor.kind != "filesystem":
            return ancestor
    return None


def _blocked_by(pair: PairPlan, ancestor: Dataset) -> None:
    host, root = pair.target.host, pair.target.root
    quoted = shlex.quote(ancestor.name)
    where = "the replicate_to root" if ancestor.name == root else (
        f"an ancestor of the replicate_to root {root}" if is_within(root, ancestor.name)
        else f"a dataset below the replicate_to root {root}")
    _conflict(pair, ConflictCode.TARGET_NOT_FILESYSTEM,
              f"{host}:{ancestor.name} ({where}) is a {ancestor.kind}, and a {ancestor.kind} cannot have"
              f" children: {pair.target_dataset} can be neither created nor received below it",
              f"point replicate_to at a root that is a filesystem, or on {host} move the {ancestor.kind}"
              f" out of the way: `zfs rename {quoted} {shlex.quote(ancestor.name + '.old')}` (the next"
              " plan then creates the missing parents as placeholders)")


# ------------------------------------------------------------------ target missing


def _plan_initial(pair: PairPlan, source: SourceView) -> None:
    snaps = source.snapshots
    if not snaps:
        pair.warnings.append(f"{pair.source.host}:{pair.source.name} has no snapshot to send to"
                             f" {pair.target.host}:{pair.target_dataset} yet")
        return
    pair.creates_target = True
    if pair.target.initial == "all" and len(snaps) > 1:
        pair.sends.append(_send(pair, None, snaps[0], [snaps[0]], "initial full send of the oldest snapshot"))
        pair.sends.append(_send(pair, snaps[0].name, snaps[-1], snaps[1:],
                                "initial: all, every later snapshot incrementally"))
        arriving = snaps
    else:
        pair.sends.append(_send(pair, None, snaps[-1], [snaps[-1]],
                                "initial full send of the newest snapshot"))
        arriving = [snaps[-1]]
    _arrive(pair, [], arriving)


def defer_initial(pair: PairPlan, why: str) -> None:
    """Undo ``_plan_initial``: nothing is sent to this new replica in this plan."""
    pair.sends, pair.creates_target, pair.target_after, pair.on_target = [], False, [], set()
    pair.base_guid = pair.replicated_txg = pair.cursor_create = None
    pair.cursor_destroy = []
    pair.warnings.append(f"{pair.target.host}:{pair.target_dataset} is not sent yet: {why}")


# ------------------------------------------------------------------ target exists


def _plan_existing(pair: PairPlan, source: SourceView, target: Dataset) -> None:
    if target.kind != source.dataset.kind:
        _conflict(pair, ConflictCode.TARGET_NOT_FILESYSTEM,
                  f"{pair.target.host}:{target.name} is a {target.kind} but the source"
                  f" {pair.source.host}:{source.dataset.name} is a {source.dataset.kind}",
                  f"point replicate_to at another root, or on {pair.target.host}: "
                  f"`zfs rename {shlex.quote(target.name)} {shlex.quote(target.name + '.old')}`")
        return
    base_index = newest_common_index(target, source)
    if _diagnose(pair, source, target, base_index) or _needs_large_blocks(pair, target):
        return
    if target.resume_token and _plan_resume(pair, source, target, base_index):
        return
    if not target.snapshots:
        return  # an aborted initial receive left nothing: _plan_resume planned a full send
    assert base_index is not None
    base = target.snapshots[base_index]
    sends = incremental_sends(pair, source, base.guid)
    if sends and _modified_since_newest(pair, target):
        return
    pair.sends += sends
    _arrive(pair, target.snapshots, [s for send in pair.sends for s in _sent(source, send)])


def _modified_since_newest(pair: PairPlan, target: Dataset) -> bool:
    """Record a conflict if data was written to the target after its newest snapshot.

    OpenZFS refuses an incremental receive onto such a target ("destination has been
    modified since most recent snapshot"); only recv -F would overwrite the changes, and
    that is the user's decision, so the plan says so instead of letting apply fail.
    """
    newest = target.newest_snapshot()
    if not target.written or newest is None:
        return False
    _conflict(pair, ConflictCode.DIVERGED,
              f"{pair.target.host}:{target.name} was modified since its newest snapshot {newest.name}"
              f" ({target.written} bytes written on the target); an incremental receive would be refused",
              f"on {pair.target.host}: `zfs rollback {shlex.quote(f'{target.name}@{newest.name}')}`"
              " (discards what was written on the target since)")
    return True


def _needs_large_blocks(pair: PairPlan, target: Dataset) -> bool:
    """Record a conflict if the replica was received with large blocks (a compressed or raw
    stream: its ``zrepl-reconcile:large_blocks`` property says so) and this target now asks
    for plain streams. OpenZFS refuses every such incremental ("incremental send stream
    requires -L (--large-block), to match previous receive"; measured on 2.1), so the plan
    says so instead of letting apply fail. The other way round (plain, then -L) is fine."""
    if not target.large_blocks or pair.target.large_blocks:
        return False
    host, name = pair.target.host, shlex.quote(target.name)
    _conflict(pair, ConflictCode.LARGE_BLOCKS_REQUIRED,
              f"{host}:{target.name} was received with large blocks (zfs send -L: compressed: true or raw),"
              " and OpenZFS refuses any later incremental without -L onto it; this target now has"
              " compressed: false",
              f"set compressed: true again for {host}:{pair.target.root} (plain streams need a new replica:"
              f" on {host} `zfs rename {name} {shlex.quote(target.name + '.old')}` and the next run sends it"
              f" in full; or, if its source never had blocks over 128K, `zfs inherit"
              f" {LARGE_BLOCKS_PROPERTY} {name}` on {host} clears the mark)")
    return True


def newest_common_index(target: Dataset, source: SourceView) -> int | None:
    """Index of the newest target snapshot whose GUID the source has as snapshot or bookmark."""
    for index in range(len(target.snapshots) - 1, -1, -1):
        guid = target.snapshots[index].guid
        if guid in source.by_guid or guid in source.bookmarks_by_guid:
            return index
    return None


def _diagnose(pair: PairPlan, source: SourceView, target: Dataset, base_index: int | None) -> bool:
    """Record a conflict if the target diverged; True when there is one."""
    where = f"{pair.target.host}:{target.name}"
    host = pair.target.host
    names = {s.name: s.guid for s in source.snapshots}
    mismatched = [t.name for t in target.snapshots if t.name in names and names[t.name] != t.guid]
    base = target.snapshots[base_index] if base_index is not None else None
    if base is not None:
        pair.base_guid = base.guid
        pair.replicated_txg = source.txg_of(base.guid)
        pair.on_target = {s.guid for s in target.snapshots}
        pair.target_after = list(target.snapshots)
    rollback = (f"on {host}: `zfs rollback -r {shlex.quote(f'{target.name}@{base.name}')}`"
                f" (destroys the target snapshots after {base.name})" if base is not None else
                f"on {host}: {releases_of_ours(target)}`zfs destroy -r {shlex.quote(target.name)}` (the next"
                " run sends it in full)")
    if mismatched:
        _conflict(pair, ConflictCode.GUID_MISMATCH,
                  f"{where} has snapshot(s) {', '.join(mismatched)} with the same name as on the source"
                  " but a different GUID: they are different snapshots", rollback)
        return True
    if base is None and target.snapshots:
        _conflict(pair, ConflictCode.NO_COMMON_SNAPSHOT,
                  f"{where} has {len(target.snapshots)} snapshot(s) but none shares a GUID with"
                  f" {pair.source.host}:{source.dataset.name}; an incremental send is impossible"
                  " and a full send would need recv -F", rollback)
        return True
    if base_index is not None and base_index < len(target.snapshots) - 1:
        newer = [s.name for s in target.snapshots[base_index + 1:]]
        _conflict(pair, ConflictCode.DIVERGED,
                  f"{where} diverged: snapshot(s) {', '.join(newer)} are newer than the common"
                  f" snapshot {target.snapshots[base_index].name}", rollback)
        return True
    if not target.snapshots and not target.resume_token:
        _conflict(pair, ConflictCode.NO_COMMON_SNAPSHOT,
                  f"{where} exists but has no snapshot; a full send into it would need recv -F,"
                  " which this tool never runs on its own (it may be a placeholder created for"
                  " replicas below it, before this dataset was replicated itself)",
                  _empty_target_fix(pair, source, target, pair.target_children))
        return True
    return False


def releases_of_ours(target: Dataset) -> str:
    """``zfs release`` commands for the holds of ours on ``target``'s snapshots (they would
    make a ``zfs destroy -r`` of it fail with "dataset is busy"), each followed by "; "."""
    return "".join(f"`zfs release {shlex.quote(tag)} {shlex.quote(f'{target.name}@{snap.name}')}`; "
                   for snap in target.snapshots for tag in snap.holds if is_our_hold(tag))


def _empty_target_fix(pair: PairPlan, source: SourceView, target: Dataset, children: list[str]) -> str:
    """A manual fix that works. ``zfs destroy`` only works without children. With children,
    ``recv -F`` of a full stream replaces the dataset's own (empty) contents and keeps the
    children, as zrepl does for its placeholders; OpenZFS refuses it for a raw (encrypted)
    stream, so there the replica is received beside the placeholder and swapped in."""
    host, name = pair.target.host, shlex.quote(target.name)
    check = f"check that it holds no data: `zfs list -o name,used,referenced {name}` on {host}"
    if not children:
        return f"on {host}: `zfs destroy {name}` ({check}); the next plan then sends it in full"
    shown = ", ".join(children[:3]) + (", ..." if len(children) > 3 else "")
    newest = source.snapshots[-1] if source.snapshots else None
    if newest is None:
        return (f"it has children ({shown}), so it cannot simply be destroyed; once"
                f" {pair.source.host}:{pair.source.name} has a snapshot, receive it in full by hand"
                f" (plan again for the exact command)")
    snap = shlex.quote(f"{source.dataset.name}@{newest.name}")
    taken = "" if newest in source.dataset.snapshots else " (a snapshot this plan takes: apply first)"
    ssh = "" if pair.source.host == host else f"ssh {host} "
    if not pair.target.raw:
        return (f"it has children ({shown}), so it cannot simply be destroyed. {check[0].upper()}"
                f"{check[1:]}, then receive one full stream into it (recv -F replaces only its own"
                f" empty contents and keeps the children): on {pair.source.host}: `zfs send {snap} |"
                f" {ssh}zfs recv -F {name}`{taken}. The next plan continues incrementally")
    temporary = target.name + ".new"
    moves = "; ".join(f"zfs rename {shlex.quote(child)} {shlex.quote(temporary + child[len(target.name):])}"
                      for child in children if "/" not in child[len(target.name) + 1:])
    return (f"it has children ({shown}), so it cannot simply be destroyed, and OpenZFS refuses recv -F"
            f" of a raw stream over it. {check[0].upper()}{check[1:]}, receive the replica beside it and"
            f" swap: on {pair.source.host}: `zfs send -w {snap} | {ssh}zfs recv -u"
            f" {shlex.quote(temporary)}`{taken}; then on {host}: `{moves}; zfs destroy {name}; zfs rename"
            f" {shlex.quote(temporary)} {name}`. The next plan continues incrementally")


def _conflict(pair: PairPlan, code: str, message: str, fix: str) -> None:
    pair.state = IN_CONFLICT
    pair.conflict = Conflict(code, pair.target.host, pair.target_dataset, message, fix,
                             pair.source.host, pair.source.name)


def _plan_resume(pair: PairPlan, source: SourceView, target: Dataset, base_index: int | None) -> bool:
    """Resume an interrupted receive, or abort it. True when the pair is fully planned."""
    token = target.resume_token or ""
    info = decode_resume_token(token)
    base_guid = target.snapshots[base_index].guid if base_index is not None else 0
    snap = source.by_guid.get(info.toguid) if info is not None else None
    if info is not None and info.dataset != source.dataset.name:
        snap = None  # the source was renamed: zfs send -t would look for the old name
    from_ok = info is not None and (info.fromguid == base_guid if info.fromguid else not target.snapshots)
    if info is None or snap is None or not from_ok:
        why = ("the token cannot be decoded" if info is None else
               f"the source no longer has {info.toname}" if snap is None else
               "the token's base is not the target's newest snapshot")
        pair.abort = AbortResumeAction(pair.target.host, target.name,
                                       f"interrupted receive cannot be resumed: {why}")
        pair.warnings.append(f"{pair.target.host}:{target.name}: discarding the partial receive ({why})")
        if not target.snapshots:
            pair.on_target, pair.target_after = set(), []
            _plan_initial(pair, source)
            return True
        return False
    base_name: str | None = None
    if info.fromguid:
        from_snap = source.by_guid.get(info.fromguid)
        marks = source.bookmarks_by_guid.get(info.fromguid, [])
        base_name = from_snap.name if from_snap else "#" + marks[0].name
    # The stream's shape is the interrupted one's, as its token records it (zfs send -t
    # takes no flags): the receive's large-blocks mark follows the token, not the config.
    pair.sends.append(SendAction(
        host=pair.source.host, dataset=source.dataset.name, snapshot=snap.name,
        target_host=pair.target.host, target_dataset=pair.target_dataset, base=base_name,
        snapshots=(snap.name,), resume_token=token, estimated_bytes=None,
        reason=f"resume the interrupted receive of {snap.name}",
        # A resumed stream keeps the flags its token records.
        **send_options(pair, compressed=bool(info.fields.get("largeblockok")))))
    pair.sends += incremental_sends(pair, source, snap.guid)
    _arrive(pair, target.snapshots, [s for send in pair.sends for s in _sent(source, send)])
    return True


def incremental_sends(pair: PairPlan, source: SourceView, base_guid: int) -> list[SendAction]:
    """``-I base -> newest``; from a bookmark-only base ``-i #bm -> next`` first, then ``-I``."""
    base = source.by_guid.get(base_guid)
    if base is not None:
        later = source.after(base.createtxg)
        if not later:
            return []
        return [_send(pair, base.name, later[-1], later, f"incremental from {base.name}")]
    mark = _preferred_bookmark(source.bookmarks_by_guid[base_guid], pair.cursors)
    later = source.after(mark.createtxg)
    if not later:
        return []
    sends = [_send(pair, "#" + mark.name, later[0], [later[0]],
                   f"the base survives on the source only as bookmark #{mark.name}")]
    if len(later) > 1:
        sends.append(_send(pair, later[0].name, later[-1], later[1:], f"incremental from {later[0].name}"))
    return sends


def _preferred_bookmark(marks: list[Bookmark], cursors: list[Bookmark]) -> Bookmark:
    cursor_names = {c.name for c in cursors}
    return min(marks, key=lambda b: (b.name not in cursor_names, b.name))


def _send(pair: PairPlan, base: str | None, newest: Snapshot, snaps: list[Snapshot], why: str) -> SendAction:
    # Unknown as soon as one size is: a partial sum would understate the transfer. (A
    # snapshot this plan takes counts with the filesystem's `written`; apply asks
    # `zfs send -nP` for such sends before choosing how to move them.)
    sizes = [s.referenced if base is None else s.written for s in snaps]
    known = [n for n in sizes if n is not None]
    return SendAction(
        host=pair.source.host, dataset=pair.source.name, snapshot=newest.name,
        target_host=pair.target.host, target_dataset=pair.target_dataset, base=base,
        snapshots=tuple(s.name for s in snaps),
        estimated_bytes=sum(known) if known and len(known) == len(sizes) else None, reason=why,
        **send_options(pair))


class SendOptions(TypedDict):
    raw: bool
    compressed: bool
    send_properties: bool
    overrides: tuple[tuple[str, str], ...]
    excludes: tuple[str, ...]
    bandwidth_limit: int | None
    stall_timeout: int


def send_options(pair: PairPlan, *, compressed: bool | None = None) -> SendOptions:
    """How every send of the pair runs: raw, compressed or plain, with properties or not, the
    receive's ``-o``/``-x`` for the replica's kind (the source's kind; volumes take no
    filesystem-only property), the target's bandwidth limit and stall timeout.
    ``compressed``: a resumed stream's own flag instead of the target's."""
    target, kind = pair.target, pair.source.dataset.kind
    return SendOptions(raw=target.sends_raw,
                       compressed=(target.compressed if compressed is None else compressed)
                       and not target.sends_raw,
                       send_properties=target.send_properties,
                       overrides=target.receive_overrides(kind), excludes=target.receive_excludes(kind),
                       bandwidth_limit=target.bandwidth_limit_bytes,
                       stall_timeout=target.stall_timeout_seconds)


def _sent(source: SourceView, send: SendAction) -> list[Snapshot]:
    by_name = {s.name: s for s in source.snapshots}
    return [by_name[name] for name in send.snapshots]


def _arrive(pair: PairPlan, existing: list[Snapshot], arriving: list[Snapshot]) -> None:
    """The target's snapshots after the receives: copies keep GUID, creation and order."""
    txg = existing[-1].createtxg if existing else 0
    after = list(existing)
    seen = {s.guid for s in existing}
    for snap in arriving:
        if snap.guid in seen:
            continue
        txg += 1
        seen.add(snap.guid)
        after.append(Snapshot(snap.name, snap.guid, txg, snap.creation, 0, snap.written, snap.referenced))
    pair.target_after = after
    pair.on_target = seen
    if arriving:
        pair.base_guid = arriving[-1].guid
        pair.replicated_txg = arriving[-1].createtxg


# ------------------------------------------------------------------ cursor


def _move_cursor(pair: PairPlan, source: SourceView, prefix: str) -> None:
    """Keep exactly one cursor bookmark at the newest snapshot the target has after the plan."""
    guid = pair.base_guid
    if guid is None:
        return
    at_base = [c for c in pair.cursors if c.guid == guid]
    if at_base:
        keep = at_base[-1]
        pair.cursor_destroy = [c.name for c in pair.cursors if c is not keep]
        return
    snap = source.by_guid.get(guid)
    if snap is None:
        return  # the base survives only as a bookmark: a cursor cannot be made from it
    name = cursor_name(prefix, source.dataset.name, snap.name)
    taken = {b.name for b in source.dataset.bookmarks}
    if name in taken:
        name = cursor_name(prefix, source.dataset.name, f"{snap.name}.{snap.guid:x}")
        if name in taken:
            return
    pair.cursor_create = BookmarkAction(
        pair.source.host, source.dataset.name, snap.name, name,
        f"replication cursor for {pair.target.host}:{pair.target_dataset}")
    pair.cursor_destroy = [c.name for c in pair.cursors]
