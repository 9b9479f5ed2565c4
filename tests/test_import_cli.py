"""`zrepl-reconcile import` as a user runs it: YAML on stdout or --out, one stderr line per note,
exit 1 with FILE:LINE and no traceback on an invalid input, and `validate` naming placeholders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler import api
from reconciler.cli import main
from reconciler.config.load import load_config_text

DATA = Path(__file__).parent / "data" / "import"
SENDER = str(DATA / "zrepl" / "quickstart_continuous_server_backup_sender.yml")
RECEIVER = str(DATA / "zrepl" / "quickstart_continuous_server_backup_receiver.yml")
NOTE_LINE = re.compile(r"^\S+:\d+: (not mapped|placeholder|differs|safer): \S")


def test_import_zrepl_prints_yaml_and_one_line_per_note(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "zrepl", SENDER, RECEIVER]) == 0
    out, err = capsys.readouterr()
    config = load_config_text(out, "stdout.yml")
    assert set(config.hosts) == {"prod", "backups"}
    lines = err.splitlines()
    notes, summary = lines[:-1], lines[-1]
    assert notes and all(NOTE_LINE.match(line) for line in notes), notes
    assert summary.startswith("imported 2 hosts, 1 policy, 1 filesystem entry: 3 not mapped, 2 safer")
    assert all(line.split(": ", 2)[2] in out for line in notes)  # each note is a comment in the output too


def test_out_writes_a_new_file_and_never_overwrites(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "zrepl-reconcile.yml"
    assert main(["import", "zrepl", SENDER, "--out", str(out)]) == 0
    first = out.read_text()
    stdout, err = capsys.readouterr()
    assert stdout == "" and "fill in the 2 placeholders (FILL-IN) before `plan`" in err
    assert main(["import", "sanoid", str(DATA / "sanoid" / "sanoid.example.conf"), "--out", str(out)]) == 1
    assert "exists; an import never overwrites a file" in capsys.readouterr().err
    assert out.read_text() == first and [p.name for p in tmp_path.iterdir()] == [out.name]


def test_validate_accepts_the_import_and_names_each_placeholder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "zrepl-reconcile.yml"
    assert main(["import", "zrepl", str(DATA / "zrepl" / "push.yml"), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["validate", "-c", str(out)]) == 0
    stdout, err = capsys.readouterr()
    assert ": valid (" in stdout
    warnings = err.splitlines()
    assert warnings == [
        f"warning: {out}: filesystems[0].filter: FILL-IN-pool<: a placeholder from `import`; fill it in",
        f"warning: {out}: filesystems[0].replicate_to[0].root: FILL-IN-root_fs/FILL-IN-client-identity:"
        " a placeholder from `import`; fill it in"]


@pytest.mark.parametrize(("argv", "expected"), [
    (["zrepl", str(DATA / "zrepl" / "pull.yml")], r"pull\.yml:11:3: jobs\[0\]\.root_dataset: unknown key"),
    (["zrepl", "/nonexistent/zrepl.yml"], r"/nonexistent/zrepl\.yml: no such file"),
    (["sanoid", str(DATA / "sanoid" / "sanoid.defaults.conf")],
     r"sanoid\.defaults\.conf:9:1: version: unknown setting 'version' in \[version\]"),
    (["znapzend", str(DATA / "zrepl" / "push.yml")], r"push\.yml:1:1: not a znapzend property line"),
])
def test_invalid_inputs_exit_1_with_the_position_and_no_traceback(
        argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", *argv]) == 1
    out, err = capsys.readouterr()
    assert out == "" and re.search(expected, err) and "Traceback" not in err


def test_sanoid_and_znapzend_through_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "sanoid", str(DATA / "sanoid" / "sanoid.example.conf"), "--prefix", "zrr_"]) == 0
    out, _ = capsys.readouterr()
    policy = next(iter(load_config_text(out, "s.yml").policies.values()))
    assert policy.snapshots is not None and policy.snapshots.prefix == "zrr_"
    assert main(["import", "znapzend", str(DATA / "znapzend" / "export.txt")]) == 0
    assert "tank/home<" in capsys.readouterr().out


def test_the_api_returns_text_config_and_notes() -> None:
    result = api.import_zrepl([SENDER, RECEIVER])
    assert result.config == load_config_text(result.text, "x.yml")
    assert api.import_znapzend(str(DATA / "znapzend" / "export.txt")).config.filesystems
    assert api.import_sanoid(str(DATA / "sanoid" / "sanoid.example.conf")).notes
