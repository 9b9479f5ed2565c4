"""The Ansible module's readings of the tool's output (playbooks/ansible/library/zrepl_reconcile.py),
checked against what the tool itself prints: the apply report and one-line errors."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ruamel.yaml import YAML

from reconciler.cli import error_message
from reconciler.commands.apply import print_report
from reconciler.domain.actions import DestroyAction, SendAction, SnapshotAction
from reconciler.errors import ConfigError, ConfigProblem
from reconciler.execute.apply import DONE, FAILED, SKIPPED, ApplyReport, Outcome

pytest.importorskip("ansible", reason="ansible-core is not installed (pip install -e '.[fleet]')")

MODULE_PATH = Path(__file__).resolve().parent.parent / "playbooks/ansible/library/zrepl_reconcile.py"


@pytest.fixture(scope="module")
def module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("zrepl_reconcile_module", MODULE_PATH)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def printed(report: ApplyReport) -> str:
    out = io.StringIO()
    print_report(report, None, out)
    return "Plan: 1 snapshot to create\n" + out.getvalue()


def test_the_apply_report_as_the_tool_prints_it(module: Any) -> None:
    send = SendAction("nas", "tank/a b:c", "zrepl_2", "backup", "pool/nas/tank/a b:c", "zrepl_1",
                      ("zrepl_2",))
    destroy = DestroyAction("nas", "tank/x", ("zrepl_0",), (("zrepl_0", "grid"),))
    report = ApplyReport([
        Outcome(SnapshotAction("nas", "tank/x", "zrepl_2", "b"), DONE),
        Outcome(send, FAILED, "cannot receive: destination has been modified: the target changed",
                "modified"),
        Outcome(destroy, SKIPPED, "tank/x: send failed: modified"),
    ])
    counts, failed, skipped = module.parse_apply_report(printed(report))
    assert counts == {"done": 1, "failed": 1, "skipped": 1, "summary": "Apply: 1 done, 1 failed, 1 skipped."}
    assert failed == [{"action": send.describe(),
                       "message": "cannot receive: destination has been modified: the target changed"}]
    assert skipped == [{"action": destroy.describe(), "message": "tank/x: send failed: modified"}]
    assert module.parse_apply_report(printed(ApplyReport([Outcome(destroy, DONE)])))[1:] == ([], [])


def test_the_tools_error_message_is_the_tasks(module: Any) -> None:
    one = ConfigError([ConfigProblem("/etc/z.yml", 3, 5, "policies.p.snapshots.interval", "invalid")])
    stderr = error_message(one) + "\n"
    assert module.tool_message(stderr) == "error: /etc/z.yml:3:5: policies.p.snapshots.interval: invalid"
    two = ConfigError([ConfigProblem("/etc/z.yml", 3, 5, "a", "x"),
                       ConfigProblem("/etc/z.yml", 9, 1, "b", "y")])
    lines = module.tool_message("warning: something first\n" + error_message(two) + "\n").splitlines()
    assert lines == ["error: 2 problems in the configuration:", "/etc/z.yml:3:5: a: x",
                     "/etc/z.yml:9:1: b: y"]
    assert module.tool_message("", "out\n", "fallback") == "out"
    assert module.tool_message("", "", "fallback") == "fallback"


def test_the_documentation_blocks_are_yaml_and_name_every_option(module: Any) -> None:
    yaml = YAML(typ="safe")
    doc = yaml.load(module.DOCUMENTATION)
    assert doc["module"] == "zrepl_reconcile"
    assert set(doc["options"]) == {"config", "host", "state", "parallel", "filesystems", "now", "executable"}
    assert {task.get("zrepl_reconcile", {}).get("host") for task in yaml.load(module.EXAMPLES)} >= {
        "{{ inventory_hostname }}"}
    assert {"pending", "plan", "actions", "conflicts", "failed_actions"} <= set(yaml.load(module.RETURN))
