#!/usr/bin/env python3
"""A stand-in for the ``zfs`` command, backed by a JSON state file (see state.py).

Usage: ``python3 zfs.py --state STATE.json <zfs arguments>`` (or env ZFS_STANDIN_STATE).
It mimics OpenZFS 2.1 output formats and error wording for the subcommands this project
runs: list, get, holds, snapshot, destroy, bookmark, hold, release, create, send, recv,
and ``program`` for zrepl-reconcile's own channel program only (recognised by its first
line; state ``"program": "refused"`` answers as zfs does to a non-root user, ``"unknown"``
as a zfs without the subcommand). A snapshot with ``"clones": true`` is a clone's origin:
zfs refuses to destroy it ("snapshot has dependent clones"; EEXIST in a program).

Send streams are a sequence of records, one per snapshot::

    ZSTANDIN <json header>\\n  <header["length"] padding bytes>  END\\n

A record counts as received only when its ``END`` line arrived; a resumable receive
(``recv -s``) of a truncated record leaves ``receive_resume_token`` on the target.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The project root, for the product's own resume-token codec: the stand-in runs with -S
# (no site-packages, so no editable install to find it by).
sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import state as st  # sibling module; this file runs as a script

State = dict[str, Any]
COLUMNS = ("name", "type", "guid", "createtxg", "creation", "userrefs", "written", "referenced",
           "receive_resume_token", "used", "available", "mountpoint", "canmount", "encryption",
           "encryptionroot", "keystatus", "readonly")
# Measured on OpenZFS 2.1 (reconciler/domain/properties.py): a raw stream refuses these.
RAW_REFUSED = ("encryption", "keyformat", "pbkdf2iters")
FILESYSTEM_ONLY = ("canmount", "mountpoint", "atime", "sharenfs", "sharesmb", "recordsize", "quota")
COMPONENT = re.compile(r"^[A-Za-z0-9_.: -]+$")
CHUNK = 1 << 20
SNAPSHOT_USAGE = ("usage:\n\tsnapshot [-r] [-o property=value] ... <filesystem|volume>@<snap> ...\n\n"
                  "For the property list, run: zfs set|get\n\n"
                  "For the delegated permission list, run: zfs allow|unallow")
HEADER = b"ZSTANDIN "
TRAILER = b"END\n"


class ZfsFailure(Exception):
    """Ends the command with ``message`` on stderr and exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class PartialFailure(ZfsFailure):
    """A command that did part of its work (zfs hold/release of several snapshots): the
    state is saved, then the command fails."""


# --------------------------------------------------------------------------- helpers

def state_path_from(argv: list[str]) -> tuple[str, list[str]]:
    if len(argv) >= 2 and argv[0] == "--state":
        return argv[1], argv[2:]
    env = os.environ.get("ZFS_STANDIN_STATE")
    if not env:
        raise ZfsFailure("zfs-standin: no state file (--state PATH or ZFS_STANDIN_STATE)", 2)
    return env, argv


def split_ref(ref: str) -> tuple[str, str, str]:
    """``ds@snap`` -> (ds, "@", snap); ``ds#bm`` -> (ds, "#", bm); ``ds`` -> (ds, "", "")."""
    for sep in ("@", "#"):
        if sep in ref:
            ds, name = ref.split(sep, 1)
            return ds, sep, name
    return ref, "", ""


def invalid_name_reason(ref: str) -> str | None:
    ds, sep, name = split_ref(ref)
    parts = ds.split("/")
    for part in [*parts, *([name] if sep else [])]:
        if part == "":
            return "empty component or misplaced '@' or '#' delimiter in name"
        bad = next((c for c in part if not COMPONENT.match(c)), None)
        if bad is not None:
            return f"invalid character '{bad}' in name"
    return None


def get_dataset(state: State, name: str) -> dict[str, Any]:
    ds = state["datasets"].get(name)
    if ds is None:
        raise ZfsFailure(f"cannot open '{name}': dataset does not exist")
    result: dict[str, Any] = ds
    return result


def find(items: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((item for item in items if item["name"] == name), None)


def get_snapshot(state: State, ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
    ds_name, sep, name = split_ref(ref)
    ds = state["datasets"].get(ds_name)
    snap = find(ds["snapshots"], name) if ds is not None and sep == "@" else None
    if ds is None or snap is None:
        raise ZfsFailure(f"cannot open '{ref}': dataset does not exist")
    return ds, snap


def getopts(args: list[str], flags: str, with_value: str) -> tuple[dict[str, list[str]], list[str]]:
    """A tiny getopt: single-letter flags may be combined (``-Hp``); value options take the next word."""
    opts: dict[str, list[str]] = {}
    rest = list(args)
    while rest and rest[0].startswith("-") and rest[0] != "-":
        word = rest.pop(0)
        if word == "--":
            break
        letters = word[1:]
        while letters:
            letter, letters = letters[0], letters[1:]
            if letter in with_value:
                value = letters or (rest.pop(0) if rest else "")
                if not value:
                    raise ZfsFailure(f"missing argument for '{letter}' option", 2)
                opts.setdefault(letter, []).append(value)
                letters = ""
            elif letter in flags:
                opts.setdefault(letter, []).append("")
            else:
                raise ZfsFailure(f"invalid option '{letter}'", 2)
    return opts, rest


def ctime(seconds: int) -> str:
    return time.strftime("%a %b %e %H:%M %Y", time.localtime(seconds))


# --------------------------------------------------------------------------- list / get

def value_of(ds_name: str, ds: dict[str, Any], kind: str, item: dict[str, Any] | None, col: str,
             parsable: bool) -> str:
    obj = item if item is not None else ds
    if col == "name":
        return ds_name if item is None else f"{ds_name}{'@' if kind == 'snapshot' else '#'}{item['name']}"
    if col == "type":
        return kind
    if col in ("guid", "createtxg"):
        return str(obj[col])
    if col == "creation":
        return str(obj["creation"]) if parsable else ctime(obj["creation"])
    if col == "userrefs":
        return str(len(item.get("holds", {}))) if kind == "snapshot" and item is not None else "-"
    if col == "written":
        if kind == "bookmark":
            return "-"
        if item is None:
            return "4096" if ds.get("modified") else "0"
        return str(item.get("written", item.get("size", 0)))
    if col in ("referenced", "used"):
        if kind == "bookmark" and col == "used":
            return "-"
        if item is not None:  # a bookmark shows its snapshot's referenced (OpenZFS 2.1)
            return str(item.get("referenced", item.get("size", 0)))
        return str(sum(s.get("size", 0) for s in ds["snapshots"]))
    if col == "receive_resume_token":
        token = ds.get("resume_token") if item is None else None
        return token or "-"
    if col == "available":
        return "-" if item is not None else str(1 << 40)
    if col == "mountpoint":
        return "-" if item is not None or kind == "volume" else "/" + ds_name
    if col == "canmount":
        return "-" if item is not None else ds.get("properties", {}).get("canmount", "on")
    if ":" in col:  # a user property: set by recv -o (local); a snapshot inherits it
        return str(ds.get("properties", {}).get(col, "-"))
    if col == "readonly":
        return "-" if item is not None else ds.get("properties", {}).get("readonly", "off")
    if col in ("encryption", "encryptionroot", "keystatus"):
        # A snapshot repeats its dataset's values, a bookmark prints "-" (OpenZFS 2.1).
        if kind == "bookmark":
            return "-"
        if col == "encryption":
            return str(ds.get("encryption", "off"))
        return str(ds.get(col) or "-")
    raise ZfsFailure(f"bad property list: invalid property '{col}'", 2)


def rows(state: State, names: list[str], types: set[str], recursive: bool, depth: int | None
         ) -> Iterator[tuple[str, dict[str, Any], str, dict[str, Any] | None]]:
    """Yield (dataset name, dataset, type, snapshot-or-bookmark) in zfs's default order:
    datasets by name (strcmp), each followed by its snapshots and bookmarks by createtxg."""
    datasets = state["datasets"]
    selected: list[str] = []
    if not names:
        selected = sorted(datasets)
    else:
        for name in names:
            get_dataset(state, split_ref(name)[0])
            if "@" in name or "#" in name:
                continue
            for other in sorted(datasets):
                if other == name:
                    selected.append(other)
                elif recursive and other.startswith(name + "/"):
                    extra = other.count("/") - name.count("/")
                    if depth is None or extra <= depth:
                        selected.append(other)
    for ref in names:
        if "@" in ref or "#" in ref:
            ds_name, sep, short = split_ref(ref)
            ds = datasets[ds_name]
            kind = "snapshot" if sep == "@" else "bookmark"
            item = find(ds["snapshots" if sep == "@" else "bookmarks"], short)
            if item is None:
                raise ZfsFailure(f"cannot open '{ref}': {kind} does not exist"
                                 if kind == "bookmark" else f"cannot open '{ref}': dataset does not exist")
            yield ds_name, ds, kind, item
    for ds_name in sorted(set(selected)):
        ds = datasets[ds_name]
        if ds["type"] in types:
            yield ds_name, ds, ds["type"], None
        if names and not recursive and (not ({"snapshot", "bookmark"} & types)
                                        or (ds_name in names and "filesystem" in types)):
            continue
        # OpenZFS 2.1 lists a dataset's snapshots (by createtxg), then its bookmarks.
        children = [("snapshot", s) for s in sorted(ds["snapshots"], key=lambda s: s["createtxg"])]
        children += [("bookmark", b) for b in sorted(ds["bookmarks"], key=lambda b: b["createtxg"])]
        for kind, item in children:
            if kind in types:
                yield ds_name, ds, kind, item


def exists(state: State, name: str) -> bool:
    """A dataset, ``ds@snap`` or ``ds#bookmark`` that is there."""
    ds_name, sep, short = split_ref(name)
    ds = state["datasets"].get(ds_name)
    if ds is None or not sep:
        return ds is not None
    return find(ds["snapshots" if sep == "@" else "bookmarks"], short) is not None


def parse_types(opts: dict[str, list[str]], default: str) -> set[str]:
    types: set[str] = set()
    for word in (opts.get("t") or [default]):
        for t in word.split(","):
            t = {"fs": "filesystem", "vol": "volume", "snap": "snapshot", "bookmarks": "bookmark",
                 "snapshots": "snapshot", "all": "all"}.get(t, t)
            if t == "all":
                types |= {"filesystem", "volume", "snapshot", "bookmark"}
            elif t in ("filesystem", "volume", "snapshot", "bookmark"):
                types.add(t)
            else:
                raise ZfsFailure(f"invalid type '{t}'", 2)
    return types


def cmd_list(state: State, args: list[str], out: BinaryIO) -> int:
    opts, names = getopts(args, "Hpr", "otds")
    if "s" in opts:
        raise ZfsFailure("zfs-standin: list -s is not supported")
    cols = [c for word in (opts.get("o") or ["name,used,available,referenced,mountpoint"])
            for c in word.split(",")]
    for col in cols:
        if col not in COLUMNS:
            raise ZfsFailure(f"bad property list: invalid property '{col}'", 2)
    default_types = "filesystem,volume" if not any("@" in n for n in names) else "snapshot"
    types = parse_types(opts, default_types)
    depth = int(opts["d"][0]) if "d" in opts else None
    parsable = "p" in opts
    lines: list[str] = []
    if "H" not in opts:
        lines.append("\t".join(c.upper() for c in cols))
    # Like zfs: a missing dataset argument is named on stderr, the others are still listed,
    # and the exit status is 1.
    missing = [n for n in names if not exists(state, n)]
    for name in missing:
        sys.stderr.write(f"cannot open '{name}': dataset does not exist\n")
    present = [n for n in names if n not in missing]
    if not names or present:
        for ds_name, ds, kind, item in rows(state, present, types, "r" in opts or depth is not None, depth):
            lines.append("\t".join(value_of(ds_name, ds, kind, item, c, parsable) for c in cols))
    out.write("".join(line + "\n" for line in lines).encode())
    return 1 if missing else 0


def cmd_get(state: State, args: list[str], out: BinaryIO) -> int:
    opts, rest = getopts(args, "Hpr", "ots")
    if len(rest) < 2:
        raise ZfsFailure("missing property argument", 2)
    fields = (opts.get("o") or ["name,property,value,source"])[0].split(",")
    props = rest[0].split(",")
    types = set((opts.get("t") or ["filesystem,volume,snapshot,bookmark"])[0].split(","))
    sources = set((opts.get("s") or ["local,default,inherited,temporary,received,none"])[0].split(","))
    for ds_name, ds, kind, item in rows(state, rest[1:], types, "r" in opts, None):
        for prop in props:
            value = value_of(ds_name, ds, kind, item, prop, "p" in opts)
            local = item is None and prop in ds.get("properties", {})
            source = "local" if local else "inherited" if ":" in prop and value != "-" else "-"
            if source not in sources and (source != "-" or "none" not in sources):
                continue
            full = {"name": value_of(ds_name, ds, kind, item, "name", True), "property": prop,
                    "value": value, "source": source}
            out.write(("\t".join(full[f] for f in fields) + "\n").encode())
    return 0


def cmd_holds(state: State, args: list[str], out: BinaryIO) -> int:
    opts, refs = getopts(args, "Hpr", "")
    status = 0
    lines = [] if "H" in opts else ["NAME\tTAG\tTIMESTAMP"]
    for ref in refs:
        _, sep, _ = split_ref(ref)
        if sep != "@":
            sys.stderr.write(f"'{ref}' is not a snapshot\n")
            status = 1
            continue
        try:
            _, snap = get_snapshot(state, ref)
        except ZfsFailure as exc:
            sys.stderr.write(f"{exc}\n")
            status = 1
            continue
        for tag, when in sorted(snap.get("holds", {}).items()):
            stamp = str(when) if "p" in opts else ctime(when)
            lines.append(f"{ref}\t{tag}\t{stamp}")
    out.write("".join(line + "\n" for line in lines).encode())
    if status:
        sys.stderr.write("no datasets available\n")
    return status


# --------------------------------------------------------------------------- mutations

def cmd_snapshot(state: State, args: list[str]) -> int:
    opts, refs = getopts(args, "r", "o")
    if "r" in opts:
        raise ZfsFailure("zfs-standin: snapshot -r is not supported")
    if not refs:
        raise ZfsFailure("missing snapshot argument", 2)
    errors: list[str] = []
    seen: set[str] = set()
    for ref in refs:
        ds_name, sep, name = split_ref(ref)
        reason = invalid_name_reason(ref) if sep == "@" else "missing '@' delimiter in snapshot name"
        if reason:
            errors.append(f"cannot create snapshot '{ref}': {reason}")
        elif ds_name not in state["datasets"]:
            raise ZfsFailure(f"cannot open '{ds_name}': dataset does not exist\n{SNAPSHOT_USAGE}", 2)
        elif find(state["datasets"][ds_name]["snapshots"], name) is not None:
            errors.append(f"cannot create snapshot '{ref}': dataset already exists")
        elif ds_name in seen:
            errors.append("cannot create snapshots : multiple snapshots of same fs not allowed")
        seen.add(ds_name)
    if errors:
        raise ZfsFailure("\n".join(errors))
    created = st.now()
    txg = st.next_txg(state)  # one transaction group for the whole atomic batch, as in zfs
    for ref in refs:
        ds_name, _, name = split_ref(ref)
        ds = state["datasets"][ds_name]
        referenced = sum(s.get("size", 0) for s in ds["snapshots"])
        dirty = bool(ds.pop("modified", False))  # the writes since the last snapshot
        ds["snapshots"].append({"name": name, "guid": st.new_guid(state), "createtxg": txg,
                                "creation": created, "size": st.DEFAULT_SIZE, "written": 0,
                                "referenced": referenced, "holds": {}, "has_writes": dirty})
    return 0


def cmd_destroy(state: State, args: list[str]) -> int:
    opts, refs = getopts(args, "nvpdrRf", "")
    if len(refs) != 1:
        raise ZfsFailure("missing dataset argument" if not refs else "too many arguments", 2)
    ref = refs[0]
    ds_name, sep, names = split_ref(ref)
    ds = get_dataset(state, ds_name)
    if sep == "":
        raise ZfsFailure(f"zfs-standin: refusing to destroy filesystem '{ds_name}'"
                         " (the stand-in never destroys filesystems)")
    if sep == "#":
        bm = find(ds["bookmarks"], names)
        if bm is None:
            raise ZfsFailure(f"bookmark '{ref}' does not exist.")
        if "n" not in opts:
            ds["bookmarks"].remove(bm)
        return 0
    targets = [find(ds["snapshots"], n) for n in names.split(",")]
    existing = [s for s in targets if s is not None]
    if not existing:
        raise ZfsFailure("could not find any snapshots to destroy; check snapshot names.")
    origins = [s for s in existing if s.get("clones")]
    if origins:
        raise ZfsFailure("\n".join(f"cannot destroy snapshot {ds_name}@{s['name']}: snapshot has dependent"
                                   " clones" for s in origins))
    busy = [s for s in existing if s.get("holds")]
    if busy:
        raise ZfsFailure("\n".join(f"cannot destroy snapshot {ds_name}@{s['name']}: dataset is busy"
                                   for s in busy))
    if "n" not in opts:
        for snap in existing:
            ds["snapshots"].remove(snap)
    return 0


def cmd_bookmark(state: State, args: list[str]) -> int:
    _, refs = getopts(args, "", "")
    if len(refs) != 2:
        raise ZfsFailure("wrong number of arguments", 2)
    source, target = refs
    ds_name, sep, name = split_ref(target)
    if sep != "#":
        raise ZfsFailure(f"cannot create bookmark '{target}': missing '#' delimiter in bookmark name")
    src_ds, src_sep, src_name = split_ref(source)
    if src_ds == "":
        src_ds = ds_name
    if src_ds != ds_name:
        raise ZfsFailure(f"cannot create bookmark '{target}':"
                         " source is not an ancestor of the new bookmark's dataset")
    reason = invalid_name_reason(target)
    if reason:
        raise ZfsFailure(f"cannot create bookmark '{target}': {reason}")
    ds = state["datasets"].get(ds_name)
    origin = None
    if ds is not None:
        origin = find(ds["snapshots"] if src_sep == "@" else ds["bookmarks"], src_name)
    if ds is None or origin is None:
        raise ZfsFailure(f"cannot create bookmark '{target}': "
                         f"{'snapshot' if src_sep == '@' else 'bookmark'} does not exist")
    if find(ds["bookmarks"], name) is not None:
        raise ZfsFailure(f"cannot create bookmark '{target}': bookmark exists")
    ds["bookmarks"].append({"name": name, "guid": origin["guid"], "createtxg": origin["createtxg"],
                            "creation": origin["creation"], "referenced": origin.get("referenced", 0)})
    return 0


def cmd_hold(state: State, args: list[str], release: bool) -> int:
    _, rest = getopts(args, "r", "")
    if len(rest) < 2:
        raise ZfsFailure("missing snapshot argument" if rest else "missing tag argument", 2)
    tag, refs = rest[0], rest[1:]
    errors: list[str] = []
    # Per snapshot, as OpenZFS 2.1 does (measured): a failing one does not stop the others.
    for ref in refs:
        try:
            _, snap = get_snapshot(state, ref)
        except ZfsFailure:
            verb = "release hold from" if release else "hold"
            errors.append(f"cannot {verb} snapshot '{ref}': dataset does not exist")
            continue
        holds = snap.setdefault("holds", {})
        if release and tag not in holds:
            errors.append(f"cannot release hold from snapshot '{ref}': no such tag on this dataset")
        elif not release and tag in holds:
            errors.append(f"cannot hold snapshot '{ref}': tag already exists on this dataset")
        elif release:
            del holds[tag]
        else:
            holds[tag] = st.now()
    if errors:
        # The others are done: save them, then fail as zfs does.
        raise PartialFailure("\n".join(errors))
    return 0


def cmd_create(state: State, args: list[str]) -> int:
    opts, rest = getopts(args, "psu", "oVb")
    if len(rest) != 1:
        raise ZfsFailure("missing dataset argument" if not rest else "too many arguments", 2)
    name = rest[0]
    if "@" in name or "#" in name:
        raise ZfsFailure(f"cannot create '{name}': snapshot delimiter '@' is not expected here")
    reason = invalid_name_reason(name)
    if reason:
        raise ZfsFailure(f"cannot create '{name}': {reason}")
    if name in state["datasets"]:
        raise ZfsFailure(f"cannot create '{name}': dataset already exists")
    if "/" not in name:
        raise ZfsFailure(f"cannot create '{name}': missing dataset name")
    parent = name.rsplit("/", 1)[0]
    missing = []
    while parent not in state["datasets"]:
        if "p" not in opts or "/" not in parent:
            raise ZfsFailure(f"cannot create '{name}': parent does not exist")
        missing.append(parent)
        parent = parent.rsplit("/", 1)[0]
    props = dict(kv.split("=", 1) for kv in opts.get("o", []) if "=" in kv)
    encryption = inherited_encryption(state["datasets"].get(parent))
    if encryption and props.get("encryption") != "off" and encryption["keystatus"] != "available":
        raise ZfsFailure(f"cannot create '{name}': encryption root's key is not loaded or provided")
    for ds_name in [*reversed(missing), name]:
        state["datasets"][ds_name] = {
            "type": "volume" if ds_name == name and "V" in opts else "filesystem",
            "guid": st.new_guid(state), "createtxg": st.next_txg(state), "creation": st.now(),
            "resume_token": None, "partial": None, "snapshots": [], "bookmarks": [],
            "properties": {k: v for k, v in props.items() if k != "encryption"} if ds_name == name else {},
            **({} if props.get("encryption") == "off" and ds_name == name else encryption)}
    return 0


def inherited_encryption(parent: dict[str, Any] | None) -> dict[str, Any]:
    """The encryption a new child of ``parent`` inherits ({} when none)."""
    if parent is None or parent.get("encryption", "off") == "off":
        return {}
    return {k: parent[k] for k in ("encryption", "encryptionroot", "keystatus")}


# --------------------------------------------------------------------------- resume tokens

def encode_token(toguid: int, toname: str, fromguid: int, nbytes: int, large: bool = False) -> str:
    try:
        from reconciler.domain.resume_token import encode_resume_token
    except ImportError:
        payload = json.dumps({"toguid": toguid, "toname": toname, "fromguid": fromguid, "bytes": nbytes,
                              "large": large})
        return f"1-0-{len(payload):x}-{payload.encode().hex()}"  # the shape of a real token
    # A real token records the send's flags: -L -c -e as largeblockok, compressok, embedok.
    flags = ("embedok", "compressok", "largeblockok") if large else ()
    token: str = encode_resume_token(toguid, toname, fromguid=fromguid, bytes_=nbytes, flags=flags)
    return token


def decode_token(token: str) -> dict[str, Any]:
    """Returns toguid, toname, fromguid, bytes; raises ZfsFailure for an unusable token."""
    bad = ZfsFailure("cannot resume send: resume token is corrupt (invalid format)", 255)
    if token.startswith("1-0-"):
        try:
            decoded: dict[str, Any] = json.loads(bytes.fromhex(token.split("-", 3)[3]))
        except (ValueError, IndexError):
            raise bad from None
        return decoded
    try:
        from reconciler.domain.resume_token import decode_resume_token
        info = decode_resume_token(token)
    except Exception:
        raise bad from None
    if info is None:
        raise bad
    fields = info if isinstance(info, dict) else {k: getattr(info, k, None) for k in
                                                 ("toguid", "toname", "fromguid", "bytes", "bytes_")}
    nbytes = fields.get("bytes")
    if nbytes is None:
        nbytes = fields.get("bytes_", 0)
    flags = getattr(info, "fields", None) or {}
    return {"toguid": int(fields["toguid"]), "toname": str(fields["toname"]),
            "fromguid": int(fields.get("fromguid") or 0), "bytes": int(nbytes or 0),
            "large": bool(flags.get("largeblockok"))}


# --------------------------------------------------------------------------- send

def send_records(state: State, opts: dict[str, list[str]], refs: list[str]) -> list[dict[str, Any]]:
    """The records (headers) of the stream ``zfs send`` would write, in order."""
    raw, large, props = "w" in opts, "L" in opts, "p" in opts
    if "t" in opts:
        info = decode_token(opts["t"][0])
        ds, snap = get_snapshot(state, info["toname"])
        if snap["guid"] != info["toguid"]:
            raise ZfsFailure(f"cannot resume send: '{info['toname']}' is no longer the same snapshot"
                             " used in the initial send")
        rec = record(ds, info["toname"], snap, info["fromguid"], info["bytes"], raw, info.get("large", False))
        # A resuming stream says so (zfs: the BEGIN record's resuming flag), whatever its
        # offset: a receive killed right after the header saved a token at byte 0.
        rec["resume"] = True
        base = next((s for s in ds["snapshots"] + ds["bookmarks"] if s["guid"] == info["fromguid"]), None)
        rec["fromname"] = f"{info['toname'].split('@')[0]}@{base['name']}" if base else ""
        return [rec]
    if len(refs) != 1:
        raise ZfsFailure("missing snapshot argument" if not refs else "too many arguments", 2)
    target = refs[0]
    ds_name, sep, _ = split_ref(target)
    if sep != "@":
        raise ZfsFailure(f"cannot send '{target}': not a snapshot")  # no -R/filesystem sends here
    ds, snap = get_snapshot(state, target)
    base_ref = (opts.get("i") or opts.get("I") or [""])[0]
    if not base_ref:
        return [record(ds, target, snap, 0, 0, raw, large, props)]
    if base_ref[0] in "@#":
        base_ref = ds_name + base_ref
    base_ds, base_sep, base_name = split_ref(base_ref)
    if base_ds != ds_name:
        raise ZfsFailure(f"cannot send '{target}': incremental source must be in same filesystem")
    base = find(ds["snapshots" if base_sep == "@" else "bookmarks"], base_name) if base_sep else None
    if base is None:
        raise ZfsFailure(f"cannot open '{base_ref}': dataset does not exist")
    if base["createtxg"] >= snap["createtxg"]:
        raise ZfsFailure(f"cannot send '{target}': not an earlier snapshot from the same fs")
    if "I" in opts and base_sep == "@":
        chain = [s for s in ds["snapshots"] if base["createtxg"] < s["createtxg"] <= snap["createtxg"]]
    else:
        chain = [snap]
    records = []
    fromguid = base["guid"]
    # zfs send -nP names the base in full for -i, by its short name for -I (2.1 output).
    fromname = base_ref if "I" not in opts or base_sep != "@" else base_name
    for item in chain:
        rec = record(ds, f"{ds_name}@{item['name']}", item, fromguid, 0, raw, large, props)
        rec["fromname"] = fromname
        records.append(rec)
        fromguid, fromname = item["guid"], item["name"]
    return records


def record(ds: dict[str, Any], toname: str, snap: dict[str, Any], fromguid: int, offset: int,
           raw: bool, large: bool = False, props: bool = False) -> dict[str, Any]:
    size = int(snap.get("size", st.DEFAULT_SIZE))
    encryption = ds.get("encryption", "off")
    if encryption != "off" and not raw and ds.get("keystatus") != "available":
        raise ZfsFailure(f"cannot send '{toname}': encrypted dataset {toname.split('@')[0]} may not be sent"
                         " with properties without the raw flag" if props else
                         f"cannot send '{toname}': source key must be loaded")
    return {"v": 1, "toname": toname, "toguid": snap["guid"], "fromguid": fromguid,
            "creation": snap["creation"], "size": size, "written": snap.get("written", size),
            "referenced": snap.get("referenced", size), "dstype": ds["type"], "raw": raw,
            "large_blocks": raw or large, "encryption": encryption if raw else "off",
            "props": dict(ds.get("properties", {})) if props else {},
            "offset": offset, "length": max(size - offset, 0)}


class StallingWriter:
    """Writes ``after`` bytes, then stops writing (sleeps) for ``seconds``: a hung link."""

    def __init__(self, out: BinaryIO, after: int, seconds: float) -> None:
        self.out, self.left, self.seconds = out, after, seconds

    def write(self, data: bytes) -> int:
        if self.left <= 0:
            self.out.flush()
            time.sleep(self.seconds)
            self.left = 1 << 62
        head = data[:max(self.left, 0)]
        self.out.write(head)
        self.left -= len(head)
        if len(head) < len(data):
            self.out.flush()
            time.sleep(self.seconds)
            self.left = 1 << 62
            self.out.write(data[len(head):])
        return len(data)

    def flush(self) -> None:
        self.out.flush()

    def isatty(self) -> bool:
        return self.out.isatty()


def cmd_send(state: State, args: list[str], out: BinaryIO) -> int:
    opts, refs = getopts(args, "wnPvLecpDbhS", "iIt")
    records = send_records(state, opts, refs)
    if "n" in opts:
        if "P" in opts or "v" in opts:
            lines = []
            for rec in records:
                if "t" in opts:
                    fromguid = f"\tfromguid = 0x{rec['fromguid']:x}\n" if rec["fromguid"] else ""
                    lines.append(f"resume token contents:\nnvlist version: 0\n{fromguid}\tobject = 0x1\n"
                                 f"\toffset = 0x{rec['offset']:x}\n\tbytes = 0x{rec['offset']:x}\n"
                                 f"\ttoguid = 0x{rec['toguid']:x}\n\ttoname = {rec['toname']}")
                if rec["fromguid"]:
                    lines.append(f"incremental\t{rec.get('fromname', '')}\t{rec['toname']}\t{rec['length']}")
                else:
                    lines.append(f"full\t{rec['toname']}\t{rec['length']}")
            lines.append(f"size\t{sum(r['length'] for r in records)}")
            out.write(("\n".join(lines) + "\n").encode())
        return 0
    if out.isatty():
        raise ZfsFailure("Error: Stream can not be written to a terminal.\n"
                         "You must redirect standard output.")
    stall = state.get("stall_send")
    if stall:
        out = StallingWriter(out, int(stall["after"]), float(stall["seconds"]))  # type: ignore[assignment]
    try:
        for rec in records:
            out.write(HEADER + json.dumps(rec).encode() + b"\n")
            remaining = rec["length"]
            block = b"\0" * min(CHUNK, max(remaining, 1))
            while remaining > 0:
                n = min(remaining, CHUNK)
                out.write(block if n == len(block) else block[:n])
                remaining -= n
            out.write(TRAILER)
        out.flush()
    except BrokenPipeError:
        raise ZfsFailure(f"warning: cannot send '{records[-1]['toname']}': signal received") from None
    return 0


# --------------------------------------------------------------------------- recv

def check_receivable(state: State, target: str, rec: dict[str, Any], resumable: bool) -> None:
    """Raise the error zfs recv would give before accepting ``rec`` into ``target``."""
    datasets = state["datasets"]
    ds = datasets.get(target)
    short = rec["toname"].split("@", 1)[1]
    kind = "incremental" if rec["fromguid"] else "new filesystem"
    resuming = bool(rec.get("resume"))
    if ds is not None and ds.get("partial"):
        partial = ds["partial"]
        if not resuming and not rec["fromguid"]:
            raise ZfsFailure(f"cannot receive new filesystem stream: destination '{target}' exists\n"
                             "must specify -F to overwrite it")
        if not resuming:
            raise ZfsFailure(f"cannot receive {kind} stream: destination {target} contains partially-complete"
                             ' state from "zfs receive -s".')
        if partial["toguid"] != rec["toguid"] or partial["bytes"] != rec["offset"]:
            raise ZfsFailure(f"cannot receive resume stream: destination {target} has a different"
                             " partially-complete receive")
        return
    if resuming:
        raise ZfsFailure(f"cannot receive resume stream: destination {target} has no resumable receive state"
                         if ds is not None else
                         f"cannot receive resume stream: destination '{target}' does not exist")
    if not rec["fromguid"]:
        if ds is not None:
            raise ZfsFailure(f"cannot receive new filesystem stream: destination '{target}' exists\n"
                             "must specify -F to overwrite it")
        parent = target.rsplit("/", 1)[0] if "/" in target else None
        if parent is None or parent not in datasets:
            raise ZfsFailure(f"cannot open '{parent}': dataset does not exist\n"
                             "cannot receive new filesystem stream: unable to restore to destination")
        return
    if ds is None:
        raise ZfsFailure(f"cannot receive incremental stream: destination '{target}' does not exist")
    if ds.get("large_blocks") and not rec.get("large_blocks"):
        raise ZfsFailure("cannot receive incremental stream: incremental send stream requires -L"
                         " (--large-block), to match previous receive.")
    if find(ds["snapshots"], short) is not None:
        raise ZfsFailure(f"cannot restore to {target}@{short}: destination already exists")
    # Like dsl_dataset_recv_begin_check: the base may be any snapshot of the target (not
    # only the newest), but nothing may have been written since it; snapshots taken
    # without writes do not count (real-recv-onto-newer-snapshot.txt).
    base_index = next((i for i, s in enumerate(ds["snapshots"]) if s["guid"] == rec["fromguid"]), None)
    if base_index is not None:
        later = ds["snapshots"][base_index + 1:]
        if ds.get("modified") or any(s.get("has_writes") for s in later):
            raise ZfsFailure(f"cannot receive incremental stream: destination {target} has been modified\n"
                             "since most recent snapshot")
        return
    raise ZfsFailure(f"cannot receive incremental stream: most recent snapshot of {target} does not\n"
                     "match incremental source")


def check_properties(rec: dict[str, Any], overrides: dict[str, str], excludes: list[str]) -> None:
    """What zfs recv refuses about -o/-x before it receives (measured on OpenZFS 2.1)."""
    kind = "incremental" if rec["fromguid"] else "new filesystem"
    for name in [*overrides, *excludes]:
        if rec["raw"] and name in RAW_REFUSED:
            raise ZfsFailure(f"cannot receive {kind} stream: encryption property '{name}' cannot be set or"
                             " excluded for raw streams.")
        if rec["dstype"] == "volume" and name in FILESYSTEM_ONLY and name in overrides:
            raise ZfsFailure(f"cannot receive {kind} stream: property '{name}' does not apply to datasets"
                             " of this type")


def received_encryption(state: State, target: str, rec: dict[str, Any]) -> dict[str, Any]:
    """A new replica's encryption: a raw stream keeps the source's (the replica is its own
    encryption root, key not loaded); otherwise it inherits its parent's."""
    if rec["raw"] and rec.get("encryption", "off") != "off":
        return {"encryption": rec["encryption"], "encryptionroot": target, "keystatus": "unavailable"}
    parent = state["datasets"].get(target.rsplit("/", 1)[0])
    inherited = inherited_encryption(parent)
    if inherited and inherited["keystatus"] != "available":
        raise ZfsFailure("cannot receive new filesystem stream: inherited key must be loaded")
    return inherited


def commit_record(state: State, target: str, rec: dict[str, Any], overrides: dict[str, str] | None = None,
                  excludes: list[str] | None = None) -> None:
    datasets = state["datasets"]
    ds = datasets.get(target)
    if ds is None:
        ds = datasets[target] = {"type": rec["dstype"], "guid": st.new_guid(state),
                                 "createtxg": st.next_txg(state), "creation": st.now(),
                                 "resume_token": None, "partial": None, "snapshots": [], "bookmarks": [],
                                 **received_encryption(state, target, rec)}
    elif rec["raw"] and rec.get("encryption", "off") != "off" and ds.get("encryption", "off") == "off":
        raise ZfsFailure("cannot receive incremental stream: cannot perform raw receive on top of existing"
                         " unencrypted dataset")
    props = ds.setdefault("properties", {})
    props.update({k: v for k, v in rec.get("props", {}).items() if k not in (excludes or ())})
    props.update(overrides or {})
    for name in excludes or ():
        if name not in (overrides or {}):
            props.pop(name, None)
    ds["resume_token"] = None
    ds["partial"] = None
    if rec.get("large_blocks"):
        ds["large_blocks"] = True
    ds["snapshots"].append({"name": rec["toname"].split("@", 1)[1], "guid": rec["toguid"],
                            "createtxg": st.next_txg(state), "creation": rec["creation"],
                            "size": rec["size"], "written": rec["written"], "referenced": rec["referenced"],
                            "holds": {}})


def save_partial(state: State, target: str, rec: dict[str, Any], nbytes: int) -> str:
    datasets = state["datasets"]
    ds = datasets.get(target)
    if ds is None:
        ds = datasets[target] = {"type": rec["dstype"], "guid": st.new_guid(state),
                                 "createtxg": st.next_txg(state), "creation": st.now(),
                                 "resume_token": None, "partial": None, "snapshots": [], "bookmarks": [],
                                 "created_by_partial": True, **received_encryption(state, target, rec)}
    total = rec["offset"] + nbytes
    token = encode_token(rec["toguid"], rec["toname"], rec["fromguid"], total, bool(rec.get("large_blocks")))
    ds["partial"] = {"toguid": rec["toguid"], "toname": rec["toname"], "fromguid": rec["fromguid"],
                     "bytes": total}
    ds["resume_token"] = token
    return token


def cmd_recv(path: str, args: list[str], src: BinaryIO) -> int:
    opts, rest = getopts(args, "suvnFdeAhM", "ox")
    if len(rest) != 1:
        raise ZfsFailure("missing snapshot argument" if not rest else "too many arguments", 2)
    target = rest[0]
    if "A" in opts:
        return abort_receive(path, target)
    if "F" in opts:
        raise ZfsFailure("zfs-standin: recv -F is not supported (this project never forces a receive)")
    if "d" in opts or "e" in opts or "@" in target:
        raise ZfsFailure("zfs-standin: recv -d/-e and snapshot targets are not supported")
    received = 0
    overrides = dict(kv.split("=", 1) for kv in opts.get("o", []))
    excludes = opts.get("x", [])
    while True:
        with st.locked(path):
            check_state = st.load(path)
        rec, nbytes, complete = read_record_checked(src, check_state, target, "s" in opts, received)
        if rec is not None:
            check_properties(rec, overrides, excludes)
        if rec is None:
            if received == 0:
                raise ZfsFailure("cannot receive: failed to read from stream")
            return 0
        with st.locked(path):
            state = st.load(path)
            if complete:
                check_receivable(state, target, rec, "s" in opts)
                if "n" not in opts:
                    commit_record(state, target, rec, overrides, excludes)
                    st.save(path, state)
                received += 1
                continue
            kind = "incremental" if rec["fromguid"] else "new filesystem"
            if "s" not in opts or "n" in opts:
                raise ZfsFailure(f"cannot receive {kind} stream: checksum mismatch or incomplete stream")
            token = save_partial(state, target, rec, nbytes)
            st.save(path, state)
        raise ZfsFailure(f"cannot receive {kind} stream: checksum mismatch or incomplete stream.\n"
                         "Partially received snapshot is saved.\n"
                         "A resuming stream can be generated on the sending system by running:\n"
                         f"    zfs send -t {token}")


def read_record_checked(src: BinaryIO, state: State, target: str, resumable: bool, received: int
                        ) -> tuple[dict[str, Any] | None, int, bool]:
    """Read a record, refusing it as soon as its header is known to be unreceivable (like zfs,
    which fails before consuming the stream, so the sender sees a broken pipe)."""
    line = src.peek(1) if hasattr(src, "peek") else b"x"  # type: ignore[attr-defined]
    if not line:
        return None, 0, False
    header_line = src.readline()
    if not header_line.endswith(b"\n"):
        raise ZfsFailure("cannot receive: failed to read from stream")
    if not header_line.startswith(HEADER):
        raise ZfsFailure("cannot receive: invalid stream (bad magic number)")
    try:
        header: dict[str, Any] = json.loads(header_line[len(HEADER):])
    except ValueError:
        raise ZfsFailure("cannot receive: invalid stream (bad header)") from None
    check_receivable(state, target, header, resumable)
    got = 0
    while got < header["length"]:
        chunk = src.read(min(CHUNK, header["length"] - got))
        if not chunk:
            return header, got, False
        got += len(chunk)
    return header, got, src.read(len(TRAILER)) == TRAILER


def abort_receive(path: str, target: str) -> int:
    with st.locked(path):
        state = st.load(path)
        ds = get_dataset(state, target)
        if not ds.get("partial"):
            raise ZfsFailure(f"'{target}' does not have any resumable receive state to abort")
        if ds.get("created_by_partial") and not ds["snapshots"]:
            del state["datasets"][target]
        else:
            ds["partial"] = None
            ds["resume_token"] = None
        st.save(path, state)
    return 0


# --------------------------------------------------------------------------- main

def injected_failure(state: State, command: str, argv: list[str]) -> dict[str, Any] | None:
    joined = " ".join(argv)
    for rule in state.get("inject", []):
        live = rule.get("remaining") is None or rule["remaining"] > 0
        if rule["command"] == command and rule.get("match", "") in joined and live:
            return dict(rule)
    return None


def consume_injection(path: str, rule: dict[str, Any]) -> None:
    if rule.get("remaining") is None:
        return
    with st.locked(path):
        state = st.load(path)
        for other in state.get("inject", []):
            if {k: other.get(k) for k in ("command", "match", "stderr")} == \
                    {k: rule.get(k) for k in ("command", "match", "stderr")} and other["remaining"]:
                other["remaining"] -= 1
                break
        st.save(path, state)


# --------------------------------------------------------------------------- program

PROGRAM_MARKER = "-- zrepl-reconcile channel program v1"
PROGRAM_FAILED = "Channel program execution failed:"
EPERM, ENOENT, EBUSY, EEXIST, EXDEV = 1, 2, 16, 17, 18


def cmd_program(path: str, args: list[str], src: BinaryIO, out: BinaryIO) -> int:
    """``zfs program -j POOL SCRIPT ARGS`` for zrepl-reconcile's channel program (OpenZFS 2.1,
    measured: one errno per operation; a missing snapshot's destroy returns 0; a bookmark's
    destroy ENOENT; a non-root user is refused before anything runs)."""
    opts, rest = getopts(args, "jn", "tm")
    if len(rest) < 2:
        raise ZfsFailure("invalid number of arguments", 2)
    pool, script_path, argv = rest[0], rest[1], rest[2:]
    mode = st.load(path).get("program")
    if mode == "unknown":
        raise ZfsFailure("unrecognized command 'program'\nusage: zfs command args ...", 2)
    if mode == "refused":
        raise ZfsFailure(f"{PROGRAM_FAILED}\nPermission denied. Channel programs must be run as root.")
    with open(script_path, "rb") if script_path not in ("-", "/dev/stdin") else src as script:
        text = script.read().decode()
    if text.splitlines()[:1] != [PROGRAM_MARKER]:
        raise ZfsFailure("zfs-standin: only zrepl-reconcile's channel program is emulated")
    if "j" not in opts or "n" in opts:
        raise ZfsFailure("zfs-standin: program is emulated with -j and without -n only")
    ops: list[list[str]] = []
    i = 0
    while i < len(argv):
        width = {"bookmark": 3, "destroy": 2}.get(argv[i], 0)
        if not width or i + width > len(argv):
            raise ZfsFailure(f'{PROGRAM_FAILED}\n[string "channel program"]:23: zrepl-reconcile: bad'
                             f" operation list at argument {i + 1}")
        ops.append(argv[i:i + width])
        i += width
    with st.locked(path):
        state = st.load(path)
        if pool not in state["datasets"]:
            raise ZfsFailure(f"cannot open '{pool}': no such pool")
        errnos = [program_op(state, pool, op) for op in ops]
        st.save(path, state)
    out.write(json.dumps({"return": {str(n): e for n, e in enumerate(errnos, 1)}},
                         separators=(",", ":")).encode())
    return 0


def program_op(state: State, pool: str, op: list[str]) -> int:
    """One zfs.sync.bookmark / zfs.sync.destroy of the program: its errno."""
    if op[-1].split("/", 1)[0].split("@", 1)[0].split("#", 1)[0] != pool:
        return EXDEV
    if op[0] == "destroy":
        ds_name, sep, name = split_ref(op[1])
        ds = state["datasets"].get(ds_name)
        if sep != "@" or ds is None:
            return ENOENT
        snap = find(ds["snapshots"], name)
        if snap is None:
            return 0
        if snap.get("clones"):
            return EEXIST
        if snap.get("holds"):
            return EBUSY
        ds["snapshots"].remove(snap)
        return 0
    try:
        cmd_bookmark(state, op[1:])
    except ZfsFailure as exc:
        return EEXIST if "bookmark exists" in str(exc) else ENOENT
    return 0


MUTATING: dict[str, Callable[[State, list[str]], int]] = {
    "snapshot": cmd_snapshot, "snap": cmd_snapshot, "destroy": cmd_destroy, "bookmark": cmd_bookmark,
    "hold": lambda s, a: cmd_hold(s, a, release=False), "release": lambda s, a: cmd_hold(s, a, release=True),
    "create": cmd_create,
}
READING: dict[str, Callable[[State, list[str], BinaryIO], int]] = {
    "list": cmd_list, "get": cmd_get, "holds": cmd_holds, "send": cmd_send,
}


def run(argv: list[str]) -> int:
    path, args = state_path_from(argv)
    with open(f"{path}.log", "a", encoding="utf-8") as log:
        log.write(json.dumps(args) + "\n")
    tag = os.environ.get("ZFS_STANDIN_TAG")
    if tag:  # who ran it (tests of concurrent runs tell them apart): <state>.tags.log
        with open(f"{path}.tags.log", "a", encoding="utf-8") as log:
            log.write(json.dumps({"tag": tag, "argv": args}) + "\n")
    if not args:
        raise ZfsFailure("usage: zfs command args ...", 2)
    command, rest = args[0], args[1:]
    command = "recv" if command == "receive" else command
    state = st.load(path)
    delay = state.get("sleep", {}).get(command)
    if delay:
        time.sleep(float(delay))
    rule = injected_failure(state, command, args)
    if rule is not None:
        consume_injection(path, rule)
        sys.stderr.write(rule["stderr"].rstrip("\n") + "\n")
        return int(rule.get("returncode", 1))
    if command in READING:
        return READING[command](state, rest, sys.stdout.buffer)
    if command == "recv":
        return cmd_recv(path, rest, sys.stdin.buffer)
    if command == "program":
        return cmd_program(path, rest, sys.stdin.buffer, sys.stdout.buffer)
    if command in MUTATING:
        with st.locked(path):
            state = st.load(path)
            try:
                status = MUTATING[command](state, rest)
            except PartialFailure:
                st.save(path, state)
                raise
            st.save(path, state)
        return status
    raise ZfsFailure(f"unrecognized command '{command}'", 2)


def main() -> int:
    try:
        return run(sys.argv[1:])
    except ZfsFailure as exc:
        sys.stdout.flush()
        sys.stderr.write(f"{exc}\n")
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
