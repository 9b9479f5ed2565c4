"""``zrepl-reconcile facts``: print what gathering sees on each host (a debugging aid)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from reconciler import api
from reconciler.codes import ExitCode
from reconciler.commands.common import add_config_argument
from reconciler.domain.observed import Dataset, HostFacts, ObservedState
from reconciler.gather.facts_json import observed_to_json
from reconciler.wording import plural

HEADERS = ("dataset", "type", "snapshots", "bookmarks", "newest snapshot", "held", "resume token")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "facts", help="print the ZFS state gathered from the hosts",
        description="Gather facts (one zfs list per host) and print them. Exits 1 if any host failed.")
    add_config_argument(parser)
    parser.add_argument("--host", action="append", metavar="H",
                        help="only this host (repeatable; default: every configured host)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--snapshots", action="store_true", help="text format: list every snapshot too")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    gathered_at = datetime.now(UTC).replace(microsecond=0)
    state = api.facts(api.load(args.config), args.host)
    if args.format == "json":  # simulate --facts reads it back (gather/facts_json.py)
        json.dump(observed_to_json(state, gathered_at), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif sys.stdout.isatty():
        print_rich(state, args.snapshots)
    else:
        print_plain(state, args.snapshots, sys.stdout)
    if not state.unavailable:
        return ExitCode.OK
    print(f"error: {unavailable_summary(state)}", file=sys.stderr)  # stdout may be a file or a pipe
    return ExitCode.ERROR


def unavailable_summary(state: ObservedState) -> str:
    """One line naming the hosts that could not be read, e.g. ``2 hosts could not be read:
    web (unreachable), mute (timeout)``; their messages are in the output."""
    count = len(state.unavailable)
    hosts = ", ".join(f"{name} ({u.code})" for name, u in state.unavailable.items())
    return f"{plural(count, 'host')} could not be read: {hosts}"


def dataset_row(ds: Dataset) -> tuple[str, ...]:
    newest = ds.newest_snapshot()
    held = sum(1 for s in ds.snapshots if s.userrefs)
    return (ds.name, ds.kind, str(len(ds.snapshots)), str(len(ds.bookmarks)),
            f"{newest.name} ({iso(newest.creation)})" if newest else "-",
            str(held) if held else "-", "yes" if ds.resume_token else "-")


def snapshot_rows(ds: Dataset) -> list[tuple[str, ...]]:
    """One row per snapshot and bookmark under its dataset (``--snapshots``); the
    "newest snapshot" column carries creation time and createtxg, "held" the hold tags."""
    rows: list[tuple[str, ...]] = [
        (f"  @{s.name}", "snapshot", "", "", f"{iso(s.creation)} txg {s.createtxg}",
         ",".join(s.holds) or "-", "") for s in ds.snapshots]
    rows += [(f"  #{b.name}", "bookmark", "", "", f"{iso(b.creation)} txg {b.createtxg}", "-", "")
             for b in ds.bookmarks]
    return rows


def iso(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):  # zfs said so; show it rather than fail
        return f"@{seconds}"


def host_rows(facts: HostFacts, snapshots: bool) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for ds in facts.datasets.values():
        rows.append(dataset_row(ds))
        if snapshots:
            rows += snapshot_rows(ds)
    return rows


def print_plain(state: ObservedState, snapshots: bool, out: TextIO) -> None:
    for name, facts in state.hosts.items():
        out.write(f"host {name}: {len(facts.datasets)} datasets, "
                  f"{sum(len(d.snapshots) for d in facts.datasets.values())} snapshots\n")
        rows: list[tuple[str, ...]] = [HEADERS, *host_rows(facts, snapshots)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
        for row in rows:
            cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=True))
            out.write("  " + "  ".join(cells).rstrip() + "\n")
    for name, unavailable in state.unavailable.items():
        out.write(f"host {name}: UNAVAILABLE ({unavailable.code}): {unavailable.message}\n")


def print_rich(state: ObservedState, snapshots: bool) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    console = Console()
    for name, facts in state.hosts.items():
        table = Table(title=f"host {name}", title_justify="left")
        for header in HEADERS:
            numeric = header in ("snapshots", "bookmarks", "held")
            table.add_column(header, justify="right" if numeric else "left")
        for row in host_rows(facts, snapshots):
            table.add_row(*(Text(cell) for cell in row))  # names are data, not markup
        console.print(table)
    for name, unavailable in state.unavailable.items():
        console.print(f"[bold red]host {escape(name)}: UNAVAILABLE[/] ({unavailable.code}): "
                      f"{escape(unavailable.message)}", highlight=False)
