"""Issue 17 on the stand-in: compressed streams, the large-blocks conflict, the bandwidth
limit's plan line, and a stalled send stopped then resumed by the next run."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from standin.state import StandinState
from test_apply_cli import NOW, cli, hourly_history, write_config

from reconciler.domain.actions import LARGE_BLOCKS_PROPERTY


def setup(tmp_path: Path, standin: Callable[..., StandinState], size: int = 4096,
          **target: Any) -> tuple[Path, StandinState, StandinState]:
    nas = standin("nas", seed=3)
    nas.filesystem("tank/data")
    hourly_history(nas, "tank/data", 4, size=size)
    nas.save()
    backup = standin("backup", seed=4)
    backup.filesystem("pool")
    backup.save()
    config = write_config(tmp_path / "zrepl-reconcile.yml",
                          {"nas": nas.zfs_command, "backup": backup.zfs_command},
                          [{"host": "nas", "filter": {"tank/data": True}, "policy": "hourly",
                            "replicate_to": [{"host": "backup", "root": "pool/nas", **target}]}])
    return config, nas, backup


def set_target(config: Path, **target: Any) -> None:
    data = json.loads(config.read_text(encoding="utf-8"))
    data["filesystems"][0]["replicate_to"][0].update(target)
    config.write_text(json.dumps(data), encoding="utf-8")


def sends(st: StandinState) -> list[list[str]]:
    return [argv for argv in st.log() if argv[:1] == ["send"] and "-n" not in argv]


def test_sends_are_compressed_by_default_and_the_replica_is_marked(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    config, nas, backup = setup(tmp_path, standin)
    code, out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW, "--explain", "tank/data")
    assert "-L -c -e" in out and "compressed stream (zfs send -L -c -e, compressed: true)" in out
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
    assert code == 0, out + err
    assert sends(nas) and all(argv[1:4] == ["-L", "-c", "-e"] for argv in sends(nas))
    recvs = [argv for argv in backup.log() if argv[:1] == ["recv"]]
    assert all(f"{LARGE_BLOCKS_PROPERTY}=on" in argv for argv in recvs)
    backup.reload()
    assert backup.datasets["pool/nas/tank/data"]["properties"][LARGE_BLOCKS_PROPERTY] == "on"


def test_turning_compressed_off_for_a_large_block_replica_is_a_conflict_with_a_fix(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    config, nas, _backup = setup(tmp_path, standin)
    assert cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")[0] == 0
    nas.reload()
    nas.snapshot("tank/data", "manual_1")  # something new to send
    nas.save()
    set_target(config, compressed=False)
    _code, out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW)
    assert "large_blocks_required" in out + err or "received with large blocks" in out + err
    assert "compressed: true" in out + err and "zfs rename" in out + err
    before = len(sends(nas))
    _code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
    assert len(sends(nas)) == before  # refused at plan time, never a failing send


def test_plain_streams_stay_plain_and_need_no_mark(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    config, nas, _backup = setup(tmp_path, standin, compressed=False)
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
    assert code == 0, out + err
    assert sends(nas) and not any("-L" in argv for argv in sends(nas))
    # Turning compression on later is fine: the chain goes on with -L.
    nas.reload()
    nas.snapshot("tank/data", "manual_1")
    nas.save()
    set_target(config, compressed=True)
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
    assert code == 0, out + err
    assert "-L" in sends(nas)[-1]


def test_the_plan_shows_the_bandwidth_limit(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    config, _nas, _backup = setup(tmp_path, standin, bandwidth_limit="20MiB/s")
    _code, out, _err = cli(capsys, "plan", "-c", str(config), "--now", NOW, "--explain", "tank/data")
    assert "limit 20 MiB/s" in out and "at most 20 MiB/s (bandwidth_limit)" in out
    _code, out, _err = cli(capsys, "plan", "-c", str(config), "--now", NOW, "--format", "json")
    plan = json.loads(out)
    (send,) = [a for a in plan["actions"] if a["kind"] == "send"]
    assert send["bandwidth_limit"] == 20 << 20 and send["compressed"] is True
    assert send["stall_timeout_seconds"] == 600


def test_a_stalled_send_is_stopped_naming_both_ends_and_resumed_by_the_next_run(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    config, nas, backup = setup(tmp_path, standin, stall_timeout="1s")
    nas.reload()
    nas.stall_send(after=600, seconds=60)  # within the first (full) send of ~1.3 KiB
    nas.save()
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
    assert code == 1, out + err
    assert ("stalled: no byte moved for 1s (stall_timeout) from nas:tank/data to"
            " backup:pool/nas/tank/data") in out
    backup.reload()
    assert backup.datasets["pool/nas/tank/data"]["resume_token"]
    nas.reload()
    del nas.data["stall_send"]
    nas.save()
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
    assert code == 0, out + err
    assert any("-t" in argv for argv in sends(nas))  # resumed from the token, not started over
    code, out, err = cli(capsys, "plan", "-c", str(config), "--now", NOW, "--detailed-exitcode")
    assert code == 0 and "No changes" in out, out + err


def test_incrementals_are_sized_by_one_listing_per_host_not_by_send_nP(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    config, nas, _backup = setup(tmp_path, standin)
    for name in ("tank/data/a", "tank/data/b"):
        nas.reload()
        nas.filesystem(name)
        hourly_history(nas, name, 4)
        nas.save()
    data = json.loads(config.read_text(encoding="utf-8"))
    data["filesystems"][0]["filter"] = {"tank/data<": True}
    config.write_text(json.dumps(data), encoding="utf-8")
    assert cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")[0] == 0
    full_sizes = [argv for argv in nas.log() if argv[:1] == ["send"] and "-n" in argv]
    assert len(full_sizes) == 3  # full sends: zfs send -nP each
    logged = len(nas.log())
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", "2025-11-24T18:00:00Z", "-y")
    assert code == 0, out + err
    later = nas.log()[logged:]
    assert len([a for a in later if a[:1] == ["send"] and "-n" not in a]) == 3  # three incrementals
    assert not [a for a in later if a[:1] == ["send"] and "-n" in a]
    assert len([a for a in later if a[:1] == ["list"] and "written" in " ".join(a) and "-t" in a
                and a[a.index("-t") + 1] == "snapshot"]) == 1


def test_a_limited_send_says_how_fast_it_streamed(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    """The limit governs the stream, not the sides' start-up: apply's line for a limited
    send gives the streaming rate and time next to the whole send's."""
    config, _nas, _backup = setup(tmp_path, standin, bandwidth_limit="20MiB/s")
    code, out, err = cli(capsys, "apply", "-c", str(config), "--now", NOW, "-y")
    assert code == 0, out + err
    (line,) = [line for line in err.splitlines() if line.startswith("done ") and " send " in line]
    assert re.search(r" in [\d.]+s; streamed at [\d.]+ \w?i?B/s for [\d.]+s, limit 20\.0 MiB/s\)$",
                     line), line
