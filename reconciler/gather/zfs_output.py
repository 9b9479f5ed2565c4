"""What ``zfs list`` and ``zfs holds`` output can hold, shared by every parser so they agree.

The reference row-by-row parse, its column fast path and the holds parser check against
these one set of characters and one GUID range: the fast path must never accept what the
reference refuses.
"""

from __future__ import annotations

import re

MAX_GUID = (1 << 64) - 1

# Everything that may appear in ``zfs list -H -p`` output of our columns: name characters
# (zfs(8) "Naming": alphanumerics, '_', '-', ':', '.', ' '), the delimiters '/', '@', '#',
# numbers, '-' for "not applicable", hex resume tokens, tabs and newlines.
FORBIDDEN = re.compile(r"[^A-Za-z0-9_.:\- /@#\t\n]")
# The same set as bytes: deleting them (bytes.translate) checks a whole text in one C pass.
ALLOWED_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:- /@#\t\n"
