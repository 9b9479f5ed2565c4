"""Strict parsers for ``zfs list`` and ``zfs holds`` output.

``parse_zfs_list`` first offers the listing to the column fast path (``parse_columns.py``),
which takes the common shape of a big listing a column at a time. Anything else, and any
invalid line, goes to the careful row-by-row parse here (``_parse_rows``), which accepts
every valid listing and is the reference: the fast path returns exactly what it would, or
steps aside. Nothing is guessed: the first line that is not valid zfs output raises a
GatherError naming the host and the line number.

The parsers leave the garbage collector alone: the caller that owns the process pauses it
around a whole gathering (``gc_pause.paused_gc``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from reconciler.codes import HostProblem
from reconciler.domain.names import ZFS_MAX_NAME
from reconciler.domain.observed import Bookmark, Dataset, Snapshot
from reconciler.errors import GatherError, clip
from reconciler.gather.parse_columns import parse_columns
from reconciler.gather.zfs_output import (
    ALLOWED_BYTES,
    FORBIDDEN,
    LIST_COLUMNS,
    MAX_GUID,
    dataset_encryption_ok,
    snapshot_encryption_ok,
)

LIST_TYPES = "filesystem,volume,snapshot,bookmark"
CHUNK_CHARS = 1 << 16

# receive_resume_token: "<version>-<checksum>-<length>-<zlib nvlist>", all hex (libzfs).
TOKEN = re.compile(r"[0-9]+-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+")


def list_argv(types: str = LIST_TYPES) -> list[str]:
    """The one command gathering runs per host (the same columns for fewer ``types``)."""
    return ["zfs", "list", "-H", "-p", "-t", types, "-o", ",".join(LIST_COLUMNS)]


def holds_argv(snapshots: list[str]) -> list[str]:
    return ["zfs", "holds", "-H", *snapshots]


def bad_output(host: str, lineno: int, reason: str, line: str) -> GatherError:
    return GatherError(host, HostProblem.BAD_OUTPUT,
                       f"invalid zfs list output at line {lineno}: {reason}: '{clip(line, 200)}'")


def check_characters(text: str, host: str, what: str = "zfs list") -> None:
    # bytes.translate deleting every allowed byte is ~3x faster than the regex scan; the
    # regex runs only to point at the offending character.
    if text.isascii() and not text.encode("ascii").translate(None, ALLOWED_BYTES):
        return
    match = FORBIDDEN.search(text)
    if match is None:
        return
    start = match.start()
    lineno = text.count("\n", 0, start) + 1
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    line = text[line_start:line_end if line_end >= 0 else len(text)]
    raise GatherError(host, HostProblem.BAD_OUTPUT,
                      f"invalid {what} output at line {lineno}: character {match.group()!r} is not allowed "
                      f"in zfs output: '{clip(line, 200)}'")


def bad_dataset_name(name: str) -> bool:
    """True when a filesystem/volume name has an empty component, a misplaced delimiter,
    or a pool name not starting with a letter (zpool(8))."""
    return (not name or not name[0].isalpha() or name[-1] == "/" or "//" in name or "@" in name
            or "#" in name)


def optional_number(value: str, column: str, host: str, index: int, line: str) -> int | None:
    """A decimal column, or None for zfs's "-" (not applicable); anything else is bad output."""
    if value.isdigit():
        return int(value)
    if value == "-":
        return None
    raise bad_output(host, index + 1, f"{column} must be a number", line)


def parse_zfs_list(text: str, host: str) -> dict[str, Dataset]:
    """Parse ``zfs list -H -p -t filesystem,volume,snapshot,bookmark -o <LIST_COLUMNS>``.

    Returns datasets by full name, each with its snapshots and bookmarks ordered by createtxg.
    """
    datasets = parse_columns(_pieces(text), _Builder(host))
    if datasets is None:
        # Not the common shape: parse row by row, which accepts every valid listing and
        # names the first line that is not one.
        check_characters(text, host)
        datasets = _parse_rows(text, host)
    return datasets


def _pieces(text: str) -> Iterator[tuple[int, str]]:
    """(0-based number of its first line, piece) of whole-line pieces of ~CHUNK_CHARS, so
    the million line or field strings of a big listing never exist at once. One final
    newline ends the text; any other empty line is a line (and invalid)."""
    start, size, base = 0, len(text), 0
    while start < size:
        end = text.find("\n", min(start + CHUNK_CHARS, size - 1))
        piece = text[start:] if end < 0 else text[start:end]
        yield base, piece
        base += piece.count("\n") + 1
        if end < 0:
            return
        start = end + 1


def _numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """(0-based number, line) of every line."""
    for base, piece in _pieces(text):
        lines = piece.split("\n")
        yield from zip(range(base, base + len(lines)), lines, strict=True)


class _Builder:
    """Datasets under construction; ``row`` is the careful parse of one line of any kind.

    The fast path is handed one too (``parse_columns.ReferenceRows``): the lines it does
    not take itself get this very parse.
    """

    __slots__ = ("current", "datasets", "host", "last_txg", "unsorted")

    def __init__(self, host: str) -> None:
        self.host = host
        self.datasets: dict[str, Dataset] = {}
        self.current: Dataset | None = None
        self.last_txg = -1
        self.unsorted: set[str] = set()

    def owner(self, ds_name: str, index: int, what: str, line: str) -> Dataset:
        """The dataset a snapshot or bookmark line belongs to (listed before it)."""
        current = self.current
        if current is None or current.name != ds_name:
            current = self.current = self.datasets.get(ds_name)
            if current is None:
                raise bad_output(self.host, index + 1, f"{what} of {ds_name!r} before that dataset", line)
            self.last_txg = -1
        return current

    def row(self, index: int, line: str) -> None:
        host = self.host
        try:
            (name, kind, guid, txg, creation, userrefs, written, referenced, token, encryption, enc_root,
             key_status) = line.split("\t")
        except ValueError:
            found = len(line.split("\t"))
            expected = len(LIST_COLUMNS)
            raise bad_output(host, index + 1, f"expected {expected} tab-separated columns, got {found}",
                             line) from None
        # zfs cannot print a longer name (the text is ASCII here: characters are bytes); a
        # host that does is broken, and its name must not reach a message whole.
        if len(name) > ZFS_MAX_NAME:
            raise bad_output(host, index + 1,
                             f"a name of {len(name)} bytes (zfs allows at most {ZFS_MAX_NAME})", line)
        if not (guid.isdigit() and txg.isdigit() and creation.isdigit()):
            raise bad_output(host, index + 1, "guid, createtxg and creation must be decimal numbers", line)
        guid_value = int(guid)
        if guid_value > MAX_GUID or not guid_value:
            raise bad_output(host, index + 1, "guid is not a non-zero 64-bit number", line)
        txg_value = int(txg)
        if kind == "snapshot":
            ds_name, _, short = name.partition("@")
            current = self.owner(ds_name, index, "snapshot", line)
            if (not short or "@" in short or "#" in short or token != "-" or not userrefs.isdigit()
                    or not all(map(snapshot_encryption_ok, range(3), (encryption, enc_root, key_status)))):
                raise bad_output(host, index + 1, "not a valid snapshot line", line)
            written_value = optional_number(written, "written", host, index, line)
            referenced_value = optional_number(referenced, "referenced", host, index, line)
            if txg_value < self.last_txg:
                self.unsorted.add(ds_name)
            self.last_txg = txg_value
            current.snapshots.append(Snapshot(short, guid_value, txg_value, int(creation), int(userrefs),
                                              written_value, referenced_value))
        elif kind == "bookmark":
            ds_name, _, short = name.partition("#")
            current = self.owner(ds_name, index, "bookmark", line)
            if (not short or "#" in short or "@" in short or userrefs != "-" or token != "-"
                    or encryption != "-" or enc_root != "-" or key_status != "-"):
                raise bad_output(host, index + 1, "not a valid bookmark line", line)
            # OpenZFS 2.1 lists bookmarks after all snapshots, each group by createtxg.
            marks = current.bookmarks
            if marks and txg_value < marks[-1].createtxg:
                self.unsorted.add(ds_name)
            marks.append(Bookmark(short, guid_value, txg_value, int(creation)))
        elif kind == "filesystem" or kind == "volume":
            if bad_dataset_name(name) or userrefs != "-":
                raise bad_output(host, index + 1, f"not a valid {kind} line", line)
            if name in self.datasets:
                raise bad_output(host, index + 1, f"dataset {name!r} listed twice", line)
            if token != "-" and not TOKEN.fullmatch(token):
                raise bad_output(host, index + 1, "receive_resume_token is not a token", line)
            if not dataset_encryption_ok(encryption, enc_root, key_status):
                raise bad_output(host, index + 1, "encryption, encryptionroot and keystatus do not fit", line)
            dataset_written = optional_number(written, "written", host, index, line)
            optional_number(referenced, "referenced", host, index, line)  # checked, not kept
            current = self.current = self.datasets[name] = Dataset(
                name, kind, guid_value, txg_value, None if token == "-" else token)
            current.written = dataset_written
            if encryption != "off":
                current.encryption, current.encryption_root = encryption, enc_root
                current.key_status = key_status
            self.last_txg = -1
        else:
            raise bad_output(host, index + 1, f"unknown dataset type {kind!r}", line)

    def finish(self) -> dict[str, Dataset]:
        for name in self.unsorted:
            order_by_createtxg(self.datasets[name])
        return self.datasets


def _parse_rows(text: str, host: str) -> dict[str, Dataset]:
    """Line by line; the first line that is not valid zfs output raises, naming its number."""
    builder = _Builder(host)
    for index, line in _numbered_lines(text):
        builder.row(index, line)
    return builder.finish()


def order_by_createtxg(dataset: Dataset) -> None:
    """zfs lists in createtxg order already; a sort keeps us correct if a version does not."""
    dataset.snapshots.sort(key=lambda s: s.createtxg)
    dataset.bookmarks.sort(key=lambda b: b.createtxg)


def parse_zfs_holds(text: str, host: str) -> dict[str, tuple[str, ...]]:
    """Parse ``zfs holds -H <snapshot>...``: full snapshot name -> hold tags, in listed order."""
    holds: dict[str, list[str]] = {}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for index, line in enumerate(lines):
        name, sep, rest = line.partition("\t")
        tag, sep2, _stamp = rest.rpartition("\t")
        ds_name, at, short = name.partition("@")
        if not (sep and sep2 and at and short and tag) or bad_dataset_name(ds_name) or "#" in name \
                or FORBIDDEN.search(name):
            raise GatherError(host, HostProblem.BAD_OUTPUT,
                              f"invalid zfs holds output at line {index + 1}: '{clip(line, 200)}'")
        holds.setdefault(name, []).append(tag)
    return {name: tuple(tags) for name, tags in holds.items()}
