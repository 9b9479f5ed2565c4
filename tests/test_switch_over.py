"""The switch-over is safe: after an import, `plan` against the state the old tool left never
destroys a snapshot the old tool would have kept.

Each old tool runs for months on a model (tests/oldtools.py, written from its code) to leave
hundreds of snapshots in its own naming, with an outage on the way and snapshots of other
tools and people; the state goes into the stand-in zfs, the old configuration through the
importer, and the plan is compared with what the old tool itself would destroy at that time.
Then our tool runs on for days and must never destroy what the old tool's rule would keep.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from oldtools import (
    History,
    SanoidConfig,
    SanoidDataset,
    run_sanoid,
    run_znapzend,
    sanoid_prune,
    sanoid_take,
    znapzend_destroy,
)
from standin.state import StandinState
from test_planner_standin import gather_all

from reconciler.config.models import Config, LocalHost
from reconciler.domain.actions import DestroyAction, SnapshotAction
from reconciler.domain.observed import ObservedState, Snapshot
from reconciler.importers.emit import emit
from reconciler.importers.sanoid import import_sanoid
from reconciler.importers.znapzend import import_znapzend
from reconciler.importers.zrepl import import_zrepl
from reconciler.planning.planner import make_plan
from reconciler.planning.retention import evaluate_keep_rules
from reconciler.planning.simulate import simulate

END = int(datetime(2026, 11, 24, 12, 0, 7, tzinfo=UTC).timestamp())
DAY = 86400


def on_standin(config: Config, state: StandinState) -> Config:
    host = LocalHost(connection="local", zfs_command=state.zfs_command)
    return config.model_copy(update={"hosts": dict.fromkeys(config.hosts, host)})


def fill(state: StandinState, histories: dict[str, History]) -> None:
    for dataset, history in histories.items():
        state.filesystem(dataset)
        for name, creation in sorted(history.snaps, key=lambda s: s[1]):
            state.snapshot(dataset, name, creation=creation)
    state.save()


def destroyed(config: Config, observed: ObservedState, now: int) -> dict[str, set[str]]:
    plan = make_plan(config, observed, datetime.fromtimestamp(now, UTC))
    return {a.dataset: set(a.snapshots) for a in plan.actions if isinstance(a, DestroyAction)}


def names(observed: ObservedState, dataset: str) -> list[tuple[str, int]]:
    ds = observed.dataset("local", dataset)
    assert ds is not None
    return [(s.name, s.creation) for s in ds.snapshots]


# ---------------------------------------------------------------------------------- sanoid

SANOID_CONF = """\
    [tank/data]
    \tuse_template = production
    \trecursive = zfs
    [tank/data/db]
    \thourly = 72
    [template_production]
    \tfrequently = 4
    \tfrequent_period = 15
    \thourly = 48
    \tdaily = 120
    \tweekly = 4
    \tmonthly = 6
    \tyearly = 0
    """
PRODUCTION = SanoidConfig({"frequently": 4, "hourly": 48, "daily": 120, "weekly": 4, "monthly": 6})
DB = SanoidConfig({**PRODUCTION.counts, "hourly": 72})
SANOID_DATASETS = {"tank/data": PRODUCTION, "tank/data/db": DB, "tank/data/web": PRODUCTION}
FOREIGN = [("manual-before-upgrade", END - 100 * DAY), ("syncoid_nas_2026-11-20:03:00:00", END - 4 * DAY),
           ("autosnap_by_hand", END - 2 * DAY)]


def sanoid_history(counts_for: dict[str, SanoidConfig], start: int, end: int) -> dict[str, History]:
    """sanoid --cron with recursive = zfs: the parent decides, `zfs snapshot -r` takes every
    dataset's, and each dataset is pruned with its own counts. Hourly runs, every 15 minutes on
    the last two days (the frequentlies), down for five days in between."""
    datasets = {ds: SanoidDataset(config, FOREIGN) for ds, config in counts_for.items()}
    parent = next(iter(datasets.values()))
    runs = [*range(start, end - 2 * DAY, 3600), *range(end - 2 * DAY, end + 1, 900)]
    for now in runs:
        if end - 40 * DAY <= now < end - 35 * DAY:
            continue
        taken = sanoid_take(parent.newest(), parent.config, now)
        for dataset in datasets.values():
            dataset.add(taken)
            dataset.prune(now)
    return {ds: dataset.history() for ds, dataset in datasets.items()}


def import_sanoid_text(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "sanoid.conf"
    path.write_text(textwrap.dedent(text))
    return emit(import_sanoid(str(path))).config


def test_sanoid_switch_over_destroys_nothing_sanoid_would_keep(
        standin: Callable[..., StandinState], tmp_path: Path) -> None:
    histories = sanoid_history(SANOID_DATASETS, END - 250 * DAY, END)
    assert all(len(h.snaps) > 150 for h in histories.values())  # hundreds over months
    state = standin("nas", now=END)
    fill(state, histories)
    config = on_standin(import_sanoid_text(tmp_path, SANOID_CONF), state)
    observed = gather_all(config)
    last = histories["tank/data"].last_run
    for later in (0, 600, 3 * DAY, 30 * DAY):
        now = last + later
        for dataset, gone in destroyed(config, observed, now).items():
            would = sanoid_prune(names(observed, dataset), SANOID_DATASETS[dataset], now)
            assert gone <= would, (later, dataset, sorted(gone - would))


def test_sanoid_with_lower_counts_destroys_what_sanoid_destroys(
        standin: Callable[..., StandinState], tmp_path: Path) -> None:
    """The state was made with more hourlies and dailies than the configuration imported now:
    at the moment of sanoid's last run both agree exactly; later ours destroys a subset."""
    generous = {"tank/data": SanoidConfig({**PRODUCTION.counts, "hourly": 96, "daily": 150})}
    histories = sanoid_history(generous, END - 200 * DAY, END)
    state = standin("nas", now=END)
    fill(state, histories)
    production_only = SANOID_CONF[SANOID_CONF.index("    [template_production]"):]
    config = on_standin(import_sanoid_text(tmp_path, "    [tank/data]\n    \tuse_template = production\n"
                                           + production_only), state)
    observed = gather_all(config)
    last = histories["tank/data"].last_run
    at_last = destroyed(config, observed, last)["tank/data"]
    would = sanoid_prune(names(observed, "tank/data"), PRODUCTION, last)
    assert at_last == would and len(would) > 50
    for later in (3600, 5 * DAY):
        gone = destroyed(config, observed, last + later).get("tank/data", set())
        assert gone <= sanoid_prune(names(observed, "tank/data"), PRODUCTION, last + later)


def test_after_the_switch_over_our_runs_never_destroy_what_sanoids_rule_keeps(
        standin: Callable[..., StandinState], tmp_path: Path) -> None:
    histories = sanoid_history(SANOID_DATASETS, END - 120 * DAY, END)
    state = standin("nas", now=END)
    fill(state, histories)
    config = on_standin(import_sanoid_text(tmp_path, SANOID_CONF), state)
    observed = gather_all(config)
    now = histories["tank/data"].last_run
    for _ in range(5 * 12):
        now += 2 * 3600
        plan = make_plan(config, observed, datetime.fromtimestamp(now, UTC))
        for action in plan.actions:
            if isinstance(action, DestroyAction):
                autosnaps = {n for n in action.snapshots if n.startswith("autosnap")}
                assert autosnaps <= sanoid_prune(names(observed, action.dataset),
                                                 SANOID_DATASETS[action.dataset], now)
        observed = simulate(observed, plan)
    for dataset, counts in SANOID_DATASETS.items():  # ours took over, kept by the grid of the counts
        ours = [n for n, _ in names(observed, dataset) if n.startswith("zrepl_")]
        assert counts.counts["hourly"] // 2 - 2 <= len(ours) <= counts.counts["hourly"] // 2 + 6  # every 2h
        assert {n for n, _ in FOREIGN} <= {n for n, _ in names(observed, dataset)}


# ---------------------------------------------------------------------------------- znapzend

PLAN_90 = [(7 * DAY, 3600), (30 * DAY, 4 * 3600), (90 * DAY, DAY)]
PLAN_180 = [(7 * DAY, 3600), (60 * DAY, 4 * 3600), (180 * DAY, DAY)]


def test_znapzend_switch_over_destroys_nothing_znapzend_would_keep(
        standin: Callable[..., StandinState], tmp_path: Path) -> None:
    """Made with a 180-day plan, imported with a 90-day one: what goes is what znapzend's own
    cleanup would remove with the new plan (and less), never a snapshot it keeps."""
    history = run_znapzend(PLAN_180, END - 200 * DAY, END, outages=[(END - 50 * DAY, END - 47 * DAY)])
    assert len(history.snaps) > 300
    state = standin("nas", now=END)
    fill(state, {"tank/home": history})
    props = tmp_path / "props"
    props.write_text("tank/home\torg.znapzend:src_plan\t7days=>1hours,30days=>4hours,90days=>1days\n"
                     "tank/home\torg.znapzend:tsformat\t%Y-%m-%d-%H%M%S\n")
    config = on_standin(emit(import_znapzend(str(props))).config, state)
    observed = gather_all(config)
    for later in (0, 3600, 2 * DAY, 40 * DAY):
        now = history.last_run + later
        gone = destroyed(config, observed, now).get("tank/home", set())
        would = znapzend_destroy(names(observed, "tank/home"), PLAN_90, now)
        assert gone <= would, (later, sorted(gone - would)[:5])
        if later == 0:
            assert len(gone) > 50  # the part of the 180-day history beyond 90 days goes


# ---------------------------------------------------------------------------------- zrepl

ZREPL = """\
    jobs:
    - name: snapjob
      type: snap
      filesystems: {"tank<": true}
      snapshotting: {type: periodic, prefix: zrepl_, interval: 1h}
      pruning:
        keep:
        - {type: grid, grid: "1x1h(keep=all) | 24x1h | 14x1d", regex: "^zrepl_"}
        - {type: last_n, count: 3}
    """


def test_zrepl_switch_over_destroys_nothing_zrepl_would_keep_and_not_its_issue_651_victims(
        standin: Callable[..., StandinState], tmp_path: Path) -> None:
    path = tmp_path / "zrepl.yml"
    path.write_text(textwrap.dedent(ZREPL))
    imported = emit(import_zrepl([str(path)])).config
    policy = imported.policies["snapjob"]
    snaps: list[Snapshot] = []
    for txg, now in enumerate(range(END - 30 * DAY, END, 3600), start=1):
        name = "zrepl_" + datetime.fromtimestamp(now, UTC).strftime("%Y%m%d_%H%M%S") + "_000"
        snaps.append(Snapshot(name, txg, txg, now))
        verdicts = evaluate_keep_rules(policy.keep_source, snaps, lambda s: True)
        keep = {v.snapshot.name for v in verdicts if v.keep}
        snaps = [s for s in snaps if s.name in keep]  # zrepl prunes with the same rules
    history = History([(s.name, s.creation) for s in snaps], END - 3600)
    history.snaps += [("manual_before_upgrade", END - 60), ("pyznap_2026-11-24_11:00:00_hourly", END - 30)]
    state = standin("nas", now=END)
    fill(state, {"tank/data": history})
    config = on_standin(imported, state)
    observed = gather_all(config)
    dataset = observed.dataset("local", "tank/data")
    assert dataset is not None
    for later in (0, 7200, 3 * DAY):
        now = END + later
        plan = make_plan(config, observed, datetime.fromtimestamp(now, UTC))
        gone = {n for a in plan.actions if isinstance(a, DestroyAction) for n in a.snapshots}
        # zrepl would have taken the same snapshot before pruning
        taken = [Snapshot(a.snapshot, 10**9, 10**9, now)
                 for a in plan.actions if isinstance(a, SnapshotAction)]
        verdicts = evaluate_keep_rules(policy.keep_source, [*dataset.snapshots, *taken], lambda s: True)
        zrepl = {v.snapshot.name for v in verdicts if not v.keep}
        assert gone <= zrepl
        # zrepl would destroy the manual and pyznap snapshots (last_n 3 has no regex): ours never
        assert "manual_before_upgrade" in zrepl and "manual_before_upgrade" not in gone
        assert not any(n.startswith("pyznap") for n in gone)


def test_the_model_of_sanoid_takes_and_prunes_like_sanoid() -> None:
    """Sanity of the model itself: hourlies at minute 0; the 23:59 daily is taken by the next
    run (00:00, runs every 15 minutes); a snapshot exactly count x period old is still kept."""
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    history = run_sanoid(SanoidConfig({"hourly": 5, "daily": 2}), start, start + 3 * DAY)
    kept = {n for n, _ in history.snaps}
    dailies = {f"autosnap_2026-01-0{d}_00:00:00_daily" for d in (2, 3, 4)}
    hourlies = {f"autosnap_2026-01-03_{h}:00:00_hourly" for h in range(19, 24)}
    assert {n for n in kept if n.endswith("daily")} == dailies
    assert {n for n in kept if n.endswith("hourly")} == hourlies | {"autosnap_2026-01-04_00:00:00_hourly"}
    assert timedelta(seconds=history.last_run - start) == timedelta(days=3)
