"""How numbers are worded for people, one spelling for every layer that words them.

The lowest layer (like ``codes``), so an action's ``describe()``, the planner's reasons,
rendering, the transfer progress and the commands all say "1 snapshot" and "1.2 GiB"
the same way.
"""

from __future__ import annotations


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """``1 snapshot``, ``2 snapshots``; ``plural_form`` where adding an "s" is wrong (entries)."""
    return f"{n} {singular if n == 1 else (plural_form or singular + 's')}"


def human_bytes(n: float) -> str:
    """Binary units, one decimal: ``512 B``, ``1.2 GiB``; TiB the largest."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
