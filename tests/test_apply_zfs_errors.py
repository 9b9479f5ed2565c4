"""zfs stderr (OpenZFS 2.1 / 2.2 wording) -> ExecError codes and clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.execute import zfs_errors
from reconciler.execute.zfs_errors import classify, exec_error, significant_line

DATA = Path(__file__).parent / "data" / "zfs"

CASES = [
    ("cannot open 'tank/missing': dataset does not exist", zfs_errors.DATASET_MISSING),
    ("could not find any snapshots to destroy; check snapshot names.", zfs_errors.DATASET_MISSING),
    ("cannot destroy 'tank/a#b': bookmark does not exist", zfs_errors.DATASET_MISSING),
    ("cannot create snapshot 'tank/a@x': permission denied", zfs_errors.PERMISSION_DENIED),
    ("Permission denied the ZFS utilities must be run as root.", zfs_errors.PERMISSION_DENIED),
    ("sudo: a password is required", zfs_errors.PERMISSION_DENIED),
    ("cannot destroy snapshot tank/a@x: dataset is busy", zfs_errors.BUSY),
    ("cannot destroy snapshot tank/a@x: it's being held. Run 'zfs holds -r tank/a@x' to see holders.",
     zfs_errors.HELD),
    ("cannot receive incremental stream: destination pool/a has been modified\n"
     "since most recent snapshot", zfs_errors.DIVERGED),
    ("cannot receive incremental stream: most recent snapshot of pool/a does not\n"
     "match incremental source", zfs_errors.DIVERGED),
    ("cannot receive new filesystem stream: destination has snapshots (eg. pool/a@x)\n"
     "must destroy them to overwrite it", zfs_errors.DIVERGED),
    ("cannot receive new filesystem stream: destination 'pool/a' exists\n"
     "must specify -F to overwrite it", zfs_errors.EXISTS),
    ("cannot create snapshot 'tank/a@x': dataset already exists", zfs_errors.EXISTS),
    ("cannot receive incremental stream: out of space", zfs_errors.NO_SPACE),
    ("cannot resume send: 'tank/a@x' used in the initial send no longer exists",
     zfs_errors.RESUME_TOKEN_INVALID),
    ("cannot resume send: kernel modules must be upgraded to receive this stream.",
     zfs_errors.RESUME_TOKEN_INVALID),
    ("resume token is corrupt", zfs_errors.RESUME_TOKEN_INVALID),
    ("cannot receive resume stream: destination pool/a contains partially-complete state from "
     "\"zfs receive -s\".", zfs_errors.RESUME_STATE_EXISTS),
    ("cannot receive: failed to read from stream", zfs_errors.STREAM_BROKEN),
    ("warning: cannot send 'tank/a@x': signal received", zfs_errors.STREAM_BROKEN),
    ("host 'backup': command timed out after 600s: zfs destroy x", zfs_errors.TIMEOUT),
    ("sh: 1: zfs: not found", zfs_errors.ZFS_NOT_FOUND),
    ("something entirely new", zfs_errors.COMMAND_FAILED),
    ("Host key verification failed.", zfs_errors.HOST_KEY),
    ("zrepl@backup: Permission denied (publickey).", zfs_errors.AUTH_FAILED),
    ("ssh: connect to host backup port 22: Connection refused", zfs_errors.UNREACHABLE),
    ("ssh: Could not resolve hostname backup: Name or service not known", zfs_errors.UNREACHABLE),
]


@pytest.mark.parametrize(("stderr", "code"), CASES)
def test_classify(stderr: str, code: str) -> None:
    assert classify(stderr)[0] == code


def test_message_names_action_meaning_and_zfs_words() -> None:
    err = exec_error(["zfs", "recv"], 1, "cannot receive incremental stream: destination pool/a has been "
                     "modified\nsince most recent snapshot\n", what="send tank/a")
    assert err.code == "diverged"
    assert str(err).startswith("send tank/a: the target diverged")
    assert "zfs: cannot receive incremental stream" in str(err)
    assert "has been modified" in err.stderr


def test_significant_line_prefers_the_cannot_line() -> None:
    assert significant_line("cannot receive: x\nmust specify -F\n") == "cannot receive: x"
    assert significant_line("\n\nweird\n") == "weird"
    assert significant_line("") == ""


def test_empty_stderr_says_exit_status() -> None:
    assert "(exit 3)" in str(exec_error(["zfs"], 3, ""))


# Every stderr captured from real OpenZFS 2.1 (tests/data/zfs/real-err-*.txt, see its
# README) and the code the mapping must give it.
CAPTURED_STDERR = {
    "real-err-bookmark-exists.txt": zfs_errors.EXISTS,
    "real-err-destroy-batch-held.txt": zfs_errors.BUSY,
    "real-err-destroy-held.txt": zfs_errors.BUSY,
    "real-err-destroy-missing-bookmark.txt": zfs_errors.DATASET_MISSING,
    "real-err-destroy-missing-dataset.txt": zfs_errors.DATASET_MISSING,
    "real-err-destroy-missing-snapshot.txt": zfs_errors.DATASET_MISSING,
    "real-err-holds-missing.txt": zfs_errors.DATASET_MISSING,
    "real-err-list-missing.txt": zfs_errors.DATASET_MISSING,
    "real-err-recv-full-onto-existing.txt": zfs_errors.EXISTS,
    "real-err-recv-full-onto-partial.txt": zfs_errors.EXISTS,
    "real-err-recv-incremental-onto-partial.txt": zfs_errors.RESUME_STATE_EXISTS,
    "real-err-recv-missing-parent.txt": zfs_errors.DATASET_MISSING,
    "real-err-recv-modified.txt": zfs_errors.DIVERGED,
    "real-err-recv-no-common-snapshot.txt": zfs_errors.DIVERGED,
    "real-err-send-bad-token.txt": zfs_errors.RESUME_TOKEN_INVALID,
    "real-err-snapshot-exists.txt": zfs_errors.EXISTS,
    "real-err-snapshot-missing.txt": zfs_errors.DATASET_MISSING,
}


def test_every_captured_stderr_is_in_the_table() -> None:
    assert sorted(p.name for p in DATA.glob("real-err-*.txt")) == sorted(CAPTURED_STDERR)


@pytest.mark.parametrize(("name", "code"), sorted(CAPTURED_STDERR.items()))
def test_captured_real_stderr_maps_to_its_code(name: str, code: str) -> None:
    text = (DATA / name).read_text(encoding="utf-8")
    assert classify(text)[0] == code
