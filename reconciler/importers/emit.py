"""A ``Draft`` written as commented YAML, then loaded back with the ordinary loader: what
``import`` prints is exactly what ``validate`` accepts."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from reconciler.config.load import load_config_text
from reconciler.errors import ConfigError
from reconciler.importers.draft import Draft, ImportResult, Note, NoteKind, Path

# Values a reader compares with the old configuration: quoted, so regexes and grids read
# the same in every YAML tool.
_QUOTED_KEYS = frozenset({"grid", "regex", "manage", "prefix", "root", "address"})
# Small mappings written on one line, as the README writes them.
_FLOW_KEYS = frozenset({"snapshots", "filter"})
_FLOW_LISTS = frozenset({"keep_source", "keep_target", "replicate_to"})


def emit(draft: Draft, *, filename: str = "<import>") -> ImportResult:
    """The YAML text of ``draft``, validated; ConfigError (a bug of the importer) when the
    text does not load."""
    text = render(draft)
    try:
        config = load_config_text(text, filename)
    except ConfigError as exc:
        raise ConfigError(f"the imported configuration does not validate (an importer bug, please report"
                          f" it with the input): {exc}") from None
    return ImportResult(text, config, tuple(draft.notes))


def render(draft: Draft) -> str:
    root = CommentedMap()
    for key, value in draft.data().items():
        root[key] = _node(value, (key,), draft)
    root.yaml_set_start_comment("\n".join(_header(draft)))
    for key in ("policies", "filesystems"):
        root.yaml_set_comment_before_after_key(key, before="\n", indent=0)
    _attach_comments(root, (), draft)
    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    out = io.StringIO()
    yaml.dump(root, out)
    return out.getvalue()


def _header(draft: Draft) -> list[str]:
    lines = [f"Imported from {draft.tool}: {', '.join(draft.sources)}",
             "by `zrepl-reconcile import`. Check it, then: zrepl-reconcile validate && zrepl-reconcile plan"]
    lines += draft.header
    for kind in NoteKind:
        notes = [n for n in draft.notes if n.kind == kind]
        if notes:
            lines += ["", f"{kind.upper()} ({len(notes)}):"]
            lines += [f"  {note.where}: {note.message}" for note in notes]
    return lines


def _node(value: Any, path: Path, draft: Draft) -> Any:
    key = path[-1] if path else ""
    if isinstance(value, dict):
        node = CommentedMap()
        for k, v in value.items():
            quoted_key = key == "filter"
            node[DoubleQuotedScalarString(k) if quoted_key else k] = _node(v, (*path, k), draft)
        if key in _FLOW_KEYS or (isinstance(path[-2] if len(path) > 1 else None, str)
                                 and path[-2] in _FLOW_LISTS):
            node.fa.set_flow_style()
        return node
    if isinstance(value, list):
        return CommentedSeq(_node(item, (*path, i), draft) for i, item in enumerate(value))
    if isinstance(value, str) and key in _QUOTED_KEYS:
        return DoubleQuotedScalarString(value)
    return value


def _attach_comments(node: Any, path: Path, draft: Draft) -> None:
    """Comments before a key or item, and remarks at the end of its line, from the draft."""
    items: Iterable[tuple[Any, Any]]
    if isinstance(node, CommentedMap):
        items = list(node.items())
    elif isinstance(node, CommentedSeq):
        items = list(enumerate(node))
    else:
        return
    indent = 2 * len(path)
    for key, child in items:
        child_path = (*path, str(key) if isinstance(node, CommentedMap) else key)
        before = draft.comments.get(child_path)
        if before:
            node.yaml_set_comment_before_after_key(key, before="\n".join(before), indent=indent)
        remark = draft.remarks.get(child_path)
        if remark:
            node.yaml_add_eol_comment(remark, key)
        _attach_comments(child, child_path, draft)


def notes_text(notes: Iterable[Note]) -> str:
    """The notes as stderr lines, one each."""
    return "".join(f"{note}\n" for note in notes)
