"""schemas/plan.schema.json: the copy users see is the one apply checks, and the compiled
validator apply uses agrees with the reference (jsonschema) on every document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from plan_schema import fast_accepts, reference_validator
from test_saved_plan import Document, edits

from reconciler.cli import main
from reconciler.planfile.read import plan_schema_text

SAMPLE: Document = {
    "format_version": 1, "tool_version": "0.1.0", "now": "2025-11-24T16:00:00Z",
    "selection": {"hosts": [], "filesystems": ["tank/a"]},
    "fingerprint": "sha256:" + "1" * 64, "config_digest": "sha256:" + "2" * 64,
    "actions": [
        {"kind": "pre_hook", "host": "nas", "dataset": "tank/a", "snapshot": "zrepl_20251124_160000",
         "hook": 0, "command": ["/usr/local/sbin/db-freeze", "--fast"], "timeout_seconds": 30,
         "err_is_fatal": True, "reason": "policy db: snapshots.hooks[0].pre"},
        {"kind": "snapshot", "host": "nas", "dataset": "tank/a", "snapshot": "zrepl_20251124_160000",
         "batch": "nas:tank", "reason": "due"},
        {"kind": "post_hook", "host": "nas", "dataset": "tank/a", "snapshot": "zrepl_20251124_160000",
         "hook": 0, "command": ["/usr/local/sbin/db-thaw"], "timeout_seconds": 30, "reason": ""},
        {"kind": "create", "host": "backup", "dataset": "pool/nas", "properties": {"canmount": "off"},
         "reason": "parent"},
        {"kind": "abort_resume", "host": "backup", "dataset": "pool/nas/tank/b", "reason": "stale token"},
        {"kind": "hold", "host": "nas", "dataset": "tank/a", "snapshot": "s1", "tag": "zrr", "reason": ""},
        {"kind": "send", "host": "nas", "dataset": "tank/a",
         "source": {"host": "nas", "dataset": "tank/a", "snapshot": "zrepl_20251124_160000"},
         "target": {"host": "backup", "dataset": "pool/nas/tank/a"}, "base": "#zrr-cursor",
         "snapshots": ["zrepl_20251124_160000"], "resume_token": None, "raw": False,
         "send_properties": False, "properties": {"override": {"readonly": "on"}, "exclude": ["mountpoint"]},
         "estimated_bytes": 4096, "reason": "behind"},
        {"kind": "hold_received", "host": "backup", "dataset": "pool/nas/tank/a",
         "snapshot": "zrepl_20251124_160000", "tag": "zrr-last-received_nas_0123abcd", "reason": ""},
        {"kind": "bookmark", "host": "nas", "dataset": "tank/a", "snapshot": "zrepl_20251124_160000",
         "bookmark": "#zrr-cursor2", "reason": "cursor"},
        {"kind": "release", "host": "nas", "dataset": "tank/a", "snapshot": "s1", "tag": "zrr", "reason": ""},
        {"kind": "destroy", "host": "nas", "dataset": "tank/a", "snapshots": ["s0", "#zrr-cursor"],
         "reasons": {"s0": "old", "#zrr-cursor": "moved"}, "reason": "keep_source"},
    ],
    "conflicts": [{"code": "diverged", "host": "backup", "dataset": "pool/nas/tank/c", "message": "m",
                   "fix": "f", "source": {"host": "nas", "dataset": "tank/c"}}],
    "summary": {"snapshot": 1, "send": 1, "destroy": 2, "conflicts": 1},
    "filesystems": [{"host": "nas", "dataset": "tank/a", "role": "source", "policy": "hourly",
                     "prune_rule": "prune_wins", "prune_rule_why": "why", "warnings": [],
                     "snapshots": [{"name": "s0", "keep": False, "reason": "old"}],
                     "protected": [{"name": "s1", "reason": "held"}]}],
    "unavailable": [{"host": "far", "reason": "unreachable: timed out"}],
    "warnings": ["w"],
    "digest": "sha256:" + "3" * 64,
}


def test_the_committed_plan_schema_is_the_one_apply_checks(capsys: pytest.CaptureFixture[str]) -> None:
    committed = Path(__file__).parent.parent / "schemas" / "plan.schema.json"
    assert committed.read_text() == plan_schema_text(), (
        "schemas/plan.schema.json differs from reconciler/planfile/plan.schema.json; copy it with:\n"
        "    zrepl-reconcile schema --plan > schemas/plan.schema.json")
    assert main(["schema", "--plan"]) == 0
    assert capsys.readouterr().out == plan_schema_text()


def test_the_sample_has_every_kind_and_is_valid() -> None:
    reference_validator().validate(SAMPLE)
    assert fast_accepts(SAMPLE)
    kinds = json.loads(plan_schema_text())["$defs"]["action"]["properties"]["kind"]["enum"]
    assert sorted(a["kind"] for a in SAMPLE["actions"]) == sorted(kinds)


def reference_accepts(document: Any) -> bool:
    try:
        reference_validator().validate(document)
    except jsonschema.ValidationError:
        return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edit=edits(SAMPLE))
def test_the_compiled_validator_agrees_with_the_reference(edit: tuple[Document, bool]) -> None:
    document, _ = edit
    assert fast_accepts(document) == reference_accepts(document), json.dumps(document)[:2000]
