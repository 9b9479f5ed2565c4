"""Strict, fast parsers for ``zfs list`` and ``zfs holds`` output.

A host may hold a million snapshots, so the per-line work is one ``str.split`` and a few
cheap string checks. Characters ZFS forbids in names are rejected by one regex over
the whole text (C speed) before the line loop; the loop checks structure and numbers.
Nothing is guessed: the first line that is not valid zfs output raises a GatherError
naming the host and the line number.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from itertools import repeat

from reconciler.domain.observed import Bookmark, Dataset, Snapshot
from reconciler.errors import GatherError

LIST_COLUMNS: tuple[str, ...] = ("name", "type", "guid", "createtxg", "creation", "userrefs", "written",
                                 "referenced", "receive_resume_token")
LIST_TYPES = "filesystem,volume,snapshot,bookmark"
MAX_GUID = (1 << 64) - 1

# Everything that may appear in ``zfs list -H -p`` output of our columns: name characters
# (zfs(8) "Naming": alphanumerics, '_', '-', ':', '.', ' '), the delimiters '/', '@', '#',
# numbers, '-' for "not applicable", hex resume tokens, tabs and newlines.
FORBIDDEN = re.compile(r"[^A-Za-z0-9_.:\- /@#\t\n]")
# receive_resume_token: "<version>-<checksum>-<length>-<zlib nvlist>", all hex (libzfs).
TOKEN = re.compile(r"[0-9]+-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+")
ALLOWED_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:- /@#\t\n"
CHUNK_CHARS = 1 << 20
TYPES = frozenset(("filesystem", "volume", "snapshot", "bookmark"))


def list_argv() -> list[str]:
    """The one command gathering runs per host."""
    return ["zfs", "list", "-H", "-p", "-t", LIST_TYPES, "-o", ",".join(LIST_COLUMNS)]


def holds_argv(snapshots: list[str]) -> list[str]:
    return ["zfs", "holds", "-H", *snapshots]


def bad_output(host: str, lineno: int, reason: str, line: str) -> GatherError:
    shown = line if len(line) <= 200 else line[:200] + "…"
    return GatherError(host, "bad_output", f"invalid zfs list output at line {lineno}: {reason}: {shown!r}")


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
    raise GatherError(host, "bad_output",
                      f"invalid {what} output at line {lineno}: character {match.group()!r} is not allowed "
                      f"in zfs output: {line[:200]!r}")


def bad_dataset_name(name: str) -> bool:
    """True when a filesystem/volume name has an empty component, a misplaced delimiter,
    or a pool name not starting with a letter (zpool(8))."""
    return (not name or not name[0].isalpha() or name[-1] == "/" or "//" in name or "@" in name
            or "#" in name)


def parse_zfs_list(text: str, host: str) -> dict[str, Dataset]:
    """Parse ``zfs list -H -p -t filesystem,volume,snapshot,bookmark -o <LIST_COLUMNS>``.

    Returns datasets by full name, each with its snapshots and bookmarks ordered by createtxg.
    """
    # A million new objects would trigger many full garbage collections that find nothing
    # to free (the records hold no cycles); pausing the collector makes parsing ~20% faster.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _parse_zfs_list(text, host)
    finally:
        if collecting:
            gc.enable()


def _parse_zfs_list(text: str, host: str) -> dict[str, Dataset]:
    check_characters(text, host)
    try:
        return _parse_records(text)
    except _Doubt:
        pass
    return _parse_lines(text, host)  # authoritative: raises naming the first bad line


class _Doubt(Exception):
    """The fast path met something it does not accept; the line parser decides."""


def _chunks(text: str) -> Iterator[str]:
    """Pieces of about CHUNK_CHARS, each ending with a newline (bounded memory per piece)."""
    start, size = 0, len(text)
    while start < size:
        end = text.find("\n", min(start + CHUNK_CHARS, size - 1))
        if end < 0:
            yield text[start:] + "\n"
            return
        yield text[start:end + 1]
        start = end + 1


def _parse_records(text: str) -> dict[str, Dataset]:
    """The fast path: split a chunk into one flat field list and walk it nine at a time.

    It accepts only what the line parser accepts. A line with too few or too many fields
    shifts every later record, which then fails a check (a name never passes isdigit, a
    type test or the token pattern), so any doubt raises _Doubt and the caller re-parses
    line by line for a precise error.
    """
    datasets: dict[str, Dataset] = {}
    unsorted: set[str] = set()
    try:
        _walk_records(text, datasets, unsorted)
    except ValueError:  # int("") of an empty field
        raise _Doubt from None
    for name in unsorted:
        order_by_createtxg(datasets[name])
    return datasets


def _walk_records(text: str, datasets: dict[str, Dataset], unsorted: set[str]) -> None:
    current: Dataset | None = None
    current_name = ""
    last_txg = -1
    snapshot_cls, bookmark_cls, dataset_cls = Snapshot, Bookmark, Dataset
    get_dataset = datasets.get
    append_snapshot = None
    for chunk in _chunks(text):
        # Tabs and newlines are conflated below, so first make sure every line has exactly
        # eight tabs (str.count per line runs in C through map).
        lines = chunk.split("\n")
        lines.pop()  # the empty piece after the chunk's final newline
        tabs = list(map(str.count, lines, repeat("\t", len(lines))))
        if min(tabs) != 8 or max(tabs) != 8:
            raise _Doubt
        del lines, tabs
        flat = chunk.replace("\n", "\t").split("\t")
        flat.pop()
        it = iter(flat)
        # Every line has nine fields (checked above), so zip() walks whole lines.
        for name, kind, guid, txg, creation, userrefs, written, referenced, token in zip(  # noqa: B905
                it, it, it, it, it, it, it, it, it):
            numbers = (guid, txg, creation, userrefs, written, referenced)
            # One isdigit() over the joined numbers rules out what int() would also accept
            # (" 1", "1_0", "-1"); an empty field makes int() raise, which is caught below.
            if kind == "snapshot" and token == "-" and "".join(numbers).isdigit():
                guid_value, txg_value, creation_value, refs, written_value, referenced_value = map(
                    int, numbers)
                ds_name, _, short = name.partition("@")
                if ds_name != current_name:
                    current = get_dataset(ds_name)
                    if current is None:
                        raise _Doubt
                    current_name, last_txg, append_snapshot = ds_name, -1, current.snapshots.append
                if not short or "@" in short or "#" in short or not 0 < guid_value <= MAX_GUID:
                    raise _Doubt
                if txg_value < last_txg:
                    unsorted.add(ds_name)
                last_txg = txg_value
                append_snapshot(snapshot_cls(  # type: ignore[misc]
                    short, guid_value, txg_value, creation_value, refs, written_value, referenced_value))
            elif kind == "bookmark" and userrefs == "-" and token == "-" and guid.isdigit() \
                    and txg.isdigit() and creation.isdigit():
                ds_name, _, short = name.partition("#")
                guid_value, txg_value = int(guid), int(txg)
                if ds_name != current_name:
                    current = get_dataset(ds_name)
                    if current is None:
                        raise _Doubt
                    current_name, last_txg, append_snapshot = ds_name, -1, current.snapshots.append
                if not short or "#" in short or "@" in short or not 0 < guid_value <= MAX_GUID:
                    raise _Doubt
                if txg_value < last_txg:
                    unsorted.add(ds_name)
                last_txg = txg_value
                current.bookmarks.append(  # type: ignore[union-attr]
                    bookmark_cls(short, guid_value, txg_value, int(creation)))
            elif (kind == "filesystem" or kind == "volume") and userrefs == "-" and guid.isdigit() \
                    and txg.isdigit() and creation.isdigit() and (written.isdigit() or written == "-") \
                    and (referenced.isdigit() or referenced == "-") \
                    and (token == "-" or TOKEN.fullmatch(token)):
                guid_value = int(guid)
                if bad_dataset_name(name) or name in datasets or not 0 < guid_value <= MAX_GUID:
                    raise _Doubt
                current = datasets[name] = dataset_cls(name, kind, guid_value, int(txg),
                                                       None if token == "-" else token)
                current_name, last_txg, append_snapshot = name, -1, current.snapshots.append
            else:
                raise _Doubt


def _parse_lines(text: str, host: str) -> dict[str, Dataset]:
    """The reference parser, line by line: slower, but names the first bad line exactly."""
    datasets: dict[str, Dataset] = {}
    unsorted: set[str] = set()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    current: Dataset | None = None
    current_name = ""
    last_txg = -1
    snapshot_cls, bookmark_cls, dataset_cls = Snapshot, Bookmark, Dataset
    get_dataset = datasets.get
    for index, line in enumerate(lines):
        fields = line.split("\t")
        if len(fields) != 9:
            raise bad_output(host, index + 1, f"expected 9 tab-separated columns, got {len(fields)}", line)
        name, kind, guid, txg, creation, userrefs, written, referenced, token = fields
        if not (guid.isdigit() and txg.isdigit() and creation.isdigit()):
            raise bad_output(host, index + 1, "guid, createtxg and creation must be decimal numbers", line)
        guid_value = int(guid)
        if guid_value > MAX_GUID or not guid_value:
            raise bad_output(host, index + 1, "guid is not a non-zero 64-bit number", line)
        txg_value = int(txg)
        if kind == "snapshot":
            # The dataset part was validated on its own line (it must exist already).
            ds_name, _, short = name.partition("@")
            if ds_name != current_name:
                current = get_dataset(ds_name)
                if current is None:
                    raise bad_output(host, index + 1, f"snapshot of {ds_name!r} before that dataset", line)
                current_name, last_txg = ds_name, -1
            if not short or "@" in short or "#" in short or token != "-" or not userrefs.isdigit():
                raise bad_output(host, index + 1, "not a valid snapshot line", line)
            if written.isdigit():
                written_value: int | None = int(written)
            elif written == "-":
                written_value = None
            else:
                raise bad_output(host, index + 1, "written must be a number", line)
            if referenced.isdigit():
                referenced_value: int | None = int(referenced)
            elif referenced == "-":
                referenced_value = None
            else:
                raise bad_output(host, index + 1, "referenced must be a number", line)
            if txg_value < last_txg:
                unsorted.add(ds_name)
            last_txg = txg_value
            current.snapshots.append(snapshot_cls(  # type: ignore[union-attr]
                short, guid_value, txg_value, int(creation), int(userrefs), written_value, referenced_value))
        elif kind == "bookmark":
            ds_name, _, short = name.partition("#")
            if ds_name != current_name:
                current = get_dataset(ds_name)
                if current is None:
                    raise bad_output(host, index + 1, f"bookmark of {ds_name!r} before that dataset", line)
                current_name, last_txg = ds_name, -1
            if not short or "#" in short or "@" in short or userrefs != "-" or token != "-":
                raise bad_output(host, index + 1, "not a valid bookmark line", line)
            if txg_value < last_txg:
                unsorted.add(ds_name)
            last_txg = txg_value
            current.bookmarks.append(  # type: ignore[union-attr]
                bookmark_cls(short, guid_value, txg_value, int(creation)))
        elif kind == "filesystem" or kind == "volume":
            if bad_dataset_name(name) or userrefs != "-":
                raise bad_output(host, index + 1, f"not a valid {kind} line", line)
            if name in datasets:
                raise bad_output(host, index + 1, f"dataset {name!r} listed twice", line)
            if token != "-" and not TOKEN.fullmatch(token):
                raise bad_output(host, index + 1, "receive_resume_token is not a token", line)
            if not (written.isdigit() or written == "-") or not (referenced.isdigit() or referenced == "-"):
                raise bad_output(host, index + 1, "written and referenced must be numbers", line)
            current = datasets[name] = dataset_cls(name, kind, guid_value, txg_value,
                                                   None if token == "-" else token)
            current_name, last_txg = name, -1
        else:
            raise bad_output(host, index + 1, f"unknown dataset type {kind!r}", line)
    for name in unsorted:
        order_by_createtxg(datasets[name])
    return datasets


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
            raise GatherError(host, "bad_output",
                              f"invalid zfs holds output at line {index + 1}: {line[:200]!r}")
        holds.setdefault(name, []).append(tag)
    return {name: tuple(tags) for name, tags in holds.items()}
