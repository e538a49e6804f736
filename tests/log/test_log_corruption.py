"""A damaged log record is refused with CorruptLogError naming the tx, on open and on read."""

from __future__ import annotations

import os
import re
import warnings

import lmdb
import pytest

import engine
from engine import layout
from engine.log import tx_key
from engine.native import decode_tx, encode_tx

N = 10


def _build(db_path, snapshot_at=None):
    with engine.open(db_path) as db:
        for i in range(1, N + 1):
            if i % 3 == 0:
                with db.transaction() as tx:
                    tx.append(f"s{i % 2}", "e", b"payload-%d" % i)
                    tx.append("multi", "e", b"multi-%d" % i)
            else:
                db.append(f"s{i % 2}", "e", b"payload-%d" % i)
            if i == snapshot_at:
                db.snapshot()


class RawLog:
    """The log's LMDB opened directly (the database must be closed)."""

    def __init__(self, db_path):
        self.env = lmdb.open(os.path.join(db_path, layout.LOG_SUBDIR), max_dbs=4, subdir=True)
        self.tx = self.env.open_db()

    def get(self, tx_id):
        with self.env.begin() as txn:
            return bytes(txn.get(tx_key(tx_id), db=self.tx))

    def put(self, tx_id, value):
        with self.env.begin(write=True) as txn:
            txn.put(tx_key(tx_id), value, db=self.tx)

    def delete(self, tx_id):
        with self.env.begin(write=True) as txn:
            assert txn.delete(tx_key(tx_id), db=self.tx)

    def close(self):
        self.env.close()


def _tamper(db_path, tx_id, fn):
    raw = RawLog(db_path)
    try:
        raw.put(tx_id, fn(raw.get(tx_id)))
    finally:
        raw.close()


def _flip_at(off):
    def fn(v):
        b = bytearray(v)
        b[off % len(b)] ^= 0x20
        return bytes(b)
    fn.__name__ = f"flip@{off}"
    return fn


def _truncate_to(n):
    def fn(v):
        return v[: n % len(v)] if n < 0 else v[:n]
    fn.__name__ = f"truncate@{n}"
    return fn


TAMPERS = [
    _flip_at(0), _flip_at(4), _flip_at(9), _flip_at(40), _flip_at(60), _flip_at(-12),
    _flip_at(-1), _truncate_to(-1), _truncate_to(-8), _truncate_to(30), _truncate_to(0),
    lambda v: v + b"\0",
]


def _names_tx(msg, tx_id):
    return re.search(rf"\btx {tx_id}\b", msg) is not None


@pytest.mark.parametrize("tx_id", [1, 5, N])
@pytest.mark.parametrize("tamper", TAMPERS, ids=lambda f: f.__name__)
def test_corrupt_record_refused_on_open(db_path, tx_id, tamper):
    _build(db_path)
    _tamper(db_path, tx_id, tamper)
    with pytest.raises(engine.CorruptLogError) as ei:
        engine.open(db_path)
    assert _names_tx(str(ei.value), tx_id), str(ei.value)
    # the refused open released the directory: a fixed log opens again
    with pytest.raises(engine.CorruptLogError):
        engine.open(db_path)


def _reencode(value, **changes):
    c = decode_tx(value)._asdict()
    c.update(changes)
    return encode_tx(c["tx_id"], c["epoch"], c["ts_ns"], c["first_position"], c["versions"],
                     c["prev_tx"], ("\0".join(c["streams"]) + "\0").encode(),
                     ("\0".join(c["types"]) + "\0").encode(), c["datas"])


def test_reencode_helper_is_identity(db_path):
    _build(db_path)
    raw = RawLog(db_path)
    try:
        for t in range(1, N + 1):
            assert _reencode(raw.get(t)) == raw.get(t)
    finally:
        raw.close()


def test_record_under_the_wrong_key_refused(db_path):
    _build(db_path)
    raw = RawLog(db_path)
    try:
        raw.put(5, raw.get(6))
    finally:
        raw.close()
    with pytest.raises(engine.CorruptLogError) as ei:
        engine.open(db_path)
    assert "5" in str(ei.value) and "6" in str(ei.value)


@pytest.mark.parametrize("change", [{"tx_id": 7}, {"tx_id": 4}, {"epoch": 2}, {"epoch": 0},
                                    {"first_position": 1}, {"first_position": 100}],
                         ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_checksummed_record_that_does_not_fit_refused(db_path, change):
    _build(db_path)
    _tamper(db_path, 5, lambda v: _reencode(v, **change))
    with pytest.raises(engine.CorruptLogError) as ei:
        engine.open(db_path)
    assert re.search(r"\b5\b", str(ei.value)), str(ei.value)


def test_missing_record_in_the_middle_refused(db_path):
    _build(db_path)
    raw = RawLog(db_path)
    try:
        raw.delete(5)
    finally:
        raw.close()
    with pytest.raises(engine.CorruptLogError) as ei:
        engine.open(db_path)
    assert re.search(r"\b[56]\b", str(ei.value)), str(ei.value)


# ------------------------------------------------------------ read paths


@pytest.mark.parametrize("tamper", [_flip_at(50), _flip_at(-3), _truncate_to(-8)],
                         ids=lambda f: f.__name__)
def test_corrupt_record_refused_by_read_paths(db_path, tamper):
    _build(db_path, snapshot_at=N)  # open loads the snapshot: tx 6 is not replayed
    _tamper(db_path, 6, tamper)
    with warnings.catch_warnings():
        warnings.simplefilter("error", engine.EngineWarning)
        db = engine.open(db_path)
    try:
        assert db.position.tx_id == N
        it = db.read_log()
        assert [next(it).tx_id for _ in range(5)] == [1, 2, 3, 4, 5]
        with pytest.raises(engine.CorruptLogError) as ei:
            next(it)
        assert _names_tx(str(ei.value), 6), str(ei.value)
        with pytest.raises(engine.CorruptLogError) as ei:
            list(db.read_log(6, 6))
        assert _names_tx(str(ei.value), 6)
        assert [t.tx_id for t in db.read_log(7)] == list(range(7, N + 1))
        # "multi" and "s0" have events in tx 6; "s1" does not
        for s in ["multi", "s0"]:
            with pytest.raises(engine.CorruptLogError) as ei:
                list(db.read_stream(s))
            assert _names_tx(str(ei.value), 6), str(ei.value)
        assert [e.data for e in db.read_stream("s1")] == [
            b"payload-%d" % i for i in range(1, N + 1) if i % 2 == 1]
        assert [e.data for e in db.read_stream("multi", from_version=3)] == [b"multi-9"]
        # the state (from the snapshot) is intact and writes continue
        assert db.get("multi") == b"multi-9"
        assert db.append("s1", "e", b"more") == N + 1
    finally:
        db.close()


def test_record_under_wrong_key_refused_by_read_paths(db_path):
    _build(db_path, snapshot_at=N)
    raw = RawLog(db_path)
    try:
        raw.put(4, raw.get(5))
    finally:
        raw.close()
    with engine.open(db_path) as db:
        with pytest.raises(engine.CorruptLogError) as ei:
            list(db.read_log(4, 4))
        assert "4" in str(ei.value) and "5" in str(ei.value)
        with pytest.raises(engine.CorruptLogError):
            list(db.read_stream("s0"))  # s0's chain passes tx 4
