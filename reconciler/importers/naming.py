"""Names the importers give: hosts (from an address, an identity or a file) and policies,
valid for our configuration and unique."""

from __future__ import annotations

import ipaddress
import re

from reconciler.config.models import HOST_NAME

_INVALID = re.compile(r"[^A-Za-z0-9_.-]+")


def host_name_from_address(address: str) -> str:
    """``backups.example.com`` -> ``backups``; an IP address -> ``host-10-0-0-1``."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return safe_name(address.split(".", 1)[0])
    return "host-" + re.sub(r"[.:]+", "-", str(ip)).strip("-")


def safe_name(text: str, fallback: str = "host") -> str:
    """``text`` as a host or policy name: letters, digits, '_', '.', '-', starting with a letter or digit."""
    name = _INVALID.sub("-", text).strip("-._")
    return name if name and HOST_NAME.match(name) else fallback


def unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``... when taken; the result is added to ``taken``."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate


_REGEX_SPECIAL = frozenset(".^$*+?{}[]\\|()")


def regex_literal(text: str) -> str:
    """``text`` as a regex matching it literally, escaping only what regexes treat specially
    (``re.escape`` also escapes '-' and ':', which makes snapshot names hard to read)."""
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text)
