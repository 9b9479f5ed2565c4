"""The demo's embedded desired state is valid and its seed script names what it promises."""

from __future__ import annotations

import json

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
