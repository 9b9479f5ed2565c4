"""The shape of the data, by the JSON schema generated from the models: unknown and missing
keys, wrong types, values out of range, in human words and at their positions.

These are the words users read for a shape problem: the models find most of them again,
and loading keeps only what the models add (``load._already_reported``).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import jsonschema

from reconciler.config.document import Document
from reconciler.config.schema import config_json_schema
from reconciler.config.wording import Path, describe, describe_number, did_you_mean, expected
from reconciler.errors import ConfigProblem


@lru_cache(maxsize=1)
def _schema_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(config_json_schema())


def shape_problems(document: Document) -> list[ConfigProblem]:
    """JSON-schema problems in human words: unknown keys, missing keys, wrong types."""
    problems: list[ConfigProblem] = []
    for error in _beside_type_errors(_schema_validator().iter_errors(document.data)):
        problems += _schema_error_problems(document, error)
    return problems


_RANGE_CHECKS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _beside_type_errors(errors: Iterable[jsonschema.ValidationError]) -> list[jsonschema.ValidationError]:
    """A value of the wrong type gets that one message, not also a range check (``port: .inf``)."""
    listed = list(errors)
    mistyped = {tuple(e.absolute_path) for e in listed if e.validator == "type"}
    return [e for e in listed if e.validator not in _RANGE_CHECKS or tuple(e.absolute_path) not in mistyped]


def _schema_error_problems(document: Document, error: jsonschema.ValidationError) -> list[ConfigProblem]:
    path: Path = tuple(error.absolute_path)
    kind, value, instance = error.validator, _any(error.validator_value), error.instance
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(_schema_of(error).get("properties", {}))
        return [document.problem((*path, key), _unknown_key_message(key, allowed), key=True)
                for key in instance if key not in allowed]
    if kind == "minProperties" and path in document.keys_dropped:
        return []
    if kind == "required" and isinstance(instance, dict):
        return [document.problem((*path, name), f"missing required key {name!r}", key=True)
                for name in value if name not in instance]
    if kind in ("oneOf", "anyOf"):
        return _union_problems(document, error)
    return [document.problem(path, _schema_message(kind, value, instance, error.message))]


def _any(value: object) -> Any:
    return value


def _schema_of(error: jsonschema.ValidationError) -> dict[str, Any]:
    return error.schema if isinstance(error.schema, dict) else {}


def _unknown_key_message(key: str, allowed: list[str]) -> str:
    return f"unknown key {key!r}{did_you_mean(key, allowed)} (allowed: {', '.join(allowed)})"


def _schema_message(kind: Any, value: Any, instance: Any, fallback: str) -> str:
    if kind == "type":
        return f"expected {expected(value)}, got {describe(instance)}"
    if kind in ("minProperties", "minItems"):
        return "must not be empty" if value == 1 else f"needs at least {value} entries"
    if kind == "minLength":
        return "must not be empty"
    if kind == "minimum":
        return f"must be at least {value}, got {describe_number(instance)}"
    if kind == "maximum":
        return f"must be at most {value}, got {describe_number(instance)}"
    if kind == "exclusiveMinimum":
        return f"must be greater than {value}, got {describe_number(instance)}"
    if kind == "const":
        return f"must be {value!r}, got {describe(instance)}"
    if kind == "enum":
        return f"must be one of {', '.join(repr(v) for v in value)}, got {describe(instance)}"
    return fallback


def _union_problems(document: Document, error: jsonschema.ValidationError) -> list[ConfigProblem]:
    """A tagged union (host ``connection``, keep rule ``type``) or an optional value."""
    path: Path = tuple(error.absolute_path)
    instance = error.instance
    discriminator = _schema_of(error).get("discriminator")
    branches: list[dict[str, Any]] = list(_any(error.validator_value))
    if isinstance(discriminator, dict):
        name = discriminator["propertyName"]
        mapping: dict[str, str] = discriminator.get("mapping", {})
        tags = ", ".join(repr(t) for t in sorted(mapping))
        if not isinstance(instance, dict):
            message = f"expected a mapping with {name!r} ({tags}), got {describe(instance)}"
            return [document.problem(path, message)]
        if name not in instance:
            message = f"missing required key {name!r} (one of {tags})"
            return [document.problem((*path, name), message, key=True)]
        tag = instance[name]
        if not isinstance(tag, str) or tag not in mapping:
            return [document.problem((*path, name), f"{name} must be one of {tags}, got {describe(tag)}"
                                     + did_you_mean(str(tag), mapping))]
        chosen = [i for i, branch in enumerate(branches) if branch.get("$ref") == mapping[tag]]
    else:
        chosen = [i for i, branch in enumerate(branches) if _branch_accepts_type(branch, instance)]
    sub_errors = _beside_type_errors(e for e in error.context or []
                                     if e.relative_schema_path and e.relative_schema_path[0] in chosen)
    if not chosen or not sub_errors:
        expected = " or ".join(_branch_type_name(b) for b in branches)
        return [document.problem(path, f"expected {expected}, got {describe(instance)}")]
    problems: list[ConfigProblem] = []
    for sub in sub_errors:
        problems += _schema_error_problems(document, sub)
    return problems


def _branch_accepts_type(branch: dict[str, Any], instance: Any) -> bool:
    if "$ref" in branch:
        return isinstance(instance, dict)
    wanted = branch.get("type")
    checks = {"null": instance is None, "string": isinstance(instance, str),
              "object": isinstance(instance, dict), "array": isinstance(instance, list),
              "boolean": isinstance(instance, bool),
              "integer": isinstance(instance, int) and not isinstance(instance, bool),
              "number": isinstance(instance, int | float) and not isinstance(instance, bool)}
    return bool(checks.get(wanted, True)) if isinstance(wanted, str) else True


def _branch_type_name(branch: dict[str, Any]) -> str:
    if "$ref" in branch:
        return "a mapping"
    return expected(branch.get("type", "a value"))
