"""LogStore.keep_recent: the newest committed records kept in memory for the backup
uploader's bulk read (values_from). With every commit remembered, values_from answers
exactly what LMDB holds (parity with the plain path; a commit not yet remembered makes
the answer a prefix of LMDB's, never other records), and only records whose commit returned are
ever kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import formats, layout
from engine.errors import CorruptLogError
from engine.log import LogStore
from engine.native import peek_tx_header
from engine.recent import CHANGING, ENTRY_OVERHEAD, RecentRecords, within


def record(tx: int, size: int = 40) -> bytes:
    return tx.to_bytes(8, "big") * (size // 8)


def kept_ids(s: LogStore) -> list[int]:
    """The tx ids of the kept records, read from the records themselves, after
    checking that the ids the store maps them to (from _recent_end) are the same."""
    kept = s._recent
    assert kept is not None
    mapped = list(kept.ids())
    got = take(kept, mapped[0], len(mapped), 1 << 62) if mapped else None
    recs = [bytes(r) for r in got] if got is not None else []
    from_content = [peek_tx_header(r)[0] if r[:4] == formats.TX_MAGIC
                    else int.from_bytes(r[:8], "big") for r in recs]
    assert from_content == mapped
    return from_content


def take(kept: RecentRecords, from_tx: int, limit: int, max_bytes: int
         ) -> list[bytes | bytearray | memoryview] | None:
    got = kept.take(from_tx, limit)
    return None if got is None else within(got, max_bytes)


def values(s: LogStore, from_tx: int, limit: int, max_bytes: int = 1 << 62) -> list[bytes]:
    return [bytes(r) for r in s.values_from(from_tx, limit, max_bytes)]


@pytest.fixture
def store(tmp_path: Path):
    s = LogStore(str(tmp_path / "log"), sync="none")
    yield s
    s.close()


def lmdb_values(s: LogStore, from_tx: int, limit: int, max_bytes: int = 1 << 62
                ) -> list[bytes]:
    """values_from through LMDB alone (the plain path)."""
    kept = s._recent
    s._recent = None
    try:
        return values(s, from_tx, limit, max_bytes)
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
    assert values(store, 1, 10) == [record(1), record(2), record(3)]
    assert values(store, 2, 1) == [record(2)]
    assert reads == []  # all from memory
    assert values(store, 4, 10) == []  # past the kept run: LMDB says nothing more
    assert reads == [1]


def test_records_before_the_asked_tx_are_dropped(store):
    store.keep_recent(1 << 20)
    store.append([(t, record(t)) for t in range(1, 6)])
    assert values(store, 3, 10) == [record(t) for t in range(3, 6)]
    assert kept_ids(store) == [3, 4, 5]
    assert store._recent.held == 3 * (len(record(3)) + ENTRY_OVERHEAD)
    assert values(store, 1, 10) == [record(t) for t in range(1, 6)]  # LMDB still has them


def test_the_byte_bound_drops_the_oldest_and_lmdb_serves_them(store, monkeypatch):
    size = len(record(1)) + ENTRY_OVERHEAD
    store.keep_recent(3 * size)
    store.append([(t, record(t)) for t in range(1, 6)])
    assert kept_ids(store) == [3, 4, 5]
    reads = count_read_txns(store, monkeypatch)
    assert values(store, 1, 10) == [record(t) for t in range(1, 6)]
    assert reads == [1]


def test_a_run_that_does_not_continue_the_kept_one_starts_it_again(store):
    store.keep_recent(1 << 20)
    store.append([(1, record(1))])
    store._recent.clear()  # as if remembering tx 2 had been cut short by an interrupt
    store.append([(2, record(2))])
    store.append([(4, record(4))])  # a gap in what is kept (not in the log's keys)
    assert kept_ids(store) == [4]
    assert values(store, 1, 10) == [record(1), record(2), record(4)]  # from LMDB


def test_an_interrupted_add_is_dropped_not_misread(store, monkeypatch):
    # An interrupt between a commit's records going in and the end id being set
    # leaves the marker: no id is mapped onto those records, LMDB answers instead.
    store.keep_recent(1 << 20)
    store.append([(1, record(1)), (2, record(2))])
    store._recent._recs.append(record(3))  # as if cut short: the record is in, the id not
    store._recent.end = CHANGING
    assert list(store._recent.ids()) == []
    reads = count_read_txns(store, monkeypatch)
    assert values(store, 2, 10) == [record(2)]  # LMDB holds 1 and 2 only
    assert reads == [1] and len(store._recent) == 0
    store.append([(3, record(3))])  # and keeping starts again from the next commit
    assert kept_ids(store) == [3]
    assert values(store, 3, 10) == [record(3)] and reads == [1]


def test_the_bound_counts_bytes_and_overhead_and_keeps_the_newest():
    size = 1000
    kept = RecentRecords(5 * (size + ENTRY_OVERHEAD))
    for t in range(1, 9):
        kept.add([(t, record(t, size))])
    assert list(kept.ids()) == [4, 5, 6, 7, 8]
    assert kept.held == 5 * (size + ENTRY_OVERHEAD)
    kept.add([(t, record(t, size)) for t in range(9, 12)])  # a batch: same rule
    assert list(kept.ids()) == [7, 8, 9, 10, 11]
    got = take(kept, 7, 100, 2 * size)  # at most 2 records' bytes past the first
    assert got is not None and [len(r) for r in got] == [size, size]


def test_a_record_bigger_than_the_byte_limit_still_comes_alone():
    kept = RecentRecords(1 << 20)
    kept.add([(1, record(1, 800)), (2, record(2))])
    got = take(kept, 1, 10, 100)
    assert got is not None and [bytes(r) for r in got] == [record(1, 800)]


def test_a_kept_record_is_the_committed_object_handed_out_read_only(store):
    rec = bytearray(record(1, 4096))
    store.keep_recent(1 << 20)
    store.append([(1, rec), (2, record(2))])
    got = store.values_from(1, 10)
    assert got[0].obj is rec and bytes(got[1]) == record(2)  # no copies
    assert got[0].readonly and got[1].readonly  # the caller cannot write kept bytes
    assert store._recent.held == len(rec) + len(record(2)) + 2 * ENTRY_OVERHEAD


def test_take_asks_beyond_or_before_what_is_kept():
    kept = RecentRecords(1 << 20)
    kept.add([(t, record(t)) for t in (4, 5, 6)])
    assert take(kept, 3, 10, 1 << 62) is None  # before the kept run: LMDB answers
    assert list(kept.ids()) == [4, 5, 6]  # and asking before dropped nothing
    got = take(kept, 5, 1, 1 << 62)
    assert got is not None and [bytes(r) for r in got] == [record(5)]
    assert list(kept.ids()) == [5, 6]
    assert take(kept, 7, 10, 1 << 62) is None  # nothing committed past it ...
    assert list(kept.ids()) == [] and kept.held == 0  # ... and all before it shipped


def test_a_non_consecutive_batch_is_not_kept(store):
    store.keep_recent(1 << 20)
    store.append([(1, record(1))])
    store.append([(2, record(2)), (5, record(5))])  # keys may skip; ids must not be guessed
    assert kept_ids(store) == []
    assert values(store, 2, 10) == [record(2), record(5)]


def test_a_refused_append_keeps_nothing(store):
    store.keep_recent(1 << 20)
    store.append([(1, record(1))])
    with pytest.raises(CorruptLogError):
        store.append([(1, b"other")])  # tx 1 exists: the commit fails
    assert kept_ids(store) == [1]
    assert values(store, 1, 10) == [record(1)]


def test_close_stops_keeping(tmp_path):
    s = LogStore(str(tmp_path / "log"), sync="none")
    s.keep_recent(1 << 20)
    s.append([(1, record(1))])
    s.close()
    assert s._recent is None


def test_keep_recent_zero_stops_and_drops(store):
    store.keep_recent(1 << 20)
    store.append([(1, record(1))])
    store.keep_recent(0)
    assert store._recent is None
    store.append([(2, record(2))])
    assert values(store, 1, 10) == [record(1), record(2)]


@settings(max_examples=int(os.environ.get("ENGINE_RECENT_EXAMPLES", "60")), deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=12),
       st.integers(1, 8), st.lists(st.tuples(st.integers(0, 40), st.integers(0, 6),
                                             st.sampled_from([1, 40, 100, 1 << 62])),
                                   max_size=8),
       st.booleans(), st.integers(0, 3))
def test_parity_with_the_plain_path(tmp_path_factory, batches, bound, asks, look, big_every):
    """Any commits (of records of two sizes), any bound, any sequence of reads (and
    byte limits): the same answers as LMDB's. ``look`` also inspects what is kept
    after each commit."""
    def size(t: int) -> int:
        return 400 if big_every and t % big_every == 0 else 40

    def cost(t: int) -> int:
        return size(t) + ENTRY_OVERHEAD

    s = LogStore(str(tmp_path_factory.mktemp("log")), sync="none")
    try:
        s.keep_recent(bound * cost(1) + (400 if big_every else 0))
        tx = 0
        for n in batches:
            s.append([(t, record(t, size(t))) for t in range(tx + 1, tx + n + 1)])
            tx += n
            for from_tx, limit, max_bytes in asks:
                got = values(s, from_tx, limit, max_bytes)
                assert got == lmdb_values(s, from_tx, limit, max_bytes)
            if look:
                kept = kept_ids(s)
                assert kept == list(range(kept[0], kept[0] + len(kept))) if kept else True
                assert s._recent.held == sum(map(cost, kept)) <= s._recent.max_bytes
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
        assert all(t >= 51 for t in kept_ids(log))
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


def test_a_negative_limit_is_refused_on_both_paths(store):
    store.append([(1, record(1))])
    with pytest.raises(ValueError, match="limit"):
        store.values_from(1, -1)  # LMDB's path
    store.keep_recent(1 << 20)
    store.append([(2, record(2))])
    with pytest.raises(ValueError, match="limit"):
        store.values_from(2, -1)  # the kept records' path
    assert values(store, 2, 0) == [] and values(store, 2, 1) == [record(2)]


def test_a_commit_not_remembered_makes_a_prefix_and_lmdb_answers_the_rest(store, monkeypatch):
    # e.g. an interrupt between the LMDB commit and _remember: nothing wrong is served
    store.keep_recent(1 << 20)
    store.append([(1, record(1)), (2, record(2))])
    monkeypatch.setattr(store, "_remember", lambda records: None)
    store.append([(3, record(3))])
    monkeypatch.undo()
    assert values(store, 1, 10) == [record(1), record(2)]  # a prefix of LMDB's answer
    assert values(store, 3, 10) == [record(3)]  # from past it: LMDB
    store.append([(4, record(4))])  # does not continue what is kept: keeping restarts
    assert kept_ids(store) == [4]
    assert values(store, 3, 10) == [record(3), record(4)]


def test_an_add_cut_between_its_count_and_its_end_id_resets_the_count():
    kept = RecentRecords(1 << 20)
    kept.add([(1, record(1))])
    kept.held += 10**6  # as if counted, then cut before the end id was set
    kept.end = CHANGING
    assert kept.take(1, 10) is None  # dropped, not trusted
    assert kept.held == 0 and len(kept) == 0


def test_nothing_is_kept_for_a_closed_log(tmp_path):
    s = LogStore(str(tmp_path / "log"), sync="none")
    s.close()
    s.keep_recent(1 << 20)
    assert s._recent is None
