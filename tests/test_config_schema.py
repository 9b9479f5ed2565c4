"""The committed JSON schema is the models' schema, strict, and the first validation layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.cli import main
from reconciler.config.schema import config_json_schema, config_json_schema_text

ROOT = Path(__file__).parent.parent
COMMITTED = ROOT / "schemas" / "config.schema.json"


def test_committed_schema_matches_the_models() -> None:
    assert COMMITTED.read_text() == config_json_schema_text(), (
        "schemas/config.schema.json is out of date with reconciler/config/models.py; regenerate it with:\n"
        "    zrepl-reconcile schema > schemas/config.schema.json")


def test_schema_command_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    out = capsys.readouterr().out
    assert out == config_json_schema_text()
    assert out.endswith("}\n") and out.startswith('{\n  "$defs"')


def _objects(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            found.append(node)
        for value in node.values():
            found += _objects(value)
    elif isinstance(node, list):
        for item in node:
            found += _objects(item)
    return found


def test_every_object_forbids_unknown_keys() -> None:
    objects = _objects(config_json_schema())
    assert len(objects) >= 10
    assert all(obj["additionalProperties"] is False for obj in objects)


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = config_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_alone_rejects_shape_errors() -> None:
    validator = jsonschema.Draft202012Validator(config_json_schema())
    good = {"hosts": {"nas": {"connection": "local"}}, "policies": {"p": {}},
            "filesystems": [{"host": "nas", "filter": {"tank<": True}, "policy": "p"}]}
    assert list(validator.iter_errors(good)) == []
    bad = {**good, "hosts": {"nas": {"connection": "local", "port": 22}}}
    assert [e.validator for e in validator.iter_errors(bad)] == ["oneOf"]
