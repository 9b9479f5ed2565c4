"""``zrepl-reconcile validate``: the summary of what a configuration manages, and its exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli import build_parser, main
from reconciler.commands.validate import NOT_REPLICATED, PROTECTED, PRUNE_WINS

PLAYBOOKS = Path(__file__).parent.parent / "playbooks"


def run_validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["validate", "-c", str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_summary_of_push_replication(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_validate(PLAYBOOKS / "push-ssh-backup.yml", capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == (
        f"{PLAYBOOKS / 'push-ssh-backup.yml'}: valid (2 hosts, 1 policy, 2 filesystem entries)")
    for expected in [
        "  nas     local  (runs: zfs)",
        "  backup  ssh zrepl@backup.example.org:22  (runs: sudo -n zfs)",
        "    snapshots    zrepl_<UTC timestamp> every 1h",
        "    manage       ^zrepl_",
        "    keep_source  not_replicated (keep every snapshot not yet on every target)",
        "                 grid 1x1h(keep=all) | 24x1h | 14x1d matching ^zrepl_",
        "    keep_target  grid 1x1h(keep=all) | 24x1h | 30x1d | 12x30d matching ^zrepl_",
        f"    prune rule   {PROTECTED}",
        "  [0] on nas, policy hourly: tank/data< (include), tank/data/scratch (exclude), "
        "tank/vm:win11 (include)",
        "      -> backup:pool/nas  (e.g. tank/data -> pool/nas/tank/data, initial=newest)",
        "      -> backup:pool/nas-raw  (e.g. tank/secrets -> pool/nas-raw/tank/secrets, initial=newest, raw)",
        "         receive: zfs recv -o readonly=on -o canmount=noauto (volumes: only what applies)",
        "         protection: initial guarantee_resumability, incremental guarantee_resumability",
        "         raw: encrypted sources stay encrypted on the target, their keys are never loaded"
        " there",
        "         raw not set: an encrypted source is refused (conflict unencrypted_replica) until raw"
        " is true, or false on purpose",
    ]:
        assert expected in out.splitlines()


def test_summary_says_when_pruning_wins(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_validate(PLAYBOOKS / "laptop-prune-wins.yml", capsys)
    assert code == 0
    assert f"    prune rule   {PRUNE_WINS}" in out.splitlines()
    assert PRUNE_WINS.startswith("keep_source has no not_replicated: pruning wins over stalled replication")


def test_summary_of_local_only(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_validate(PLAYBOOKS / "local-retention.yml", capsys)
    assert code == 0
    assert "    keep_target  (no rules: keeps every snapshot)" in out.splitlines()
    assert "      no replication (local snapshots and retention only)" in out.splitlines()


def test_invalid_config_exits_1_listing_every_problem(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yml"
    path.write_text("hosts: {nas: {connection: local}}\npolicies: {p: {}}\n"
                    "filesystems: [{host: nsa, filter: {\"t<\": true}, policy: q}]\n")
    code, out, err = run_validate(path, capsys)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "error: 2 problems in the configuration:",
        f"{path}:3:22: filesystems[0].host: undefined host 'nsa'; did you mean 'nas'? "
        "(defined hosts: nas)",
        f"{path}:3:57: filesystems[0].policy: undefined policy 'q' (defined policies: p)",
    ]


def test_default_config_name(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 1
    expected = "error: zrepl-reconcile.yml: no such file (give the configuration with -c FILE)\n"
    assert capsys.readouterr().err == expected


def test_summary_of_a_policy_nothing_replicates(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_validate(PLAYBOOKS / "local-retention.yml", capsys)
    assert code == 0
    assert f"    prune rule   {NOT_REPLICATED}" in out.splitlines()


def _boom(path: str) -> None:
    raise RuntimeError("boom")


@pytest.mark.parametrize("argv", [["validate", "--debug", "-c", "c.yml"],
                                  ["validate", "-c", "c.yml", "--debug"],
                                  ["--debug", "validate", "-c", "c.yml"]])
def test_debug_before_or_after_the_command_prints_the_traceback_of_an_internal_error(
        argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reconciler.commands.validate.load_config", _boom)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n")
    assert 'in _boom\n    raise RuntimeError("boom")\nRuntimeError: boom\n' in err
    assert err.endswith("internal error: RuntimeError: boom (run with --debug for a traceback)\n")


def test_without_debug_an_internal_error_is_one_line(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reconciler.commands.validate.load_config", _boom)
    assert main(["validate", "-c", "c.yml"]) == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (
        "", "internal error: RuntimeError: boom (run with --debug for a traceback)\n")


def test_debug_after_the_command_also_shows_where_a_config_error_came_from(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yml"
    path.write_text("hosts:\n  nas:\t{connection: local}\n")
    assert main(["validate", "-c", str(path), "--debug"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n")
    assert err.endswith(f"error: {path}:2:7: a tab character after 'nas:': use a space "
                        "(outside [...] and {...} only spaces may separate YAML tokens)\n")


@pytest.mark.parametrize("command", ["validate", "schema", "plan", "apply"])
def test_every_command_takes_debug_on_either_side(command: str) -> None:
    parser = build_parser()
    assert parser.parse_args([command, "--debug"]).debug is True
    assert parser.parse_args(["--debug", command]).debug is True
    assert parser.parse_args([command]).debug is False
