"""Prometheus metrics of one open database, in a registry of its own.

A custom collector reads the database's plain counters (``Database.stats()``) and
the log backup's status at scrape time, so the commit path pays nothing for
metrics beyond a few integer adds per batch (engine.commit.CommitStats).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..backup.retry import retry_attempts

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _histogram(name: str, doc: str, bounds: tuple[float, ...], counts: list[int],
               total: float) -> HistogramMetricFamily:
    buckets = []
    acc = 0
    for b, n in zip(bounds, counts, strict=False):
        acc += n
        buckets.append((repr(float(b)), acc))
    acc += counts[-1]
    buckets.append(("+Inf", acc))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


class DatabaseCollector(Collector):
    """Collects one database's metrics; holds it weakly (no reference cycle)."""

    def __init__(self, db: Any, extra: Any = None) -> None:
        self._db = weakref.ref(db)
        self._extra = extra  # callable returning more metric families (the server's own)

    def collect(self) -> Iterator[Metric]:
        db = self._db()
        if db is None or db.closed:
            return
        s = db.stats()
        yield CounterMetricFamily("engine_commits", "Committed transactions.",
                                  value=s["commits"])
        yield CounterMetricFamily("engine_events", "Committed events.", value=s["events"])
        yield CounterMetricFamily("engine_log_commits", "LMDB commits (a commit group is one).",
                                  value=s["batches"])
        yield CounterMetricFamily("engine_commit_failures",
                                  "Transactions refused or failed (nothing was written).",
                                  value=s["failed"])
        yield _histogram("engine_commit_latency_seconds",
                         "Time to write a commit group, from planning to durable.",
                         s["latency_buckets"], s["latency_counts"], s["latency_sum"])
        yield _histogram("engine_commit_group_size", "Transactions per LMDB commit.",
                         s["group_buckets"], s["group_counts"],
                         float(s["commits"]))
        yield CounterMetricFamily("engine_snapshots", "Snapshots written.", value=s["snapshots"])
        yield CounterMetricFamily("engine_snapshot_failures", "Snapshots that failed.",
                                  value=s["snapshot_failures"])
        yield CounterMetricFamily("engine_snapshot_seconds", "Time spent writing snapshots.",
                                  value=s["snapshot_seconds"])
        yield GaugeMetricFamily("engine_snapshot_last_bytes", "Size of the last snapshot.",
                                value=s["snapshot_last_bytes"])
        yield GaugeMetricFamily("engine_state_streams", "Streams in the state (after an "
                                "indexed open an upper bound: a stream written since "
                                "open counts twice).",
                                value=s["state_streams"])
        yield GaugeMetricFamily("engine_log_bytes", "Size of the log's data file.",
                                value=s["log_bytes"])
        yield GaugeMetricFamily("engine_last_tx", "Last committed tx id.", value=s["last_tx"])
        yield GaugeMetricFamily("engine_epoch", "The log's epoch.", value=s["epoch"])
        yield from self._backup(db)
        yield self._retries(db)
        if self._extra is not None:
            yield from self._extra()

    def _backup(self, db: Any) -> Iterator[Metric]:
        try:
            backup = db.backup
        except Exception:
            return
        st = backup.status()
        states = GaugeMetricFamily("engine_backup_state", "The log backup's state (1 = current).",
                                   labels=["state"])
        for name in ("starting", "running", "paused", "failing", "fenced", "stopped"):
            states.add_metric([name], 1.0 if st.state == name else 0.0)
        yield states
        yield GaugeMetricFamily("engine_backup_checkpoint_tx",
                                "Last tx durable and verified in the backup target.",
                                value=st.checkpoint_tx)
        yield GaugeMetricFamily("engine_backup_lag_txs", "Committed txs not yet shipped.",
                                value=st.lag_txs)
        yield GaugeMetricFamily("engine_backup_lag_seconds", "Age of the oldest unshipped tx.",
                                value=st.lag_seconds)
        yield CounterMetricFamily("engine_backup_segments_shipped", "Segments shipped.",
                                  value=st.segments_shipped)
        yield CounterMetricFamily("engine_backup_bytes_shipped", "Bytes of segments shipped.",
                                  value=st.bytes_shipped)
        yield CounterMetricFamily("engine_backup_flushes", "Completed flushes.",
                                  value=st.flushes)
        yield CounterMetricFamily("engine_backup_stale_requests_ignored",
                                  "Stale control requests ignored.",
                                  value=st.stale_requests_ignored)
        f = backup.flush_stats()
        yield _histogram("engine_backup_flush_seconds", "Duration of flush() calls.",
                         f["buckets"], f["counts"], f["sum"])
        yield CounterMetricFamily("engine_backup_errors", "Failed shipping rounds.",
                                  value=f["errors"])

    @staticmethod
    def _retries(db: Any) -> Metric:
        """``backup_retry_attempts``: phase ``log`` counts the log backup's failed shipping
        rounds (each is retried) of this database; ``backup`` and ``restore`` the retried
        calls of full backups and restores in this process (``engine.backup.retry``)."""
        retries = CounterMetricFamily("backup_retry_attempts",
                                      "Retried backup target calls.", labels=["phase"])
        try:
            retries.add_metric(["log"], db.backup.flush_stats()["errors"])
        except Exception:
            retries.add_metric(["log"], 0)
        for phase, n in retry_attempts().items():
            retries.add_metric([phase], n)
        return retries


def make_registry(db: Any, extra: Any = None) -> CollectorRegistry:
    """A registry holding only this database's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(db, extra))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``."""
    return generate_latest(registry)
