"""``status`` for a person (a compact table: rich on a terminal, plain in a pipe), for a
pull request or wiki (markdown), and for scripts (JSON, keys in docs/operate.md).

The text starts with one summary line (``OK: ...`` or ``UNHEALTHY: ...``), which is what
Nagios and Icinga show of a check's output.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from reconciler.domain.record import PairRecord, format_time
from reconciler.planning.health import FilesystemHealth, Space, Status, TargetHealth, format_duration
from reconciler.render.markdown import md_code, md_text
from reconciler.wording import human_bytes, plural

STATUS_FORMAT_VERSION = 1
HEADERS = ("filesystem", "target", "newest replicated", "lag", "waiting", "snapshots", "written",
           "last apply")


# ------------------------------------------------------------------ what every format says


def summary_line(status: Status) -> str:
    targets = sum(len(f.targets) for f in status.filesystems)
    counts = f"{plural(len(status.filesystems), 'filesystem')}, {plural(targets, 'target')}"
    worst = status.worst_lag()
    lag = f"; worst lag {format_duration(worst)}" if worst is not None else ""
    limit = f" (max {format_duration(status.max_lag_seconds)})" if status.max_lag_seconds is not None else ""
    if status.healthy:
        return f"OK: {counts}{lag}{limit}"
    return f"UNHEALTHY: {plural(len(status.problems), 'problem')}; {counts}{lag}{limit}"


def last_apply_text(record: PairRecord | None, now: datetime) -> str:
    if record is None:
        return "never"
    age = format_duration(max(0.0, (now - record.last_attempt).total_seconds()))
    return f"{record.result} {age} ago"


def space_pair(source: Space | None, target: Space | None, value: str) -> str:
    def one(space: Space | None) -> str:
        if space is None:
            return "-"
        return str(space.snapshots) if value == "count" else human_bytes(space.written_bytes)

    return f"{one(source)} / {one(target)}"


def rows(status: Status) -> list[tuple[FilesystemHealth, TargetHealth | None]]:
    return [(fs, t) for fs in status.filesystems for t in (fs.targets or (None,))]


def cells(status: Status, fs: FilesystemHealth, target: TargetHealth | None) -> list[str]:
    name = f"{fs.host}:{fs.dataset}" + ("" if fs.reachable else " (unreachable)")
    if target is None:
        return [name, "-", "-", "-", "-", space_pair(fs.space, None, "count"),
                space_pair(fs.space, None, "bytes"), last_apply_text(fs.last_apply, status.now)]
    host = target.host + ("" if target.reachable else " (unreachable)")
    newest = target.replicated.name if target.replicated is not None else "none"
    lag = format_duration(target.lag_seconds) if target.lag_seconds is not None else "-"
    waiting = str(target.waiting) if fs.reachable else "-"
    # A row's last apply is its pair's; a failure on the source side is listed under Problems.
    return [name, host, newest, lag, waiting, space_pair(fs.space, target.space, "count"),
            space_pair(fs.space, target.space, "bytes"), last_apply_text(target.last_apply, status.now)]


# ------------------------------------------------------------------ text


# Output that is not a terminal (a monitoring check, a log) is not folded to 80 columns.
PIPE_WIDTH = 240
FOLDED = ("filesystem", "target", "newest replicated")  # the other columns are short


def status_console() -> Console:
    terminal = Console(highlight=False)
    return terminal if terminal.is_terminal else Console(highlight=False, width=PIPE_WIDTH)


def render_status_text(status: Status, notes: tuple[str, ...] = (), console: Console | None = None) -> None:
    out = console or status_console()
    out.print(Text(summary_line(status), style="bold green" if status.healthy else "bold red"))
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for header in HEADERS:
        table.add_column(header.upper(), overflow="fold", no_wrap=header not in FOLDED)
    over = status.max_lag_seconds
    for fs, target in rows(status):
        values = cells(status, fs, target)
        styled = [Text(v) for v in values]
        if target is not None and over is not None and (target.lag_seconds or 0) > over:
            styled[3].stylize("red")
        if not (fs.reachable and (target is None or target.reachable)):
            styled[1 if target is not None else 0].stylize("red")
        if values[7].startswith(("failed", "conflict", "unavailable")):
            styled[7].stylize("red")
        table.add_row(*styled)
    if status.filesystems:
        out.print(table)
    else:
        out.print("No managed filesystem selected.")
    for title, items in (("Problems", status.problems), ("Notes", notes)):
        if items:
            out.print(f"\n{title}:")
            for item in items:
                out.print(Text(f"  {item}"))


# ------------------------------------------------------------------ markdown


def write_status_markdown(status: Status, file: TextIO, notes: tuple[str, ...] = ()) -> None:
    lines = [f"**{md_text(summary_line(status))}**", ""]
    if status.filesystems:
        lines += ["| " + " | ".join(h.capitalize() for h in HEADERS) + " |",
                  "|" + "---|" * len(HEADERS)]
        for fs, target in rows(status):
            values = cells(status, fs, target)
            values[0] = md_code(values[0], table=True)
            values[2] = md_code(values[2], table=True) if values[2] not in ("-", "none") else values[2]
            lines.append("| " + " | ".join(values[:1] + [md_text(v) for v in values[1:2]] + values[2:3]
                                           + [md_text(v) for v in values[3:]]) + " |")
    else:
        lines.append("No managed filesystem selected.")
    for title, items in (("Problems", status.problems), ("Notes", notes)):
        if items:
            lines += ["", f"**{title}:**", ""] + [f"- {md_text(item)}" for item in items]
    file.write("\n".join(lines) + "\n")


# ------------------------------------------------------------------ JSON


def status_json(status: Status, state_file: str, notes: tuple[str, ...] = ()) -> dict[str, Any]:
    """The stable JSON of ``status --format json`` (docs/operate.md)."""
    return {
        "format_version": STATUS_FORMAT_VERSION,
        "now": format_time(status.now),
        "healthy": status.healthy,
        "max_lag_seconds": status.max_lag_seconds,
        "state_file": state_file,
        "problems": list(status.problems),
        "notes": list(notes),
        "hosts": [{"host": h.host, "reachable": h.reachable, "reason": h.reason} for h in status.hosts],
        "last_cycle": status.last_cycle.to_json() if status.last_cycle is not None else None,
        "filesystems": [_filesystem_json(fs) for fs in status.filesystems],
    }


def _space_json(space: Space | None) -> dict[str, Any]:
    return {"snapshots": space.snapshots if space else None,
            "written_bytes": space.written_bytes if space else None,
            "referenced_bytes": space.referenced_bytes if space else None}


def _record_json(record: PairRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    data = record.to_json()
    return {k: data[k] for k in ("last_attempt", "last_success", "result", "error", "bytes", "seconds")}


def _filesystem_json(fs: FilesystemHealth) -> dict[str, Any]:
    return {"host": fs.host, "dataset": fs.dataset, "policy": fs.policy, "reachable": fs.reachable,
            "snapshot_interval_seconds": fs.interval_seconds, **_space_json(fs.space),
            "last_apply": _record_json(fs.last_apply), "problems": list(fs.problems),
            "targets": [_target_json(t) for t in fs.targets]}


def _target_json(target: TargetHealth) -> dict[str, Any]:
    replicated = target.replicated
    return {"host": target.host, "dataset": target.dataset, "reachable": target.reachable,
            "healthy": target.healthy,
            "newest_replicated": None if replicated is None else {
                "name": replicated.name,
                "creation": format_time(datetime.fromtimestamp(replicated.creation, UTC))},
            "lag_seconds": target.lag_seconds, "waiting": target.waiting, **_space_json(target.space),
            "last_apply": _record_json(target.last_apply), "problems": list(target.problems)}
