"""Real OpenZFS and real sanoid (Debian's package, installed in the guest as the benchmark does):
a sanoid user's switch-over as the README tells it, against the snapshots sanoid itself made.

sanoid runs for three days of the guest's clock (every three hours, `sanoid --cron` as its
timer does), a person takes a manual snapshot, and the user lowers the counts while switching:
`import sanoid` on the guest's own sanoid.conf and sanoid.defaults.conf, `validate`, `plan`:
every snapshot the plan destroys is one that sanoid itself (`--prune-snapshots --readonly`,
with the same configuration at the same moment) would destroy, and something is; `apply`;
`plan`: No changes (sanoid's snapshot of a minute ago counts for our schedule: none is due);
a day later our schedule has taken over and sanoid's last snapshots of each type stay.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from e2e.conftest import GuestZfs
from e2e.scenario_helpers import apply, assert_applied, assert_no_changes, cli, guest_epoch, iso, plan

pytestmark = pytest.mark.realzfs

CONF = """\
[src/sanoid]
\tuse_template = production
\trecursive = zfs

[template_production]
\tfrequently = 0
\thourly = {hourly}
\tdaily = {daily}
\tweekly = 0
\tmonthly = 0
\tyearly = 0
\tautosnap = yes
\tautoprune = yes
"""
DATASETS = ("src/sanoid", "src/sanoid/a", "src/sanoid/b")
PRUNING = re.compile(r"^INFO: pruning (\S+@\S+) \.\.\.", re.MULTILINE)


def install_sanoid(guest: Any) -> None:
    """Debian's sanoid, its timer off: the test runs `sanoid --cron` itself as the clock moves
    (the timer would fire on every clock jump and race it)."""
    if guest.ssh(["sh", "-c", "command -v sanoid"]).returncode != 0:
        guest.sh("apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q"
                 " --no-install-recommends sanoid >/tmp/apt-sanoid.log 2>&1", timeout=1800)
    guest.sh("systemctl disable --now sanoid.timer >/dev/null 2>&1;"
             " systemctl stop sanoid.service sanoid-prune.service >/dev/null 2>&1; true")


def write_conf(guest: Any, hourly: int, daily: int) -> None:
    guest.ssh(["sh", "-c", "mkdir -p /etc/sanoid && cat > /etc/sanoid/sanoid.conf"],
              input=CONF.format(hourly=hourly, daily=daily), check=True)


def all_snapshots(guest_zfs: GuestZfs) -> set[str]:
    out = guest_zfs("list", "-H", "-o", "name", "-t", "snapshot", "-r", "src/sanoid").stdout
    return set(out.split())


def test_a_sanoid_users_switch_over(pools: tuple[str, ...], zfs_guest: Any, guest_zfs: GuestZfs,
                                    tmp_path: Path) -> None:
    install_sanoid(zfs_guest)
    for dataset in DATASETS:
        guest_zfs("create", dataset)
    write_conf(zfs_guest, hourly=6, daily=3)
    start = guest_epoch(zfs_guest) // 3600 * 3600 + 3600
    runs = [start + k * 3 * 3600 for k in range(24)]  # three days, sanoid --cron every three hours
    zfs_guest.sh("rm -rf /var/cache/sanoid; for t in " + " ".join(map(str, runs)) + "; do"
                 " date -u -s @$t >/dev/null && TZ=UTC sanoid --cron --quiet || exit 1; done", timeout=1800)
    guest_zfs("snapshot", "src/sanoid/a@manual-before-upgrade")
    made = all_snapshots(guest_zfs)
    assert sum("autosnap_" in name for name in made) >= 3 * (6 + 3)

    # The switch-over, with lower counts than sanoid kept so far.
    write_conf(zfs_guest, hourly=3, daily=2)
    now = runs[-1] + 60
    zfs_guest.ssh(["date", "-u", "-s", f"@{now}"], check=True)
    conf = zfs_guest.ssh(["cat", "/etc/sanoid/sanoid.conf"], check=True).stdout
    (tmp_path / "sanoid.conf").write_text(conf)
    (tmp_path / "sanoid.defaults.conf").write_text(
        zfs_guest.ssh(["cat", "/usr/share/sanoid/sanoid.defaults.conf"], check=True).stdout)
    config = tmp_path / "zrepl-reconcile.yml"
    imported = cli("import", "sanoid", str(tmp_path / "sanoid.conf"), "--out", str(config))
    assert imported.returncode == 0, imported.output
    point_at_guest(config, zfs_guest.ssh_host_config())
    assert cli("validate", "-c", str(config)).returncode == 0

    planned = plan(config, iso(now), "--format", "json")
    assert planned.returncode == 0, planned.output
    document = json.loads(planned.output[:planned.output.rindex("}") + 1])
    ours = {f"{a['dataset']}@{name}" for a in document["actions"] if a["kind"] == "destroy"
            for name in a["snapshots"]}
    sanoid = set(PRUNING.findall(zfs_guest.sh("rm -rf /var/cache/sanoid; TZ=UTC sanoid --prune-snapshots"
                                              " --readonly --verbose").stdout))
    assert ours, "the lower counts must let the plan destroy something"
    assert ours <= sanoid, sorted(ours - sanoid)
    assert not any("manual" in name for name in ours)

    assert_applied(apply(config, iso(now)))
    assert all_snapshots(guest_zfs) == made - ours  # sanoid's autosnap of a minute ago: none due yet
    assert_no_changes(config, iso(now))

    later = now + 86400  # sanoid no longer runs; our schedule has taken over
    zfs_guest.ssh(["date", "-u", "-s", f"@{later}"], check=True)
    assert_applied(apply(config, iso(later)))
    after = all_snapshots(guest_zfs)
    assert "src/sanoid/a@manual-before-upgrade" in after
    for dataset in DATASETS:
        autosnaps = [n for n in after if n.startswith(f"{dataset}@autosnap_")]
        assert len([n for n in autosnaps if n.endswith("_hourly")]) == 3  # sanoid's floor: the 3 newest
        assert f"{dataset}@zrepl_{_stamp(later)}" in after


def _stamp(epoch: int) -> str:
    return iso(epoch).replace("-", "").replace(":", "").replace("T", "_").rstrip("Z")


def point_at_guest(config: Path, host: dict[str, object]) -> None:
    """The import names the machine sanoid ran on `local`; zrepl-reconcile runs on the host
    here and reaches the guest over SSH (the README says to edit the host entry so)."""
    yaml = YAML()
    data = yaml.load(config.read_text())
    data["hosts"]["local"] = host
    with config.open("w") as out:
        yaml.dump(data, out)
