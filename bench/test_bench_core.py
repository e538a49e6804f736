"""Write-path benchmarks: the engine against raw py-lmdb, in one process.

Run with ``python -m pytest --benchmark-only`` (plain ``pytest`` skips them).

* ``append_batch``: one transaction of 1000 events of 100 B, ``sync="none"``; the
  engine through ``tx.append`` in a loop and through ``tx.extend``, against raw
  py-lmdb ``putmulti(append=True)`` of 1000 records built in the same Python loop
  (key: 8-byte big-endian counter; value: a small struct header, the stream name,
  the type and the payload), environment opened ``sync=False``. Both sides build
  their input inside the timed call; the engine additionally assigns versions,
  folds the state and checksums its record, which raw LMDB does not.
* ``append_durable``: one event per transaction, durable on return: engine
  ``sync="commit"`` ``db.append`` against one ``put`` per write transaction in an
  LMDB environment opened ``sync=True``.
"""

from __future__ import annotations

import itertools
from typing import Any

import lmdb
from benchlib import (
    APPEND_STREAMS,
    EVENTS_PER_TX,
    make_payloads,
    raw_record,
    record,
    stream_name,
)

import engine

BATCH_ROUNDS = 300
DURABLE_ROUNDS = 1000

STREAMS = [stream_name(i) for i in range(APPEND_STREAMS)]
STREAMS_B = [s.encode() for s in STREAMS]
PAYLOADS = make_payloads(EVENTS_PER_TX)


def _pedantic(benchmark: Any, fn: Any, rounds: int) -> None:
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=max(rounds // 10, 1))


# ------------------------------------------------------------ batched appends


def test_append_batch_engine_tx_append(benchmark: Any, tmp_path: Any) -> None:
    benchmark.group = "append_batch"
    db = engine.open(tmp_path / "db", sync="none")
    counter = itertools.count()
    streams, payloads, n_streams = STREAMS, PAYLOADS, APPEND_STREAMS

    def one_tx() -> None:
        base = next(counter) * EVENTS_PER_TX
        with db.transaction() as tx:
            append = tx.append
            for i in range(EVENTS_PER_TX):
                append(streams[(base + i) % n_streams], "deposited", payloads[i])

    try:
        _pedantic(benchmark, one_tx, BATCH_ROUNDS)
        assert db.version(streams[0]) >= 1
    finally:
        db.close()
    record("append_batch", "engine_tx_append", benchmark)


def test_append_batch_engine_tx_extend(benchmark: Any, tmp_path: Any) -> None:
    benchmark.group = "append_batch"
    db = engine.open(tmp_path / "db", sync="none")
    counter = itertools.count()
    streams, payloads, n_streams = STREAMS, PAYLOADS, APPEND_STREAMS

    def one_tx() -> None:
        base = next(counter) * EVENTS_PER_TX
        events = [
            (streams[(base + i) % n_streams], "deposited", payloads[i])
            for i in range(EVENTS_PER_TX)
        ]
        with db.transaction() as tx:
            tx.extend(events)

    try:
        _pedantic(benchmark, one_tx, BATCH_ROUNDS)
        assert db.version(streams[0]) >= 1
    finally:
        db.close()
    record("append_batch", "engine_tx_extend", benchmark)


def test_append_batch_raw_lmdb_putmulti(benchmark: Any, tmp_path: Any) -> None:
    benchmark.group = "append_batch"
    env = lmdb.open(str(tmp_path / "raw"), map_size=4 << 30, sync=False, metasync=False)
    counter = itertools.count(1)
    streams_b, payloads, n_streams = STREAMS_B, PAYLOADS, APPEND_STREAMS
    etype = b"deposited"

    def one_tx() -> None:
        items = []
        add = items.append
        for i in range(EVENTS_PER_TX):
            key = next(counter)
            add(
                (key.to_bytes(8, "big"), raw_record(streams_b[key % n_streams], etype, payloads[i]))
            )
        with env.begin(write=True) as txn:
            txn.cursor().putmulti(items, append=True)

    try:
        _pedantic(benchmark, one_tx, BATCH_ROUNDS)
        assert env.stat()["entries"] >= EVENTS_PER_TX
    finally:
        env.close()
    record("append_batch", "raw_lmdb_putmulti", benchmark)


# ------------------------------------------------------------ durable commits


def test_append_durable_engine_sync_commit(benchmark: Any, tmp_path: Any) -> None:
    benchmark.group = "append_durable"
    db = engine.open(tmp_path / "db", sync="commit")
    counter = itertools.count()
    streams, payloads = STREAMS, PAYLOADS

    def one_commit() -> None:
        i = next(counter)
        db.append(streams[i % APPEND_STREAMS], "deposited", payloads[i % EVENTS_PER_TX])

    try:
        _pedantic(benchmark, one_commit, DURABLE_ROUNDS)
    finally:
        db.close()
    record("append_durable", "engine_sync_commit", benchmark)


def test_append_durable_raw_lmdb_sync_put(benchmark: Any, tmp_path: Any) -> None:
    benchmark.group = "append_durable"
    env = lmdb.open(str(tmp_path / "raw"), map_size=1 << 30, sync=True, metasync=True)
    counter = itertools.count(1)
    streams_b, payloads = STREAMS_B, PAYLOADS
    etype = b"deposited"

    def one_commit() -> None:
        key = next(counter)
        value = raw_record(streams_b[key % APPEND_STREAMS], etype, payloads[key % EVENTS_PER_TX])
        with env.begin(write=True) as txn:
            txn.put(key.to_bytes(8, "big"), value, append=True)

    try:
        _pedantic(benchmark, one_commit, DURABLE_ROUNDS)
    finally:
        env.close()
    record("append_durable", "raw_lmdb_sync_put", benchmark)
