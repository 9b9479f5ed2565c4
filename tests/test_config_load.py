"""Bad input never crashes: each case gives one clear error naming the file, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.config.document import MAX_DEPTH
from reconciler.config.load import load_config, load_config_text
from reconciler.errors import ConfigError

DATA = Path(__file__).parent / "data" / "config"
PLAYBOOK = Path(__file__).parent.parent / "playbooks" / "demo-local.yml"


def error_of(path: Path | str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


@pytest.mark.parametrize(("name", "where", "message"), [
    ("empty.yml", "1:1", "file is empty: expected a mapping with hosts, policies and filesystems"),
    ("comment-only.yml", "1:1", "file is empty"),
    ("binary.yml", "2:27", "binary data (a NUL byte): not a YAML text file"),
    ("latin1.yml", "2:6", "not valid UTF-8 (byte 0xe9): YAML files must be UTF-8 text"),
    ("top-level-list.yml", "1:1",
     "the top level must be a mapping with hosts, policies and filesystems, not a list"),
    ("tabs.yml", "2:1", "a tab character: YAML indentation must use spaces, not tabs"),
    ("multi-document.yml", "2:1", "more than one YAML document ('---'): a configuration is a single "
        "document"),
    ("syntax-error.yml", "2:1", "YAML syntax error: expected ',' or '}'"),
    ("recursive-alias.yml", "1:8", "hosts.nas: an alias refers to itself (recursive anchor)"),
    # where the alias that blows past the limit is written: the first *a4 in a5's list
    ("alias-bomb.yml", "6:10", "too many values (alias expansion?): not a zrepl-reconcile configuration"),
])
def test_bad_files_give_one_clear_line(name: str, where: str, message: str) -> None:
    error = error_of(DATA / name)
    text = str(error)
    assert "\n" not in text
    assert text.startswith(f"{DATA / name}:{where}: ")
    assert message in text


def test_duplicate_keys_are_all_reported_with_both_positions() -> None:
    path = DATA / "duplicate-keys.yml"
    lines = str(error_of(path)).splitlines()
    assert lines == [
        f"{path}:4:3: hosts.nas: duplicate host name 'nas' (first defined at {path}:2:3)",
        f"{path}:7:3: policies.p: duplicate policy name 'p' (first defined at {path}:6:3)",
        f'{path}:10:29: filesystems[0].filter["tank<"]: duplicate key \'tank<\' '
        f"(first defined at {path}:10:14)",
    ]


def test_missing_file(tmp_path: Path) -> None:
    expected = f"{tmp_path / 'nope.yml'}: no such file (give the configuration with -c FILE)"
    assert str(error_of(tmp_path / "nope.yml")) == expected


def test_directory(tmp_path: Path) -> None:
    assert str(error_of(tmp_path)) == f"{tmp_path}: is a directory, not a YAML file"


def test_ten_megabyte_file_is_refused_without_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yml"
    line = "  host{}: {{connection: local}}\n"
    with path.open("w") as out:
        out.write("hosts:\n")
        out.writelines(line.format(i) for i in range(10 * 1024 * 1024 // len(line)))
    assert path.stat().st_size > 9 * 1024 * 1024
    assert str(error_of(path)) == f"{path}:1:1: larger than 1 MiB: not a zrepl-reconcile configuration"


FLOW_LISTS = "[" * 10000 + "]" * 10000
BLOCK_LISTS = "a:\n" + "".join(" " * i + "- \n" for i in range(1, 500))
# Shallow enough for ruamel's recursive composer: our own depth limit must catch it.
HUNDRED_LEVELS = "a:\n" + "".join(" " * i + "- \n" for i in range(1, 100))


@pytest.mark.parametrize(("text", "where"),
                         [(FLOW_LISTS, "1:65"), (BLOCK_LISTS, "65:65"), (HUNDRED_LEVELS, "65:65")],
                         ids=["flow-10000", "block-500", "block-100"])
def test_deep_nesting(tmp_path: Path, text: str, where: str) -> None:
    # All three paths (flat event pass, recursion fallback, our builder) name the 65th level:
    # the 65th '[' of the flow lists, the '-' on line 65 of the block lists.
    path = tmp_path / "deep.yml"
    path.write_text(text)
    assert str(error_of(path)) == (
        f"{path}:{where}: nested more than {MAX_DEPTH} levels deep: not a zrepl-reconcile configuration")


def test_sixty_four_levels_are_still_read() -> None:
    with pytest.raises(ConfigError, match=r"^f.yml:1:1: the top level must be a mapping"):
        load_config_text("[" * MAX_DEPTH + "]" * MAX_DEPTH, "f.yml")


def test_scalar_top_level() -> None:
    with pytest.raises(ConfigError, match=r"^f.yml:1:1: the top level must be a mapping .* not the string "
        "'hello'$"):
        load_config_text("hello\n", "f.yml")


def test_nul_in_text_is_located() -> None:
    with pytest.raises(ConfigError, match=r"^t.yml:1:4: binary data"):
        load_config_text("ab:\0", "t.yml")


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yml"
    path.write_bytes(b"\xef\xbb\xbf" + PLAYBOOK.read_bytes())
    assert load_config(path).hosts


@pytest.mark.parametrize("name", ["empty.yml", "binary.yml", "tabs.yml", "alias-bomb.yml", "nope.yml"])
def test_cli_exits_1_with_one_error_line(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-c", str(DATA / name)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {DATA / name}:")
    assert captured.err.count("\n") == 1
    assert "Traceback" not in captured.err


HOST_LINES = "hosts:\n  nas: {connection: local}\n"


@pytest.mark.parametrize(("value", "where", "escape"), [
    ('"\\UFFFFFFFF"', "3:5", "\\UFFFFFFFF"),
    ('"ok \\U00110000"', "3:8", "\\U00110000"),
    ('"\\\\UFFFFFFFF \\U7FFFFFFF"', "3:17", "\\U7FFFFFFF"),  # the first one is an escaped backslash
    ('[x, "a\n  \\U00110000 b"]', "4:3", "\\U00110000"),  # a quoted scalar over two lines
])
def test_unicode_escape_beyond_the_last_character_is_located(tmp_path: Path, value: str, where: str,
                                                            escape: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yml"
    path.write_text(HOST_LINES + f"a: {value}\n")
    expected = (f"{path}:{where}: not valid YAML: the escape {escape} is beyond U+10FFFF, "
                "the last Unicode character")
    assert str(error_of(path)) == expected
    assert main(["validate", "-c", str(path)]) == 1
    assert capsys.readouterr().err == f"error: {expected}\n"


@pytest.mark.parametrize(("raw", "what"), [
    (b"\x1b", "control character U+001B (ESC)"),
    (b"\x7f", "control character U+007F (DEL)"),
    (b"\x07", "control character U+0007 (BEL)"),
    (b"\xc2\x9b", "control character U+009B (CSI)"),
    (b"\xef\xbf\xbf", "noncharacter U+FFFF"),
])
def test_control_characters_give_one_located_line(tmp_path: Path, raw: bytes, what: str) -> None:
    path = tmp_path / "c.yml"
    path.write_bytes(HOST_LINES.encode() + b'a: "\xc3\xa9t\xc3\xa9 ' + raw + b'"\n')
    assert str(error_of(path)) == (
        f"{path}:3:9: not valid YAML: {what} is not allowed "
        "(YAML allows printable characters, tabs and line breaks only)")


def test_control_character_in_text_is_located() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("hosts:\n  nas:\n    x: \x1b[0m\n", "t.yml")
    assert str(info.value) == ("t.yml:3:8: not valid YAML: control character U+001B (ESC) is not allowed "
                               "(YAML allows printable characters, tabs and line breaks only)")


TAB_RULE = "outside [...] and {...} only spaces may separate YAML tokens"


@pytest.mark.parametrize(("text", "message"), [
    ("hosts:\n  nas:\t{connection: local}\n", f"2:7: a tab character after 'nas:': use a space ({TAB_RULE})"),
    ("hosts:\n  nas: {connection: local}\npolicy: p\t\n",
     f"3:10: a tab character at the end of the line: remove it ({TAB_RULE})"),
    ("policy: p\t# the policy\n", f"1:10: a tab character before the comment: use a space ({TAB_RULE})"),
    ("filesystems:\n  -\thost: nas\n", f"2:4: a tab character after '-': use a space ({TAB_RULE})"),
    ("hosts:\n\tnas: {connection: local}\n",
     "2:1: a tab character: YAML indentation must use spaces, not tabs"),
    ("hosts:\n  \tnas: {connection: local}\n",
     "2:3: a tab character: YAML indentation must use spaces, not tabs"),
])
def test_tabs_are_told_apart_by_where_they_are(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "t.yml")
    assert str(info.value) == f"t.yml:{message}"


def test_tabs_inside_flow_collections_and_quotes_are_fine() -> None:
    text = PLAYBOOK.read_text().replace('{"src<": true}', '{"src<":\ttrue}')
    assert '\t' in text
    assert load_config_text(text, "t.yml").filesystems[0].filter == {"src<": True}


@pytest.mark.parametrize(("encoding", "name"), [
    ("utf-16", "UTF-16"), ("utf-16-le", "UTF-16LE"), ("utf-16-be", "UTF-16BE"),
    ("utf-32", "UTF-32"), ("utf-32-le", "UTF-32LE"), ("utf-32-be", "UTF-32BE"),
])
def test_utf16_and_utf32_files_are_named_as_such(tmp_path: Path, encoding: str, name: str) -> None:
    path = tmp_path / "wide.yml"
    path.write_bytes(PLAYBOOK.read_text().encode(encoding))
    assert str(error_of(path)) == (f"{path}:1:1: looks like {name} text: YAML configuration files must be "
                                   f"UTF-8 (convert it, e.g. iconv -f {name} -t UTF-8)")
