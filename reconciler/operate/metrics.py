"""Prometheus metrics for node_exporter's textfile collector (docs/operate.md lists each one).

Built with prometheus-client: a collector yields the metric families of one status and
record into a registry of its own, and ``write_to_textfile`` writes them atomically (a
temporary file, then a rename), so node_exporter never reads half a file. Every value is
a snapshot of the facts and the record at the time of writing (gauges), except the
totals the record keeps since it was started (counters).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reconciler.codes import CycleResult, PairResult
from reconciler.domain.record import PairRecord, StateRecord
from reconciler.planning.health import Space, Status

PREFIX = "zrepl_reconcile_"
PAIR_LABELS = ("host", "filesystem", "target_host", "target_filesystem")
DATASET_LABELS = ("host", "filesystem", "role")
FAILED_RESULTS = (PairResult.FAILED, PairResult.CONFLICT)


def _gauge(name: str, documentation: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, labels=list(labels))


class StatusCollector(Collector):
    """The metric families of one ``Status`` and the record it was computed with."""

    def __init__(self, status: Status, record: StateRecord) -> None:
        self.status = status
        self.record = record

    def collect(self) -> Iterator[Metric]:
        yield from self.replication()
        yield from self.datasets()
        yield from self.last_applies()
        yield from self.cycles()
        yield from self.hosts()

    def replication(self) -> Iterator[Metric]:
        lag = _gauge("replication_lag_seconds", "Age of the newest snapshot on the target (before the first,"
                     " of the oldest snapshot waiting for it)", PAIR_LABELS)
        pending = _gauge("snapshots_pending", "Source snapshots not yet on the target", PAIR_LABELS)
        for fs in self.status.filesystems:
            for target in fs.targets:
                labels = [fs.host, fs.dataset, target.host, target.dataset]
                if target.lag_seconds is not None:
                    lag.add_metric(labels, target.lag_seconds)
                if fs.reachable:
                    pending.add_metric(labels, target.waiting)
        yield lag
        yield pending

    def datasets(self) -> Iterator[Metric]:
        count = _gauge("snapshots", "Snapshots of a managed filesystem", DATASET_LABELS)
        written = _gauge("snapshots_written_bytes", "Sum of the snapshots' written bytes", DATASET_LABELS)
        referenced = _gauge("newest_snapshot_referenced_bytes", "Bytes the newest snapshot references",
                            DATASET_LABELS)
        interval = _gauge("snapshot_interval_seconds", "The policy's snapshot interval",
                          ("host", "filesystem"))

        def add(labels: list[str], space: Space | None) -> None:
            if space is None:
                return
            count.add_metric(labels, space.snapshots)
            written.add_metric(labels, space.written_bytes)
            if space.referenced_bytes is not None:
                referenced.add_metric(labels, space.referenced_bytes)

        for fs in self.status.filesystems:
            add([fs.host, fs.dataset, "source"], fs.space)
            if fs.interval_seconds is not None:
                interval.add_metric([fs.host, fs.dataset], fs.interval_seconds)
            for target in fs.targets:
                add([target.host, target.dataset, "target"], target.space)
        yield from (count, written, referenced, interval)

    def last_applies(self) -> Iterator[Metric]:
        attempt = _gauge("last_attempt_timestamp_seconds", "When an apply last worked on it", PAIR_LABELS)
        success = _gauge("last_success_timestamp_seconds", "When an apply last completed it without a"
                         " failure, conflict or unreachable host", PAIR_LABELS)
        failed = _gauge("last_apply_failed", "1 when its last apply failed or met a conflict", PAIR_LABELS)
        sent = _gauge("last_apply_sent_bytes", "Bytes sent to the target by its last apply", PAIR_LABELS)
        for record in self.records():
            labels = [record.key.host, record.key.dataset, record.key.target_host, record.key.target_dataset]
            attempt.add_metric(labels, record.last_attempt.timestamp())
            if record.last_success is not None:
                success.add_metric(labels, record.last_success.timestamp())
            failed.add_metric(labels, 1 if record.result in FAILED_RESULTS else 0)
            sent.add_metric(labels, record.bytes)
        yield from (attempt, success, failed, sent)

    def records(self) -> Iterator[PairRecord]:
        """The record's entries of the filesystems this status shows (the same selection)."""
        shown = {(f.host, f.dataset) for f in self.status.filesystems}
        return (r for r in self.record.pairs if (r.key.host, r.key.dataset) in shown)

    def cycles(self) -> Iterator[Metric]:
        last = self.record.last_cycle
        if last is not None:
            at = _gauge("last_cycle_timestamp_seconds", "When the last apply/run cycle ran (its clock)")
            at.add_metric([], last.at.timestamp())
            took = _gauge("last_cycle_duration_seconds", "How long the last cycle took")
            took.add_metric([], last.seconds)
            failed = _gauge("last_cycle_failed", "1 when the last cycle had failed actions or could not run")
            failed.add_metric([], 1 if last.result in (CycleResult.FAILED, CycleResult.ERROR) else 0)
            yield from (at, took, failed)
        totals = self.record.totals
        cycles = CounterMetricFamily(PREFIX + "cycles", "Apply/run cycles by result", labels=["result"])
        for result in CycleResult:
            cycles.add_metric([result.value], totals.cycles.get(result.value, 0))
        actions = CounterMetricFamily(PREFIX + "actions", "Actions by kind and result (done, failed,"
                                      " skipped)", labels=["kind", "result"])
        for (kind, status), n in sorted(totals.actions.items()):
            actions.add_metric([kind, status], n)
        sent = CounterMetricFamily(PREFIX + "sent_bytes", "Bytes sent by zfs send over all cycles")
        sent.add_metric([], totals.bytes_sent)
        yield from (cycles, actions, sent)

    def hosts(self) -> Iterator[Metric]:
        up = _gauge("host_up", "1 when the host's zfs list succeeded", ("host",))
        for host in self.status.hosts:
            up.add_metric([host.host], 1 if host.reachable else 0)
        when = _gauge("status_timestamp_seconds", "The time these metrics describe")
        when.add_metric([], self.status.now.timestamp())
        yield from (up, when)


def write_metrics(path: str | Path, status: Status, record: StateRecord) -> None:
    """Write the metrics atomically to ``path`` (OSError when its directory is missing or not writable)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status, record))
    write_to_textfile(str(path), registry)
