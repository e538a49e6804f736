"""LogStore.keep_recent: the newest committed records kept in memory for the backup
uploader's bulk read (values_from). Whatever is kept, values_from answers exactly what
LMDB holds (parity with the plain path), and only records whose commit returned are
ever kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import layout
from engine.errors import CorruptLogError
from engine.log import _RECENT_ENTRY_OVERHEAD, LogStore


def record(tx: int, size: int = 40) -> bytes:
    return tx.to_bytes(8, "big") * (size // 8)


@pytest.fixture
def store(tmp_path: Path):
    s = LogStore(str(tmp_path / "log"), sync="none")
    yield s
    s.close()


def lmdb_values(s: LogStore, from_tx: int, limit: int) -> list[bytes]:
    """values_from through LMDB alone (the plain path)."""
    kept = s._recent
    s._recent = None
    try:
        return s.values_from(from_tx, limit)
    finally:
        s._recent = kept


def count_read_txns(s: LogStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = s._reading

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(s, "_reading", counting)
    return calls


def test_kept_records_are_served_without_a_read_transaction(store, monkeypatch):
    store.keep_recent(1 << 20)
    store.append([(1, record(1)), (2, record(2))])
    store.append([(3, record(3))])
    reads = count_read_txns(store, monkeypatch)
    assert store.values_from(1, 10) == [record(1), record(2), record(3)]
    assert store.values_from(2, 1) == [record(2)]
    assert reads == []  # all from memory
    assert store.values_from(4, 10) == []  # past the kept run: LMDB says nothing more
    assert reads == [1]


def test_records_before_the_asked_tx_are_dropped(store):
    store.keep_recent(1 << 20)
    store.append([(t, record(t)) for t in range(1, 6)])
    assert store.values_from(3, 10) == [record(t) for t in range(3, 6)]
    assert [t for t, _ in store._recent] == [3, 4, 5]
    assert store._recent_bytes == 3 * (len(record(3)) + _RECENT_ENTRY_OVERHEAD)
    assert store.values_from(1, 10) == [record(t) for t in range(1, 6)]  # LMDB still has them


def test_the_byte_bound_drops_the_oldest_and_lmdb_serves_them(store, monkeypatch):
    size = len(record(1)) + _RECENT_ENTRY_OVERHEAD
    store.keep_recent(3 * size)
    store.append([(t, record(t)) for t in range(1, 6)])
    assert [t for t, _ in store._recent] == [3, 4, 5]
    reads = count_read_txns(store, monkeypatch)
    assert store.values_from(1, 10) == [record(t) for t in range(1, 6)]
    assert reads == [1]


def test_a_run_that_does_not_continue_the_kept_one_starts_it_again(store):
    store.keep_recent(1 << 20)
    store.append([(1, record(1))])
    store._recent.clear()  # as if remembering tx 2 had been cut short by an interrupt
    store._recent_bytes = 0
    store.append([(2, record(2))])
    store.append([(4, record(4))])  # a gap in what is kept (not in the log's keys)
    assert [t for t, _ in store._recent] == [4]
    assert store.values_from(1, 10) == [record(1), record(2), record(4)]  # from LMDB


def test_a_refused_append_keeps_nothing(store):
    store.keep_recent(1 << 20)
    store.append([(1, record(1))])
    with pytest.raises(CorruptLogError):
        store.append([(1, b"other")])  # tx 1 exists: the commit fails
    assert [t for t, _ in store._recent] == [1]
    assert store.values_from(1, 10) == [record(1)]


def test_close_stops_keeping(tmp_path):
    s = LogStore(str(tmp_path / "log"), sync="none")
    s.keep_recent(1 << 20)
    s.append([(1, record(1))])
    s.close()
    assert s._recent is None and s._recent_bytes == 0


def test_keep_recent_zero_stops_and_drops(store):
    store.keep_recent(1 << 20)
    store.append([(1, record(1))])
    store.keep_recent(0)
    assert store._recent is None
    store.append([(2, record(2))])
    assert store.values_from(1, 10) == [record(1), record(2)]


def test_bytearray_records_are_handed_out_as_bytes(store):
    store.keep_recent(1 << 20)
    store.append([(1, bytearray(record(1)))])
    out = store.values_from(1, 1)
    assert out == [record(1)] and type(out[0]) is bytes


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=12),
       st.integers(1, 8), st.lists(st.tuples(st.integers(1, 40), st.integers(1, 6)),
                                   max_size=8))
def test_parity_with_the_plain_path(tmp_path_factory, batches, bound, asks):
    """Any commits, any bound, any sequence of reads: the same answers as LMDB's."""
    s = LogStore(str(tmp_path_factory.mktemp("log")), sync="none")
    try:
        each = 40 + _RECENT_ENTRY_OVERHEAD
        s.keep_recent(bound * each)
        tx = 0
        for n in batches:
            s.append([(t, record(t)) for t in range(tx + 1, tx + n + 1)])
            tx += n
            for from_tx, limit in asks:
                assert s.values_from(from_tx, limit) == lmdb_values(s, from_tx, limit)
            kept = [t for t, _ in s._recent]
            assert kept == list(range(kept[0], kept[0] + len(kept))) if kept else True
            assert s._recent_bytes == each * len(kept) <= bound * each
    finally:
        s.close()


def test_a_backup_keeps_recent_records_only_while_it_runs(tmp_path):
    url = (tmp_path / "target").as_uri()
    db = engine.open(str(tmp_path / "db"), backup=url, sync="none")
    try:
        log = db._log
        assert log._recent is not None
        for i in range(50):
            db.append(f"s{i % 3}", "e", os.urandom(20))
        db.backup.flush(timeout=30)
        db.append("s0", "e", b"after")  # tx 51: the next round asks from 51 ...
        db.backup.flush(timeout=30)
        # ... and the bulk read dropped what it had shipped (only its fast path drops)
        assert all(t >= 51 for t, _ in log._recent)
    finally:
        db.close()
    assert log._recent is None  # the uploader's close stopped it
    with engine.open(str(tmp_path / "db")) as db2:
        assert db2._log._recent is None  # no backup: nothing kept
    restored = tmp_path / "restored"
    from engine.backup.restore import restore

    restore(url, str(restored))
    with engine.open(str(restored)) as r:
        assert [t.tx_id for t in r.read_log()] == list(range(1, 52))
    assert layout.holds_database(str(restored))
