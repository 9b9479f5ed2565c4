"""Facts as JSON: what ``facts --format json`` writes and ``simulate --facts FILE`` reads back.

The document is ``{"gathered_at": ISO8601, "hosts": {HOST: {"zfs_as_root": BOOL, "datasets":
{NAME: DATASET}}}, "unavailable": {HOST: {"code", "message"}}}`` with each dataset's snapshots
and bookmarks (name, guid, createtxg, creation, ...); ``zfs_as_root`` (optional, false when
absent) lets simulate plan the channel-program path apply would take. Reading is strict:
every value is checked and a wrong one is named by its path
(``hosts.nas.datasets.tank/a.snapshots[3].guid: expected an integer``);
snapshots and bookmarks are put in createtxg order, as gathering leaves them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from reconciler.codes import HostProblem
from reconciler.domain.names import check_dataset_name
from reconciler.domain.observed import Bookmark, Dataset, HostFacts, HostUnavailable, ObservedState, Snapshot
from reconciler.errors import UsageError

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_WRITER = "`zrepl-reconcile facts --format json`"


def observed_to_json(state: ObservedState, gathered_at: datetime | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {}
    if gathered_at is not None:
        document["gathered_at"] = gathered_at.astimezone(UTC).strftime(TIME_FORMAT)
    document["hosts"] = {name: {"zfs_as_root": facts.zfs_as_root,
                                "datasets": {ds.name: dataset_to_json(ds) for ds in facts.datasets.values()}}
                         for name, facts in state.hosts.items()}
    document["unavailable"] = {name: {"code": u.code, "message": u.message}
                               for name, u in state.unavailable.items()}
    return document


def dataset_to_json(ds: Dataset) -> dict[str, Any]:
    return {
        "type": ds.kind, "guid": ds.guid, "createtxg": ds.createtxg, "resume_token": ds.resume_token,
        "encryption": ds.encryption, "encryption_root": ds.encryption_root, "keystatus": ds.key_status,
        "snapshots": [{"name": s.name, "guid": s.guid, "createtxg": s.createtxg, "creation": s.creation,
                       "userrefs": s.userrefs, "written": s.written, "referenced": s.referenced,
                       "holds": list(s.holds)} for s in ds.snapshots],
        "bookmarks": [{"name": b.name, "guid": b.guid, "createtxg": b.createtxg, "creation": b.creation}
                      for b in ds.bookmarks],
    }


class _Bad(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")


def read_facts_file(path: str) -> tuple[ObservedState, datetime | None]:
    """The facts in ``path`` and when they were gathered (None when the file does not say);
    UsageError naming the file and the first wrong value."""
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except FileNotFoundError:
        raise UsageError(f"--facts {path}: no such file (write one with {_WRITER})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--facts {path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--facts {path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    try:
        return observed_from_json(data), _gathered_at(data)
    except _Bad as exc:
        raise UsageError(f"--facts {path}: {exc} (expected the output of {_WRITER})") from None


def observed_from_json(data: Any) -> ObservedState:
    document = _mapping(data, "the document")
    hosts = _mapping(document.get("hosts"), "hosts")
    state = ObservedState()
    for host, facts in hosts.items():
        where = f"hosts.{host}"
        raw = _mapping(facts, where)
        datasets = _mapping(raw.get("datasets", {}), f"{where}.datasets")
        as_root = raw.get("zfs_as_root", False)
        if not isinstance(as_root, bool):
            raise _Bad(f"{where}.zfs_as_root", f"expected true or false, got {as_root!r}")
        state.hosts[host] = HostFacts(host, {name: _dataset(name, value, f"{where}.datasets.{name}")
                                             for name, value in datasets.items()}, zfs_as_root=as_root)
    for host, problem in _mapping(document.get("unavailable", {}), "unavailable").items():
        value = _mapping(problem, f"unavailable.{host}")
        code = _string(value.get("code"), f"unavailable.{host}.code")
        if code not in set(HostProblem):
            raise _Bad(f"unavailable.{host}.code", f"unknown code {code!r}")
        state.unavailable[host] = HostUnavailable(host, code, _string(value.get("message", ""),
                                                                      f"unavailable.{host}.message"))
    return state


def _gathered_at(data: dict[str, Any]) -> datetime | None:
    text = data.get("gathered_at")
    if text is None:
        return None
    try:
        return datetime.strptime(_string(text, "gathered_at"), TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise _Bad("gathered_at", f"{text!r} is not a time like 2026-11-24T12:00:00Z") from None


def _dataset(name: str, value: Any, where: str) -> Dataset:
    try:
        check_dataset_name(name)
    except ValueError as exc:
        raise _Bad(where, str(exc)) from None
    raw = _mapping(value, where)
    kind = _string(raw.get("type"), f"{where}.type")
    if kind not in ("filesystem", "volume"):
        raise _Bad(f"{where}.type", f"expected filesystem or volume, got {kind!r}")
    token = raw.get("resume_token")
    ds = Dataset(name, kind, _integer(raw.get("guid"), f"{where}.guid"),
                 _integer(raw.get("createtxg"), f"{where}.createtxg"),
                 None if token is None else _string(token, f"{where}.resume_token"))
    # Encryption (issue 13): optional, so facts files written before it still read.
    ds.encryption = _string(raw.get("encryption", "off"), f"{where}.encryption")
    ds.encryption_root, ds.key_status = (
        None if raw.get(key) is None else _string(raw.get(key), f"{where}.{key}")
        for key in ("encryption_root", "keystatus"))
    ds.snapshots = sorted((_snapshot(s, f"{where}.snapshots[{i}]") for i, s in enumerate(
        _list(raw.get("snapshots", []), f"{where}.snapshots"))), key=lambda s: (s.createtxg, s.name))
    ds.bookmarks = sorted((_bookmark(b, f"{where}.bookmarks[{i}]") for i, b in enumerate(
        _list(raw.get("bookmarks", []), f"{where}.bookmarks"))), key=lambda b: (b.createtxg, b.name))
    return ds


def _snapshot(value: Any, where: str) -> Snapshot:
    raw = _mapping(value, where)
    holds = tuple(_string(h, f"{where}.holds") for h in _list(raw.get("holds", []), f"{where}.holds"))
    return Snapshot(_name(raw.get("name"), f"{where}.name"), _integer(raw.get("guid"), f"{where}.guid"),
                    _integer(raw.get("createtxg"), f"{where}.createtxg"),
                    _integer(raw.get("creation"), f"{where}.creation"),
                    _integer(raw.get("userrefs", 0), f"{where}.userrefs"),
                    _optional_integer(raw.get("written"), f"{where}.written"),
                    _optional_integer(raw.get("referenced"), f"{where}.referenced"), holds)


def _bookmark(value: Any, where: str) -> Bookmark:
    raw = _mapping(value, where)
    return Bookmark(_name(raw.get("name"), f"{where}.name"), _integer(raw.get("guid"), f"{where}.guid"),
                    _integer(raw.get("createtxg"), f"{where}.createtxg"),
                    _integer(raw.get("creation"), f"{where}.creation"))


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(where, f"expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Bad(where, f"expected a list, got {type(value).__name__}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _Bad(where, f"expected a string, got {type(value).__name__}")
    return value


def _name(value: Any, where: str) -> str:
    text = _string(value, where)
    if not text or "@" in text or "#" in text or "/" in text:
        raise _Bad(where, f"{text!r} is not a snapshot or bookmark name")
    return text


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Bad(where, f"expected a non-negative integer, got {value!r}")
    return value


def _optional_integer(value: Any, where: str) -> int | None:
    return None if value is None else _integer(value, where)
