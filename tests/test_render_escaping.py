"""Property: whatever a name or message contains, markdown shows it verbatim and inert,
and the Plan JSON writer encodes it exactly as json.dumps does."""

from __future__ import annotations

import html
import io
import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from reconciler.render.json import JsonWriter
from reconciler.render.markdown import md_code, md_text, md_texts

PARSER = MarkdownIt("commonmark").enable("table")
# Printable text plus the characters that mean something in markdown or HTML.
TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from("\n\t·—é"),
               min_size=1, max_size=40)


def paragraph(markdown: str) -> str:
    page = PARSER.render(markdown)
    match = re.fullmatch(r"<p>(.*)</p>\n", page, re.S)
    assert match, page
    return match.group(1)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_md_text_renders_as_the_same_plain_text(text: str) -> None:
    inner = paragraph(f"x {md_text(text)} y")
    assert "<" not in inner.replace("&lt;", "")  # no tag of any kind
    assert html.unescape(inner) == f"x {' '.join(text.split())} y"


@settings(max_examples=300, deadline=None)
@given(TEXT.filter(lambda t: t.strip("\n") != ""))
def test_md_code_keeps_the_name_verbatim(text: str) -> None:
    inner = paragraph(f"x {md_code(text)} y")
    match = re.fullmatch(r"x <code>(.*)</code> y", inner, re.S)
    assert match, inner
    assert html.unescape(match.group(1)) == text.replace("\n", " ")


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT)
def test_table_cells_stay_two_columns(a: str, b: str) -> None:
    table = f"| A | B |\n| --- | --- |\n| {md_code(a, table=True)} | {md_text(b)} |\n"
    page = PARSER.render(table)
    body = page.split("<tbody>", 1)[1]
    assert len(re.findall(r"<td>", body)) == 2
    cell = re.search(r"<td><code>(.*?)</code></td>", body, re.S)
    assert cell and html.unescape(cell.group(1)) == a.replace("\n", " ")


@settings(max_examples=200, deadline=None)
@given(st.lists(TEXT | st.text(max_size=20)))
def test_md_texts_is_md_text_of_each(texts: list[str]) -> None:
    assert md_texts(texts) == [md_text(t) for t in texts]


# Strings with what the writer's shortcuts must not be fooled by: its separator characters
# (\x01, \x02), backslashes and text that looks like their escapes, quotes, non-ASCII.
JSON_TEXT = st.lists(st.sampled_from(["a", "\x01", "\x02", "\\", "\\u0001", '"', "\n", "é", "😀", " "]),
                     max_size=8).map("".join) | st.text(max_size=8)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | JSON_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_TEXT, inner, max_size=4)
    | st.lists(JSON_TEXT, max_size=5) | st.dictionaries(JSON_TEXT, JSON_TEXT, max_size=5),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES, st.booleans())
def test_json_writer_is_json_dumps(value: Any, stream_lists: bool) -> None:
    def streamed(v: Any) -> Any:  # lists as iterators, as the plan's actions are written
        if isinstance(v, list):
            return iter([streamed(x) for x in v])
        if isinstance(v, dict):
            return {k: streamed(x) for k, x in v.items()}
        return v

    out = io.StringIO()
    writer = JsonWriter(out)
    writer.value(streamed(value) if stream_lists else value, 0)
    writer.flush()
    assert out.getvalue() == json.dumps(value, indent=2)
