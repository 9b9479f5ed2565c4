"""Reading a saved plan (``apply --plan FILE``) strictly: nothing in the file is trusted.

In order, each refusal one clear line naming the file: the path must be a regular file
(a FIFO, device or directory is refused without blocking on it), at most MAX_PLAN_BYTES,
UTF-8 JSON without duplicate keys, NaN or nesting deeper than a plan has; then it must
match ``plan.schema.json`` (types, names, known action kinds; the first problem is named
by its path in the document) and its ``digest`` must match its content: a file edited
after ``plan --out`` wrote it is refused as edited before any host is contacted.

What the file may then still not be is what the planner computes now: ``verify.py``.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import fastjsonschema

from reconciler.domain.plan import NOW_FORMAT, Plan
from reconciler.errors import PlanFileError
from reconciler.render.json import plan_digest

# A first mass prune of 10,000 filesystems writes ~300 MiB of Plan JSON; far more than
# that is not a plan this tool wrote. Read whole, a file this size takes a few GiB.
MAX_PLAN_BYTES = 1 << 30
MAX_DEPTH = 6  # a plan nests 5 levels (the top, filesystems, one, its snapshots, one)
SHOWN_CHARS = 80


@dataclass(frozen=True, slots=True)
class SavedPlan:
    """A plan file that passed every check of this module."""

    path: str
    plan: Plan
    document: dict[str, Any]  # the JSON as read; ``actions`` as in the file, for the comparison


def read_plan_file(path: str) -> SavedPlan:
    document = parse_plan_json(path, read_regular_file(path))
    check_schema(path, document)
    try:
        datetime.strptime(document["now"], NOW_FORMAT)
    except ValueError:
        raise PlanFileError(f"--plan {path}: not a valid plan file: now: {shown(document['now'])} is not a "
                            "valid UTC time") from None
    recorded = document["digest"]
    content = plan_digest(document, document["actions"])
    if recorded != content:
        raise PlanFileError(
            f"the saved plan {path} was edited after `plan --out` wrote it: its digest does not match its"
            f" content (recorded {recorded[:19]}…, content {content[:19]}…); nothing was changed. Run"
            " `zrepl-reconcile plan --out` again and review the new plan")
    try:
        plan = Plan.from_json(document)
    except PlanFileError as exc:  # an action kind this version does not know
        raise PlanFileError(f"--plan {path}: not a valid plan file: {exc}") from None
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # the schema should leave none
        raise PlanFileError(f"--plan {path}: not a valid plan file ({exc})") from None
    return SavedPlan(path, plan, document)


def read_regular_file(path: str) -> bytes:
    """The file's bytes; refused unless it is a regular file of at most MAX_PLAN_BYTES.

    Opened non-blocking, so a FIFO is refused instead of waiting for a writer, and checked
    with fstat on the open descriptor, so a swap after the check cannot matter."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise PlanFileError(f"--plan {path}: no such file") from None
    except OSError as exc:
        raise PlanFileError(f"--plan {path}: cannot open: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = ("a directory" if stat.S_ISDIR(info.st_mode)
                    else "not a regular file (a device, FIFO or socket)")
            raise PlanFileError(f"--plan {path}: is {kind}; a saved plan is a regular file from `plan --out`")
        if info.st_size > MAX_PLAN_BYTES:
            raise PlanFileError(f"--plan {path}: {info.st_size:,} bytes is larger than any plan this tool "
                                f"writes (at most {MAX_PLAN_BYTES >> 20:,} MiB are read); not a plan file")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(MAX_PLAN_BYTES + 1)  # the size may have grown since fstat
    except OSError as exc:
        raise PlanFileError(f"--plan {path}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_PLAN_BYTES:
        raise PlanFileError(f"--plan {path}: larger than {MAX_PLAN_BYTES >> 20:,} MiB; not a plan file")
    return data


def parse_plan_json(path: str, data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanFileError(f"--plan {path}: not a Plan JSON file: byte {exc.start} is not UTF-8") from None
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise PlanFileError(f"--plan {path}: not a Plan JSON file: {exc.msg} at line {exc.lineno} "
                            f"column {exc.colno}") from None
    except RecursionError:
        raise PlanFileError(f"--plan {path}: not a Plan JSON file: nested too deeply") from None
    except ValueError as exc:  # from the hooks
        raise PlanFileError(f"--plan {path}: not a Plan JSON file: {exc}") from None
    if not isinstance(document, dict):
        raise PlanFileError(f"--plan {path}: not a Plan JSON file: the top level is not an object")
    if nesting_depth(document) > MAX_DEPTH:
        raise PlanFileError(f"--plan {path}: not a Plan JSON file: nested more than {MAX_DEPTH} levels deep "
                            "(a plan has fewer)")
    return document


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {shown(duplicate)} in one object")
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def nesting_depth(value: Any) -> int:
    """Levels of arrays and objects; stops counting a little past MAX_DEPTH."""
    depth = 0
    level = [value]
    while level and depth <= MAX_DEPTH:
        nested: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nested += [v for v in item.values() if isinstance(v, dict | list)]
            elif isinstance(item, list):
                nested += [v for v in item if isinstance(v, dict | list)]
        depth += 1
        level = nested
    return depth


# --------------------------------------------------------------------------- schema

@lru_cache(maxsize=1)
def plan_schema_text() -> str:
    """``plan.schema.json`` as shipped (``schemas/plan.schema.json`` is a checked copy)."""
    return resources.files("reconciler.planfile").joinpath("plan.schema.json").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def plan_validator() -> Callable[[Any], Any]:
    """The schema compiled to Python (fastjsonschema): a 300 MiB plan of a first mass prune
    checks in seconds where the reference validator (jsonschema, what the tests check real
    plans and this validator's verdicts against) takes about a minute."""
    return fastjsonschema.compile(json.loads(plan_schema_text()))


def check_schema(path: str, document: dict[str, Any]) -> None:
    """The first problem the schema finds, as ``PATH: what is wrong`` (a plan has one problem
    to fix at a time: whoever edited it runs ``plan --out`` again)."""
    try:
        plan_validator()(document)
    except fastjsonschema.JsonSchemaValueException as error:
        problem = schema_problem(error, document)
        raise PlanFileError(f"--plan {path}: not a valid plan file: {problem}") from None


def schema_problem(error: fastjsonschema.JsonSchemaValueException, document: Any) -> str:
    where = document_path(error.path or [], document)
    definition = error.definition if isinstance(error.definition, dict) else {}
    description = definition.get("description")
    expected: Any = error.rule_definition
    value = error.value
    if error.rule == "type":
        what = f"{shown(value)} is not {article(str(expected))}"
    elif error.rule in ("pattern", "maxLength") and description:
        what = f"{shown(value)} is not {description}"
    elif error.rule == "const":
        what = f"{shown(value)} is not {shown(expected)}"
    elif error.rule == "enum" and where.endswith(".kind"):
        what = f"unknown action kind {shown(value)} (this version knows {', '.join(map(str, expected))})"
    elif error.rule == "enum":
        what = f"{shown(value)} is not one of {', '.join(map(shown, expected))}"
    elif error.rule == "required" and isinstance(value, dict):
        missing = [key for key in expected if key not in value]
        what = f"missing key(s) {', '.join(map(shown, missing))}"
    elif error.rule == "additionalProperties" and isinstance(value, dict):
        known = definition.get("properties", {})
        unknown = [key for key in value if key not in known]
        what = f"unknown key(s) {', '.join(map(shown, unknown[:5]))}"
    elif error.rule == "anyOf":
        options = [o.get("description") or o.get("type") for o in expected if isinstance(o, dict)]
        what = f"{shown(value)} is not one of: {', '.join(map(str, options))}"
    else:
        message = error.message.removeprefix(f"{error.name} ")
        what = f"{shown(value)}: {message if len(message) <= 200 else message[:200] + '…'}"
    return f"{where}: {what}" if where else what


def document_path(parts: list[str], document: Any) -> str:
    """``actions[3].snapshots[0]`` from fastjsonschema's ``["data", "actions", "3", ...]``."""
    path = ""
    node = document
    for part in parts[1:]:
        if isinstance(node, list):
            path += f"[{part}]"
            node = node[int(part)] if part.isdigit() and int(part) < len(node) else None
        else:
            path += f".{part}" if path else part
            node = node.get(part) if isinstance(node, dict) else None
    return path


def article(json_type: str) -> str:
    return {"array": "a list", "object": "an object", "integer": "an integer", "null": "null",
            "string": "a string", "boolean": "true or false", "number": "a number"}.get(json_type, json_type)


def shown(value: Any) -> str:
    """A value from the file, quoted as JSON and cut short (a hostile file chooses its size)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"
