"""Reading another tool's configuration file: bounded, decoded as UTF-8, every problem with
its FILE:LINE:COL (a ``ConfigError`` the command line turns into exit 1, no traceback)."""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

from reconciler.config.document import Document, parse_document, read_config_text, value_at
from reconciler.config.wording import describe
from reconciler.errors import ConfigError, ConfigProblem
from reconciler.importers.draft import Path


def read_text(path: str) -> str:
    """The file's text; a one-line ConfigError naming the file when it cannot be read."""
    return read_config_text(path, foreign=True)


def load_yaml(path: str, top_level: str) -> Document:
    """A YAML file as plain data with positions (duplicate keys are problems of the document)."""
    document = parse_document(read_text(path), path, top_level=top_level)
    if document.problems:
        raise ConfigError(document.problems)
    return document


class Reader:
    """Typed access to a document's values, collecting every problem instead of stopping at
    the first (the caller raises them together)."""

    def __init__(self, document: Document) -> None:
        self.document = document
        self.problems: list[ConfigProblem] = []

    @property
    def filename(self) -> str:
        return self.document.filename

    def where(self, path: Path) -> str:
        """``FILE:LINE`` of a path, for notes."""
        line, _ = self.document.at(path, key=True)
        return f"{self.filename}:{line}"

    def problem(self, path: Path, message: str, *, key: bool = False) -> None:
        self.problems.append(self.document.problem(path, message, key=key))

    def value(self, path: Path) -> Any:
        return value_at(self.document.data, path)

    def mapping(self, path: Path, allowed: Collection[str], required: Collection[str] = (),
                hints: dict[str, str] | None = None) -> dict[str, Any] | None:
        """The mapping at ``path`` after checking its keys (unknown keys are problems, as in the
        tool itself, with a hint for names older versions used)."""
        value = self.value(path)
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {describe(value)}")
            return None
        for key in value:
            if key not in allowed:
                hint = (hints or {}).get(key)
                self.problem((*path, key), f"unknown key {key!r}" + (f" ({hint})" if hint else
                             f"; expected one of {', '.join(sorted(allowed))}"), key=True)
        for key in required:
            if key not in value:
                self.problem(path, f"missing required key {key!r}", key=True)
        return value

    def string(self, path: Path, *, required: bool = True, nonempty: bool = True) -> str | None:
        value = self.value(path)
        if value is None and not required:
            return None
        parent = self.value(path[:-1])
        if isinstance(parent, dict) and path and path[-1] not in parent:
            self.problem(path[:-1], f"missing required key {path[-1]!r}", key=True)
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)  # "interval: 10" is read as text by Go's yaml as well
        if not isinstance(value, str) or (nonempty and not value.strip()):
            self.problem(path, f"expected {'a non-empty' if nonempty else 'a'} string, got {describe(value)}")
            return None
        return value

    def boolean(self, path: Path, default: bool) -> bool:
        value = self.value(path)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(path, f"expected true or false, got {describe(value)}")
            return default
        return value

    def integer(self, path: Path) -> int | None:
        value = self.value(path)
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, f"expected an integer, got {describe(value)}")
            return None
        return value

    def items(self, path: Path, *, required: bool = True) -> list[Any]:
        value = self.value(path)
        if value is None and not required:
            return []
        if not isinstance(value, list):
            self.problem(path, f"expected a list, got {describe(value)}")
            return []
        return value

    def raise_problems(self) -> None:
        if self.problems:
            raise ConfigError(sorted(set(self.problems), key=lambda p: (p.file, p.line, p.column, p.path)))


def resolve_relative(base_file: str, target: str) -> str:
    """``target`` as zrepl resolves an include: absolute, or relative to the including file's
    directory."""
    joined = target if os.path.isabs(target) else os.path.join(os.path.dirname(base_file) or ".", target)
    return os.path.normpath(joined)
