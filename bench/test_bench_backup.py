"""Commit overhead of the log backup: engine appends with the backup on against off.

Run with ``python -m pytest --benchmark-only`` (plain ``pytest`` skips them). The
"alternative" of each pair is the same engine without ``backup=``; the ratio report
(conftest.py) gives throughput with the backup / without, target >= 0.95 ("shipping
never slows committers beyond a few percent"). The backup ships to a ``file://``
directory under the test's tmp_path at its default ``BackupOptions`` (0.2 s interval).

One timed round is a *block* of commits lasting longer than one shipping interval, so
the median round includes the uploader's work (a round of one commit would let the
median skip the commits the uploader slows down):

* ``backup_overhead_none``: ``BLOCK_TXS`` txs of 1000 events of 100 B, ``sync="none"``,
  ``tx.extend``, payloads cycling through ``POOL`` distinct ones (so the segments
  compress like event data, not like one tx repeated).
* ``backup_overhead_commit``: ``BLOCK_COMMITS`` one-event commits, ``sync="commit"``.

pytest-benchmark runs the tests one after the other, not rotated: drift on a shared
machine lands on one side. ``python bench/compare.py --workloads backup_overhead``
measures the same in rotated rounds (and one-event ``sync="none"`` commits too).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from benchlib import APPEND_STREAMS, EVENTS_PER_TX, make_payloads, record, stream_name

import engine

BLOCK_TXS = 200  # ~0.25-0.3 s of tx.extend at sync="none"
BLOCK_COMMITS = 500  # ~0.25 s of sync="commit" appends
ROUNDS = 10
POOL = 100_000

STREAMS = [stream_name(i) for i in range(APPEND_STREAMS)]
PAYLOADS = make_payloads(POOL, seed=21)


def _open(path: Path, sync: str, backup: bool) -> engine.Database:
    url = (path / "replica").resolve().as_uri() if backup else None
    db = engine.open(path / "db", sync=sync, backup=url)
    db.append(STREAMS[0], "opened", PAYLOADS[0])
    if backup:
        db.backup.flush()
    return db


def _batch_blocks(benchmark: Any, tmp_path: Path, backup: bool) -> None:
    benchmark.group = "backup_overhead_none"
    db = _open(tmp_path, "none", backup)
    counter = itertools.count()
    streams, payloads, ns = STREAMS, PAYLOADS, APPEND_STREAMS

    def block() -> None:
        for _ in range(BLOCK_TXS):
            base = next(counter) * EVENTS_PER_TX
            with db.transaction() as tx:
                tx.extend([(streams[(base + i) % ns], "deposited", payloads[(base + i) % POOL])
                           for i in range(EVENTS_PER_TX)])  # fmt: skip

    try:
        benchmark.pedantic(block, rounds=ROUNDS, iterations=1, warmup_rounds=1)
        if backup:
            assert db.backup.flush().flushed_through_tx == db.commit_signal.current.tx_id
    finally:
        db.close()
    record("backup_overhead_none", f"engine_backup_{'on' if backup else 'off'}", benchmark)


def _commit_blocks(benchmark: Any, tmp_path: Path, backup: bool) -> None:
    benchmark.group = "backup_overhead_commit"
    db = _open(tmp_path, "commit", backup)
    counter = itertools.count()
    streams, payloads, ns = STREAMS, PAYLOADS, APPEND_STREAMS

    def block() -> None:
        for _ in range(BLOCK_COMMITS):
            i = next(counter)
            db.append(streams[i % ns], "deposited", payloads[i % POOL])

    try:
        benchmark.pedantic(block, rounds=ROUNDS, iterations=1, warmup_rounds=1)
        if backup:
            assert db.backup.flush().flushed_through_tx == db.commit_signal.current.tx_id
    finally:
        db.close()
    record("backup_overhead_commit", f"engine_backup_{'on' if backup else 'off'}", benchmark)


def test_backup_overhead_none_backup_off(benchmark: Any, tmp_path: Path) -> None:
    _batch_blocks(benchmark, tmp_path, backup=False)


def test_backup_overhead_none_backup_on(benchmark: Any, tmp_path: Path) -> None:
    _batch_blocks(benchmark, tmp_path, backup=True)


def test_backup_overhead_commit_backup_off(benchmark: Any, tmp_path: Path) -> None:
    _commit_blocks(benchmark, tmp_path, backup=False)


def test_backup_overhead_commit_backup_on(benchmark: Any, tmp_path: Path) -> None:
    _commit_blocks(benchmark, tmp_path, backup=True)
