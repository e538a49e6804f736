"""engine.log.LogStore: probing, keys, ranged reads in short read transactions."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

import engine
from engine import layout
from engine import log as logmod
from engine.log import LogStore, tx_key
from engine.native import decode_tx


def _log_dir(db_path):
    return os.path.join(db_path, layout.LOG_SUBDIR)


def test_probe_of_a_missing_directory_creates_nothing(tmp_path):
    missing = tmp_path / "nope" / "log"
    info = LogStore.probe(str(missing))
    assert info.exists is False
    assert info.db_id is None and info.first_tx is None and info.last_tx == 0
    assert not (tmp_path / "nope").exists()


def test_probe_of_an_empty_directory_creates_nothing(tmp_path):
    d = tmp_path / "log"
    d.mkdir()
    info = LogStore.probe(str(d))
    assert info.exists is False
    assert list(d.iterdir()) == []


def test_probe_of_a_database_log(open_db, db_path):
    db = open_db()
    db.append("a", "e", b"1")
    with db.transaction() as tx:
        tx.extend([("a", "e", b"2"), ("b", "e", b"3"), ("c", "e", b"4")])
    db_id = db.db_id
    db.close()
    before = sorted(os.listdir(_log_dir(db_path)))
    sizes = {n: os.path.getsize(os.path.join(_log_dir(db_path), n)) for n in before}
    info = LogStore.probe(_log_dir(db_path))
    assert info.exists and not info.empty
    assert (info.db_id, info.epoch, info.base_tx, info.base_position) == (db_id, 1, 0, 0)
    assert (info.first_tx, info.last_tx, info.last_position) == (1, 2, 4)
    assert [h.epoch for h in info.history] == [1]
    assert "1..2" in info.describe()
    assert sorted(os.listdir(_log_dir(db_path))) == before
    assert {n: os.path.getsize(os.path.join(_log_dir(db_path), n)) for n in before} == sizes


def test_probe_of_a_fresh_database_is_empty(open_db, db_path):
    open_db().close()
    info = LogStore.probe(_log_dir(db_path))
    assert info.exists and info.empty
    assert (info.first_tx, info.last_tx, info.last_position) == (None, 0, 0)


def test_tx_key_is_eight_big_endian_bytes():
    for n in [0, 1, 255, 256, 2**32, 2**64 - 1]:
        assert tx_key(n) == n.to_bytes(8, "big")
        assert len(tx_key(n)) == 8


@given(st.lists(st.integers(0, 2**64 - 1), min_size=2, max_size=50, unique=True))
def test_tx_key_sorts_like_tx_ids(ids):
    assert sorted(ids, key=tx_key) == sorted(ids)


N_TXS = 2 * logmod.READ_CHUNK + 37


@pytest.fixture(scope="module")
def log_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("iter") / "db")
    with engine.open(path, sync="none") as db:
        for i in range(1, N_TXS + 1):
            if i % 5 == 0:
                with db.transaction() as tx:
                    tx.append("s", "e", b"%d" % i)
                    tx.append("t", "e", b"%d" % i)
            else:
                db.append("s", "e", b"%d" % i)
    return _log_dir(path)


@pytest.fixture
def store(log_path):
    s = LogStore(log_path, readonly=True)
    yield s
    s.close()


def _bounds(chunk):
    n = N_TXS
    return sorted({(1, None), (1, n), (2, None), (1, chunk), (1, chunk - 1), (1, chunk + 1),
                   (chunk, chunk), (chunk, chunk + 1), (chunk + 1, 2 * chunk),
                   (chunk - 1, 2 * chunk + 1), (2 * chunk, None), (2 * chunk + 1, None),
                   (n, None), (n, n), (n - 1, n + 50), (n + 1, None), (10, 9), (5, 5),
                   (3, 3 * chunk), (1, 0)}, key=lambda b: (b[0], b[1] or 0))


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, logmod.READ_CHUNK])
def test_iter_range_across_chunk_boundaries(store, monkeypatch, chunk):
    monkeypatch.setattr(logmod, "READ_CHUNK", chunk)
    for lo, hi in _bounds(chunk):
        got = list(store.iter_range(lo, hi))
        top = N_TXS if hi is None else min(hi, N_TXS)
        assert [t for t, _ in got] == list(range(max(lo, 1), top + 1)), (chunk, lo, hi)
        for t, rec in got:
            assert type(rec) is bytes
            cols = decode_tx(rec)
            assert cols.tx_id == t
            assert cols.datas[0] == b"%d" % t


def test_iter_range_holds_no_read_transaction_between_chunks(store, monkeypatch):
    monkeypatch.setattr(logmod, "READ_CHUNK", 4)
    it = store.iter_range(1)
    seen = []
    for t, _ in it:
        seen.append(t)
        assert store._readers == 0  # the chunk was read in a finished read transaction
        if t == 10:
            break
    assert seen == list(range(1, 11))


def test_get_and_bounds(store):
    assert store.bounds() == (1, N_TXS)
    assert store.count() == N_TXS
    assert store.get(0) is None
    assert store.get(N_TXS + 1) is None
    assert decode_tx(store.get(7)).tx_id == 7


def test_readonly_store_on_a_closed_database_sees_its_meta(log_path):
    s = LogStore(log_path, readonly=True)
    try:
        info = s.info()
        assert info.exists and info.last_tx == N_TXS
        assert info.last_position == N_TXS + N_TXS // 5
    finally:
        s.close()


def test_an_interrupt_while_a_read_waits_to_release_its_count_leaks_nothing(tmp_path):
    """The release of a read transaction waits for the gate lock; an interrupt landing
    in that wait (a contended lock, a signal) must neither leave the read counted (close
    and map growth would wait for it forever) nor be swallowed (review finding)."""
    import signal
    import threading
    import time

    store = LogStore(str(tmp_path / "log"))
    store.initialise("00000000-0000-0000-0000-000000000001", 1, 0, 0,
                     [engine.EpochRecord(1, 1, 1, 0.0, "created")])
    held = threading.Event()
    go = threading.Event()

    def hold_the_gate() -> None:
        with store._gate_lock:
            held.set()
            go.wait(10)
            time.sleep(0.3)  # the interrupt lands while the main thread waits for it

    class Interrupt(BaseException):
        pass

    def raise_it(signum: int, frame: object) -> None:
        raise Interrupt

    old = signal.signal(signal.SIGALRM, raise_it)
    t = threading.Thread(target=hold_the_gate)
    try:
        with pytest.raises(Interrupt), store.getter() as get:
            get(1)
            t.start()
            assert held.wait(10)
            go.set()
            signal.setitimer(signal.ITIMER_REAL, 0.1)
        assert store._readers == 0 and not store._reader_threads
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        t.join(10)
    store.close()  # would wait forever for a leaked count
