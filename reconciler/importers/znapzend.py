"""znapzend's backup plans (``org.znapzend:*`` properties) as our configuration.

The input is what znapzend stores: ``zfs get -H -o name,property,value -s local all``
(three tab-separated columns), ``property value`` lines (two columns, the dataset from
``org.znapzend:src``), or ``znapzendzetup export`` (``key=value``, keys without the prefix).

How znapzend's model becomes ours (``ZnapZend::Config`` and ``ZnapZend::Time``):

- ``src_plan`` ``7d=>1h,30d=>4h,90d=>1d`` is a list of retention=>interval pairs, cumulative:
  one per hour for 7 days, then one per 4 hours up to 30 days, then one a day up to 90. It
  becomes a grid (``1x1h(keep=all) | 167x1h | 138x4h | 60x1d``); units as znapzend reads
  them (``m`` and ``mon`` are months of 30 days, a year 365.25 days). The smallest interval is
  our schedule's. ``dst_<k>_plan`` becomes keep_target.
- ``recursive=on`` selects the subtree; a child with ``enabled=off`` is cut out of it.
- ``tsformat`` (default ``%Y-%m-%d-%H%M%S``) names znapzend's snapshots: ``manage`` matches
  those names and our prefix. znapzend's existing snapshots are kept as znapzend left them,
  up to the plan's longest retention (a note says to remove that rule afterwards): znapzend
  keeps the first snapshot of each fixed time slot, ours counts buckets back from the newest
  snapshot, and the two never agree exactly.
- ``dst_<k>`` ``[user@]host:dataset`` becomes a host and a target. znapzend receives the source
  under any name; ours under ``root/<source path>``: when the names do not fit, the target is
  written as a comment with the ``zfs rename`` that makes them fit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from reconciler.config.grid import format_duration
from reconciler.config.models import SnapshotSchedule
from reconciler.domain.names import check_dataset_name
from reconciler.errors import ConfigError, ConfigProblem
from reconciler.importers.draft import Draft, NoteKind
from reconciler.importers.naming import host_name_from_address, regex_literal, safe_name, unique
from reconciler.importers.source import read_text

PREFIX = "org.znapzend:"
DEFAULT_TSFORMAT = "%Y-%m-%d-%H%M%S"
DEFAULT_PREFIX = "zrepl_"
_FACTORS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 7 * 86400,
            "months": 30 * 86400, "years": 31_557_600}
# ZnapZend::Time configUnits (plans are lowercased first, so "M" reads as "m": months).
_UNITS = {"s": "seconds", "sec": "seconds", "second": "seconds", "min": "minutes", "mins": "minutes",
          "minute": "minutes", "h": "hours", "hour": "hours", "d": "days", "day": "days", "w": "weeks",
          "week": "weeks", "m": "months", "mon": "months", "mons": "months", "month": "months",
          "y": "years", "year": "years", **{unit: unit for unit in _FACTORS}}
_PLAN_ITEM = re.compile(r"^(\d+)([a-z]+)$")
_KNOWN = re.compile(r"^(enabled|recursive|src|src_plan|tsformat|pre_znap_cmd|post_znap_cmd|mbuffer.*|"
                    r"src_mbuffer.*|zend_delay|destination_concurrency.*|dst_[^_]+(_plan|_precmd|_pstcmd|"
                    r"_mbuffer.*|_autocreation)?)$")


@dataclass(slots=True)
class BackupSet:
    dataset: str
    props: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)

    def where(self, path: str, key: str | None = None) -> str:
        line = self.lines.get(key) if key is not None else None
        return f"{path}:{line if line is not None else min(self.lines.values(), default=1)}"

    @property
    def enabled(self) -> bool:
        return self.props.get("enabled", "on") != "off"

    @property
    def recursive(self) -> bool:
        return self.props.get("recursive", "off") == "on"

    @property
    def has_plan(self) -> bool:
        return "src_plan" in self.props


@dataclass(frozen=True, slots=True)
class Plan:
    pairs: tuple[tuple[timedelta, timedelta], ...]  # (retention, interval), by retention

    @property
    def interval(self) -> timedelta:
        return min(interval for _, interval in self.pairs)

    @property
    def retention(self) -> timedelta:
        return self.pairs[-1][0]


def parse_plan(text: str) -> Plan:
    """znapzend's ``retention=>interval,...``; ValueError saying what is wrong."""
    pairs = []
    for item in re.sub(r"\s+", "", text.lower()).split(","):
        retention, arrow, interval = item.partition("=>")
        if not arrow:
            raise ValueError(f"plan item {item!r}: expected RETENTION=>INTERVAL, e.g. 7d=>1h")
        pairs.append((_plan_time(retention, text), _plan_time(interval, text)))
    return Plan(tuple(sorted(pairs)))


def _plan_time(text: str, plan: str) -> timedelta:
    match = _PLAN_ITEM.match(text)
    unit = _UNITS.get(match.group(2)) if match else None
    if match is None or unit is None or int(match.group(1)) == 0:
        raise ValueError(f"plan {plan!r}: {text!r} is not a time such as 7d, 1h, 30min, 1month, 10y")
    return timedelta(seconds=int(match.group(1)) * _FACTORS[unit])


def plan_grid(plan: Plan) -> str:
    """The plan as a grid: each pair's interval from the previous retention up to its own
    (rounded up, never shorter), the newest bucket keeping all."""
    parts: list[str] = []
    covered = timedelta(0)
    length = timedelta(0)
    for retention, interval in plan.pairs:
        length = max(length, interval)  # grid intervals must not get shorter
        missing = retention - covered
        if missing <= timedelta(0):
            continue
        buckets = math.ceil(missing / length)
        covered += length * buckets
        if not parts:
            parts.append(f"1x{format_duration(length)}(keep=all)")
            buckets -= 1
        if buckets > 0:
            parts.append(f"{buckets}x{format_duration(length)}")
    return " | ".join(parts)


def tsformat_regex(tsformat: str) -> str:
    """The names a tsformat gives, as an anchored regex (znapzend's own filter, escaped)."""
    out = []
    i = 0
    while i < len(tsformat):
        if tsformat[i] == "%" and i + 1 < len(tsformat):
            out.append({"Y": r"\d{4}"}.get(tsformat[i + 1], r"\d{2}"))
            i += 2
        else:
            out.append(regex_literal(tsformat[i]))
            i += 1
    return "^" + "".join(out) + "$"


def read_backup_sets(path: str) -> list[BackupSet]:
    sets: dict[str, BackupSet] = {}
    pending: list[tuple[str, str, int]] = []  # property, value, line of a two-column or export file
    problems: list[ConfigProblem] = []
    for number, raw in enumerate(read_text(path).splitlines(), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#") or line.startswith("NAME"):
            continue
        columns = line.split("\t")
        if len(columns) >= 3:  # zfs get -H -o name,property,value[,source]
            name, prop, value = columns[0], columns[1], columns[2]
            if prop.startswith(PREFIX):
                backup = sets.setdefault(name, BackupSet(name))
                backup.props[prop[len(PREFIX):]] = value
                backup.lines[prop[len(PREFIX):]] = number
            continue
        if "=" in line and not line.startswith(PREFIX) and " " not in line.split("=", 1)[0]:
            key, _, value = line.partition("=")  # znapzendzetup export
            pending.append((key.strip(), value.strip(), number))
            continue
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0].startswith(PREFIX):
            pending.append((parts[0][len(PREFIX):], parts[1].strip(), number))
            continue
        if len(problems) == 5:
            problems.append(ConfigProblem(path, number, 1, "", "and more: stopped reading here"))
            break
        problems.append(ConfigProblem(path, number, 1, "", f"not a znapzend property line: {line.strip()!r}"
                                      " (expected `zfs get -H -o name,property,value -s local all` output or"
                                      " `znapzendzetup export`)"))
    if pending:
        source = next((value for key, value, _ in pending if key == "src"), None)
        if source is None:
            problems.append(ConfigProblem(path, pending[0][2], 1, "",
                                          "no src property: which dataset is this?"))
        else:
            backup = sets.setdefault(source, BackupSet(source))
            for key, value, number in pending:
                backup.props[key], backup.lines[key] = value, number
    if problems:
        raise ConfigError(problems)
    if not sets:
        raise ConfigError(f"{path}: no org.znapzend properties found")
    return list(sets.values())


def import_znapzend(path: str, *, prefix: str = DEFAULT_PREFIX) -> Draft:
    SnapshotSchedule(prefix=prefix, interval="1h")
    sets = read_backup_sets(path)
    draft = Draft("znapzend", [path])
    draft.hosts["local"] = {"connection": "local"}
    draft.remark(("hosts", "local"), f"the machine of {path}: znapzend ran here")
    _Mapper(draft, path, sets, prefix).run()
    if not draft.filesystems:
        raise ConfigError(f"{path}: no enabled backup plan (org.znapzend:src_plan): nothing to import")
    return draft


class _Mapper:
    def __init__(self, draft: Draft, path: str, sets: list[BackupSet], prefix: str) -> None:
        self.draft, self.path, self.sets, self.prefix = draft, path, sets, prefix
        self.taken: set[str] = set()
        self.host_names: dict[str, str] = {}  # [user@]address -> host name
        self.hosts_taken: set[str] = {"local"}
        self.problems: list[ConfigProblem] = []

    def run(self) -> None:
        for backup in self.sets:
            self._check(backup)
        if self.problems:
            raise ConfigError(self.problems)
        for backup in sorted(self.sets, key=lambda b: b.dataset):
            if backup.has_plan and backup.enabled:
                self._entry(backup)
            elif backup.has_plan:
                self.draft.note(backup.where(self.path, "enabled"), NoteKind.NOT_MAPPED,
                                f"{backup.dataset}: the plan is disabled (enabled=off): left out")

    def _problem(self, backup: BackupSet, key: str, message: str) -> None:
        self.problems.append(ConfigProblem(self.path, backup.lines.get(key, 1), 1, f"{backup.dataset} {key}",
                                           message))

    def _check(self, backup: BackupSet) -> None:
        try:
            check_dataset_name(backup.dataset)
        except ValueError as exc:
            self._problem(backup, "src", str(exc))
        for key, value in backup.props.items():
            if key == "src_plan" or re.fullmatch(r"dst_[^_]+_plan", key):
                try:
                    parse_plan(value)
                except ValueError as exc:
                    self._problem(backup, key, str(exc))
            elif key == "tsformat" and not re.fullmatch(r"(?:%[YmdHMS]|[\w\-.:])+", value):
                self._problem(backup, key, f"tsformat {value!r}: znapzend allows %Y %m %d %H %M %S,"
                                           " - _ . : and letters or digits")
            elif not _KNOWN.match(key):
                self.draft.note(backup.where(self.path, key), NoteKind.NOT_MAPPED,
                                f"{backup.dataset}: org.znapzend:{key} = {value}")

    def _parent(self, backup: BackupSet) -> BackupSet | None:
        best = None
        for other in self.sets:
            if (other is not backup and other.recursive and other.has_plan
                    and backup.dataset.startswith(other.dataset + "/")
                    and (best is None or len(other.dataset) > len(best.dataset))):
                best = other
        return best

    def _filter(self, backup: BackupSet) -> dict[str, bool]:
        out = {backup.dataset + ("<" if backup.recursive else ""): True}
        if backup.recursive:
            for other in self.sets:
                if other is not backup and self._parent(other) is backup:
                    out[other.dataset + ("<" if other.recursive else "")] = False
        return out

    def _entry(self, backup: BackupSet) -> None:
        src = parse_plan(backup.props["src_plan"])
        tsformat = backup.props.get("tsformat", DEFAULT_TSFORMAT)
        legacy = tsformat_regex(tsformat)
        ours = f"^{regex_literal(self.prefix)}"
        policy: dict[str, Any] = {
            "snapshots": {"prefix": self.prefix, "interval": format_duration(src.interval)},
            "manage": f"^(?:{regex_literal(self.prefix)}|{legacy[1:]})",
            "keep_source": [{"type": "grid", "grid": plan_grid(src), "regex": ours},
                            _legacy_rule(src, legacy)],
        }
        dst_keys = sorted(k for k in backup.props if re.fullmatch(r"dst_[^_]+", k))
        target_plans = {k: parse_plan(backup.props[f"{k}_plan"])
                        for k in dst_keys if f"{k}_plan" in backup.props}
        if target_plans:
            rules: list[dict[str, Any]] = []
            for plan in target_plans.values():
                rule = {"type": "grid", "grid": plan_grid(plan), "regex": ours}
                if rule not in rules:
                    rules.append(rule)
            longest = max(target_plans.values(), key=lambda p: p.retention)
            rules.append(_legacy_rule(longest, legacy))
            policy["keep_target"] = rules
            if len({plan_grid(p) for p in target_plans.values()}) > 1:
                self.draft.note(backup.where(self.path, dst_keys[0]), NoteKind.SAFER,
                                f"{backup.dataset}: the destinations have different plans; our targets share"
                                " one keep_target: each keeps what any of the plans keeps")
        name = unique(safe_name(backup.dataset.replace("/", "_"), "znapzend"), self.taken)
        self.draft.policies[name] = policy
        self.draft.comment(("policies", name, "keep_source"),
                           f"src_plan {backup.props['src_plan']}: our {self.prefix} snapshots by the plan;",
                           f"znapzend's snapshots ({tsformat}) kept as znapzend left them for the plan's",
                           f"longest retention ({format_duration(src.retention)}): remove that rule once that"
                           " long has passed after the switch-over")
        index = len(self.draft.filesystems)
        entry: dict[str, Any] = {"host": "local", "filter": self._filter(backup), "policy": name}
        targets = [t for k in dst_keys if (t := self._target(backup, k, index)) is not None]
        if targets:
            entry["replicate_to"] = targets
        self.draft.filesystems.append(entry)
        self.draft.comment(("filesystems", index), f"from the znapzend plan of {backup.dataset}"
                           f" ({backup.where(self.path, 'src_plan')})")
        self._notes(backup, src, tsformat)

    def _target(self, backup: BackupSet, key: str, index: int) -> dict[str, Any] | None:
        value = backup.props[key]
        remote, _, dataset = value.rpartition(":") if ":" in value.split("/", 1)[0] else ("", "", value)
        user, _, address = remote.rpartition("@")
        if remote:
            host = self.host_names.get(remote) or unique(host_name_from_address(address), self.hosts_taken)
            self.host_names[remote] = host
            entry: dict[str, Any] = {"connection": "ssh", "address": address}
            if user:
                entry["user"] = user
            self.draft.hosts.setdefault(host, entry)
        else:
            host = "local"
        try:
            check_dataset_name(dataset)
        except ValueError as exc:
            raise ConfigError(f"{backup.where(self.path, key)}: {key} {value!r}: {exc}") from None
        suffix = "/" + backup.dataset
        if dataset.endswith(suffix) and len(dataset) > len(suffix):
            return {"host": host, "root": dataset[: -len(suffix)]}
        root = dataset.rsplit("/", 1)[0] if "/" in dataset else dataset
        renamed = f"{root}/{backup.dataset}"
        where = f"ssh {remote} " if remote else ""
        self.draft.comment(("filesystems", index),
                           f"znapzend's {key}: {value} receives {backup.dataset} as {dataset};",
                           f"ours receives it as <root>/{backup.dataset}. To keep that replica, rename it"
                           " first and then add:",
                           f"    {where}zfs rename -p {dataset} {renamed}",
                           f"  replicate_to: [{{host: {host}, root: {root}}}]")
        self.draft.note(backup.where(self.path, key), NoteKind.NOT_MAPPED,
                        f"{backup.dataset}: {key} {value}: the replica's name does not follow"
                        " <root>/<source path>; the target is in a comment with the"
                        f" `zfs rename -p {dataset} {renamed}` that makes it fit")
        return None

    def _notes(self, backup: BackupSet, plan: Plan, tsformat: str) -> None:
        where = backup.where(self.path, "src_plan")
        self.draft.note(where, NoteKind.DIFFERS,
                        f"{backup.dataset}: znapzend takes snapshots at multiples of"
                        f" {format_duration(plan.interval)} since the epoch and keeps the first of each fixed"
                        " slot; ours takes one when the newest is that old and keeps the oldest of each"
                        " bucket counted back from the newest: the same density, not the same snapshots")
        self.draft.note(where, NoteKind.SAFER,
                        f"{backup.dataset}: znapzend's existing snapshots ({tsformat}) are all kept for"
                        f" {format_duration(plan.retention)} after its newest one (znapzend would thin them"
                        " further): remove that rule afterwards")
        for key in ("pre_znap_cmd", "post_znap_cmd", "zend_delay", "mbuffer", "mbuffer_size", "src_mbuffer",
                    "src_mbuffer_size"):
            value = backup.props.get(key)
            if value not in (None, "off", "0", "", "1G"):
                self.draft.note(backup.where(self.path, key), NoteKind.NOT_MAPPED,
                                f"{backup.dataset}: {key} = {value}")
        for key, value in sorted(backup.props.items()):
            if re.fullmatch(r"dst_[^_]+_(precmd|pstcmd|mbuffer.*)", key) and value not in ("off", "", "1G"):
                self.draft.note(backup.where(self.path, key), NoteKind.NOT_MAPPED,
                                f"{backup.dataset}: {key} = {value}")


def _legacy_rule(plan: Plan, legacy: str) -> dict[str, Any]:
    """znapzend's snapshots, all of them, for the plan's longest retention after the newest one
    (one second more: znapzend keeps a snapshot exactly that old)."""
    return {"type": "grid", "grid": f"1x{format_duration(plan.retention)}(keep=all) | 1x1s(keep=all)",
            "regex": legacy}
