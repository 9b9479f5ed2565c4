"""The per-config apply lock: exclusion, holder PID in the message, crash release, stale PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.errors import LockError
from reconciler.execute.lock import ConfigLock, lock_directory, lock_path_for

HOLD = ("import sys, time\n"
        "from pathlib import Path\n"
        "from reconciler.execute.lock import ConfigLock\n"
        "lock = ConfigLock(sys.argv[1], Path(sys.argv[2]))\n"
        "lock.acquire()\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n")


def hold_in_child(config: Path, directory: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(config), str(directory)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "locked"
    return child


def test_lock_path_depends_on_the_absolute_config_path(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.yml").touch()
    assert lock_path_for("a.yml", tmp_path) == lock_path_for(tmp_path / "a.yml", tmp_path)
    assert lock_path_for("a.yml", tmp_path) != lock_path_for("b.yml", tmp_path)
    assert lock_path_for("a.yml", tmp_path).parent == tmp_path


def test_lock_directory_is_writable_and_can_be_overridden(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    monkeypatch.delenv("ZREPL_RECONCILE_LOCK_DIR", raising=False)
    assert os.access(lock_directory(), os.W_OK)
    monkeypatch.setenv("ZREPL_RECONCILE_LOCK_DIR", str(tmp_path))
    assert lock_directory() == tmp_path


def test_a_waiter_that_opened_the_removed_file_retries_on_the_new_one(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    first = ConfigLock(config, tmp_path)
    first.acquire()
    stale_fd = os.open(first.path, os.O_RDWR)  # a waiter that opened the file before release
    first.release()
    assert not first.path.exists()
    with ConfigLock(config, tmp_path) as second:  # a new file, a new lock
        import fcntl

        fcntl.flock(stale_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the old inode: nobody's lock any more
        assert second.held and second.path.exists()
    os.close(stale_fd)


def test_second_lock_is_refused_with_the_holder_pid(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    child = hold_in_child(config, tmp_path)
    try:
        with pytest.raises(LockError) as info:
            ConfigLock(config, tmp_path).acquire()
        assert f"PID {child.pid}" in str(info.value)
        assert str(config) in str(info.value)
        assert info.value.code == "locked"
    finally:
        child.kill()
        child.wait()


def test_kill_9_of_the_holder_frees_the_lock_and_reports_the_stale_pid(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    child = hold_in_child(config, tmp_path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with ConfigLock(config, tmp_path) as lock:
        assert lock.held and lock.stale_pid == child.pid
        assert lock.path.read_text().strip() == str(os.getpid())
    assert not lock.held and not lock.path.exists()  # a clean release removes the file


def test_other_configs_do_not_exclude_each_other(tmp_path: Path) -> None:
    with ConfigLock(tmp_path / "a.yml", tmp_path), ConfigLock(tmp_path / "b.yml", tmp_path) as b:
        assert b.held


def test_release_is_idempotent(tmp_path: Path) -> None:
    lock = ConfigLock(tmp_path / "a.yml", tmp_path)
    lock.acquire()
    lock.release()
    lock.release()
    lock.acquire()
    lock.release()


def test_a_lock_file_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    lock_path_for(config, tmp_path).mkdir()  # as unopenable as another user's 0644 file
    with pytest.raises(LockError, match=r"cannot open the lock file .* of .*c\.yml: Is a directory"):
        ConfigLock(config, tmp_path).acquire()
