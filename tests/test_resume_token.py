"""OpenZFS receive_resume_token: decode real tokens, encode byte-exact, round trips."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.domain.resume_token import (
    decode_resume_token,
    encode_resume_token,
    pack_nvlist_native,
    unpack_nvlist,
)

# Tokens written by OpenZFS (published in zrepl's zfs/resume_token_test.go, ZoL 0.7 era).
REAL_FULL = ("1-bf31b879a-b8-789c636064000310a500c4ec50360710e72765a5269740f80cd8e4d3d28a534b18e00024cf8624"
             "9f5459925acc802a8facbf243fbd3433858161f5ddb9ab1ae7c7466a20c97382e5f312735319180af2f3730cf581"
             "66953824c2cc0200cde81651")
REAL_INCREMENTAL = (
    "1-c49b979a2-e0-789c636064000310a501c49c50360710a715e5e7a69766a63040c1eabb735735ce8f8d5400b2d991d4e5"
    "2765a5269740f82080219f96569c5ac2000720793624f9a4ca92d46206547964fd25f91057f09e37babb88c9bf5503499e"
    "132c9f97989bcac050909f9f63a80f34abc421096616007c881d4c")
DATA = Path(__file__).parent / "data" / "zfs"


def test_decode_real_full_token() -> None:
    info = decode_resume_token(REAL_FULL)
    assert info is not None
    assert (info.toguid, info.fromguid, info.toname) == (0x595D9F81AA9DDDAB, 0, "pool1/test@a")
    assert (info.snapshot, info.dataset, info.object, info.offset, info.bytes) == ("a", "pool1/test", 1, 0, 0)


def test_decode_real_incremental_token() -> None:
    info = decode_resume_token(REAL_INCREMENTAL)
    assert info is not None
    assert (info.toguid, info.fromguid) == (0x854F02A2DD32CF0D, 0x595D9F81AA9DDDAB)
    assert info.toname == "pool1/test@b"


def test_encode_reproduces_a_real_token_byte_for_byte() -> None:
    assert encode_resume_token(0x595D9F81AA9DDDAB, "pool1/test@a", flags=()) == REAL_FULL
    assert encode_resume_token(0x854F02A2DD32CF0D, "pool1/test@b", fromguid=0x595D9F81AA9DDDAB,
                               flags=()) == REAL_INCREMENTAL


@pytest.mark.parametrize("token", [
    "", "garbage", "2-bf31b879a-b8-789c63", "1-0-0-", REAL_FULL[:-6] + "012345",  # corrupted payload
    REAL_FULL.replace("1-bf31b879a", "1-bf31b879b"),  # wrong checksum
    REAL_FULL.replace("-b8-", "-b9-"),  # wrong packed size
])
def test_invalid_tokens_decode_to_none(token: str) -> None:
    assert decode_resume_token(token) is None


def test_decode_captured_tokens_from_real_openzfs() -> None:
    files = sorted(DATA.glob("real-*.txt")) if DATA.is_dir() else []
    tokens = [t for f in files for t in re.findall(r"\b1-[0-9a-f]+-[0-9a-f]+-789c[0-9a-f]+\b", f.read_text())]
    if not tokens:
        pytest.skip("no captured token in tests/data/zfs/real-*.txt yet (the QEMU suite writes them)")
    for token in tokens:
        info = decode_resume_token(token)
        assert info is not None, token
        assert "@" in info.toname and info.toguid


def test_xdr_encoded_nvlist_is_decoded() -> None:
    import struct

    def xdr_string(s: str) -> bytes:
        raw = s.encode()
        return struct.pack(">I", len(raw)) + raw + b"\0" * (-len(raw) % 4)

    def pair(name: str, dtype: int, value: bytes) -> bytes:
        body = xdr_string(name) + struct.pack(">ii", dtype, 1) + value
        return struct.pack(">ii", 8 + len(body), 0) + body

    packed = (bytes([1, 0, 0, 0]) + struct.pack(">iI", 0, 1) + pair("toguid", 8, struct.pack(">Q", 7))
              + pair("toname", 9, xdr_string("p/x@s")) + b"\0" * 8)
    assert unpack_nvlist(packed) == {"toguid": 7, "toname": "p/x@s"}


@settings(max_examples=100, deadline=None)
@given(toguid=st.integers(1, 2**64 - 1), fromguid=st.integers(0, 2**64 - 1), nbytes=st.integers(0, 2**63),
       name=st.from_regex(r"[a-z]{1,8}(/[a-z0-9 _.:-]{1,8}){0,3}@[a-zA-Z0-9_.:-]{1,20}", fullmatch=True))
def test_round_trip(toguid: int, fromguid: int, nbytes: int, name: str) -> None:
    info = decode_resume_token(encode_resume_token(toguid, name, fromguid=fromguid, bytes_=nbytes))
    assert info is not None
    assert (info.toguid, info.toname, info.fromguid, info.bytes) == (toguid, name, fromguid, nbytes)
    assert info.fields["compressok"] is True


def test_pack_unpack_native() -> None:
    pairs = [("a", 1), ("name", "x y"), ("flag", True)]
    assert unpack_nvlist(pack_nvlist_native(pairs)) == dict(pairs)  # type: ignore[arg-type]
