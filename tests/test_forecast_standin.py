"""The simulation is what apply does: simulating N days and then planning at day N gives the
same kept snapshots as applying the plans step by step on the stand-in zfs (real commands,
real send streams), with and without an outage of the backup host."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standin.state import StandinState
from test_planner_standin import gather_all, run_plan

from reconciler.config.models import Config
from reconciler.domain.actions import DestroyAction
from reconciler.domain.observed import ObservedState
from reconciler.planning.forecast import Outage, forecast
from reconciler.planning.planner import make_plan

START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
KEEP_SOURCE = [
    [{"type": "not_replicated"}, {"type": "last_n", "count": 2, "regex": "^zrepl_"}],
    [{"type": "last_n", "count": 3, "regex": "^zrepl_"}],
    [{"type": "grid", "grid": "1x4h(keep=all) | 2x4h", "regex": "^zrepl_"}],
]
KEEP_TARGET = [
    [{"type": "grid", "grid": "1x2h(keep=all) | 3x4h | 1x1d", "regex": "^zrepl_"}],
    [{"type": "last_n", "count": 4, "regex": "^zrepl_"}],
]
_names = itertools.count()


def make_config(nas: StandinState, backup: StandinState, keep_source: list[dict[str, Any]],
                keep_target: list[dict[str, Any]], interval: str, backup_down: bool = False) -> Config:
    return Config.model_validate({
        "hosts": {"nas": {"connection": "local", "zfs_command": nas.zfs_command},
                  "backup": {"connection": "local",
                             "zfs_command": ["false"] if backup_down else backup.zfs_command}},
        "policies": {"p": {"snapshots": {"prefix": "zrepl_", "interval": interval},
                           "keep_source": keep_source, "keep_target": keep_target}},
        "filesystems": [{"host": "nas", "filter": {"tank/data<": True}, "policy": "p",
                         "replicate_to": [{"host": "backup", "root": "pool/nas"}]}],
    })


def kept(config: Config, observed: ObservedState, now: datetime) -> dict[tuple[str, str], list[str]]:
    """Every managed dataset's snapshots that the plan at ``now`` leaves (names, in order)."""
    plan = make_plan(config, observed, now)
    gone = {(a.host, a.dataset): set(a.snapshots) for a in plan.actions if isinstance(a, DestroyAction)}
    out = {}
    for host, facts in observed.hosts.items():
        for ds in facts.datasets.values():
            if ds.name.startswith(("tank/data", "pool/nas/tank")):
                dropped = gone.get((host, ds.name), set())
                out[(host, ds.name)] = [s.name for s in ds.snapshots if s.name not in dropped]
    return out


@pytest.mark.soak  # long: CI runs it in the soak suite (tests/run), not the fast one
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keep_source=st.sampled_from(KEEP_SOURCE), keep_target=st.sampled_from(KEEP_TARGET),
       hours=st.just(6), outage=st.sampled_from(["none", "middle", "to the end"]))
def test_simulating_a_day_then_planning_equals_applying_step_by_step(
        standin: Callable[..., StandinState], monkeypatch: pytest.MonkeyPatch,
        keep_source: list[dict[str, Any]], keep_target: list[dict[str, Any]], hours: int,
        outage: str) -> None:
    t0 = int(START.timestamp())
    run = next(_names)
    nas = standin(f"nas{run}", seed=run, now=t0)
    backup = standin(f"backup{run}", seed=1000 + run, now=t0)
    for name in ("tank/data", "tank/data/docs"):
        nas.filesystem(name)
    nas.snapshot("tank/data/docs", "zrepl_old", creation=t0 - 30 * 3600)
    nas.snapshot("tank/data/docs", "manual", creation=t0 - 20 * 3600)
    nas.save()
    backup.filesystem("pool")
    backup.save()
    interval = f"{hours}h"
    config = make_config(nas, backup, keep_source, keep_target, interval)
    down_config = make_config(nas, backup, keep_source, keep_target, interval, backup_down=True)
    step = timedelta(hours=hours)
    window = Outage("backup", START + step, START + (3 * step if outage == "middle" else timedelta(days=1)))
    outages = [window] if outage != "none" else []

    monkeypatch.setenv("ZFS_STANDIN_NOW", str(t0))
    simulated = forecast(config, gather_all(config), START, days=1, step=step, outages=outages)

    commands = {"nas": nas.zfs_command, "backup": backup.zfs_command}
    for index in range(simulated.runs):
        now = START + index * step
        monkeypatch.setenv("ZFS_STANDIN_NOW", str(int(now.timestamp())))
        current = down_config if outages and window.covers(now) else config
        plan = make_plan(current, gather_all(current), now)
        run_plan(plan, commands)
        after = gather_all(config)
        counts = {side: len(ds.snapshots) if (ds := after.dataset(*side)) is not None else 0
                  for side in simulated.samples[index][1]}
        assert counts == simulated.samples[index][1], (outage, index)
    end = START + timedelta(days=1)
    monkeypatch.setenv("ZFS_STANDIN_NOW", str(int(end.timestamp())))
    real = gather_all(config)
    assert kept(config, simulated.final, end) == kept(config, real, end)
    assert simulated.runs == -(-24 // hours)
