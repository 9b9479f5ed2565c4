"""Builders shared by the retention tests: snapshots, keep rules and grids.

``grid()`` uses the real ``parse_grid`` once it is implemented; until then (the
config stub raises NotImplementedError) it falls back to a private minimal parser
of zrepl's grid syntax, so the retention tests do not depend on the parser landing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta

from reconciler.config.grid import GridInterval, parse_duration, parse_grid
from reconciler.config.models import KeepGrid, KeepLastN, KeepNotReplicated, KeepRegex
from reconciler.domain.observed import Snapshot

_GRID_PART = re.compile(r"^\s*(\d+)\s*x\s*(\d+[smhdw])\s*(?:\(\s*keep\s*=\s*(all|\d+)\s*\))?\s*$")


def minimal_parse_grid(spec: str) -> tuple[GridInterval, ...]:
    out: list[GridInterval] = []
    for part in spec.split("|"):
        m = _GRID_PART.match(part)
        if not m:
            raise ValueError(f"bad grid part {part!r}")
        keep = None if m.group(3) == "all" else int(m.group(3) or 1)
        out += [GridInterval(parse_duration(m.group(2)), keep)] * int(m.group(1))
    return tuple(out)


def _real_parser_available() -> bool:
    try:
        parse_grid("1x1h")
    except NotImplementedError:
        return False
    return True


REAL_PARSER = _real_parser_available()


class _GridWithTestParser(KeepGrid):
    @property
    def intervals(self) -> tuple[GridInterval, ...]:
        return minimal_parse_grid(self.grid)


def grid(spec: str, regex: str = ".*") -> KeepGrid:
    if REAL_PARSER:
        return KeepGrid(type="grid", grid=spec, regex=regex)
    return _GridWithTestParser.model_construct(type="grid", grid=spec, regex=regex)


def last_n(count: int, regex: str = ".*") -> KeepLastN:
    return KeepLastN(type="last_n", count=count, regex=regex)


def keep_regex(regex: str, negate: bool = False) -> KeepRegex:
    return KeepRegex(type="regex", regex=regex, negate=negate)


def not_replicated() -> KeepNotReplicated:
    return KeepNotReplicated(type="not_replicated")


def snap(name: str, creation: int = 0, createtxg: int = 0) -> Snapshot:
    return Snapshot(name=name, guid=hash(name) & 0xFFFFFFFF, createtxg=createtxg, creation=creation)


def snaps(*items: tuple[str, int]) -> list[Snapshot]:
    """Snapshots in list order, createtxg = position + 1 (the order zrepl's pruner uses)."""
    return [snap(name, creation, n + 1) for n, (name, creation) in enumerate(items)]


def stub_intervals(spec: str) -> tuple[GridInterval, ...]:
    """zrepl's retentiongrid_test.go ``gridFromString``: "10m,-1|10m|10m,2|1h" (keep -1 = all)."""
    out = []
    for part in spec.split("|"):
        duration, _, keep = part.partition(",")
        count = int(keep or "1")
        out.append(GridInterval(_go_duration(duration), None if count == -1 else count))
    return tuple(out)


def _go_duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600}
    return timedelta(seconds=int(text[:-1]) * units[text[-1]])


def names(snapshots: Sequence[Snapshot]) -> set[str]:
    return {s.name for s in snapshots}
