"""OpenZFS ``receive_resume_token`` values: decode (to plan a resume) and encode (for tests).

The format is the one of OpenZFS's ``get_receive_resume_token`` (module/zfs/dsl_dataset.c)
and ``zfs_send_resume_token_to_nvlist`` (lib/libzfs/libzfs_sendrecv.c)::

    <version>-<checksum hex>-<packed size hex>-<hex of zlib-compressed packed nvlist>

- version is 1;
- checksum is word 0 of the Fletcher-4 checksum of the COMPRESSED bytes (the sum of
  its little-endian 32-bit words modulo 2**64; a trailing partial word is ignored);
- packed size is the length of the packed nvlist before compression;
- the nvlist is packed by ``fnvlist_pack``, i.e. ``NV_ENCODE_NATIVE`` (on every Linux
  and FreeBSD host we meet: little-endian). XDR-packed lists are decoded too.

The nvlist holds ``fromguid`` (incremental sends only), ``object``, ``offset``,
``bytes``, ``toguid``, ``toname`` (``pool/fs@snap``) and booleans such as ``embedok``,
``compressok``, ``largeblockok``, ``rawok``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

TOKEN_VERSION = 1

# nvpair data types (sys/nvpair.h) that appear in resume tokens.
_BOOLEAN = 1
_UINT64 = 8
_STRING = 9

_NV_ENCODE_NATIVE = 0
_NV_ENCODE_XDR = 1
_NV_VERSION = 0
_NV_UNIQUE_NAME = 1

NvValue = int | str | bool


@dataclass(frozen=True, slots=True)
class ResumeInfo:
    toguid: int
    toname: str  # "pool/fs@snap"
    fromguid: int = 0  # 0 for a full send
    object: int = 0
    offset: int = 0
    bytes: int = 0
    fields: dict[str, NvValue] = field(default_factory=dict, compare=False)

    @property
    def snapshot(self) -> str:
        """Short name of the snapshot being received."""
        return self.toname.rpartition("@")[2]

    @property
    def dataset(self) -> str:
        return self.toname.partition("@")[0]


def fletcher4_word0(data: bytes) -> int:
    """Word 0 of ZFS's Fletcher-4 checksum: the sum of the little-endian 32-bit words."""
    count = len(data) // 4
    words: tuple[int, ...] = struct.unpack_from(f"<{count}I", data)
    return sum(words) & 0xFFFFFFFFFFFFFFFF


def decode_resume_token(token: str) -> ResumeInfo | None:
    """The fields of an OpenZFS resume token, or None if it is not a valid token."""
    try:
        return _decode(token.strip())
    except (ValueError, struct.error, zlib.error, IndexError, UnicodeDecodeError):
        return None


def _decode(token: str) -> ResumeInfo | None:
    version_text, checksum_text, size_text, payload_hex = token.split("-", 3)
    if int(version_text) != TOKEN_VERSION:
        return None
    compressed = bytes.fromhex(payload_hex)
    if fletcher4_word0(compressed) != int(checksum_text, 16):
        return None
    packed = zlib.decompress(compressed)
    if len(packed) != int(size_text, 16):
        return None
    values = unpack_nvlist(packed)
    toguid, toname = values.get("toguid"), values.get("toname")
    if not isinstance(toguid, int) or isinstance(toguid, bool) or not isinstance(toname, str):
        return None
    return ResumeInfo(toguid=toguid, toname=toname, fromguid=_int(values, "fromguid"),
                      object=_int(values, "object"), offset=_int(values, "offset"),
                      bytes=_int(values, "bytes"), fields=values)


def _int(values: dict[str, NvValue], key: str) -> int:
    value = values.get(key, 0)
    return value if isinstance(value, int) else 0


def encode_resume_token(toguid: int, toname: str, fromguid: int = 0, bytes_: int = 0, *,
                        object_: int = 1, offset: int = 0,
                        flags: tuple[str, ...] = ("embedok", "compressok", "largeblockok")) -> str:
    """A token in the exact format OpenZFS writes (native little-endian nvlist, zlib level 6)."""
    pairs: list[tuple[str, NvValue]] = []
    if fromguid:
        pairs.append(("fromguid", fromguid))
    pairs += [("object", object_), ("offset", offset), ("bytes", bytes_), ("toguid", toguid),
              ("toname", toname)]
    pairs += [(flag, True) for flag in flags]
    packed = pack_nvlist_native(pairs)
    compressed = zlib.compress(packed, 6)
    return f"{TOKEN_VERSION}-{fletcher4_word0(compressed):x}-{len(packed):x}-{compressed.hex()}"


# ------------------------------------------------------------------ native encoding


def _align8(n: int) -> int:
    return (n + 7) & ~7


def pack_nvlist_native(pairs: list[tuple[str, NvValue]]) -> bytes:
    """``nvlist_pack(NV_ENCODE_NATIVE)`` on a little-endian host, for uint64/string/boolean pairs."""
    out = bytearray(bytes([_NV_ENCODE_NATIVE, 1, 0, 0]))
    out += struct.pack("<iI", _NV_VERSION, _NV_UNIQUE_NAME)
    for name, value in pairs:
        name_bytes = name.encode() + b"\0"
        if isinstance(value, bool):
            dtype, nelem, data = _BOOLEAN, 0, b""
        elif isinstance(value, int):
            dtype, nelem, data = _UINT64, 1, struct.pack("<Q", value)
        else:
            dtype, nelem, data = _STRING, 1, value.encode() + b"\0"
        head_len = _align8(16 + len(name_bytes))
        size = head_len + _align8(len(data))
        pair = bytearray(struct.pack("<ihhii", size, len(name_bytes), 0, nelem, dtype))
        pair += name_bytes
        pair += b"\0" * (head_len - len(pair))
        pair += data
        pair += b"\0" * (size - len(pair))
        out += pair
    out += b"\0\0\0\0"  # end of list
    return bytes(out)


def unpack_nvlist(packed: bytes) -> dict[str, NvValue]:
    """The top-level uint64, string and boolean pairs of a packed nvlist (others skipped)."""
    if len(packed) < 4:
        raise ValueError("nvlist too short")
    encoding, endian = packed[0], packed[1]
    if encoding == _NV_ENCODE_NATIVE:
        return _unpack_native(packed, "<" if endian == 1 else ">")
    if encoding == _NV_ENCODE_XDR:
        return _unpack_xdr(packed)
    raise ValueError(f"unknown nvlist encoding {encoding}")


def _unpack_native(packed: bytes, order: str) -> dict[str, NvValue]:
    values: dict[str, NvValue] = {}
    pos = 4 + 8  # header, then nvl_version and nvl_nvflag
    while True:
        (size,) = struct.unpack_from(f"{order}i", packed, pos)
        if size == 0:
            return values
        if size < 16:
            raise ValueError("corrupt nvpair size")
        _, name_len, _, _nelem, dtype = struct.unpack_from(f"{order}ihhii", packed, pos)
        name = packed[pos + 16:pos + 16 + name_len].rstrip(b"\0").decode()
        data_pos = pos + _align8(16 + name_len)
        if dtype == _UINT64:
            (values[name],) = struct.unpack_from(f"{order}Q", packed, data_pos)
        elif dtype == _STRING:
            end = packed.index(b"\0", data_pos)
            values[name] = packed[data_pos:end].decode()
        elif dtype == _BOOLEAN:
            values[name] = True
        pos += size


def _unpack_xdr(packed: bytes) -> dict[str, NvValue]:
    values: dict[str, NvValue] = {}
    pos = 4 + 8
    while True:
        encoded_size, decoded_size = struct.unpack_from(">ii", packed, pos)
        if encoded_size == 0 and decoded_size == 0:
            return values
        if encoded_size < 8:
            raise ValueError("corrupt nvpair size")
        cursor = pos + 8
        (name_len,) = struct.unpack_from(">I", packed, cursor)
        name = packed[cursor + 4:cursor + 4 + name_len].decode()
        cursor += 4 + ((name_len + 3) & ~3)
        dtype, _nelem = struct.unpack_from(">ii", packed, cursor)
        cursor += 8
        if dtype == _UINT64:
            (values[name],) = struct.unpack_from(">Q", packed, cursor)
        elif dtype == _STRING:
            (length,) = struct.unpack_from(">I", packed, cursor)
            values[name] = packed[cursor + 4:cursor + 4 + length].decode()
        elif dtype == _BOOLEAN:
            values[name] = True
        pos += encoded_size
