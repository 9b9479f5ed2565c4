"""The meaning of the data, by the pydantic models: names, regexes, grids, bounds; their
errors turned into problems at the field path the file uses.

pydantic's locations include the tags of tagged unions (``hosts.nas.ssh.port``); they are
dropped here so a path reads as written in the file (``hosts.nas.port``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from reconciler.config.document import Document, value_at
from reconciler.config.models import Config
from reconciler.config.wording import Path, PathElem, describe, describe_number
from reconciler.errors import ConfigProblem

_MEANING_ERRORS = ("value_error", "assertion_error")


def validate_models(document: Document) -> tuple[Config | None, list[tuple[ConfigProblem, bool]]]:
    """The model, or its problems each with True when it is a meaning check (not a shape one)."""
    try:
        return Config.model_validate(document.data), []
    except ValidationError as exc:
        return None, [(_model_problem(document, error), error["type"] in _MEANING_ERRORS)
                      for error in exc.errors(include_url=False)
                      if not (error["type"] == "too_short" and tuple(error["loc"]) in document.keys_dropped)]


def _model_problem(document: Document, error: Mapping[str, Any]) -> ConfigProblem:
    loc = tuple(error["loc"])
    kind = str(error["type"])
    message = _model_message(kind, str(error["msg"]), error.get("ctx") or {}, error.get("input"))
    if loc and loc[-1] == "[key]":  # pydantic's marker for a problem with a mapping key itself
        return document.problem(_strip_union_tags(document.data, loc[:-1]), message, key=True)
    path = _strip_union_tags(document.data, loc)
    if kind == "missing":
        return document.problem(path, f"missing required key {path[-1] if path else ''!r}", key=True)
    if kind == "extra_forbidden":
        return document.problem(path, f"unknown key {path[-1] if path else ''!r}", key=True)
    # A problem with a whole mapping (a policy) points at its name, not at its '{'.
    return document.problem(path, message, key=isinstance(error.get("input"), dict))


_BOUNDS = {"greater_than": ("gt", "greater than"), "greater_than_equal": ("ge", "at least"),
           "less_than": ("lt", "less than"), "less_than_equal": ("le", "at most")}


def _model_message(kind: str, message: str, ctx: Mapping[str, Any], value: Any = None) -> str:
    if kind in ("value_error", "assertion_error"):
        # pydantic prefixes our own ValueError text; the text alone is the message we wrote.
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        return message
    if kind in ("finite_number", "float_type") and isinstance(value, int) and not isinstance(value, bool):
        return f"{describe(value)} is too large"  # beyond a float
    if kind == "finite_number" and isinstance(value, float):
        return f"expected a finite number, got {describe(value)}"
    if kind in _BOUNDS and _BOUNDS[kind][0] in ctx:
        bound, words = _BOUNDS[kind]
        return f"must be {words} {describe_number(ctx[bound])}, got {describe_number(value)}"
    if kind == "too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else message
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"{ctx.get('discriminator', 'type')} must be one of {tags}".replace("'", "")
    return message[:1].lower() + message[1:]


def _strip_union_tags(data: Any, loc: Path) -> Path:
    """Drop the tags pydantic inserts for tagged unions (``hosts.nas.ssh.port`` -> ``hosts.nas.port``).

    Only two places hold tagged unions: ``hosts.<name>`` (by connection) and the items of
    ``keep_source``/``keep_target`` (by type); the tag comes right after them, even when a
    field has the same name (a grid rule's ``grid``).
    """
    path: list[PathElem] = []
    tag_skipped_at: set[int] = set()
    for elem in loc:
        if len(path) not in tag_skipped_at and _is_union_tag(data, path, elem):
            tag_skipped_at.add(len(path))
            continue
        path.append(elem)
    return tuple(path)


def _is_union_tag(data: Any, path: Sequence[PathElem], elem: PathElem) -> bool:
    if len(path) == 2 and path[0] == "hosts":
        field = "connection"
    elif len(path) == 4 and path[0] == "policies" and path[2] in ("keep_source", "keep_target"):
        field = "type"
    else:
        return False
    node = value_at(data, path)
    return isinstance(node, dict) and node.get(field) == elem

