"""``zrepl-reconcile schema``: print the JSON schema of the configuration (for editors and CI)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from reconciler.codes import ExitCode
from reconciler.config.schema import config_json_schema_text


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "schema", help="print the JSON schema of the configuration file (or of the Plan JSON)",
        description="Print the JSON schema generated from the configuration models "
                    "(the content of schemas/config.schema.json), or with --plan the schema of the "
                    "Plan JSON that `plan --format json` writes (schemas/plan.schema.json).")
    parser.add_argument("--plan", action="store_true", help="the Plan JSON's schema instead")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.plan:
        from reconciler.planfile.read import plan_schema_text

        sys.stdout.write(plan_schema_text())
    else:
        sys.stdout.write(config_json_schema_text())
    return ExitCode.OK
