"""The column-at-a-time fast path of the ``zfs list`` parser, for the shape zfs prints.

A host may hold a million snapshots, so the common shape of the listing (each dataset
followed by its snapshots) is parsed a column at a time: every check and conversion is
one C loop over a piece of the text (translate, count, join, split, map(int)), and
Python code runs per dataset, not per snapshot. The rows it does not take, and every
decision it is unsure of, go to the row-by-row reference (``parse.py``), which it is
handed: it returns exactly what the reference would, or None to step aside.
tests/test_parse_fast_path.py checks that differentially.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat
from typing import Protocol

from reconciler.domain.names import ZFS_MAX_NAME
from reconciler.domain.observed import Dataset, Snapshot
from reconciler.errors import GatherError
from reconciler.gather.zfs_output import ALLOWED_BYTES, LIST_COLUMNS, MAX_GUID, snapshot_encryption_ok

DIGITS = b"0123456789"
DIGITS_DASH = DIGITS + b"-"
FIELD_BYTES = bytes(c for c in ALLOWED_BYTES if c not in b"\t\n@#")
W = len(LIST_COLUMNS)  # fields per line
LINE_SEPARATORS = b"\t" * (W - 1) + b"\n"  # what a valid line leaves of itself but its fields
TOKEN, ENCRYPTION = LIST_COLUMNS.index("receive_resume_token"), LIST_COLUMNS.index("encryption")


class ReferenceRows(Protocol):
    """What the fast path needs of the reference parse: the datasets under construction
    (the current one, its last createtxg, those to sort) and its careful parse of one line."""

    current: Dataset | None
    last_txg: int
    unsorted: set[str]

    def row(self, index: int, line: str) -> None: ...

    def finish(self) -> dict[str, Dataset]: ...


def _separators(piece: str) -> bytes | None:
    """What is left of ``piece`` when every character a field may hold is deleted but "@"
    and "#" (one C pass); None when it holds a character zfs list output cannot hold."""
    if not piece.isascii():
        return None
    return piece.encode("ascii").translate(None, FIELD_BYTES)


def _numbers(column: list[str]) -> list[int] | None:
    """The column as ints when every value is a non-empty run of digits, else None.

    int() itself refuses letters and every other character _separators let through except
    these three: "_" between digits, " " around them and a leading "-"."""
    joined = "".join(column)
    if "_" in joined or " " in joined or "-" in joined:
        return None
    try:
        return list(map(int, column))
    except ValueError:  # a letter, ".", ":", "/" or an empty value
        return None


def _sizes(column: list[str]) -> bool:
    """Every value is digits or zfs's "-" (Snapshot converts a size on first read)."""
    joined = "".join(column)
    return ("" not in column and joined.count("-") == column.count("-")
            and not joined.encode("ascii").translate(None, DIGITS_DASH))


def _encryption_columns(fields: list[str], specials: list[int]) -> bool:
    """Every snapshot line's encryption, encryptionroot and keystatus is a value a snapshot
    may have (``snapshot_encryption_ok``): each distinct value of a column is checked once,
    and one a snapshot may not have must stand on special lines only (builder.row checks
    theirs). One C pass per column; Python code per distinct value."""
    for column in range(3):
        values = fields[ENCRYPTION + column::W]
        for value in set(values):
            if snapshot_encryption_ok(column, value):
                continue
            on_specials = sum(1 for index in specials if values[index] == value)
            if values.count(value) != on_specials:
                return False
    return True


def parse_columns(pieces: Iterable[tuple[int, str]], builder: ReferenceRows) -> dict[str, Dataset] | None:
    """The fast path for the shape zfs prints: each filesystem or volume followed by its
    snapshots (in createtxg order) and bookmarks. ``pieces`` are the listing's whole-line
    pieces, each with the 0-based number of its first line; ``builder`` is a fresh
    reference parse. Each piece is checked in one pass (_separators), becomes one flat list
    of fields, and its number columns are checked and converted whole (C loops: join,
    translate, count, map(int)); each run of one dataset's snapshots then takes slices, and
    the few other lines go through ``builder.row``. Returns None at the first thing this
    path does not take (any invalid line among them): the row-by-row parse then decides,
    so the result and every error are exactly its own."""
    snapshot_cls = Snapshot
    for base, piece in pieces:
        separators = _separators(piece)
        if separators is None:
            return None
        fields = piece.replace("\n", "\t").split("\t")
        rows = len(fields) // W
        # Exactly W fields on every line: W - 1 tabs each, lines joined by newlines.
        if separators.translate(None, b"@#") != LINE_SEPARATORS * (rows - 1) + LINE_SEPARATORS[:-1]:
            return None
        # The rows that are not snapshots; builder.row checks each (kind, name, columns).
        specials = [index for index, kind in enumerate(fields[1::W]) if kind != "snapshot"]
        snapshots = rows - len(specials)
        # Filesystem and volume names hold neither "@" nor "#", a bookmark's one "#", a
        # token neither: so these counts give every snapshot name exactly one "@" and no
        # "#", and every snapshot the token "-" (the special rows' own are checked anyway).
        bookmarks = sum(1 for index in specials if fields[W * index + 1] == "bookmark")
        tokens = sum(1 for index in specials if fields[W * index + TOKEN] != "-")
        if (separators.count(b"@") != snapshots or separators.count(b"#") != bookmarks
                or fields[TOKEN::W].count("-") != rows - tokens
                or not _encryption_columns(fields, specials)):
            return None
        userrefs, written, referenced = fields[5::W], fields[6::W], fields[7::W]
        guid_values = _numbers(fields[2::W])
        txg_values = _numbers(fields[3::W])
        creation_values = _numbers(fields[4::W])
        if (guid_values is None or txg_values is None or creation_values is None
                or not _sizes(written) or not _sizes(referenced)):
            return None
        if min(guid_values) == 0 or max(guid_values) > MAX_GUID:
            return None
        # Special rows must say "-" (builder.row checks), so this count means every
        # snapshot holds no user reference: no conversion needed.
        zero_refs = userrefs.count("0") == snapshots
        specials.append(rows)  # the sentinel ends the last run
        first = 0
        for stop in specials:
            if stop > first:
                current = builder.current
                if current is None:
                    return None
                count = stop - first
                prefix = current.name + "@"
                # Every name is "<current dataset>@<short>": as many pieces as names when
                # split at each "\n<prefix>", the first one starting with it too.
                shorts = "\n".join(fields[W * first:W * stop:W]).split("\n" + prefix)
                head = shorts[0]
                if len(shorts) != count or not head.startswith(prefix) or "" in shorts:
                    return None
                shorts[0] = head[len(prefix):]
                # The longest full name within zfs's limit: one C loop over the run's names.
                if not shorts[0] or len(prefix) + max(map(len, shorts)) > ZFS_MAX_NAME:
                    return None
                run_txgs = txg_values[first:stop]
                if run_txgs[0] < builder.last_txg or run_txgs != sorted(run_txgs):
                    builder.unsorted.add(current.name)
                builder.last_txg = run_txgs[-1]
                refs: Iterable[int] | None = (repeat(0, count) if zero_refs
                                              else _numbers(userrefs[first:stop]))
                if refs is None:
                    return None
                current.snapshots.extend(map(snapshot_cls, shorts, guid_values[first:stop], run_txgs,
                                             creation_values[first:stop], refs, written[first:stop],
                                             referenced[first:stop]))
            if stop < rows:
                try:
                    builder.row(base + stop, "\t".join(fields[W * stop:W * stop + W]))
                except GatherError:
                    return None
            first = stop + 1
    return builder.finish()
