"""Reopen and snapshot benchmarks on a 300k-stream state (fixtures in conftest.py).

* ``reopen``: ``engine.open`` + ``close`` of a database holding 300k streams in its
  newest snapshot plus a 300k-event log tail (300 txs of 1000 events), against the
  hand-rolled alternative: ``pickle.loads`` of the same state
  ``{stream: (version, value)}`` plus a raw LMDB cursor scan of 300 values, each the
  size of one tail transaction in raw form. The alternative only reads the tail's
  bytes; the engine also verifies checksums, decodes and folds every tail event.
* ``snapshot_write``: ``db.snapshot()`` of the 300k streams (C-encoded blocks, zstd,
  checksums, fsync of file and directory) against ``pickle.dumps`` of the same dict,
  ``write`` and ``fsync``.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import lmdb
from benchlib import ReopenFixture, SnapshotFixture, record

import engine

REOPEN_ROUNDS = 5
SNAPSHOT_ROUNDS = 5


def test_reopen_engine_open_close(benchmark: Any, reopen_fixture: ReopenFixture) -> None:
    benchmark.group = "reopen"
    fx = reopen_fixture
    probe = next(iter(fx.state))

    def reopen() -> None:
        db = engine.open(fx.db_path)
        try:
            assert db.version(probe) == fx.state[probe][0]
        finally:
            db.close()

    benchmark.pedantic(reopen, rounds=REOPEN_ROUNDS, iterations=1, warmup_rounds=1)
    record("reopen", "engine_open_close", benchmark)


def test_reopen_pickle_loads_lmdb_scan(benchmark: Any, reopen_fixture: ReopenFixture) -> None:
    benchmark.group = "reopen"
    fx = reopen_fixture
    probe = next(iter(fx.state))

    def reopen() -> None:
        state = pickle.loads(fx.pickled)
        env = lmdb.open(fx.raw_env_path, readonly=True, lock=False)
        try:
            n = size = 0
            with env.begin() as txn:
                for _k, v in txn.cursor():
                    n += 1
                    size += len(v)
        finally:
            env.close()
        assert n == fx.raw_values and size == n * fx.raw_value_bytes
        assert state[probe][0] == fx.state[probe][0]

    benchmark.pedantic(reopen, rounds=REOPEN_ROUNDS, iterations=1, warmup_rounds=1)
    record("reopen", "pickle_loads_lmdb_scan", benchmark)


def test_snapshot_write_engine(benchmark: Any, snapshot_fixture: SnapshotFixture) -> None:
    benchmark.group = "snapshot_write"
    db = snapshot_fixture.db

    def snap() -> None:
        info = db.snapshot()
        assert info.streams == len(snapshot_fixture.state)

    benchmark.pedantic(snap, rounds=SNAPSHOT_ROUNDS, iterations=1, warmup_rounds=1)
    record("snapshot_write", "engine_snapshot", benchmark)


def test_snapshot_write_pickle_dumps_write_fsync(
    benchmark: Any, snapshot_fixture: SnapshotFixture
) -> None:
    benchmark.group = "snapshot_write"
    # Distinct value objects (as in a real state): shared ones would let pickle write
    # memo references instead of the values.
    state = {s: (v, bytes(bytearray(d))) for s, (v, d) in snapshot_fixture.state.items()}
    path = snapshot_fixture.workdir / "state.pickle"

    def snap() -> None:
        data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    benchmark.pedantic(snap, rounds=SNAPSHOT_ROUNDS, iterations=1, warmup_rounds=1)
    record("snapshot_write", "pickle_dumps_write_fsync", benchmark)
