"""``zrepl-reconcile plan``: show what ``apply`` would do, in text, markdown or Plan JSON.

Exit codes follow Terraform's ``-detailed-exitcode``: 0 when the plan was computed (with
or without changes), 1 on an error (bad config, bad flags, a bug), and 2 instead of 0
when ``--detailed-exitcode`` is given and the plan has actions.

Conflicts and unavailable hosts do NOT turn a computed plan into exit 1. Like a
Terraform plan whose provider skipped a resource, the plan itself is valid: it says
exactly what will and will not be done, and the other filesystems must still be
reconciled (DESIGN.md invariant 6: one failing host never stops the others). Instead
they are impossible to miss: the text output lists them in their own sections right
before the summary line, markdown opens with CAUTION/WARNING alerts, the JSON carries
``conflicts``, ``unavailable`` and ``summary.conflicts``, and with the json or markdown
format a one-line notice also goes to stderr so pipelines see it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from reconciler import api
from reconciler.codes import ExitCode
from reconciler.commands.common import (
    add_as_argument,
    add_config_argument,
    add_selection_arguments,
    parse_now,
)
from reconciler.domain.plan import Plan
from reconciler.errors import UsageError
from reconciler.render.json import write_json
from reconciler.render.markdown import (
    DEFAULT_MAX_CHARS,
    GITHUB_COMMENT_LIMIT,
    MIN_MAX_CHARS,
    write_markdown,
)
from reconciler.render.text import render_text
from reconciler.render.view import attention_items, explained_reports


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "plan", help="show the snapshots, sends and destroys apply would run",
        description="Gather facts, compute the plan and print it. Nothing is changed. "
                    "Exit 0 (computed), 1 (error), 2 (changes pending, with --detailed-exitcode).")
    add_config_argument(parser)
    add_selection_arguments(parser)
    add_as_argument(parser)
    parser.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                        help="text for a terminal, markdown for a pull-request comment, "
                             "json for machines (default: %(default)s)")
    parser.add_argument("--out", metavar="FILE", default=None,
                        help="also write the Plan JSON to FILE, for `apply --plan FILE`")
    parser.add_argument("--detailed-exitcode", action="store_true",
                        help="exit 2 when the plan has changes (0 when none)")
    parser.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, metavar="N",
                        help="markdown only: at most N characters, as a pull-request comment must be (GitHub"
                             f" takes {GITHUB_COMMENT_LIMIT}); a longer plan is shortened, with a note saying"
                             " what is left out; 0: no limit (default: %(default)s)")
    parser.add_argument("--full-plan-url", metavar="URL", default="",
                        help="markdown only: where the full plan is (e.g. the CI run's artifacts), linked"
                             " from the note of a shortened plan")
    parser.add_argument("--explain", nargs="?", const=True, default=None, metavar="FILESYSTEM",
                        help="list every snapshot of every (or this DATASET or HOST:DATASET) "
                             "filesystem with the rule that keeps it or the reason it goes")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    explain: str | bool | None = args.explain
    max_chars = markdown_limit(args.max_chars)
    now = parse_now(args.now)
    plan = api.plan(api.load(args.config), hosts=args.hosts, filesystems=args.filesystems, now=now,
                    explain=bool(explain), as_host=args.as_host)
    check_explain_target(plan, explain)
    if args.out:
        write_plan_file(plan, args.out)
    print_plan(plan, args.format, explain, max_chars=max_chars, full_plan_url=args.full_plan_url)
    if args.format != "text":
        notify_attention(plan)
    return exit_code(plan, detailed=args.detailed_exitcode)


def exit_code(plan: Plan, *, detailed: bool) -> int:
    return ExitCode.CHANGES if detailed and plan.has_changes else ExitCode.OK


def check_explain_target(plan: Plan, explain: str | bool | None) -> None:
    if isinstance(explain, str) and not explained_reports(plan, explain):
        known = sorted({r.dataset for r in plan.filesystems})
        hint = f" (managed: {', '.join(known[:10])}{', ...' if len(known) > 10 else ''})" if known else ""
        raise UsageError(f"--explain {explain}: no managed filesystem of that name in this plan; "
                         f"give DATASET or HOST:DATASET{hint}")


def markdown_limit(max_chars: int) -> int | None:
    """``--max-chars``: None for 0 (no limit); refused below what the summary and note need."""
    if max_chars == 0:
        return None
    if max_chars < MIN_MAX_CHARS:
        raise UsageError(f"--max-chars {max_chars}: give at least {MIN_MAX_CHARS} (the summary and the note"
                         " saying what is left out must fit), or 0 for no limit")
    return max_chars


def print_plan(plan: Plan, fmt: str, explain: str | bool | None, *, max_chars: int | None = None,
               full_plan_url: str = "") -> None:
    """Written out as it is rendered: a mass prune's plan is hundreds of MiB in any format
    (markdown with ``max_chars`` at most that many characters, made in memory)."""
    if fmt == "json":
        write_json(plan, sys.stdout)
    elif fmt == "markdown":
        write_markdown(plan, sys.stdout, explain=explain, max_chars=max_chars, full_plan_url=full_plan_url)
    else:
        render_text(plan, explain=explain)
    sys.stdout.flush()


def notify_attention(plan: Plan) -> None:
    """Machine formats go to files and pipes; say on stderr that the plan needs a look."""
    items = attention_items(plan)
    if items:
        print(f"warning: the plan has {', '.join(items)}; nothing is done for the affected "
              "targets (see the plan)", file=sys.stderr)


def write_plan_file(plan: Plan, path: str) -> None:
    """Write the Plan JSON atomically: ``apply --plan`` never reads half a plan.

    Only a regular file is written (or replaced): a device, a FIFO or a directory at the
    path is refused, and a symlink is followed to the file it names (the rename replaces
    that file, not the link)."""
    if path.endswith("/"):
        raise UsageError(f"--out {path}: names a directory; give a file name, e.g. {path}plan.json")
    target = Path(os.path.realpath(path))
    if target.exists() and not target.is_file():
        kind = "a directory" if target.is_dir() else "not a regular file (a device, FIFO or socket)"
        raise UsageError(f"--out {path}: {target} is {kind}; the plan is written only to a regular file")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot write the plan file: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            write_json(plan, fh)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
