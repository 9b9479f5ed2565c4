"""zrepl daemon configurations (one file per machine, with its includes) as ONE inventory.

How zrepl's model becomes ours:

- Every FILE is one machine. The first one is where zrepl-reconcile will run
  (``connection: local``); every other machine is an SSH host. Jobs that connect to each
  other are paired: a push with the sink it reaches (the local transport by listener name,
  tcp/tls by port, ssh+stdinserver with a stdinserver sink), a pull with its source.
- The jobs of a machine that select the same ``filesystems`` (a snap job with the push or
  source jobs that only replicate, as in zrepl's quickstarts) become one filesystem entry
  and one policy. zrepl requires other filters to be disjoint; overlapping ones are an error.
- Snapshotting: ``periodic`` keeps its prefix and interval; ``cron`` becomes the shortest gap
  between its firings (a note says how irregular it was); ``manual`` takes none.
- Keep rules are zrepl's own vocabulary and are copied as they are. Where zrepl runs two
  pruners on the same snapshots (a snap job and a push's keep_sender, or several pulls of one
  source), a snapshot survives only if both keep it; ours keeps it if either does (a note says
  so): more is kept, never less.
- Targets follow zrepl's mapping exactly: a sink receives into ``root_fs/<client identity>/
  <source path>`` (our root: ``root_fs/<identity>``), a pull into ``root_fs/<source path>``.
- zrepl destroys every snapshot its keep rules do not keep, including ones it never made
  (zrepl issue 651). Our ``manage`` is set to what zrepl's own snapshotting creates (its
  prefixes); the others are left alone, listed by ``plan --explain`` as unmanaged, and a
  comment says how to opt in.
- What zrepl's configuration does not name (a client's address, a sink's root_fs when its
  file is not given, a bare ``<`` filter's pools) becomes a ``FILL-IN`` placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from reconciler.config.grid import format_duration
from reconciler.config.references import filters_overlap
from reconciler.domain.names import scheduled_snapshot_name
from reconciler.errors import ConfigError, ConfigProblem
from reconciler.importers import placeholders
from reconciler.importers.draft import Draft, NoteKind
from reconciler.importers.naming import host_name_from_address, regex_literal, safe_name, unique
from reconciler.importers.zrepl_read import Job, Machine, Pruning, Transport, read_machines

_SAMPLE_TIME = "20260124_120000"
_REFERENCE_TIME = datetime(2026, 1, 24, 12, tzinfo=UTC)


@dataclass(slots=True)
class Host:
    """A machine of the inventory: one given as a file, or one only reached by address."""

    key: tuple[str, str]
    name: str = ""
    local: bool = False
    address: str | None = None
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    identity: str | None = None  # the client identity a sink or source knows it by
    via: str = ""  # how the address is known (a job's connect), for the comment
    stdinserver: bool = False  # its SSH key is bound to `zrepl stdinserver`


@dataclass(slots=True)
class Target:
    host: Host
    root: str
    raw: bool
    initial: str | None
    keep_receiver: Pruning | None
    why: str
    # replication.protection of the active job, send_properties of the sending job, the
    # receiving job's recv.properties (override: -o, inherit: -x).
    protection: dict[str, str] = field(default_factory=dict)
    send_properties: bool = False
    override: dict[str, str] = field(default_factory=dict)
    exclude: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Group:
    """The jobs of one machine selecting one filter: one entry, one policy."""

    host: Host
    filter: dict[str, bool]
    jobs: list[Job] = field(default_factory=list)
    pruners: list[Pruning] = field(default_factory=list)  # the source side's
    targets: list[Target] = field(default_factory=list)
    placeholder_filter: bool = False
    filter_where: str = ""


def import_zrepl(paths: list[str]) -> Draft:
    """The draft inventory of the zrepl configurations ``paths`` (first: the local machine)."""
    read = read_machines(paths)
    draft = Draft("zrepl", list(paths))
    draft.notes += read.notes
    inventory = _Inventory(read.machines, draft)
    inventory.build()
    return draft


class _Inventory:
    def __init__(self, machines: list[Machine], draft: Draft) -> None:
        self.machines = machines
        self.draft = draft
        self.hosts: dict[tuple[str, str], Host] = {}
        self.groups: list[Group] = []
        self.problems: list[ConfigProblem] = []

    # ------------------------------------------------------------------ the whole import

    def build(self) -> None:
        for machine in self.machines:
            self.hosts[("machine", str(machine.index))] = Host(("machine", str(machine.index)),
                                                                local=machine.index == 0)
        self._group_filesystems()
        for machine in self.machines:
            for job in machine.jobs:
                if job.type == "push":
                    self._link_push(job)
                elif job.type == "pull":
                    self._link_pull(job)
                elif job.type in ("sink", "source"):
                    self._check_passive_used(job)
        if self.problems:
            raise ConfigError(sorted(set(self.problems), key=lambda p: (p.file, p.line, p.column, p.path)))
        self._name_hosts()
        for host in self.hosts.values():
            self._emit_host(host)
        taken: set[str] = set()
        for group in self.groups:
            self._emit_group(group, taken)
        if not self.groups:
            files = ", ".join(m.file for m in self.machines)
            raise ConfigError(f"{files}: no job selects filesystems (snap, push or source) or reaches one"
                              " (pull): nothing to import")

    def machine_host(self, job: Job) -> Host:
        return self.hosts[("machine", str(job.machine))]

    # ------------------------------------------------------------------ filesystems

    def _group_filesystems(self) -> None:
        for machine in self.machines:
            mine: list[Group] = []
            for job in machine.jobs:
                if job.filesystems is None:
                    continue
                group = next((g for g in mine if g.filter == job.filesystems), None)
                if group is None:
                    group = Group(self.machine_host(job), dict(job.filesystems),
                                  filter_where=job.where("filesystems"))
                    self._check_disjoint(job, mine)
                    mine.append(group)
                group.jobs.append(job)
                if job.keep is not None:
                    group.pruners.append(job.keep)
            self.groups += mine

    def _check_disjoint(self, job: Job, groups: list[Group]) -> None:
        assert job.filesystems is not None
        for other in groups:
            overlap = _overlap(job.filesystems, other.filter)
            if overlap is not None:
                names = ", ".join(sorted({repr(j.name) for j in other.jobs}))
                self.problems.append(job.reader.document.problem(
                    (*job.path, "filesystems"),
                    f"selects {overlap} like job(s) {names} with a different filter: zrepl requires the"
                    " filters of one machine's jobs to be disjoint (identical filters are imported as one"
                    " entry); make them identical or disjoint"))
                return

    def group_of(self, job: Job) -> Group:
        return next(g for g in self.groups if job in g.jobs)

    # ------------------------------------------------------------------ replication pairs

    def _passive_candidates(self, active: Job, kind: str) -> list[Job]:
        """The sink (``kind`` sink) or source jobs ``active`` can reach, from its connect."""
        connect = active.connect
        if connect is None:
            return []
        found = []
        for machine in self.machines:
            for job in machine.jobs:
                serve = job.serve
                if job.type != kind or serve is None:
                    continue
                same_machine = machine.index == active.machine
                if connect.kind == "local":
                    if same_machine and serve.kind == "local" and serve.listener_name == connect.listener_name:  # noqa: E501
                        found.append(job)
                elif connect.kind == "ssh+stdinserver":
                    if not same_machine and serve.kind == "stdinserver":
                        found.append(job)
                elif (not same_machine and serve.kind == connect.kind
                      and (serve.port is None or connect.port is None or serve.port == connect.port)):
                    found.append(job)
        return found

    def _passive(self, active: Job, kind: str) -> Job | None:
        candidates = self._passive_candidates(active, kind)
        if len(candidates) > 1:
            where = ", ".join(f"{j.label} ({j.where()})" for j in candidates)
            self.draft.note(active.where("connect"), NoteKind.NOT_MAPPED,
                            f"{active.label} could reach several {kind} jobs ({where}): give only the"
                            " configuration of the machine it connects to")
            return None
        return candidates[0] if candidates else None

    def _remote(self, connect: Transport) -> Host:
        """The host a connect reaches when its configuration was not given."""
        address = connect.host or "unknown"
        key = ("address", address)
        host = self.hosts.get(key)
        if host is None:
            host = self.hosts[key] = Host(key)
            self._learn_address(host, connect, "")
        return host

    def _learn_address(self, host: Host, connect: Transport, via: str) -> None:
        if connect.kind == "local" or host.address is not None or connect.host is None:
            return
        host.address = connect.host
        host.via = via or connect.where
        if connect.kind == "ssh+stdinserver":
            host.user, host.port, host.identity_file = connect.user, connect.ssh_port, connect.identity_file
            host.stdinserver = True

    def _link_push(self, push: Job) -> None:
        connect = push.connect
        if connect is None:
            return
        group = self.group_of(push)
        sink = self._passive(push, "sink")
        identity = connect.client_identity if connect.kind == "local" else None
        if sink is not None:
            target_host = self.machine_host(sink)
            self._learn_address(target_host, connect, push.where("connect"))
            serve = sink.serve
            assert serve is not None
            if identity is None and len(set(serve.identities)) == 1 and "*" not in serve.identities[0]:
                identity = serve.identities[0]
                client_address = serve.client_addresses.get(identity)
                me = self.machine_host(push)
                if me.address is None and client_address is not None and not me.local:
                    me.address, me.via = client_address, serve.where
            if identity is not None:
                self.machine_host(push).identity = self.machine_host(push).identity or identity
            root_fs = sink.root_fs or placeholders.ROOT
            why = f"{push.label} -> {sink.label}: root_fs/<client identity>"
        elif connect.kind == "local":
            self.draft.note(push.where("connect"), NoteKind.NOT_MAPPED,
                            f"{push.label}: no sink job listens on {connect.listener_name!r} in"
                            f" {self.machines[push.machine].file}: nothing is replicated")
            return
        else:
            target_host = self._remote(connect)
            root_fs = placeholders.ROOT
            why = f"{push.label}: its sink's configuration was not given"
            self.draft.note(push.where("connect"), NoteKind.PLACEHOLDER,
                            f"{push.label}: the sink's root_fs is not known (give the receiving machine's"
                            f" configuration too): root {placeholders.ROOT}/<client identity>")
        if identity is None:
            identity = f"{placeholders.MARK}-client-identity"
            self.draft.note(push.where("connect"), NoteKind.PLACEHOLDER,
                            f"{push.label}: the client identity the sink knows this machine by is not named"
                            f" (the sink receives into root_fs/<identity>): {identity}")
        group.targets.append(Target(target_host, f"{root_fs}/{identity}", push.raw or push.encrypted,
                                    push.initial, push.keep_receiver, why, dict(push.protection),
                                    push.send_properties, dict(sink.recv_override) if sink else {},
                                    list(sink.recv_inherit) if sink else []))
        self._send_notes(push)

    def _send_notes(self, job: Job) -> None:
        if job.encrypted and not job.raw:
            self.draft.note(job.where("send", "encrypted"), NoteKind.DIFFERS,
                            f"{job.label}: send.encrypted sends raw (raw: true); zrepl also refuses to send"
                            " filesystems that are not encrypted, ours sends them (raw)")

    def _link_pull(self, pull: Job) -> None:
        connect = pull.connect
        if connect is None or pull.root_fs is None:
            return
        me = self.machine_host(pull)
        source = self._passive(pull, "source")
        if source is not None:
            group = self.group_of(source)
            self._learn_address(group.host, connect, pull.where("connect"))
            serve = source.serve
            if serve is not None and len(set(serve.identities)) == 1 and "*" not in serve.identities[0]:
                me.identity = me.identity or serve.identities[0]
            self._send_notes(source)
            raw, send_properties = source.raw or source.encrypted, source.send_properties
        else:
            host = self._remote(connect) if connect.kind != "local" else me
            group = Group(host, {f"{placeholders.POOL}<": True}, placeholder_filter=True,
                          filter_where=pull.where("connect"))
            self.groups.append(group)
            self.draft.note(pull.where("connect"), NoteKind.PLACEHOLDER,
                            f"{pull.label}: the source job's filesystems are not known (give the source"
                            f" machine's configuration too): filter {{{placeholders.POOL}<: true}}")
            raw, send_properties = False, False
        if pull.keep is not None:
            group.pruners.append(pull.keep)
        group.targets.append(Target(me, pull.root_fs, raw, pull.initial, pull.keep_receiver,
                                    f"{pull.label}: root_fs/<source path>", dict(pull.protection),
                                    send_properties, dict(pull.recv_override), list(pull.recv_inherit)))

    # A passive job (sink, source) no active job of the given configurations reaches:
    # (the active job type that would, its role there, what the missing side holds).
    _UNUSED_PASSIVE: ClassVar[dict[str, tuple[str, str]]] = {
        "sink": ("push", "{label} receives from {clients} into {root_fs}/<client identity>: give the pushing"
                 " machines' configurations too (their filesystems and keep rules are there)"),
        "source": ("pull", "{label} serves {clients}: give the pulling machines' configurations too (their"
                   " root_fs and keep rules are there); until then nothing is replicated"),
    }

    def _check_passive_used(self, passive: Job) -> None:
        """Note a sink no push reaches, or a source no pull reaches: its other half (and the
        keep rules there) is in a configuration that was not given."""
        active_type, message = self._UNUSED_PASSIVE[passive.type]
        for machine in self.machines:
            for job in machine.jobs:
                if job.type == active_type and passive in self._passive_candidates(job, passive.type):
                    return
        serve = passive.serve
        clients = ", ".join(serve.identities) if serve is not None and serve.identities else "its clients"
        self.draft.note(passive.where(), NoteKind.NOT_MAPPED,
                        message.format(label=passive.label, clients=clients, root_fs=passive.root_fs))

    # ------------------------------------------------------------------ hosts

    def _name_hosts(self) -> None:
        taken: set[str] = set()
        ordered = sorted(self.hosts.values(), key=lambda h: (h.key[0] != "machine", h.key))
        for host in ordered:
            if host.local and host.identity is None:
                base = "local"
            elif host.address is not None and placeholders.MARK not in host.address:
                base = host_name_from_address(host.address)
            elif host.identity is not None:
                base = safe_name(host.identity)
            else:
                base = f"host{int(host.key[1]) + 1}" if host.key[0] == "machine" else "remote"
            host.name = unique(safe_name(base), taken)

    def _emit_host(self, host: Host) -> None:
        path = ("hosts", host.name)
        if host.local:
            self.draft.hosts[host.name] = {"connection": "local"}
            file = self.machines[int(host.key[1])].file
            self.draft.remark(path, f"the machine of {file}: zrepl-reconcile runs here")
            return
        entry: dict[str, Any] = {"connection": "ssh"}
        if host.address is None:
            entry["address"] = placeholders.host_address(host.name)
            self.draft.remark((*path, "address"), "FILL IN: zrepl's configuration does not name this"
                                                  " machine's address")
            where = (self.machines[int(host.key[1])].file if host.key[0] == "machine" else host.via or "?")
            self.draft.note(where, NoteKind.PLACEHOLDER,
                            f"host {host.name}: its address is not named by zrepl's configuration"
                            f" (known as client identity {host.identity!r}): address {entry['address']}"
                            if host.identity else f"host {host.name}: address {entry['address']}")
        else:
            entry["address"] = host.address
            if host.stdinserver:
                self.draft.remark((*path, "address"), "from ssh+stdinserver")
                self.draft.note(host.via, NoteKind.DIFFERS,
                                f"host {host.name}: zrepl's key there is bound to `zrepl stdinserver` in"
                                " authorized_keys; zrepl-reconcile needs a key that may run zfs")
            else:
                self.draft.remark((*path, "address"), "zrepl connected to this address over tcp/tls;"
                                                      " SSH on port 22 assumed")
        if host.port is not None and host.port != 22:
            entry["port"] = host.port
        if host.user is not None:
            entry["user"] = host.user
        if host.identity_file is not None:
            entry["identity_file"] = host.identity_file
        self.draft.hosts[host.name] = entry

    # ------------------------------------------------------------------ policies and entries

    def _emit_group(self, group: Group, taken: set[str]) -> None:
        name = unique(safe_name(_policy_name(group), "imported"), taken)
        policy, comments = self._policy(group)
        self.draft.policies[name] = policy
        for key, lines in comments.items():
            self.draft.comment(("policies", name, *key), *lines)
        entry: dict[str, Any] = {"host": group.host.name, "filter": self._filter(group), "policy": name}
        targets = []
        for target in group.targets:
            item: dict[str, Any] = {"host": target.host.name, "root": target.root}
            if target.initial == "all":
                item["initial"] = "all"
            if target.raw:
                item["raw"] = True
            if target.send_properties:
                item["send_properties"] = True
            properties = {key: value for key, value in (("override", target.override),
                                                         ("exclude", target.exclude)) if value}
            if properties:
                item["properties"] = properties
            if target.protection:
                item["protection"] = dict(target.protection)
            targets.append(item)
        if targets:
            entry["replicate_to"] = targets
        index = len(self.draft.filesystems)
        self.draft.filesystems.append(entry)
        jobs = ", ".join(f"{j.label} ({j.where()})" for j in group.jobs) or "(none: see the notes)"
        self.draft.comment(("filesystems", index), f"from {jobs}")
        for j, target in enumerate(group.targets):
            self.draft.remark(("filesystems", index, "replicate_to", j), target.why)

    def _filter(self, group: Group) -> dict[str, bool]:
        if "<" not in group.filter:
            return group.filter
        out = {(f"{placeholders.POOL}<" if key == "<" else key): value for key, value in group.filter.items()}
        self.draft.note(group.filter_where, NoteKind.PLACEHOLDER,
                        f"filter '<' selects every pool; name your pools instead of {placeholders.POOL}"
                        " (zrepl-reconcile never manages a pool by accident)")
        return out

    def _policy(self, group: Group) -> tuple[dict[str, Any], dict[tuple[str, ...], list[str]]]:
        policy: dict[str, Any] = {}
        comments: dict[tuple[str, ...], list[str]] = {}
        snapshotting = [j for j in group.jobs
                        if j.snapshotting is not None and j.snapshotting.kind != "manual"]
        prefixes = list(dict.fromkeys(j.snapshotting.prefix for j in snapshotting
                                      if j.snapshotting is not None and j.snapshotting.prefix))
        if snapshotting:
            job = snapshotting[0]
            assert job.snapshotting is not None
            interval = self._interval(job)
            if interval is not None and job.snapshotting.prefix:
                policy["snapshots"] = {"prefix": job.snapshotting.prefix, "interval": interval}
            for other in snapshotting[1:]:
                self.draft.note(other.where("snapshotting"), NoteKind.NOT_MAPPED,
                                f"{other.label} also takes snapshots of these filesystems; only"
                                f" {job.label}'s schedule is kept (both prefixes are managed)")
        if prefixes:
            alternatives = "|".join(regex_literal(p) for p in prefixes)
            policy["manage"] = f"^(?:{alternatives})" if len(prefixes) > 1 else f"^{alternatives}"
            comments[("manage",)] = _MANAGE_COMMENT
        else:
            policy["manage"] = "(?!)"
            comments[("manage",)] = self._manual_manage(group)
        keep_source, why = self._combine(group.pruners, "source")
        policy["keep_source"] = keep_source
        if why:
            comments[("keep_source",)] = why
        receivers = [t.keep_receiver for t in group.targets if t.keep_receiver is not None]
        if receivers:
            keep_target, why = self._combine(receivers, "target")
            policy["keep_target"] = keep_target
            if why:
                comments[("keep_target",)] = why
        self._check_rules_see_our_names(group, policy, prefixes)
        if prefixes:
            for side in ("keep_source", "keep_target"):
                if side in policy:
                    self._foreign_snapshots(group, side, policy[side], policy["manage"])
        return policy, comments

    def _foreign_snapshots(self, group: Group, side: str, rules: list[dict[str, Any]], manage: str) -> None:
        """zrepl issue 651: its pruner destroys snapshots it never made that no rule keeps."""
        exposed = [name for name in _FOREIGN_SAMPLES
                   if not re.search(manage, name) and not _kept_unconditionally(rules, name)]
        if not rules or not exposed:
            return
        where = "on the source" if side == "keep_source" else "on the targets"
        self.draft.note(group.filter_where, NoteKind.SAFER,
                        f"{where}, zrepl destroyed snapshots it did not make (e.g. {exposed[0]!r}) unless a"
                        f" keep rule kept them (zrepl issue 651); ours destroys only names matching"
                        f" manage {manage!r}: the others stay and `plan --explain` lists them as unmanaged."
                        " To prune them as zrepl did, opt in: manage: '.*'")

    def _interval(self, job: Job) -> str | None:
        snap = job.snapshotting
        assert snap is not None
        if snap.kind == "cron" and snap.cron is not None:
            gaps = snap.cron
            shortest = format_duration(gaps.shortest)
            spread = f"every {shortest}" if gaps.regular else \
                f"gaps from {shortest} to {format_duration(gaps.longest)}"
            self.draft.note(snap.where, NoteKind.DIFFERS,
                            f"{job.label}: cron {snap.cron_spec!r} fires at fixed times ({spread});"
                            f" ours takes a snapshot whenever the newest is {shortest} old")
            return _whole_seconds(gaps.shortest)
        if snap.interval is None:
            return None
        return _whole_seconds(snap.interval)

    def _manual_manage(self, group: Group) -> list[str]:
        suggestion = _suggested_manage(group.pruners)
        labels = ", ".join(j.label for j in group.jobs) or "the source job"
        self.draft.note(group.filter_where, NoteKind.SAFER,
                        f"{labels}: zrepl takes no snapshots here (manual) yet prunes every snapshot its keep"
                        f" rules do not keep; manage matches nothing, so nothing is destroyed"
                        + (f" (opt in with manage: {suggestion!r})" if suggestion else ""))
        lines = ["zrepl takes no snapshots of these filesystems (snapshotting: manual), so no",
                 "snapshot is zrepl's own: (?!) matches none and nothing here is ever destroyed."]
        if suggestion:
            lines.append(f"To let the keep rules prune as zrepl did, opt in: manage: {suggestion!r}")
        return lines

    def _combine(self, pruners: list[Pruning], side: str) -> tuple[list[dict[str, Any]], list[str]]:
        """One rule list for pruners zrepl ran separately (a snapshot survived only if every one
        kept it): exact when at most one of them prunes, else the union (keeps more)."""
        if not pruners:
            if side == "source":
                return [], ["no zrepl job prunes these filesystems on this side: empty keeps everything"]
            return [], []
        effective = [p for p in pruners if not p.keeps_everything]
        if len(pruners) == 1:
            return list(pruners[0].rules), []
        if not effective:
            return list(pruners[0].rules), [f"from {pruners[0].owner} (the others keep everything too)"]
        if len(effective) == 1:
            others = ", ".join(p.owner for p in pruners if p is not effective[0])
            return list(effective[0].rules), [f"from {effective[0].owner} ({others} keep everything)"]
        union: list[dict[str, Any]] = []
        for pruning in effective:
            union += [rule for rule in pruning.rules if rule not in union]
        owners = " and ".join(p.owner for p in effective)
        if all(p.rules == effective[0].rules for p in effective):
            return union, [f"{owners} (identical rules)"]
        self.draft.note(effective[1].where, NoteKind.SAFER,
                        f"{owners} both prune these snapshots: zrepl kept only what every one of them"
                        " keeps; ours keeps what any of them keeps (more, never less)")
        return union, [f"the union of {owners}: zrepl kept only what each kept, ours what any keeps"]

    def _check_rules_see_our_names(self, group: Group, policy: dict[str, Any], prefixes: list[str]) -> None:
        """A regex written for zrepl's name format (``_000`` milliseconds) may not match ours."""
        schedule = policy.get("snapshots")
        if schedule is None:
            return
        ours = scheduled_snapshot_name(schedule["prefix"], _REFERENCE_TIME)
        theirs = f"{schedule['prefix']}{_SAMPLE_TIME}_000"
        for side in ("keep_source", "keep_target"):
            for rule in policy.get(side, []):
                regex = rule.get("regex")
                if regex is None or rule["type"] == "regex":
                    continue
                if re.search(regex, theirs) and not re.search(regex, ours):
                    self.draft.note(group.filter_where, NoteKind.DIFFERS,
                                    f"{side} rule {rule['type']} regex {regex!r} matches zrepl's names"
                                    f" ({theirs}) but not ours ({ours}): loosen it, or our snapshots"
                                    " are not kept by it")


# Names other tools and people give snapshots: which of them would zrepl's keep rules let go?
_FOREIGN_SAMPLES = ("manual_before-upgrade", "autosnap_2026-01-24_12:00:00_daily", "2026-01-24-120000")


def _kept_unconditionally(rules: list[dict[str, Any]], name: str) -> bool:
    return any(rule["type"] == "regex" and bool(re.search(rule["regex"], name)) != bool(rule.get("negate"))
               for rule in rules)


def _whole_seconds(delta: timedelta) -> str:
    seconds = max(1, int(delta.total_seconds()))
    return format_duration(timedelta(seconds=seconds))


def _overlap(a: dict[str, bool], b: dict[str, bool]) -> str | None:
    if "<" in a or "<" in b:
        return "every pool ('<')" if (a.get("<") or b.get("<")) else None
    probe = filters_overlap(a, b)
    if probe is None:
        return None
    return f"the children of {probe.split(chr(0xFFFF))[0].rstrip('/')}" if "\uffff" in probe else probe


def _policy_name(group: Group) -> str:
    for kind in ("push", "source", "snap"):
        for job in group.jobs:
            if job.type == kind:
                return job.name
    return f"{group.host.name}-pull"


_MANAGE_COMMENT = [
    "zrepl's own snapshots (its snapshotting prefix). zrepl also pruned snapshots it never",
    "made when no keep rule kept them (zrepl issue 651); ours leaves those alone and lists",
    "them in `plan --explain` as unmanaged. To prune them as zrepl did: manage: '.*'"]


def _suggested_manage(pruners: Iterable[Pruning]) -> str | None:
    regexes = [rule["regex"] for p in pruners for rule in p.rules
               if rule["type"] in ("grid", "last_n") and "regex" in rule]
    unique_regexes = list(dict.fromkeys(regexes))
    if not unique_regexes:
        return None
    return unique_regexes[0] if len(unique_regexes) == 1 else "|".join(f"(?:{r})" for r in unique_regexes)

