"""The state: the default reducer, custom reducers, and their failure modes."""

from __future__ import annotations

import pytest

import engine
from engine.model import Event


def _log(db):
    return [(e.stream, e.type, e.data) for tx in db.read_log() for e in tx.events]


# ------------------------------------------------------------ default reducer


def test_default_reducer_sets_and_delete_clears(open_db):
    db = open_db()
    db.append("acct", "opened", b"v1")
    assert (db.get("acct"), db.version("acct")) == (b"v1", 1)
    db.append("acct", "renamed", b"v2")
    assert (db.get("acct"), db.version("acct")) == (b"v2", 2)
    db.append("acct", "delete", b"ignored")
    assert db.get("acct") is None
    assert db.version("acct") == 3  # a delete is an event: the version keeps counting
    db.append("acct", "reopened", b"v4")
    assert (db.get("acct"), db.version("acct")) == (b"v4", 4)
    db.append("acct", "delete", b"")
    assert (db.get("acct"), db.version("acct")) == (None, 5)


def test_default_reducer_any_other_type_sets_even_empty_data(open_db):
    db = open_db()
    db.append("s", "x", b"abc")
    db.append("s", "Delete", b"")  # case matters: only "delete" clears
    assert db.get("s") == b""
    assert db.version("s") == 2


def test_default_reducer_in_one_transaction_last_event_wins(open_db):
    db = open_db()
    with db.transaction() as tx:
        tx.append("a", "set", b"1")
        tx.append("b", "set", b"x")
        tx.append("a", "set", b"2")
        tx.append("b", "delete", b"")
        tx.append("a", "delete", b"")
        tx.append("a", "set", b"3")
    assert (db.get("a"), db.version("a")) == (b"3", 4)
    assert (db.get("b"), db.version("b")) == (None, 2)


def test_default_reducer_state_survives_reopen(open_db, db_path):
    db = open_db()
    db.append("a", "set", b"1")
    db.append("a", "delete", b"")
    db.append("b", "set", b"2")
    db.close()
    db = open_db()
    assert (db.get("a"), db.version("a")) == (None, 2)
    assert (db.get("b"), db.version("b")) == (b"2", 1)
    db.snapshot()
    db.append("b", "set", b"3")
    db.close()
    db = open_db()
    assert (db.get("a"), db.version("a")) == (None, 2)
    assert (db.get("b"), db.version("b")) == (b"3", 2)


# ------------------------------------------------------------- custom reducer


def test_custom_reducer_sees_previous_value_and_event_fields(open_db):
    seen: list[tuple[bytes | None, Event]] = []

    def reducer(value, event):
        seen.append((value, event))
        return (value or b"") + event.data

    db = open_db(reducer=reducer)
    db.append("s", "a", b"1")
    with db.transaction() as tx:
        tx.append("other", "o", b"z")
        tx.append("s", "b", b"2")
        tx.append("s", "c", b"3")
    assert db.get("s") == b"123"
    assert db.get("other") == b"z"

    assert [v for v, _ in seen] == [None, None, b"1", b"12"]
    events = [e for _, e in seen]
    assert all(isinstance(e, Event) for e in events)
    assert [(e.stream, e.type, e.data, e.version) for e in events] == [
        ("s", "a", b"1", 1), ("other", "o", b"z", 1), ("s", "b", b"2", 2), ("s", "c", b"3", 3),
    ]
    assert [e.position for e in events] == [1, 2, 3, 4]
    assert [e.tx_id for e in events] == [1, 2, 2, 2]
    assert {e.epoch for e in events} == {1}
    # the reducer sees the events exactly as read_log reports them
    logged = [e for tx in db.read_log() for e in tx.events]
    assert [e[:7] for e in logged] == [e[:7] for e in events]
    for a, b in zip(logged, events, strict=True):
        assert a.ts == pytest.approx(b.ts, abs=1e-3)


def test_custom_reducer_replays_on_reopen(open_db):
    def count(value, event):
        n = int(value or b"0")
        return None if event.type == "reset" else str(n + len(event.data)).encode()

    db = open_db(reducer=count)
    db.append("c", "add", b"xx")
    db.append("c", "add", b"xxx")
    db.append("d", "add", b"x")
    db.append("d", "reset", b"")
    db.close()
    db = open_db(reducer=count)
    assert db.get("c") == b"5"
    assert db.get("d") is None
    assert db.version("d") == 2


def test_custom_reducer_returning_none_keeps_version(open_db):
    db = open_db(reducer=lambda v, e: None)
    db.append("s", "a", b"1")
    db.append("s", "b", b"2")
    assert db.get("s") is None
    assert db.version("s") == 2


class Boom(Exception):
    pass


def test_custom_reducer_exception_aborts_whole_transaction(open_db):
    def reducer(value, event):
        if event.data == b"bad":
            raise Boom("reducer refuses")
        return event.data

    db = open_db(reducer=reducer)
    db.append("a", "set", b"a1")
    before_log = _log(db)
    with pytest.raises(Boom), db.transaction() as tx:
        tx.append("a", "set", b"a2")
        tx.append("b", "set", b"b1")
        tx.append("c", "set", b"bad")
    assert _log(db) == before_log
    assert (db.get("a"), db.version("a")) == (b"a1", 1)
    assert (db.get("b"), db.version("b")) == (None, 0)
    assert (db.get("c"), db.version("c")) == (None, 0)
    assert db.position.tx_id == 1

    with pytest.raises(Boom):
        db.append("a", "set", b"bad")
    assert (db.get("a"), db.version("a")) == (b"a1", 1)
    assert db.position.tx_id == 1

    # the tx id was not consumed, and nothing of the failed txs is replayed on reopen
    assert db.append("b", "set", b"b1") == 2
    db.close()
    db = open_db(reducer=reducer)
    assert _log(db) == [("a", "set", b"a1"), ("b", "set", b"b1")]
    assert (db.get("a"), db.version("a"), db.get("b"), db.version("b")) == (b"a1", 1, b"b1", 1)


@pytest.mark.parametrize("bad", ["text", bytearray(b"x"), 1, memoryview(b"x")])
def test_custom_reducer_returning_non_bytes_raises_and_writes_nothing(open_db, bad):
    def reducer(value, event):
        return bad if event.type == "bad" else event.data

    db = open_db(reducer=reducer)
    db.append("s", "ok", b"1")
    with pytest.raises((TypeError, engine.EngineError)):
        db.append("s", "bad", b"2")
    with pytest.raises((TypeError, engine.EngineError)), db.transaction() as tx:
        tx.append("t", "ok", b"1")
        tx.append("s", "bad", b"2")
    assert _log(db) == [("s", "ok", b"1")]
    assert (db.get("s"), db.version("s")) == (b"1", 1)
    assert (db.get("t"), db.version("t")) == (None, 0)
    assert db.append("s", "ok", b"3") == 2


def test_replay_shows_the_reducer_exactly_the_events_of_the_commit(open_db):
    seen: list[tuple[bytes | None, Event]] = []

    def recorder(value, event):
        seen.append((value, event))
        return None if event.type == "delete" else (value or b"") + event.data

    db = open_db(reducer=recorder)
    db.append("a", "x", b"1")
    with db.transaction() as tx:
        tx.extend([("a", "x", b"2"), ("b", "x", b"3"), ("a", "delete", b""), ("a", "x", b"4")])
    db.append("b", "x", b"5")
    at_commit = list(seen)
    state = {s: (db.get(s), db.version(s)) for s in "ab"}
    db.close()
    seen.clear()
    db = open_db(reducer=recorder)
    assert seen == at_commit
    assert {s: (db.get(s), db.version(s)) for s in "ab"} == state == {
        "a": (b"4", 4), "b": (b"35", 2)}
