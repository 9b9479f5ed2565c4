"""zrepl daemon configurations read as zrepl reads them: jobs (``snap``, ``push``, ``pull``,
``sink``, ``source``) with their transports, snapshotting and keep rules, ``include`` of files
and directories, strict about unknown keys (zrepl uses ``UnmarshalStrict``). Every problem
has its FILE:LINE:COL; what is read but has no counterpart in our vocabulary becomes a note.

The shapes follow zrepl's ``config/config.go`` (0.1 and later); keys of older versions are
named in the error with their replacement.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from reconciler.config.grid import parse_duration, parse_grid
from reconciler.errors import ConfigError, ConfigProblem
from reconciler.importers.cron import CronGaps, cron_interval, parse_go_duration
from reconciler.importers.draft import Note, NoteKind, Path
from reconciler.importers.source import Reader, load_yaml, resolve_relative

TOP_LEVEL = "a zrepl configuration: a mapping with jobs (and global, include)"
JOB_TYPES = ("snap", "push", "pull", "sink", "source")
_OLD_KEYS = {
    "root_dataset": "zrepl 0.1 renamed it root_fs",
    "snapshot_prefix": "zrepl 0.1 moved it to snapshotting.prefix",
    "mapping": "zrepl 0.1 replaced mappings by root_fs",
    "prune": "zrepl 0.1 replaced it by pruning",
    "prune_lhs": "zrepl 0.1 replaced it by pruning.keep_sender",
    "prune_rhs": "zrepl 0.1 replaced it by pruning.keep_receiver",
    "initial_repl_policy": "removed in zrepl 0.1",
    "keep_bookmarks": "removed in zrepl 0.1: zrepl manages its bookmarks itself",
    "client_identity": "zrepl 0.1: client_identities (a list) for stdinserver",
}
_COMMON = ("type", "name", "debug")
_JOB_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # (allowed, required)
    "snap": ((*_COMMON, "filesystems", "snapshotting", "pruning", "monitor"),
             ("type", "name", "filesystems", "snapshotting", "pruning")),
    "push": ((*_COMMON, "connect", "filesystems", "snapshotting", "pruning", "send", "replication",
              "conflict_resolution", "monitor"),
             ("type", "name", "connect", "filesystems", "snapshotting", "pruning")),
    "pull": ((*_COMMON, "connect", "root_fs", "interval", "pruning", "recv", "replication",
              "conflict_resolution"),
             ("type", "name", "connect", "root_fs", "interval", "pruning")),
    "sink": ((*_COMMON, "serve", "root_fs", "recv"), ("type", "name", "serve", "root_fs")),
    "source": ((*_COMMON, "serve", "filesystems", "snapshotting", "send", "monitor"),
               ("type", "name", "serve", "filesystems", "snapshotting")),
}
_CONNECT_KEYS = {
    "tcp": (("type", "address", "dial_timeout"), ("address",)),
    "tls": (("type", "address", "ca", "cert", "key", "server_cn", "dial_timeout"),
            ("address", "ca", "cert", "key", "server_cn")),
    "ssh+stdinserver": (("type", "host", "user", "port", "identity_file", "transport_open_command",
                         "ssh_command", "options", "dial_timeout"),
                        ("host", "user", "port", "identity_file")),
    "local": (("type", "listener_name", "client_identity", "dial_timeout"),
              ("listener_name", "client_identity")),
}
_SERVE_KEYS = {
    "tcp": (("type", "listen", "listen_freebind", "clients"), ("listen", "clients")),
    "tls": (("type", "listen", "listen_freebind", "ca", "cert", "key", "client_cns", "handshake_timeout"),
            ("listen", "ca", "cert", "key", "client_cns")),
    "stdinserver": (("type", "client_identities"), ("client_identities",)),
    "local": (("type", "listener_name"), ("listener_name",)),
}
_SNAPSHOTTING_KEYS = {
    "periodic": (("type", "prefix", "interval", "hooks", "timestamp_format", "timestamp_location",
                  "utc_timestamp_format"), ("prefix", "interval")),
    "cron": (("type", "prefix", "cron", "hooks", "timestamp_format", "timestamp_location",
              "utc_timestamp_format"), ("prefix", "cron")),
    "manual": (("type",), ()),
}
_RULE_KEYS = {
    "not_replicated": (("type", "keep_snapshot_at_cursor"), ()),
    "last_n": (("type", "count", "regex"), ("count",)),
    "grid": (("type", "grid", "regex"), ("grid",)),
    "regex": (("type", "regex", "negate"), ("regex",)),
}
_SEND_FLAGS = ("backup_properties", "large_blocks", "compressed", "embedded_data", "saved")
_PROTECTION_LEVELS = ("guarantee_resumability", "guarantee_incremental", "guarantee_nothing")
# Regexes that keep every snapshot name: a pruner made only of such a rule keeps everything.
_KEEP_ALL = frozenset({".*", "^.*", ".*$", "^.*$", "", "^", ".+", "^.+$"})


@dataclass(slots=True)
class Snapshotting:
    kind: str  # periodic | cron | manual
    where: str
    prefix: str | None = None
    interval: timedelta | None = None
    cron: CronGaps | None = None
    cron_spec: str = ""


@dataclass(slots=True)
class Pruning:
    """One zrepl pruner's keep rules, already in our vocabulary."""

    rules: list[dict[str, Any]]
    where: str
    owner: str  # "job X keep_sender"

    @property
    def keeps_everything(self) -> bool:
        return not self.rules or any(r["type"] == "regex" and not r.get("negate") and r["regex"] in _KEEP_ALL
                                     for r in self.rules)


@dataclass(slots=True)
class Transport:
    kind: str
    where: str
    host: str | None = None  # connect: the address's host, or ssh's host
    port: int | None = None  # connect: the address's port; serve: the listen port
    user: str | None = None
    identity_file: str | None = None
    ssh_port: int | None = None
    listener_name: str | None = None
    client_identity: str | None = None  # local connect
    identities: list[str] = field(default_factory=list)  # serve: who may connect
    client_addresses: dict[str, str] = field(default_factory=dict)  # tcp serve: identity -> address


@dataclass(slots=True)
class Job:
    machine: int
    reader: Reader
    path: Path
    name: str
    type: str
    filesystems: dict[str, bool] | None = None
    snapshotting: Snapshotting | None = None
    keep: Pruning | None = None  # snap: keep; push/pull: keep_sender
    keep_receiver: Pruning | None = None
    connect: Transport | None = None
    serve: Transport | None = None
    root_fs: str | None = None
    raw: bool = False
    encrypted: bool = False
    initial: str | None = None  # newest | all (conflict_resolution.initial_replication)
    # Issue 13's counterparts: replication.protection (the active side's), send.send_properties
    # (the sending side's), recv.properties override / inherit (the receiving side's).
    protection: dict[str, str] = field(default_factory=dict)
    send_properties: bool = False
    recv_override: dict[str, str] = field(default_factory=dict)
    recv_inherit: list[str] = field(default_factory=list)

    def where(self, *sub: str | int) -> str:
        return self.reader.where((*self.path, *sub))

    @property
    def label(self) -> str:
        return f"{self.type} job {self.name!r}"


@dataclass(slots=True)
class Machine:
    """One zrepl daemon: a configuration file given on the command line and its includes."""

    index: int
    file: str
    jobs: list[Job] = field(default_factory=list)


@dataclass(slots=True)
class ReadResult:
    machines: list[Machine]
    notes: list[Note]


def read_machines(paths: list[str]) -> ReadResult:
    """Every file as one machine's zrepl configuration; ConfigError with every problem."""
    notes: list[Note] = []
    problems: list[ConfigProblem] = []
    machines = []
    for index, path in enumerate(paths):
        machine = Machine(index, path)
        for reader in _files_of(path, problems):
            machine.jobs += _jobs(reader, index, notes)
            if reader.filename == path:
                _global_notes(reader, notes)
            problems += reader.problems
        problems += _duplicate_names(machine)
        machines.append(machine)
    if problems:
        raise ConfigError(sorted(set(problems), key=lambda p: (p.file, p.line, p.column, p.path)))
    return ReadResult(machines, notes)


def _files_of(path: str, problems: list[ConfigProblem]) -> list[Reader]:
    """The main file and the files it includes (``include:`` files or directories of *.yml)."""
    main = Reader(load_yaml(path, TOP_LEVEL))
    main.mapping((), ("jobs", "global", "include"))
    readers = [main]
    for i, item in enumerate(main.items(("include",), required=False)):
        if not isinstance(item, str) or not item:
            main.problem(("include", i), "expected a path to a .yml file or a directory")
            continue
        target = resolve_relative(path, item)
        if os.path.isdir(target):
            files = sorted(glob.glob(os.path.join(glob.escape(target), "*.yml")))
        elif os.path.isfile(target):
            files = [target]
        else:
            main.problem(("include", i), f"{item}: no such file or directory (resolved to {target})")
            continue
        for file in files:
            try:
                reader = Reader(load_yaml(file, "a zrepl include file: a mapping with jobs"))
            except ConfigError as exc:
                problems += exc.problems or [ConfigProblem(file, 1, 1, "", str(exc))]
                continue
            reader.mapping((), ("jobs",), hints={"include": "only the main file may include",
                                                 "global": "only the main file may have global"})
            readers.append(reader)
    return readers


def _duplicate_names(machine: Machine) -> list[ConfigProblem]:
    seen: dict[str, Job] = {}
    problems = []
    for job in machine.jobs:
        first = seen.setdefault(job.name, job)
        if first is not job:
            problems.append(job.reader.document.problem(
                (*job.path, "name"),
                f"duplicate job name {job.name!r} (first defined at {first.where('name')})"))
    return problems


def _jobs(reader: Reader, machine: int, notes: list[Note]) -> list[Job]:
    jobs = []
    for i, _ in enumerate(reader.items(("jobs",), required=False)):
        job = _job(reader, ("jobs", i), machine, notes)
        if job is not None:
            jobs.append(job)
    return jobs


def _job(r: Reader, path: Path, machine: int, notes: list[Note]) -> Job | None:
    raw = r.value(path)
    if not isinstance(raw, dict):
        r.problem(path, "a job must be a mapping with type and name")
        return None
    kind = r.string((*path, "type"))
    name = r.string((*path, "name"))
    if kind is None or name is None:
        return None
    if kind == "local":
        r.problem((*path, "type"), "zrepl 0.1 replaced 'local' jobs by a push and a sink job connected by the"
                                   " local transport (see zrepl's samples/local.yml)")
        return None
    if kind not in JOB_TYPES:
        r.problem((*path, "type"), f"unknown job type {kind!r}; expected one of {', '.join(JOB_TYPES)}")
        return None
    if name.startswith("_"):
        r.problem((*path, "name"), f"job name {name!r} starts with '_', which zrepl reserves for its own"
                                   " jobs")
    allowed, required = _JOB_KEYS[kind]
    if r.mapping(path, allowed, required, _OLD_KEYS) is None:
        return None
    job = Job(machine, r, path, name, kind)
    if "filesystems" in raw:
        job.filesystems = _filter(r, (*path, "filesystems"))
    if "snapshotting" in raw:
        job.snapshotting = _snapshotting(r, (*path, "snapshotting"), job, notes)
    _pruning(r, path, job)
    if "connect" in raw:
        job.connect = _transport(r, (*path, "connect"), _CONNECT_KEYS, job, notes)
    if "serve" in raw:
        job.serve = _transport(r, (*path, "serve"), _SERVE_KEYS, job, notes)
    if "root_fs" in raw:
        job.root_fs = r.string((*path, "root_fs"))
    _send(r, (*path, "send"), job, notes)
    _recv(r, (*path, "recv"), job, notes)
    _replication(r, path, job, notes)
    if kind == "pull":
        interval = r.string((*path, "interval"))
        notes.append(Note(job.where("interval"), NoteKind.NOT_MAPPED,
                          f"{job.label} pulls every {interval}: zrepl-reconcile replicates on every run;"
                          f" run it as `zrepl-reconcile run --every {interval}`" if interval != "manual" else
                          f"{job.label} replicates only on `zrepl signal wakeup`: run `zrepl-reconcile apply`"
                          " when you want it to"))
    for key in ("debug", "monitor"):
        if key in raw:
            notes.append(Note(job.where(key), NoteKind.NOT_MAPPED, f"{job.label}: {key} settings"))
    return job


def _filter(r: Reader, path: Path) -> dict[str, bool] | None:
    value = r.value(path)
    if not isinstance(value, dict) or not value:
        r.problem(path, "expected a filter: a mapping of dataset names to true or false")
        return None
    out: dict[str, bool] = {}
    for key, decision in value.items():
        if not isinstance(decision, bool):
            # zrepl 0.0.x wrote "ok" and "!"; 0.1 and later want booleans.
            r.problem((*path, key), f"expected true or false, got {decision!r}")
            continue
        out[key] = decision
    return out


def _snapshotting(r: Reader, path: Path, job: Job, notes: list[Note]) -> Snapshotting | None:
    kind = r.string((*path, "type"))
    if kind is None:
        return None
    if kind not in _SNAPSHOTTING_KEYS:
        r.problem((*path, "type"), f"unknown snapshotting type {kind!r}; expected periodic, cron or manual")
        return None
    allowed, required = _SNAPSHOTTING_KEYS[kind]
    r.mapping(path, allowed, required)
    snap = Snapshotting(kind, r.where(path))
    if kind == "manual":
        return snap
    snap.prefix = r.string((*path, "prefix"))
    if kind == "periodic":
        text = r.string((*path, "interval"))
        if text is not None:
            snap.interval = _duration(r, (*path, "interval"), text)
    else:
        spec = r.string((*path, "cron"))
        if spec is not None:
            try:
                snap.cron, snap.cron_spec = cron_interval(spec), spec
            except ValueError as exc:
                r.problem((*path, "cron"), str(exc))
    for i, hook in enumerate(r.items((*path, "hooks"), required=False)):
        what = hook.get("path") or hook.get("type") if isinstance(hook, dict) else hook
        notes.append(Note(r.where((*path, "hooks", i)), NoteKind.NOT_MAPPED,
                          f"{job.label}: snapshot hook {what} (pre- and post-snapshot hooks arrive with"
                          " snapshots.hooks; until then run it around `zrepl-reconcile apply`)"))
    for key in ("timestamp_format", "utc_timestamp_format", "timestamp_location"):
        value = r.value((*path, key))
        if value is not None and value not in ("dense", "UTC"):
            notes.append(Note(r.where((*path, key)), NoteKind.DIFFERS,
                              f"{job.label}: snapshot names used {key} {value!r}; ours are"
                              f" <prefix>YYYYMMDD_HHMMSS in UTC (manage and the keep rules match the prefix,"
                              " so both kinds of names are handled)"))
    return snap


def _duration(r: Reader, path: Path, text: str) -> timedelta | None:
    try:
        return parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_go_duration(text)
    except ValueError as exc:
        r.problem(path, str(exc))
        return None


def _pruning(r: Reader, path: Path, job: Job) -> None:
    if job.type in ("sink", "source"):
        return
    sides = ("keep",) if job.type == "snap" else ("keep_sender", "keep_receiver")
    pruning_path = (*path, "pruning")
    if r.mapping(pruning_path, sides, sides) is None:
        return
    for side in sides:
        rules = [rule for i, _ in enumerate(r.items((*pruning_path, side)))
                 if (rule := _rule(r, (*pruning_path, side, i))) is not None]
        pruning = Pruning(rules, r.where((*pruning_path, side)), f"{job.label} {side}")
        if side == "keep_receiver":
            job.keep_receiver = pruning
        else:
            job.keep = pruning


def _rule(r: Reader, path: Path) -> dict[str, Any] | None:
    kind = r.string((*path, "type"))
    if kind is None:
        return None
    if kind not in _RULE_KEYS:
        hint = " (zrepl 0.1 renamed 'prefix' rules to regex)" if kind == "prefix" else ""
        r.problem((*path, "type"), f"unknown keep rule type {kind!r}{hint}; expected one of"
                                   f" {', '.join(_RULE_KEYS)}")
        return None
    allowed, required = _RULE_KEYS[kind]
    if r.mapping(path, allowed, required, _OLD_KEYS) is None:
        return None
    rule: dict[str, Any] = {"type": kind}
    if kind == "not_replicated":
        if not r.boolean((*path, "keep_snapshot_at_cursor"), True):
            rule["keep_snapshot_at_cursor"] = False
    elif kind == "last_n":
        count = r.integer((*path, "count"))
        if count is not None and count < 1:
            r.problem((*path, "count"), f"count must be positive, got {count}")
        rule["count"] = count
        _regex_field(r, path, rule, required=False)
    elif kind == "grid":
        grid = r.string((*path, "grid"))
        if grid is not None:
            try:
                parse_grid(grid)
            except ValueError as exc:
                r.problem((*path, "grid"), str(exc))
        rule["grid"] = grid
        _regex_field(r, path, rule, required=False)
    else:
        _regex_field(r, path, rule, required=True)
        if r.boolean((*path, "negate"), False):
            rule["negate"] = True
    return rule


def _regex_field(r: Reader, path: Path, rule: dict[str, Any], *, required: bool) -> None:
    value = r.value((*path, "regex"))
    if value is None and not required:
        return
    text = r.string((*path, "regex"), nonempty=rule["type"] != "regex")
    if text is None:
        return
    try:
        re.compile(text)
    except re.error as exc:
        # Go's RE2 and Python's re agree on the common syntax; a regex only Go reads is an error
        # rather than a rule silently dropped (dropping a keep rule destroys more).
        r.problem((*path, "regex"), f"regex {text!r} is not valid for Python's re ({exc}): rewrite it")
        return
    rule["regex"] = text


def _transport(r: Reader, path: Path, table: dict[str, tuple[tuple[str, ...], tuple[str, ...]]], job: Job,
               notes: list[Note]) -> Transport | None:
    kind = r.string((*path, "type"))
    if kind is None:
        return None
    if kind not in table:
        r.problem((*path, "type"), f"unknown transport type {kind!r}; expected one of {', '.join(table)}")
        return None
    allowed, required = table[kind]
    value = r.mapping(path, allowed, required, _OLD_KEYS)
    if value is None:
        return None
    t = Transport(kind, r.where(path))
    if "address" in value:
        text = r.string((*path, "address"))
        if text is not None:
            t.host, t.port = split_host_port(text)
    if "listen" in value:
        text = r.string((*path, "listen"))
        if text is not None:
            _, t.port = split_host_port(text)
    if kind == "ssh+stdinserver":
        t.host = r.string((*path, "host"))
        t.user = r.string((*path, "user"))
        port = r.integer((*path, "port"))
        t.ssh_port = port
        t.identity_file = r.string((*path, "identity_file"))
    if kind == "local":
        t.listener_name = r.string((*path, "listener_name"))
        if "client_identity" in value:
            t.client_identity = r.string((*path, "client_identity"))
    if "client_cns" in value:
        t.identities = [str(x) for x in r.items((*path, "client_cns"))]
    if "client_identities" in value:
        t.identities = [str(x) for x in r.items((*path, "client_identities"))]
    if "clients" in value:
        clients = r.value((*path, "clients"))
        if isinstance(clients, dict):
            t.identities = [str(v) for v in clients.values()]
            t.client_addresses = {str(v): str(k) for k, v in clients.items() if "/" not in str(k)}
        else:
            r.problem((*path, "clients"), "expected a mapping of client addresses to identities")
    unmapped = sorted(k for k in value if k not in ("type", "address", "listen", "host", "user", "port",
                                                      "identity_file", "listener_name", "client_identity",
                                                      "client_identities"))
    if kind in ("tcp", "tls"):
        notes.append(Note(t.where, NoteKind.NOT_MAPPED,
                          f"{job.label}: the {kind} transport ({', '.join(unmapped) or 'no encryption'})"
                          f" — zrepl-reconcile reaches hosts over SSH with strict host keys instead"))
    elif unmapped:
        notes.append(Note(t.where, NoteKind.NOT_MAPPED, f"{job.label}: {kind} transport settings"
                                                        f" {', '.join(unmapped)}"))
    return t


def split_host_port(text: str) -> tuple[str | None, int | None]:
    """``host:port``, ``[v6]:port`` or ``:port`` as (host or None, port or None)."""
    text = text.strip()
    match = re.match(r"^\[([^\]]*)\]:(\d+)$", text) or re.match(r"^([^:]*):(\d+)$", text)
    if match:
        return match.group(1) or None, int(match.group(2))
    return text or None, None


def _send(r: Reader, path: Path, job: Job, notes: list[Note]) -> None:
    value = r.value(path)
    if value is None:
        return
    allowed = ("encrypted", "raw", "send_properties", *_SEND_FLAGS, "bandwidth_limit", "step_holds")
    if r.mapping(path, allowed) is None:
        return
    job.encrypted = r.boolean((*path, "encrypted"), False)
    job.raw = r.boolean((*path, "raw"), False)
    job.send_properties = r.boolean((*path, "send_properties"), False)
    for flag in _SEND_FLAGS:
        if r.boolean((*path, flag), False):
            notes.append(Note(r.where((*path, flag)), NoteKind.NOT_MAPPED,
                              f"{job.label}: send.{flag} (not supported yet)"))
    for key in ("bandwidth_limit", "step_holds"):
        if key in value:
            notes.append(Note(r.where((*path, key)), NoteKind.NOT_MAPPED, f"{job.label}: send.{key}"))


def _recv(r: Reader, path: Path, job: Job, notes: list[Note]) -> None:
    value = r.value(path)
    if value is None:
        return
    if r.mapping(path, ("properties", "bandwidth_limit", "placeholder")) is None:
        return
    for key in value:
        if key == "properties":
            _recv_properties(r, (*path, key), job)
            continue
        what = {"placeholder": "placeholder encryption", "bandwidth_limit": "bandwidth limit"}[key]
        notes.append(Note(r.where((*path, key)), NoteKind.NOT_MAPPED, f"{job.label}: recv.{key}: {what}"))


def _recv_properties(r: Reader, path: Path, job: Job) -> None:
    """zrepl's recv.properties: ``override`` (zfs recv -o) and ``inherit`` (zfs recv -x)."""
    if r.mapping(path, ("override", "inherit")) is None:
        return
    override = r.value((*path, "override")) or {}
    if isinstance(override, dict):
        job.recv_override = {str(k): str(v) for k, v in override.items()}
    else:
        r.problem((*path, "override"), "expected a mapping")
    job.recv_inherit = [str(name) for name in r.items((*path, "inherit"), required=False)]


def _replication(r: Reader, path: Path, job: Job, notes: list[Note]) -> None:
    replication = r.value((*path, "replication"))
    if isinstance(replication, dict):
        r.mapping((*path, "replication"), ("protection", "concurrency", "one_step"))
        protection = replication.get("protection") or {}
        if isinstance(protection, dict):
            r.mapping((*path, "replication", "protection"), ("initial", "incremental"))
            for key, level in protection.items():
                if level in _PROTECTION_LEVELS:
                    job.protection[str(key)] = level
                else:
                    r.problem((*path, "replication", "protection", key),
                              f"expected one of {', '.join(_PROTECTION_LEVELS)}")
        else:
            r.problem((*path, "replication", "protection"), "expected a mapping")
        for key in ("concurrency", "one_step"):
            if key in replication:
                notes.append(Note(r.where((*path, "replication", key)), NoteKind.NOT_MAPPED,
                                  f"{job.label}: replication.{key}"))
    elif replication is not None:
        r.problem((*path, "replication"), "expected a mapping")
    conflict = r.value((*path, "conflict_resolution"))
    if isinstance(conflict, dict):
        r.mapping((*path, "conflict_resolution"), ("initial_replication",))
        initial = conflict.get("initial_replication")
        if initial == "most_recent":
            job.initial = "newest"
        elif initial == "all":
            job.initial = "all"
        elif initial is not None:
            notes.append(Note(r.where((*path, "conflict_resolution")), NoteKind.NOT_MAPPED,
                              f"{job.label}: conflict_resolution.initial_replication {initial!r}"))


def _global_notes(r: Reader, notes: list[Note]) -> None:
    value = r.value(("global",))
    if not isinstance(value, dict):
        return
    what = {"logging": "logging (zrepl-reconcile writes to stdout and stderr; use journald)",
            "monitoring": "monitoring (no Prometheus endpoint)",
            "control": "the control socket (no daemon)",
            "serve": "the stdinserver socket directory (no daemon)",
            "rpc": "RPC settings"}
    for key in value:
        notes.append(Note(r.where(("global", key)), NoteKind.NOT_MAPPED,
                          f"global.{key}: {what.get(key, key)}"))
