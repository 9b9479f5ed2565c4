"""Load a desired-state YAML file into ``Config``, reporting every problem with its position.

Three layers, all run so that one pass reports everything:

1. YAML: composed into nodes (not constructed) so we keep every key's line and column,
   see duplicate keys ourselves (all of them, not just the first), and bound nesting,
   alias expansion and file size before anything else looks at the data.
2. Shape: the JSON schema generated from the models (unknown keys, wrong types).
3. Meaning: the pydantic models (regexes, grids, names), then cross references that
   need the whole file (undefined hosts/policies, self-replication, overlapping filters).

Each problem is a ``ConfigProblem`` rendered ``FILE:LINE:COL: field.path: message``.
"""

from __future__ import annotations

import bisect
import difflib
import json
import math
import os
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, TypeVar

import jsonschema
from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import MappingEndEvent, MappingStartEvent, SequenceEndEvent, SequenceStartEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from reconciler.config.models import Config
from reconciler.config.schema import config_json_schema
from reconciler.domain.names import filter_decision, is_within, lineage
from reconciler.errors import ConfigError, ConfigProblem

# A real configuration is a few kilobytes (3000 entries are ~400 KB and take ~2 s to
# parse); anything bigger than this is the wrong file.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_DEPTH = 64
# Bounds alias expansion ("billion laughs") as well as plain size.
MAX_NODES = 200_000

PathElem = str | int
Path = tuple[PathElem, ...]
Position = tuple[int, int]  # 1-based line, column

_T = TypeVar("_T")
_K = TypeVar("_K", bound=Hashable)
_TAG = "tag:yaml.org,2002:"
_BELOW = "/\uffff"  # a child name no filter key can contain: stands for "any other child"
_TOO_BIG = f"larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB: not a zrepl-reconcile configuration"
_EMPTY = "file is empty: expected a mapping with hosts, policies and filesystems"


# --------------------------------------------------------------------------- entry points


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, parse and validate a configuration file; raise ``ConfigError`` with every problem."""
    filename = os.fspath(path)
    return load_config_text(read_config_text(filename), filename)


def load_config_text(text: str, filename: str) -> Config:
    """Parse and validate configuration text; ``filename`` is only used in messages."""
    document = parse_document(text, filename)
    problems = list(document.problems)
    problems += shape_problems(document)
    config, model_problems = validate_models(document)
    problems += [p for p, meaning in model_problems if not _already_reported(p.path, problems, meaning)]
    problems += cross_reference_problems(document)
    if problems or config is None:
        raise ConfigError(sorted(set(problems), key=lambda p: (p.line, p.column, p.path)))
    return config


def _already_reported(path: str, problems: list[ConfigProblem], meaning: bool) -> bool:
    """The models re-find the schema's shape problems, at the same place or just above/below it.

    Their own meaning checks (names, regexes, grids) are new unless reported at that very path.
    """
    def related(a: str, b: str) -> bool:
        return a == b or b.startswith((a + ".", a + "["))
    if meaning:
        return any(q.path == path for q in problems)
    return any(related(path, q.path) or related(q.path, path) for q in problems)


def read_config_text(filename: str) -> str:
    """The file's text, or a one-line ``ConfigError`` naming the file and what is wrong with it."""
    try:
        with open(filename, "rb") as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{filename}: no such file (give the configuration with -c FILE)") from None
    except IsADirectoryError:
        raise ConfigError(f"{filename}: is a directory, not a YAML file") from None
    except PermissionError:
        raise ConfigError(f"{filename}: permission denied") from None
    except OSError as exc:
        raise ConfigError(f"{filename}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(ConfigProblem(filename, 1, 1, "", _TOO_BIG))
    return decode_config_bytes(data, filename)


def decode_config_bytes(data: bytes, filename: str) -> str:
    wide = _wide_encoding(data)
    if wide is not None:
        raise ConfigError(ConfigProblem(
            filename, 1, 1, "",
            f"looks like {wide} text: YAML configuration files must be UTF-8"
            f" (convert it, e.g. iconv -f {wide} -t UTF-8)"))
    nul = data.find(b"\0")
    if nul >= 0:
        line, column = _position_of_offset(data, nul)
        raise ConfigError(ConfigProblem(filename, line, column, "",
                                        "binary data (a NUL byte): not a YAML text file"))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position_of_offset(data, exc.start)
        raise ConfigError(ConfigProblem(
            filename, line, column, "",
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x}): YAML files must be UTF-8 text")) from None
    return text.removeprefix("\ufeff")


_WIDE_BOMS = ((b"\xff\xfe\0\0", "UTF-32"), (b"\0\0\xfe\xff", "UTF-32"),
              (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


def _wide_encoding(data: bytes) -> str | None:
    """UTF-16 or UTF-32 by their byte order mark, or by the NULs that pad ASCII text in them."""
    for bom, name in _WIDE_BOMS:
        if data.startswith(bom):
            return name
    head = data[:64 - len(data[:64]) % 4]
    if len(head) < 4:
        return None
    units = [head[i:i + 4] for i in range(0, len(head), 4)]
    if all(unit[1:] == b"\0\0\0" for unit in units):
        return "UTF-32LE"
    if all(unit[:3] == b"\0\0\0" for unit in units):
        return "UTF-32BE"
    if all(b == 0 for b in head[1::2]):
        return "UTF-16LE"
    if all(b == 0 for b in head[0::2]):
        return "UTF-16BE"
    return None


def _position_of_offset(data: bytes, offset: int) -> Position:
    """1-based line and column (in characters, as editors count) of a byte offset."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", errors="replace")) + 1
    return data.count(b"\n", 0, offset) + 1, column


# --------------------------------------------------------------------------- YAML layer


@dataclass(frozen=True, slots=True)
class Located:
    key: Position | None  # where the mapping key is written (None for list items and the root)
    value: Position  # where the value starts


@dataclass
class Document:
    """Plain data (dict/list/str/int/float/bool/None) with the position of every path."""

    filename: str
    data: Any
    positions: dict[Path, Located]
    problems: list[ConfigProblem]
    # Mappings that lost a key the YAML layer already reported: not "empty" on top of that.
    keys_dropped: set[Path] = field(default_factory=set)

    def at(self, path: Path, *, key: bool = False) -> Position:
        """Position of ``path`` (its key when asked and known), else of its nearest known parent."""
        for end in range(len(path), -1, -1):
            located = self.positions.get(path[:end])
            if located is not None:
                return located.key if key and located.key is not None else located.value
        return 1, 1

    def problem(self, path: Path, message: str, *, key: bool = False) -> ConfigProblem:
        line, column = self.at(path, key=key)
        return ConfigProblem(self.filename, line, column, format_path(path), message)

    def where(self, path: Path, *, key: bool = True) -> str:
        line, column = self.at(path, key=key)
        return f"{self.filename}:{line}:{column}"


def parse_document(text: str, filename: str) -> Document:
    """YAML text to plain data with positions; raise ``ConfigError`` when it is not a usable mapping."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(ConfigProblem(filename, 1, 1, "", _TOO_BIG))
    if "\0" in text:
        line, column = _position_of_index(text, text.find("\0"))
        raise ConfigError(ConfigProblem(filename, line, column, "",
                                        "binary data (a NUL byte): not a YAML text file"))
    root = _compose(text, filename)
    if root is None:
        raise ConfigError(ConfigProblem(filename, 1, 1, "", _EMPTY))
    builder = _PlainBuilder(filename, text)
    data = builder.build(root)
    if not isinstance(data, dict):
        line, column = _mark(root)
        raise ConfigError(ConfigProblem(
            filename, line, column, "",
            f"the top level must be a mapping with hosts, policies and filesystems, not {_describe(data)}"))
    return Document(filename, data, builder.positions, builder.problems, builder.keys_dropped)


def _compose(text: str, filename: str) -> Node | None:
    yaml = YAML(typ="rt")
    try:
        if _flow_depth_hint(text) > MAX_DEPTH:
            # ruamel's scanner slows down sharply with flow nesting ("[[[[..."): find the
            # place with a flat pass over the events instead of letting the composer dig.
            _check_depth(yaml.parse(text), filename)
        node: Node | None = yaml.compose(text)
    except RecursionError:
        # The composer recurses per nesting level; only then pay for a second, flat pass
        # over the events to say where the nesting went too deep.
        try:
            _check_depth(yaml.parse(text), filename)
        except (YAMLError, ValueError, OverflowError, TypeError) as exc:
            raise _yaml_error(exc, text, filename) from None
        raise ConfigError(f"{filename}: nested too deeply: not a zrepl-reconcile configuration") from None
    except (YAMLError, ValueError, OverflowError, TypeError) as exc:
        raise _yaml_error(exc, text, filename) from None
    return node


def _yaml_error(exc: Exception, text: str, filename: str) -> ConfigError:
    """One located line for what ruamel raised while reading ``text``."""
    if isinstance(exc, MarkedYAMLError):
        return ConfigError(_yaml_problem(exc, text, filename))
    if isinstance(exc, ReaderError) and isinstance(exc.character, int):
        line, column = _position_of_index(text, exc.position)
        return ConfigError(ConfigProblem(filename, line, column, "",
                                         f"not valid YAML: {_unacceptable(exc.character)} is not allowed"
                                         " (YAML allows printable characters, tabs and line breaks only)"))
    escape = _escape_beyond_unicode(text) if isinstance(exc, ValueError | OverflowError) else None
    if escape is not None:
        # ruamel's scanner calls chr() on the escape's value and lets the error through, unlocated.
        line, column = _position_of_index(text, escape.start())
        return ConfigError(ConfigProblem(
            filename, line, column, "",
            f"not valid YAML: the escape {escape.group()} is beyond U+10FFFF, the last Unicode character"))
    return ConfigError(f"{filename}: not valid YAML: {' '.join(str(exc).split())}")


_BIG_ESCAPE = re.compile(r"\\U([0-9A-Fa-f]{8})")


def _escape_beyond_unicode(text: str) -> re.Match[str] | None:
    """The first ``\\UXXXXXXXX`` past U+10FFFF whose backslash is not itself escaped."""
    for match in _BIG_ESCAPE.finditer(text):
        before = text[:match.start()]
        backslashes = len(before) - len(before.rstrip("\\"))
        if backslashes % 2 == 0 and int(match.group(1), 16) > 0x10FFFF:
            return match
    return None


# Control characters by their ISO 6429 abbreviations (C0, then C1 from U+0080).
_C0_NAMES = (
    "NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS", "HT", "LF", "VT", "FF", "CR",
    "SO", "SI", "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB", "CAN", "EM", "SUB", "ESC",
    "FS", "GS", "RS", "US",
)
_C1_NAMES = (
    "PAD", "HOP", "BPH", "NBH", "IND", "NEL", "SSA", "ESA", "HTS", "HTJ", "VTS", "PLD", "PLU",
    "RI", "SS2", "SS3", "DCS", "PU1", "PU2", "STS", "CCH", "MW", "SPA", "EPA", "SOS", "SGCI",
    "SCI", "CSI", "ST", "OSC", "PM", "APC",
)


def _unacceptable(code: int) -> str:
    """``control character U+001B (ESC)`` and the like, for a character YAML does not allow."""
    if code < 0x20:
        return f"control character U+{code:04X} ({_C0_NAMES[code]})"
    if code == 0x7F:
        return "control character U+007F (DEL)"
    if 0x80 <= code <= 0x9F:
        return f"control character U+{code:04X} ({_C1_NAMES[code - 0x80]})"
    if 0xD800 <= code <= 0xDFFF:
        return f"surrogate U+{code:04X}"
    if code in (0xFFFE, 0xFFFF):
        return f"noncharacter U+{code:04X}"
    return f"character U+{code:04X}"


def _position_of_index(text: str, index: int) -> Position:
    """1-based line and column of a character index (lines end at '\\n', as editors count them)."""
    index = max(0, min(index, len(text)))
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


_QUOTED_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|(?:^|(?<=\s))#[^\n]*', re.MULTILINE)


def _flow_depth_hint(text: str) -> int:
    """Deepest ``[``/``{`` nesting outside quotes and comments: a cheap, approximate trigger."""
    depth = deepest = 0
    for bracket in re.findall(r"[\[\]{}]", _QUOTED_OR_COMMENT.sub("", text)):
        depth = depth + 1 if bracket in "[{" else max(depth - 1, 0)
        deepest = max(deepest, depth)
    return deepest


def _check_depth(events: Iterable[Any], filename: str) -> None:
    """Reject deep nesting from the event stream, before the recursive composer sees it."""
    depth = 0
    for event in events:
        if isinstance(event, MappingStartEvent | SequenceStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line, column = _mark(event)
                raise ConfigError(ConfigProblem(
                    filename, line, column, "",
                    f"nested more than {MAX_DEPTH} levels deep: not a zrepl-reconcile configuration"))
        elif isinstance(event, MappingEndEvent | SequenceEndEvent):
            depth -= 1


def _yaml_problem(exc: MarkedYAMLError, text: str, filename: str) -> ConfigProblem:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = str(exc.problem or exc.context or "invalid YAML").strip()
    if "'\\t'" in problem or "\t" in problem:
        line, column, message = _tab_problem(text, line, column)
    elif exc.context and exc.problem and "expected a single document" in str(exc.context):
        message = "more than one YAML document ('---'): a configuration is a single document"
    else:
        context = f" {exc.context.strip()}" if exc.context and exc.context != problem else ""
        message = f"YAML syntax error: {problem}{context}"
    return ConfigProblem(filename, line, column, "", " ".join(message.split()))


_TAB_BETWEEN = "outside [...] and {...} only spaces may separate YAML tokens"


def _tab_problem(text: str, line: int, column: int) -> tuple[int, int, str]:
    """ruamel refuses a tab between tokens; say whether it indents, trails or separates."""
    lines = text.split("\n")
    row = lines[line - 1] if 0 < line <= len(lines) else ""
    tab = row.find("\t", column - 1)
    if tab < 0:
        tab = row.find("\t")
    if tab < 0 or not row[:tab].strip(" \t"):
        column = column if tab < 0 else tab + 1
        return line, column, "a tab character: YAML indentation must use spaces, not tabs"
    rest = row[tab:].strip(" \t\r")
    if not rest:
        return line, tab + 1, f"a tab character at the end of the line: remove it ({_TAB_BETWEEN})"
    if rest.startswith("#"):
        return line, tab + 1, f"a tab character before the comment: use a space ({_TAB_BETWEEN})"
    before = _short(row[:tab].strip(), 30)
    return line, tab + 1, f"a tab character after {before!r}: use a space ({_TAB_BETWEEN})"


def _mark(item: Any) -> Position:
    mark = item.start_mark
    return mark.line + 1, mark.column + 1


class _PlainBuilder:
    """Turns composed nodes into plain data, recording positions, duplicates and limits."""

    _DUPLICATE_WHAT: ClassVar[dict[Path, str]] = {("hosts",): "host name", ("policies",): "policy name"}

    def __init__(self, filename: str, text: str) -> None:
        self.filename = filename
        self.text = text
        self.positions: dict[Path, Located] = {}
        self.problems: list[ConfigProblem] = []
        self.keys_dropped: set[Path] = set()
        self._nodes = 0
        self._seen: set[int] = set()  # collections built so far: meeting one again is an alias
        self._stack: list[tuple[Node, bool]] = []  # collections being built, and whether via an alias again
        self._active: set[int] = set()  # ids of the collections on the stack

    def build(self, root: Node) -> Any:
        self.positions[()] = Located(None, _mark(root))
        return self._value(root, (), 0)

    def _value(self, node: Node, path: Path, depth: int) -> Any:
        self._nodes += 1
        collection = isinstance(node, SequenceNode | MappingNode)
        # depth counts the collections around node; node itself is one more level.
        if self._nodes > MAX_NODES or (collection and depth + 1 > MAX_DEPTH):
            line, column = self._alias_expanding() if self._nodes > MAX_NODES else _mark(node)
            reason = ("too many values (alias expansion?)" if self._nodes > MAX_NODES
                      else f"nested more than {MAX_DEPTH} levels deep")
            # No field path: at this depth it would be a line of [0][0]... and say nothing more.
            raise ConfigError(ConfigProblem(self.filename, line, column, "",
                                            f"{reason}: not a zrepl-reconcile configuration"))
        if id(node) in self._active:
            line, column = _mark(node)
            raise ConfigError(ConfigProblem(self.filename, line, column, format_path(path),
                                            "an alias refers to itself (recursive anchor)"))
        if isinstance(node, ScalarNode):
            return _scalar(node)
        self._stack.append((node, id(node) in self._seen))
        self._seen.add(id(node))
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return self._sequence(node, path, depth)
            if isinstance(node, MappingNode):
                return self._mapping(node, path, depth)
        finally:
            self._stack.pop()
            self._active.discard(id(node))
        return None

    def _alias_expanding(self) -> Position:
        """Where the alias that repeats a collection is written (``*a5`` in ``[*a5, *a5]``)."""
        for (parent, _), (node, again) in zip(self._stack, self._stack[1:], strict=False):
            if not again:
                continue
            start, end = parent.start_mark.index, parent.end_mark.index
            found = self.text.find(f"*{node.anchor}", start, end) if node.anchor else -1
            return _position_of_index(self.text, found) if found >= 0 else _mark(parent)
        return _mark(self._stack[-1][0]) if self._stack else (1, 1)

    def _sequence(self, node: SequenceNode, path: Path, depth: int) -> list[Any]:
        items: list[Any] = []
        for index, child in enumerate(node.value):
            self.positions[(*path, index)] = Located(None, _mark(child))
            items.append(self._value(child, (*path, index), depth + 1))
        return items

    def _mapping(self, node: MappingNode, path: Path, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, Position] = {}
        # Merges first, wherever they are written: explicit keys then win, values and positions.
        is_merge = [str(key_node.tag) == _TAG + "merge" for key_node, _ in node.value]
        for (_, value_node), merge in zip(node.value, is_merge, strict=True):
            if merge:
                self._merge(result, value_node, path, depth)
        for (key_node, value_node), merge in zip(node.value, is_merge, strict=True):
            if merge:
                continue
            if not isinstance(key_node, ScalarNode):
                line, column = _mark(key_node)
                self.problems.append(ConfigProblem(self.filename, line, column, format_path(path),
                                                   "a key must be a plain name, not a list or mapping"))
                self.keys_dropped.add(path)
                continue
            key = str(key_node.value)
            if key in first_seen:
                self._duplicate(path, key, key_node, first_seen[key])
                continue
            first_seen[key] = _mark(key_node)
            self.positions[(*path, key)] = Located(_mark(key_node), _mark(value_node))
            result[key] = self._value(value_node, (*path, key), depth + 1)
        return result

    def _merge(self, result: dict[str, Any], value_node: Node, path: Path, depth: int) -> None:
        """YAML merge keys (``<<: *defaults``); with several sources the first one wins."""
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        for source in sources:
            merged = self._value(source, path, depth)
            if isinstance(merged, dict):
                for key, value in merged.items():
                    result.setdefault(key, value)
            else:
                line, column = _mark(source)
                self.problems.append(ConfigProblem(self.filename, line, column, format_path(path),
                                                   "'<<' (merge) needs a mapping or a list of mappings"))

    def _duplicate(self, path: Path, key: str, key_node: Node, first: Position) -> None:
        what = self._DUPLICATE_WHAT.get(path, "key")
        line, column = _mark(key_node)
        self.problems.append(ConfigProblem(
            self.filename, line, column, format_path((*path, key)),
            f"duplicate {what} {key!r} (first defined at {self.filename}:{first[0]}:{first[1]})"))


def _scalar(node: ScalarNode) -> Any:
    """YAML 1.2 core-schema scalars; other tags (timestamps, binary) stay the text as written."""
    tag, text = str(node.tag), str(node.value)
    if tag == _TAG + "null":
        return None
    if tag == _TAG + "bool":
        return text.lower() == "true"
    if tag == _TAG + "int":
        return _yaml_int(text)
    if tag == _TAG + "float":
        return _yaml_float(text)
    return text


def _yaml_int(text: str) -> int | str:
    digits = text.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    bases = {"0x": 16, "0o": 8, "0b": 2}
    base = bases.get(digits[:2].lower(), 10)
    written = digits[2:] if base != 10 else digits
    try:
        if len(written) > _MAX_EXACT_DIGITS:
            return _LongNumber(sign, written, base)
        return sign * int(written, base)
    except ValueError:
        return text


# Python refuses to convert more than 4300 decimal digits between int and str (CVE-2020-10735);
# no setting needs more than 19.
_MAX_EXACT_DIGITS = 1000


class _LongNumber(int):
    """An absurdly long integer literal: compares like it (far beyond any bound), prints short."""

    text: str

    def __new__(cls, sign: int, digits: str, base: int) -> _LongNumber:
        # The first digits stand in for the value: already far beyond any limit a setting has.
        number = super().__new__(cls, sign * int(digits[:_MAX_EXACT_DIGITS], base))
        prefix = {16: "0x", 8: "0o", 2: "0b"}.get(base, "")
        number.text = f"{'-' if sign < 0 else ''}{prefix}{digits[:20]}… ({len(digits)} digits)"
        return number

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


def _yaml_float(text: str) -> float | str:
    lowered = text.lower().replace("_", "")
    special = {".inf": float("inf"), "+.inf": float("inf"), "-.inf": float("-inf"), ".nan": float("nan")}
    if lowered in special:
        return special[lowered]
    try:
        return float(lowered)
    except ValueError:
        return text


# --------------------------------------------------------------------------- paths and wording

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_path(path: Sequence[PathElem]) -> str:
    """``policies.hourly.keep_source[1].grid``; keys that are not plain names are quoted."""
    out = ""
    for elem in path:
        if isinstance(elem, int):
            out += f"[{elem}]"
        elif _IDENTIFIER.match(elem):
            out += f".{elem}" if out else elem
        else:
            # JSON string syntax: a key with a newline, quote or control character stays on
            # one line (one error, one line) and reads back unambiguously.
            out += f"[{json.dumps(elem, ensure_ascii=False)}]"
    return out


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "not-a-number (.nan)"
        return f"{'minus ' * (value < 0)}infinity ({_number(value)})"
    if isinstance(value, int | float):
        return f"the number {_number(value)}"
    if isinstance(value, str):
        return f"the string {_short(value)!r}"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _number(value: int | float) -> str:
    """A number as written, or its first digits and length when it is absurdly long."""
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else "-.inf" if value < 0 else ".inf"  # as YAML writes them
    text = str(value)
    digits = len(text.lstrip("-"))
    if isinstance(value, float | _LongNumber) or digits <= 20:
        return text
    return f"{text[:20 + text.startswith('-')]}… ({digits} digits)"


def _describe_number(value: Any) -> str:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return _number(value) if is_number else _describe(value)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "nothing (null)"}


def _expected(types: Any) -> str:
    names = [types] if isinstance(types, str) else list(types)
    return " or ".join(_TYPE_NAMES.get(t, t) for t in names)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# --------------------------------------------------------------------------- shape layer (JSON schema)


@lru_cache(maxsize=1)
def _schema_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(config_json_schema())


def shape_problems(document: Document) -> list[ConfigProblem]:
    """JSON-schema problems in human words: unknown keys, missing keys, wrong types."""
    problems: list[ConfigProblem] = []
    for error in _beside_type_errors(_schema_validator().iter_errors(document.data)):
        problems += _schema_error_problems(document, error)
    return problems


_RANGE_CHECKS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _beside_type_errors(errors: Iterable[jsonschema.ValidationError]) -> list[jsonschema.ValidationError]:
    """A value of the wrong type gets that one message, not also a range check (``port: .inf``)."""
    listed = list(errors)
    mistyped = {tuple(e.absolute_path) for e in listed if e.validator == "type"}
    return [e for e in listed if e.validator not in _RANGE_CHECKS or tuple(e.absolute_path) not in mistyped]


def _schema_error_problems(document: Document, error: jsonschema.ValidationError) -> list[ConfigProblem]:
    path: Path = tuple(error.absolute_path)
    kind, value, instance = error.validator, _any(error.validator_value), error.instance
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(_schema_of(error).get("properties", {}))
        return [document.problem((*path, key), _unknown_key_message(key, allowed), key=True)
                for key in instance if key not in allowed]
    if kind == "minProperties" and path in document.keys_dropped:
        return []
    if kind == "required" and isinstance(instance, dict):
        return [document.problem((*path, name), f"missing required key {name!r}", key=True)
                for name in value if name not in instance]
    if kind in ("oneOf", "anyOf"):
        return _union_problems(document, error)
    return [document.problem(path, _schema_message(kind, value, instance, error.message))]


def _any(value: object) -> Any:
    return value


def _schema_of(error: jsonschema.ValidationError) -> dict[str, Any]:
    return error.schema if isinstance(error.schema, dict) else {}


def _unknown_key_message(key: str, allowed: list[str]) -> str:
    return f"unknown key {key!r}{_did_you_mean(key, allowed)} (allowed: {', '.join(allowed)})"


def _schema_message(kind: Any, value: Any, instance: Any, fallback: str) -> str:
    if kind == "type":
        return f"expected {_expected(value)}, got {_describe(instance)}"
    if kind in ("minProperties", "minItems"):
        return "must not be empty" if value == 1 else f"needs at least {value} entries"
    if kind == "minLength":
        return "must not be empty"
    if kind == "minimum":
        return f"must be at least {value}, got {_describe_number(instance)}"
    if kind == "maximum":
        return f"must be at most {value}, got {_describe_number(instance)}"
    if kind == "exclusiveMinimum":
        return f"must be greater than {value}, got {_describe_number(instance)}"
    if kind == "const":
        return f"must be {value!r}, got {_describe(instance)}"
    if kind == "enum":
        return f"must be one of {', '.join(repr(v) for v in value)}, got {_describe(instance)}"
    return fallback


def _union_problems(document: Document, error: jsonschema.ValidationError) -> list[ConfigProblem]:
    """A tagged union (host ``connection``, keep rule ``type``) or an optional value."""
    path: Path = tuple(error.absolute_path)
    instance = error.instance
    discriminator = _schema_of(error).get("discriminator")
    branches: list[dict[str, Any]] = list(_any(error.validator_value))
    if isinstance(discriminator, dict):
        name = discriminator["propertyName"]
        mapping: dict[str, str] = discriminator.get("mapping", {})
        tags = ", ".join(repr(t) for t in sorted(mapping))
        if not isinstance(instance, dict):
            message = f"expected a mapping with {name!r} ({tags}), got {_describe(instance)}"
            return [document.problem(path, message)]
        if name not in instance:
            message = f"missing required key {name!r} (one of {tags})"
            return [document.problem((*path, name), message, key=True)]
        tag = instance[name]
        if not isinstance(tag, str) or tag not in mapping:
            return [document.problem((*path, name), f"{name} must be one of {tags}, got {_describe(tag)}"
                                     + _did_you_mean(str(tag), mapping))]
        chosen = [i for i, branch in enumerate(branches) if branch.get("$ref") == mapping[tag]]
    else:
        chosen = [i for i, branch in enumerate(branches) if _branch_accepts_type(branch, instance)]
    sub_errors = _beside_type_errors(e for e in error.context or []
                                     if e.relative_schema_path and e.relative_schema_path[0] in chosen)
    if not chosen or not sub_errors:
        expected = " or ".join(_branch_type_name(b) for b in branches)
        return [document.problem(path, f"expected {expected}, got {_describe(instance)}")]
    problems: list[ConfigProblem] = []
    for sub in sub_errors:
        problems += _schema_error_problems(document, sub)
    return problems


def _branch_accepts_type(branch: dict[str, Any], instance: Any) -> bool:
    if "$ref" in branch:
        return isinstance(instance, dict)
    wanted = branch.get("type")
    checks = {"null": instance is None, "string": isinstance(instance, str),
              "object": isinstance(instance, dict), "array": isinstance(instance, list),
              "boolean": isinstance(instance, bool),
              "integer": isinstance(instance, int) and not isinstance(instance, bool),
              "number": isinstance(instance, int | float) and not isinstance(instance, bool)}
    return bool(checks.get(wanted, True)) if isinstance(wanted, str) else True


def _branch_type_name(branch: dict[str, Any]) -> str:
    if "$ref" in branch:
        return "a mapping"
    return _expected(branch.get("type", "a value"))


# --------------------------------------------------------------------------- meaning layer (models)


_MEANING_ERRORS = ("value_error", "assertion_error")


def validate_models(document: Document) -> tuple[Config | None, list[tuple[ConfigProblem, bool]]]:
    """The model, or its problems each with True when it is a meaning check (not a shape one)."""
    try:
        return Config.model_validate(document.data), []
    except ValidationError as exc:
        return None, [(_model_problem(document, error), error["type"] in _MEANING_ERRORS)
                      for error in exc.errors(include_url=False)
                      if not (error["type"] == "too_short" and tuple(error["loc"]) in document.keys_dropped)]


def _model_problem(document: Document, error: Mapping[str, Any]) -> ConfigProblem:
    loc = tuple(error["loc"])
    kind = str(error["type"])
    message = _model_message(kind, str(error["msg"]), error.get("ctx") or {}, error.get("input"))
    if loc and loc[-1] == "[key]":  # pydantic's marker for a problem with a mapping key itself
        return document.problem(_strip_union_tags(document.data, loc[:-1]), message, key=True)
    path = _strip_union_tags(document.data, loc)
    if kind == "missing":
        return document.problem(path, f"missing required key {path[-1] if path else ''!r}", key=True)
    if kind == "extra_forbidden":
        return document.problem(path, f"unknown key {path[-1] if path else ''!r}", key=True)
    # A problem with a whole mapping (a policy) points at its name, not at its '{'.
    return document.problem(path, message, key=isinstance(error.get("input"), dict))


_BOUNDS = {"greater_than": ("gt", "greater than"), "greater_than_equal": ("ge", "at least"),
           "less_than": ("lt", "less than"), "less_than_equal": ("le", "at most")}


def _model_message(kind: str, message: str, ctx: Mapping[str, Any], value: Any = None) -> str:
    if kind in ("value_error", "assertion_error"):
        # pydantic prefixes our own ValueError text; the text alone is the message we wrote.
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        return message
    if kind in ("finite_number", "float_type") and isinstance(value, int) and not isinstance(value, bool):
        return f"{_describe(value)} is too large"  # beyond a float
    if kind == "finite_number" and isinstance(value, float):
        return f"expected a finite number, got {_describe(value)}"
    if kind in _BOUNDS and _BOUNDS[kind][0] in ctx:
        bound, words = _BOUNDS[kind]
        return f"must be {words} {_describe_number(ctx[bound])}, got {_describe_number(value)}"
    if kind == "too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else message
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"{ctx.get('discriminator', 'type')} must be one of {tags}".replace("'", "")
    return message[:1].lower() + message[1:]


def _strip_union_tags(data: Any, loc: Path) -> Path:
    """Drop the tags pydantic inserts for tagged unions (``hosts.nas.ssh.port`` -> ``hosts.nas.port``).

    Only two places hold tagged unions: ``hosts.<name>`` (by connection) and the items of
    ``keep_source``/``keep_target`` (by type); the tag comes right after them, even when a
    field has the same name (a grid rule's ``grid``).
    """
    path: list[PathElem] = []
    tag_skipped_at: set[int] = set()
    for elem in loc:
        if len(path) not in tag_skipped_at and _is_union_tag(data, path, elem):
            tag_skipped_at.add(len(path))
            continue
        path.append(elem)
    return tuple(path)


def _is_union_tag(data: Any, path: Sequence[PathElem], elem: PathElem) -> bool:
    if len(path) == 2 and path[0] == "hosts":
        field = "connection"
    elif len(path) == 4 and path[0] == "policies" and path[2] in ("keep_source", "keep_target"):
        field = "type"
    else:
        return False
    node = _value_at(data, path)
    return isinstance(node, dict) and node.get(field) == elem


def _value_at(data: Any, path: Sequence[PathElem]) -> Any:
    node = data
    for elem in path:
        if isinstance(node, dict) and isinstance(elem, str):
            node = node.get(elem)
        elif isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node):
            node = node[elem]
        else:
            return None
    return node


# --------------------------------------------------------------------------- cross references


def _deciding_key(filter_: Mapping[str, bool], dataset: str) -> str | None:
    best_key, best = None, (-1, False)
    for key in filter_:
        subtree = key.endswith("<")
        path = key[:-1] if subtree else key
        if dataset == path or (subtree and dataset.startswith(path + "/")):
            rank = (len(path), not subtree)
            if rank > best:
                best_key, best = key, rank
    return best_key


def filters_overlap(a: Mapping[str, bool], b: Mapping[str, bool]) -> str | None:
    """The first dataset both filters select, or None.

    Decisions only change at key paths, so it is enough to probe every key path and,
    for each, one child that no key names (``path/\\uffff``). The result is either a
    dataset name or ``path/\\uffff`` meaning "the children of path".
    """
    paths = sorted({key.removesuffix("<") for key in (*a, *b)})
    for path in paths:
        for probe in (path, path + _BELOW):
            if filter_decision(a, probe) and filter_decision(b, probe):
                return probe
    return None


def _describe_dataset(probe: str) -> str:
    return f"the children of {probe.removesuffix(_BELOW)}" if probe.endswith(_BELOW) else probe


@dataclass(frozen=True, slots=True)
class _Entry:
    index: int
    host: str | None
    filter: dict[str, bool]
    policy: str | None
    targets: list[tuple[int, str | None, str | None]]  # (index, host, root)


def _entries(data: dict[str, Any]) -> list[_Entry]:
    raw = data.get("filesystems")
    entries: list[_Entry] = []
    for index, item in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(item, dict):
            continue
        filter_raw = item.get("filter")
        filter_ = ({k: v for k, v in filter_raw.items() if isinstance(v, bool)}
                   if isinstance(filter_raw, dict) else {})
        targets_raw = item.get("replicate_to")
        targets = [(j, _str_or_none(t.get("host")), _str_or_none(t.get("root")))
                   for j, t in enumerate(targets_raw if isinstance(targets_raw, list) else [])
                   if isinstance(t, dict)]
        entries.append(_Entry(index, _str_or_none(item.get("host")), filter_,
                              _str_or_none(item.get("policy")), targets))
    return entries


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def cross_reference_problems(document: Document) -> list[ConfigProblem]:
    data = document.data
    entries = _entries(data)
    problems = _undefined_references(document, entries)
    problems += _overlapping_claims(document, entries)
    problems += _replicas_selected_again(document, entries)
    problems += _colliding_targets(document, entries)
    return problems


def _undefined_references(document: Document, entries: list[_Entry]) -> list[ConfigProblem]:
    hosts, policies = document.data.get("hosts"), document.data.get("policies")
    problems: list[ConfigProblem] = []

    def check(name: str | None, defined: Any, what: str, path: Path) -> None:
        if name is None or not isinstance(defined, dict) or name in defined:
            return
        known = ", ".join(sorted(defined)) or "none"
        plural = {"host": "hosts", "policy": "policies"}[what]
        problems.append(document.problem(
            path, f"undefined {what} {name!r}{_did_you_mean(name, defined)} (defined {plural}: {known})"))

    for entry in entries:
        base: Path = ("filesystems", entry.index)
        check(entry.host, hosts, "host", (*base, "host"))
        check(entry.policy, policies, "policy", (*base, "policy"))
        for j, host, _root in entry.targets:
            check(host, hosts, "host", (*base, "replicate_to", j, "host"))
    return problems


def shared_selections(filters: Sequence[Mapping[str, bool]]) -> list[tuple[str, list[int]]]:
    """Each probe dataset selected by two or more of ``filters``, with their indexes.

    The probes are those of ``filters_overlap`` over all filters at once; each probe is
    only checked against filters with a key at or above it (the only ones that can
    select it), so thousands of entries stay fast.
    """
    owners: dict[str, list[int]] = {}
    for index, filter_ in enumerate(filters):
        for path in {key.removesuffix("<") for key in filter_}:
            owners.setdefault(path, []).append(index)
    shared: list[tuple[str, list[int]]] = []
    for path in sorted(owners):
        candidates = sorted({i for ancestor in lineage(path) for i in owners.get(ancestor, [])})
        for probe in (path, path + _BELOW):
            selecting = [i for i in candidates if filter_decision(filters[i], probe)]
            if len(selecting) > 1:
                shared.append((probe, selecting))
    return shared


def _by(items: Iterable[_T], key: Callable[[_T], _K]) -> dict[_K, list[_T]]:
    groups: dict[_K, list[_T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def _overlapping_claims(document: Document, entries: list[_Entry]) -> list[ConfigProblem]:
    """A dataset may belong to one entry per host: two policies on one dataset fight each other."""
    problems: list[ConfigProblem] = []
    reported: set[tuple[int, int]] = set()
    for host, group in _by(entries, lambda e: e.host).items():
        if host is None:
            continue
        for probe, selecting in shared_selections([e.filter for e in group]):
            earlier = group[selecting[0]]
            for later in (group[i] for i in selecting[1:]):
                if (earlier.index, later.index) in reported:
                    continue
                reported.add((earlier.index, later.index))
                problems.append(_claim_problem(document, host, probe, earlier, later))
    return problems


def _claim_problem(document: Document, host: str, probe: str,
                   earlier: _Entry, later: _Entry) -> ConfigProblem:
    first = ("filesystems", earlier.index, "filter", _deciding_key(earlier.filter, probe) or "")
    second = ("filesystems", later.index, "filter", _deciding_key(later.filter, probe) or "")
    verb = "are" if probe.endswith(_BELOW) else "is"
    return document.problem(second, (
        f"{_describe_dataset(probe)} on host {host!r} {verb} claimed by "
        f"filesystems[{earlier.index}] ({document.where(first)}) and "
        f"filesystems[{later.index}] ({document.where(second)}): "
        "a dataset must belong to one entry per host"), key=True)


def _replicas_selected_again(document: Document, entries: list[_Entry]) -> list[ConfigProblem]:
    """A target root where an entry on the target host selects the replicas (``root/<source>``).

    That entry's policy would snapshot and prune the replicas (the sends then find the
    target diverged), and when it is the sending entry itself each run replicates the replica.
    """
    problems: list[ConfigProblem] = []
    on_host = {host: _KeyPaths(group) for host, group in _by(entries, lambda e: e.host).items() if host}
    for entry in entries:
        for j, host, root in entry.targets:
            if host is None or root is None or host not in on_host:
                continue
            found = on_host[host].selecting_replicas(entry, root)
            if found is not None:
                problems.append(_replica_problem(document, entry, j, host, root, *found))
    return problems


class _KeyPaths:
    """The filter key paths of the entries on one host, to find those that reach into a root."""

    def __init__(self, group: list[_Entry]) -> None:
        self.owners: dict[str, list[_Entry]] = {}
        for entry in group:
            for path in {key.removesuffix("<") for key in entry.filter}:
                self.owners.setdefault(path, []).append(entry)
        self.paths = sorted(self.owners)

    def near(self, root: str) -> list[_Entry]:
        """Entries with a key at or above ``root`` or below it: the only ones that can select below it."""
        found = {e.index: e for path in lineage(root) for e in self.owners.get(path, [])}
        start = bisect.bisect_left(self.paths, root + "/")
        for path in self.paths[start:bisect.bisect_left(self.paths, root + "0")]:  # "0" follows "/"
            found.update((e.index, e) for e in self.owners[path])
        return [found[i] for i in sorted(found)]

    def selecting_replicas(self, source: _Entry, root: str) -> tuple[_Entry, str] | None:
        """The first entry selecting a replica under ``root`` of what ``source`` selects, and its dataset."""
        for other in self.near(root):
            probe = replica_overlap(source.filter, root, other.filter)
            if probe is not None:
                return other, probe
        return None


def replica_overlap(source: Mapping[str, bool], root: str, target: Mapping[str, bool]) -> str | None:
    """A dataset ``d`` that ``source`` selects while ``target`` selects its replica ``root/d``, or None.

    Decisions only change at key paths, so it is enough to probe the source's key paths
    and the target filter's key paths below ``root`` (made relative), each also with one
    child that no key names, as ``filters_overlap`` does.
    """
    below = {path[len(root) + 1:] for path in (key.removesuffix("<") for key in target)
             if path != root and is_within(path, root)}
    for path in sorted({key.removesuffix("<") for key in source} | below):
        for probe in (path, path + _BELOW):
            if filter_decision(source, probe) and filter_decision(target, f"{root}/{probe}"):
                return probe
    return None


def _replica_problem(document: Document, entry: _Entry, j: int, host: str, root: str,
                     other: _Entry, probe: str) -> ConfigProblem:
    where: Path = ("filesystems", entry.index, "replicate_to", j, "root")
    source, replica = _describe_dataset(probe), _describe_dataset(f"{root}/{probe}")
    onto = f"onto its own host {host!r}" if entry.host == host else f"to host {host!r}"
    exclusion = _working_exclusion(other, root, probe, keep_source=other is entry,
                                   where="" if other is entry else " there")
    if other is entry:
        return document.problem(where, (
            f"replicating {source} {onto} under {root!r} writes {replica}, which this entry's filter "
            "selects again: each run would replicate the replica; use a root outside the selected "
            f"datasets{exclusion}"))
    key = _deciding_key(other.filter, f"{root}/{probe}") or ""
    return document.problem(where, (
        f"replicating {source} {onto} under {root!r} writes {replica}, which filesystems[{other.index}] "
        f"selects on that host ({document.where(('filesystems', other.index, 'filter', key))}): its policy "
        f"{other.policy!r} would snapshot and prune the replica; use a root outside that entry's datasets"
        f"{exclusion}"))


def _working_exclusion(entry: _Entry, root: str, probe: str, *, keep_source: bool, where: str) -> str:
    """`` or exclude it[where] with "ROOT<": false`` when that key would really exclude the
    replica (a more specific key may select it anyway) without excluding the source; else ""."""
    key = f"{root}<"
    if key in entry.filter:
        return ""
    changed = {**entry.filter, key: False}
    if filter_decision(changed, f"{root}/{probe}") or (keep_source and not filter_decision(changed, probe)):
        return ""
    return f" or exclude it{where} with \"{key}\": false"


def _colliding_targets(document: Document, entries: list[_Entry]) -> list[ConfigProblem]:
    """Two source hosts replicating the same dataset names under one target root overwrite each other."""
    problems = _repeated_targets(document, entries)
    uses = [(entry, j, host, root) for entry in entries for j, host, root in entry.targets
            if host is not None and root is not None]
    reported: set[tuple[str | None, str | None, str, str]] = set()
    for (host, root), group in _by(uses, lambda use: (use[2], use[3])).items():
        firsts: dict[int, tuple[_Entry, int, str, str]] = {}
        for use in group:
            firsts.setdefault(use[0].index, use)  # an entry's first use of this target
        users = list(firsts.values())
        for probe, selecting in shared_selections([use[0].filter for use in users]):
            first_entry, first_j = users[selecting[0]][0], users[selecting[0]][1]
            for entry, j, _h, _r in (users[i] for i in selecting[1:]):
                pair = (first_entry.host, entry.host, host, root)
                if entry.host == first_entry.host or pair in reported:
                    continue  # same source host: _overlapping_claims keeps its datasets apart
                reported.add(pair)
                first: Path = ("filesystems", first_entry.index, "replicate_to", first_j)
                problems.append(document.problem(("filesystems", entry.index, "replicate_to", j), (
                    f"hosts {first_entry.host!r} and {entry.host!r} both replicate "
                    f"{_describe_dataset(probe)} to {host}:{root} "
                    f"(also at {document.where(first)}): give each source host its own root")))
    return problems


def _repeated_targets(document: Document, entries: list[_Entry]) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    for entry in entries:
        seen: dict[tuple[str | None, str | None], int] = {}
        for j, host, root in entry.targets:
            if (host, root) in seen and host is not None and root is not None:
                first: Path = ("filesystems", entry.index, "replicate_to", seen[(host, root)])
                problems.append(document.problem(
                    ("filesystems", entry.index, "replicate_to", j),
                    f"target {host}:{root} is listed twice (first at {document.where(first)})"))
            seen.setdefault((host, root), j)
    return problems
