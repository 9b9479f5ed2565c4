"""What an importer builds: configuration data with comments and notes (``Draft``), and
what ``emit`` makes of it (``ImportResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler.config.models import Config

Path = tuple[str | int, ...]


class NoteKind(StrEnum):
    """How far an imported setting is from what the old tool did."""

    NOT_MAPPED = "not mapped"  # dropped: no counterpart (hooks, TLS, monitoring, ...)
    PLACEHOLDER = "placeholder"  # a value the old configuration does not name: FILL-IN
    DIFFERS = "differs"  # mapped, but our semantics differ in a way the user should know
    SAFER = "safer"  # mapped more conservatively than the old tool (keeps more, destroys less)


@dataclass(frozen=True, slots=True)
class Note:
    """One thing the user should know about the import, with where it comes from."""

    where: str  # FILE:LINE (or FILE) of the setting in the old configuration
    kind: NoteKind
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.message}"


@dataclass(slots=True)
class Draft:
    """Plain configuration data (``hosts``, ``policies``, ``filesystems``), the comments to
    write next to its paths, and the notes."""

    tool: str
    sources: list[str]
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    filesystems: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[Path, list[str]] = field(default_factory=dict)  # lines written before a path
    remarks: dict[Path, str] = field(default_factory=dict)  # one comment at the end of a path's line
    notes: list[Note] = field(default_factory=list)
    header: list[str] = field(default_factory=list)  # lines at the top, after the notes

    def note(self, where: str, kind: NoteKind, message: str) -> None:
        note = Note(where, kind, message)
        if note not in self.notes:
            self.notes.append(note)

    def comment(self, path: Path, *lines: str) -> None:
        self.comments.setdefault(path, []).extend(line for line in lines if line)

    def remark(self, path: Path, text: str) -> None:
        previous = self.remarks.get(path)
        self.remarks[path] = f"{previous}; {text}" if previous else text

    def data(self) -> dict[str, Any]:
        return {"hosts": self.hosts, "policies": self.policies, "filesystems": self.filesystems}


@dataclass(frozen=True, slots=True)
class ImportResult:
    """An imported configuration: the YAML text with comments (it passes ``validate``), the
    model it loads into, and the notes (also in the text, as comments)."""

    text: str
    config: Config
    notes: tuple[Note, ...]

    def notes_of(self, kind: NoteKind) -> list[Note]:
        return [n for n in self.notes if n.kind == kind]
