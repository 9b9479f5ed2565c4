"""The Ansible module and playbooks (playbooks/ansible/) run by ansible-core, against
localhost and against stand-in hosts behind the loopback sshd (marker ``fleet``).

Every inventory host is a stand-in: alpha and beta replicate to each other and to vault,
which only receives. The module runs ``zrepl-reconcile`` through a wrapper that runs this
checkout (the rollout test installs a wheel of it instead, as a fleet would).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixtures_sshd import SshServer
from standin.state import StandinState, zfs_command

pytestmark = pytest.mark.fleet

REPO = Path(__file__).resolve().parent.parent
ANSIBLE_DIR = REPO / "playbooks" / "ansible"
NOW = "2025-11-24T16:00:00Z"  # conftest.NOW, the stand-in's clock
NOW_TS = 1_764_000_000
HOUR = 3600
RUNS = ("alpha", "beta", "vault")
POLICY: dict[str, Any] = {
    "snapshots": {"prefix": "zrepl_", "interval": "1h"},
    "keep_source": [{"type": "not_replicated"},
                    {"type": "grid", "grid": "1x1h(keep=all) | 6x1h | 2x1d", "regex": "^zrepl_"}],
    "keep_target": [{"type": "grid", "grid": "1x1h(keep=all) | 3x1h | 1x1d", "regex": "^zrepl_"}],
}


def ansible_playbook() -> str:
    found = shutil.which("ansible-playbook") or str(Path(sys.executable).with_name("ansible-playbook"))
    if not os.path.exists(found):
        if os.environ.get("ZREPL_RECONCILE_REQUIRE_FLEET"):
            pytest.fail("ansible-core is not installed (pip install -e '.[fleet]'), and this run requires it")
        pytest.skip("ansible-core is not installed (pip install -e '.[fleet]')")
    return found


# --------------------------------------------------------------------------- the fleet


@dataclass
class Fleet:
    root: Path
    hosts: dict[str, StandinState]
    source_config: Path  # the repository's copy (what plan.yml and rollout.yml deploy)
    inventory: Path
    executable: Path
    host_vars: Callable[[str], str] = str
    group_vars: tuple[str, ...] | list[str] = ()

    def config_of(self, run: str) -> Path:
        """Each host's installed configuration (its own file, as on its own machine: its own lock)."""
        return self.root / run / "zrepl-reconcile.yml"

    def write_inventory(self, host_vars: Callable[[str], str], group_vars: list[str]) -> None:
        self.host_vars, self.group_vars = host_vars, group_vars
        lines = ["[fleet]"]
        lines += [f"{run} {host_vars(run)} zrepl_reconcile_config={self.config_of(run)}" for run in RUNS]
        lines += ["", "[fleet:vars]", *group_vars]
        self.inventory.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def snapshots(self) -> set[tuple[str, str, str]]:
        found = set()
        for host, st in self.hosts.items():
            st.reload()
            found |= {(host, ds, s["name"]) for ds, data in st.datasets.items() for s in data["snapshots"]}
        return found


def stamp(ts: int) -> str:
    import time

    return time.strftime("%Y%m%d_%H%M%S", time.gmtime(ts))


def build_fleet(root: Path, standin: Callable[..., StandinState], host_entry: Callable[[StandinState], Any],
                inventory_hosts: Callable[[str], str], inventory_vars: list[str]) -> Fleet:
    hosts: dict[str, StandinState] = {}
    for seed, (name, datasets) in enumerate((("alpha", ["tank/a", "tank/a/x"]), ("beta", ["tank/b"]),
                                              ("vault", []))):
        st = standin(name, seed=20 + seed)
        st.filesystem("pool" if name == "vault" else "backup")
        for ds in datasets:
            st.filesystem(ds)
            for h in range(12, 1, -1):
                st.snapshot(ds, "zrepl_" + stamp(NOW_TS - h * HOUR), creation=NOW_TS - h * HOUR, size=4096)
        st.save()
        hosts[name] = st
    config = {
        "hosts": {name: host_entry(st) for name, st in hosts.items()},
        "policies": {"hourly": POLICY},
        "filesystems": [
            {"host": "alpha", "filter": {"tank/a<": True}, "policy": "hourly",
             "replicate_to": [{"host": "beta", "root": "backup/alpha"},
                              {"host": "vault", "root": "pool/fleet"}]},
            {"host": "beta", "filter": {"tank/b<": True}, "policy": "hourly",
             "replicate_to": [{"host": "alpha", "root": "backup/beta"},
                              {"host": "vault", "root": "pool/fleet"}]},
        ],
    }
    source = root / "repo" / "zrepl-reconcile.yml"
    source.parent.mkdir(parents=True)
    source.write_text(json.dumps(config, indent=1), encoding="utf-8")
    for run in RUNS:
        (root / run).mkdir()
        shutil.copyfile(source, root / run / "zrepl-reconcile.yml")
    executable = root / "zrepl-reconcile"
    locks = root / "locks"
    locks.mkdir()
    executable.write_text("#!/bin/sh\n"
                          f"export PYTHONPATH={shlex.quote(str(REPO))}"
                          f" ZREPL_RECONCILE_LOCK_DIR={shlex.quote(str(locks))}\n"
                          f'exec {shlex.quote(sys.executable)} -m reconciler.cli "$@"\n')
    executable.chmod(0o755)
    fleet = Fleet(root, hosts, source, root / "inventory.ini", executable)
    fleet.write_inventory(inventory_hosts, [
        f"ansible_python_interpreter={sys.executable}", "ansible_become=false",
        f"zrepl_reconcile_executable={executable}", f"zrepl_reconcile_config_src={source}",
        f"zrepl_reconcile_now={NOW}", *inventory_vars])
    return fleet


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """Ansible's SSH control sockets need a short path (unix sockets: 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="zra-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def local_fleet(tmp_path: Path, standin: Callable[..., StandinState]) -> Fleet:
    def entry(st: StandinState) -> Any:
        assert st.path is not None
        return {"connection": "local", "zfs_command": zfs_command(st.path, now=NOW_TS)}

    return build_fleet(tmp_path, standin, entry, lambda run: "ansible_connection=local", [])


@pytest.fixture
def ssh_fleet(tmp_path: Path, standin: Callable[..., StandinState], sshd: SshServer) -> Fleet:
    def entry(st: StandinState) -> Any:
        assert st.path is not None
        return sshd.host_config(zfs_command=zfs_command(st.path, now=NOW_TS))

    ssh_args = f"-o UserKnownHostsFile={sshd.known_hosts} -o StrictHostKeyChecking=yes"
    return build_fleet(tmp_path, standin, entry, lambda run: f"ansible_host={sshd.address}",
                       [f"ansible_port={sshd.port}", f"ansible_user={sshd.user}",
                        f"ansible_ssh_private_key_file={sshd.client_key}",
                        f"ansible_ssh_common_args='{ssh_args}'"])


@dataclass
class Played:
    returncode: int
    output: str
    results: dict[str, dict[str, Any]]  # per host: the last task's result (the tree callback)

    def recap(self, host: str) -> dict[str, int]:
        match = re.search(rf"^{host}\s+: (.*)$", self.output, re.MULTILINE)
        assert match, self.output
        return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def play(short_tmp: Path, fleet: Fleet, playbook: str, *args: str, timeout: float = 300) -> Played:
    tree = short_tmp / f"tree-{len(list(short_tmp.iterdir()))}"
    config = short_tmp / "ansible.cfg"
    config.write_text("[defaults]\n", encoding="utf-8")
    env = {**os.environ, "ANSIBLE_CONFIG": str(config), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_LOCAL_TEMP": str(short_tmp / "local"),
           "ANSIBLE_SSH_CONTROL_PATH_DIR": str(short_tmp / "cp"),
           "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree", "ANSIBLE_CALLBACK_TREE_DIR": str(tree),
           "ANSIBLE_DEPRECATION_WARNINGS": "0", "ANSIBLE_FORKS": "10",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    command = [ansible_playbook(), "-i", str(fleet.inventory), str(ANSIBLE_DIR / playbook), *args]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=fleet.root)
    results = {path.name: json.loads(path.read_text()) for path in tree.iterdir()} if tree.exists() else {}
    return Played(proc.returncode, proc.stdout + proc.stderr, results)


def cli_plan(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(fleet.executable), "plan", "-c", str(fleet.source_config), "--now", NOW, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------------------- the module on localhost


def test_check_mode_reports_changes_apply_converges_and_a_second_run_changes_nothing(
        local_fleet: Fleet, short_tmp: Path) -> None:
    before = local_fleet.snapshots()
    checked = play(short_tmp, local_fleet, "apply.yml", "--check", "--diff")
    assert checked.returncode == 0, checked.output
    assert local_fleet.snapshots() == before  # check mode changed nothing
    for run, changed in (("alpha", True), ("beta", True), ("vault", False)):
        result = checked.results[run]
        assert result["changed"] is changed and result["pending"] is changed, (run, result)
        assert result["plan"]["selection"] == {"hosts": [], "filesystems": [], "as": run}
        assert "apply" not in result
    assert checked.results["alpha"]["plan"]["summary"]["send"] == 4  # tank/a, tank/a/x to beta and vault
    kinds = {a["kind"] for a in checked.results["alpha"]["actions"]}
    assert kinds >= {"snapshot", "send", "create", "destroy"}
    assert "Plan: 2 snapshots to create, 4 sends" in checked.output  # --diff: the text plan
    assert checked.recap("vault")["changed"] == 0 and checked.recap("alpha")["changed"] == 1

    applied = play(short_tmp, local_fleet, "apply.yml")
    assert applied.returncode == 0, applied.output
    for run in ("alpha", "beta"):
        result = applied.results[run]
        assert result["changed"] is True and result["apply"]["failed"] == 0, result
        # apply plans again: a shared placeholder the other host's run created meanwhile is not in it
        creates = sum(1 for a in result["actions"] if a["kind"] == "create")
        assert len(result["actions"]) - creates <= result["apply"]["done"] <= len(result["actions"]), result
        assert result["apply"]["skipped"] == 0 and result["failed_actions"] == []
    assert applied.results["vault"]["changed"] is False

    again = play(short_tmp, local_fleet, "apply.yml")
    assert again.returncode == 0, again.output
    assert {run: r["changed"] for run, r in again.results.items()} == dict.fromkeys(RUNS, False)
    assert all(again.recap(run)["changed"] == 0 for run in RUNS)
    checked = play(short_tmp, local_fleet, "apply.yml", "--check")
    assert {run: r["pending"] for run, r in checked.results.items()} == dict.fromkeys(RUNS, False)
    whole = cli_plan(local_fleet, "--detailed-exitcode")
    assert whole.returncode == 0 and "No changes" in whole.stdout, whole.stdout + whole.stderr


def test_a_bad_configuration_fails_the_task_with_file_line_col(local_fleet: Fleet, short_tmp: Path) -> None:
    bad = local_fleet.root / "repo" / "bad.yml"
    text = local_fleet.source_config.read_text().replace('"interval": "1h"', '"interval": "1 hour"')
    bad.write_text(text, encoding="utf-8")
    expected = subprocess.run([str(local_fleet.executable), "validate", "-c", str(bad)],
                              capture_output=True, text=True).stderr.strip()
    location = re.search(r"bad\.yml:(\d+:\d+): policies\.hourly\.snapshots\.interval: invalid duration",
                         expected)
    assert location, expected
    played = play(short_tmp, local_fleet, "plan.yml", "--check", "-e", f"zrepl_reconcile_config_src={bad}")
    assert played.returncode != 0
    for run in RUNS:
        assert played.recap(run)["failed"] == 1
    assert played.output.count(f"/bad.yml:{location.group(1)}: policies.hourly.snapshots.interval: invalid "
                               "duration '1 hour'") >= len(RUNS), played.output
    copies = set(re.findall(r"(/\S+\.zrepl-reconcile)/bad\.yml", played.output))
    assert copies and not any(Path(copy).exists() for copy in copies)  # removed after the failure


def test_parallel_is_passed_or_said_to_be_unsupported(local_fleet: Fleet, short_tmp: Path) -> None:
    played = play(short_tmp, local_fleet, "apply.yml", "-e", "zrepl_reconcile_parallel=4", "--limit", "alpha")
    assert played.returncode == 0, played.output
    has_parallel = "--parallel" in subprocess.run([str(local_fleet.executable), "apply", "--help"],
                                                  capture_output=True, text=True).stdout
    warned = "parallel: 4 was not passed" in played.output
    assert warned is not has_parallel, played.output
    assert played.results["alpha"]["apply"]["failed"] == 0


# --------------------------------------------------------------------------- over the loopback sshd


def test_plan_yml_check_diff_prints_each_hosts_plan_over_ssh(ssh_fleet: Fleet, short_tmp: Path) -> None:
    played = play(short_tmp, ssh_fleet, "plan.yml", "--check", "--diff")
    assert played.returncode == 0, played.output
    assert [played.recap(run)["changed"] for run in RUNS] == [1, 1, 0]
    assert re.search(r"^changed: \[alpha\]$", played.output, re.MULTILINE)
    assert re.search(r"^ok: \[vault\]$", played.output, re.MULTILINE)
    diffs = played.output.split("Plan at 2025-11-24T16:00:00Z")[1:]
    assert len(diffs) == 2, played.output  # alpha's and beta's plans (vault has none)
    by_host = {("alpha" if "tank/a@" in d else "beta"): d for d in diffs}
    assert "full send tank/a@zrepl_20251124_160000 to vault:pool/fleet/tank/a" in by_host["alpha"]
    assert "full send tank/b@zrepl_20251124_160000 to alpha:backup/beta/tank/b" in by_host["beta"]
    assert "tank/b" not in by_host["alpha"]


def test_apply_over_ssh_concurrently_converges_then_reports_no_changes(ssh_fleet: Fleet,
                                                                       short_tmp: Path) -> None:
    applied = play(short_tmp, ssh_fleet, "apply.yml")
    assert applied.returncode == 0, applied.output
    assert [applied.recap(run)["changed"] for run in RUNS] == [1, 1, 0]
    assert all(applied.results[run]["apply"]["failed"] == 0 for run in ("alpha", "beta"))
    again = play(short_tmp, ssh_fleet, "apply.yml")
    assert again.returncode == 0 and [again.recap(run)["changed"] for run in RUNS] == [0, 0, 0], again.output
    whole = cli_plan(ssh_fleet, "--detailed-exitcode")
    assert whole.returncode == 0 and "No changes" in whole.stdout, whole.stdout + whole.stderr


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout as a wheel, which the rollout installs (as a fleet installs a release)."""
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("wheel-src")
    shutil.copytree(REPO, build / "src", ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "tests", "bench",
        "docs"))
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(build / "src")]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    (found,) = out.glob("zrepl_reconcile-*.whl")
    return found


def test_rollout_installs_configures_and_the_unit_reconciles_each_hosts_part(
        ssh_fleet: Fleet, short_tmp: Path, wheel: Path) -> None:
    prefix = ssh_fleet.root / "installed"
    extra = ["-e", json.dumps({
        "zrepl_reconcile_package": str(wheel), "zrepl_reconcile_python": sys.executable,
        "zrepl_reconcile_install_os_packages": False, "zrepl_reconcile_manage_service": False,
    })]
    ssh_fleet.config_of = lambda run: prefix / run / "etc" / "zrepl-reconcile.yml"  # type: ignore[method-assign]
    host_vars = ssh_fleet.host_vars
    ssh_fleet.write_inventory(lambda run: (f"{host_vars(run)} zrepl_reconcile_venv={prefix}/{run}/venv"
                                           f" zrepl_reconcile_unit_dir={prefix}/{run}/systemd"),
                              ssh_fleet.group_vars)
    rolled = play(short_tmp, ssh_fleet, "rollout.yml", *extra, timeout=600)
    assert rolled.returncode == 0, rolled.output
    assert all(rolled.recap(run)["failed"] == 0 for run in RUNS)
    for run in RUNS:
        config = prefix / run / "etc" / "zrepl-reconcile.yml"
        assert config.read_text() == ssh_fleet.source_config.read_text()
        assert config.stat().st_mode & 0o777 == 0o600
        unit = (prefix / run / "systemd" / "zrepl-reconcile.service").read_text()
        (exec_start,) = re.findall(r"^ExecStart=(.*)$", unit, re.MULTILINE)
        assert exec_start == (f"{prefix}/{run}/venv/bin/zrepl-reconcile run --every 10m"
                              f" --max-consecutive-failures 3 --as {run} -c {config}")
        # The unit's own command, once, as systemd would start it on that host.
        ran = subprocess.run([*shlex.split(exec_start), "--once", "--now", NOW], capture_output=True,
                             text=True, timeout=180, env={**os.environ, "NO_COLOR": "1"})
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "No changes" in ran.stdout or " 0 failed, 0 skipped" in ran.stdout, ran.stdout
    whole = cli_plan(ssh_fleet, "--detailed-exitcode")
    assert whole.returncode == 0 and "No changes" in whole.stdout, whole.stdout + whole.stderr
    again = play(short_tmp, ssh_fleet, "rollout.yml", *extra, timeout=600)
    assert again.returncode == 0 and [again.recap(run)["changed"] for run in RUNS] == [0, 0, 0], again.output
