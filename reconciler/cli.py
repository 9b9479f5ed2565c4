"""The ``zrepl-reconcile`` command line: argument parsing and error-to-exit-code mapping.

Each command lives in ``reconciler/commands/<name>.py`` as a thin layer over a library
function; this module only wires them and turns errors into one clear message.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import NoReturn

from reconciler import __version__
from reconciler.codes import ExitCode
from reconciler.errors import ConfigError, ReconcileError, clip

COMMANDS = ("validate", "schema", "facts", "plan", "apply", "run", "status", "simulate", "import", "demo")
MODULES = {"import": "import_"}  # a command whose name is a Python keyword


class ArgumentParser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which would read as "changes pending"; we exit 1."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="zrepl-reconcile",
        description="Declarative reconciler for ZFS snapshots, retention and replication.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"reconciler.commands.{MODULES.get(name, name)}").register(sub)
    for command in sub.choices.values():
        # Also after the command (`validate --debug`); SUPPRESS keeps a --debug given before it.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show tracebacks on errors")
    return parser


def error_message(exc: ReconcileError) -> str:
    """One clear message; a config with several problems lists them one per line."""
    if isinstance(exc, ConfigError) and len(exc.problems) > 1:
        lines = "\n".join(str(p) for p in exc.problems)  # FILE:LINE:COL at column 0 for editors
        return f"error: {len(exc.problems)} problems in the configuration:\n{lines}"
    return f"error: {exc}"


class LibraryLogLines(logging.Handler):
    """Where library log records go (paramiko is the one that logs). Without --debug a
    record is at most one line, and paramiko's are dropped: each failure it logs reaches
    the user anyway as our own one-line error (its transport thread logs the failure it
    hands to us, with a traceback, one record per line). With --debug every record is
    shown in full. Written to the current sys.stderr, which tests replace."""

    def __init__(self) -> None:
        super().__init__()
        self.debug = False
        self.full = logging.Formatter("%(levelname)s %(name)s [%(threadName)s]: %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        line = self.render(record)
        if line is None:
            return
        with contextlib.suppress(OSError, ValueError):  # stderr closed: nowhere left to say it
            print(line, file=sys.stderr)

    def render(self, record: logging.LogRecord) -> str | None:
        if self.debug:
            return self.full.format(record)
        if record.name == "paramiko" or record.name.startswith("paramiko."):
            return None
        first = record.getMessage().strip().split("\n", 1)[0]
        return f"{record.levelname.lower()}: {record.name}: {clip(first, 300)}"


LIBRARY_LOG = LibraryLogLines()


def configure_logging(debug: bool) -> None:
    """Route library logging and thread exceptions through our own output: once per
    process, whatever main() is called again with (tests call it many times)."""
    LIBRARY_LOG.debug = debug
    root = logging.getLogger()
    if LIBRARY_LOG not in root.handlers:
        root.addHandler(LIBRARY_LOG)
    root.setLevel(logging.INFO if debug else logging.WARNING)
    logging.captureWarnings(True)  # a library's warnings.warn: one line too
    threading.excepthook = thread_exception if not debug else threading.__excepthook__


def thread_exception(args: threading.ExceptHookArgs) -> None:
    """An exception that ends a thread: one line, no traceback (that is --debug's). A
    paramiko transport thread's says nothing more than the TransportError its failure
    becomes, so it says nothing."""
    if args.exc_type is SystemExit or type(args.thread).__module__.startswith("paramiko"):
        return
    name = args.thread.name if args.thread is not None else "?"
    print(f"internal error in thread {name}: {args.exc_type.__name__}: {clip(str(args.exc_value))}"
          " (run with --debug for a traceback)", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(args.debug)
    configure_logging(debug)
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
        return ExitCode.ERROR
    except Exception as exc:  # a bug: say so plainly, traceback only with --debug
        if debug:
            traceback.print_exc()
        print(f"internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback)",
              file=sys.stderr)
        return ExitCode.ERROR


if __name__ == "__main__":
    sys.exit(main())
