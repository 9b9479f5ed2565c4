"""Snapshot hooks in the configuration and the plan: validated like every argv, planned as
actions right around their own snapshot (a batch of its own), shown in every format,
and verified as part of a saved plan.

Running them (order, timeout, err_is_fatal, environment, SSH) is tests/test_hooks_apply.py.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
from plan_builders import NOW, World, config_from
from plan_schema import validate_plan

from reconciler.config.load import load_config_text
from reconciler.config.models import Config
from reconciler.domain.actions import (
    ACTION_CLASSES,
    PostHookAction,
    PreHookAction,
    SnapshotAction,
    action_from_json,
    out_of_order,
)
from reconciler.domain.plan import Plan
from reconciler.errors import ConfigError
from reconciler.planfile.verify import action_differences
from reconciler.planning.planner import make_plan
from reconciler.planning.simulate import simulate
from reconciler.render.json import plan_document
from reconciler.render.markdown import render_markdown
from reconciler.render.text import render_text_to_string
from reconciler.render.view import summary_line

FREEZE = ["/usr/local/sbin/db-freeze", "--fast"]
THAW = ["/usr/local/sbin/db-thaw"]


def config(hooks: list[dict[str, Any]], *, plain_filter: dict[str, bool] | None = None) -> Config:
    """Policy ``db`` (with ``hooks``) on nas:tank/db<, policy ``files`` (no hooks) on
    nas:tank/files<, both replicated to backup:pool/nas."""
    target = [{"host": "backup", "root": "pool/nas"}]
    return config_from({
        "hosts": {"nas": {"connection": "local"}, "backup": {"connection": "local"}},
        "policies": {
            "db": {"snapshots": {"prefix": "zrepl_", "interval": "1h", "hooks": hooks}},
            "files": {"snapshots": {"prefix": "zrepl_", "interval": "1h"}},
        },
        "filesystems": [
            {"host": "nas", "filter": {"tank/db<": True}, "policy": "db", "replicate_to": target},
            {"host": "nas", "filter": plain_filter or {"tank/files<": True}, "policy": "files",
             "replicate_to": target},
        ],
    })


def world() -> World:
    w = World()
    for name in ("tank", "tank/db", "tank/db/wal", "tank/files", "tank/files/a"):
        w.fs("nas", name)
    w.fs("backup", "pool")
    return w


DB_HOOKS: list[dict[str, Any]] = [
    {"pre": FREEZE, "post": THAW, "timeout": "2m", "err_is_fatal": True},
    {"post": ["/usr/bin/logger", "snapshot taken"]},
]


# --------------------------------------------------------------------------- configuration


def load(hooks_yaml: str) -> Config:
    text = textwrap.dedent("""\
        hosts:
          nas: {connection: local}
        policies:
          db:
            snapshots:
              prefix: zrepl_
              interval: 1h
              hooks:
        """) + textwrap.indent(textwrap.dedent(hooks_yaml), " " * 8) + textwrap.dedent("""\
        filesystems:
          - {host: nas, filter: {"tank<": true}, policy: db}
        """)
    return load_config_text(text, "c.yml")


def test_hooks_follow_zrepl_defaults_timeout_30s_and_err_is_fatal_false() -> None:
    hook = load("- {pre: [/usr/local/sbin/db-freeze, --fast], post: [/usr/local/sbin/db-thaw]}\n"
                ).policies["db"].snapshots.hooks[0]  # type: ignore[union-attr]
    assert (hook.pre, hook.post, hook.timeout_seconds, hook.err_is_fatal) == (FREEZE, THAW, 30, False)


@pytest.mark.parametrize(("hooks", "where", "message"), [
    ("- {pre: [/bin/true], timeout: 30}\n", "9:39: policies.db.snapshots.hooks[0].timeout",
     "expected a string, got the number 30"),
    ("- {pre: [/bin/true], timeout: 5x}\n", "9:39: policies.db.snapshots.hooks[0].timeout",
     "invalid duration '5x'"),
    ("- {pre: [/bin/true], timeout: 0s}\n", "9:39: policies.db.snapshots.hooks[0].timeout",
     "must be greater than zero"),
    ("- {timeout: 1s}\n", "9:11: policies.db.snapshots.hooks[0]", "a hook needs pre, post or both"),
    ("- {pre: []}\n", "9:17: policies.db.snapshots.hooks[0].pre", "must not be empty"),
    ("- {post: [/bin/true, '']}\n", "9:18: policies.db.snapshots.hooks[0].post",
     "command words must not be empty strings"),
    ("- {pre: ['/bin/echo', \"a\\0b\"]}\n", "9:17: policies.db.snapshots.hooks[0].pre",
     "must not contain a NUL character"),
    ("- {pre: [A=b, /bin/true]}\n", "9:17: policies.db.snapshots.hooks[0].pre", "contains '='"),
    ("- {pre: /bin/true}\n", "9:17: policies.db.snapshots.hooks[0].pre", "expected a list or nothing (null)"),
    ("- {pre: [/bin/true], err_is_fatal: yes please}\n",
     "9:44: policies.db.snapshots.hooks[0].err_is_fatal", "expected true or false"),
    ("- {pre: [/bin/true], shell: true}\n", "9:30: policies.db.snapshots.hooks[0].shell", "unknown key"),
])
def test_a_bad_hook_is_reported_at_its_position(hooks: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(hooks)
    text = str(info.value)
    assert f"c.yml:{where}: " in text, text
    assert message in text, text


# --------------------------------------------------------------------------- planning


def test_a_filesystem_with_hooks_gets_its_own_batch_between_its_hooks() -> None:
    plan = make_plan(config(DB_HOOKS), world().observed, NOW)
    phase = [a for a in plan.actions if a.kind in ("pre_hook", "snapshot", "post_hook")]
    name = phase[1].snapshot  # type: ignore[union-attr]
    assert [(a.kind, a.dataset, getattr(a, "hook", None)) for a in phase] == [
        ("pre_hook", "tank/db", 0), ("snapshot", "tank/db", None), ("post_hook", "tank/db", 1),
        ("post_hook", "tank/db", 0),
        ("pre_hook", "tank/db/wal", 0), ("snapshot", "tank/db/wal", None), ("post_hook", "tank/db/wal", 1),
        ("post_hook", "tank/db/wal", 0),
        ("snapshot", "tank/files", None), ("snapshot", "tank/files/a", None),
    ]
    snapshots = [a for a in phase if isinstance(a, SnapshotAction)]
    batches = [a.batch for a in snapshots]
    assert batches[0] != batches[1]  # each filesystem with hooks alone
    assert batches[2] == batches[3]  # the files policy keeps its atomic batch
    pre = phase[0]
    assert isinstance(pre, PreHookAction)
    assert (pre.command, pre.timeout, pre.err_is_fatal, pre.snapshot) == (tuple(FREEZE), 120, True, name)
    assert pre.reason == "policy db: snapshots.hooks[0].pre"
    assert pre.env() == {"ZREPL_RECONCILE_FS": "tank/db", "ZREPL_RECONCILE_SNAPNAME": name,
                         "ZREPL_RECONCILE_HOOK": "pre"}
    assert out_of_order(plan.actions) is None
    validate_plan(plan_document(plan))


def test_hooks_run_only_with_a_snapshot_and_the_second_plan_is_empty() -> None:
    cfg = config(DB_HOOKS)
    plan = make_plan(cfg, world().observed, NOW)
    assert plan.summary()["pre_hook"] == 2 and plan.summary()["post_hook"] == 4
    after = simulate(world().observed, plan)
    again = make_plan(cfg, after, NOW)
    assert again.actions == () and not again.has_changes


def test_a_hook_sees_every_argument_as_given() -> None:
    odd = ["/opt/hooks/notify ops", "--message", "snap `done` | $(x); 'quoted'"]
    plan = make_plan(config([{"pre": odd}]), world().observed, NOW)
    pre = next(a for a in plan.actions if isinstance(a, PreHookAction))
    assert list(pre.command) == odd and pre.argv() == odd
    assert pre.command_text() == ("'/opt/hooks/notify ops' --message"
                                  " 'snap `done` | $(x); '\"'\"'quoted'\"'\"''")


# --------------------------------------------------------------------------- saved plans


def test_hook_actions_read_back_from_plan_json_and_their_command_is_compared() -> None:
    plan = make_plan(config(DB_HOOKS), world().observed, NOW)
    document = json.loads(json.dumps(plan_document(plan)))
    hooks = [a for a in document["actions"] if a["kind"] in ("pre_hook", "post_hook")]
    assert {tuple(sorted(a)) for a in hooks} == {
        ("command", "dataset", "err_is_fatal", "hook", "host", "kind", "reason", "snapshot",
         "timeout_seconds"),
        ("command", "dataset", "hook", "host", "kind", "reason", "snapshot", "timeout_seconds")}
    assert [action_from_json(a) for a in document["actions"]] == list(plan.actions)
    assert set(ACTION_CLASSES) >= {"pre_hook", "post_hook"}
    edited = json.loads(json.dumps(document["actions"]))
    edited[0]["command"] = ["/usr/local/sbin/db-freeze", "--slow"]
    edited[0]["reason"] = "reworded"
    lines = action_differences(edited, document["actions"])
    assert lines == ["pre_hook nas:tank/db@" + hooks[0]["snapshot"] + ": command: the file adds '--slow';"
                     " the file lacks '--fast'"]
    reworded = json.loads(json.dumps(document["actions"]))
    reworded[0]["reason"] = "reworded"
    assert action_differences(reworded, document["actions"]) == []
    for key, value in (("timeout_seconds", 31), ("err_is_fatal", False), ("hook", 1)):
        changed = json.loads(json.dumps(document["actions"]))
        changed[0][key] = value
        assert action_differences(changed, document["actions"]), key


def test_a_changed_hook_in_the_configuration_makes_a_saved_plan_refused() -> None:
    from reconciler.planfile.verify import refusal

    observed = world().observed
    saved = make_plan(config(DB_HOOKS), observed, NOW)
    changed = [{**DB_HOOKS[0], "pre": ["/usr/local/sbin/db-freeze"]}, DB_HOOKS[1]]
    current = make_plan(config(changed), observed, NOW)
    error = refusal("plan.json", saved, [a.to_json() for a in saved.actions], current)
    assert error is not None and "configuration changed" in str(error)
    assert "command: the file adds '--fast'" in str(error)


# --------------------------------------------------------------------------- rendering


def hooked_plan() -> Plan:
    return make_plan(config(DB_HOOKS), world().observed, NOW, filesystems=["tank/db"])


def test_text_shows_what_runs_in_order_and_explain_shows_the_environment() -> None:
    plan = hooked_plan()
    name = next(a.snapshot for a in plan.actions if isinstance(a, SnapshotAction))
    text = render_text_to_string(plan, width=200)
    lines = [line.strip() for line in text.splitlines()]
    start = lines.index(f"* run pre hook /usr/local/sbin/db-freeze --fast before tank/db@{name} — timeout 2m;"
                        " err_is_fatal: a failure skips the snapshot; policy db: snapshots.hooks[0].pre")
    assert lines[start + 1].startswith(f"+ create snapshot tank/db@{name}")
    assert lines[start + 2].startswith(f"* run post hook /usr/bin/logger 'snapshot taken' after"
                                       f" tank/db@{name} — timeout 30s; runs even when a pre hook or the"
                                       " snapshot failed")
    assert lines[start + 3].startswith(f"* run post hook /usr/local/sbin/db-thaw after tank/db@{name}")
    assert "environment:" not in text
    assert "2 pre hooks to run, 4 post hooks to run" in summary_line(plan)
    explained = render_text_to_string(plan, width=200, explain="tank/db")
    assert (f"environment: ZREPL_RECONCILE_FS=tank/db ZREPL_RECONCILE_SNAPNAME={name}"
            " ZREPL_RECONCILE_HOOK=pre") in explained


def test_markdown_shows_hooks_and_explain_shows_the_environment() -> None:
    plan = hooked_plan()
    name = next(a.snapshot for a in plan.actions if isinstance(a, SnapshotAction))
    markdown = render_markdown(plan)
    assert (f"- **pre hook** `/usr/local/sbin/db-freeze --fast` before `tank/db@{name}` — timeout 2m;"
            " err\\_is\\_fatal: a failure skips the snapshot; policy db:"
            " snapshots.hooks\\[0\\].pre") in markdown
    assert f"- **post hook** `/usr/local/sbin/db-thaw` after `tank/db@{name}`" in markdown
    assert "environment" not in markdown
    explained = render_markdown(plan, explain="nas:tank/db")
    assert (f"  - environment: `ZREPL_RECONCILE_FS=tank/db ZREPL_RECONCILE_SNAPNAME={name}"
            " ZREPL_RECONCILE_HOOK=post`") in explained


def test_post_hook_actions_know_their_snapshot() -> None:
    post = PostHookAction("nas", "tank/db", "zrepl_1", 0, tuple(THAW), 30)
    assert post.snapshot_key() == ("nas", "tank/db", "zrepl_1")
    assert post.describe() == "run post hook /usr/local/sbin/db-thaw after tank/db@zrepl_1"
    assert post.env()["ZREPL_RECONCILE_HOOK"] == "post"


def test_a_hook_with_a_line_break_in_an_argument_is_shown_on_one_line() -> None:
    action = PreHookAction("nas", "tank/db", "zrepl_1", 0, ("/bin/sh", "-c", "a\nb\x1b[31m"), 30)
    assert action.describe() == "run pre hook /bin/sh -c 'a\\nb\\x1b[31m' before tank/db@zrepl_1"
    assert action.command == ("/bin/sh", "-c", "a\nb\x1b[31m")  # what runs is untouched


def test_the_readmes_hook_example_is_a_valid_policy() -> None:
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Snapshot hooks", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    text = ("hosts:\n  nas: {connection: local}\n" + example
            + "filesystems:\n  - {host: nas, filter: {\"tank/db<\": true}, policy: db}\n")
    hooks = load_config_text(text, "README.md").policies["db"].snapshots.hooks  # type: ignore[union-attr]
    assert [(h.pre, h.post, h.timeout_seconds, h.err_is_fatal) for h in hooks] == [(FREEZE, THAW, 30, True)]
