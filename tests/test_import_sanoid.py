"""`import sanoid` against sanoid's own example configurations (tests/data/import/sanoid) and
the way sanoid resolves defaults, templates, overrides and recursion."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.config.load import load_config_text
from reconciler.errors import ConfigError
from reconciler.importers.draft import ImportResult, NoteKind
from reconciler.importers.emit import emit
from reconciler.importers.sanoid import TypeRule, import_sanoid, our_grid, sanoid_rules
from reconciler.importers.sanoid_ini import BUILTIN_DEFAULTS, read_ini

DATA = Path(__file__).parent / "data" / "import" / "sanoid"


def run(path: Path | str, **kwargs: str) -> ImportResult:
    return emit(import_sanoid(str(path), **kwargs))


def conf(tmp_path: Path, text: str, name: str = "sanoid.conf") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def rules_of(result: ImportResult, policy: str) -> list[dict[str, object]]:
    return [r.model_dump(exclude_defaults=True) for r in result.config.policies[policy].keep_source]


def test_the_builtin_defaults_are_sanoid_2_1_0s_file() -> None:
    shipped = read_ini(str(DATA / "sanoid.defaults.conf")).sections["template_default"]
    assert {key: value for key, (value, _) in shipped.items()} == BUILTIN_DEFAULTS


@pytest.mark.parametrize("name", ["sanoid.example.conf", "sanoid-1.4-repo.conf"])
def test_sanoids_examples_import_into_configurations_that_validate(name: str) -> None:
    result = run(DATA / name)
    assert load_config_text(result.text, "imported.yml") == result.config
    assert result.text.startswith("# Imported from sanoid")


def test_templates_in_order_then_inline_overrides_then_recursion() -> None:
    result = run(DATA / "sanoid-1.4-repo.conf")
    config = result.config
    by_filter = {next(iter(e.filter)): e for e in config.filesystems}
    # [zpoolname/datasetname]: production, then demo (daily 60), then hourly 12 / monthly 1 inline
    dataset = config.policies[by_filter["zpoolname/datasetname"].policy]
    assert dataset.snapshots is not None and dataset.snapshots.interval == "1h"
    kept = {r.regex: r for r in dataset.keep_source if r.type == "last_n"}
    assert {k: v.count for k, v in kept.items()} == {  # type: ignore[union-attr]
        "^autosnap_.*_hourly$": 12, "^autosnap_.*_daily$": 60, "^autosnap_.*_monthly$": 1}
    # [zpoolname/parent]: recursive, process_children_only: the children, not the parent, and not
    # the child section, which has its own entry (its template on top of the parent's settings)
    parent = by_filter["zpoolname/parent<"]
    assert parent.filter == {"zpoolname/parent<": True, "zpoolname/parent": False,
                             "zpoolname/parent/child": False}
    child = by_filter["zpoolname/parent/child"]
    counts = {r.regex: r.count for r in config.policies[child.policy].keep_source  # type: ignore[union-attr]
              if r.type == "last_n"}
    assert counts == {"^autosnap_.*_hourly$": 36, "^autosnap_.*_daily$": 60, "^autosnap_.*_monthly$": 3}
    assert any("Perl hash order" in n.message for n in result.notes_of(NoteKind.DIFFERS))


def test_manage_is_our_prefix_and_sanoids_autosnap_names_only() -> None:
    result = run(DATA / "sanoid.example.conf")
    (entry,) = result.config.filesystems
    assert entry.filter == {"zpoolname/parent2<": True}  # recursive = zfs: the subtree, atomically
    policy = result.config.policies[entry.policy]
    import re

    manage = re.compile(policy.manage or "")
    assert manage.search("zrepl_20261124_120000")
    assert manage.search("autosnap_2026-11-24_12:00:00_hourly")
    for foreign in ("syncoid_nas_2026-11-24:12:00:00", "manual", "autosnap_2026-11-24_12:00:00_weird",
                    "zfs-auto-snap_hourly-2026-11-24-1200"):
        assert not manage.search(foreign), foreign


def test_each_type_is_kept_as_sanoid_prunes_it() -> None:
    rules = sanoid_rules(TypeRule("hourly", 48, timedelta(hours=1)))
    assert rules == [{"type": "last_n", "count": 48, "regex": "^autosnap_.*_hourly$"},
                     {"type": "grid", "grid": "1x2d(keep=all) | 1x1s(keep=all)",
                      "regex": "^autosnap_.*_hourly$"}]


def test_our_snapshots_get_one_grid_from_the_counts() -> None:
    types = [TypeRule("hourly", 48, timedelta(hours=1)), TypeRule("daily", 90, timedelta(days=1)),
             TypeRule("monthly", 6, timedelta(days=31))]
    assert our_grid(types) == "1x1h(keep=all) | 47x1h | 88x1d | 4x31d"
    assert our_grid([TypeRule("hourly", 48, timedelta(hours=1)), TypeRule("daily", 1, timedelta(days=1))]) \
        == "1x1h(keep=all) | 47x1h"  # the dailies' day is inside the hourlies' two


def test_frequent_period_is_the_interval(tmp_path: Path) -> None:
    result = run(conf(tmp_path, """\
        [tank/db]
        \tfrequently = 8
        \tfrequent_period = 5
        \thourly = 24
        \tdaily = 7
        \tmonthly = 0
        """))
    policy = result.config.policies["tank-db"]
    assert policy.snapshots is not None and policy.snapshots.interval == "5m"
    grids = [r.grid for r in policy.keep_source if r.type == "grid"]  # type: ignore[union-attr]
    assert grids[0] == "1x5m(keep=all) | 7x5m | 24x1h | 6x1d"  # 24h - 40m, rounded up
    assert "1x40m(keep=all) | 1x1s(keep=all)" in grids


def test_a_user_template_default_and_a_prefix(tmp_path: Path) -> None:
    result = run(conf(tmp_path, """\
        [template_default]
        \thourly = 10
        \tmonthly = 0
        [tank]
        \tdaily = 3
        """), prefix="auto_")
    policy = result.config.policies["tank"]
    assert policy.snapshots is not None and policy.snapshots.prefix == "auto_"
    assert policy.manage is not None and policy.manage.startswith("^(?:auto_|autosnap_")
    counts = {r.regex: r.count for r in policy.keep_source if r.type == "last_n"}  # type: ignore[union-attr]
    assert counts == {"^autosnap_.*_hourly$": 10, "^autosnap_.*_daily$": 3}


def test_backup_datasets_prune_only_and_ignored_ones_are_cut_out(tmp_path: Path) -> None:
    result = run(conf(tmp_path, """\
        [backup/nas]
        \tuse_template = backup
        \trecursive = yes
        [backup/nas/scratch]
        \tuse_template = ignore
        [template_backup]
        \tautosnap = no
        \thourly = 30
        \tdaily = 90
        \tmonthly = 12
        [template_ignore]
        \tautoprune = no
        \tautosnap = no
        """))
    (entry,) = result.config.filesystems
    assert entry.filter == {"backup/nas<": True, "backup/nas/scratch": False}
    policy = result.config.policies[entry.policy]
    assert policy.snapshots is None
    assert policy.manage == "^autosnap_.*_(?:frequently|hourly|daily|weekly|monthly|yearly)$"
    assert any("[backup/nas/scratch]" in n.message for n in result.notes_of(NoteKind.NOT_MAPPED))


def test_autoprune_off_and_prune_defer_keep_everything(tmp_path: Path) -> None:
    result = run(conf(tmp_path, """\
        [tank/a]
        \tautoprune = no
        [tank/b]
        \tprune_defer = 80
        """))
    for entry in result.config.filesystems:
        assert result.config.policies[entry.policy].keep_source == []
    assert "To prune, use:" in result.text
    assert any("prune_defer" in n.message for n in result.notes_of(NoteKind.SAFER))


def test_every_type_zero_destroys_sanoids_snapshots_as_sanoid_does(tmp_path: Path) -> None:
    result = run(conf(tmp_path, """\
        [tank/x]
        \thourly = 0
        \tdaily = 0
        \tmonthly = 0
        """))
    (rule,) = rules_of(result, "tank-x")
    assert rule["type"] == "regex" and rule["negate"] is True


def test_scripts_and_monitoring_are_listed(tmp_path: Path) -> None:
    result = run(conf(tmp_path, """\
        [tank/db]
        \tpre_snapshot_script = /usr/local/bin/freeze
        \thourly_warn = 2h
        """))
    not_mapped = [n.message for n in result.notes_of(NoteKind.NOT_MAPPED)]
    assert any("pre_snapshot_script = /usr/local/bin/freeze" in n for n in not_mapped)
    assert any("monitoring settings (hourly_warn)" in n for n in not_mapped)


@pytest.mark.parametrize(("text", "message"), [
    ("[tank]\n\thourlies = 3\n", r"sanoid\.conf:2:1: tank: unknown setting 'hourlies'"),
    ("[tank]\n\thourly = many\n", r"sanoid\.conf:2:1: tank: hourly = 'many': expected a whole number"),
    ("[tank]\n\thourly = 3\n\thourly = 4\n", r"sanoid\.conf:3:1: tank: duplicate key 'hourly'"),
    ("hourly = 3\n", r"sanoid\.conf:1:1: a setting before the first \[section\]"),
    ("[template_x]\n\thourly = 3\n", r"no section manages a dataset"),
])
def test_invalid_configurations_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        import_sanoid(str(conf(tmp_path, text)))
