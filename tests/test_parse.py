"""The zfs list / zfs holds parsers against captured output and hostile input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.errors import GatherError
from reconciler.gather.parse import LIST_COLUMNS, list_argv, parse_zfs_holds, parse_zfs_list

DATA = Path(__file__).parent / "data" / "zfs"
GOOD_SNAP = "tank/a@s1\tsnapshot\t12\t5\t1700000000\t0\t10\t20\t-\toff\t-\t-"
GOOD_FS = "tank/a\tfilesystem\t11\t4\t1700000000\t-\t0\t20\t-\toff\t-\t-"


def list_fixtures() -> list[Path]:
    return sorted(DATA.glob("list-*.txt")) + sorted(DATA.glob("real-zfs-list*.txt"))


def test_argv_asks_for_exactly_the_parsed_columns() -> None:
    argv = list_argv()
    assert argv[:4] == ["zfs", "list", "-H", "-p"]
    assert argv[argv.index("-o") + 1].split(",") == list(LIST_COLUMNS)
    assert argv[argv.index("-t") + 1] == "filesystem,volume,snapshot,bookmark"


@pytest.mark.parametrize("path", list_fixtures(), ids=lambda p: p.name)
def test_every_captured_listing_parses(path: Path) -> None:
    text = path.read_text()
    datasets = parse_zfs_list(text, "h")
    lines = [line for line in text.splitlines() if line]
    assert len(datasets) + sum(len(d.snapshots) + len(d.bookmarks) for d in datasets.values()) == len(lines)
    for ds in datasets.values():
        assert [s.createtxg for s in ds.snapshots] == sorted(s.createtxg for s in ds.snapshots)


def test_documented_listing_details() -> None:
    datasets = parse_zfs_list((DATA / "list-documented.txt").read_text(), "nas")
    data = datasets["tank/data"]
    assert [s.name for s in data.snapshots] == ["zrepl_20231114_220000_000", "zrepl_20231114_230000_000",
                                                "manual before-upgrade"]
    assert data.snapshots[1].userrefs == 1 and data.snapshots[1].held
    assert data.snapshots[0].written == 4194304 and data.snapshots[0].referenced == 8388608
    assert data.bookmarks[0].name == "zrepl_CURSOR_G_0000000000000001_J_backup"
    assert data.bookmarks[0].guid == data.snapshots[0].guid
    assert datasets["tank/data/a b:c.d-e_f"].snapshots[0].name == "s 1:2"
    assert datasets["tank/vol1"].kind == "volume"
    assert datasets["pool/nas/tank/data"].resume_token is not None
    assert datasets["pool/nas/tank/data"].resume_token.startswith("1-e604ea4bf-e0-")
    assert datasets["tank"].resume_token is None
    assert datasets["tank/data"].guid == 9876543210123456789


def test_real_openzfs_2_1_listing() -> None:
    datasets = parse_zfs_list((DATA / "real-zfs-list.txt").read_text(), "vm")
    data = datasets["src/data"]
    assert [s.name for s in data.snapshots] == [f"zrepl_20261124_{h}0000" for h in (10, 11, 12)]
    assert data.snapshots[2].userrefs == 2
    assert [(b.name, b.guid) for b in data.bookmarks] == [("zrepl_20261124_100000", data.snapshots[0].guid)]
    spaced = datasets["src/data/with space"]
    assert spaced.snapshots[-1].name == "snap with space" and spaced.bookmarks[0].name == "book mark"
    assert datasets["src/data/colon:name"].snapshots[-1].name == "zrepl_2026-11-24T12:00:00Z"
    assert datasets["src/vol"].kind == "volume"
    partial = datasets["dst/partial-full"]
    assert partial.resume_token is not None and not partial.snapshots
    assert datasets["dst/partial-incr"].resume_token is not None
    assert "%recv" not in "".join(datasets)


def test_real_openzfs_2_1_holds() -> None:
    holds = parse_zfs_holds((DATA / "real-zfs-holds.txt").read_text(), "vm")
    assert holds == {"src/data@zrepl_20261124_120000": ("keep", "tag with space"),
                     "src/data/nested@zrepl_20261124_100000": ("zrepl_hold",)}
    assert parse_zfs_holds((DATA / "real-zfs-holds-none.txt").read_text(), "vm") == {}


def test_holds_parse() -> None:
    holds = parse_zfs_holds((DATA / "holds-documented.txt").read_text(), "nas")
    assert holds == {"tank/data@zrepl_20231114_230000_000": ("zrepl_STEP_J_backup",),
                     "tank/data@manual before-upgrade": ("keep", "legal hold: 2023")}
    assert parse_zfs_holds("", "nas") == {}


def test_empty_listing_is_a_host_without_pools() -> None:
    assert parse_zfs_list("", "h") == {}


def test_out_of_order_snapshots_are_sorted_by_createtxg() -> None:
    text = "\n".join([GOOD_FS, "tank/a@late\tsnapshot\t13\t9\t1\t0\t1\t1\t-\toff\t-\t-", GOOD_SNAP]) + "\n"
    assert [s.name for s in parse_zfs_list(text, "h")["tank/a"].snapshots] == ["s1", "late"]


HOSTILE = {
    "wrong column count": GOOD_FS + "\textra",
    "too few columns": "tank/a\tfilesystem\t11",
    "forbidden character": "tank/a$b\tfilesystem\t11\t4\t1\t-\t0\t0\t-\toff\t-\t-",
    "quote": "tank/a'b\tfilesystem\t11\t4\t1\t-\t0\t0\t-\toff\t-\t-",
    "non-ascii": "tank/ä\tfilesystem\t11\t4\t1\t-\t0\t0\t-\toff\t-\t-",
    "carriage return": GOOD_FS + "\r",
    "non-numeric guid": "tank/a\tfilesystem\t0x11\t4\t1\t-\t0\t0\t-\toff\t-\t-",
    "negative guid": "tank/a\tfilesystem\t-11\t4\t1\t-\t0\t0\t-\toff\t-\t-",
    "guid too large": "tank/a\tfilesystem\t18446744073709551616\t4\t1\t-\t0\t0\t-\toff\t-\t-",
    "zero guid": "tank/a\tfilesystem\t0\t4\t1\t-\t0\t0\t-\toff\t-\t-",
    "underscore number": "tank/a\tfilesystem\t1_1\t4\t1\t-\t0\t0\t-\toff\t-\t-",
    "unknown type": "tank/a\tzvol\t11\t4\t1\t-\t0\t0\t-\toff\t-\t-",
    "empty component": "tank//a\tfilesystem\t11\t4\t1\t-\t0\t0\t-\toff\t-\t-",
    "trailing slash": "tank/a/\tfilesystem\t11\t4\t1\t-\t0\t0\t-\toff\t-\t-",
    "pool not a letter": "1tank\tfilesystem\t11\t4\t1\t-\t0\t0\t-\toff\t-\t-",
    "snapshot without @": "tank/a\tsnapshot\t12\t5\t1\t0\t1\t1\t-\toff\t-\t-",
    "filesystem with @": "tank/a@x\tfilesystem\t12\t5\t1\t-\t1\t1\t-\toff\t-\t-",
    "two @": "tank/a@x@y\tsnapshot\t12\t5\t1\t0\t1\t1\t-\toff\t-\t-",
    "bookmark with @": "tank/a@x\tbookmark\t12\t5\t1\t-\t-\t-\t-\t-\t-\t-",
    "empty snapshot name": "tank/a@\tsnapshot\t12\t5\t1\t0\t1\t1\t-\toff\t-\t-",
    "userrefs not numeric": "tank/a@s\tsnapshot\t12\t5\t1\tx\t1\t1\t-\toff\t-\t-",
    "header line": "NAME\tTYPE\tGUID\tCREATETXG\tCREATION\tUSERREFS\tWRITTEN\tREFER\tRECEIVE_RESUME_TOKEN",
    "blank line": "",
    "human-readable numbers": "tank/a\tfilesystem\t11\t4\tTue Nov 14 22:13 2023\t-\t0\t0\t-\toff\t-\t-",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_lines_are_rejected_with_host_and_line_number(case: str) -> None:
    text = GOOD_FS + "\n" + HOSTILE[case] + "\n" + GOOD_SNAP.replace("@s1", "@s9") + "\n"
    with pytest.raises(GatherError) as info:
        parse_zfs_list(text, "backup")
    assert info.value.host == "backup" and info.value.code == "bad_output"
    assert "host 'backup'" in str(info.value) and "line 2" in str(info.value)


def test_snapshot_before_its_dataset_is_rejected() -> None:
    with pytest.raises(GatherError, match="line 1: snapshot of 'tank/a' before that dataset"):
        parse_zfs_list(GOOD_SNAP + "\n" + GOOD_FS + "\n", "h")


def test_duplicate_dataset_is_rejected() -> None:
    with pytest.raises(GatherError, match="line 2: dataset 'tank/a' listed twice"):
        parse_zfs_list(GOOD_FS + "\n" + GOOD_FS + "\n", "h")


def test_hostile_holds_are_rejected() -> None:
    for text in ("tank/a\tkeep\tTue Nov 14 22:13 2023", "tank/a@s", "tank/a@s\t\tTue", "ta$nk/a@s\tk\tTue"):
        with pytest.raises(GatherError, match="zfs holds output at line 1"):
            parse_zfs_holds(text + "\n", "h")


COMPONENT = st.text(alphabet="abcXYZ019_.:- ", min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(COMPONENT, st.lists(COMPONENT, max_size=4, unique=True)), min_size=1, max_size=5,
                unique_by=lambda t: t[0]))
def test_any_legal_names_round_trip(tree: list[tuple[str, list[str]]]) -> None:
    lines = ["tank\tfilesystem\t1\t1\t1\t-\t0\t0\t-\toff\t-\t-"]
    guid = 100
    for child, snaps in tree:
        lines.append(f"tank/{child}\tvolume\t{guid}\t{guid}\t7\t-\t0\t0\t-\toff\t-\t-")
        for snap in snaps:
            guid += 1
            lines.append(f"tank/{child}@{snap}\tsnapshot\t{guid}\t{guid}\t7\t1\t5\t6\t-\toff\t-\t-")
            lines.append(f"tank/{child}#{snap}\tbookmark\t{guid}\t{guid}\t7\t-\t-\t-\t-\t-\t-\t-")
        guid += 1
    datasets = parse_zfs_list("\n".join(lines) + "\n", "h")
    for child, snaps in tree:
        ds = datasets[f"tank/{child}"]
        assert [s.name for s in ds.snapshots] == snaps == [b.name for b in ds.bookmarks]


DOCUMENTED = (DATA / "list-documented.txt").read_text()


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(DOCUMENTED) - 1),
       st.sampled_from(["", "\t", "\n", "\t-", "tank", "\n\n", "@", "#"]), st.integers(0, 2))
def test_mutated_output_is_parsed_or_rejected_as_bad_output(at: int, insert: str, drop: int) -> None:
    mutated = DOCUMENTED[:at] + insert + DOCUMENTED[at + drop:]
    try:
        datasets = parse_zfs_list(mutated, "h")
    except GatherError as exc:
        assert exc.code == "bad_output" and "line " in str(exc)
        return
    lines = [line for line in mutated.split("\n") if line]
    assert len(datasets) + sum(len(d.snapshots) + len(d.bookmarks) for d in datasets.values()) == len(lines)


def test_line_numbers_across_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.gather import parse

    monkeypatch.setattr(parse, "CHUNK_CHARS", 50)
    lines = [GOOD_FS] + [GOOD_SNAP.replace("@s1", f"@s{i}").replace("\t5\t", f"\t{i + 5}\t")
                         for i in range(40)]
    text = "\n".join(lines) + "\n"
    assert len(parse_zfs_list(text, "h")["tank/a"].snapshots) == 40
    lines[33] = lines[33].replace("\tsnapshot\t", "\tsnapshots\t")
    with pytest.raises(GatherError, match="line 34: unknown dataset type 'snapshots'"):
        parse_zfs_list("\n".join(lines), "h")
