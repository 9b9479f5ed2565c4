"""sanoid.conf as our configuration: one local host, an entry and a policy per dataset section.

How sanoid's model becomes ours (sanoid 2.1.0's ``init``, ``take_snapshots`` and
``prune_snapshots``):

- Datasets: a section manages its dataset, with ``recursive = yes|zfs`` its subtree
  (``"pool/x<": true``); ``process_children_only`` leaves the dataset itself out, explicit
  child sections are cut out of their parent's filter and get their own entry (their settings
  on top of the parent's, as sanoid documents it), sections with autosnap and autoprune off
  are cut out and get none.
- Snapshot creation: our schedule takes over, with OUR names (``<prefix>YYYYMMDD_HHMMSS``,
  prefix ``zrepl_`` unless ``--prefix``) at the interval of the shortest enabled type
  (``frequently`` is ``frequent_period`` minutes). Our snapshots are kept by one grid built
  from the counts (48 hourly, 90 daily, 6 monthly -> ``1x1h(keep=all) | 47x1h | 88x1d | 4x31d``).
- sanoid's own snapshots ``autosnap_<date>_<type>`` keep being pruned by sanoid's rule, per
  type, in our vocabulary: sanoid destroys one only when it is older than count x period AND
  more than count of its type remain, i.e. it keeps the ``count`` newest (``last_n``) and
  those younger than count x period (a ``grid`` window); ``manage`` matches our prefix and
  sanoid's autosnap names of the six types only, so nothing else is ever destroyed.
- Where the two rules differ, a note says so: our window is measured from the newest
  snapshot of the type, sanoid's from the current time (ours keeps at least as much, and
  after the switch-over, when no new autosnaps arrive, the last of each type stay until the
  rules are removed); sanoid deferring pruning (``prune_defer``) keeps everything here.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from reconciler.config.grid import format_duration
from reconciler.config.models import SnapshotSchedule
from reconciler.errors import ConfigError, ConfigProblem
from reconciler.importers.draft import Draft, NoteKind
from reconciler.importers.naming import regex_literal, safe_name, unique
from reconciler.importers.sanoid_ini import Section, normalize_toggles, read_defaults, read_ini, resolve

TYPES = ("frequently", "hourly", "daily", "weekly", "monthly", "yearly")
# sanoid's prune periods: a month is 31 days, a year 365.25 days.
_PERIODS = {"hourly": timedelta(hours=1), "daily": timedelta(days=1), "weekly": timedelta(days=7),
            "monthly": timedelta(days=31), "yearly": timedelta(days=365.25)}
SANOID_NAMES = "autosnap_.*_(?:" + "|".join(TYPES) + ")$"
_NUMERIC = ("frequent_period", "prune_defer", *TYPES)
_SCRIPTS = ("pre_snapshot_script", "post_snapshot_script", "pruning_script", "no_inconsistent_snapshot",
            "force_post_snapshot_script")
_TIMES = ("hourly_min", "daily_hour", "daily_min", "weekly_wday", "weekly_hour", "weekly_min",
          "monthly_mday", "monthly_hour", "monthly_min", "yearly_mon", "yearly_mday", "yearly_hour",
          "yearly_min")
_MONITOR = re.compile(r"^(monitor.*|.*_(warn|crit)|min_percent_free)$")
DEFAULT_PREFIX = "zrepl_"


@dataclass(frozen=True, slots=True)
class TypeRule:
    kind: str  # hourly, daily, ...
    count: int
    period: timedelta

    @property
    def regex(self) -> str:
        return f"^autosnap_.*_{self.kind}$"


def import_sanoid(path: str, *, defaults: str | None = None, prefix: str = DEFAULT_PREFIX) -> Draft:
    """The draft of sanoid.conf ``path`` (with sanoid.defaults.conf ``defaults``, else the one
    next to it, else sanoid 2.1.0's); our snapshots get ``prefix``."""
    SnapshotSchedule(prefix=prefix, interval="1h")  # the prefix is one our schedule accepts
    ini = read_ini(path)
    default_values, defaults_where = read_defaults(path, defaults)
    sections, problems, notes = resolve(ini, default_values)
    problems += _numeric_problems(sections)
    if problems:
        raise ConfigError(sorted(set(problems), key=lambda p: (p.line, p.column)))
    draft = Draft("sanoid", [path])
    draft.notes += notes
    draft.header += [f"sanoid defaults: {defaults_where}",
                     f"Our snapshots: {prefix}YYYYMMDD_HHMMSS (UTC); sanoid's autosnap_<date>_<type> stay"
                     " managed by sanoid's own rule, per type."]
    draft.hosts["local"] = {"connection": "local"}
    draft.remark(("hosts", "local"), f"the machine of {path}: sanoid ran here")
    _Mapper(draft, sections, prefix).run()
    if not draft.filesystems:
        raise ConfigError(f"{path}: no section manages a dataset (every one is a template or ignored):"
                          " nothing to import")
    return draft


def _numeric_problems(sections: list[Section]) -> list[ConfigProblem]:
    problems = []
    for section in sections:
        for key in _NUMERIC:
            value = section.values.get(key, "0")
            if not re.fullmatch(r"\s*\d+\s*", value or "0"):
                file, _, line = section.origin.get(key, section.line).rpartition(":")
                problems.append(ConfigProblem(file or section.line, int(line) if line.isdigit() else 1, 1,
                                              section.name, f"{key} = {value!r}: expected a whole number"))
            else:
                section.values[key] = (value or "0").strip()
    return problems


class _Mapper:
    def __init__(self, draft: Draft, sections: list[Section], prefix: str) -> None:
        self.draft = draft
        self.sections = sections
        self.prefix = prefix
        self.policies: dict[str, str] = {}  # policy JSON -> name
        self.taken: set[str] = set()

    def run(self) -> None:
        for section in self.sections:
            self._inherit(section)
        for section in self.sections:
            self._entry(section)

    # ------------------------------------------------------------------ datasets

    def _parent(self, section: Section) -> Section | None:
        """The nearest section whose recursion reaches ``section``'s dataset."""
        best: Section | None = None
        for other in self.sections:
            if other is section or not other.recursive or other.skip_children:
                continue
            inside = section.path.startswith(other.path + "/")
            if inside and (best is None or len(other.path) > len(best.path)):
                best = other
        return best

    def _inherit(self, section: Section) -> None:
        """A child section starts from its recursive parent's settings (sanoid: 'child datasets
        already initialized won't be wiped out')."""
        parent = self._parent(section)
        if parent is None:
            return
        values = {k: v for k, v in parent.values.items()
                  if not re.search("template|recursive|children_only", k)}
        values.update(section.overrides)
        normalize_toggles(values)
        values["path"] = section.path
        if parent.recursive == "zfs":
            # the parent's `zfs snapshot -r` takes them
            values["autosnap"] = parent.values.get("autosnap", "0")
        section.values = values
        self.draft.note(section.line, NoteKind.DIFFERS,
                        f"[{section.name}] lies in [{parent.name}]'s recursion: sanoid applies its settings"
                        f" on top of [{parent.name}]'s only when it happens to read [{parent.name}] first"
                        " (Perl hash order, random per run); ours always does")

    def _ignored(self, section: Section) -> bool:
        return not section.flag("autosnap") and not section.flag("autoprune")

    def _filter(self, section: Section) -> dict[str, bool]:
        subtree = bool(section.recursive) and not section.skip_children
        out = {(section.path + "<" if subtree else section.path): True}
        if subtree and section.flag("process_children_only"):
            out[section.path] = False
        if subtree:
            for other in self.sections:
                if other is not section and other.path.startswith(section.path + "/"):
                    out[other.path + ("<" if other.recursive else "")] = False
        return out

    def _entry(self, section: Section) -> None:
        if self._ignored(section):
            self.draft.note(section.line, NoteKind.NOT_MAPPED,
                            f"[{section.name}]: autosnap and autoprune off: left out (and out of its parent's"
                            " recursion)")
            return
        if section.flag("process_children_only") and not section.recursive:
            self.draft.note(section.line, NoteKind.NOT_MAPPED,
                            f"[{section.name}]: process_children_only without recursion manages nothing")
            return
        if section.skip_children:
            self.draft.note(section.line, NoteKind.DIFFERS,
                            f"[{section.name}]: skip_children: only {section.path} itself is managed; sanoid"
                            " also dropped explicit child sections when it read them before this one")
        if section.recursive == "zfs" and section.flag("process_children_only"):
            section.values["autosnap"] = "0"
            self.draft.note(section.line, NoteKind.DIFFERS,
                            f"[{section.name}]: recursive = zfs with process_children_only: sanoid takes no"
                            " snapshots at all here (it skips the parent, recursion turns the children's"
                            " off); ours does not either")
        policy, comments = self._policy(section)
        name = self._policy_name(section, {"policy": policy, "comments": comments})
        if name not in self.draft.policies:
            self.draft.policies[name] = policy
            for key, lines in comments.items():
                self.draft.comment(("policies", name, key), *lines)
            self._policy_notes(section, name)
        index = len(self.draft.filesystems)
        self.draft.filesystems.append({"host": "local", "filter": self._filter(section), "policy": name})
        self.draft.comment(("filesystems", index), f"from [{section.name}] ({section.line})"
                           + (f", recursive = {section.recursive}" if section.recursive else ""))
        self._section_notes(section)

    def _policy_name(self, section: Section, policy: dict[str, Any]) -> str:
        key = json.dumps(policy, sort_keys=True)
        if key in self.policies:
            return self.policies[key]
        base = "+".join(section.templates) or section.name
        name = unique(safe_name(base, "sanoid"), self.taken)
        self.policies[key] = name
        return name

    # ------------------------------------------------------------------ retention

    def _types(self, section: Section) -> list[TypeRule]:
        rules = []
        for kind in TYPES:
            count = section.count(kind)
            if count > 0:
                period = (timedelta(minutes=max(1, section.count("frequent_period"))) if kind == "frequently"
                          else _PERIODS[kind])
                rules.append(TypeRule(kind, count, period))
        return sorted(rules, key=lambda r: r.period)

    def _policy(self, section: Section) -> tuple[dict[str, Any], dict[str, list[str]]]:
        types = self._types(section)
        policy: dict[str, Any] = {}
        comments: dict[str, list[str]] = {}
        takes = section.flag("autosnap") and bool(types)
        if takes:
            policy["snapshots"] = {"prefix": self.prefix, "interval": format_duration(types[0].period)}
            policy["manage"] = f"^(?:{regex_literal(self.prefix)}|{SANOID_NAMES})"
        else:
            policy["manage"] = f"^{SANOID_NAMES}"
        comments["manage"] = ["our snapshots and sanoid's autosnap_<date>_<type> of its six types:",
                              "nothing else is ever destroyed (sanoid too only pruned its autosnap_ names)"]
        rules: list[dict[str, Any]] = []
        if takes:
            rules.append({"type": "grid", "grid": our_grid(types), "regex": f"^{regex_literal(self.prefix)}"})
        for rule in types:
            rules += sanoid_rules(rule)
        if not section.flag("autoprune"):
            policy["keep_source"] = []
            comments["keep_source"] = ["autoprune = no: sanoid never pruned here; an empty list keeps"
                                       " everything"]
            return policy, comments
        if int(section.values.get("prune_defer") or 0) > 0:
            policy["keep_source"] = []
            comments["keep_source"] = [
                f"prune_defer = {section.values['prune_defer']}: sanoid pruned only while the pool was"
                f" more than {section.values['prune_defer']}% full;",
                "ours cannot see the pool's capacity, so an empty list keeps everything. To prune, use:"]
            comments["keep_source"] += [f"  - {json.dumps(r)}" for r in rules]
            self.draft.note(section.origin.get("prune_defer", section.line), NoteKind.SAFER,
                            f"[{section.name}]: prune_defer: nothing is pruned (the rules to enable are in a"
                            " comment)")
            return policy, comments
        if not rules:
            rules = [{"type": "regex", "regex": policy["manage"], "negate": True}]
            comments["keep_source"] = ["every type is 0: sanoid destroyed all its autosnap_ snapshots here;"
                                       " this rule keeps only what manage does not match"]
        else:
            comments["keep_source"] = _retention_comment(takes, types, self.prefix)
        policy["keep_source"] = rules
        return policy, comments

    # ------------------------------------------------------------------ notes

    def _policy_notes(self, section: Section, name: str) -> None:
        types = self._types(section)
        if section.flag("autosnap") and types:
            times = ", ".join(f"{k} = {section.values[k]}" for k in _TIMES if k in section.values
                              and section.origin.get(k, "").startswith(section.line.rpartition(":")[0]))
            values = section.values
            hourly = f":{int(values.get('hourly_min') or 0):02d}"
            daily = f"{int(values.get('daily_hour') or 23):02d}:{int(values.get('daily_min') or 59):02d}"
            self.draft.note(section.line, NoteKind.DIFFERS,
                            f"policy {name} ([{section.name}]): sanoid took each type at its preferred local"
                            f" time (hourly at {hourly}, daily at {daily}{'; ' + times if times else ''});"
                            f" ours takes {self.prefix}<UTC time> whenever the newest is"
                            f" {format_duration(types[0].period)} old, kept by one grid over the type counts:"
                            f" {our_grid(types)}")
        if section.flag("autoprune") and types:
            self.draft.note(section.line.rpartition(":")[0], NoteKind.DIFFERS,
                            "sanoid destroys an autosnap only when it is older than count x period"
                            " (measured from now) AND more than count of its type remain; ours keeps the"
                            " count newest and those younger than count x period measured from the newest"
                            " of the type: never fewer. Once our schedule has taken over no new autosnaps"
                            " arrive, and the newest of each type stay until you remove their rules")

    def _section_notes(self, section: Section) -> None:
        for key in _SCRIPTS:
            if section.values.get(key) and section.values[key] not in ("0",):
                self.draft.note(section.origin.get(key, section.line), NoteKind.NOT_MAPPED,
                                f"[{section.name}]: {key} = {section.values[key]}")
        user_set = {k for k, where in section.origin.items() if where != "sanoid.defaults.conf"}
        monitoring = sorted(k for k in user_set if _MONITOR.match(k))
        if monitoring:
            self.draft.note(section.line, NoteKind.NOT_MAPPED,
                            f"[{section.name}]: monitoring settings ({', '.join(monitoring)})")


def sanoid_rules(rule: TypeRule) -> list[dict[str, Any]]:
    """sanoid's prune rule for one type: keep the ``count`` newest, and every one younger than
    count x period (the window is one second longer: sanoid keeps a snapshot exactly that old)."""
    window = format_duration(rule.period * rule.count)
    return [{"type": "last_n", "count": rule.count, "regex": rule.regex},
            {"type": "grid", "grid": f"1x{window}(keep=all) | 1x1s(keep=all)", "regex": rule.regex}]


def our_grid(types: list[TypeRule]) -> str:
    """One grid over our snapshots from sanoid's counts: the first type's count of its period
    (the newest bucket keeps all), then each longer type's buckets until its count x period is
    covered (rounded up: never shorter than sanoid's)."""
    first = types[0]
    parts = [f"1x{format_duration(first.period)}(keep=all)"]
    if first.count > 1:
        parts.append(f"{first.count - 1}x{format_duration(first.period)}")
    covered = first.period * first.count
    for rule in types[1:]:
        missing = rule.period * rule.count - covered
        if missing <= timedelta(0):
            continue
        buckets = math.ceil(missing / rule.period)
        parts.append(f"{buckets}x{format_duration(rule.period)}")
        covered += rule.period * buckets
    return " | ".join(parts)


def _retention_comment(takes: bool, types: list[TypeRule], prefix: str) -> list[str]:
    lines = []
    if takes:
        lines.append(f"our own {prefix} snapshots: sanoid's counts as one grid;")
    counts = ", ".join(f"{r.count} {r.kind}" for r in types)
    lines += [f"sanoid's autosnap_ snapshots, each type as sanoid prunes it ({counts}): the count",
              "newest, and those younger than count x period (from the newest of the type)"]
    return lines
