"""The C state index (open without a Python object per stream) agrees with the
eager dict state in every observable way, before and after writes and snapshots."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.native import StateIndex, encode_block
from engine.snapshot import list_snapshots, load_snapshot
from tests.snapshot.test_snapshot_blocks import _body, _rebuild

NAMES = st.sampled_from(["a", "b", "ünï", "s" * 30, "x/y", "delete", "k1", "k2"])
EVENT = st.tuples(NAMES, st.sampled_from(["set", "delete", "deleted", "x"]),
                  st.binary(max_size=24))
STEP = st.one_of(
    st.tuples(st.just("tx"), st.lists(EVENT, min_size=1, max_size=6)),
    st.tuples(st.just("snapshot"), st.none()),
)


def _observe(db: engine.Database, names: set[str]) -> dict[str, object]:
    return {n: (db.version(n), db.get(n), [(e.version, e.type, e.data, e.tx_id)
                                           for e in db.read_stream(n)]) for n in names}


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(STEP, min_size=1, max_size=12), st.lists(EVENT, min_size=1, max_size=5))
def test_indexed_open_equals_eager_open(tmp_path_factory, steps, after):
    path = str(tmp_path_factory.mktemp("idx") / "db")
    names = {"never-written"}
    with engine.open(path, keep_snapshots=2) as db:
        for kind, evs in steps:
            if kind == "snapshot":
                db.snapshot()
            else:
                with db.transaction() as tx:
                    tx.extend(evs)
                names |= {s for s, _, _ in evs}
    # default reducer: the C index; an equivalent custom reducer: the eager dict
    with engine.open(path) as lazy:
        assert lazy._pipeline.state.base is not None or lazy.position.tx_id == 0
        got_lazy = _observe(lazy, names)
        pos = lazy.position
    with engine.open(path, reducer=engine.default_reducer) as eager:
        assert eager._pipeline.state.base is None
        assert _observe(eager, names) == got_lazy and eager.position == pos
    # writes over the index shadow it; a snapshot is written from the index and the
    # writes (without folding them into a dict); reading it back gives the same
    with engine.open(path) as lazy:
        index = lazy._pipeline.state.base
        with lazy.transaction() as tx:
            tx.extend(after)
        names |= {s for s, _, _ in after}
        before = _observe(lazy, names)
        lazy.snapshot()
        assert lazy._pipeline.state.base is index
        assert _observe(lazy, names) == before
        assert set(lazy.streams()) == names - {"never-written"}
    with engine.open(path, reducer=engine.default_reducer) as eager:
        assert _observe(eager, names) == before


def test_streams_materialises_the_index(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        with db.transaction() as tx:
            tx.extend((f"s{i}", "set", b"v") for i in range(50))
        db.snapshot()
        db.append("late", "set", b"1")
    with engine.open(path) as db:
        assert db._pipeline.state.base is not None
        assert db.get("s7") == b"v" and db.version("late") == 1
        assert sorted(db.streams()) == sorted([f"s{i}" for i in range(50)] + ["late"])
        assert db._pipeline.state.base is None and db.get("s7") == b"v"


def test_index_grows_past_its_first_guess(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:  # no snapshot: every stream arrives in the tail
        for t in range(20):
            with db.transaction() as tx:
                tx.extend((f"s{t}-{i}", "set", f"{t}".encode()) for i in range(100))
    with engine.open(path) as db:
        index = db._pipeline.state.base
        assert index is not None and len(index) == 2000 and index._cap >= 2048
        assert db.get("s19-99") == b"19" and db.version("s0-0") == 1


def test_state_index_unit_grow_and_lookup():
    names = [f"n{i}" for i in range(300)]
    body = encode_block(names, [i + 1 for i in range(300)], [7] * 300,
                        [None if i % 10 == 0 else bytes([i % 256]) for i in range(300)])
    index = StateIndex(1)  # far too small: grows on the way
    index.put_body(body)
    assert len(index) == 300
    assert index.get("n10") == (11, None, 7)
    assert index.get("n11") == (12, bytes([11]), 7)
    assert index.get("absent") is None
    assert index.get("\udcff") is None  # not encodable: can never have been stored


def test_huge_tail_uses_the_eager_path(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.loader.LAZY_TAIL_BYTES", 0)
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        db.append("a", "set", b"1")
    with engine.open(path) as db:  # tail larger than allowed and no snapshot body
        assert db._pipeline.state.base is None and db.get("a") == b"1"


def test_tail_passing_the_budget_midway_switches_to_eager(tmp_path, monkeypatch):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        for t in range(10):
            with db.transaction() as tx:
                tx.extend((f"s{i}", "delete" if (t + i) % 7 == 0 else "set",
                           f"{t}:{i}".encode() * 20) for i in range(30))
        expected = {s: (db.version(s), db.get(s)) for s in db.streams()}
        record_bytes = len(db._log.get(1) or b"")
    monkeypatch.setattr("engine.loader.LAZY_TAIL_BYTES", 3 * record_bytes)
    with engine.open(path) as db:  # budget passed at the 4th of 10 records
        assert db._pipeline.state.base is None
        assert {s: (db.version(s), db.get(s)) for s in db.streams()} == expected
        assert db.position.tx_id == 10
    monkeypatch.setattr("engine.loader.LAZY_TAIL_BYTES", 20 * record_bytes)
    with engine.open(path) as db:  # within budget: indexed, same answers
        assert db._pipeline.state.base is not None
        assert {s: (db.version(s), db.get(s)) for s in expected} == expected


def test_snapshot_with_a_name_twice_is_refused(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        db.append("a", "set", b"1")
        db.append("b", "set", b"2")
        info = db.snapshot()
    with open(info.path, "rb") as f:
        data = f.read()
    assert len(_body(data)) > 0
    forged = encode_block(["a", "a"], [1, 1], [1, 2], [b"1", b"2"])  # counts still add up
    with open(info.path, "wb") as f:
        f.write(_rebuild(data, forged))
    assert load_snapshot(info.path).header.stream_count == 2  # file-level checks pass
    with pytest.raises(engine.CorruptSnapshotError, match="appears twice"):
        engine.open(path)
    with pytest.raises(engine.CorruptSnapshotError, match="appears twice"):
        _ = load_snapshot(info.path).state  # the eager path says the same
    assert [p for _, p in list_snapshots(os.path.join(path, "snapshots"))] == [info.path]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from([f"s{i}" for i in range(12)] + ["new1", "new2"]),
                min_size=1, max_size=12, unique=True))
def test_entries_of_agrees_with_lookup_over_both_layers(tmp_path_factory, streams):
    """State.entries_of (the commit path's bulk lookup) answers as lookup does for a
    state opened from a snapshot plus a tail (streams in base only, in the dict only,
    in both, in neither)."""
    path = str(tmp_path_factory.mktemp("db"))
    with engine.open(path) as db:
        _extend(db, [(f"s{i}", "set", b"v%d" % i) for i in range(8)])
        db.snapshot()
        _extend(db, [(f"s{i}", "set", b"w%d" % i) for i in range(4, 10)])  # the tail
    with engine.open(path) as db:
        state = db._pipeline.state
        assert state.base is not None  # the indexed open: two layers
        _extend(db, [("s2", "set", b"dict"), ("s11", "set", b"dict")])  # dict layer
        assert state.entries_of(streams) == [state.lookup(s) for s in streams]
        versions = {s: db.version(s) for s in streams}
        _extend(db, [(s, "set", b"z") for s in streams])  # plan() through entries_of
        assert {s: db.version(s) for s in streams} == {s: v + 1 for s, v in versions.items()}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from([f"s{i}" for i in range(6)] + ["new1", "new2"]),
                min_size=1, max_size=10))
def test_entries_of_agrees_with_lookup_on_the_dict_alone(tmp_path_factory, streams):
    """A state with no base layer: entries_of's all-present pass (itemgetter) and its
    fallback once a stream is missing (first, last, repeated, or the only one) answer
    as lookup does, and commits through them count versions on."""
    path = str(tmp_path_factory.mktemp("db"))
    with engine.open(path) as db:
        _extend(db, [(f"s{i}", "set", b"v%d" % i) for i in range(6)])
        state = db._pipeline.state
        assert state.base is None
        assert state.entries_of(streams) == [state.lookup(s) for s in streams]
        assert state.entries_of(tuple(streams)) == [state.lookup(s) for s in streams]
        before = {s: db.version(s) for s in streams}
        _extend(db, [(s, "set", b"z") for s in streams])
        assert {s: db.version(s) for s in streams} == {
            s: v + streams.count(s) for s, v in before.items()}


def _extend(db: engine.Database, events: list[tuple[str, str, bytes]]) -> None:
    with db.transaction() as tx:
        tx.extend(events)


def test_a_fresh_database_has_no_base_layer(tmp_path):
    with engine.open(str(tmp_path / "db")) as db:
        assert db._pipeline.state.base is None
        db.append("a", "set", b"1")
        assert db.get("a") == b"1" and db.version("a") == 1


def test_put_body_refuses_a_body_the_decoder_refuses():
    good = encode_block(["a", "b"], [1, 2], [1, 1], [b"x", None])
    bad = bytearray(good)
    bad[-1] ^= 1  # the block's checksum
    index = StateIndex(4)
    with pytest.raises(engine.CorruptSnapshotError, match=r"cannot be indexed: .*checksum"):
        index.put_body(bytes(bad))
    index = StateIndex(4)
    index.put_body(good)
    assert index.get("b") == (2, None, 1) and len(index) == 2
