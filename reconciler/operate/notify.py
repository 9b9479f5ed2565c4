"""systemd's notify protocol (sd_notify(3)) with the standard library: datagrams of
``KEY=value`` lines to the unix socket named by ``$NOTIFY_SOCKET`` (a name starting with
``@`` is in the abstract namespace). Without ``NOTIFY_SOCKET`` (not under systemd, or
``Type=`` other than notify) every call does nothing. A lost message is not an error: the
service works the same, systemd only knows less.

The watchdog (``WatchdogSec=``): when systemd sets ``WATCHDOG_USEC`` (for this process:
``WATCHDOG_PID``, when set, is ours), a thread sends ``WATCHDOG=1`` every half period while
the process lives, so a cycle with a transfer of many hours does not trip it, while a
process that is frozen (stopped, swapping to death, deadlocked in the interpreter) does.
A command that hangs is ended by its own timeouts (command_timeout, stall detection).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + raw[1:] if raw.startswith("@") else raw
        self.watchdog_seconds = _watchdog_seconds(env)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """One datagram of ``KEY=value`` lines; False when it could not be sent (or no socket)."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(fields).encode(), self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={one_line(status)}")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={one_line(text)}")

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", f"STATUS={one_line(status)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    @contextmanager
    def watchdog_pings(self) -> Iterator[None]:
        """Ping the watchdog every half period for the duration (when systemd asks for it)."""
        if not self.enabled or self.watchdog_seconds is None:
            yield
            return
        done = threading.Event()
        period = self.watchdog_seconds / 2

        def ping() -> None:
            while not done.is_set():
                self.watchdog()
                done.wait(period)

        thread = threading.Thread(target=ping, name="sd-watchdog", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=5)


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (one that started us)
    return int(usec) / 1e6


def one_line(text: str) -> str:
    """STATUS= is one line: a newline would start another field."""
    return " ".join(text.split())[:400]
