"""Optimistic concurrency: ``expected_version`` and ConcurrencyError."""

from __future__ import annotations

import pytest

import engine


def _log(db):
    return [(e.stream, e.type, e.data, e.version) for tx in db.read_log() for e in tx.events]


def test_expected_version_zero_creates_a_new_stream(open_db):
    db = open_db()
    assert db.append("s", "created", b"1", expected_version=0) == 1
    assert db.version("s") == 1
    with pytest.raises(engine.ConcurrencyError) as ei:
        db.append("s", "created", b"again", expected_version=0)
    assert (ei.value.stream, ei.value.expected, ei.value.actual) == ("s", 0, 1)


def test_expected_version_match_appends(open_db):
    db = open_db()
    for v in range(5):
        assert db.append("s", "e", str(v).encode(), expected_version=v) == v + 1
    assert db.version("s") == 5
    assert db.get("s") == b"4"


@pytest.mark.parametrize("expected", [0, 1, 3, 100])
def test_expected_version_mismatch_raises_and_writes_nothing(open_db, expected):
    db = open_db()
    db.append("s", "e", b"1")
    db.append("s", "e", b"2")
    db.append("other", "e", b"x")
    before = _log(db)
    with pytest.raises(engine.ConcurrencyError) as ei:
        db.append("s", "e", b"3", expected_version=expected)
    err = ei.value
    assert isinstance(err, engine.EngineError)
    assert (err.stream, err.expected, err.actual) == ("s", expected, 2)
    assert "'s'" in str(err)
    assert _log(db) == before
    assert (db.get("s"), db.version("s")) == (b"2", 2)
    assert db.position.tx_id == 3
    assert db.append("s", "e", b"3", expected_version=2) == 4


def test_expected_version_on_unknown_stream_reports_actual_zero(open_db):
    db = open_db()
    with pytest.raises(engine.ConcurrencyError) as ei:
        db.append("ghost", "e", b"1", expected_version=1)
    assert (ei.value.stream, ei.value.expected, ei.value.actual) == ("ghost", 1, 0)
    assert db.version("ghost") == 0
    assert list(db.read_log()) == []


def test_two_appends_to_one_stream_in_a_transaction(open_db):
    db = open_db()
    db.append("s", "e", b"1")
    with db.transaction() as tx:
        tx.append("s", "e", b"2", expected_version=1)
        tx.append("s", "e", b"3", expected_version=2)
        tx.append("n", "e", b"a", expected_version=0)
        tx.append("n", "e", b"b", expected_version=1)
    assert tx.tx_id == 2
    assert (db.get("s"), db.version("s")) == (b"3", 3)
    assert (db.get("n"), db.version("n")) == (b"b", 2)
    assert _log(db)[1:] == [("s", "e", b"2", 2), ("s", "e", b"3", 3),
                            ("n", "e", b"a", 1), ("n", "e", b"b", 2)]


@pytest.mark.parametrize("second", [1, 3])
def test_second_expected_version_in_transaction_counts_the_first(open_db, second):
    db = open_db()
    db.append("s", "e", b"1")
    before = _log(db)
    with pytest.raises(engine.ConcurrencyError) as ei, db.transaction() as tx:
        tx.append("s", "e", b"2", expected_version=1)
        tx.append("s", "e", b"3", expected_version=second)  # the stream is at 2 here
    assert (ei.value.stream, ei.value.expected, ei.value.actual) == ("s", second, 2)
    assert tx.tx_id is None
    assert _log(db) == before
    assert (db.get("s"), db.version("s")) == (b"1", 1)


def test_concurrency_error_in_transaction_leaves_no_trace(open_db, db_path):
    db = open_db()
    db.append("a", "e", b"a1")
    db.append("b", "e", b"b1")
    before = _log(db)
    with pytest.raises(engine.ConcurrencyError), db.transaction() as tx:
        tx.append("a", "e", b"a2")
        tx.extend([("c", "e", b"c1"), ("d", "e", b"d1")])
        tx.append("b", "e", b"b2", expected_version=0)
    assert tx.tx_id is None
    assert _log(db) == before
    for s, val, ver in [("a", b"a1", 1), ("b", b"b1", 1), ("c", None, 0), ("d", None, 0)]:
        assert (db.get(s), db.version(s)) == (val, ver)
    assert [e.data for e in db.read_stream("a")] == [b"a1"]
    assert list(db.read_stream("c")) == []
    assert db.position.tx_id == 2
    # tx id 3 was not consumed; positions stay gap-free
    assert db.append("c", "e", b"c1") == 3
    events = [e for t in db.read_log() for e in t.events]
    assert [e.position for e in events] == [1, 2, 3]
    db.close()
    db = open_db()
    assert _log(db) == [*before, ("c", "e", b"c1", 1)]
    assert (db.get("d"), db.version("d")) == (None, 0)


def test_expected_version_after_delete_counts_the_delete(open_db):
    db = open_db()
    db.append("s", "e", b"1")
    db.append("s", "delete", b"")
    with pytest.raises(engine.ConcurrencyError):
        db.append("s", "e", b"2", expected_version=0)
    assert db.append("s", "e", b"2", expected_version=2) == 3
    assert (db.get("s"), db.version("s")) == (b"2", 3)
