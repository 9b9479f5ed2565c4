"""``zrepl-reconcile schema``: print the JSON schema of the configuration (for editors and CI)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from reconciler.cli import EXIT_OK
from reconciler.config.schema import config_json_schema_text


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "schema", help="print the JSON schema of the configuration file",
        description="Print the JSON schema generated from the configuration models "
                    "(the content of schemas/config.schema.json).")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(config_json_schema_text())
    return EXIT_OK
