"""`import znapzend` against znapzend's documentation example and test mock
(tests/data/import/znapzend): plans as grids, destinations as targets, tsformat as manage."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.config.load import load_config_text
from reconciler.errors import ConfigError
from reconciler.importers.draft import ImportResult, NoteKind
from reconciler.importers.emit import emit
from reconciler.importers.znapzend import import_znapzend, parse_plan, plan_grid, tsformat_regex

DATA = Path(__file__).parent / "data" / "import" / "znapzend"


def run(path: Path | str) -> ImportResult:
    return emit(import_znapzend(str(path)))


@pytest.mark.parametrize("name", ["zetup-example.zfsget", "t-zfs-mock.txt", "export.txt"])
def test_znapzends_examples_import_into_configurations_that_validate(name: str) -> None:
    result = run(DATA / name)
    assert load_config_text(result.text, "imported.yml") == result.config


def test_zfs_get_output_and_znapzendzetup_export_import_the_same() -> None:
    assert run(DATA / "zetup-example.zfsget").config == run(DATA / "export.txt").config


def test_the_source_plan_becomes_a_grid_and_the_schedule() -> None:
    config = run(DATA / "zetup-example.zfsget").config
    (entry,) = config.filesystems
    assert entry.filter == {"tank/home<": True}  # recursive=on
    policy = config.policies[entry.policy]
    assert policy.snapshots is not None and policy.snapshots.interval == "1h"
    ours, legacy = policy.keep_source
    assert ours.grid == "1x1h(keep=all) | 167x1h | 138x4h | 60x1d" and ours.regex == "^zrepl_"  # type: ignore[union-attr]
    assert legacy.grid == "1x90d(keep=all) | 1x1s(keep=all)"  # type: ignore[union-attr]
    assert re.search(legacy.regex, "2026-11-24-120000")
    assert not re.search(legacy.regex, "zrepl_20261124_120000")
    # dst plans: 1 week buckets to 1 year, then 30-day months to 10 years
    assert policy.keep_target[0].grid == "1x1h(keep=all) | 167x1h | 138x4h | 60x1d | 40x1w | 110x30d"  # type: ignore[union-attr]


def test_destinations_that_do_not_follow_root_slash_source_are_commented_with_the_rename() -> None:
    result = run(DATA / "zetup-example.zfsget")
    assert result.config.filesystems[0].replicate_to == []
    assert "ssh root@bserv zfs rename -p backup/home backup/tank/home" in result.text
    assert "replicate_to: [{host: bserv, root: backup}]" in result.text
    bserv = result.config.hosts["bserv"]
    assert (bserv.connection, bserv.address, bserv.user) == ("ssh", "bserv", "root")  # type: ignore[union-attr]
    not_mapped = [n.message for n in result.notes_of(NoteKind.NOT_MAPPED)]
    assert sum("the replica's name does not follow" in n for n in not_mapped) == 2
    assert any("pre_znap_cmd" in n for n in not_mapped) and any("post_znap_cmd" in n for n in not_mapped)


def test_a_destination_under_a_root_is_a_target(tmp_path: Path) -> None:
    path = tmp_path / "props"
    path.write_text("tank/data\torg.znapzend:src_plan\t2days=>1hours\n"
                    "tank/data\torg.znapzend:dst_0\troot@nas.example.org:pool/backup/tank/data\n"
                    "tank/data\torg.znapzend:dst_0_plan\t30days=>1days\n"
                    "tank/data/tmp\torg.znapzend:enabled\toff\n")
    config = run(path).config
    (entry,) = config.filesystems
    assert entry.filter == {"tank/data": True}
    (target,) = entry.replicate_to
    assert (target.host, target.root) == ("nas", "pool/backup")
    assert target.target_dataset("tank/data") == "pool/backup/tank/data"


def test_recursive_plans_cut_out_disabled_children(tmp_path: Path) -> None:
    path = tmp_path / "props"
    path.write_text("tank\torg.znapzend:src_plan\t1d=>1h\ntank\torg.znapzend:recursive\ton\n"
                    "tank/tmp\torg.znapzend:enabled\toff\n"
                    "tank/vm\torg.znapzend:enabled\toff\ntank/vm\torg.znapzend:recursive\ton\n")
    (entry,) = run(path).config.filesystems
    assert entry.filter == {"tank<": True, "tank/tmp": False, "tank/vm<": False}


@pytest.mark.parametrize(("plan", "grid"), [
    ("7d=>1h,30d=>4h,90d=>1d", "1x1h(keep=all) | 167x1h | 138x4h | 60x1d"),
    ("1week=>30min", "1x30m(keep=all) | 335x30m"),
    ("10year=>2day", "1x2d(keep=all) | 1826x2d"),  # 3652.5 days, rounded up
    ("1hours=>10minutes,30minutes=>5minutes,1minutes=>6seconds", "1x6s(keep=all) | 9x6s | 6x5m | 3x10m"),
    ("2m=>1w", "1x1w(keep=all) | 8x1w"),  # m is a month (30 days) in a plan, as znapzend lowercases it
])
def test_plans_as_grids(plan: str, grid: str) -> None:
    assert plan_grid(parse_plan(plan)) == grid


def test_plan_units_follow_znapzend() -> None:
    assert parse_plan("1y=>1mon").pairs == ((timedelta(days=365.25), timedelta(days=30)),)
    with pytest.raises(ValueError, match="'7x' is not a time"):
        parse_plan("7x=>1h")


@pytest.mark.parametrize(("tsformat", "name"), [
    ("%Y-%m-%d-%H%M%S", "2026-11-24-120000"), ("%Y-%m-%dT%H:%M:%SZ", "2026-11-24T12:00:00Z"),
    ("backup.%Y%m%d_%H%M%S", "backup.20261124_120000")])
def test_tsformat_names_are_matched_exactly(tsformat: str, name: str) -> None:
    regex = tsformat_regex(tsformat)
    assert re.fullmatch(regex, name) and not re.search(regex, name + "x") and not re.search(regex, "x" + name)


@pytest.mark.parametrize(("text", "message"), [
    ("tank\torg.znapzend:src_plan\t7x=>1h\n", r"props:1:1: tank src_plan: plan '7x=>1h'"),
    ("garbage line here\n", r"props:1:1: not a znapzend property line"),
    ("src_plan=7d=>1h\n", r"props:1:1: no src property"),
    ("tank\tcompression\tlz4\n", r"no org.znapzend properties"),
])
def test_invalid_input_names_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "props"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        import_znapzend(str(path))
