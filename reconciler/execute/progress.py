"""Where apply reports live: one line per finished action, a bar per transfer.

Rich bars on a terminal, plain lines for logs (journald, CI), nothing in tests. Both are
safe to use from parallel sends: on a terminal one live display holds a bar per running
transfer; in a log every line is written whole, under a lock, never interleaved mid-line.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
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

    def __init__(self, sink: LogProgress, label: str, total: int | None, interval: float) -> None:
        self.sink, self.label, self.total, self.interval = sink, label, total, interval
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
            self.sink.line(self._status(done))

    def finish(self, done: int, ok: bool) -> None:
        pass  # the apply report's line for the send gives bytes and time


class LogProgress:
    def __init__(self, out: TextIO | None = None, interval: float = 10.0) -> None:
        self.out = out or sys.stderr
        self.interval = interval
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        """One whole line in one write (print writes the text and its newline apart)."""
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def transfer(self, label: str, total: int | None) -> TransferProgress:
        return _LogTransfer(self, label, total, self.interval)


class _RichTransfer:
    def __init__(self, sink: RichProgress, label: str, total: int | None) -> None:
        self.sink = sink
        self.task = sink.add(label, total)

    def update(self, done: int) -> None:
        self.sink.progress.update(self.task, completed=done)

    def finish(self, done: int, ok: bool) -> None:
        self.sink.finish(self.task, done, ok)


class RichProgress:
    """A rich bar per running transfer (bytes, rate, ETA) for terminals: one live display
    for all of them (rich allows one at a time), started with the first transfer and
    stopped when the last one ends; a finished transfer's bar stays above the running ones."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console if console is not None else Console(stderr=True)
        # The label gives way (ellipsis) before the numbers do on a narrow terminal.
        label_column = Column(ratio=1, no_wrap=True, overflow="ellipsis", min_width=10)
        self.progress = Progress(TextColumn("{task.description}", table_column=label_column),
                                 BarColumn(bar_width=24), DownloadColumn(binary_units=True),
                                 TransferSpeedColumn(), TimeRemainingColumn(),
                                 console=self.console, transient=False, expand=True)
        self._lock = threading.Lock()
        self._running = 0

    def line(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def add(self, label: str, total: int | None) -> TaskID:
        with self._lock:
            if self._running == 0:
                self.progress.start()
            self._running += 1
            return self.progress.add_task(label, total=total)

    def finish(self, task: TaskID, done: int, ok: bool) -> None:
        with self._lock:
            total = self.progress.tasks[self.progress.task_ids.index(task)].total
            self.progress.update(task, completed=done, total=done if ok and total is not None else total)
            self.progress.stop_task(task)
            self._running -= 1
            if self._running == 0:
                self.progress.stop()
                for finished in list(self.progress.task_ids):  # printed: the next display starts empty
                    self.progress.remove_task(finished)

    def transfer(self, label: str, total: int | None) -> TransferProgress:
        return _RichTransfer(self, label, total)


def progress_for_terminal(stream: TextIO | None = None) -> ProgressSink:
    """Rich bars on a TTY, plain log lines otherwise (NO_COLOR only drops colour)."""
    stream = stream or sys.stderr
    if stream.isatty() and os.environ.get("TERM") != "dumb":
        return RichProgress()
    return LogProgress(stream)
