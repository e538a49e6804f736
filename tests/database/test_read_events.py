"""``db.read_events``: reads by global position, seeking by binary search, filtering
by type, bounded by ``to_position`` (inclusive) and ``limit``; lost history raises."""

from __future__ import annotations

import os
import random

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.errors import CorruptLogError
from engine.log import tx_key
from tests.recovery.helpers import admin_json, delete_log, write_txs

TYPES = ("opened", "deposited", "withdrawn")


def _fill(db: engine.Database, txs: int, seed: int) -> list[engine.Event]:
    rnd = random.Random(seed)
    for t in range(txs):
        with db.transaction() as tx:
            for i in range(rnd.randint(1, 12)):
                tx.append(f"acct-{rnd.randint(0, 40)}", rnd.choice(TYPES), b"%d.%d" % (t, i))
    return [e for t in db.read_log() for e in t.events]


@pytest.fixture(scope="module")
def filled(tmp_path_factory):  # type: ignore[no-untyped-def]
    path = str(tmp_path_factory.mktemp("events") / "db")
    db = engine.open(path, sync="none")
    events = _fill(db, 400, seed=3)
    yield db, events
    db.close()


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_read_events_is_the_log_filtered(filled, data):
    db, events = filled
    last = len(events)
    a = data.draw(st.integers(1, last + 3), label="from")
    b = data.draw(st.none() | st.integers(0, last + 3), label="to")
    types = data.draw(st.none() | st.frozensets(st.sampled_from((*TYPES, "absent"))),
                      label="types")
    limit = data.draw(st.none() | st.integers(0, 50), label="limit")
    got = list(db.read_events(a, b, types=types, limit=limit))
    want = [e for e in events if e.position >= a and (b is None or e.position <= b)
            and (types is None or e.type in types)]
    assert got == (want if limit is None else want[:limit])


def test_positions_are_the_log_s_and_gap_free(filled):
    db, events = filled
    assert [e.position for e in db.read_events()] == list(range(1, db.last_position + 1))
    assert db.last_position == len(events)


def test_every_single_position_is_found(filled):
    db, events = filled
    for e in events:
        assert list(db.read_events(e.position, e.position)) == [e]


def test_a_read_sees_only_what_was_committed_when_it_began(db_path):
    with engine.open(db_path) as db:
        for i in range(10):
            db.append("s", "e", b"%d" % i)
        it = db.read_events(1)
        first = next(it)
        db.append("s", "e", b"late")
        assert first.position == 1 and [e.position for e in it] == list(range(2, 11))
        assert [e.data for e in db.read_events(11)] == [b"late"]


@pytest.mark.parametrize(("args", "kwargs"), [
    ((0,), {}), ((-1,), {}), ((2**64,), {}), (("1",), {}), ((1.0,), {}), ((True,), {}),
    ((1, -1), {}), ((1, 2**64), {}), ((1, "5"), {}),
    ((1,), {"limit": -1}), ((1,), {"limit": "3"}), ((1,), {"limit": 1.5}),
    ((1,), {"types": "opened"}), ((1,), {"types": b"opened"}), ((1,), {"types": 5}),
    ((1,), {"types": [1]}), ((1,), {"types": [None]}),
])
def test_bad_arguments_are_invalid_event_errors(filled, args, kwargs):
    db, _ = filled
    with pytest.raises(engine.InvalidEventError):
        list(db.read_events(*args, **kwargs))


def test_empty_database_and_past_the_end(db_path):
    with engine.open(db_path) as db:
        assert list(db.read_events()) == [] and db.last_position == 0
        db.append("s", "e", b"x")
        assert list(db.read_events(2)) == []
        assert list(db.read_events(1, 0)) == []
        assert list(db.read_events(1, limit=0)) == []


def test_reopened_database_reads_the_same(db_path):
    with engine.open(db_path) as db:
        events = _fill(db, 50, seed=9)
        db.snapshot()
        _fill(db, 5, seed=10)
        events = [e for t in db.read_log() for e in t.events]
    with engine.open(db_path) as db:
        assert list(db.read_events()) == events
        assert list(db.read_events(len(events) - 2, types={"opened"})) == \
            [e for e in events[-3:] if e.type == "opened"]


def test_positions_lost_in_a_recovery_raise_history_lost(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        write_txs(db, 6)
        db.snapshot()  # positions 1..12 at tx 6
    delete_log(path)
    assert admin_json("recover", "--new-epoch", path)[0] == 0
    with engine.open(path) as db:
        db.append("s1", "set", b"new")
        with pytest.raises(engine.HistoryLostError, match="position 13"):
            list(db.read_events(1))
        with pytest.raises(engine.HistoryLostError):
            list(db.read_events(12))
        (ev,) = list(db.read_events(13))
        assert (ev.position, ev.epoch, ev.tx_id, ev.data) == (13, 2, 7, b"new")


def _drop_record(path: str, tx_id: int) -> None:
    env = lmdb.open(os.path.join(path, "log"), max_dbs=0)
    with env.begin(write=True) as txn:
        assert txn.delete(tx_key(tx_id))
    env.close()


def test_a_record_missing_mid_log_is_corrupt_never_skipped(db_path):
    """A key missing in the middle of the log (the snapshot covers it, so open does
    not replay it) is reported by read_events and read_log, never stepped over."""
    with engine.open(db_path) as db:
        for i in range(64):
            db.append("s", "e", b"%d" % i)
        db.snapshot()
    _drop_record(db_path, 30)
    with engine.open(db_path) as db:
        with pytest.raises(CorruptLogError, match="tx 30 is committed but missing"):
            list(db.read_events(1))
        with pytest.raises(CorruptLogError, match="tx 30 is committed but missing"):
            list(db.read_events(25, 35))
        with pytest.raises(CorruptLogError, match="tx 30 is committed but missing"):
            list(db.read_log(1))
        assert [e.position for e in db.read_events(33, 35)] == [33, 34, 35]
        assert [e.position for e in db.read_events(1, 29)] == list(range(1, 30))


def test_a_record_missing_where_the_seek_probes_is_corrupt(db_path):
    with engine.open(db_path) as db:
        for i in range(64):
            db.append("s", "e", b"%d" % i)
        db.snapshot()
    _drop_record(db_path, 32)  # the first probe of a search over 1..64
    with engine.open(db_path) as db, pytest.raises(CorruptLogError, match="tx 32 is"):
        list(db.read_events(50))


def _poke_first_position(path: str, tx_id: int, value: int) -> None:
    """Overwrite a record's first_position in place (its checksum then fails)."""
    env = lmdb.open(os.path.join(path, "log"), max_dbs=0)
    with env.begin(write=True) as txn:
        rec = bytearray(txn.get(tx_key(tx_id)))
        rec[32:40] = value.to_bytes(8, "little")
        txn.put(tx_key(tx_id), bytes(rec))
    env.close()


def test_a_lying_header_never_makes_read_events_skip_events(db_path):
    """The seek trusts unchecked headers; a damaged one that sends it past the target
    must end in CorruptLogError, never in a read that silently starts later (review
    finding: zeroing tx 50's first_position used to yield 51.. for read_events(30))."""
    with engine.open(db_path) as db:
        for i in range(100):
            db.append("s", "e", b"%d" % i)
        db.snapshot()
    _poke_first_position(db_path, 50, 0)
    with engine.open(db_path) as db:
        for start in (30, 45, 50):
            with pytest.raises(CorruptLogError):
                list(db.read_events(start, 60))
        assert [e.position for e in db.read_events(51, 53)] == [51, 52, 53]
