"""Every validation problem carries file, line, column, field path and a human message."""

from __future__ import annotations

import json
import shlex
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.config.load import load_config_text
from reconciler.config.models import Config, SshHost
from reconciler.config.references import filters_overlap, replica_overlap
from reconciler.domain.names import filter_decision
from reconciler.errors import ConfigError
from reconciler.transport.local import LocalExecutor
from reconciler.transport.openssh import ssh_argv

HOSTS = """\
hosts:
  nas: {connection: local}
  backup: {connection: ssh, address: backup.example.org, user: zrepl}
policies:
  hourly:
    snapshots: {prefix: zrepl_, interval: 1h}
    keep_source:
      - {type: grid, grid: "1x1h(keep=all) | 24x1h", regex: "^zrepl_"}
"""


def problems(text: str) -> list[str]:
    """The reported lines, without the file name."""
    with pytest.raises(ConfigError) as info:
        load_config_text(textwrap.dedent(text), "c.yml")
    lines = str(info.value).splitlines()
    assert all(line.startswith("c.yml:") for line in lines)
    assert len(lines) == len(info.value.problems)
    return [line.removeprefix("c.yml:") for line in lines]


def valid(text: str) -> Config:
    return load_config_text(textwrap.dedent(text), "c.yml")


def test_a_valid_file_loads() -> None:
    config = valid(HOSTS + """\
filesystems:
  - host: nas
    filter: {"tank/data<": true, "tank/data/scratch": false}
    policy: hourly
    replicate_to: [{host: backup, root: pool/nas}]
""")
    assert config.filesystems[0].replicate_to[0].target_dataset("tank/data") == "pool/nas/tank/data"
    assert config.policies["hourly"].keep_source[0].intervals[0].keep is None  # type: ignore[union-attr]


def test_unknown_keys_point_at_the_key_and_suggest() -> None:
    assert problems(HOSTS + """\
filesystems:
  - host: nas
    filter: {"tank<": true}
    policy: hourly
    replicate: [{host: backup, root: pool/nas}]
extra: 1
""") == [
        "13:5: filesystems[0].replicate: unknown key 'replicate'; did you mean 'replicate_to'? "
        "(allowed: filter, host, policy, replicate_to)",
        "14:1: extra: unknown key 'extra' (allowed: filesystems, hosts, policies, settings)",
    ]


def test_unknown_key_inside_a_tagged_union() -> None:
    assert problems("""\
hosts:
  nas: {connection: local, adress: x}
policies: {p: {}}
filesystems: [{host: nas, filter: {"t<": true}, policy: p}]
""") == ["2:28: hosts.nas.adress: unknown key 'adress' (allowed: channel_programs, command_timeout,"
          " connection, zfs_command)"]


def test_wrong_types() -> None:
    assert problems("""\
hosts:
  backup: {connection: ssh, address: b.example.org, port: "22x", zfs_command: sudo zfs}
policies:
  p:
    keep_source: {type: not_replicated}
filesystems:
  - host: backup
    filter: {"tank<": yes}
    policy: [p]
""") == [
        "2:59: hosts.backup.port: expected an integer, got the string '22x'",
        "2:79: hosts.backup.zfs_command: expected a list, got the string 'sudo zfs'",
        "5:18: policies.p.keep_source: expected a list, got a mapping",
        '8:23: filesystems[0].filter["tank<"]: expected true or false, got the string \'yes\'',
        "9:13: filesystems[0].policy: expected a string, got a list",
    ]


def test_missing_keys_and_empty_sections() -> None:
    assert problems("""\
hosts:
  backup: {connection: ssh}
policies: {}
""") == [
        "1:1: filesystems: missing required key 'filesystems'",
        "2:3: hosts.backup.address: missing required key 'address'",
        "3:11: policies: must not be empty",
    ]


def test_unknown_rule_type_and_connection() -> None:
    assert problems("""\
hosts:
  nas: {connection: telnet}
policies:
  p:
    keep_source: [{type: gird, grid: 1x1h}, {count: 3}, 5]
filesystems: [{host: nas, filter: {"t<": true}, policy: p}]
""") == [
        "2:21: hosts.nas.connection: connection must be one of 'local', 'ssh', got the string 'telnet'",
        "5:26: policies.p.keep_source[0].type: type must be one of 'grid', 'last_n', 'not_replicated', "
            "'regex', "
        "got the string 'gird'; did you mean 'grid'?",
        "5:45: policies.p.keep_source[1].type: missing required key 'type' (one of 'grid', 'last_n', "
        "'not_replicated', 'regex')",
        "5:57: policies.p.keep_source[2]: expected a mapping with 'type' ('grid', 'last_n', "
            "'not_replicated', "
        "'regex'), got the number 5",
    ]


def test_invalid_regexes() -> None:
    assert problems(HOSTS.replace('regex: "^zrepl_"', 'regex: "^zrepl_("') + """\
    manage: "[a-"
filesystems: [{host: nas, filter: {"t<": true}, policy: hourly}]
""") == [
        "8:61: policies.hourly.keep_source[0].regex: invalid regular expression '^zrepl_(': "
        "missing ), unterminated subpattern at position 7",
        "9:13: policies.hourly.manage: invalid regular expression '[a-': unterminated character set at "
            "position 0",
    ]


def test_invalid_grids_name_the_interval() -> None:
    assert problems("""\
hosts: {nas: {connection: local}}
policies:
  p:
    snapshots: {prefix: z_, interval: 1y}
    keep_source:
      - {type: grid, grid: "1x1d | 24x1h", regex: "^z_"}
      - type: grid
        grid: "1x1h(keep=0)"
    keep_target:
      - {type: grid, grid: "", regex: "^z_"}
filesystems: [{host: nas, filter: {"t<": true}, policy: p}]
""") == [
        "4:39: policies.p.snapshots.interval: invalid duration '1y': expected a positive integer and a unit "
        "s, m, h, d or w, e.g. '1h'",
        "6:28: policies.p.keep_source[0].grid: interval 2 of 2 '24x1h' is shorter than the interval before "
            "it "
        "(1d); interval lengths must not decrease (only keep=all intervals may precede a shorter one)",
        "8:15: policies.p.keep_source[1].grid: interval 1 of 1 '1x1h(keep=0)': keep must be a positive "
            "integer "
        "or 'all', not '0'",
        "10:28: policies.p.keep_target[0].grid: empty grid: expected intervals like "
        "'1x1h(keep=all) | 24x1h | 14x1d'",
    ]


def test_meaning_errors_of_the_models_have_no_pydantic_boilerplate() -> None:
    lines = problems("""\
hosts:
  "bad host!": {connection: local}
  nas: {connection: ssh, address: "x;rm", user: "0day", zfs_command: []}
policies:
  p: {keep_source: [{type: not_replicated}]}
filesystems:
  - host: nas
    filter: {"/tank<": true, "<": true, "tank/a@b": false}
    policy: p
    replicate_to: [{host: nas, root: "pool//x"}]
""")
    assert lines == [
        "2:3: hosts[\"bad host!\"]: host name 'bad host!' may contain only letters, digits, '_', '.', '-'",
        "3:35: hosts.nas.address: 'x;rm' is not a host name or IP address",
        "3:49: hosts.nas.user: '0day' is not a valid user name",
        "3:70: hosts.nas.zfs_command: must not be empty",
        "5:3: policies.p: manage is required when the policy has keep rules but no snapshots.prefix",
        "8:14: filesystems[0].filter[\"/tank<\"]: '/tank' is not a valid ZFS dataset name (components of "
            "letters, "
        "digits, '_', '-', ':', '.', ' ' separated by '/')",
        "8:30: filesystems[0].filter[\"<\"]: a bare '<' (every dataset) is not supported: name the pool, "
        "e.g. 'tank<'",
        "8:41: filesystems[0].filter[\"tank/a@b\"]: 'tank/a@b' is not a valid ZFS dataset name (components "
            "of "
        "letters, digits, '_', '-', ':', '.', ' ' separated by '/')",
        "10:38: filesystems[0].replicate_to[0].root: 'pool//x' is not a valid ZFS dataset name (components "
            "of "
        "letters, digits, '_', '-', ':', '.', ' ' separated by '/')",
    ]
    assert not any("errors.pydantic.dev" in line or "Value error" in line for line in lines)


def test_undefined_hosts_and_policies() -> None:
    assert problems(HOSTS + """\
filesystems:
  - host: nsa
    filter: {"tank<": true}
    policy: daily
    replicate_to: [{host: offsite, root: pool/nas}]
""") == [
        "10:11: filesystems[0].host: undefined host 'nsa'; did you mean 'nas'? (defined hosts: backup, nas)",
        "12:13: filesystems[0].policy: undefined policy 'daily' (defined policies: hourly)",
        "13:27: filesystems[0].replicate_to[0].host: undefined host 'offsite' (defined hosts: backup, nas)",
    ]


def test_all_layers_report_together() -> None:
    lines = problems(HOSTS.replace("1x1h(keep=all)", "1x1h(keep=none)") + """\
filesystems:
  - host: nsa
    filter: {"tank<": true}
    policy: hourly
    colour: blue
""")
    assert [line.split(": ")[1] for line in lines] == [
        "policies.hourly.keep_source[0].grid", "filesystems[0].host", "filesystems[0].colour"]


def test_self_replication_into_the_selected_subtree() -> None:
    assert problems(HOSTS + """\
filesystems:
  - host: nas
    filter: {"tank<": true}
    policy: hourly
    replicate_to:
      - {host: nas, root: tank/backup}
""") == [
        "14:27: filesystems[0].replicate_to[0].root: replicating tank onto its own host 'nas' under "
        "'tank/backup' writes tank/backup/tank, which this entry's filter selects again: each run would "
        "replicate the replica; use a root outside the selected datasets or exclude it with "
        "\"tank/backup<\": false",
    ]


@pytest.mark.parametrize(("filter_", "root"), [
    ('{"tank/data<": true}', "tank/backup"),           # another place in the same pool
    ('{"tank/data<": true}', "backup"),                # another pool
    ('{"tank<": true, "tank/backup<": false}', "tank/backup"),  # the replicas are excluded
])
def test_replication_onto_the_own_host_outside_the_selection_is_fine(filter_: str, root: str) -> None:
    valid(HOSTS + f"""\
filesystems:
  - host: nas
    filter: {filter_}
    policy: hourly
    replicate_to: [{{host: nas, root: {root}}}]
""")


def test_same_filter_key_in_two_entries_names_both_locations() -> None:
    assert problems(HOSTS + """\
filesystems:
  - host: nas
    filter: {"tank/data": true}
    policy: hourly
  - host: backup
    filter: {"tank/data": true}
    policy: hourly
  - host: nas
    filter:
      "tank/data": true
    policy: hourly
""") == [
        "18:7: filesystems[2].filter[\"tank/data\"]: tank/data on host 'nas' is claimed by filesystems[0] "
        "(c.yml:11:14) and filesystems[2] (c.yml:18:7): a dataset must belong to one entry per host",
    ]


@pytest.mark.parametrize(("first", "second", "claimed"), [
    ('{"tank<": true}', '{"tank/data<": true}', "tank/data on host 'nas' is"),
    ('{"tank<": true}', '{"tank/data": true}', "tank/data on host 'nas' is"),
    ('{"tank/data<": true}', '{"tank<": true}', "tank/data on host 'nas' is"),
    ('{"tank<": true, "tank/data": false}', '{"tank/data<": true}', "the children of tank/data on host "
        "'nas' are"),
    ('{"tank<": true, "tank/a": false}', '{"tank/a/b": true}', "tank/a/b on host 'nas' is"),
])
def test_overlapping_filters_on_one_host(first: str, second: str, claimed: str) -> None:
    lines = problems(HOSTS + f"""\
filesystems:
  - host: nas
    filter: {first}
    policy: hourly
  - host: nas
    filter: {second}
    policy: hourly
""")
    assert len(lines) == 1
    assert lines[0].startswith("14:14: filesystems[1].filter")
    assert f": {claimed} claimed" in lines[0]
    assert "by filesystems[0] (c.yml:11:14) and filesystems[1] (c.yml:14:14)" in lines[0]


@pytest.mark.parametrize(("first", "second"), [
    ('{"tank<": true, "tank/data<": false}', '{"tank/data<": true}'),
    ('{"tank/a<": true}', '{"tank/b<": true}'),
    ('{"tank/a<": true}', '{"tank/ab<": true}'),   # a prefix of the name is not a parent
    ('{"tank<": false}', '{"tank<": true}'),
])
def test_disjoint_filters_on_one_host_are_fine(first: str, second: str) -> None:
    valid(HOSTS + f"""\
filesystems:
  - host: nas
    filter: {first}
    policy: hourly
  - host: nas
    filter: {second}
    policy: hourly
""")


def test_two_source_hosts_into_one_target_root() -> None:
    text = """\
hosts:
  web1: {connection: local}
  web2: {connection: local}
  vault: {connection: local}
policies: {p: {snapshots: {prefix: z_, interval: 1h}}}
filesystems:
  - {host: web1, filter: {"zroot/srv<": true}, policy: p, replicate_to: [{host: vault, root: backups}]}
  - {host: web2, filter: {"zroot<": true}, policy: p, replicate_to: [{host: vault, root: backups}]}
"""
    assert problems(text) == [
        "8:70: filesystems[1].replicate_to[0]: hosts 'web1' and 'web2' both replicate zroot/srv to "
        "vault:backups (also at c.yml:7:74): give each source host its own root"]
    valid(text.replace("root: backups}]}\n", "root: backups/web2}]}\n", 1))


def test_the_same_target_twice_in_one_entry() -> None:
    assert problems(HOSTS + """\
filesystems:
  - host: nas
    filter: {"tank<": true}
    policy: hourly
    replicate_to: [{host: backup, root: pool/nas}, {host: backup, root: pool/nas}]
""") == ["13:52: filesystems[0].replicate_to[1]: target backup:pool/nas is listed twice "
          "(first at c.yml:13:20)"]


def test_yaml_anchors_and_merge_keys_work() -> None:
    config = valid("""\
hosts:
  a: &ssh {connection: ssh, address: a.example.org, user: zrepl, port: 2222}
  b: {<<: *ssh, address: b.example.org}
policies: {p: {snapshots: {prefix: z_, interval: 1h}}}
filesystems: [{host: a, filter: {"t<": true}, policy: p, replicate_to: [{host: b, root: "r/a"}]}]
""")
    assert config.hosts["b"].address == "b.example.org"  # type: ignore[union-attr]
    assert config.hosts["b"].port == 2222  # type: ignore[union-attr]


# ------------------------------------------------------------------ filter semantics

@pytest.mark.parametrize(("filter_", "dataset", "selected"), [
    ({"tank<": True}, "tank", True),
    ({"tank<": True}, "tank/a/b", True),
    ({"tank<": True}, "tankx", False),
    ({"tank": True}, "tank/a", False),
    ({"tank<": True, "tank/a<": False}, "tank/a/b", False),
    ({"tank<": True, "tank/a": False}, "tank/a/b", True),
    ({"tank<": True, "tank/a": False}, "tank/a", False),
    ({"tank<": False, "tank/a/b": True}, "tank/a/b", True),
    ({"tank/a<": True, "tank/a": False}, "tank/a", False),  # the exact key beats the subtree at equal paths
    ({}, "tank", False),
])
def test_filter_decision_like_zrepl(filter_: dict[str, bool], dataset: str, selected: bool) -> None:
    assert filter_decision(filter_, dataset) is selected


_names = st.sampled_from(["p", "p/a", "p/a/b", "p/b", "p/ab", "q"])
_filters = st.dictionaries(st.builds(lambda n, s: n + ("<" if s else ""), _names, st.booleans()),
                           st.booleans(), max_size=4)
_universe = ["p", "p/a", "p/a/b", "p/a/b/c", "p/a/x", "p/b", "p/b/x", "p/ab", "p/ab/x", "p/x", "q", "q/x"]


@settings(max_examples=100, deadline=None)
@given(_filters, _filters)
def test_overlap_probe_agrees_with_brute_force(a: dict[str, bool], b: dict[str, bool]) -> None:
    brute = any(filter_decision(a, d) and filter_decision(b, d) for d in _universe)
    assert (filters_overlap(a, b) is not None) == brute


def test_self_replication_with_the_root_inside_the_source_subtree() -> None:
    lines = problems(HOSTS + """\
filesystems:
  - host: nas
    filter: {"tank/data<": true}
    policy: hourly
    replicate_to: [{host: nas, root: tank/data/replica}]
""")
    assert lines == [
        "13:38: filesystems[0].replicate_to[0].root: replicating tank/data onto its own host 'nas' under "
        "'tank/data/replica' writes tank/data/replica/tank/data, which this entry's filter selects again: "
        "each run would replicate the replica; use a root outside the selected datasets or exclude it with "
        "\"tank/data/replica<\": false"]


def test_top_level_keys_that_look_like_union_tags() -> None:
    # found by fuzzing: the tag-stripping once removed 'hosts' from this path and crashed
    assert problems("connection: hosts\n")[:2] == [
        "1:1: connection: unknown key 'connection' (allowed: filesystems, hosts, policies, settings)",
        "1:1: filesystems: missing required key 'filesystems'",
    ]


@pytest.mark.parametrize("host_b", ['{<<: *ssh, address: "x;y"}', '{address: "x;y", <<: *ssh}'])
def test_explicit_keys_beside_a_merge_keep_their_own_position(host_b: str) -> None:
    lines = problems(f"""\
hosts:
  a: &ssh {{connection: ssh, address: a.example.org, user: zrepl}}
  b: {host_b}
policies: {{p: {{snapshots: {{prefix: z_, interval: 1h}}}}}}
filesystems: [{{host: a, filter: {{"t<": true}}, policy: p}}]
""")
    column = len("  b: ") + host_b.index('"x;y"') + 1
    assert lines == [f"3:{column}: hosts.b.address: 'x;y' is not a host name or IP address"]


def test_grid_rule_with_an_empty_regex_is_rejected_but_an_omitted_one_matches_all() -> None:
    text = """\
hosts: {nas: {connection: local}}
policies:
  p:
    snapshots: {prefix: z_, interval: 1h}
    keep_source:
      - {type: grid, grid: "1x1h(keep=all)", regex: ""}
filesystems: [{host: nas, filter: {"t<": true}, policy: p}]
"""
    assert problems(text) == [
        "6:53: policies.p.keep_source[0].regex: a grid rule's regex must not be empty (as in zrepl); "
        "leave regex out to match every snapshot"]
    config = valid(text.replace(', regex: ""', ""))
    assert config.policies["p"].keep_source[0].regex == ".*"  # type: ignore[union-attr]


def test_grid_parameter_with_blanks_is_rejected_like_zrepl() -> None:
    assert problems("""\
hosts: {nas: {connection: local}}
policies:
  p:
    snapshots: {prefix: z_, interval: 1h}
    keep_source: [{type: grid, grid: "1x1h(keep = all) | 24x1h"}]
filesystems: [{host: nas, filter: {"t<": true}, policy: p}]
""") == [
        "5:38: policies.p.keep_source[0].grid: interval 1 of 2 '1x1h(keep = all)': blanks around '=' or "
        "after the value in (keep = all) are rejected, as by zrepl: write (keep=N) or (keep=all)"]


LONG = "1" * 5000


@pytest.mark.parametrize(("host", "message"), [
    ("{connection: ssh, address: x, port: .inf}",
     "2:44: hosts.nas.port: expected an integer, got infinity (.inf)"),
    ("{connection: ssh, address: x, port: -.inf}",
     "2:44: hosts.nas.port: expected an integer, got minus infinity (-.inf)"),
    ("{connection: ssh, address: x, port: .nan}",
     "2:44: hosts.nas.port: expected an integer, got not-a-number (.nan)"),
    (f"{{connection: ssh, address: x, port: {LONG}}}",
     "2:44: hosts.nas.port: must be at most 65535, got 11111111111111111111… (5000 digits)"),
    ("{connection: ssh, address: x, port: 0x10000}",
     "2:44: hosts.nas.port: must be at most 65535, got 65536"),
    ("{connection: local, command_timeout: .nan}",
     "2:45: hosts.nas.command_timeout: expected a finite number, got not-a-number (.nan)"),
    ("{connection: local, command_timeout: .inf}",
     "2:45: hosts.nas.command_timeout: expected a finite number, got infinity (.inf)"),
    ("{connection: local, command_timeout: -.inf}",
     "2:45: hosts.nas.command_timeout: must be greater than 0, got -.inf"),
    ("{connection: ssh, address: x, connect_timeout: .nan}",
     "2:55: hosts.nas.connect_timeout: expected a finite number, got not-a-number (.nan)"),
    (f"{{connection: local, command_timeout: {LONG}}}",
     "2:45: hosts.nas.command_timeout: the number 11111111111111111111… (5000 digits) is too large"),
])
def test_odd_numbers_get_one_clear_message(host: str, message: str) -> None:
    assert problems(f"""\
hosts:
  nas: {host}
policies: {{p: {{}}}}
filesystems: [{{host: nas, filter: {{"t<": true}}, policy: p}}]
""") == [message]


def test_a_count_beyond_64_bits_is_rejected_like_zrepl() -> None:
    assert problems(f"""\
hosts: {{nas: {{connection: local}}}}
policies:
  p:
    manage: "^z_"
    keep_source:
      - {{type: last_n, count: -{LONG}}}
      - {{type: last_n, count: {LONG}}}
filesystems: [{{host: nas, filter: {{"t<": true}}, policy: p}}]
""") == [
        "6:31: policies.p.keep_source[0].count: must be at least 1, got -11111111111111111111… (5000 digits)",
        "7:31: policies.p.keep_source[1].count: must be at most 9223372036854775807, got "
        "11111111111111111111… (5000 digits)"]
    assert valid("""\
hosts: {nas: {connection: local}}
policies: {p: {manage: "^z_", keep_source: [{type: last_n, count: 9223372036854775807}]}}
filesystems: [{host: nas, filter: {"t<": true}, policy: p}]
""").policies["p"].keep_source[0].count == 2**63 - 1  # type: ignore[union-attr]


@pytest.mark.parametrize("key", ["[nas]", "{nas: 1}"])
def test_a_list_or_mapping_as_host_key_is_one_problem_not_also_empty_hosts(key: str) -> None:
    assert problems(f"""\
hosts:
  {key}: {{connection: local}}
  ok: {{connection: local}}
policies: {{p: {{}}}}
filesystems: [{{host: ok, filter: {{"t<": true}}, policy: p}}]
""") == ["2:3: hosts: a key must be a plain name, not a list or mapping"]
    lines = problems(f"""\
hosts:
  {key}: {{connection: local}}
policies: {{p: {{}}}}
filesystems: [{{host: ok, filter: {{"t<": true}}, policy: p}}]
""")
    assert lines[0] == "2:3: hosts: a key must be a plain name, not a list or mapping"
    assert not any("must not be empty" in line for line in lines)


def test_empty_manage_identity_file_and_known_hosts_are_rejected() -> None:
    assert problems("""\
hosts:
  nas: {connection: local}
  b: {connection: ssh, address: b.example.org, identity_file: "", known_hosts: ""}
policies:
  p: {manage: "", keep_source: [{type: last_n, count: 3}]}
filesystems: [{host: nas, filter: {"t<": true}, policy: p}]
""") == [
        "3:63: hosts.b.identity_file: must not be empty: leave identity_file out to use the SSH agent's keys",
        "3:80: hosts.b.known_hosts: must not be empty: leave known_hosts out for ~/.ssh/known_hosts",
        "5:15: policies.p.manage: must not be empty: an empty regex matches every snapshot; write '.*' if "
        "this policy may really destroy any snapshot",
    ]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("identity_file", "~/.ssh/%h", "'~/.ssh/%h' contains '%', which the OpenSSH client (bulk sends) expands "
        "as a token: write the path without '%'"),
    ("identity_file", "${HOME}/.ssh/id", "'${HOME}/.ssh/id' contains '${', which the OpenSSH client (bulk "
        "sends) expands as an environment variable: write the path out"),
    ("known_hosts", "~/.ssh/%d", "'~/.ssh/%d' contains '%'"),
])
def test_ssh_paths_the_openssh_client_would_expand_are_rejected(field: str, value: str, message: str) -> None:
    (line,) = problems(f"""\
hosts:
  b: {{connection: ssh, address: b.example.org, {field}: {json.dumps(value)}}}
policies: {{p: {{}}}}
filesystems: [{{host: b, filter: {{"t<": true}}, policy: p}}]
""")
    column = len(f"  b: {{connection: ssh, address: b.example.org, {field}: ") + 1
    assert line.startswith(f"2:{column}: hosts.b.{field}: {message}")


SHELLISH = ["$(touch pwned)", "`touch pwned`", "it's", '"dq"', "a;b", "x|y", "${HOME}", ">out"]


def test_shell_syntax_in_zfs_command_is_literal_argv(tmp_path: Path) -> None:
    # No shell ever parses zfs_command: locally it is the argv, over SSH shlex.join quotes
    # each word once, so the remote shell hands the command exactly these words.
    probe = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
    key = "~/.ssh/$(touch pwned)'\""
    config = valid(f"""\
hosts:
  nas: {{connection: local, zfs_command: {json.dumps(probe + SHELLISH)}}}
  b: {{connection: ssh, address: b.example.org, zfs_command: {json.dumps(["sudo", *SHELLISH])},
      identity_file: {json.dumps(key)}}}
policies: {{p: {{}}}}
filesystems: [{{host: nas, filter: {{"t<": true}}, policy: p}}]
""")
    local, remote = config.hosts["nas"], config.hosts["b"]
    assert local.zfs_command == [*probe, *SHELLISH]
    assert remote.zfs_command == ["sudo", *SHELLISH]
    assert remote.identity_file == key  # type: ignore[union-attr]
    result = LocalExecutor("nas", local.zfs_command).run(["zfs", "list"])
    assert json.loads(result.stdout) == [*SHELLISH, "list"]
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    assert isinstance(remote, SshHost)
    argv = ssh_argv(remote, ["zfs", "list"])
    assert shlex.split(argv[-1]) == ["sudo", *SHELLISH, "list"]
    assert argv[argv.index("-i") + 1].endswith("/.ssh/$(touch pwned)'\"")


def test_a_replica_selected_by_another_entry_on_the_target_host() -> None:
    # entry 0's policy would snapshot and prune nas:tank/backup/data, entry 1's replica
    assert problems(HOSTS + """\
filesystems:
  - {host: nas, filter: {"tank<": true}, policy: hourly}
  - host: nas
    filter: {"data<": true}
    policy: hourly
    replicate_to: [{host: nas, root: tank/backup}]
""") == [
        "14:38: filesystems[1].replicate_to[0].root: replicating data onto its own host 'nas' under "
        "'tank/backup' writes tank/backup/data, which filesystems[0] selects on that host (c.yml:10:26): "
        "its policy 'hourly' would snapshot and prune the replica; use a root outside that entry's "
        "datasets or exclude it there with \"tank/backup<\": false"]


def test_a_replica_pushed_from_another_host_into_a_selected_subtree() -> None:
    assert problems(HOSTS + """\
filesystems:
  - {host: nas, filter: {"tank<": true, "tank/backup": false}, policy: hourly}
  - {host: backup, filter: {"pool/a<": true}, policy: hourly, replicate_to: [{host: nas, root: tank/backup}]}
""") == [
        "11:96: filesystems[1].replicate_to[0].root: replicating pool/a to host 'nas' under 'tank/backup' "
        "writes tank/backup/pool/a, which filesystems[0] selects on that host (c.yml:10:26): its policy "
        "'hourly' would snapshot and prune the replica; use a root outside that entry's datasets or "
        "exclude it there with \"tank/backup<\": false"]


def test_a_replica_selected_by_a_key_below_the_root_is_found() -> None:
    lines = problems(HOSTS + """\
filesystems:
  - {host: nas, filter: {"tank/backup/data/x": true}, policy: hourly}
  - {host: nas, filter: {"data<": true}, policy: hourly, replicate_to: [{host: nas, root: tank/backup}]}
""")
    assert lines == [
        "11:91: filesystems[1].replicate_to[0].root: replicating data/x onto its own host 'nas' under "
        "'tank/backup' writes tank/backup/data/x, which filesystems[0] selects on that host (c.yml:10:26): "
        # no exclusion offered: its explicit key would still select the replica
        "its policy 'hourly' would snapshot and prune the replica; use a root outside that entry's datasets"]


@pytest.mark.parametrize(("other", "source"), [
    ('{"tank<": true, "tank/backup<": false}', '{"data<": true}'),        # replicas excluded there
    ('{"tank/data<": true}', '{"data<": true}'),                          # another subtree of the pool
    ('{"tank/backup/data/x<": true}', '{"data<": true, "data/x<": false}'),  # never sent
    ('{"tank/backup": true}', '{"data<": true}'),                         # the root itself holds no replica
])
def test_replicas_outside_every_selection_are_fine(other: str, source: str) -> None:
    valid(HOSTS + f"""\
filesystems:
  - {{host: nas, filter: {other}, policy: hourly}}
  - {{host: nas, filter: {source}, policy: hourly, replicate_to: [{{host: nas, root: tank/backup}}]}}
""")


_roots = st.sampled_from(["p", "p/a", "q", "p/ab"])


@settings(max_examples=150, deadline=None)
@given(_filters, _roots, _filters)
def test_replica_probe_agrees_with_brute_force(source: dict[str, bool], root: str,
                                               target: dict[str, bool]) -> None:
    brute = any(filter_decision(source, d) and filter_decision(target, f"{root}/{d}") for d in _universe)
    found = replica_overlap(source, root, target)
    assert (found is not None) == brute
    if found is not None and not found.endswith("\uffff"):
        assert filter_decision(source, found) and filter_decision(target, f"{root}/{found}")


def with_manage(manage: str) -> str:
    return f"""\
hosts: {{nas: {{connection: local}}}}
policies:
  p:
    snapshots: {{prefix: zrepl_, interval: 1h}}
    manage: "{manage}"
filesystems: [{{host: nas, filter: {{"tank<": true}}, policy: p}}]
"""


def test_manage_that_misses_the_policys_own_snapshot_names_is_refused() -> None:
    # The schedule only sees managed snapshots: it would snapshot on every run, forever.
    assert problems(with_manage("^auto_")) == [
        "3:3: policies.p: manage '^auto_' does not match the names this policy's snapshots get "
        "(e.g. 'zrepl_20261124_120000'): every run would take another snapshot and none would ever "
        "be pruned; make manage match snapshots.prefix"]
    assert valid(with_manage("^(zrepl|auto)_")).policies["p"].manage == "^(zrepl|auto)_"


def test_not_replicated_keeps_the_cursors_snapshot_unless_told_otherwise() -> None:
    config = valid(HOSTS + """\
      - {type: not_replicated}
filesystems: [{host: nas, filter: {"tank<": true}, policy: hourly}]
""")
    assert config.policies["hourly"].keeps_snapshot_at_cursor
    config = valid(HOSTS + """\
      - {type: not_replicated, keep_snapshot_at_cursor: false}
filesystems: [{host: nas, filter: {"tank<": true}, policy: hourly}]
""")
    assert not config.policies["hourly"].keeps_snapshot_at_cursor


def test_a_key_with_a_newline_stays_on_one_line_in_the_field_path() -> None:
    (line,) = problems('hosts: {nas: {connection: local}}\n'
                       'policies: {p: {snapshots: {prefix: zrepl_, interval: 1h}}}\n'
                       'filesystems:\n  - {host: nas, filter: {"tank/a\\nb": true}, policy: p}\n')
    assert line.startswith('4:26: filesystems[0].filter["tank/a\\nb"]: ') and "\n" not in line
