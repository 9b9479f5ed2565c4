"""A forecast drawn as snapshot counts over time per side (matplotlib, the optional ``plot``
extra): one line per host and role (source, target), outages shaded."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from reconciler.errors import UsageError
from reconciler.planning.forecast import DAY, Forecast, Side


def side_series(forecast: Forecast) -> dict[str, list[tuple[float, int]]]:
    """Per "host (source|target)": (day since the start, snapshots there) at every run."""
    roles: dict[Side, str] = {}
    for group in forecast.groups:
        roles[group.side] = f"{group.host} (source)"
        for target in group.targets:
            roles.setdefault(target, f"{target[0]} (target)")
    series: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for when, counts in forecast.samples:
        day = (when - forecast.start) / DAY
        totals: dict[str, int] = defaultdict(int)
        for side, count in counts.items():
            totals[roles[side]] += count
        for label in sorted(set(roles.values())):
            series[label].append((day, totals[label]))
    return dict(series)


def write_plot(forecast: Forecast, path: str, title: str = "") -> None:
    """Write a PNG; UsageError when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib, an optional extra: pip install 'zrepl-reconcile[plot]'"
                         " (or: apt install python3-matplotlib)") from None
    figure: Any
    figure, axes = plt.subplots(figsize=(10, 5), dpi=100)
    for label, points in side_series(forecast).items():
        style = "-" if label.endswith("(source)") else "--"
        axes.plot([d for d, _ in points], [c for _, c in points], style, label=label, linewidth=1.5)
    for outage in forecast.outages:
        axes.axvspan((outage.start - forecast.start) / DAY, (outage.end - forecast.start) / DAY,
                     color="tab:red", alpha=0.12, label=f"{outage.host} down")
    axes.set_xlabel(f"days from {forecast.start:%Y-%m-%d %H:%M} UTC")
    axes.set_ylabel("snapshots")
    axes.set_title(title or f"Snapshot counts over {forecast.days} days (simulated)")
    axes.set_xlim(0, forecast.days)
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    try:
        figure.savefig(path, format="png")
    except OSError as exc:
        raise UsageError(f"--plot {path}: cannot write: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)
