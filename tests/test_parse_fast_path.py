"""The column-at-a-time fast path of the zfs list parser against the row-by-row reference.

``parse_columns`` must return exactly what ``_parse_rows`` returns, or None (step aside):
never accept a listing the reference rejects, never differ on one it accepts. Hypothesis
builds valid listings of every shape zfs prints (and some it does not), then damages
them one character or one line at a time; pieces are made tiny so runs of snapshots,
bookmarks and datasets straddle piece boundaries.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.domain.observed import Dataset
from reconciler.errors import GatherError
from reconciler.gather import parse
from reconciler.gather.parse_columns import parse_columns

DATA = Path(__file__).parent / "data" / "zfs"
TOKEN = "1-e604ea4bf-e0-789c63a2a0a2a0a6a0a4a0a2c9200c1b280cf030050000b6c60c3b"
NAME_CHARS = "abz09_.:- "
DAMAGE = ["\t", "\n", "@", "#", "-", "_", " ", "0", "9", "a", "/", "\r", "ä", "", "\t\t", "\n\n", "+", "x",
          "off", "A", "-\t-"]


def fast_path(text: str) -> dict[str, Dataset] | None:
    """The fast path as parse_zfs_list offers it the text: in pieces, with a fresh reference parse."""
    return parse_columns(parse._pieces(text), parse._Builder("h"))


def reference(text: str) -> dict[str, Dataset] | GatherError:
    try:
        parse.check_characters(text, "h")
        return parse._parse_rows(text, "h")
    except GatherError as exc:
        return exc


def check_agrees(text: str) -> bool:
    """True when the fast path took the text (and agreed), False when it stepped aside."""
    fast = fast_path(text)
    expected = reference(text)
    if fast is None:
        return False
    assert not isinstance(expected, GatherError), (text, expected)
    assert fast == expected, text
    # The order of datasets is part of the result too (zfs's listing order).
    assert list(fast) == list(expected)
    return True


ENCRYPTIONS = [("off", "-", "-"), ("off", "-", "-"), ("aes-256-gcm", "tank", "available"),
               ("aes-128-ccm", "tank/enc root", "unavailable")]


@st.composite
def listings(draw: st.DrawFn) -> str:
    lines: list[str] = []
    txg = draw(st.integers(1, 5))
    for index in range(draw(st.integers(1, 4))):
        name = "tank" if index == 0 else f"tank/{draw(st.text(NAME_CHARS, min_size=1, max_size=6))}{index}"
        kind = draw(st.sampled_from(["filesystem", "filesystem", "volume"]))
        token = TOKEN if draw(st.integers(0, 9)) == 0 else "-"
        written = draw(st.sampled_from(["0", "4096", "-"]))
        encryption = "\t".join(draw(st.sampled_from(ENCRYPTIONS)))
        lines.append(f"{name}\t{kind}\t{100 + index}\t{txg}\t1700000000\t-\t{written}\t8192\t{token}"
                     f"\t{encryption}")
        snaps = []
        for snap in range(draw(st.integers(0, 6))):
            txg += draw(st.integers(0, 3))
            short = draw(st.text(NAME_CHARS, min_size=1, max_size=5)) + str(snap)
            refs = draw(st.sampled_from(["0", "0", "0", "2"]))
            sizes = draw(st.sampled_from(["0", "512", "-"]))
            guid = draw(st.sampled_from([str(1000 + txg * 10 + snap), str((1 << 64) - 1 - snap)]))
            # Mostly the dataset's own values; sometimes another valid one (a key loaded while
            # zfs listed the dataset's snapshots).
            other = "\t".join(draw(st.sampled_from(ENCRYPTIONS)))
            snap_encryption = encryption if draw(st.integers(0, 5)) else other
            snaps.append(f"{name}@{short}\tsnapshot\t{guid}\t{txg}\t{1700000000 + snap}\t{refs}\t{sizes}\t"
                         f"{sizes}\t-\t{snap_encryption}")
        if draw(st.booleans()):
            snaps.reverse()  # valid, unusual: the fast path marks the dataset unsorted
        lines.extend(snaps)
        for mark in range(draw(st.integers(0, 2))):
            lines.append(f"{name}#b{mark}\tbookmark\t{900 + mark}\t{txg + mark}\t1700000000"
                         "\t-\t-\t-\t-\t-\t-\t-")
    if draw(st.booleans()) and len(lines) > 2:
        # A snapshot line after a later dataset's lines (valid; the fast path steps aside).
        lines.append(lines.pop(1))
    text = "\n".join(lines)
    return text + "\n" if draw(st.booleans()) else text


@settings(max_examples=150, deadline=None)
@given(listings(), st.sampled_from([40, 200, 1 << 16]))
def test_fast_path_agrees_on_valid_listings(text: str, chunk: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parse, "CHUNK_CHARS", chunk)
        check_agrees(text)


@pytest.mark.soak  # long: CI runs it in the soak suite (tests/run), not the fast one
@settings(max_examples=1500, deadline=None)
@given(listings(), st.data(), st.sampled_from([40, 1 << 16]))
def test_fast_path_never_accepts_what_the_reference_rejects(text: str, data: st.DataObject,
                                                            chunk: int) -> None:
    for _ in range(data.draw(st.integers(1, 2))):
        at = data.draw(st.integers(0, len(text)))
        drop = data.draw(st.integers(0, 2))
        text = text[:at] + data.draw(st.sampled_from(DAMAGE)) + text[at + drop:]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parse, "CHUNK_CHARS", chunk)
        check_agrees(text)


FS = "tank\tfilesystem\t1\t1\t1\t-\t0\t0\t-\toff\t-\t-\n"


def snap(name: str = "tank@a", guid: str = "2", txg: str = "2", creation: str = "1", refs: str = "0",
         written: str = "0", token: str = "-") -> str:
    return f"{name}\tsnapshot\t{guid}\t{txg}\t{creation}\t{refs}\t{written}\t0\t{token}\toff\t-\t-\n"


CRAFTED = {
    # Two lines whose column counts cancel out (10 + 8): the flat field list looks valid.
    "columns cancel out": FS[:-1] + "\ttank@a\n" + "snapshot\t2\t2\t1\t0\t0\t0\t-\n",
    "two lines joined": FS[:-1] + "\t" + snap(),
    "snapshot with userrefs -": FS + snap(refs="-"),
    "filesystem with userrefs 0": FS.replace("\t-\t0", "\t0\t0", 1) + snap(refs="-"),
    "snapshot with a token": FS + snap(token=TOKEN),
    "negative zero txg": FS + snap(txg="-0"),
    "underscore in guid": FS + snap(guid="2_2"),
    "space in creation": FS + snap(creation=" 1"),
    "dash inside size": FS + snap(written="1-2"),
    "empty size": FS + snap(written=""),
    "snapshot of another dataset": FS + snap(name="tank/b@a"),
    "prefix of the dataset name": FS.replace("tank", "tank/b") + snap(name="tank/bb@a"),
    "guid 2**64": FS + snap(guid=str(1 << 64)),
    "zero guid": FS + snap(guid="0"),
    "hash in snapshot, bookmark without": FS + snap(name="tank@a#b"),
    # The encryption columns (encryption, encryptionroot, keystatus).
    "snapshot with encryption -": FS + snap().replace("\toff\t-\t-", "\t-\t-\t-"),
    "snapshot with keystatus loaded": FS + snap().replace("\toff\t-\t-", "\toff\t-\tloaded"),
    "snapshot with an @ in its encryption root": FS + snap().replace("\toff\t-\t-", "\taes-256-gcm\tt@x\t-"),
    "snapshot with an upper-case cipher": FS + snap().replace("\toff\t-\t-", "\tAES\t-\t-"),
    "bookmark with encryption off": FS + snap() + "tank#b\tbookmark\t2\t2\t1\t-\t-\t-\t-\toff\t-\t-\n",
    "unencrypted filesystem with a root": FS.replace("\toff\t-\t-", "\toff\ttank\t-") + snap(),
    "encrypted filesystem without keystatus": FS.replace("\toff\t-\t-", "\taes-256-gcm\ttank\t-") + snap(),
    "encrypted filesystem without root": FS.replace("\toff\t-\t-", "\taes-256-gcm\t-\tavailable") + snap(),
    "one encryption column missing": FS + snap().replace("\toff\t-\t-", "\toff\t-"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_listings_are_rejected_with_the_references_error(case: str) -> None:
    text = CRAFTED[case]
    assert fast_path(text) is None
    with pytest.raises(GatherError) as raised:
        parse.parse_zfs_list(text, "h")
    assert raised.value.code == "bad_output" and "line " in str(raised.value)


@pytest.mark.parametrize("path", sorted(DATA.glob("list-*.txt")) + sorted(DATA.glob("real-zfs-list*.txt")),
                         ids=lambda p: p.name)
def test_captured_listings_take_the_fast_path(path: Path) -> None:
    assert check_agrees(path.read_text()), "the fast path stepped aside on real zfs output"


def test_encryption_columns_are_read_by_both_paths() -> None:
    text = ("tank\tfilesystem\t1\t1\t1\t-\t0\t0\t-\toff\t-\t-\n"
            "tank/enc\tfilesystem\t2\t2\t1\t-\t0\t0\t-\taes-256-gcm\ttank/enc\tunavailable\n"
            "tank/enc@a\tsnapshot\t3\t3\t1\t0\t0\t0\t-\taes-256-gcm\ttank/enc\tunavailable\n"
            # The key was loaded between the dataset's line and this one: valid too.
            "tank/enc@b\tsnapshot\t4\t4\t1\t0\t0\t0\t-\taes-256-gcm\ttank/enc\tavailable\n"
            "tank/enc#a\tbookmark\t3\t3\t1\t-\t-\t-\t-\t-\t-\t-\n")
    assert check_agrees(text)
    datasets = parse.parse_zfs_list(text, "h")
    enc = datasets["tank/enc"]
    assert (enc.encryption, enc.encryption_root, enc.key_status) == ("aes-256-gcm", "tank/enc", "unavailable")
    assert enc.encrypted and not enc.key_loaded
    assert (datasets["tank"].encryption, datasets["tank"].encryption_root) == ("off", None)
    assert not datasets["tank"].encrypted


def test_sizes_are_converted_on_first_read_and_compare_equal() -> None:
    text = ("tank\tfilesystem\t1\t1\t1\t-\t0\t0\t-\toff\t-\t-\n"
            "tank@a\tsnapshot\t2\t2\t1\t0\t4096\t-\t-\toff\t-\t-\n")
    (snap,) = parse.parse_zfs_list(text, "h")["tank"].snapshots
    assert (snap.written, snap.referenced) == (4096, None)
    assert snap == parse._parse_rows(text, "h")["tank"].snapshots[0]


def long_name_listing(kind: str, length: int) -> tuple[str, int]:
    """A valid listing but for one name of ``length`` bytes (dataset@snapshot and
    dataset#bookmark counted whole, as zfs counts them); the 1-based line of that name."""
    head = FS + "tank/d\tfilesystem\t3\t3\t1\t-\t0\t0\t-\toff\t-\t-\n"
    if kind == "dataset":
        name = "tank/" + "d" * (length - len("tank/"))
        return FS + snap() + f"{name}\tfilesystem\t3\t3\t1\t-\t0\t0\t-\toff\t-\t-\n", 3
    if kind == "snapshot":
        name = "tank/d@" + "s" * (length - len("tank/d@"))
        # Runs of snapshots before and after it: it is one of several names of its run.
        return head + snap("tank/d@a", "4", "4") + snap(name, "5", "5") + snap("tank/d@b", "6", "6"), 4
    name = "tank/d#" + "b" * (length - len("tank/d#"))
    return head + snap("tank/d@a", "4", "4") + f"{name}\tbookmark\t5\t5\t1\t-\t-\t-\t-\t-\t-\t-\n", 4


@pytest.mark.parametrize("kind", ["dataset", "snapshot", "bookmark"])
def test_a_name_of_255_bytes_takes_the_fast_path(kind: str) -> None:
    text, _ = long_name_listing(kind, 255)
    assert check_agrees(text)


@pytest.mark.parametrize("length", [256, 10 << 20])
@pytest.mark.parametrize("kind", ["dataset", "snapshot", "bookmark"])
def test_a_name_longer_than_zfs_allows_is_bad_output_with_a_short_message(kind: str, length: int) -> None:
    """zfs cannot print such a name (ZFS_MAX_DATASET_NAME_LEN): the host's output is
    broken, and the message names the line, not the whole name."""
    text, line = long_name_listing(kind, length)
    assert fast_path(text) is None
    with pytest.raises(GatherError) as raised:
        parse.parse_zfs_list(text, "h")
    message = str(raised.value)
    assert raised.value.code == "bad_output"
    assert f"at line {line}: a name of {length} bytes (zfs allows at most 255)" in message
    assert len(message) < 400 and ("more bytes)" in message) == (length > 200)
