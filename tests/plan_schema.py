"""The Plan JSON schema's two validators, for tests: jsonschema (the reference, JSON Schema
2020-12 exactly) and the compiled one apply uses (reconciler/planfile/read.py)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import fastjsonschema
import jsonschema

from reconciler.planfile.read import plan_schema_text, plan_validator


@lru_cache(maxsize=1)
def reference_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(plan_schema_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def fast_accepts(document: Any) -> bool:
    try:
        plan_validator()(document)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def validate_plan(document: Any) -> None:
    """A real plan: valid by the reference, and accepted by the validator apply uses."""
    reference_validator().validate(document)
    assert fast_accepts(document)
