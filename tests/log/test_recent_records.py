"""LogStore.keep_recent: the newest committed records kept in memory for the backup
uploader's bulk read (values_from). With every commit kept, values_from answers
exactly what LMDB holds (parity with the plain path); a commit not kept (the bound was
full, or an interrupt) makes the answer a prefix of LMDB's, never other records; and
only records whose commit returned are ever kept. The committer and the reader share
no lock (engine/recent.py): a two-thread stress test checks that too."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import formats, layout
from engine import recent as recent_module
from engine.errors import CorruptLogError
from engine.log import LogStore
from engine.recent import ENTRY_OVERHEAD, RecentRecords, fitting, record_tx_id, within


def record(tx: int, size: int = 40) -> bytes:
    """A stand-in for a log record: the magic, the tx id where a record's header
    holds it (all the kept path reads), and filler that names the tx too."""
    head = formats.TX_MAGIC + bytes(formats.TX_ID_OFFSET - 4) + tx.to_bytes(8, "little")
    return head + (tx.to_bytes(8, "big") * size)[: max(0, size - len(head))]


def kept_ids(s: LogStore) -> list[int]:
    """The tx ids of the kept records (read from the records), checked to increase."""
    kept = s._recent
    assert kept is not None
    ids = kept.ids()
    assert ids == sorted(set(ids))
    return ids


def take(kept: RecentRecords, from_tx: int, limit: int, max_bytes: int
         ) -> list[bytes | bytearray | memoryview] | None:
    got = kept.take(from_tx, limit)
    return None if got is None else fitting(got, max_bytes)


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


def test_a_full_bound_keeps_nothing_more_and_lmdb_serves_the_rest(store, monkeypatch):
    size = len(record(1)) + ENTRY_OVERHEAD
    store.keep_recent(3 * size)
    for t in range(1, 6):
        store.append([(t, record(t))])
    assert kept_ids(store) == [1, 2, 3]  # the oldest unshipped; 4 and 5 did not fit
    reads = count_read_txns(store, monkeypatch)
    assert values(store, 1, 10) == [record(t) for t in range(1, 4)]  # a prefix ...
    assert reads == []
    assert values(store, 4, 10) == [record(4), record(5)]  # ... and LMDB the rest
    assert reads == [1] and kept_ids(store) == [] and store._recent.held == 0
    store.append([(6, record(6))])  # room again: keeping goes on
    assert values(store, 6, 10) == [record(6)] and reads == [1]


def test_a_commit_not_kept_is_a_gap_served_by_lmdb(store, monkeypatch):
    store.keep_recent(1 << 20)
    store.append([(1, record(1))])
    kept = store._recent
    monkeypatch.setattr(kept, "add", lambda records: None)  # as if an interrupt cut it
    store.append([(2, record(2))])
    monkeypatch.undo()
    store.append([(3, record(3))])
    store.append([(4, record(4))])
    assert kept_ids(store) == [1, 3, 4]  # ids come from the records: no shift
    reads = count_read_txns(store, monkeypatch)
    assert values(store, 1, 10) == [record(1)]  # up to the gap
    assert values(store, 2, 10) == [record(t) for t in range(2, 5)]  # from LMDB
    assert reads == [1]
    assert values(store, 3, 10) == [record(3), record(4)] and reads == [1]


def test_an_add_cut_between_its_count_and_its_append_only_overcounts():
    # The count grows first: an interrupt before the append leaves it too high (less
    # is kept from then on), never too low (the bound would be passed).
    size = len(record(1)) + ENTRY_OVERHEAD
    kept = RecentRecords(3 * size)
    kept.add([(1, record(1))])
    kept.added += size  # tx 2 counted, then cut before its append
    kept.add([(3, record(3))])
    kept.add([(4, record(4))])  # no room: the phantom holds a slot
    assert kept.ids() == [1, 3] and kept.held == 3 * size
    assert take(kept, 1, 10, 1 << 62) is not None  # tx 1 served, then the gap
    assert take(kept, 3, 10, 1 << 62) is not None and kept.held == 2 * size  # 1 let go


def _consistent(kept: RecentRecords) -> None:
    """What is kept has no duplicate, is in order, and is never counted short."""
    recs = kept._mine + list(kept._queue)
    ids = [record_tx_id(r) for r in recs]
    assert ids == sorted(set(ids))
    assert kept.held >= sum(len(r) + ENTRY_OVERHEAD for r in recs)


def _interrupted_at(fn, step: int) -> bool:
    """Run ``fn``, raising KeyboardInterrupt before the ``step``-th bytecode it runs
    in engine/recent.py; True if it ran to the end first."""
    seen = 0

    def trace(frame, event, arg):
        nonlocal seen
        if frame.f_code.co_filename != recent_module.__file__:
            return None
        frame.f_trace_opcodes = True
        if event == "opcode":
            seen += 1
            if seen == step:
                raise KeyboardInterrupt
        return trace

    sys.settrace(trace)
    try:
        fn()
        return True
    except KeyboardInterrupt:
        return False
    finally:
        sys.settrace(None)


@pytest.mark.parametrize("call", ["add one", "add two", "take"])
def test_an_interrupt_at_any_step_never_duplicates_undercounts_or_misserves(call):
    # Every bytecode of the call, in turn: what is kept stays consistent, and every
    # later read serves consecutive txs from the one asked for (or defers to LMDB).
    for step in range(1, 400):
        kept = RecentRecords(1 << 20)
        kept.add([(1, record(1)), (2, record(2))])
        if call == "take":
            assert kept.take(1, 1) is not None  # something already in the reader's list
        kept.add([(3, record(3))])
        run = {"add one": lambda k=kept: k.add([(4, record(4))]),
               "add two": lambda k=kept: k.add([(4, record(4)), (5, record(5))]),
               "take": lambda k=kept: k.take(2, 10)}[call]
        finished = _interrupted_at(run, step)
        _consistent(kept)
        for from_tx in (2, 3, 4, 5):
            got = kept.take(from_tx, 10)
            if got is not None:
                assert [record_tx_id(r) for r in got] == list(range(from_tx,
                                                                    from_tx + len(got)))
            _consistent(kept)
        if finished:
            assert step > 3  # the calls were cut at each of their steps before this
            return
    raise AssertionError("the call never ran to its end")


def test_a_commit_added_during_the_readers_drain_stays_queued():
    # The producer appends between the reader's copy of the queue and its deletion
    # of what it copied: that record must be neither lost nor taken twice.
    class Queue(list):
        hook = None

        def __getitem__(self, i):
            hook, Queue.hook = Queue.hook, None
            if hook:
                hook()
            return super().__getitem__(i)

    kept = RecentRecords(1 << 20)
    kept._queue = Queue()
    kept.add([(1, record(1))])
    Queue.hook = lambda: kept.add([(2, record(2))])
    got = kept.take(1, 10)
    assert got is not None and [record_tx_id(r) for r in got] == [1]  # 2 came after
    assert list(kept._queue) == [record(2)]
    got = kept.take(1, 10)
    assert got is not None and [record_tx_id(r) for r in got] == [1, 2]
    _consistent(kept)


def test_a_record_whose_header_is_not_its_key_is_not_kept():
    kept = RecentRecords(1 << 20)
    kept.add([(1, record(1))])
    kept.add([(2, record(7))])  # its header says tx 7
    kept.add([(3, b"short")])  # too short to say
    kept.add([(4, record(4)), (5, record(9))])  # a batch is kept whole or not at all
    kept.add([(6, record(6))])
    assert kept.ids() == [1, 6]
    assert kept.held == 2 * (len(record(1)) + ENTRY_OVERHEAD)


def test_the_bound_counts_bytes_and_overhead_and_keeps_the_oldest():
    size = 1000
    kept = RecentRecords(5 * (size + ENTRY_OVERHEAD))
    for t in range(1, 9):
        kept.add([(t, record(t, size))])
    assert kept.ids() == [1, 2, 3, 4, 5]
    assert kept.held == 5 * (size + ENTRY_OVERHEAD)
    assert take(kept, 4, 100, 1 << 62) is not None  # 1-3 shipped: room for three
    kept.add([(t, record(t, size)) for t in range(9, 13)])  # a batch fits whole or not
    assert kept.ids() == [4, 5]
    kept.add([(t, record(t, size)) for t in range(9, 12)])
    assert kept.ids() == [4, 5, 9, 10, 11]
    got = take(kept, 4, 100, 2 * size)  # at most 2 records' bytes past the first
    assert got is not None and [len(r) for r in got] == [size, size]


def test_a_record_bigger_than_the_byte_limit_still_comes_alone():
    kept = RecentRecords(1 << 20)
    kept.add([(1, record(1, 800)), (2, record(2))])
    got = take(kept, 1, 10, 100)
    assert got is not None and [bytes(r) for r in got] == [record(1, 800)]


def test_a_kept_record_is_the_committed_object_itself(store):
    rec = bytearray(record(1, 4096))
    two = record(2)
    store.keep_recent(1 << 20)
    store.append([(1, rec), (2, two)])
    got = store.values_from(1, 10)
    assert got[0] is rec and got[1] is two  # no copies, no views
    assert store._recent.held == len(rec) + len(two) + 2 * ENTRY_OVERHEAD


@given(st.lists(st.integers(0, 300), max_size=12), st.integers(0, 2000))
def test_the_kept_paths_byte_limit_is_the_lmdb_paths(sizes, max_bytes):
    recs = [bytes(n) for n in sizes]
    assert fitting(recs, max_bytes) == within(iter(recs), max_bytes)


def test_take_asks_beyond_or_before_what_is_kept():
    kept = RecentRecords(1 << 20)
    kept.add([(t, record(t)) for t in (4, 5, 6)])
    assert take(kept, 3, 10, 1 << 62) is None  # before the kept run: LMDB answers
    assert kept.ids() == [4, 5, 6]  # and asking before dropped nothing
    got = take(kept, 5, 1, 1 << 62)
    assert got is not None and [bytes(r) for r in got] == [record(5)]
    assert kept.ids() == [5, 6]
    assert take(kept, 7, 10, 1 << 62) is None  # nothing committed past it ...
    assert kept.ids() == [] and kept.held == 0  # ... and all before it shipped


@pytest.mark.parametrize("gap_at", range(1, 9))
def test_a_run_is_served_up_to_its_first_gap_wherever_it_is(gap_at):
    # The run's ends are read first, a gap found by bisection: every position of it
    kept = RecentRecords(1 << 20)
    ids = [t for t in range(1, 11) if t != gap_at + 1]
    for t in ids:
        kept.add([(t, record(t))])
    got = kept.take(1, 10)
    assert got is not None and [record_tx_id(r) for r in got] == list(range(1, gap_at + 1))
    assert kept.take(1, 0) == []


def test_a_batch_whose_keys_skip_is_served_up_to_the_skip(store):
    store.keep_recent(1 << 20)
    store.append([(1, record(1))])
    store.append([(2, record(2)), (5, record(5))])  # keys may skip; ids are never guessed
    assert kept_ids(store) == [1, 2, 5]
    assert values(store, 2, 10) == [record(2)]  # a prefix of LMDB's answer
    assert values(store, 3, 10) == [record(5)]  # from LMDB (3 is not kept)
    assert values(store, 5, 10) == [record(5)]


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
    byte limits): a prefix of LMDB's answer, never empty where LMDB's is not, and all
    of it while the bound never turned a commit away. ``look`` also inspects what is
    kept after each commit."""
    def size(t: int) -> int:
        return 400 if big_every and t % big_every == 0 else 40

    def cost(t: int) -> int:
        return size(t) + ENTRY_OVERHEAD

    s = LogStore(str(tmp_path_factory.mktemp("log")), sync="none")
    try:
        s.keep_recent(bound * cost(1) + (400 if big_every else 0))
        tx = 0
        offered = 0  # bytes (with overhead) of every commit, kept or not
        for n in batches:
            s.append([(t, record(t, size(t))) for t in range(tx + 1, tx + n + 1)])
            offered += sum(cost(t) for t in range(tx + 1, tx + n + 1))
            tx += n
            for from_tx, limit, max_bytes in asks:
                got = values(s, from_tx, limit, max_bytes)
                plain = lmdb_values(s, from_tx, limit, max_bytes)
                assert got == plain[:len(got)]
                assert bool(got) == bool(plain)
                if s._recent.added == offered:  # nothing turned away: all of it
                    assert got == plain
            if look:
                kept = kept_ids(s)
                assert s._recent.held == sum(map(cost, kept)) <= s._recent.max_bytes
    finally:
        s.close()


def test_a_committer_and_a_reader_in_two_threads_never_see_wrong_records(tmp_path):
    """The committer adds with no lock while the reader takes: with the interpreter
    switching threads as often as it can, every answer is the records of txs
    from_tx.. in order, the reader reaches the last commit, and the count of bytes
    held matches what is kept at the end."""
    commits = int(os.environ.get("ENGINE_RECENT_COMMITS", "20000"))
    s = LogStore(str(tmp_path / "log"), sync="none")
    cost = len(record(1)) + ENTRY_OVERHEAD
    s.keep_recent(6 * cost)  # small: the bound turns commits away, gaps happen
    errors: list[BaseException] = []

    def commit() -> None:
        try:
            for t in range(1, commits + 1, 2):  # one- and two-record commits
                s.append([(t, record(t)), (t + 1, record(t + 1))] if t % 4 == 1
                         else [(t, record(t))])
                if t % 4 != 1:
                    s.append([(t + 1, record(t + 1))])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    writer = threading.Thread(target=commit)
    try:
        writer.start()
        nxt = 1
        while nxt <= commits:
            got = values(s, nxt, 3, 1 << 62)
            if not got:
                if not writer.is_alive():
                    break  # the writer failed (reported below) or this reader fell short
                time.sleep(0.0005)  # let the writer run ahead: the bound fills, gaps form
            assert got == [record(t) for t in range(nxt, nxt + len(got))]
            nxt += len(got)
    finally:
        sys.setswitchinterval(old)
        writer.join()
    try:
        assert not errors and nxt == commits + 1
        assert values(s, nxt, 10) == []
        assert s._recent.held == cost * len(kept_ids(s))
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
        assert kept_ids(log) == [51]
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


def test_nothing_is_kept_for_a_closed_log(tmp_path):
    s = LogStore(str(tmp_path / "log"), sync="none")
    s.close()
    s.keep_recent(1 << 20)
    assert s._recent is None
