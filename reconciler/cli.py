"""The ``zrepl-reconcile`` command line: argument parsing and error-to-exit-code mapping.

Each command lives in ``reconciler/commands/<name>.py`` as a thin layer over a library
function; this module only wires them and turns errors into one clear message.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from reconciler import __version__
from reconciler.errors import ConfigError, ReconcileError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2

COMMANDS = ("validate", "schema", "facts", "plan", "apply", "run", "demo")


class ArgumentParser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which would read as "changes pending"; we exit 1."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="zrepl-reconcile",
        description="Declarative reconciler for ZFS snapshots, retention and replication.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    import importlib

    for name in COMMANDS:
        try:
            module = importlib.import_module(f"reconciler.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"reconciler.commands.{name}":
                raise
            continue  # command not built yet
        module.register(sub)
    for command in sub.choices.values():
        # Also after the command (`validate --debug`); SUPPRESS keeps a --debug given before it.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show tracebacks on errors")
    return parser


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default="zrepl-reconcile.yml",
                        help="desired-state YAML file (default: %(default)s)")


def error_message(exc: ReconcileError) -> str:
    """One clear message; a config with several problems lists them one per line."""
    if isinstance(exc, ConfigError) and len(exc.problems) > 1:
        lines = "\n".join(str(p) for p in exc.problems)  # FILE:LINE:COL at column 0 for editors
        return f"error: {len(exc.problems)} problems in the configuration:\n{lines}"
    return f"error: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(args.debug)
    try:
        code: int = args.func(args)
        return code
    except ReconcileError as exc:
        if debug:
            traceback.print_exc()
        print(error_message(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as exc:  # a bug: say so plainly, traceback only with --debug
        if debug:
            traceback.print_exc()
        print(f"internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback)",
              file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
