"""``zrepl-reconcile plan`` on every example playbook, with a stand-in zfs giving the facts.

For each playbook (found as tests/test_playbooks.py finds them) every host gets a
stand-in zfs with realistic facts built from the playbook itself: managed snapshots of
various ages (some old enough to be pruned), an unmanaged and a held one, a target that
already has part of the history (an incremental send from the common base) and targets
that do not exist yet (full sends, placeholders). The hosts become local stand-ins (the
loopback-sshd test at the end runs the SSH hosts over a real sshd and expects the same
plan). Then the real CLI plans in text, markdown and json with a fixed --now and
--explain on one filesystem; the plan's own ``simulate`` applies it to the stand-ins,
and planning again must say "No changes".

Golden files (tests/golden/playbooks/, see the README there) pin the text and markdown
of two playbooks byte for byte.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fixtures_sshd import SshServer
from plan_schema import validate_plan
from ruamel.yaml import YAML
from standin.state import StandinState, load, save, zfs_command
from test_playbooks import CONFIGS, PLAYBOOKS

from reconciler.cli import main
from reconciler.codes import PruneRule
from reconciler.config.load import load_config
from reconciler.config.models import Config, FilesystemEntry
from reconciler.domain.names import filter_decision, scheduled_snapshot_name
from reconciler.domain.observed import ObservedState
from reconciler.domain.plan import Plan
from reconciler.gather.facts import gather
from reconciler.planning.simulate import simulate
from reconciler.render.markdown import md_text
from reconciler.transport.hosts import open_executors

NOW = "2025-11-24T16:00:00Z"  # conftest.NOW, the stand-in's clock
NOW_DT = datetime(2025, 11, 24, 16, tzinfo=UTC)
GOLDEN = Path(__file__).parent / "golden" / "playbooks"
GOLDEN_PLAYBOOKS = ("push-ssh-backup.yml", "laptop-prune-wins.yml")
# Ages (hours) of the managed snapshots on every selected source dataset: a grid's
# hourly and daily buckets, and some beyond every grid's end.
AGES_H = (24 * 400, 24 * 40, 24 * 10, 24 * 3, 30, 26, 5, 2, 1.25)
UNMANAGED = "before-upgrade"  # matches no playbook's manage regex
HELD_AGE_H = 24 * 200  # a managed snapshot every grid would destroy, but it is held
ACTION_KEYS = {  # DESIGN.md, Plan JSON: the keys each kind has (more may follow)
    "snapshot": {"kind", "host", "dataset", "snapshot"},
    "send": {"kind", "host", "dataset", "source", "target", "base", "snapshots", "resume_token"},
    "destroy": {"kind", "host", "dataset", "snapshots", "reasons"},
    "bookmark": {"kind", "host", "dataset"},
    "create": {"kind", "host", "dataset"},
}
FILESYSTEM_KEYS = {"host", "dataset", "role", "policy", "prune_rule", "prune_rule_why", "warnings",
                   "snapshots", "protected"}


def playbook_id(path: Path) -> str:
    return path.relative_to(PLAYBOOKS).as_posix()


# --------------------------------------------------------------------------- facts


class Facts:
    """Stand-in hosts for one playbook, filled from its own filters, policies and targets."""

    def __init__(self, config: Config, standin: Callable[..., StandinState]) -> None:
        self.config = config
        self.hosts = {name: standin(name, seed=n + 11) for n, name in enumerate(config.hosts)}
        self.sources: list[tuple[str, str]] = []  # every selected source dataset (host, name)
        self.explained: tuple[str, str] | None = None
        self.held: set[tuple[str, str, str]] = set()  # (host, dataset, snapshot)

    def build(self) -> Facts:
        for entry in self.config.filesystems:
            self.entry(entry)
        for state in self.hosts.values():
            state.save()
        return self

    def entry(self, entry: FilesystemEntry) -> None:
        host = self.hosts[entry.host]
        policy = self.config.policies[entry.policy]
        prefix = policy.snapshots.prefix if policy.snapshots else "zrepl_"
        for key in entry.filter:
            path = key.rstrip("<")
            host.filesystem(path)
            if key.endswith("<"):
                host.filesystem(f"{path}/sub")
        selected = sorted(name for name in host.datasets if filter_decision(entry.filter, name))
        for target in entry.replicate_to:  # the pool exists; the root may not
            self.hosts[target.host].filesystem(target.root.split("/")[0])
        for number, name in enumerate(selected):
            self.sources.append((entry.host, name))
            snaps = [host.snapshot(name, scheduled_snapshot_name(prefix, NOW_DT - timedelta(hours=age)),
                                   creation=self.ts(age)) for age in AGES_H]
            if number == 0:
                host.snapshot(name, UNMANAGED, creation=self.ts(24 * 5))
                held = scheduled_snapshot_name(prefix, NOW_DT - timedelta(hours=HELD_AGE_H))
                host.snapshot(name, held, creation=self.ts(HELD_AGE_H), holds=("keep",))
                self.held.add((entry.host, name, held))
                # snapshot lists are createtxg-ordered: keep the held one where its age puts it
                host.datasets[name]["snapshots"].sort(key=lambda s: s["creation"])
                for txg, snap in enumerate(host.datasets[name]["snapshots"], start=100):
                    snap["createtxg"] = txg
                host.data["txg"] = max(host.data["txg"], txg)
                if self.explained is None:
                    self.explained = (entry.host, name)
                for target in entry.replicate_to:  # replicated up to the base, by GUID
                    replica = self.hosts[target.host]
                    for snap in snaps[:-2]:
                        replica.snapshot(target.target_dataset(name), snap["name"],
                                         creation=snap["creation"], guid=snap["guid"])

    @staticmethod
    def ts(hours: float) -> int:
        return int((NOW_DT - timedelta(hours=hours)).timestamp())


def local_config(path: Path, facts: Facts, out: Path) -> Path:
    """The playbook with every host a local stand-in (JSON is YAML to the loader)."""
    data = YAML(typ="safe").load(path)
    data["hosts"] = {name: {"connection": "local", "zfs_command": state.zfs_command}
                     for name, state in facts.hosts.items()}
    out.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return out


def ssh_config(path: Path, facts: Facts, sshd: SshServer, out: Path) -> Path:
    """The playbook with its SSH hosts reaching their stand-ins through the loopback sshd."""
    data = YAML(typ="safe").load(path)
    now = int(NOW_DT.timestamp())  # an SSH session does not pass our environment on
    data["hosts"] = {
        name: (sshd.host_config(zfs_command=zfs_command(state.path or "", now=now))
               if data["hosts"][name]["connection"] == "ssh"
               else {"connection": "local", "zfs_command": state.zfs_command})
        for name, state in facts.hosts.items()}
    out.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return out


def held(old: dict[str, Any] | None, tags: tuple[str, ...]) -> dict[str, int]:
    """The simulated hold tags, with the stand-in's time of those it already had."""
    before = old.get("holds", {}) if old else {}
    return {tag: before.get(tag, int(NOW_DT.timestamp())) for tag in tags}


def write_back(observed: ObservedState, facts: Facts) -> None:
    """Make the stand-ins show ``observed`` (the plan's simulated effect)."""
    for host, host_facts in observed.hosts.items():
        state = facts.hosts[host]
        assert state.path is not None
        data = load(state.path)
        for name, ds in host_facts.datasets.items():
            old = data["datasets"].get(name, {})
            old_snaps = {s["guid"]: s for s in old.get("snapshots", [])}
            data["datasets"][name] = {
                **old, "type": ds.kind, "guid": ds.guid, "createtxg": ds.createtxg,
                "creation": old.get("creation", int(NOW_DT.timestamp())),
                "resume_token": ds.resume_token, "partial": None,
                "snapshots": [{**(old_snaps.get(s.guid) or {
                    "name": s.name, "guid": s.guid, "createtxg": s.createtxg, "creation": s.creation,
                    "size": s.written or 1024, "written": s.written or 1024,
                    "referenced": s.referenced or 1024}), "holds": held(old_snaps.get(s.guid), s.holds)}
                    for s in ds.snapshots],
                "bookmarks": [{"name": b.name, "guid": b.guid, "createtxg": b.createtxg,
                               "creation": b.creation, "referenced": 0} for b in ds.bookmarks],
            }
            data["txg"] = max([data["txg"], ds.createtxg, *(s.createtxg for s in ds.snapshots),
                               *(b.createtxg for b in ds.bookmarks)])
        save(state.path, data)


# --------------------------------------------------------------------------- running the CLI


@pytest.fixture(autouse=True)
def plain_terminal(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("TERM", "dumb")
    yield


def plan_cli(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["plan", "-c", str(config), "--now", NOW, "--detailed-exitcode", *args])
    out, err = capsys.readouterr()
    return code, out, err


def normalized(text: str) -> str:
    """The fingerprint hashes the config, whose zfs_command names a temporary path."""
    return re.sub(r"sha256:[0-9a-f]{64}", "sha256:<fingerprint>", text)


@dataclass
class Planned:
    playbook: Path
    config_path: Path  # the playbook with stand-in hosts
    config: Config
    facts: Facts

    @property
    def explain(self) -> str:
        assert self.facts.explained is not None
        return "{}:{}".format(*self.facts.explained)


@pytest.fixture
def planned(request: pytest.FixtureRequest, tmp_path: Path, standin: Callable[..., StandinState]) -> Planned:
    path: Path = request.param
    facts = Facts(load_config(path), standin).build()
    local = local_config(path, facts, tmp_path / "zrepl-reconcile.yml")
    return Planned(path, local, load_config(local), facts)


# --------------------------------------------------------------------------- the checks


def check_contract(doc: dict[str, Any], config: Config, facts: Facts) -> None:
    """The Plan JSON against its schema (schemas/plan.schema.json) and DESIGN.md's contract."""
    validate_plan(doc)
    assert {"format_version", "now", "fingerprint", "actions", "conflicts", "summary", "filesystems",
            "unavailable", "warnings"} <= set(doc)
    assert doc["format_version"] == 1 and doc["now"] == NOW and doc["fingerprint"].startswith("sha256:")
    assert doc["conflicts"] == [] and doc["unavailable"] == []
    for action in doc["actions"]:
        assert set(action) >= ACTION_KEYS.get(action["kind"], {"kind", "host", "dataset"}), action
    for send in (a for a in doc["actions"] if a["kind"] == "send"):
        assert set(send["source"]) >= {"host", "dataset", "snapshot"}
        assert set(send["target"]) >= {"host", "dataset"}
        assert (send["source"]["host"], send["source"]["dataset"]) == (send["host"], send["dataset"])
        assert send["snapshots"] and send["source"]["snapshot"] == send["snapshots"][-1]
        assert send["base"] is None or isinstance(send["base"], str)
        assert send["resume_token"] is None
        assert not any("@" in name for name in send["snapshots"])
    for destroy in (a for a in doc["actions"] if a["kind"] == "destroy"):
        assert destroy["snapshots"], destroy
        assert set(destroy["reasons"]) == set(destroy["snapshots"])  # every destroy has a reason
        assert all(isinstance(r, str) and r.strip() for r in destroy["reasons"].values())
        assert not any("@" in name for name in destroy["snapshots"])
        assert UNMANAGED not in destroy["snapshots"]
        assert not {(destroy["host"], destroy["dataset"], n) for n in destroy["snapshots"]} & facts.held
    kinds = [a["kind"] for a in doc["actions"]]
    summary = doc["summary"]
    assert summary["snapshot"] == kinds.count("snapshot") and summary["send"] == kinds.count("send")
    assert summary["destroy"] == sum(len(a["snapshots"]) for a in doc["actions"] if a["kind"] == "destroy")
    assert summary["conflicts"] == 0
    # the prune-vs-replicate rule, stated per source filesystem
    sources = [f for f in doc["filesystems"] if f["role"] == "source"]
    assert sorted((f["host"], f["dataset"]) for f in sources) == sorted(facts.sources)
    for report in doc["filesystems"]:
        assert set(report) >= FILESYSTEM_KEYS
    for report in sources:
        policy = config.policies[report["policy"]]
        expected = PruneRule.REPLICATION_PROTECTED if policy.protects_unreplicated else PruneRule.PRUNE_WINS
        assert report["prune_rule"] == expected, report
        assert "not_replicated" in report["prune_rule_why"]
    # snapshots destroyed before they reached a target: per filesystem and at the top level
    listed = [f"{f['host']}:{f['dataset']}: {w}" for f in sources for w in f["warnings"]]
    assert [w for w in doc["warnings"] if "destroyed unreplicated" in w] == listed


def check_text(text: str, doc: dict[str, Any], explained: tuple[str, str]) -> None:
    lines = text.splitlines()
    assert "\x1b[" not in text
    assert lines[-1].startswith("Plan: ") and "to destroy" in lines[-1]
    for report in (f for f in doc["filesystems"] if f["role"] == "source"):
        head = lines.index(f"  {report['dataset']}  source · policy {report['policy']}")
        assert lines[head + 1].startswith("    prune rule: "), lines[head:head + 2]
    for destroy in (a for a in doc["actions"] if a["kind"] == "destroy"):
        for name, reason in destroy["reasons"].items():
            assert any(name in line and line.rstrip().endswith(reason) for line in lines), (name, reason)
    host, dataset = explained
    assert any(line.strip().startswith(f"explain {host}:{dataset}: ") for line in lines)
    explained_lines = [line for line in lines if line.startswith("      keep ") or
                       line.startswith("      destroy ")]
    assert any(UNMANAGED in line and "unmanaged" in line for line in explained_lines)
    assert any("held (tags keep)" in line for line in explained_lines)


def check_markdown(text: str, doc: dict[str, Any]) -> None:
    assert text.startswith("### zrepl-reconcile plan: ")
    sources = [f for f in doc["filesystems"] if f["role"] == "source"]
    assert text.count("Prune rule: **") == len(sources)
    for destroy in (a for a in doc["actions"] if a["kind"] == "destroy"):
        for name, reason in destroy["reasons"].items():
            assert f"`{name}`: {md_text(reason)}" in text, (name, reason)


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("planned", CONFIGS, ids=playbook_id, indirect=True)
def test_playbook_plans_explained_in_three_formats_then_converges(
        planned: Planned, capsys: pytest.CaptureFixture[str]) -> None:
    config, facts = planned.config, planned.facts
    outputs = {}
    for fmt in ("json", "text", "markdown"):
        code, out, err = plan_cli(capsys, planned.config_path, "--format", fmt, "--explain", planned.explain)
        assert code == 2, (fmt, out, err)  # changes pending
        assert err == "", err  # no conflicts, no unavailable hosts: nothing to warn about
        outputs[fmt] = out
    doc = json.loads(outputs["json"])
    check_contract(doc, config, facts)
    assert any(a["kind"] == "destroy" for a in doc["actions"])
    if any(entry.replicate_to for entry in config.filesystems):
        bases = {a["base"] is None for a in doc["actions"] if a["kind"] == "send"}
        assert bases == {True, False}  # full sends to new targets, an incremental one from the base
    assert facts.explained is not None
    check_text(outputs["text"], doc, facts.explained)
    check_markdown(outputs["markdown"], doc)

    # apply the plan's effect as the planner assumes it, then plan again
    with open_executors(config) as executors:
        observed = gather(config, executors)
    write_back(simulate(observed, Plan.from_json(doc)), facts)
    code, out, err = plan_cli(capsys, planned.config_path)
    assert code == 0, out + err
    assert out.strip().splitlines()[-1] == "No changes. Snapshots, retention and replication are up to date."
    code, out, err = plan_cli(capsys, planned.config_path, "--format", "json")
    assert code == 0 and json.loads(out)["actions"] == [], out


@pytest.mark.parametrize("planned", [PLAYBOOKS / name for name in GOLDEN_PLAYBOOKS],
                         ids=list(GOLDEN_PLAYBOOKS), indirect=True)
@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_playbook_golden(planned: Planned, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The real planner's rendering for two playbooks, byte for byte (see the README there)."""
    code, out, err = plan_cli(capsys, planned.config_path, "--format", fmt, "--explain", planned.explain)
    assert code == 2, err
    golden = GOLDEN / f"{planned.playbook.stem}.{'txt' if fmt == 'text' else 'md'}"
    got = normalized(out)
    if os.environ.get("UPDATE_GOLDEN") or not golden.exists():
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(got, encoding="utf-8")
        pytest.fail(f"wrote {golden}; review it (git diff) and run again")
    assert got == golden.read_text(encoding="utf-8")


SSH_PLAYBOOKS = [p for p in CONFIGS
                 if any(h.get("connection") == "ssh" for h in YAML(typ="safe").load(p)["hosts"].values())]


@pytest.mark.parametrize("planned", SSH_PLAYBOOKS, ids=playbook_id, indirect=True)
def test_playbook_over_ssh_plans_the_same(planned: Planned, sshd: SshServer, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The playbook's SSH hosts over a real sshd: the very same plan as with local stand-ins."""
    code, local, err = plan_cli(capsys, planned.config_path, "--format", "json")
    assert code == 2, err
    remote_config = ssh_config(planned.playbook, planned.facts, sshd, tmp_path / "ssh.yml")
    code, remote, err = plan_cli(capsys, remote_config, "--format", "json")
    assert code == 2, err
    expected, got = json.loads(local), json.loads(remote)
    for key in ("fingerprint", "config_digest", "digest"):  # the config differs
        assert got.pop(key) != expected.pop(key)
    # How bookmarks and destroys run follows how each host is reached (its SSH user, a local
    # stand-in's controller): the same hosts and work, the path may differ.
    def work(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in m.items() if k not in ("path", "reason")} for m in routes]
    assert work(got.pop("metadata")) == work(expected.pop("metadata"))
    assert got == expected


def test_laptop_away_from_home_prunes_and_says_what_never_reached_the_backup(
        tmp_path: Path, standin: Callable[..., StandinState], capsys: pytest.CaptureFixture[str]) -> None:
    """laptop-prune-wins.yml with the home server unreachable: pruning proceeds, and every
    snapshot destroyed before it reached the backup is listed, per filesystem and on top."""
    path = PLAYBOOKS / "laptop-prune-wins.yml"
    facts = Facts(load_config(path), standin).build()
    config_path = local_config(path, facts, tmp_path / "zrepl-reconcile.yml")
    data = json.loads(config_path.read_text(encoding="utf-8"))
    data["hosts"]["homeserver"]["zfs_command"] = [str(tmp_path / "no-such-zfs")]
    config_path.write_text(json.dumps(data), encoding="utf-8")
    code, out, err = plan_cli(capsys, config_path, "--format", "json")
    assert code == 2 and "1 host unavailable" in err
    doc = json.loads(out)
    assert {a["host"] for a in doc["actions"]} == {"laptop"}
    assert {a["kind"] for a in doc["actions"]} == {"snapshot", "destroy"}
    assert [(c["code"], c["host"]) for c in doc["conflicts"]] == [("host_unavailable", "homeserver")] * 3
    sources = {f["dataset"]: f for f in doc["filesystems"] if f["role"] == "source"}
    assert all(f["prune_rule"] == PruneRule.PRUNE_WINS for f in sources.values())
    assert all("unreachable" in f["prune_rule_why"] for f in sources.values())
    gone = [w for w in doc["warnings"] if "destroyed unreplicated" in w]
    assert gone == [f"laptop:{f['dataset']}: {w}" for f in sources.values() for w in f["warnings"]]
    assert gone and all("unreachable" in w for w in gone)
    code, text, _err = plan_cli(capsys, config_path)
    assert all(w in text for w in gone)  # in the Warnings section the text output closes with
