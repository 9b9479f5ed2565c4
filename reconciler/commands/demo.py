"""``zrepl-reconcile demo``: real OpenZFS pools, then plan -> apply -> plan (No changes)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo", help="run plan -> apply -> plan against real OpenZFS (local pools or a QEMU guest)",
        description=("Create two small file-backed pools (on this host when it has ZFS, otherwise in "
                     "a cached Debian 12 + OpenZFS guest under QEMU, built on first use as root), "
                     "then run plan, apply -y and plan again, which must say No changes."))
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the generated config and guest files here (default: a temp dir)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the pools (and the guest) in place afterwards")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.demo import run_demo

    return run_demo(args.workdir, keep=args.keep)
