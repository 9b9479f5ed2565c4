"""`import zrepl` against zrepl's own sample configurations and documentation examples
(tests/data/import/zrepl, see its README), and against the mistakes zrepl itself refuses."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.config.load import load_config_text
from reconciler.errors import ConfigError
from reconciler.importers.draft import ImportResult, NoteKind
from reconciler.importers.emit import emit
from reconciler.importers.placeholders import find_placeholders
from reconciler.importers.zrepl import import_zrepl

DATA = Path(__file__).parent / "data" / "import" / "zrepl"
VALID = ["push.yml", "snap_cron.yml", "source.yml", "quickstart_fan_out_replication_source.yml",
         "quickstart_backup_to_external_disk.yml", "quickstart_continuous_server_backup_sender.yml",
         "docs-include/zrepl.yml", "docs-prune-push.yml", "docs-hooks-push.yml"]


def run(*names: str | Path) -> ImportResult:
    return emit(import_zrepl([str(DATA / n) if isinstance(n, str) else str(n) for n in names]))


def notes(result: ImportResult, kind: NoteKind) -> list[str]:
    return [n.message for n in result.notes_of(kind)]


@pytest.mark.parametrize("name", VALID)
def test_every_sample_imports_into_a_configuration_that_validates(name: str) -> None:
    result = run(name)
    config = load_config_text(result.text, "imported.yml")
    assert config == result.config
    assert result.text.startswith("# Imported from zrepl")
    for note in result.notes:  # every note is in the output too, with where it comes from
        assert note.message in result.text and note.where.split(":")[0].endswith((".yml", ".yaml"))


def test_a_sender_and_its_receiver_merge_into_one_inventory() -> None:
    result = run("quickstart_continuous_server_backup_sender.yml",
                 "quickstart_continuous_server_backup_receiver.yml")
    config = result.config
    assert config.hosts["prod"].connection == "local"  # the first file's machine, named as the sink knows it
    backups = config.hosts["backups"]
    assert backups.connection == "ssh" and backups.address == "backups.example.com"
    (entry,) = config.filesystems
    assert entry.host == "prod"
    assert entry.filter == {"zroot<": True, "zroot/var/tmp<": False, "zroot/usr/home/paranoid": False}
    (target,) = entry.replicate_to
    # zrepl's sink mapping: root_fs/<client identity>/<source path>
    assert (target.host, target.root) == ("backups", "storage/zrepl/sink/prod")
    assert target.target_dataset("zroot/usr/home") == "storage/zrepl/sink/prod/zroot/usr/home"
    policy = config.policies[entry.policy]
    assert policy.snapshots is not None
    assert (policy.snapshots.prefix, policy.snapshots.interval) == ("zrepl_", "10m")
    assert [r.model_dump(exclude_defaults=True) for r in policy.keep_source] == [
        {"type": "not_replicated"}, {"type": "last_n", "count": 10}]
    assert [r.model_dump(exclude_defaults=True) for r in policy.keep_target] == [
        {"type": "grid", "grid": "1x1h(keep=all) | 24x1h | 30x1d | 6x30d", "regex": "^zrepl_"}]
    assert policy.manage == "^zrepl_"
    assert not result.notes_of(NoteKind.PLACEHOLDER) and find_placeholders(config) == []
    assert any("tls transport" in n for n in notes(result, NoteKind.NOT_MAPPED))
    assert any("placeholder" in n for n in notes(result, NoteKind.NOT_MAPPED))  # recv.placeholder


def test_zrepl_issue_651_manage_is_what_zrepl_snapshots_and_the_others_are_reported() -> None:
    result = run("quickstart_continuous_server_backup_sender.yml")
    assert result.config.policies["prod_to_backups"].manage == "^zrepl_"
    safer = notes(result, NoteKind.SAFER)
    assert any("zrepl issue 651" in n and "manage: '.*'" in n and "on the source" in n for n in safer)
    assert any("on the targets" in n for n in safer)
    assert "To prune them as zrepl did: manage: '.*'" in result.text


def test_alone_the_sender_gets_placeholders_for_what_only_the_receiver_names() -> None:
    result = run("quickstart_continuous_server_backup_sender.yml")
    (target,) = result.config.filesystems[0].replicate_to
    assert target.root == "FILL-IN-root_fs/FILL-IN-client-identity"
    assert find_placeholders(result.config) == [
        "filesystems[0].replicate_to[0].root: FILL-IN-root_fs/FILL-IN-client-identity"]
    assert len(result.notes_of(NoteKind.PLACEHOLDER)) == 2


def test_snap_job_and_replication_only_push_become_one_entry_with_the_snap_jobs_rules() -> None:
    result = run("quickstart_backup_to_external_disk.yml")
    config = result.config
    (host,) = config.hosts
    (entry,) = config.filesystems
    policy = config.policies[entry.policy]
    assert policy.snapshots is not None and policy.snapshots.interval == "15m"
    # keep_sender is `regex: .*` (keeps everything): the snap job's rules alone decide, exactly
    assert [r.type for r in policy.keep_source] == ["grid", "regex"]
    assert "push job 'push_to_drive' keep_sender keep everything" in result.text
    (target,) = entry.replicate_to
    assert (target.host, target.root, target.raw) == (host, "backuppool/zrepl/sink/myhostname", True)
    assert any("send.encrypted" in n for n in notes(result, NoteKind.DIFFERS))
    # zrepl's protection levels are ours, same names (issue 13)
    assert (target.protection.initial, target.protection.incremental) == (
        "guarantee_resumability", "guarantee_incremental")
    assert not any("replication.protection" in n for n in notes(result, NoteKind.NOT_MAPPED))


def test_manual_snapshotting_without_a_snap_job_manages_nothing_and_says_how_to_opt_in() -> None:
    result = run("push.yml")
    policy = result.config.policies["push"]
    assert policy.snapshots is None and policy.manage == "(?!)"
    assert any("opt in with manage: '^zrepl_.*'" in n for n in notes(result, NoteKind.SAFER))
    entry = result.config.filesystems[0]
    assert entry.filter == {"FILL-IN-pool<": True, "tmp": False}  # zrepl's '<' (every pool)
    assert "filesystems[0].filter: FILL-IN-pool<" in find_placeholders(result.config)


def test_cron_becomes_the_shortest_gap_and_says_so() -> None:
    result = run("snap_cron.yml")
    policy = result.config.policies["snapjob"]
    assert policy.snapshots is not None and policy.snapshots.interval == "5m"
    assert policy.snapshots.prefix == "zrepl_snapjob_"
    (differs,) = notes(result, NoteKind.DIFFERS)
    assert "'*/5 * * * *'" in differs and "every 5m" in differs


def test_include_of_a_directory_reads_its_jobs() -> None:
    result = run("docs-include/zrepl.yml")
    assert result.config.filesystems[0].filter == {"MyPool/MyDataset<": True}
    assert "jobs.d/MyDataSet.yml:2" in result.text


def test_hooks_and_bandwidth_limits_are_listed_one_line_each() -> None:
    result = run("docs-hooks-push.yml")
    not_mapped = notes(result, NoteKind.NOT_MAPPED)
    assert sum("snapshot hook" in n for n in not_mapped) == 2
    assert any("send.bandwidth_limit" in n for n in not_mapped)


def test_fan_out_sources_ask_for_the_pulling_machines() -> None:
    result = run("quickstart_fan_out_replication_source.yml")
    (entry,) = result.config.filesystems  # the snap job and both source jobs select tank<
    assert entry.replicate_to == []
    not_mapped = notes(result, NoteKind.NOT_MAPPED)
    assert sum("give the pulling machines' configurations" in n for n in not_mapped) == 2


@pytest.mark.parametrize(("name", "expected"), [
    ("pull.yml", ["pull.yml:11:3: jobs[0].root_dataset: unknown key 'root_dataset'"
                  " (zrepl 0.1 renamed it root_fs)",
                  "pull.yml:20:7: jobs[0].pruning.keep_sender[2].keep_bookmarks: unknown key"]),
    ("pull_ssh.yml", ["pull_ssh.yml:13:3: jobs[0].root_dataset: unknown key 'root_dataset'"]),
    ("local.yml", ["local.yml:29:15: jobs[1].pruning.keep_receiver[0].type: unknown keep rule type"
                   " 'most_recent_common_snapshot'"]),
    ("source_ssh.yml", ["source_ssh.yml:13:3: jobs[0].snapshotting: missing required key 'type'",
                        "source_ssh.yml:16:3: jobs[0].pruning: unknown key 'pruning'"]),
    ("sink.yml", ["no job selects filesystems"]),
])
def test_samples_in_formats_zrepl_no_longer_reads_are_refused_with_their_position(
        name: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as error:
        run(name)
    for text in expected:
        assert text in str(error.value)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


SNAP = """\
    jobs:
      - name: {name}
        type: snap
        filesystems: {{"tank<": true}}
        snapshotting: {{type: periodic, prefix: zrepl_, interval: 1h}}
        pruning:
          keep: [{{type: last_n, count: 5}}]
    """


def test_duplicate_job_names_across_an_include_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "jobs.d/a.yml", SNAP.format(name="snapjob"))
    main = write(tmp_path, "zrepl.yml", SNAP.format(name="snapjob") + "include: [jobs.d]\n")
    with pytest.raises(ConfigError, match=r"jobs\.d/a\.yml:2:\d+: jobs\[0\]\.name: duplicate job name"
                                          r" 'snapjob' \(first defined at .*zrepl\.yml:2\)"):
        import_zrepl([str(main)])


def test_reserved_job_names_and_yaml_errors_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"zrepl\.yml:2:\d+: jobs\[0\]\.name: job name '_internal' starts"):
        import_zrepl([str(write(tmp_path, "zrepl.yml", SNAP.format(name="_internal")))])
    broken = write(tmp_path, "broken.yml", "jobs:\n  - name: x\n    type: [snap\n")
    with pytest.raises(ConfigError, match=r"broken\.yml:\d+:\d+: YAML syntax error"):
        import_zrepl([str(broken)])
    with pytest.raises(ConfigError, match=r"list\.yml:1:1: the top level must be a zrepl configuration"):
        import_zrepl([str(write(tmp_path, "list.yml", "- a\n- b\n"))])
    with pytest.raises(ConfigError, match=r"missing\.yml: no such file"):
        import_zrepl([str(tmp_path / "missing.yml")])


def test_overlapping_filters_of_two_jobs_are_refused(tmp_path: Path) -> None:
    text = textwrap.dedent(SNAP.format(name="a")) + textwrap.indent(textwrap.dedent("""\
        - name: b
          type: snap
          filesystems: {"tank/data": true}
          snapshotting: {type: manual}
          pruning: {keep: []}
        """), "  ")
    with pytest.raises(ConfigError, match=r"selects tank/data like job\(s\) 'a' with a different filter"):
        import_zrepl([str(write(tmp_path, "zrepl.yml", text))])


PULL = """\
    jobs:
    - name: pull_app-srv
      type: pull
      connect:
        type: ssh+stdinserver
        host: app-srv.example.com
        user: root
        port: 2222
        identity_file: /etc/zrepl/ssh/identity
      root_fs: storage/zrepl/pull/app-srv
      interval: 10m
      pruning:
        keep_sender:
        - type: not_replicated
        - {type: last_n, count: 10, regex: "^zrepl_"}
        keep_receiver:
        - {type: grid, grid: "1x1h(keep=all) | 24x1h | 35x1d | 6x30d", regex: "^zrepl_"}
    """
SOURCE = """\
    jobs:
    - name: pull_backup
      type: source
      serve: {type: stdinserver, client_identities: [backup-srv]}
      filesystems: {"zroot/var/db": true, "zroot/usr/home<": true, "zroot/usr/home/paranoid": false}
      snapshotting: {type: periodic, prefix: zrepl_, interval: 10m}
    - name: snap
      type: snap
      filesystems: {"zroot/var/db": true, "zroot/usr/home<": true, "zroot/usr/home/paranoid": false}
      snapshotting: {type: manual}
      pruning:
        keep: [{type: grid, grid: "1x1h(keep=all) | 24x1h", regex: "^zrepl_"}]
    """


def test_a_pull_and_its_source_map_to_root_fs_and_source_path(tmp_path: Path) -> None:
    """The tutorial's setup: the backup server pulls; zrepl-reconcile runs there (first file)."""
    result = emit(import_zrepl([str(write(tmp_path, "backup-srv.yml", PULL)),
                                str(write(tmp_path, "app-srv.yml", SOURCE))]))
    config = result.config
    assert config.hosts["backup-srv"].connection == "local"
    app = config.hosts["app-srv"]
    assert app.connection == "ssh"
    assert (app.address, app.port, app.user, app.identity_file) == (
        "app-srv.example.com", 2222, "root", "/etc/zrepl/ssh/identity")
    (entry,) = config.filesystems
    assert entry.host == "app-srv"
    (target,) = entry.replicate_to
    assert target.target_dataset("zroot/var/db") == "storage/zrepl/pull/app-srv/zroot/var/db"
    policy = config.policies[entry.policy]
    # two pruners (the pull's keep_sender and the snap job's keep): the union keeps more
    assert sorted(r.type for r in policy.keep_source) == ["grid", "last_n", "not_replicated"]
    assert any("both prune these snapshots" in n for n in notes(result, NoteKind.SAFER))
    assert any("`zrepl stdinserver`" in n for n in notes(result, NoteKind.DIFFERS))
    assert any("run --every 10m" in n for n in notes(result, NoteKind.NOT_MAPPED))


def test_a_pull_alone_gets_a_placeholder_filter(tmp_path: Path) -> None:
    result = emit(import_zrepl([str(write(tmp_path, "backup-srv.yml", PULL))]))
    (entry,) = result.config.filesystems
    assert entry.filter == {"FILL-IN-pool<": True} and entry.host == "app-srv"
    assert result.config.policies[entry.policy].manage == "(?!)"  # its snapshots' prefix is not known


def test_protection_send_properties_and_recv_properties_map_to_the_target(tmp_path: Path) -> None:
    """Issue 13: zrepl's replication.protection (the pull's), send.send_properties (the
    source's) and recv.properties (override: recv -o, inherit: recv -x; the pull's) become
    the target's protection, send_properties and properties."""
    pull = PULL.replace("      interval: 10m\n", textwrap.indent(textwrap.dedent("""\
        interval: 10m
        replication:
          protection: {initial: guarantee_nothing, incremental: guarantee_incremental}
        recv:
          properties:
            override: {compression: zstd}
            inherit: [mountpoint, "com.example:owner"]
        """), "      "))
    source = SOURCE.replace("      serve: {type: stdinserver, client_identities: [backup-srv]}\n",
                            "      serve: {type: stdinserver, client_identities: [backup-srv]}\n"
                            "      send: {send_properties: true}\n")
    result = emit(import_zrepl([str(write(tmp_path, "backup-srv.yml", pull)),
                                str(write(tmp_path, "app-srv.yml", source))]))
    (target,) = result.config.filesystems[0].replicate_to
    assert (target.protection.initial, target.protection.incremental) == (
        "guarantee_nothing", "guarantee_incremental")
    assert target.send_properties
    assert target.properties.override == {"compression": "zstd"}
    assert target.properties.exclude == ["mountpoint", "com.example:owner"]
    assert not [n for n in notes(result, NoteKind.NOT_MAPPED) if "protection" in n or "properties" in n]
    assert load_config_text(result.text, "imported.yml") == result.config


def test_an_unknown_protection_level_is_refused_with_its_place(tmp_path: Path) -> None:
    pull = PULL.replace("      interval: 10m\n", "      interval: 10m\n"
                        "      replication: {protection: {initial: guarantee_everything}}\n")
    with pytest.raises(ConfigError, match=r"backup-srv\.yml:\d+:\d+: .*protection.*guarantee_resumability"):
        import_zrepl([str(write(tmp_path, "backup-srv.yml", pull))])
