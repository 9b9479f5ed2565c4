"""The JSON schema of the configuration, generated from the pydantic models.

It is the first validation layer (shape: unknown keys, wrong types) and what editors
use for completion; ``schemas/config.schema.json`` is this function's output, and a test
fails when the committed file drifts from the models.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from reconciler.config.models import Config

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def config_json_schema() -> dict[str, Any]:
    """A fresh copy of the strict schema (callers may mutate it)."""
    result: dict[str, Any] = json.loads(config_json_schema_text())
    return result


@lru_cache(maxsize=1)
def config_json_schema_text() -> str:
    """The schema as committed: indent 2, sorted keys, trailing newline."""
    schema = Config.model_json_schema(mode="validation")
    _forbid_unknown_keys(schema)
    schema["$schema"] = SCHEMA_DIALECT
    schema["title"] = "zrepl-reconcile configuration"
    schema["description"] = "Desired state of ZFS snapshots, retention and replication (zrepl-reconcile)."
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def _forbid_unknown_keys(node: Any) -> None:
    """Every object with declared properties rejects others, whatever the model said."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node["additionalProperties"] = False
        for value in node.values():
            _forbid_unknown_keys(value)
    elif isinstance(node, list):
        for item in node:
            _forbid_unknown_keys(item)
