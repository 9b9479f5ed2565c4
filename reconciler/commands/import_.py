"""``zrepl-reconcile import zrepl|sanoid|znapzend FILE...``: another tool's configuration as
ours, on stdout or ``--out FILE``; what does not map, placeholders and differences on stderr,
one line each (they are comments in the output too)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from reconciler import api
from reconciler.codes import ExitCode
from reconciler.errors import UsageError
from reconciler.importers.draft import ImportResult, NoteKind
from reconciler.importers.emit import notes_text
from reconciler.importers.sanoid import DEFAULT_PREFIX
from reconciler.wording import plural


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "import", help="turn a zrepl, sanoid or znapzend configuration into ours",
        description="Read another tool's configuration and write an equivalent zrepl-reconcile "
                    "configuration (YAML with comments) that `validate` accepts. What cannot be mapped "
                    "exactly "
                    "is listed on stderr, one line each, and as comments. Exit 1 (with FILE:LINE) on an "
                    "invalid input.")
    tools = parser.add_subparsers(dest="tool", metavar="TOOL", required=True)
    zrepl = tools.add_parser(
        "zrepl", help="zrepl daemon configurations, one file per machine",
        description="Merge zrepl daemon configurations (one FILE per machine, with their includes) into "
                    "one configuration. The first FILE's machine is where zrepl-reconcile will run; the "
                    "others become SSH hosts. Give the sender's and the receiver's files together for exact "
                    "targets.")
    zrepl.add_argument("files", nargs="+", metavar="FILE")
    sanoid = tools.add_parser("sanoid", help="a sanoid.conf",
                              description="Import sanoid.conf: our schedule takes over snapshot creation "
                                          "under --prefix; sanoid's autosnap_ snapshots keep sanoid's own "
                                          "rule.")
    sanoid.add_argument("files", nargs=1, metavar="FILE")
    sanoid.add_argument("--defaults", metavar="FILE", default=None,
                        help="sanoid.defaults.conf (default: the one next to FILE, else sanoid 2.1.0's)")
    znapzend = tools.add_parser("znapzend", help="znapzend's org.znapzend properties",
                                description="Import the output of `zfs get -H -o name,property,value "
                                            "-s local all` or `znapzendzetup export`.")
    znapzend.add_argument("files", nargs=1, metavar="FILE")
    for sub in (zrepl, sanoid, znapzend):
        sub.add_argument("--out", metavar="OUT", default=None,
                         help="write the configuration to OUT (never over an existing file) instead of "
                              "stdout")
        sub.set_defaults(func=run)
    for sub in (sanoid, znapzend):
        sub.add_argument("--prefix", default=DEFAULT_PREFIX,
                         help="the prefix of the snapshots our schedule takes (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    result = import_result(args)
    sys.stderr.write(notes_text(result.notes))
    if args.out:
        write_new_file(args.out, result.text)
    else:
        sys.stdout.write(result.text)
    print(summary_line(result, args.out), file=sys.stderr)
    return ExitCode.OK


def import_result(args: argparse.Namespace) -> ImportResult:
    if args.tool == "zrepl":
        return api.import_zrepl(args.files)
    if args.tool == "sanoid":
        return api.import_sanoid(args.files[0], defaults=args.defaults, prefix=args.prefix)
    return api.import_znapzend(args.files[0], prefix=args.prefix)


def summary_line(result: ImportResult, out: str | None) -> str:
    config = result.config
    counts = Counter(note.kind for note in result.notes)
    parts = [f"{counts[kind]} {kind}" for kind in NoteKind if counts[kind]]
    where = out or "the output"
    notes = f": {', '.join(parts)} (one line each above, and comments in {where})" if parts else ""
    placeholders = counts[NoteKind.PLACEHOLDER]
    fill = f"; fill in the {plural(placeholders, 'placeholder')} (FILL-IN) before `plan`" if placeholders \
        else ""
    policies = plural(len(config.policies), "policy", "policies")
    entries = plural(len(config.filesystems), "filesystem entry", "filesystem entries")
    return f"imported {plural(len(config.hosts), 'host')}, {policies}, {entries}{notes}{fill}"


def write_new_file(path: str, text: str) -> None:
    """Write ``text`` to a new file, atomically; an existing file (a configuration!) is never replaced."""
    target = Path(path)
    if target.exists() or target.is_symlink():
        raise UsageError(f"--out {path}: exists; an import never overwrites a file (choose another name)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.link(tmp, target)  # fails if OUT appeared meanwhile: still never replaced
    except FileExistsError:
        raise UsageError(f"--out {path}: exists; an import never overwrites a file") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
