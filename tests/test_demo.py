"""The demo's embedded desired state is valid and its seed script names what it promises."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from reconciler import demo
from reconciler.config.load import load_config_text
from reconciler.demo import SOURCE_DATASETS, demo_config, seed_script


def test_demo_config_for_a_local_host_validates() -> None:
    config = load_config_text(demo_config(json.dumps({"connection": "local"}), "zsrc", "zdst"), "demo.yml")
    entry = config.filesystems[0]
    assert entry.filter == {"zsrc<": True}
    assert entry.replicate_to[0].root == "zdst/backup"
    assert config.policies["demo"].protects_unreplicated


def test_demo_config_for_the_guest_validates() -> None:
    host = {"connection": "ssh", "address": "127.0.0.1", "port": 2222, "user": "root",
            "identity_file": "/tmp/x y/id_ed25519", "known_hosts": "/tmp/x y/known_hosts"}
    config = load_config_text(demo_config(json.dumps(host), "src", "dst"), "demo.yml")
    assert config.hosts["demo"].connection == "ssh"


def test_seed_script_creates_names_with_spaces_colons_and_dots_and_an_unmanaged_snapshot() -> None:
    script = seed_script("src", "dst", "/var/tmp", mount=True)
    for name in SOURCE_DATASETS:
        assert f"zfs create -p '{name}'" in script
    assert "zfs snapshot 'src/docs@manual-before-upgrade'" in script
    assert "mountpoint=none" not in script
    assert "-O mountpoint=none" in seed_script("a", "b", "/tmp", mount=False)


def test_the_last_plan_explains_a_filesystem_of_the_demos_own_pool(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(demo, "run_cli", lambda title, argv: calls.append(list(argv)) or 0)
    assert demo.run_steps(tmp_path / "c.yml", "zrrdemo_src") == 0
    assert [c[0] for c in calls] == ["plan", "apply", "plan"]
    assert calls[2][calls[2].index("--explain") + 1] == "zrrdemo_src/docs"
    assert "--detailed-exitcode" in calls[2]


def fake_zfs_tools(bin_dir: Path, log: Path, demo_mark: str) -> None:
    """``zpool``/``zfs`` stand-ins: every pool exists; ``zfs get`` prints ``demo_mark``."""
    bin_dir.mkdir()
    for tool, body in (("zpool", 'case "$1" in list) exit 0;; esac'),
                       ("zfs", f'case "$1" in get) echo "{demo_mark}";; esac')):
        path = bin_dir / tool
        path.write_text(f'#!/bin/sh\necho "{tool} $*" >>"{log}"\n{body}\nexit 0\n')
        path.chmod(0o755)


@pytest.mark.parametrize(("mark", "replaced"), [("-", False), ("yes", True)])
def test_on_the_users_own_host_only_a_pool_the_demo_made_is_replaced(
        tmp_path: Path, mark: str, replaced: bool) -> None:
    log = tmp_path / "calls.log"
    fake_zfs_tools(tmp_path / "bin", log, mark)
    (tmp_path / "images dir").mkdir()
    script = seed_script("zrrdemo_src", "zrrdemo_dst", str(tmp_path / "images dir"), mount=False)
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                            env={**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"})
    calls = log.read_text()
    assert ("zpool destroy -f zrrdemo_src" in calls) is replaced
    if replaced:
        assert result.returncode == 0, result.stderr
        assert f"-O {demo.DEMO_MARK}=yes zrrdemo_src {tmp_path}/images dir/zrrdemo_src.img" in calls
    else:
        assert result.returncode == 1
        assert "exists and the demo did not create it; not touching it" in result.stderr
        assert "zpool create" not in calls and "destroy" not in calls
