"""read_stream follows one stream through a log where it is interleaved with others:
``read_stream(stream, from_version=1, to_version=None, *, reverse=False, limit=None)``."""

from __future__ import annotations

import contextlib
import gc
import os
import random
from collections.abc import Callable, Iterator
from typing import Any

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import history, layout
from engine.log import tx_key
from engine.native import decode_tx, encode_tx
from tests.recovery.helpers import admin_json, delete_log


def _filtered(db, stream, from_version=1, to_version=None, reverse=False, limit=None):
    """The model: a filter over read_log."""
    top = to_version if to_version is not None else float("inf")
    out = [e for t in db.read_log() for e in t.events
           if e.stream == stream and from_version <= e.version <= top]
    if reverse:
        out.reverse()
    return out if limit is None else out[:limit]


@contextlib.contextmanager
def _counting_reads(db) -> Iterator[list[int]]:
    """Every record read_stream fetches from the log, in order (it reads through
    ``LogStore.viewer``); scans are switched off, so a scan would fail the test."""
    log = db._log
    fetched: list[int] = []
    real_viewer = log.viewer

    @contextlib.contextmanager
    def spying_viewer():  # type: ignore[no-untyped-def]
        with real_viewer() as get:
            yield lambda tx_id: (fetched.append(tx_id), get(tx_id))[1]

    saved = log.viewer, log.iter_range, log.get
    log.viewer = spying_viewer
    log.iter_range = log.get = None
    try:
        yield fetched
    finally:
        log.viewer, log.iter_range, log.get = saved


@pytest.mark.parametrize("snapshot_at", [None, 150, 299])
def test_read_stream_matches_a_filter_over_read_log(open_db, snapshot_at):
    rng = random.Random(7)
    db = open_db(sync="none")
    streams = ["hot", "warm", "cold", "ünï", "x" * 300]
    weights = [10, 5, 1, 3, 2]
    for i in range(300):
        k = rng.choice([1, 1, 1, 2, 5])
        picks = rng.choices(streams, weights, k=k)
        if k == 1:
            db.append(picks[0], "e", b"%d" % i)
        else:
            with db.transaction() as tx:
                for j, s in enumerate(picks):
                    tx.append(s, "delete" if j == 3 else "e", b"%d.%d" % (i, j))
        if snapshot_at == i:
            db.snapshot()
    db.append("late", "e", b"only")

    for reopen in (False, True):
        if reopen:
            db.close()
            db = open_db(sync="none")
        for s in [*streams, "late"]:
            want = _filtered(db, s)
            assert want, s
            got = list(db.read_stream(s))
            assert got == want
            assert [e.version for e in got] == list(range(1, len(got) + 1))
            assert db.version(s) == len(want)
            for fv in {1, 2, len(want) // 2 or 1, len(want), len(want) + 1}:
                assert list(db.read_stream(s, from_version=fv)) == _filtered(db, s, fv)
                assert list(db.read_stream(s, fv, reverse=True)) == _filtered(db, s, fv,
                                                                              reverse=True)


def test_read_stream_of_a_stream_written_many_times_in_one_tx(open_db):
    db = open_db()
    db.append("s", "e", b"0")
    db.append("t", "e", b"t")
    with db.transaction() as tx:
        for i in range(1, 6):
            tx.append("s", "e", b"%d" % i)
            tx.append("t", "e", b"t%d" % i)
    db.append("s", "e", b"6")
    got = list(db.read_stream("s"))
    assert [(e.version, e.data) for e in got] == [(i, b"%d" % (i - 1)) for i in range(1, 8)]
    assert [e.tx_id for e in got] == [1, 3, 3, 3, 3, 3, 4]
    assert [e.version for e in db.read_stream("s", from_version=4)] == [4, 5, 6, 7]
    assert [e.version for e in db.read_stream("s", 3, 5)] == [3, 4, 5]
    assert [e.version for e in db.read_stream("s", 3, 5, reverse=True)] == [5, 4, 3]
    assert [e.version for e in db.read_stream("s", 2, limit=2)] == [2, 3]
    assert [e.version for e in db.read_stream("s", reverse=True, limit=3)] == [7, 6, 5]
    assert got == _filtered(db, "s")
    assert list(db.read_stream("t", from_version=3)) == _filtered(db, "t", 3)


# ------------------------------------------------- the arguments, against the model

STREAMS = {"batch": 40, "spread": 40, "mixed": 0, "one": 1}


@pytest.fixture(scope="module")
def model_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[engine.Database]:
    """A stream written in one tx ("batch", 40 events), one spread one event per tx
    among other streams ("spread"), one written in runs of 1..5 events ("mixed"), a
    one-event stream; a snapshot half-way, more after it, then reopened (the state
    comes from the snapshot plus the replayed tail)."""
    path = str(tmp_path_factory.mktemp("model") / "db")
    rng = random.Random(11)
    with engine.open(path, sync="none") as db:
        with db.transaction() as tx:
            tx.extend(("batch", "made", b"b%d" % v) for v in range(1, 41))
        for i in range(40):
            with db.transaction() as tx:
                tx.append(f"noise-{i % 7}", "n", b"x" * (i % 5))
                tx.append("spread", "ü-type" if i % 3 else "e", b"s%d" % i)
                for j in range(rng.choice([0, 1, 1, 2, 5])):
                    tx.append("mixed", "m", b"m%d.%d" % (i, j))
            if i == 20:
                db.snapshot()
        db.append("one", "e", b"only")
    db = engine.open(path, sync="none")
    yield db
    db.close()


versions = st.integers(1, 50)
bounds = st.one_of(st.none(), st.integers(0, 50))
limits = st.one_of(st.none(), st.integers(0, 50))


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(sorted(STREAMS)), versions, bounds, st.booleans(), limits,
       st.sampled_from([None, (1, 1, 1), (3, 40, 2), (0, 0, 4)]))
def test_every_combination_matches_the_model(model_db, stream, from_version, to_version,
                                             reverse, limit, budget):
    """from/to/reverse/limit in every combination, with the oldest-first read keeping
    everything, or keeping only the newest records' events and reading the older ones
    again (and walking in read transactions of 1, 2 or 4 records)."""
    saved = history.KEEP_EVENTS, history.KEEP_BYTES, history.WALK_CHUNK
    if budget is not None:
        history.KEEP_EVENTS, history.KEEP_BYTES, history.WALK_CHUNK = budget
    try:
        got = list(model_db.read_stream(stream, from_version, to_version, reverse=reverse,
                                        limit=limit))
    finally:
        history.KEEP_EVENTS, history.KEEP_BYTES, history.WALK_CHUNK = saved
    assert got == _filtered(model_db, stream, from_version, to_version, reverse, limit)


def test_the_model_db_holds_what_the_model_test_needs(model_db):
    assert {s: model_db.version(s) for s in STREAMS if STREAMS[s]} == \
        {s: n for s, n in STREAMS.items() if n}
    assert model_db.version("mixed") > 40  # runs of several events per tx
    assert len({e.tx_id for e in model_db.read_stream("batch")}) == 1
    assert len({e.tx_id for e in model_db.read_stream("spread")}) == 40


def test_an_unknown_stream_or_an_empty_range_reads_nothing(model_db):
    with _counting_reads(model_db) as fetched:
        assert list(model_db.read_stream("nope")) == []
        assert list(model_db.read_stream("nope", reverse=True, limit=1)) == []
        assert list(model_db.read_stream("spread", 41)) == []
        assert list(model_db.read_stream("spread", 5, 4)) == []
        assert list(model_db.read_stream("spread", 5, 0)) == []
        assert list(model_db.read_stream("spread", limit=0)) == []
        assert list(model_db.read_stream("spread", reverse=True, limit=0)) == []
    assert fetched == []


# --------------------------------------------------------------- reads and streaming

def test_read_stream_reads_only_the_transactions_that_hold_the_stream(open_db):
    """The per-stream chain (prev_tx) is followed: no scan of the log."""
    db = open_db()
    holding = []
    for t in range(1, 401):
        with db.transaction() as tx:
            tx.append(f"noise-{t}", "set", b"n")
            if t % 40 == 0:
                tx.append("rare", "set", str(t).encode())
                holding.append(t)
    with _counting_reads(db) as fetched:
        events = list(db.read_stream("rare"))
        assert [e.data for e in events] == [str(t).encode() for t in holding]
        assert fetched == holding[::-1]  # 10 records read out of 400, newest first
        fetched.clear()
        tail = list(db.read_stream("rare", from_version=9))
        assert [e.version for e in tail] == [9, 10]
        assert fetched == holding[:-3:-1]  # stops once from_version is reached
        fetched.clear()
        assert [e.version for e in db.read_stream("rare", 2, 3)] == [2, 3]
        assert fetched == holding[::-1][:9]  # walks down from the newest to version 2


def test_the_newest_event_is_one_record_read(open_db):
    db = open_db(sync="none")
    for i in range(300):
        with db.transaction() as tx:
            tx.append("s", "e", b"%d" % i)
            tx.append(f"other-{i % 9}", "e", b"o")
    with _counting_reads(db) as fetched:
        (newest,) = db.read_stream("s", reverse=True, limit=1)
        assert (newest.version, newest.data, newest.tx_id) == (300, b"299", 300)
        assert fetched == [300]
        fetched.clear()
        assert [e.version for e in db.read_stream("s", reverse=True, limit=3)] == [300, 299, 298]
        assert fetched == [300, 299, 298]


def test_reverse_streams_record_by_record(open_db):
    db = open_db(sync="none")
    for i in range(100):
        db.append("s", "e", b"%d" % i)
    with _counting_reads(db) as fetched:
        it = db.read_stream("s", reverse=True)
        assert fetched == []  # nothing is read before the first next()
        assert next(it).version == 100
        assert fetched == [100]  # one record for the first event
        assert db._log._readers == 0  # and no read transaction stays open meanwhile
        assert [e.version for e in it] == list(range(99, 0, -1))
    assert fetched == list(range(100, 0, -1))  # each record once


def test_oldest_first_walks_once_then_yields(open_db):
    db = open_db(sync="none")
    for i in range(50):
        db.append("s", "e", b"%d" % i)
    with _counting_reads(db) as fetched:
        it = db.read_stream("s", 10)
        assert fetched == []
        assert next(it).version == 10
        assert fetched == list(range(50, 9, -1))  # the chain down to version 10, once
        assert db._log._readers == 0
        assert [e.version for e in it] == list(range(11, 51))
        assert len(fetched) == 41


def test_oldest_first_reads_again_only_the_records_past_its_budget(open_db, monkeypatch):
    db = open_db(sync="none")
    for i in range(30):
        db.append("s", "e", b"%d" % i)
    monkeypatch.setattr(history, "KEEP_EVENTS", 5)  # keeps the 5 newest records' events
    monkeypatch.setattr(history, "WALK_CHUNK", 8)
    with _counting_reads(db) as fetched:
        got = list(db.read_stream("s"))
    assert got == _filtered(db, "s")
    assert fetched[:30] == list(range(30, 0, -1))  # the walk
    assert fetched[30:] == list(range(1, 26))  # then the 25 oldest again, oldest first


def test_an_iterator_reads_the_stream_as_it_was_when_asked(open_db):
    db = open_db()
    for i in range(5):
        db.append("s", "e", b"%d" % i)
    it = db.read_stream("s")
    rev = db.read_stream("s", reverse=True)
    db.append("s", "e", b"later")
    assert [e.version for e in it] == [1, 2, 3, 4, 5]
    assert [e.version for e in rev] == [5, 4, 3, 2, 1]
    assert [e.version for e in db.read_stream("s", reverse=True, limit=1)] == [6]


# --------------------------------------------------------------------- bad arguments

BIG = 2**64


@pytest.mark.parametrize("args, kwargs", [
    (("s", 0), {}), (("s", -1), {}), (("s", True), {}), (("s", 1.0), {}), (("s", "1"), {}),
    (("s", None), {}), (("s", BIG), {}),
    (("s", 1, -1), {}), (("s", 1, True), {}), (("s", 1, 2.0), {}), (("s", 1, "2"), {}),
    (("s", 1, BIG), {}),
    (("s",), {"reverse": 1}), (("s",), {"reverse": None}), (("s",), {"reverse": "yes"}),
    (("s",), {"limit": -1}), (("s",), {"limit": True}), (("s",), {"limit": 1.0}),
    (("s",), {"limit": "3"}),
    ((5,), {}), ((None,), {}), ((b"s",), {}),
])  # fmt: skip
def test_bad_arguments_raise_at_the_call(open_db, args, kwargs):
    db = open_db()
    db.append("s", "e", b"1")
    with pytest.raises(engine.InvalidEventError):
        db.read_stream(*args, **kwargs)  # not only once iterated


def test_keyword_only_arguments(open_db):
    db = open_db()
    db.append("s", "e", b"1")
    with pytest.raises(TypeError):
        db.read_stream("s", 1, None, True)  # type: ignore[misc]
    assert [e.version for e in db.read_stream("s", to_version=1)] == [1]
    assert [e.version for e in db.read_stream("s", 1, 1)] == [1]


# --------------------------------------------------------- lost and damaged history

def test_lost_history_raises_only_when_it_is_needed(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        for i in range(4):
            db.append("s", "e", b"old%d" % i)
        db.snapshot()  # versions 1..4 at tx 4
    delete_log(path)
    assert admin_json("recover", "--new-epoch", path)[0] == 0
    with engine.open(path) as db:
        db.append("s", "e", b"new5")
        db.append("s", "e", b"new6")
        with pytest.raises(engine.HistoryLostError, match=r"'s' versions 1\.\.4"):
            list(db.read_stream("s"))
        with pytest.raises(engine.HistoryLostError):
            list(db.read_stream("s", 4, 6))
        assert [e.data for e in db.read_stream("s", 5)] == [b"new5", b"new6"]
        assert [e.data for e in db.read_stream("s", reverse=True, limit=2)] == \
            [b"new6", b"new5"]
        it = db.read_stream("s", reverse=True)  # yields what the log holds, then raises
        assert [next(it).data, next(it).data] == [b"new6", b"new5"]
        with pytest.raises(engine.HistoryLostError):
            next(it)


def _rewrite(path: str, tx_id: int, fn: Callable[[bytes], bytes]) -> None:
    env = lmdb.open(os.path.join(path, layout.LOG_SUBDIR), subdir=True)
    try:
        with env.begin(write=True) as txn:
            txn.put(tx_key(tx_id), fn(bytes(txn.get(tx_key(tx_id)))))
    finally:
        env.close()


def _chain_db(path: str) -> None:
    with engine.open(path) as db:
        for i in range(1, 11):  # "s" in every tx, "t" in the even ones
            with db.transaction() as tx:
                tx.append("s", "e", b"s%d" % i)
                if i % 2 == 0:
                    tx.append("t", "e", b"t%d" % i)
        db.snapshot()  # open loads it: records damaged below are not replayed


def _flip(rec: bytes) -> bytes:
    b = bytearray(rec)
    b[60] ^= 0x01
    return bytes(b)


def _reencode(rec: bytes, **change: Any) -> bytes:
    c = decode_tx(rec)._replace(**change)
    return bytes(encode_tx(c.tx_id, c.epoch, c.ts_ns, c.first_position, c.versions, c.prev_tx,
                           ("\0".join(c.streams) + "\0").encode(),
                           ("\0".join(c.types) + "\0").encode(), c.datas))


def test_a_damaged_record_in_the_chain_is_corrupt_log(db_path):
    _chain_db(db_path)
    _rewrite(db_path, 6, _flip)
    with engine.open(db_path) as db:
        for s in ("s", "t"):
            with pytest.raises(engine.CorruptLogError, match=r"tx 6 .*checksum"):
                list(db.read_stream(s))
        # what lies above the damage reads as before
        assert [e.version for e in db.read_stream("s", 7)] == [7, 8, 9, 10]
        assert [e.data for e in db.read_stream("t", reverse=True, limit=2)] == [b"t10", b"t8"]
        it = db.read_stream("s", reverse=True)
        assert [next(it).version for _ in range(4)] == [10, 9, 8, 7]
        with pytest.raises(engine.CorruptLogError, match="tx 6"):
            next(it)


@pytest.mark.parametrize("damage, message", [
    (lambda r: _reencode(r, prev_tx=[9, 6]), "chain is broken at tx 8: version 8 points back "
                                              "at tx 9"),
    # (prev_tx 0 ends a chain: a stream's first version may be above 1, so a forged 0
    # reads as the stream's start; FORMAT.md section 2 lists it as not detected)
    # versions may have gaps (caller-chosen), so a lowered version is caught where the
    # chain stops decreasing: tx 7 still holds version 7, not below 5
    (lambda r: _reencode(r, versions=[5, 4]), "chain is broken at tx 7: it holds versions 7"),
    (lambda r: _reencode(r, versions=[10, 4]), "chain is broken at tx 8: it holds versions 10"),
    (lambda r: _reencode(r, streams=["u", "t"]), "tx 8 holds no event of stream 's'"),
    (lambda r: _reencode(r, tx_id=7), "under key 8 holds tx 7"),
])  # fmt: skip
def test_a_broken_chain_is_corrupt_log_never_a_short_read(db_path, damage, message):
    _chain_db(db_path)
    _rewrite(db_path, 8, damage)
    with engine.open(db_path) as db:
        with pytest.raises(engine.CorruptLogError, match=message):
            list(db.read_stream("s"))
        assert [e.version for e in db.read_stream("s", 9)] == [9, 10]


def test_versions_out_of_order_inside_one_record_are_corrupt_log(db_path):
    """Tx 2's versions end below tx 3's and start above tx 1's, so only the check of
    a record's own versions, in order, sees them go down."""
    with engine.open(db_path) as db:
        for _ in range(3):
            with db.transaction() as tx:
                tx.extend([("m", "e", b"1"), ("m", "e", b"2"), ("m", "e", b"3")])
        db.snapshot()
    _rewrite(db_path, 2, lambda r: _reencode(r, versions=[5, 4, 6]))
    with (engine.open(db_path) as db,
          pytest.raises(engine.CorruptLogError,
                        match=r"chain is broken at tx 2: it holds versions 5\.\.6")):
        list(db.read_stream("m"))


def test_a_record_missing_from_the_chain_is_corrupt_log(db_path):
    _chain_db(db_path)
    env = lmdb.open(os.path.join(db_path, layout.LOG_SUBDIR), subdir=True)
    try:
        with env.begin(write=True) as txn:
            assert txn.delete(tx_key(4))
    finally:
        env.close()
    with engine.open(db_path) as db:
        with pytest.raises(engine.CorruptLogError, match="refers to tx 4, which is missing"):
            list(db.read_stream("t"))
        assert [e.version for e in db.read_stream("t", 3)] == [3, 4, 5]


def test_no_view_into_the_map_outlives_its_read_transaction(db_path):
    """Records are read as views into LMDB's map; one released after its transaction
    (and here its environment) is gone would crash the process. Kept errors (their
    tracebacks) and abandoned iterators must hold none."""
    _chain_db(db_path)
    _rewrite(db_path, 6, _flip)
    kept = []
    with engine.open(db_path) as db:
        for s, kwargs in [("s", {}), ("s", {"reverse": True}), ("t", {"to_version": 4})]:
            with pytest.raises(engine.CorruptLogError) as ei:
                list(db.read_stream(s, **kwargs))
            kept.append(ei.value)
        half = db.read_stream("s", reverse=True)
        assert next(half).version == 10
        forward = db.read_stream("s", 7)
        assert next(forward).version == 7
    del half, forward
    kept.clear()
    gc.collect()  # the process is still here


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_streams_with_chosen_versions_read_like_a_filter(tmp_path_factory, data):
    """Caller-chosen versions leave gaps: ranges, reverse and limits count events, not
    versions, and equal a filter of the stream's events (both load paths)."""
    path = str(tmp_path_factory.mktemp("gaps") / "db")
    gaps = data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=25), label="gaps")
    per_tx = data.draw(st.integers(1, 3), label="events per tx")
    with engine.open(path, sync="none") as db:
        v = 0
        pending = []
        for g in gaps:
            v += g
            pending.append(v)
            if len(pending) == per_tx:
                with db.transaction() as tx:
                    for ver in pending:
                        tx.append("agg", "e", b"%d" % ver, version=ver)
                        tx.append("noise", "e", b"n")
                pending = []
        if pending:
            with db.transaction() as tx:
                for ver in pending:
                    tx.append("agg", "e", b"%d" % ver, version=ver)
        if data.draw(st.booleans(), label="snapshot"):
            db.snapshot()
    with engine.open(path) as db:
        all_v = [e.version for e in db.read_stream("agg")]
        assert all_v == [sum(gaps[: i + 1]) for i in range(len(gaps))]
        lo = data.draw(st.integers(1, all_v[-1] + 2), label="from")
        hi = data.draw(st.none() | st.integers(0, all_v[-1] + 2), label="to")
        rev = data.draw(st.booleans(), label="reverse")
        lim = data.draw(st.none() | st.integers(0, 6), label="limit")
        want = [x for x in all_v if x >= lo and (hi is None or x <= hi)]
        if rev:
            want.reverse()
        if lim is not None:
            want = want[:lim]
        got = db.read_stream("agg", lo, hi, reverse=rev, limit=lim)
        assert [e.version for e in got] == want
