"""A tour of the public API: tx ids, positions, reads, transactions, closing."""

from __future__ import annotations

import os
import time
import uuid

import pytest

import engine
from engine import Event, Position, Transaction


def test_append_returns_consecutive_tx_ids_from_one(open_db):
    db = open_db()
    assert db.position == Position(1, 0)
    ids = [db.append(f"s{i % 3}", "e", bytes([i])) for i in range(10)]
    assert ids == list(range(1, 11))
    assert db.position == Position(1, 10)
    with db.transaction() as tx:
        tx.append("s0", "e", b"x")
        tx.append("s1", "e", b"y")
    assert tx.tx_id == 11
    assert db.append("s2", "e", b"z") == 12
    assert db.position.epoch == 1 and db.position.tx_id == 12


def test_db_id_is_a_uuid_and_persists(open_db):
    db = open_db()
    db_id = db.db_id
    assert str(uuid.UUID(db_id)) == db_id
    db.append("s", "e", b"1")
    db.close()
    db = open_db()
    assert db.db_id == db_id
    assert db.position == Position(1, 1)


def test_unknown_stream_reads(open_db):
    db = open_db()
    assert db.get("nope") is None
    assert db.version("nope") == 0
    assert list(db.read_stream("nope")) == []
    db.append("s", "e", b"1")
    assert db.get("nope") is None
    assert db.version("nope") == 0
    assert list(db.read_stream("nope")) == []
    assert list(db.read_stream("s", from_version=2)) == []


def test_event_and_transaction_fields(open_db):
    db = open_db()
    t0 = time.time()
    db.append("a", "created", b"a1")
    with db.transaction() as tx:
        tx.append("b", "created", b"b1")
        tx.append("a", "changed", b"a2")
        tx.extend([("c", "created", b"c1"), ("b", "changed", b"b2")])
    db.append("c", "delete", b"")
    t1 = time.time()

    txs = list(db.read_log())
    assert all(isinstance(t, Transaction) for t in txs)
    assert [t.tx_id for t in txs] == [1, 2, 3]
    assert [len(t.events) for t in txs] == [1, 4, 1]
    assert {t.epoch for t in txs} == {1}
    for t in txs:
        assert t0 - 1 <= t.ts <= t1 + 1
        for e in t.events:
            assert isinstance(e, Event)
            assert (e.tx_id, e.epoch, e.ts) == (t.tx_id, t.epoch, t.ts)
    assert txs[0].ts <= txs[1].ts <= txs[2].ts
    events = [e for t in txs for e in t.events]
    assert [(e.stream, e.version, e.type, e.data, e.position, e.tx_id) for e in events] == [
        ("a", 1, "created", b"a1", 1, 1),
        ("b", 1, "created", b"b1", 2, 2),
        ("a", 2, "changed", b"a2", 3, 2),
        ("c", 1, "created", b"c1", 4, 2),
        ("b", 2, "changed", b"b2", 5, 2),
        ("c", 2, "delete", b"", 6, 3),
    ]
    assert all(type(e.data) is bytes for e in events)
    # read_stream hands out the same Event values
    assert list(db.read_stream("a")) == [events[0], events[2]]
    assert list(db.read_stream("b", from_version=2)) == [events[4]]


def test_positions_are_global_and_gap_free_across_txs_and_reopen(open_db):
    db = open_db()
    for i in range(1, 8):
        with db.transaction() as tx:
            tx.extend((f"s{j}", "e", b"%d" % i) for j in range(i))
    db.close()
    db = open_db()
    db.append("z", "e", b"")
    positions = [e.position for t in db.read_log() for e in t.events]
    assert positions == list(range(1, sum(range(1, 8)) + 2))


def test_read_log_ranges(open_db):
    db = open_db()
    for i in range(1, 21):
        db.append("s", "e", b"%d" % i)
    ids = lambda it: [t.tx_id for t in it]  # noqa: E731
    assert ids(db.read_log()) == list(range(1, 21))
    assert ids(db.read_log(5)) == list(range(5, 21))
    assert ids(db.read_log(5, 9)) == [5, 6, 7, 8, 9]
    assert ids(db.read_log(from_tx=7, to_tx=7)) == [7]
    assert ids(db.read_log(1, 1)) == [1]
    assert ids(db.read_log(20, 20)) == [20]
    assert ids(db.read_log(15, 100)) == list(range(15, 21))
    assert ids(db.read_log(21)) == []
    assert ids(db.read_log(9, 5)) == []
    assert [t.events[0].data for t in db.read_log(3, 4)] == [b"3", b"4"]


def test_read_log_bad_bounds_raise(open_db):
    db = open_db()
    db.append("s", "e", b"1")
    for bad in [0, -1, 1.0, "1", None]:
        with pytest.raises(engine.InvalidEventError):
            list(db.read_log(bad))
    with pytest.raises(engine.InvalidEventError):
        list(db.read_log(1, "2"))


def test_read_stream_from_version(open_db):
    db = open_db()
    for i in range(1, 11):
        db.append("s", "e", b"%d" % i)
        db.append("t", "e", b"t%d" % i)
    for fv in range(1, 12):
        got = list(db.read_stream("s", from_version=fv))
        assert [e.version for e in got] == list(range(fv, 11))
        assert [e.data for e in got] == [b"%d" % v for v in range(fv, 11)]
    with pytest.raises(engine.InvalidEventError):
        list(db.read_stream("s", from_version=0))


def test_transaction_rollback_on_exception(open_db):
    db = open_db()
    db.append("a", "e", b"1")

    class Oops(Exception):
        pass

    with pytest.raises(Oops), db.transaction() as tx:
        tx.append("a", "e", b"2")
        tx.extend([("b", "e", b"1"), ("c", "e", b"1")])
        raise Oops
    assert tx.tx_id is None
    assert [t.tx_id for t in db.read_log()] == [1]
    assert (db.get("a"), db.version("a")) == (b"1", 1)
    assert (db.get("b"), db.version("b"), db.get("c")) == (None, 0, None)
    assert db.position.tx_id == 1
    assert db.append("b", "e", b"x") == 2  # tx id 2 was not consumed
    assert [e.position for t in db.read_log() for e in t.events] == [1, 2]
    assert db.version("b") == 1


def test_empty_transaction_commits_nothing(open_db):
    db = open_db()
    with db.transaction() as tx:
        pass
    assert tx.tx_id is None
    with db.transaction() as tx2:
        tx2.extend([])
        tx2.extend(iter(()))
    assert tx2.tx_id is None
    assert db.position.tx_id == 0
    assert list(db.read_log()) == []
    assert db.append("s", "e", b"1") == 1


def test_finished_transaction_refuses_more_events(open_db):
    db = open_db()
    with db.transaction() as tx:
        tx.append("s", "e", b"1")
    with pytest.raises(engine.InvalidEventError):
        tx.append("s", "e", b"2")
    with pytest.raises(engine.InvalidEventError):
        tx.extend([("s", "e", b"2")])
    assert db.version("s") == 1
    assert db.position.tx_id == 1


def test_use_after_close_raises_database_closed(open_db):
    db = open_db()
    db.append("s", "e", b"1")
    tx = db.transaction()
    db.close()
    assert db.closed
    db.close()  # idempotent
    calls = [
        lambda: db.append("s", "e", b"2"),
        lambda: db.get("s"),
        lambda: db.version("s"),
        lambda: list(db.read_stream("s")),
        lambda: list(db.read_log()),
        lambda: db.transaction(),
        lambda: db.snapshot(),
    ]
    for call in calls:
        with pytest.raises(engine.DatabaseClosedError):
            call()
    with pytest.raises(engine.DatabaseClosedError), tx:
        tx.append("s", "e", b"3")
    db2 = open_db()
    assert db2.version("s") == 1
    assert [t.tx_id for t in db2.read_log()] == [1]


def test_read_log_iterator_after_close_raises_database_closed(open_db):
    db = open_db()
    db.append("s", "e", b"1")
    it = db.read_log()
    db.close()
    with pytest.raises(engine.DatabaseClosedError):
        next(it)


def test_context_manager_closes(db_path):
    with engine.open(db_path) as db:
        assert not db.closed
        db.append("s", "e", b"1")
    assert db.closed
    with pytest.raises(engine.DatabaseClosedError):
        db.get("s")
    with engine.open(db_path) as db2:  # the lock was released
        assert db2.get("s") == b"1"
    assert db2.closed


def test_context_manager_closes_on_exception(db_path):
    with pytest.raises(KeyError), engine.open(db_path) as db:
        db.append("s", "e", b"1")
        raise KeyError("x")
    assert db.closed
    with engine.open(db_path) as db2:
        assert db2.version("s") == 1


@pytest.mark.parametrize("sync", ["commit", "group", "none"])
def test_sync_modes_round_trip_through_reopen(open_db, sync):
    db = open_db(sync=sync)
    for i in range(30):
        db.append(f"s{i % 4}", "e", b"%d" % i)
    with db.transaction() as tx:
        tx.extend((f"s{j}", "delete" if j == 0 else "e", b"tx") for j in range(4))
    expected = [(e.stream, e.type, e.data, e.position) for t in db.read_log() for e in t.events]
    db.close()
    db = open_db(sync=sync)
    assert db.position == Position(1, 31)
    got = [(e.stream, e.type, e.data, e.position) for t in db.read_log() for e in t.events]
    assert got == expected
    assert db.get("s0") is None
    assert [db.version(f"s{j}") for j in range(4)] == [9, 9, 8, 8]
    assert db.get("s1") == b"tx"
    db.close()
    db = open_db(sync="commit" if sync != "commit" else "none")  # sync is not persistent
    assert db.position == Position(1, 31)


@pytest.mark.parametrize("sync", ["fsync", "", None, "COMMIT", 1])
def test_invalid_sync_raises_engine_error(db_path, sync):
    with pytest.raises(engine.EngineError):
        engine.open(db_path, sync=sync)
    with engine.open(db_path) as db:  # nothing left locked
        db.append("s", "e", b"1")


@pytest.mark.parametrize("kw", [{"snapshot_every": 0}, {"snapshot_every": -1},
                                {"keep_snapshots": 0}, {"reducer": 42}])
def test_invalid_options_raise_engine_error(db_path, kw):
    with pytest.raises(engine.EngineError):
        engine.open(db_path, **kw)
    with engine.open(db_path) as db:
        assert db.position.tx_id == 0


def test_create_false_refuses_a_missing_database(tmp_path):
    path = str(tmp_path / "missing")
    with pytest.raises(engine.EngineError):
        engine.open(path, create=False)
    assert not os.path.exists(os.path.join(path, "log", "data.mdb"))


def test_state_is_not_shared_between_databases(open_db, tmp_path):
    a = open_db(str(tmp_path / "a"))
    b = open_db(str(tmp_path / "b"))
    a.append("s", "e", b"a")
    assert b.get("s") is None
    assert b.append("s", "e", b"b") == 1
    assert a.get("s") == b"a"
    assert a.db_id != b.db_id
