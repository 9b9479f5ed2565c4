"""From a file to plain data with the position of every path, and the problems YAML itself has.

The file is read bounded and decoded as UTF-8 only (wide encodings and binary data are
named, not misread). The YAML is composed into nodes (not constructed) so we keep every
key's line and column, see duplicate keys ourselves (all of them, not just the first), and
bound nesting, alias expansion and file size before anything else looks at the data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import MappingEndEvent, MappingStartEvent, SequenceEndEvent, SequenceStartEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from reconciler.config.scalars import scalar
from reconciler.config.wording import Path, PathElem, describe, format_path, short
from reconciler.errors import ConfigError, ConfigProblem

# A real configuration is a few kilobytes (3000 entries are ~400 KB and take ~2 s to
# parse); anything bigger than this is the wrong file.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_DEPTH = 64
# Bounds alias expansion ("billion laughs") as well as plain size.
MAX_NODES = 200_000

Position = tuple[int, int]  # 1-based line, column

_TAG = "tag:yaml.org,2002:"
_TOO_BIG = f"larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB: not a zrepl-reconcile configuration"
_TOO_BIG_FOREIGN = f"larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB: not a configuration file"
TOP_LEVEL = "a mapping with hosts, policies and filesystems"


# --------------------------------------------------------------------------- reading and decoding


def read_config_text(filename: str, *, foreign: bool = False) -> str:
    """The file's text, or a one-line ``ConfigError`` naming the file and what is wrong with it.
    ``foreign``: another tool's configuration (``import``), worded as such."""
    try:
        with open(filename, "rb") as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        hint = "" if foreign else " (give the configuration with -c FILE)"
        raise ConfigError(f"{filename}: no such file{hint}") from None
    except IsADirectoryError:
        kind = "configuration file" if foreign else "YAML file"
        raise ConfigError(f"{filename}: is a directory, not a {kind}") from None
    except PermissionError:
        raise ConfigError(f"{filename}: permission denied") from None
    except OSError as exc:
        raise ConfigError(f"{filename}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        too_big = _TOO_BIG_FOREIGN if foreign else _TOO_BIG
        raise ConfigError(ConfigProblem(filename, 1, 1, "", too_big))
    return decode_config_bytes(data, filename)


def value_at(data: Any, path: Sequence[PathElem]) -> Any:
    """The plain value at ``path`` in parsed YAML data, or None where the path does not lead."""
    node = data
    for elem in path:
        if isinstance(node, dict) and isinstance(elem, str):
            node = node.get(elem)
        elif isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node):
            node = node[elem]
        else:
            return None
    return node


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


def parse_document(text: str, filename: str, *, top_level: str = TOP_LEVEL) -> Document:
    """YAML text to plain data with positions; raise ``ConfigError`` when it is not a usable mapping.
    ``top_level`` says what the file should hold (the importers read other tools' YAML)."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(ConfigProblem(filename, 1, 1, "", _TOO_BIG))
    if "\0" in text:
        line, column = _position_of_index(text, text.find("\0"))
        raise ConfigError(ConfigProblem(filename, line, column, "",
                                        "binary data (a NUL byte): not a YAML text file"))
    root = _compose(text, filename)
    if root is None:
        raise ConfigError(ConfigProblem(filename, 1, 1, "", f"file is empty: expected {top_level}"))
    builder = _PlainBuilder(filename, text)
    data = builder.build(root)
    if not isinstance(data, dict):
        line, column = _mark(root)
        raise ConfigError(ConfigProblem(
            filename, line, column, "",
            f"the top level must be {top_level}, not {describe(data)}"))
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
    before = short(row[:tab].strip(), 30)
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
            return scalar(node)
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
