"""Replicas that stay safe (issue 13) end to end against stand-in zfs hosts: the stand-in
counterpart of tests/e2e/test_scenarios_replicas.py (no real ZFS needed).

The stand-in behaves as OpenZFS 2.1 was measured to (tests/standin/zfs.py): receive
properties, raw and decrypting sends, a placeholder below a raw replica, per-snapshot
holds and releases, an out-of-space receive.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standin.state import StandinState

from reconciler.cli import main
from reconciler.config.load import load_config
from reconciler.domain.actions import SendAction
from reconciler.execute.apply import apply_plan
from reconciler.gather.facts import gather
from reconciler.planning.naming import last_received_tag, step_hold_tag
from reconciler.planning.planner import make_plan
from reconciler.transport.hosts import open_executors
from reconciler.transport.interface import with_zfs_command

NOW = "2025-11-24T16:00:00Z"  # conftest.NOW, the stand-in's clock
LATER = "2025-11-24T17:01:00Z"
KEEP_ALL = [{"type": "regex", "regex": ".*"}]


def write_config(path: Path, nas: StandinState, backup: StandinState, filter_: dict[str, bool],
                 keep_target: list[dict[str, Any]] | None = None, **target: Any) -> Path:
    config = {
        "hosts": {"nas": {"connection": "local", "zfs_command": nas.zfs_command},
                  "backup": {"connection": "local", "zfs_command": backup.zfs_command}},
        "policies": {"p": {"snapshots": {"prefix": "zrepl_", "interval": "1h"},
                           "keep_source": KEEP_ALL, "keep_target": keep_target or KEEP_ALL}},
        "filesystems": [{"host": "nas", "filter": filter_, "policy": "p",
                         "replicate_to": [{"host": "backup", "root": "pool/r", **target}]}],
    }
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def apply_ok(capsys: pytest.CaptureFixture[str], config: Path, now: str = NOW) -> str:
    code, out, err = cli(capsys, "apply", "-y", "-c", str(config), "--now", now)
    assert code == 0 and " 0 failed" in out, out + err
    return out


def no_changes(capsys: pytest.CaptureFixture[str], config: Path, now: str = NOW) -> str:
    code, out, err = cli(capsys, "plan", "-c", str(config), "--now", now, "--detailed-exitcode")
    assert code == 0 and "No changes" in out, out + err
    return out


@pytest.fixture
def hosts(standin: Callable[..., StandinState]) -> tuple[StandinState, StandinState]:
    nas = standin("nas", seed=21)
    nas.filesystem("tank/data")
    nas.snapshot("tank/data", "zrepl_20251124_140000", creation=1_763_992_800)
    nas.filesystem("tank/vol", kind="volume")
    nas.filesystem("tank/vault", encrypted=True)
    nas.filesystem("tank/vault/a/b")
    nas.save()
    backup = standin("backup", seed=22)
    backup.filesystem("pool")
    backup.save()
    return nas, backup


def props(st: StandinState, dataset: str) -> dict[str, str]:
    st.reload()
    return dict(st.datasets[dataset].get("properties", {}))


def holds(st: StandinState, dataset: str) -> dict[str, list[str]]:
    st.reload()
    return {s["name"]: sorted(s.get("holds", {})) for s in st.datasets[dataset]["snapshots"]}


def test_replicas_get_the_safe_properties_and_holds_move(
        hosts: tuple[StandinState, StandinState], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nas, backup = hosts
    config = write_config(tmp_path / "c.yml", nas, backup, {"tank/data": True, "tank/vol": True},
                          keep_target=[{"type": "last_n", "count": 1}])
    out = apply_ok(capsys, config)
    large = {"zrepl-reconcile:large_blocks": "on"}  # a compressed stream's mark (issue 17)
    assert props(backup, "pool/r/tank/data") == {"readonly": "on", "canmount": "noauto", **large}
    assert props(backup, "pool/r/tank/vol") == {"readonly": "on", **large}
    tag = last_received_tag("nas", "backup", "pool/r")
    assert holds(backup, "pool/r/tank/data") == {"zrepl_20251124_160000": [tag]}
    assert all(not tags for tags in holds(nas, "tank/data").values())  # step holds released
    assert "hold tank/data@zrepl_20251124_160000 with tag zrr-step_backup_" in out
    no_changes(capsys, config)

    out = apply_ok(capsys, config, LATER)
    assert "hold 2 snapshots of tank/data" in out  # the base and the new snapshot, one line
    assert holds(backup, "pool/r/tank/data") == {"zrepl_20251124_170100": [tag]}  # moved, old pruned
    no_changes(capsys, config, LATER)


def test_encrypted_source_is_refused_without_raw_and_sealed_with_it(
        hosts: tuple[StandinState, StandinState], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nas, backup = hosts
    selected = {"tank/vault": True, "tank/vault/a/b": True}
    unset = write_config(tmp_path / "unset.yml", nas, backup, selected)
    _code, out, _err = cli(capsys, "plan", "-c", str(unset), "--now", NOW, "--format", "json")
    plan = json.loads(out)
    assert [c["code"] for c in plan["conflicts"]] == ["unencrypted_replica", "unencrypted_replica"]
    assert "set raw: true" in plan["conflicts"][0]["fix"]
    assert not [a for a in plan["actions"] if a["kind"] in ("send", "create")]

    raw = write_config(tmp_path / "raw.yml", nas, backup, selected, raw=True)
    first = apply_ok(capsys, raw)
    assert ("is not sent yet: the placeholder pool/r/tank/vault/a it needs lies below pool/r/tank/vault"
            in first)
    second = apply_ok(capsys, raw)
    assert "create placeholder pool/r/tank/vault/a (canmount=off, encryption=off)" in second
    backup.reload()
    for name in ("pool/r/tank/vault", "pool/r/tank/vault/a/b"):
        ds = backup.datasets[name]
        assert (ds["encryption"], ds["encryptionroot"], ds["keystatus"]) == (
            "aes-256-gcm", name, "unavailable")
    assert backup.datasets["pool/r/tank/vault/a"].get("encryption", "off") == "off"
    no_changes(capsys, raw)

    clear = write_config(tmp_path / "clear.yml", nas, backup, {"tank/vault": True}, raw=False)
    clear.write_text(clear.read_text().replace("pool/r", "pool/clear"))
    out = apply_ok(capsys, clear)
    assert "stored decrypted" in out
    backup.reload()
    assert backup.datasets["pool/clear/tank/vault"].get("encryption", "off") == "off"
    assert "stored decrypted" in no_changes(capsys, clear)


def test_stale_holds_of_ours_are_released_and_foreign_ones_kept(
        hosts: tuple[StandinState, StandinState], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nas, backup = hosts
    config = write_config(tmp_path / "c.yml", nas, backup, {"tank/data": True})
    apply_ok(capsys, config)
    nas.reload()
    snap = nas.datasets["tank/data"]["snapshots"][0]
    stale = {step_hold_tag("backup", "pool/r"): 1, step_hold_tag("backup", "pool/gone"): 1,
             "zrr-mine": 1, "keep": 1}
    snap["holds"] = stale
    nas.save()
    code, out, _ = cli(capsys, "plan", "-c", str(config), "--now", NOW, "--detailed-exitcode")
    assert code == 2 and out.count("release hold zrr-step_backup_") == 2, out
    apply_ok(capsys, config)
    assert holds(nas, "tank/data")[snap["name"]] == ["keep", "zrr-mine"]
    no_changes(capsys, config)


def test_a_target_out_of_space_keeps_the_step_held_then_resumes(
        hosts: tuple[StandinState, StandinState], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nas, backup = hosts
    config = write_config(tmp_path / "c.yml", nas, backup, {"tank/data": True})
    backup.inject("recv", "cannot receive new filesystem stream: out of space", remaining=1)
    backup.save()
    code, out, err = cli(capsys, "apply", "-y", "-c", str(config), "--now", NOW)
    assert code == 1 and "out of space on pool pool of backup" in out + err, out + err
    step = step_hold_tag("backup", "pool/r")
    assert holds(nas, "tank/data") == {"zrepl_20251124_140000": [], "zrepl_20251124_160000": [step]}
    apply_ok(capsys, config)
    assert all(not tags for tags in holds(nas, "tank/data").values())
    no_changes(capsys, config)


def test_a_cut_link_leaves_the_step_held_and_the_next_apply_resumes_by_token(
        hosts: tuple[StandinState, StandinState], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """(2): the stream of a full send is cut (the link drops): the receive is resumable, the
    step's snapshot stays held on the source, the next apply resumes it by its token and
    then releases the hold."""
    nas, backup = hosts
    config_path = write_config(tmp_path / "c.yml", nas, backup, {"tank/data": True})
    config = load_config(config_path)
    with open_executors(config) as executors:
        plan = make_plan(config, gather(config, executors), datetime(2025, 11, 24, 16, tzinfo=UTC))
        (send,) = [a for a in plan.actions if isinstance(a, SendAction)]
        before = tuple(a for a in plan.actions if a.kind in ("snapshot", "create", "hold"))
        assert [a.kind for a in before].count("hold") == 1
        assert apply_plan(replace(plan, actions=before), config, executors).ok
    stream = subprocess.run(with_zfs_command(nas.zfs_command, send.send_argv()), capture_output=True,
                            check=True).stdout
    cut = subprocess.run(with_zfs_command(backup.zfs_command, send.recv_argv()), input=stream[:-20],
                         capture_output=True, check=False)
    assert cut.returncode != 0
    backup.reload()
    assert backup.datasets["pool/r/tank/data"].get("resume_token")
    step = step_hold_tag("backup", "pool/r")
    assert holds(nas, "tank/data")[send.snapshot] == [step]

    out = apply_ok(capsys, config_path)
    assert "resume send" in out, out
    assert all(not tags for tags in holds(nas, "tank/data").values())
    last = last_received_tag("nas", "backup", "pool/r")
    assert holds(backup, "pool/r/tank/data") == {send.snapshot: [last]}
    no_changes(capsys, config_path)


def test_the_held_base_refuses_a_foreign_destroy_and_a_hand_written_replica_is_a_conflict(
        hosts: tuple[StandinState, StandinState], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """(3) and (4): zfs refuses to destroy the last received snapshot (held); data written
    to the replica by hand is a conflict with the rollback that fixes it, never a rollback."""
    nas, backup = hosts
    config = write_config(tmp_path / "c.yml", nas, backup, {"tank/data": True})
    apply_ok(capsys, config)
    replica = "pool/r/tank/data"
    (base,) = holds(backup, replica)
    refused = subprocess.run(with_zfs_command(backup.zfs_command, ["zfs", "destroy", f"{replica}@{base}"]),
                             capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "dataset is busy" in refused.stderr
    assert list(holds(backup, replica)) == [base]

    backup.reload()
    backup.write(replica)
    backup.save()
    code, out, err = cli(capsys, "apply", "-y", "-c", str(config), "--now", LATER)
    assert code == 0, out + err  # a conflict is reported, not a failed action
    assert f"zfs rollback {replica}@{base}" in out + err, out + err
    assert list(holds(backup, replica)) == [base]  # nothing sent, nothing rolled back


def test_strip_lands_below_the_prefix(
        hosts: tuple[StandinState, StandinState], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nas, backup = hosts
    config = write_config(tmp_path / "c.yml", nas, backup, {"tank/data": True, "tank/vol": True},
                          strip="tank")
    apply_ok(capsys, config)
    backup.reload()
    assert {"pool/r/data", "pool/r/vol"} <= set(backup.datasets)
    assert not [name for name in backup.datasets if name.startswith("pool/r/tank")]
    no_changes(capsys, config)
