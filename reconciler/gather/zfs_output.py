"""What ``zfs list`` and ``zfs holds`` output can hold, shared by every parser so they agree.

The reference row-by-row parse, its column fast path and the holds parser check against
these one set of characters and one GUID range: the fast path must never accept what the
reference refuses.
"""

from __future__ import annotations

import re

MAX_GUID = (1 << 64) - 1

# The columns of the one ``zfs list`` per host, in order (both parsers read exactly these).
LIST_COLUMNS: tuple[str, ...] = ("name", "type", "guid", "createtxg", "creation", "userrefs", "written",
                                 "referenced", "receive_resume_token", "encryption", "encryptionroot",
                                 "keystatus")

# Everything that may appear in ``zfs list -H -p`` output of our columns: name characters
# (zfs(8) "Naming": alphanumerics, '_', '-', ':', '.', ' '), the delimiters '/', '@', '#',
# numbers, '-' for "not applicable", hex resume tokens, tabs and newlines.
FORBIDDEN = re.compile(r"[^A-Za-z0-9_.:\- /@#\t\n]")
# The same set as bytes: deleting them (bytes.translate) checks a whole text in one C pass.
ALLOWED_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:- /@#\t\n"

# The encryption columns (encryption, encryptionroot, keystatus). zfs prints the cipher or
# "off"; the encryption root's name and the key's status, each "-" when unencrypted;
# a snapshot repeats its dataset's three values, a bookmark prints "-" for each.
ENCRYPTION = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
KEY_STATUSES = ("available", "unavailable")


def bad_encryption_root(value: str) -> bool:
    """Not a filesystem or volume name (see parse.bad_dataset_name: the same rules)."""
    return (not value or not value[0].isalpha() or value[-1] == "/" or "//" in value or "@" in value
            or "#" in value)


def snapshot_encryption_ok(column: int, value: str) -> bool:
    """Whether ``value`` may stand in encryption column ``column`` (0 encryption, 1
    encryptionroot, 2 keystatus) of a snapshot line: one value at a time, so a key loaded
    between a dataset's line and its snapshots' cannot make a listing invalid."""
    if column == 0:
        return ENCRYPTION.fullmatch(value) is not None
    if column == 1:
        return value == "-" or not bad_encryption_root(value)
    return value == "-" or value in KEY_STATUSES


def dataset_encryption_ok(encryption: str, root: str, key_status: str) -> bool:
    """The three columns of a filesystem or volume line, together."""
    if encryption == "off":
        return root == "-" and key_status == "-"
    return (ENCRYPTION.fullmatch(encryption) is not None and not bad_encryption_root(root)
            and key_status in KEY_STATUSES)
