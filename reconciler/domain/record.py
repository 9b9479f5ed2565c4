"""The record of every apply: what the last cycle did for each filesystem and target.

This is the content of the state file (``operate/state_file.py`` reads and writes it,
``operate/record.py`` folds a cycle into it, ``status`` and the metrics read it). It
stays small whatever the history: one entry per current (filesystem, target) pair and
one for the source side of each filesystem, error texts clipped, totals keyed by the
closed sets of action kinds and statuses. ``from_json`` is strict: anything that is not
a record this tool wrote raises RecordError, and the caller rebuilds the record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from reconciler import __version__
from reconciler.codes import CycleResult, PairResult
from reconciler.errors import clip

RECORD_FORMAT_VERSION = 1
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
MAX_ERROR_CHARS = 500  # of an error text kept in the record
OUTCOME_STATUSES = ("done", "failed", "skipped")  # execute/apply.py's DONE, FAILED, SKIPPED
KIND_NAME = re.compile(r"^[a-z][a-z_]{0,31}$")
MAX_KINDS = 64  # totals by kind: action kinds are a closed vocabulary, far fewer than this


E = TypeVar("E", PairResult, CycleResult)


class RecordError(ValueError):
    """The state file's content is not a record this tool wrote (says where)."""


def format_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: object, where: str) -> datetime:
    if not isinstance(text, str):
        raise RecordError(f"{where}: expected a time like 2026-11-24T12:00:00Z")
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise RecordError(f"{where}: {clip(text, 60)!r} is not a time like 2026-11-24T12:00:00Z") from None


def clip_error(text: str) -> str:
    return clip(text, MAX_ERROR_CHARS)


@dataclass(frozen=True, slots=True, order=True)
class PairKey:
    """A source filesystem and one of its targets; the source side itself when the target is ""."""

    host: str
    dataset: str
    target_host: str = ""
    target_dataset: str = ""

    @property
    def is_source_side(self) -> bool:
        return not self.target_host

    def label(self) -> str:
        source = f"{self.host}:{self.dataset}"
        return source if self.is_source_side else f"{source} -> {self.target_host}:{self.target_dataset}"


@dataclass(frozen=True, slots=True)
class PairRecord:
    """The last attempt at one pair: when, with which result, the error, bytes sent and time taken."""

    key: PairKey
    last_attempt: datetime
    result: PairResult
    last_success: datetime | None = None
    error: str = ""  # clipped to MAX_ERROR_CHARS
    bytes: int = 0  # sent to the target in the last attempt
    seconds: float = 0.0  # spent on its actions in the last attempt

    def to_json(self) -> dict[str, Any]:
        return {"host": self.key.host, "dataset": self.key.dataset,
                "target_host": self.key.target_host, "target_dataset": self.key.target_dataset,
                "last_attempt": format_time(self.last_attempt),
                "last_success": format_time(self.last_success) if self.last_success else None,
                "result": str(self.result), "error": self.error, "bytes": self.bytes,
                "seconds": round(self.seconds, 3)}

    @classmethod
    def from_json(cls, data: object, where: str) -> PairRecord:
        d = _object(data, where)
        key = PairKey(_str(d, "host", where), _str(d, "dataset", where), _str(d, "target_host", where),
                      _str(d, "target_dataset", where))
        success = d.get("last_success")
        return cls(key, parse_time(d.get("last_attempt"), f"{where}.last_attempt"),
                   _enum(PairResult, d, "result", where),
                   None if success is None else parse_time(success, f"{where}.last_success"),
                   clip_error(_str(d, "error", where)), _count(d, "bytes", where),
                   _seconds(d, "seconds", where))


@dataclass(frozen=True, slots=True)
class CycleSummary:
    """How the last cycle went, as a whole."""

    at: datetime  # the cycle's clock (the plan's now)
    result: CycleResult
    seconds: float = 0.0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    unavailable_hosts: tuple[str, ...] = ()
    error: str = ""  # why a cycle could not plan or apply (result "error"), clipped

    def to_json(self) -> dict[str, Any]:
        return {"at": format_time(self.at), "result": str(self.result), "seconds": round(self.seconds, 3),
                "done": self.done, "failed": self.failed, "skipped": self.skipped,
                "unavailable_hosts": list(self.unavailable_hosts), "error": self.error}

    @classmethod
    def from_json(cls, data: object, where: str) -> CycleSummary:
        d = _object(data, where)
        hosts = d.get("unavailable_hosts")
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise RecordError(f"{where}.unavailable_hosts: expected a list of host names")
        return cls(parse_time(d.get("at"), f"{where}.at"), _enum(CycleResult, d, "result", where),
                   _seconds(d, "seconds", where), _count(d, "done", where), _count(d, "failed", where),
                   _count(d, "skipped", where), tuple(hosts), clip_error(_str(d, "error", where)))


@dataclass(frozen=True, slots=True)
class Totals:
    """Counts since the record was started: what the metrics expose as counters."""

    cycles: Mapping[str, int] = field(default_factory=dict)  # CycleResult -> count
    actions: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (kind, status) -> count
    bytes_sent: int = 0

    def to_json(self) -> dict[str, Any]:
        actions: dict[str, dict[str, int]] = {}
        for (kind, status), n in sorted(self.actions.items()):
            actions.setdefault(kind, {})[status] = n
        return {"cycles": dict(sorted(self.cycles.items())), "actions": actions,
                "bytes_sent": self.bytes_sent}

    @classmethod
    def from_json(cls, data: object, where: str) -> Totals:
        d = _object(data, where)
        cycles = _object(d.get("cycles"), f"{where}.cycles")
        for name in cycles:
            if name not in set(CycleResult):
                raise RecordError(f"{where}.cycles: unknown result {clip(name, 40)!r}")
        by_kind = _object(d.get("actions"), f"{where}.actions")
        if len(by_kind) > MAX_KINDS:
            raise RecordError(f"{where}.actions: {len(by_kind)} kinds, more than any version of the tool has")
        actions: dict[tuple[str, str], int] = {}
        for kind, statuses in by_kind.items():
            if not KIND_NAME.match(kind):
                raise RecordError(f"{where}.actions: {clip(kind, 40)!r} is not an action kind")
            counts = _object(statuses, f"{where}.actions.{kind}")
            for status in counts:
                if status not in OUTCOME_STATUSES:
                    raise RecordError(f"{where}.actions.{kind}: unknown status {clip(status, 40)!r}")
                actions[(kind, status)] = _count(counts, status, f"{where}.actions.{kind}")
        return cls({name: _count(cycles, name, f"{where}.cycles") for name in cycles}, actions,
                   _count(d, "bytes_sent", where))


@dataclass(frozen=True, slots=True)
class StateRecord:
    """Everything the state file holds for one configuration."""

    config_path: str
    last_cycle: CycleSummary | None = None
    pairs: tuple[PairRecord, ...] = ()  # sorted by key, one per key
    totals: Totals = Totals()

    def by_key(self) -> dict[PairKey, PairRecord]:
        return {p.key: p for p in self.pairs}

    def to_json(self) -> dict[str, Any]:
        return {"format_version": RECORD_FORMAT_VERSION, "tool_version": __version__,
                "config_path": self.config_path,
                "last_cycle": self.last_cycle.to_json() if self.last_cycle else None,
                "pairs": [p.to_json() for p in self.pairs], "totals": self.totals.to_json()}

    @classmethod
    def from_json(cls, data: object) -> StateRecord:
        d = _object(data, "state")
        if d.get("format_version") != RECORD_FORMAT_VERSION:
            raise RecordError(f"format_version {clip(repr(d.get('format_version')), 40)} is not"
                              f" {RECORD_FORMAT_VERSION}")
        pairs_data = d.get("pairs")
        if not isinstance(pairs_data, list):
            raise RecordError("pairs: expected a list")
        pairs = [PairRecord.from_json(p, f"pairs[{i}]") for i, p in enumerate(pairs_data)]
        last = d.get("last_cycle")
        return cls(_str(d, "config_path", "state"),
                   None if last is None else CycleSummary.from_json(last, "last_cycle"),
                   sorted_pairs(pairs), Totals.from_json(d.get("totals"), "totals"))


def sorted_pairs(pairs: Iterable[PairRecord]) -> tuple[PairRecord, ...]:
    """One record per key (the last given wins), in key order: the file is stable and bounded."""
    return tuple(sorted({p.key: p for p in pairs}.values(), key=lambda p: p.key))


# ------------------------------------------------------------------ strict reading


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError(f"{where}: expected an object")
    return value


def _str(d: Mapping[str, Any], name: str, where: str) -> str:
    value = d.get(name)
    if not isinstance(value, str):
        raise RecordError(f"{where}.{name}: expected a string")
    return value


def _count(d: Mapping[str, Any], name: str, where: str) -> int:
    value = d.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RecordError(f"{where}.{name}: expected a whole number >= 0")
    return value


def _seconds(d: Mapping[str, Any], name: str, where: str) -> float:
    value = d.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1e9:
        raise RecordError(f"{where}.{name}: expected seconds >= 0")
    return float(value)


def _enum(enum: type[E], d: Mapping[str, Any], name: str, where: str) -> E:
    value = d.get(name)
    try:
        return enum(str(value))
    except ValueError:
        raise RecordError(f"{where}.{name}: {clip(repr(value), 40)} is not one of"
                          f" {', '.join(m.value for m in enum)}") from None
