"""Where the record of every apply lives, and reading and writing it safely.

One file per configuration: ``<state_dir>/<config file stem>-<16 hex>.json``, the hex
from sha256 of the configuration's real absolute path (as the apply lock derives its
name), so several configurations on one machine never share a record, and the name still
says which configuration it belongs to. ``state_dir``: ``settings.state_dir``, else
``$ZREPL_RECONCILE_STATE_DIR``, else ``/var/lib/zrepl-reconcile`` for root and
``$XDG_STATE_HOME/zrepl-reconcile`` (``~/.local/state/zrepl-reconcile``) otherwise.

Writes are atomic (a temporary file in the same directory, fsync, rename), so a reader
never sees half a record and a crash leaves the previous one. A missing, unreadable or
corrupt file is never an error: reading returns an empty record and one line saying
why, and the next write replaces it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reconciler.domain.record import StateRecord
from reconciler.errors import clip

STATE_DIR_ENV = "ZREPL_RECONCILE_STATE_DIR"
ROOT_STATE_DIR = Path("/var/lib/zrepl-reconcile")
# A record holds one short entry per filesystem and target: even a fleet of 100,000
# filesystems stays far below this. Anything larger was not written by this tool.
MAX_STATE_BYTES = 256 * 1024 * 1024


def state_directory(setting: str | None) -> Path:
    """``settings.state_dir`` (``~`` expanded), else the environment's, else the default for this user."""
    if setting:
        return Path(os.path.expanduser(setting))
    override = os.environ.get(STATE_DIR_ENV)
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return ROOT_STATE_DIR
    xdg = os.environ.get("XDG_STATE_HOME", "")
    # The XDG spec: a relative value is invalid and must be ignored.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "state"
    return base / "zrepl-reconcile"


def state_path(config_path: str | os.PathLike[str], setting: str | None) -> Path:
    absolute = os.path.realpath(os.path.abspath(os.fspath(config_path)))
    digest = hashlib.sha256(absolute.encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(absolute).stem)[:40] or "config"
    return state_directory(setting) / f"{stem}-{digest}.json"


def real_config_path(config_path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.path.abspath(os.fspath(config_path)))


@dataclass(frozen=True, slots=True)
class Loaded:
    """The record read from ``path``; ``note`` says in one line why it is empty (missing,
    unreadable, corrupt: it is rebuilt by the next apply), "" when it was read."""

    path: Path
    record: StateRecord
    note: str = ""
    missing: bool = False


def read_state(path: Path, config_path: str | os.PathLike[str]) -> Loaded:
    owner = real_config_path(config_path)
    empty = StateRecord(owner)
    try:
        text = _read_text(path)
    except FileNotFoundError:
        return Loaded(path, empty, f"state: no record at {path} yet (no apply has run with this"
                                   " configuration and state_dir)", missing=True)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return Loaded(path, empty, f"state: cannot read {path} ({clip(why, 200)}); the next apply"
                                   " replaces it")
    try:
        record = StateRecord.from_json(json.loads(text))
    except (ValueError, RecursionError) as exc:  # json's errors and RecordError are ValueErrors
        return Loaded(path, empty, f"state: {path} is corrupt ({clip(str(exc), 200)}); the next apply"
                                   " replaces it")
    if record.config_path != owner:
        return Loaded(path, empty, f"state: {path} is the record of {clip(record.config_path, 200)},"
                                   f" not of {owner}; the next apply replaces it")
    return Loaded(path, record)


def _read_text(path: Path) -> str:
    """The file's text, refusing what a record cannot be (not a regular file: a FIFO would
    block; too big; not UTF-8) before reading it whole."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        data = fh.read(MAX_STATE_BYTES + 1)
    if len(data) > MAX_STATE_BYTES:
        raise ValueError(f"larger than {MAX_STATE_BYTES} bytes")
    return data.decode("utf-8")


def write_state(path: Path, record: StateRecord) -> None:
    """Replace the record atomically (OSError when the directory cannot be made or written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record.to_json(), indent=1, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        # Readable by a monitoring user running `status` (it holds no secrets).
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """The rename itself survives a power loss only once the directory is synced."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
