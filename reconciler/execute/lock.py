"""One apply per configuration at a time.

The lock file name is derived from the config's absolute path, so two applies of the
same desired state exclude each other while unrelated configs do not. ``fcntl.flock``
is released by the kernel when the holder dies (even by kill -9), so a crashed apply
never blocks the next one; the PID written in the file is only for the message, and a
PID left there by a dead process is reported as stale and ignored. A clean release
removes the file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
from pathlib import Path
from types import TracebackType

from reconciler.errors import LockError

LOCK_DIR_ENV = "ZREPL_RECONCILE_LOCK_DIR"


def lock_directory() -> Path:
    """$ZREPL_RECONCILE_LOCK_DIR when set, else /run/lock when writable (systemd), else
    $XDG_RUNTIME_DIR (per user), else /tmp."""
    override = os.environ.get(LOCK_DIR_ENV)
    if override:
        return Path(override)
    candidates = [Path("/run/lock")]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        candidates.append(Path(runtime))
    for directory in candidates:
        if directory.is_dir() and os.access(directory, os.W_OK | os.X_OK):
            return directory
    return Path("/tmp")


def lock_path_for(config_path: str | os.PathLike[str], directory: Path | None = None) -> Path:
    absolute = os.path.realpath(os.path.abspath(os.fspath(config_path)))
    digest = hashlib.sha256(absolute.encode()).hexdigest()[:16]
    return (directory or lock_directory()) / f"zrepl-reconcile-{digest}.lock"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def read_holder(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").split()
    except OSError:
        return None
    return int(text[0]) if text and text[0].isdigit() else None


class ConfigLock:
    """``with ConfigLock(config_path):`` — raises LockError naming the holder's PID."""

    def __init__(self, config_path: str | os.PathLike[str], directory: Path | None = None) -> None:
        self.config_path = os.fspath(config_path)
        self.path = lock_path_for(config_path, directory)
        self.stale_pid: int | None = None  # a dead holder's PID found in the file, if any
        self._fd: int | None = None

    def acquire(self) -> None:
        # The file is removed on release (so no other user finds a leftover it cannot
        # open); a lock taken on a file that was removed meanwhile is retried on the new one.
        while True:
            fd = self._open_and_lock()
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = read_holder(self.path)
        if previous is not None and previous != os.getpid() and not pid_alive(previous):
            self.stale_pid = previous
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _open_and_lock(self) -> int:
        # 0o644 so another user's apply can read the holder's PID for its message.
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            holder = read_holder(self.path)
            owner = f" (it names PID {holder})" if holder is not None else ""
            raise LockError(f"cannot open the lock file {self.path} of {self.config_path}: {exc.strerror}"
                            f"{owner}; another user's apply of the same configuration may own it") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockError(f"cannot lock {self.path}: {exc.strerror}") from exc
            raise LockError(self._busy_message()) from None
        return fd

    def _busy_message(self) -> str:
        holder = read_holder(self.path)
        who = f"PID {holder}" if holder is not None else "another process"
        return (f"another apply of {self.config_path} is running ({who}, lock file {self.path});"
                " wait for it to finish")

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        # Remove the file while still holding the lock (a waiter that opened it retries
        # on a new file), so no later reader sees our PID and no leftover stays behind.
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(fd)  # closing drops the flock

    def stale_note(self) -> str:
        """A line for the user when the lock was left by a process that died holding it."""
        if self.stale_pid is None:
            return ""
        return (f"note: the previous apply of {self.config_path} (PID {self.stale_pid}) ended without"
                " finishing (crashed or killed); its lock was taken over")

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> ConfigLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
