"""gather(): one zfs list per host, holds only for held snapshots, failures isolated per host."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fixtures_sshd import SshServer, free_port
from standin.state import StandinState

from reconciler.cli import main
from reconciler.config.load import load_config
from reconciler.config.models import Config
from reconciler.domain.observed import ObservedState
from reconciler.gather import facts as facts_module
from reconciler.gather.facts import gather, gather_host
from reconciler.gather.gc_pause import paused_gc
from reconciler.gather.parse import parse_zfs_list
from reconciler.transport.hosts import open_executors
from reconciler.transport.local import LocalExecutor


def config_for(hosts: dict[str, dict[str, Any]]) -> Config:
    first = next(iter(hosts))
    return Config.model_validate({
        "hosts": hosts,
        "policies": {"p": {"snapshots": {"prefix": "zrepl_", "interval": "1h"}}},
        "filesystems": [{"host": first, "filter": {"tank<": True}, "policy": "p"}],
    })


def gather_all(config: Config, hosts: list[str] | None = None) -> ObservedState:
    """gather() through executors opened (and closed) for the call, as the commands do."""
    with open_executors(config, hosts) as executors:
        return gather(config, executors, hosts)


def local(st: StandinState) -> dict[str, Any]:
    return {"connection": "local", "zfs_command": st.zfs_command}


@pytest.fixture
def nas(standin: Callable[..., StandinState]) -> StandinState:
    st = standin("nas")
    st.filesystem("tank/data")
    for i in range(5):
        st.snapshot("tank/data", f"zrepl_{i}", holds=("keep", "zrepl") if i in (1, 3) else ())
    st.bookmark("tank/data", "zrepl_2", "cursor")
    st.filesystem("tank/a b:c")
    st.save()
    return st


def test_gather_one_list_and_holds_only_for_held(nas: StandinState) -> None:
    state = gather_all(config_for({"nas": local(nas)}))
    assert not state.unavailable
    data = state.dataset("nas", "tank/data")
    assert data is not None
    assert [s.name for s in data.snapshots] == [f"zrepl_{i}" for i in range(5)]
    assert data.snapshots[1].holds == ("keep", "zrepl") and data.snapshots[0].holds == ()
    assert data.bookmarks[0].name == "cursor"
    assert state.dataset("nas", "tank/a b:c") is not None
    log = nas.log()
    assert [argv[0] for argv in log] == ["list", "holds"]
    assert log[1] == ["holds", "-H", "tank/data@zrepl_1", "tank/data@zrepl_3"]


def test_holds_are_batched(nas: StandinState, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(facts_module, "MAX_ARGV_BYTES", 20)
    facts = gather_host(LocalExecutor("nas", nas.zfs_command), "nas")
    assert [argv[0] for argv in nas.log()] == ["list", "holds", "holds"]
    assert facts.datasets["tank/data"].snapshots[3].holds == ("keep", "zrepl")


def test_no_holds_call_without_held_snapshots(standin: Callable[..., StandinState]) -> None:
    st = standin("plain")
    st.snapshot("tank/x", "s")
    st.save()
    gather_host(LocalExecutor("plain", st.zfs_command))
    assert [argv[0] for argv in st.log()] == ["list"]


@pytest.mark.parametrize(("host", "code", "words"), [
    ({"connection": "local", "zfs_command": ["/nonexistent/zfs"]}, "zfs_not_found", "zfs command not found"),
    ({"connection": "local", "zfs_command": ["sh", "-c", "echo 'sudo: a password is required' >&2; exit 1"]},
     "permission_denied", "a password is required"),
    ({"connection": "local", "zfs_command": ["echo", "garbage"]}, "bad_output", "line 1"),
    ({"connection": "local", "zfs_command": ["sh", "-c", "sleep 5"], "command_timeout": 0.5},
     "timeout", "timed out"),
    ({"connection": "local", "zfs_command": ["sh", "-c", "echo boom >&2; exit 3"]}, "command_failed", "boom"),
])
def test_failing_host_is_unavailable_and_others_gathered(nas: StandinState, host: dict[str, Any], code: str,
                                                         words: str) -> None:
    state = gather_all(config_for({"nas": local(nas), "broken": host}))
    assert "nas" in state.hosts and state.dataset("nas", "tank/data") is not None
    reason = state.unavailable["broken"]
    assert reason.code == code and words in reason.message and "'broken'" in reason.message


def test_zfs_permission_denied_from_zfs_itself(nas: StandinState,
                                               standin: Callable[..., StandinState]) -> None:
    denied = standin("denied")
    denied.inject("list", "cannot open 'tank': permission denied")
    denied.save()
    state = gather_all(config_for({"nas": local(nas), "denied": local(denied)}))
    assert state.unavailable["denied"].code == "permission_denied" and "nas" in state.hosts


def test_host_selection_and_unknown_host(nas: StandinState) -> None:
    config = config_for({"nas": local(nas), "other": {"connection": "local", "zfs_command": ["false"]}})
    assert list(gather_all(config, ["nas"]).hosts) == ["nas"]
    with pytest.raises(Exception, match="unknown host"):
        gather_all(config, ["nope"])


def test_gathering_uses_the_callers_executors_and_leaves_them_open(nas: StandinState) -> None:
    """gather never builds or closes an executor: whoever opened them (apply: for gathering
    and applying on one connection per host) closes them."""

    class Counting(LocalExecutor):
        closed = 0

        def close(self) -> None:
            Counting.closed += 1

    config = config_for({"nas": local(nas), "other": {"connection": "local", "zfs_command": ["false"]}})
    executors = {"nas": Counting("nas", nas.zfs_command)}
    state = gather(config, executors, ["nas"])
    assert state.dataset("nas", "tank/data") is not None and Counting.closed == 0
    with pytest.raises(ValueError, match="no executor for host"):
        gather(config, executors)  # every configured host, and "other" has none


def test_ssh_gathering_with_failures_isolated(sshd: SshServer, nas: StandinState, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    config = config_for({
        "remote": sshd.host_config(zfs_command=nas.zfs_command),
        "local": local(nas),
        "refused": {"connection": "ssh", "address": "127.0.0.1", "port": free_port(), "connect_timeout": 3},
        "stranger": sshd.host_config(known_hosts=str(empty)),
        "nozfs": sshd.host_config(zfs_command=["/nonexistent/zfs"]),
    })
    state = gather_all(config)
    assert set(state.hosts) == {"remote", "local"}
    remote = state.dataset("remote", "tank/data")
    assert remote is not None and remote.snapshots[3].holds == ("keep", "zrepl")
    codes = {name: u.code for name, u in state.unavailable.items()}
    assert codes == {"refused": "unreachable", "stranger": "host_key_unknown", "nozfs": "zfs_not_found"}
    assert "SHA256:" in state.unavailable["stranger"].message


def write_config(tmp_path: Path, hosts: dict[str, dict[str, Any]]) -> Path:
    path = tmp_path / "zrepl-reconcile.yml"
    path.write_text(json.dumps({  # JSON is YAML
        "hosts": hosts, "policies": {"p": {"snapshots": {"prefix": "zrepl_", "interval": "1h"}}},
        "filesystems": [{"host": next(iter(hosts)), "filter": {"tank<": True}, "policy": "p"}]}))
    return path


def test_facts_command_plain_and_json(nas: StandinState, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    path = write_config(tmp_path, {"nas": local(nas)})
    assert main(["facts", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "host nas: 3 datasets, 5 snapshots" in out and "tank/a b:c" in out
    assert main(["facts", "-c", str(path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    snaps = data["hosts"]["nas"]["datasets"]["tank/data"]["snapshots"]
    assert snaps[1]["holds"] == ["keep", "zrepl"] and data["unavailable"] == {}


def test_facts_command_exit_1_when_a_host_fails(nas: StandinState, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, {"nas": local(nas),
                                   "bad": {"connection": "local", "zfs_command": ["/nonexistent/zfs"]}})
    assert main(["facts", "-c", str(path), "--snapshots"]) == 1
    out = capsys.readouterr().out
    assert "@zrepl_4" in out and "host bad: UNAVAILABLE (zfs_not_found)" in out
    assert main(["facts", "-c", str(path), "--host", "nas"]) == 0


def test_facts_command_over_ssh(sshd: SshServer, nas: StandinState, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, {"remote": sshd.host_config(zfs_command=nas.zfs_command)})
    assert main(["facts", "-c", str(path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in data["hosts"]["remote"]["datasets"]["tank/data"]["snapshots"]] == [
        f"zrepl_{i}" for i in range(5)]


# --------------------------------------------------------------------------- scoped listing

def scoped_config(nas: StandinState, backup: StandinState, *, backup_is_source: bool = True) -> Config:
    """tank/data of nas replicated to backup:pool/nas; backup's own pool<, or not."""
    filesystems: list[dict[str, Any]] = [
        {"host": "nas", "filter": {"tank/data<": True, "tank/data/tmp": False, "tank/data/x": True},
         "policy": "p", "replicate_to": [{"host": "backup", "root": "pool/nas"}]}]
    if backup_is_source:
        filesystems.append({"host": "backup", "filter": {"pool<": True}, "policy": "p"})
    return Config.model_validate({
        "hosts": {"nas": local(nas), "backup": local(backup)},
        "policies": {"p": {"snapshots": {"prefix": "zrepl_", "interval": "1h"}}},
        "filesystems": filesystems,
    })


def backup_with(standin: Callable[..., StandinState], *filesystems: str) -> StandinState:
    backup = standin("backup")
    for name in filesystems:
        backup.filesystem(name)
    backup.save()
    return backup


def test_listing_roots_are_the_outermost_subtrees_the_config_touches(
        nas: StandinState, standin: Callable[..., StandinState]) -> None:
    roots = facts_module.listing_roots(scoped_config(nas, backup_with(standin)))
    # tank/data/x lies in tank/data's subtree; pool/nas in pool's (a source there too).
    assert roots == {"nas": ["tank/data"], "backup": ["pool"]}


def test_gathering_lists_only_the_configured_subtrees(nas: StandinState,
                                                     standin: Callable[..., StandinState]) -> None:
    backup = backup_with(standin, "pool/nas", "other/big")
    state = gather_all(scoped_config(nas, backup, backup_is_source=False))
    assert set(state.hosts["nas"].datasets) == {"tank/data"}  # not tank, not "tank/a b:c"
    assert state.hosts["nas"].scope == ("tank/data",)
    assert nas.log()[0][-2:] == ["-r", "tank/data"]
    assert set(state.hosts["backup"].datasets) == {"pool/nas"}  # not other/big
    # Ancestors of a listed root exist, though the scoped listing does not show them.
    assert state.exists("backup", "pool") and not state.exists("backup", "other")
    assert state.dataset("backup", "pool") is None


def test_a_missing_root_lists_the_whole_host(nas: StandinState, standin: Callable[..., StandinState]) -> None:
    backup = backup_with(standin, "pool")
    state = gather_all(scoped_config(nas, backup, backup_is_source=False))
    assert state.hosts["backup"].scope is None and set(state.hosts["backup"].datasets) == {"pool"}
    assert [argv[0] for argv in backup.log()] == ["list", "list"]


def test_a_plan_on_scoped_facts_knows_the_parents_above_the_root(
        nas: StandinState, standin: Callable[..., StandinState]) -> None:
    from reconciler.domain.actions import CreateAction, SendAction
    from reconciler.planning.planner import make_plan

    config = scoped_config(nas, backup_with(standin, "pool/nas"), backup_is_source=False)
    state = gather_all(config)
    assert state.hosts["backup"].scope == ("pool/nas",)
    plan = make_plan(config, state, datetime(2026, 11, 25, tzinfo=UTC))
    assert not plan.conflicts  # the pool exists: pool/nas was listed
    creates = [a.dataset for a in plan.actions if isinstance(a, CreateAction)]
    assert creates == ["pool/nas/tank"]  # pool/nas exists; only the missing parent below it
    assert [a.target_dataset for a in plan.actions if isinstance(a, SendAction)] == ["pool/nas/tank/data"]


# --------------------------------------------------------------------------- the collector

def test_paused_gc_pauses_the_collector_and_restores_it_nested_or_not() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause leaves the outer one's wish
        built = [object()]
    assert gc.isenabled() and gc.get_freeze_count() == 0
    # What was built inside went straight to the oldest generation.
    assert any(o is built for o in gc.get_objects(generation=2))
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()


def test_the_parser_leaves_the_collector_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def touched() -> None:
        raise AssertionError("the parser changed the process's garbage collector")

    for name in ("disable", "enable", "freeze", "unfreeze"):
        monkeypatch.setattr(gc, name, touched)
    listing = ("tank\tfilesystem\t1\t1\t1\t-\t0\t0\t-\toff\t-\t-\n"
               "tank@a\tsnapshot\t2\t2\t1\t0\t0\t0\t-\toff\t-\t-\n")
    assert len(parse_zfs_list(listing, "h")["tank"].snapshots) == 1


def test_commands_gather_with_the_collector_paused(nas: StandinState, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    collecting: list[bool] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        collecting.append(gc.isenabled())
        return gather(*args, **kwargs)

    monkeypatch.setattr("reconciler.api.gather", recording)  # every command gathers through the api
    path = write_config(tmp_path, {"nas": local(nas)})
    plan_file = tmp_path / "plan.json"
    assert main(["facts", "-c", str(path)]) == 0
    assert main(["plan", "-c", str(path), "--out", str(plan_file)]) == 0
    main(["apply", "-c", str(path), "--plan", str(plan_file), "-y"])
    capsys.readouterr()
    assert collecting == [False, False, False] and gc.isenabled()


def test_settings_parallel_hosts_bounds_the_gathering_threads(nas: StandinState, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import reconciler.gather.facts as facts

    seen: list[int] = []
    real_pool = facts.ThreadPoolExecutor

    def pool(max_workers: int, **kwargs: Any) -> Any:
        seen.append(max_workers)
        return real_pool(max_workers=max_workers, **kwargs)

    monkeypatch.setattr(facts, "ThreadPoolExecutor", pool)
    path = write_config(tmp_path, {"nas": local(nas), "nas2": local(nas)})
    data = json.loads(path.read_text())
    data["settings"] = {"parallel_hosts": 1}
    path.write_text(json.dumps(data))
    config = load_config(str(path))
    with open_executors(config) as executors:
        state = gather(config, executors)
    assert set(state.hosts) == {"nas", "nas2"} and seen == [1]
