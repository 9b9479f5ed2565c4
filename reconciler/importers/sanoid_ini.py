"""sanoid.conf read as sanoid reads it (``init`` in sanoid 2.1.0 over Config::IniFiles):
sections and templates, the defaults file as the list of allowed keys, ``use_template`` in
order, inline overrides, toggles, and which section manages which datasets.

Per section sanoid starts from ``[template_default]`` of sanoid.defaults.conf (without
``path``, ``recursive``, ``use_template``, ``process_children_only``), then the user's own
``[template_default]``, then each template of ``use_template`` in order, then the section's
own keys; every later one overrides. ``recursive`` and ``skip_children`` count only where
they are written in the section itself (sanoid ignores them in templates).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from reconciler.errors import ConfigError, ConfigProblem
from reconciler.importers.draft import Note, NoteKind
from reconciler.importers.source import read_text

# sanoid 2.1.0's sanoid.defaults.conf [template_default], used when no defaults file is found
# next to the configuration (sanoid itself reads /usr/share/sanoid/sanoid.defaults.conf on Debian).
BUILTIN_DEFAULTS: dict[str, str] = {
    "path": "", "recursive": "", "use_template": "", "process_children_only": "", "skip_children": "",
    "pre_snapshot_script": "", "post_snapshot_script": "", "pruning_script": "", "script_timeout": "5",
    "no_inconsistent_snapshot": "", "force_post_snapshot_script": "", "frequent_period": "15",
    "autoprune": "yes", "frequently": "0", "hourly": "48", "daily": "90", "weekly": "0", "monthly": "6",
    "yearly": "0", "prune_defer": "0", "autosnap": "1", "hourly_min": "0", "daily_hour": "23",
    "daily_min": "59", "weekly_wday": "1", "weekly_hour": "23", "weekly_min": "30", "monthly_mday": "1",
    "monthly_hour": "0", "monthly_min": "0", "yearly_mon": "1", "yearly_mday": "1", "yearly_hour": "0",
    "yearly_min": "0", "monitor": "yes", "monitor_dont_warn": "no", "monitor_dont_crit": "no",
    "frequently_warn": "0", "frequently_crit": "0", "hourly_warn": "90m", "hourly_crit": "360m",
    "daily_warn": "28h", "daily_crit": "32h", "weekly_warn": "0", "weekly_crit": "0", "monthly_warn": "32d",
    "monthly_crit": "40d", "yearly_warn": "0", "yearly_crit": "0", "capacity_warn": "80",
    "capacity_crit": "95",
}
TOGGLES = ("autosnap", "autoprune", "monitor_dont_warn", "monitor_dont_crit", "monitor", "recursive",
           "process_children_only", "skip_children", "no_inconsistent_snapshot", "force_post_snapshot_script")
_TRUE = ("1", "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON")
_FALSE = ("0", "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF")
_SECTION = re.compile(r"^\s*\[(.*)\]\s*$")
_KEY_VALUE = re.compile(r"^\s*([^=\s][^=]*?)\s*=\s*(.*?)\s*$")


@dataclass(slots=True)
class Ini:
    """An INI file: sections in order, each key with its value and line."""

    path: str
    sections: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)
    section_lines: dict[str, int] = field(default_factory=dict)

    def where(self, section: str, key: str | None = None) -> str:
        entry = self.sections.get(section, {}).get(key) if key is not None else None
        line = entry[1] if entry is not None else self.section_lines.get(section, 1)
        return f"{self.path}:{line}"


def read_ini(path: str) -> Ini:
    """Config::IniFiles' reading: ``[section]``, ``key = value``, whole-line ``#``/``;``
    comments; a repeated section continues it; a repeated key is an error here (sanoid would
    read a list and fail in odd ways)."""
    ini = Ini(path)
    problems: list[ConfigProblem] = []
    current: str | None = None
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        section = _SECTION.match(line)
        if section:
            current = section.group(1).strip()
            ini.sections.setdefault(current, {})
            ini.section_lines.setdefault(current, number)
            continue
        pair = _KEY_VALUE.match(line)
        if pair is None:
            problems.append(ConfigProblem(path, number, 1, "",
                                          f"not a 'key = value' line or a [section]: {stripped!r}"))
            continue
        if current is None:
            problems.append(ConfigProblem(path, number, 1, "", "a setting before the first [section]"))
            continue
        key, value = pair.group(1), pair.group(2)
        keys = ini.sections[current]
        if key in keys:
            first = keys[key][1]
            problems.append(ConfigProblem(
                path, number, 1, current, f"duplicate key {key!r} in [{current}] (first at line {first})"))
            continue
        keys[key] = (value, number)
    if problems:
        raise ConfigError(problems)
    return ini


def read_defaults(config_path: str, defaults_path: str | None) -> tuple[dict[str, str], str]:
    """The ``[template_default]`` of sanoid.defaults.conf: the file given, the one next to the
    configuration, or sanoid 2.1.0's built in here; with where it came from."""
    candidate = defaults_path or os.path.join(os.path.dirname(config_path) or ".", "sanoid.defaults.conf")
    if defaults_path is None and not os.path.isfile(candidate):
        return dict(BUILTIN_DEFAULTS), "sanoid 2.1.0's defaults (built in)"
    ini = read_ini(candidate)
    if "template_default" not in ini.sections:
        raise ConfigError(f"{candidate}: no [template_default] section: not a sanoid.defaults.conf")
    return {key: value for key, (value, _) in ini.sections["template_default"].items()}, candidate


@dataclass(slots=True)
class Section:
    """A dataset section resolved as sanoid resolves it."""

    name: str
    path: str  # the dataset
    values: dict[str, str]  # every setting after defaults, templates and overrides
    origin: dict[str, str]  # key -> FILE:LINE where its value was set (templates included)
    recursive: str  # "" | "yes" | "zfs"
    skip_children: bool
    line: str  # FILE:LINE of the [section]
    overrides: dict[str, str] = field(default_factory=dict)  # its templates' and its own keys
    templates: list[str] = field(default_factory=list)  # use_template, in order

    def flag(self, key: str) -> bool:
        return self.values.get(key) == "1"

    def count(self, key: str) -> int:
        return int(self.values.get(key) or 0)


def resolve(ini: Ini, defaults: dict[str, str]) -> tuple[list[Section], list[ConfigProblem], list[Note]]:
    """Every non-template section resolved; unknown keys are problems (sanoid dies on them)."""
    notes: list[Note] = []
    problems = [ConfigProblem(ini.path, line, 1, section, f"unknown setting {key!r} in [{section}] (sanoid:"
                                                          " \"I don't understand the setting\")")
                for section, keys in ini.sections.items() for key, (_, line) in keys.items()
                if key not in defaults]
    user_default = ini.sections.get("template_default", {})
    sections = []
    for name, keys in ini.sections.items():
        if name.startswith("template_"):
            continue
        values = {k: v for k, v in defaults.items() if not re.search("template|recursive|children_only", k)}
        origin = {k: "sanoid.defaults.conf" for k in values}
        for key, (value, line) in user_default.items():
            if not re.search("template|recursive", key):
                values[key], origin[key] = value, f"{ini.path}:{line}"
        overrides: dict[str, str] = {}
        template_names = [t.strip() for t in keys.get("use_template", ("", 0))[0].split(",") if t.strip()]
        for template in template_names:
            if f"template_{template}" not in ini.sections:
                notes.append(Note(ini.where(name, "use_template"), NoteKind.DIFFERS,
                                  f"[{name}] uses template {template!r}, which is not defined: ignored, as"
                                  " sanoid ignores it"))
            for key, (value, line) in ini.sections.get(f"template_{template}", {}).items():
                if not re.search("template|recursive", key):
                    overrides[key], origin[key] = value, f"{ini.path}:{line}"
        for key, (value, line) in keys.items():
            if not re.search("template|recursive|skip_children", key):
                overrides[key], origin[key] = value, f"{ini.path}:{line}"
        values.update(overrides)
        normalize_toggles(values)
        normalize_toggles(overrides)
        recursive_raw = keys.get("recursive", ("", 0))[0]
        recursive = "zfs" if "zfs" in recursive_raw.lower() else ("yes" if recursive_raw in _TRUE else "")
        skip = keys.get("skip_children", ("", 0))[0] in _TRUE
        path = keys["path"][0] if "path" in keys else name
        sections.append(Section(name, path, values, origin, recursive, skip, ini.where(name), overrides,
                                template_names))
    return sections, problems, notes


def normalize_toggles(values: dict[str, str]) -> None:
    """sanoid's toggles as "1"/"0" (other values stay as written, as sanoid leaves them)."""
    for toggle in TOGGLES:
        if values.get(toggle) in _TRUE:
            values[toggle] = "1"
        elif values.get(toggle) in _FALSE:
            values[toggle] = "0"
