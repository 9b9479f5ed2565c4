"""The Plan JSON (docs/plan-json.md, public and versioned): written as it is produced,
byte for byte what ``json.dumps(..., indent=2)`` gives, with the digest of what
``apply --plan`` would run (``planfile.read`` computes it again with ``plan_digest``)."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from json.encoder import encode_basestring_ascii as json_string
from typing import Any, TextIO

from reconciler.domain.plan import (
    DIGEST_KEYS,
    Plan,
    canonical_json,
)


def render_json(plan: Plan) -> str:
    """The Plan JSON of DESIGN.md (public, versioned): what ``apply --plan FILE`` reads."""
    buffer = io.StringIO()
    write_json(plan, buffer)
    return buffer.getvalue()


def write_json(plan: Plan, file: TextIO) -> None:
    """The Plan JSON written to ``file`` action by action: byte for byte what
    ``json.dumps(plan_document(plan), indent=2) + "\\n"`` gives, without first building that
    string, or the dicts of all actions. Each action's text is hashed as it is written, and
    the ``digest`` follows the document's other keys."""
    writer = JsonWriter(file)
    document = plan.to_json(lazy=True)
    digest = PlanDigest(document)
    document["actions"] = digest.written(document["actions"])
    document[DIGEST_KEY] = Deferred(digest.value)
    writer.value(document, 0)
    writer.parts.append("\n")
    writer.flush()


def plan_document(plan: Plan) -> dict[str, Any]:
    """The Plan JSON as a dict, ``digest`` included (what ``write_json`` writes)."""
    document = plan.to_json()
    document[DIGEST_KEY] = plan_digest(document, document["actions"])
    return document


# --------------------------------------------------------------------------- the plan's digest

DIGEST_KEY = "digest"
ACTION_LEVEL = 2  # the nesting level of an action's object: document (0), "actions" (1), action (2)


FLUSH_CHARS = 1 << 20  # written text the writer holds at most before it writes to the file


class RawJson(str):
    """JSON text the writer has already written once (an action whose text was hashed)."""


class Deferred:
    """A value the writer asks for only when it reaches its key (the digest, after the actions)."""

    def __init__(self, compute: Callable[[], Any]) -> None:
        self.compute = compute


class PlanDigest:
    """``sha256:<hex>`` over the Plan JSON's DIGEST_KEYS (canonical JSON) and each action's
    text as the writer writes it: edits of anything ``apply --plan`` would run change it, and
    computing it while writing costs one pass of the hash over text made anyway. Read back,
    the actions are written again the same way (``plan_digest``): key order and values count,
    whitespace does not."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.hash = hashlib.sha256(canonical_json({key: document.get(key) for key in DIGEST_KEYS}))

    def add(self, action_text: str) -> None:
        self.hash.update(b"\n")
        self.hash.update(action_text.encode())

    def written(self, actions: Iterable[Any]) -> Iterator[RawJson]:
        for action in actions:
            text = RawJson(json_text(action, ACTION_LEVEL))
            self.add(text)
            yield text

    def value(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def plan_digest(document: Mapping[str, Any], actions: Iterable[Any]) -> str:
    """The digest of a Plan JSON document (as read from a file, or ``plan.to_json()``)."""
    digest = PlanDigest(document)
    for action in actions:
        digest.add(json_text(action, ACTION_LEVEL))
    return digest.value()


def json_text(value: Any, level: int) -> str:
    """``value`` as JsonWriter writes it at nesting ``level``."""
    buffer = io.StringIO()
    writer = JsonWriter(buffer)
    writer.value(value, level)
    writer.flush()
    return buffer.getvalue()


class JsonWriter:
    """``json.dumps(value, indent=2)`` (ensure_ascii, no sorting) streamed to a file.

    json's own encoder formats indented output in Python generators, one per nesting level
    and value; here a list of strings or a string-to-string object (a destroy's snapshots and
    reasons: nearly all of a large plan) is one join of C-encoded strings, and an iterator
    (the plan's actions) is written as an array element by element, the buffer going to the
    file as it fills.
    """

    INDENT = "  "

    def __init__(self, file: TextIO) -> None:
        self.file = file
        self.parts: list[str] = []

    def flush(self) -> None:
        self.file.write("".join(self.parts))
        self.parts = []

    def value(self, value: Any, level: int) -> None:
        parts = self.parts
        if isinstance(value, str):
            parts.append(json_string(value))
        elif value is None:
            parts.append("null")
        elif value is True:
            parts.append("true")
        elif value is False:
            parts.append("false")
        elif isinstance(value, int):
            parts.append(int.__repr__(value))
        elif isinstance(value, float):
            parts.append(json.dumps(value))  # json's spelling of nan and infinities
        elif isinstance(value, dict):
            self.object(value, level)
        elif isinstance(value, list | tuple):
            self.array(value, level)
        elif isinstance(value, Iterator):
            self.stream(value, level)
        elif isinstance(value, Deferred):
            self.value(value.compute(), level)
        else:
            raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    def array(self, items: list[Any] | tuple[Any, ...], level: int) -> None:
        if not items:
            self.parts.append("[]")
            return
        inner = "\n" + self.INDENT * (level + 1)
        body = string_items(items, inner)
        if body is None:  # not all strings
            self.stream(iter(items), level)
            return
        self.parts.append(f"[{inner}{body}\n{self.INDENT * level}]")

    def stream(self, items: Iterator[Any], level: int) -> None:
        parts = self.parts
        inner = "\n" + self.INDENT * (level + 1)
        opening = "[" + inner
        raw_chars = 0
        for item in items:
            parts.append(opening)
            opening = "," + inner
            if item.__class__ is RawJson:
                parts.append(item)
                raw_chars += len(item)
            else:
                self.value(item, level + 1)
                parts = self.parts  # a nested stream may have flushed
            # An action's text is one part of kilobytes: bound the buffer by size too.
            if len(parts) > 4096 or raw_chars > FLUSH_CHARS:
                self.flush()
                parts = self.parts
                raw_chars = 0
        parts.append("[]" if opening.startswith("[") else f"\n{self.INDENT * level}]")

    def object(self, value: dict[Any, Any], level: int) -> None:
        parts = self.parts
        if not value:
            parts.append("{}")
            return
        inner = "\n" + self.INDENT * (level + 1)
        body = string_pairs(value, inner)
        if body is not None:
            parts.append(f"{{{inner}{body}\n{self.INDENT * level}}}")
            return
        # Some key or value is not a string.
        opening = "{" + inner
        for key, item in value.items():
            parts.append(f"{opening}{json_string(json_key(key))}: ")
            opening = "," + inner
            self.value(item, level + 1)
            parts = self.parts  # a nested stream may have flushed
        parts.append(f"\n{self.INDENT * level}}}")


def string_items(items: list[Any] | tuple[Any, ...], inner: str) -> str | None:
    """The items of an indented JSON array of strings (``"a",<inner>"b"``); None if one is not a str."""
    try:
        return f",{inner}".join(map(json_string, items))
    except TypeError:
        return None


def string_pairs(mapping: dict[Any, Any], inner: str) -> str | None:
    """The members of an indented JSON object of strings (``"k": "v",<inner>...``); None if a key
    or value is not a str."""
    try:
        return f",{inner}".join([f"{json_string(k)}: {json_string(v)}" for k, v in mapping.items()])
    except TypeError:
        return None


def json_key(key: Any) -> str:
    """An object key as json.dumps writes it: strings as they are, scalars spelled as JSON."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, int | float):  # bool is an int
        return json.dumps(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")

