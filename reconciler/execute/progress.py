"""Where apply reports live: one line per finished action, a bar per transfer.

Rich bars on a terminal, plain lines for logs (journald, CI), nothing in tests.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Column

from reconciler.wording import human_bytes


class TransferProgress(Protocol):
    def update(self, done: int) -> None: ...

    def finish(self, done: int, ok: bool) -> None: ...


class ProgressSink(Protocol):
    """Where apply reports live: one line per finished action, a bar per transfer."""

    def line(self, text: str) -> None: ...

    def transfer(self, label: str, total: int | None) -> TransferProgress: ...


class _NullTransfer:
    def update(self, done: int) -> None:
        pass

    def finish(self, done: int, ok: bool) -> None:
        pass


class NullProgress:
    def line(self, text: str) -> None:
        pass

    def transfer(self, label: str, total: int | None) -> TransferProgress:
        return _NullTransfer()


def human_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(s)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class _LogTransfer:
    """Plain progress for logs (journald, CI): a line every ``interval`` s or each 10 %."""

    def __init__(self, out: TextIO, label: str, total: int | None, interval: float) -> None:
        self.out, self.label, self.total, self.interval = out, label, total, interval
        self.start = self.last_time = time.monotonic()
        self.last_decile = 0

    def _status(self, done: int) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = done / elapsed
        text = f"{self.label}: {human_bytes(done)}"
        if self.total and done > self.total:
            # zfs send -nP underestimates small incrementals (real 2.1: 624 B for a 1.5 KiB
            # stream): no percentage or negative ETA past the estimate.
            text += f" (estimated {human_bytes(self.total)}), {human_bytes(rate)}/s"
        elif self.total:
            pct = min(100.0, 100.0 * done / self.total)
            eta = (self.total - done) / rate if rate > 0 else math.inf
            text += (f" / {human_bytes(self.total)} ({pct:.0f} %), {human_bytes(rate)}/s,"
                     f" ETA {human_seconds(eta)}")
        else:
            text += f", {human_bytes(rate)}/s"
        return text

    def update(self, done: int) -> None:
        now = time.monotonic()
        decile = int(10 * done / self.total) if self.total else 0
        if now - self.last_time >= self.interval or decile > self.last_decile:
            self.last_time, self.last_decile = now, decile
            print(self._status(done), file=self.out, flush=True)

    def finish(self, done: int, ok: bool) -> None:
        pass  # the apply report's line for the send gives bytes and time


class LogProgress:
    def __init__(self, out: TextIO | None = None, interval: float = 10.0) -> None:
        self.out = out or sys.stderr
        self.interval = interval

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def transfer(self, label: str, total: int | None) -> TransferProgress:
        return _LogTransfer(self.out, label, total, self.interval)


class _RichTransfer:
    def __init__(self, sink: RichProgress, label: str, total: int | None) -> None:
        # The label gives way (ellipsis) before the numbers do on a narrow terminal.
        label_column = Column(ratio=1, no_wrap=True, overflow="ellipsis", min_width=10)
        self.progress = Progress(TextColumn("{task.description}", table_column=label_column),
                                 BarColumn(bar_width=24), DownloadColumn(binary_units=True),
                                 TransferSpeedColumn(), TimeRemainingColumn(),
                                 console=sink.console, transient=False, expand=True)
        self.task = self.progress.add_task(label, total=total)
        self.progress.start()

    def update(self, done: int) -> None:
        self.progress.update(self.task, completed=done)

    def finish(self, done: int, ok: bool) -> None:
        task = self.progress.tasks[0]
        self.progress.update(self.task, completed=done,
                             total=done if ok and task.total is not None else task.total)
        self.progress.stop()


class RichProgress:
    """A rich bar per transfer (bytes, rate, ETA) for terminals."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console if console is not None else Console(stderr=True)

    def line(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def transfer(self, label: str, total: int | None) -> TransferProgress:
        return _RichTransfer(self, label, total)


def progress_for_terminal(stream: TextIO | None = None) -> ProgressSink:
    """Rich bars on a TTY, plain log lines otherwise (NO_COLOR only drops colour)."""
    stream = stream or sys.stderr
    if stream.isatty() and os.environ.get("TERM") != "dumb":
        return RichProgress()
    return LogProgress(stream)
