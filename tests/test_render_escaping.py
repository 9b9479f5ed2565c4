"""Property: whatever a name or message contains, markdown shows it verbatim and inert."""

from __future__ import annotations

import html
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from reconciler.render import md_code, md_text

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
