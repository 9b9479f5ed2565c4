"""The stand-in zfs behaves like OpenZFS 2.1 for every command this project runs."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from standin.state import StandinState

LIST = ["list", "-H", "-p", "-t", "filesystem,volume,snapshot,bookmark", "-o",
        "name,type,guid,createtxg,creation,userrefs,written,referenced,receive_resume_token"]


def zfs(st: StandinState, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*st.zfs_command, *args], input=data, capture_output=True, timeout=30)


def listing(st: StandinState) -> list[list[str]]:
    proc = zfs(st, *LIST)
    assert proc.returncode == 0, proc.stderr
    return [line.split("\t") for line in proc.stdout.decode().splitlines()]


@pytest.fixture
def src(standin: Callable[..., StandinState]) -> StandinState:
    st = standin("src", seed=11)
    st.filesystem("tank/a b:c")
    st.snapshot("tank/a b:c", "s1", size=5000, holds=("keep",))
    st.snapshot("tank/a b:c", "s2", size=3000)
    st.bookmark("tank/a b:c", "s1", "b1")
    st.filesystem("tank/a/x")
    st.filesystem("tank/a-y")
    st.save()
    return st


@pytest.fixture
def dst(standin: Callable[..., StandinState]) -> StandinState:
    st = standin("dst", seed=12)
    st.filesystem("pool/nas")
    st.save()
    return st


def test_list_order_columns_and_dashes(src: StandinState) -> None:
    rows = listing(src)
    # as OpenZFS 2.1 (tests/data/zfs/real-zfs-list.txt): snapshots, then bookmarks
    assert [r[0] for r in rows] == ["tank", "tank/a", "tank/a b:c", "tank/a b:c@s1", "tank/a b:c@s2",
                                    "tank/a b:c#b1", "tank/a-y", "tank/a/x"]
    assert all(len(r) == 9 for r in rows)
    fs, snap, bm = rows[2], rows[3], rows[5]
    assert fs[1] == "filesystem" and fs[5] == "-" and fs[8] == "-"
    assert snap[1] == "snapshot" and snap[5] == "1" and snap[6] == "5000"
    assert bm[1] == "bookmark" and bm[2] == snap[2] and bm[5:] == ["-", "-", "5000", "-"]
    assert int(snap[3]) < int(rows[4][3])


def test_list_of_several_datasets_names_missing_ones_and_lists_the_rest(src: StandinState) -> None:
    # as OpenZFS 2.1 (checked in the guest): stderr per missing dataset, exit 1, others listed
    proc = zfs(src, *LIST, "-d", "1", "tank/a-y", "tank/gone", "tank/a b:c")
    assert proc.returncode == 1
    assert proc.stderr.decode() == "cannot open 'tank/gone': dataset does not exist\n"
    names = [line.split("\t")[0] for line in proc.stdout.decode().splitlines()]
    assert names == ["tank/a b:c", "tank/a b:c@s1", "tank/a b:c@s2", "tank/a b:c#b1", "tank/a-y"]
    only_missing = zfs(src, *LIST, "-d", "1", "tank/gone")
    assert (only_missing.returncode, only_missing.stdout) == (1, b"")


def test_list_column_subset_and_bad_column(src: StandinState) -> None:
    proc = zfs(src, "list", "-H", "-p", "-t", "snapshot", "-o", "name,guid")
    assert proc.stdout.decode().splitlines()[0].split("\t")[0] == "tank/a b:c@s1"
    bad = zfs(src, "list", "-H", "-o", "name,nonsense")
    assert bad.returncode == 2 and b"bad property list: invalid property 'nonsense'" in bad.stderr


def test_deterministic_guids_from_seed(standin: Callable[..., StandinState]) -> None:
    a, b = standin("a", seed=5), standin("b", seed=5)
    assert a.filesystem("tank/x")["guid"] == b.filesystem("tank/x")["guid"]


def test_holds_and_destroy_held_refused(src: StandinState) -> None:
    holds = zfs(src, "holds", "-H", "tank/a b:c@s1", "tank/a b:c@s2")
    assert holds.returncode == 0
    assert holds.stdout.decode().split("\t")[:2] == ["tank/a b:c@s1", "keep"]
    refused = zfs(src, "destroy", "tank/a b:c@s1,s2")
    assert refused.returncode == 1
    assert refused.stderr.decode().strip() == "cannot destroy snapshot tank/a b:c@s1: dataset is busy"
    assert src.reload().snapshot_names("tank/a b:c") == ["s1", "s2"]  # all or nothing
    assert zfs(src, "release", "keep", "tank/a b:c@s1").returncode == 0
    assert zfs(src, "destroy", "tank/a b:c@s1,s2").returncode == 0
    assert src.reload().snapshot_names("tank/a b:c") == []


def test_destroy_refuses_filesystems_and_missing(src: StandinState) -> None:
    assert b"refusing to destroy filesystem" in zfs(src, "destroy", "tank/a-y").stderr
    missing = zfs(src, "destroy", "tank/a-y@nope")
    assert b"could not find any snapshots to destroy" in missing.stderr
    assert zfs(src, "destroy", "tank/a b:c#b1").returncode == 0
    assert b"does not exist" in zfs(src, "destroy", "tank/a b:c#b1").stderr


def test_snapshot_is_atomic(src: StandinState) -> None:
    proc = zfs(src, "snapshot", "tank/a-y@n1", "tank/missing@n1")
    assert proc.returncode == 2 and b"cannot open 'tank/missing': dataset does not exist" in proc.stderr
    assert src.reload().snapshot_names("tank/a-y") == []
    assert zfs(src, "snapshot", "tank/a-y@n1", "tank/a/x@n1").returncode == 0
    st = src.reload()
    assert st.datasets["tank/a-y"]["snapshots"][0]["createtxg"] == st.datasets["tank/a/x"]["snapshots"][0][
        "createtxg"]
    again = zfs(src, "snapshot", "tank/a-y@n1")
    assert b"cannot create snapshot 'tank/a-y@n1': dataset already exists" in again.stderr
    bad = zfs(src, "snapshot", "tank/a-y@x$y")
    assert b"invalid character '$' in name" in bad.stderr


def test_create_bookmark_hold(src: StandinState) -> None:
    assert b"parent does not exist" in zfs(src, "create", "tank/q/r").stderr
    assert zfs(src, "create", "-o", "canmount=off", "tank/q").returncode == 0
    assert zfs(src, "bookmark", "tank/a b:c@s2", "tank/a b:c#b2").returncode == 0
    assert b"bookmark exists" in zfs(src, "bookmark", "tank/a b:c@s2", "tank/a b:c#b2").stderr
    assert b"tag already exists" in zfs(src, "hold", "keep", "tank/a b:c@s1").stderr
    assert b"no such tag" in zfs(src, "release", "zz", "tank/a b:c@s1").stderr


def test_full_then_incremental_keeps_guid_and_creation(src: StandinState, dst: StandinState) -> None:
    full = zfs(src, "send", "tank/a b:c@s1")
    assert full.returncode == 0 and len(full.stdout) > 5000
    assert zfs(dst, "recv", "-s", "-u", "pool/nas/a", data=full.stdout).returncode == 0
    inc = zfs(src, "send", "-I", "tank/a b:c@s1", "tank/a b:c@s2")
    assert zfs(dst, "recv", "-s", "-u", "pool/nas/a", data=inc.stdout).returncode == 0
    got = {r[0]: r for r in listing(dst)}
    want = {r[0]: r for r in listing(src)}
    for short in ("s1", "s2"):
        assert got[f"pool/nas/a@{short}"][2] == want[f"tank/a b:c@{short}"][2]
        assert got[f"pool/nas/a@{short}"][4] == want[f"tank/a b:c@{short}"][4]
    again = zfs(dst, "recv", "-s", "-u", "pool/nas/a", data=full.stdout)
    assert b"destination 'pool/nas/a' exists" in again.stderr


def test_send_estimate(src: StandinState) -> None:
    proc = zfs(src, "send", "-n", "-P", "-I", "tank/a b:c@s1", "tank/a b:c@s2")
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == "incremental\ts1\ttank/a b:c@s2\t3000"  # -I: short base name, as 2.1
    single = zfs(src, "send", "-nP", "-i", "@s1", "tank/a b:c@s2").stdout.decode().splitlines()
    assert single[0] == "incremental\ttank/a b:c@s1\ttank/a b:c@s2\t3000"
    assert lines[-1] == "size\t3000"
    full = zfs(src, "send", "-nP", "-w", "tank/a b:c@s1").stdout.decode().splitlines()
    assert full == ["full\ttank/a b:c@s1\t5000", "size\t5000"]


def test_incremental_from_bookmark(src: StandinState, dst: StandinState) -> None:
    zfs(dst, "recv", "-u", "pool/nas/a", data=zfs(src, "send", "tank/a b:c@s1").stdout)
    inc = zfs(src, "send", "-i", "tank/a b:c#b1", "tank/a b:c@s2")
    assert zfs(dst, "recv", "-s", "-u", "pool/nas/a", data=inc.stdout).returncode == 0


def test_written_target_refused(src: StandinState, dst: StandinState) -> None:
    zfs(dst, "recv", "-u", "pool/nas/a", data=zfs(src, "send", "tank/a b:c@s1").stdout)
    dst.reload().write("pool/nas/a")
    dst.save()
    assert zfs(dst, "snapshot", "pool/nas/a@local").returncode == 0
    inc = zfs(src, "send", "-i", "tank/a b:c@s1", "tank/a b:c@s2")
    proc = zfs(dst, "recv", "-s", "-u", "pool/nas/a", data=inc.stdout)
    assert proc.returncode == 1
    assert b"destination pool/nas/a has been modified\nsince most recent snapshot" in proc.stderr


def test_recv_onto_newer_unwritten_snapshot_succeeds_like_zfs(src: StandinState, dst: StandinState) -> None:
    # real-recv-onto-newer-snapshot.txt: zfs does not see this divergence; the planner must.
    zfs(dst, "recv", "-u", "pool/nas/a", data=zfs(src, "send", "tank/a b:c@s1").stdout)
    assert zfs(dst, "snapshot", "pool/nas/a@local_newer").returncode == 0
    inc = zfs(src, "send", "-i", "tank/a b:c@s1", "tank/a b:c@s2")
    assert zfs(dst, "recv", "-u", "pool/nas/a", data=inc.stdout).returncode == 0
    assert dst.reload().snapshot_names("pool/nas/a") == ["s1", "local_newer", "s2"]


def test_no_common_snapshot_refused(src: StandinState, dst: StandinState) -> None:
    assert zfs(dst, "create", "pool/nas/a").returncode == 0
    inc = zfs(src, "send", "-i", "tank/a b:c@s1", "tank/a b:c@s2")
    proc = zfs(dst, "recv", "-u", "pool/nas/a", data=inc.stdout)
    assert proc.stderr.decode().strip() == ("cannot receive incremental stream: most recent snapshot of "
                                            "pool/nas/a does not\nmatch incremental source")


def test_truncated_stream_is_resumable(src: StandinState, dst: StandinState) -> None:
    zfs(dst, "recv", "-u", "pool/nas/a", data=zfs(src, "send", "tank/a b:c@s1").stdout)
    inc = zfs(src, "send", "-i", "tank/a b:c@s1", "tank/a b:c@s2").stdout
    cut = zfs(dst, "recv", "-s", "-u", "pool/nas/a", data=inc[: len(inc) // 2])
    assert cut.returncode == 1 and b"Partially received snapshot is saved" in cut.stderr
    token = {r[0]: r for r in listing(dst)}["pool/nas/a"][8]
    assert token != "-"
    assert b"contains partially-complete state" in zfs(dst, "recv", "-s", "-u", "pool/nas/a", data=inc).stderr
    bad = zfs(src, "send", "-t", "1-bogus-token-0")
    assert bad.returncode == 255
    assert bad.stderr.decode().strip() == "cannot resume send: resume token is corrupt (invalid format)"
    estimate = zfs(src, "send", "-nP", "-t", token).stdout.decode().splitlines()
    assert int(estimate[-1].split("\t")[1]) < 3000
    resumed = zfs(src, "send", "-t", token)
    assert zfs(dst, "recv", "-s", "-u", "pool/nas/a", data=resumed.stdout).returncode == 0
    rows = {r[0]: r for r in listing(dst)}
    assert rows["pool/nas/a"][8] == "-" and "pool/nas/a@s2" in rows


def test_a_receive_cut_right_after_the_header_resumes_from_byte_0(
        src: StandinState, dst: StandinState) -> None:
    """A kill can land after the header and before any data: the token then says 0 bytes,
    and the resuming stream is still a resume (as zfs marks it in its BEGIN record). The
    soak's kill -9 at 20 moments once hit exactly this."""
    zfs(dst, "recv", "-u", "pool/nas/a", data=zfs(src, "send", "tank/a b:c@s1").stdout)
    inc = zfs(src, "send", "-i", "tank/a b:c@s1", "tank/a b:c@s2").stdout
    cut = zfs(dst, "recv", "-s", "-u", "pool/nas/a", data=inc[: inc.index(b"\n") + 1])
    assert cut.returncode == 1 and b"Partially received snapshot is saved" in cut.stderr
    token = {r[0]: r for r in listing(dst)}["pool/nas/a"][8]
    resumed = zfs(src, "send", "-t", token)
    assert zfs(dst, "recv", "-s", "-u", "pool/nas/a", data=resumed.stdout).returncode == 0
    assert "pool/nas/a@s2" in {r[0] for r in listing(dst)}


def test_truncated_full_receive_then_abort(src: StandinState, dst: StandinState) -> None:
    full = zfs(src, "send", "tank/a b:c@s1").stdout
    assert zfs(dst, "recv", "-s", "-u", "pool/nas/a", data=full[: full.index(b"\n") + 100]).returncode == 1
    assert {r[0]: r for r in listing(dst)}["pool/nas/a"][8] != "-"
    assert zfs(dst, "recv", "-A", "pool/nas/a").returncode == 0
    assert "pool/nas/a" not in {r[0] for r in listing(dst)}
    assert b"does not have any resumable receive state" in zfs(dst, "recv", "-A", "pool/nas").stderr
    again = zfs(dst, "recv", "-s", "-u", "pool/nas/a", data=full[: full.index(b"\n") + 100])
    assert again.returncode == 1
    onto_partial = zfs(dst, "recv", "-s", "-u", "pool/nas/a", data=full)
    assert b"destination 'pool/nas/a' exists\nmust specify -F to overwrite it" in onto_partial.stderr


def test_real_error_wording_matches_captures(src: StandinState, dst: StandinState) -> None:
    data = Path(__file__).parent / "data" / "zfs"
    held = (data / "real-err-destroy-held.txt").read_text().splitlines()[1]
    assert held.replace("src/data@zrepl_20261124_120000", "X") == "cannot destroy snapshot X: dataset is busy"
    missing = zfs(src, "snapshot", "tank/nope@x")
    real = (data / "real-err-snapshot-missing.txt").read_text().split("\n", 1)[1]
    assert missing.returncode == 2
    assert missing.stderr.decode() == real.replace("src/nope", "tank/nope")
    holds = zfs(src, "holds", "-H", "tank/a b:c@nope")
    assert holds.stderr.decode().splitlines()[-1] == "no datasets available"
    parent = zfs(dst, "recv", "-u", "pool/no/such/parent", data=zfs(src, "send", "tank/a b:c@s1").stdout)
    real = (data / "real-err-recv-missing-parent.txt").read_text().split("\n", 1)[1]
    assert parent.stderr.decode() == real.replace("dst/no/such", "pool/no/such")


def test_truncated_without_s_leaves_nothing(src: StandinState, dst: StandinState) -> None:
    full = zfs(src, "send", "tank/a b:c@s1").stdout
    proc = zfs(dst, "recv", "-u", "pool/nas/a", data=full[: full.index(b"\n") + 100])
    assert proc.returncode == 1 and b"incomplete stream" in proc.stderr
    assert "pool/nas/a" not in {r[0] for r in listing(dst)}


def test_truncated_header_is_a_read_failure(src: StandinState, dst: StandinState) -> None:
    proc = zfs(dst, "recv", "-s", "-u", "pool/nas/a", data=zfs(src, "send", "tank/a b:c@s1").stdout[:20])
    assert proc.returncode == 1 and b"failed to read from stream" in proc.stderr


def test_injected_failure_and_log(src: StandinState) -> None:
    src.inject("destroy", "cannot destroy snapshot x: permission denied", remaining=1)
    src.save()
    assert b"permission denied" in zfs(src, "destroy", "tank/a b:c@s2").stderr
    assert zfs(src, "destroy", "tank/a b:c@s2").returncode == 0
    assert [argv[0] for argv in src.log()] == ["destroy", "destroy"]


def test_env_state_variable(src: StandinState, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from standin.state import STANDIN_ZFS

    monkeypatch.setenv("ZFS_STANDIN_STATE", str(src.path))
    proc = subprocess.run([sys.executable, STANDIN_ZFS, "list", "-H", "-o", "name"], capture_output=True)
    assert proc.stdout.decode().splitlines()[:2] == ["tank", "tank/a"]
