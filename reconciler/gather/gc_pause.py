"""The garbage collector paused around gathering, by the code that owns the process.

Gathering a big host builds a million slotted records (snapshots) at once. Every new
object counts towards CPython's collection thresholds, so building them runs the collector
again and again, full collections included, and each pass walks records that hold no
reference cycles and finds nothing to free: pure cost (pausing it makes parsing ~20% faster). Afterwards the
records live as long as the facts; ``gc.freeze()`` (then ``gc.unfreeze()``) moves them,
with all else alive, straight to the oldest generation, so the young collections that
follow do not walk a million objects twice on their way there (~0.5 s).

Both are settings of the whole process: the command, the library call or the benchmark
that runs a gathering decides them, not the parser, which may run inside someone else's
program (apply's re-checks parse small listings mid-run).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """No garbage collection inside; what was built inside ends in the oldest generation.

    Nests: an inner pause leaves the collector as the outer one wants it.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if collecting:
            gc.enable()
