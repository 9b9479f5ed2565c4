"""A forecast (``simulate``) as a table a user reads at a glance, and as JSON.

One table per source filesystem: a row per day with the snapshot count, oldest and newest
on the source and on each target, what the day took, sent and destroyed, and what the rule
from zrepl's history did while a host was down.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from reconciler.config.grid import format_duration
from reconciler.planning.forecast import Forecast, Group, GroupDay, Side, SideState
from reconciler.wording import plural

FORMAT_VERSION = 1
_WHEN = "%m-%d %H:%M"


def _when(seconds: int | None) -> str:
    return "-" if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime(_WHEN)


def _side_name(side: Side) -> str:
    return f"{side[0]}:{side[1]}"


def header(forecast: Forecast, facts_from: str) -> list[str]:
    start = forecast.start.strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Simulated {plural(forecast.days, 'day')} from {start}: plan and apply every"
             f" {format_duration(forecast.step)} ({forecast.runs} runs), starting from {facts_from}."]
    for outage in forecast.outages:
        lines.append(f"Outage: {outage.host} unreachable from {outage.start:%Y-%m-%d %H:%M}"
                     f" to {outage.end:%Y-%m-%d %H:%M} UTC.")
    return lines


def render_text(forecast: Forecast, facts_from: str) -> str:
    lines = header(forecast, facts_from)
    if not forecast.groups:
        lines.append("No managed source filesystem exists in the facts: nothing to simulate.")
    for group in forecast.groups:
        lines += ["", *_table(forecast, group)]
    if forecast.conflicts:
        lines += ["", f"Conflicts during the simulation ({len(forecast.conflicts)}; nothing is done for"
                      " them):"]
        lines += [f"  {message}" for message in forecast.conflicts[:20]]
    lines += ["", *summary(forecast)]
    return "\n".join(lines) + "\n"


def _rule_line(group: Group) -> str:
    if not group.targets:
        return "no replication: the keep rules alone decide"
    if group.protects_unreplicated:
        return ("keep_source has not_replicated: snapshots not yet on every target are kept (even in an"
                " outage)")
    return "keep_source has no not_replicated: pruning wins; in an outage unreplicated snapshots may go"


def _table(forecast: Forecast, group: Group) -> list[str]:
    sides = [group.side, *group.targets]
    titles = ["source"] + [_side_name(t) for t in group.targets]
    lines = [f"{_side_name(group.side)}  (policy {group.policy}; {_rule_line(group)})"]
    head1 = f"{'':>4}  {'':<11}" + "".join(f"  {t[:36]:<36}" for t in titles)
    columns = f"  {'count':>5} {'oldest':<11} {'newest':<11}"
    head2 = f"{'day':>4}  {'end':<11}" + columns * len(titles)
    head2 += f"  {'taken':>5} {'sent':>5} {'destroyed':>9}  notes"
    lines += [head1.rstrip(), head2]
    for day, row in enumerate(forecast.rows):
        entry = row.get(group.side)
        if entry is None:
            continue
        cells = [f"{day:>4}  {forecast.day_time(day).strftime(_WHEN):<11}"]
        for side in sides:
            state = entry.source if side == group.side else entry.targets.get(side, SideState(0))
            oldest, newest = _when(state.oldest_creation), _when(state.newest_creation)
            cells.append(f"  {state.count:>5} {oldest:<11} {newest:<11}")
        activity = f"  {entry.taken:>5} {entry.sent:>5} {entry.destroyed:>9}" if day else " " * 23
        notes = "; ".join(_notes(group, entry, day))
        lines.append(("".join(cells) + activity + (f"  {notes}" if notes else "")).rstrip())
    return lines


def _notes(group: Group, entry: GroupDay, day: int) -> list[str]:
    notes = []
    if day == 0:
        notes.append("as gathered")
    if entry.down:
        notes.append(f"{', '.join(entry.down)} down")
    if entry.waiting:
        notes.append(f"{entry.waiting} waiting for a target" + (" (kept: not_replicated)"
                                                                 if group.protects_unreplicated else ""))
    if entry.destroyed_unreplicated:
        notes.append(f"{entry.destroyed_unreplicated} destroyed before reaching every target (pruning wins)")
    return notes


def summary(forecast: Forecast) -> list[str]:
    if not forecast.rows or not forecast.groups:
        return []
    last = forecast.rows[-1]
    lost = sum(entry.destroyed_unreplicated for row in forecast.rows for entry in row.values())
    lines = [f"After {plural(forecast.days, 'day')}:"]
    for group in forecast.groups:
        entry = last[group.side]
        parts = [f"{entry.source.count} on the source (oldest {_when(entry.source.oldest_creation)})"]
        parts += [f"{state.count} on {_side_name(side)} (oldest {_when(state.oldest_creation)})"
                  for side, state in entry.targets.items()]
        lines.append(f"  {_side_name(group.side)}: {', '.join(parts)}")
    lines.append("No snapshot was destroyed before reaching every target." if not lost else
                 f"{plural(lost, 'snapshot')} destroyed before reaching every target (pruning wins).")
    return lines


def to_json(forecast: Forecast, facts_from: str) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "start": forecast.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "step_seconds": int(forecast.step.total_seconds()),
        "days": forecast.days,
        "runs": forecast.runs,
        "facts": facts_from,
        "outages": [{"host": o.host, "start": o.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "end": o.end.strftime("%Y-%m-%dT%H:%M:%SZ")} for o in forecast.outages],
        "filesystems": [_group_json(forecast, group) for group in forecast.groups],
        "conflicts": list(forecast.conflicts),
    }


def _state_json(state: SideState) -> dict[str, Any]:
    return {"count": state.count, "oldest": state.oldest, "oldest_creation": state.oldest_creation,
            "newest": state.newest, "newest_creation": state.newest_creation}


def _group_json(forecast: Forecast, group: Group) -> dict[str, Any]:
    days = []
    for day, row in enumerate(forecast.rows):
        entry = row[group.side]
        days.append({"day": day, "time": forecast.day_time(day).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "source": _state_json(entry.source),
                     "targets": {_side_name(side): _state_json(state)
                                 for side, state in entry.targets.items()},
                     "taken": entry.taken, "sent": entry.sent, "destroyed": entry.destroyed,
                     "destroyed_unreplicated": entry.destroyed_unreplicated, "waiting": entry.waiting,
                     "down": list(entry.down)})
    return {"host": group.host, "dataset": group.dataset, "policy": group.policy,
            "protects_unreplicated": group.protects_unreplicated,
            "targets": [{"host": h, "dataset": d} for h, d in group.targets], "days": days}
