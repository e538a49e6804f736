"""Bad input raises InvalidEventError and writes nothing, on every entry point."""

from __future__ import annotations

from collections import namedtuple

import pytest

import engine
from engine import formats

MAX_NAME = formats.MAX_NAME_BYTES
MAX_TYPE = formats.MAX_TYPE_BYTES


def _snapshot_of(db):
    log = [(e.stream, e.type, e.data) for t in db.read_log() for e in t.events]
    return log, db.position, {s: (db.get(s), db.version(s)) for s in ["base", "ok"]}


@pytest.fixture
def db(open_db):
    db = open_db(sync="none")
    db.append("base", "e", b"0")
    return db


BAD_NAMES = [
    pytest.param(None, id="none"),
    pytest.param(1, id="int"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param("", id="empty"),
    pytest.param("a\0b", id="nul"),
    pytest.param("\0", id="only-nul"),
    pytest.param("bad\udc80", id="lone-surrogate"),
    pytest.param("\ud800", id="lone-high-surrogate"),
]


def _long_names(limit):
    return [
        pytest.param("x" * (limit + 1), id="ascii-over"),
        # under the limit in characters, over it in UTF-8 bytes
        pytest.param("é" * (limit // 2 + 1), id="2byte-over"),
        pytest.param("€" * (limit // 3 + 1), id="3byte-over"),
        pytest.param("x" * (limit - 1) + "é", id="ascii-plus-one-2byte"),
    ]


BAD_STREAMS = BAD_NAMES + _long_names(MAX_NAME)
BAD_TYPES = BAD_NAMES + _long_names(MAX_TYPE)
BAD_DATA = [
    pytest.param(None, id="none"),
    pytest.param("text", id="str"),
    pytest.param(bytearray(b"abc"), id="bytearray"),
    pytest.param(memoryview(b"abc"), id="memoryview"),
    pytest.param(1, id="int"),
    pytest.param([1, 2], id="list"),
]


def _calls(stream, etype, data):
    """Every way of adding one event, each expected to raise InvalidEventError."""

    def append(db):
        db.append(stream, etype, data)

    def tx_append(db):
        with db.transaction() as tx:
            tx.append("ok", "e", b"fine")
            tx.append(stream, etype, data)

    def tx_extend(db):
        with db.transaction() as tx:
            tx.extend([("ok", "e", b"fine"), (stream, etype, data), ("ok", "e", b"fine2")])

    def tx_extend_gen(db):
        with db.transaction() as tx:
            tx.extend(x for x in [("ok", "e", b"fine"), (stream, etype, data)])

    return [append, tx_append, tx_extend, tx_extend_gen]


def _check_refused(db, stream, etype, data):
    before = _snapshot_of(db)
    for call in _calls(stream, etype, data):
        with pytest.raises(engine.InvalidEventError):
            call(db)
        assert _snapshot_of(db) == before, call.__name__
    assert db.append("ok", "e", b"after") == before[1].tx_id + 1


@pytest.mark.parametrize("stream", BAD_STREAMS)
def test_bad_stream_refused(db, stream):
    _check_refused(db, stream, "e", b"d")


@pytest.mark.parametrize("etype", BAD_TYPES)
def test_bad_type_refused(db, etype):
    _check_refused(db, "s", etype, b"d")


@pytest.mark.parametrize("data", BAD_DATA)
def test_bad_data_refused(db, data):
    _check_refused(db, "s", "e", data)


def test_invalid_event_error_is_engine_and_value_error():
    assert issubclass(engine.InvalidEventError, engine.EngineError)
    assert issubclass(engine.InvalidEventError, ValueError)


def test_names_at_the_limits_are_accepted(db):
    names = ["x" * MAX_NAME, "é" * (MAX_NAME // 2), "€" * (MAX_NAME // 3) + "x",
             "日本語のストリーム", "😀" * (MAX_NAME // 4)]
    types = ["t" * MAX_TYPE, "é" * (MAX_TYPE // 2), "😀" * (MAX_TYPE // 4)]
    for i, s in enumerate(names):
        assert len(s.encode()) <= MAX_NAME
        db.append(s, types[i % len(types)], b"%d" % i)
    with db.transaction() as tx:
        tx.extend((s, types[0], b"x") for s in names)
    for i, s in enumerate(names):
        assert db.version(s) == 2
        assert [e.type for e in db.read_stream(s)] == [types[i % len(types)], types[0]]


def test_data_over_the_event_limit_refused(db):
    big = bytes(formats.MAX_EVENT_BYTES + 1)  # zero pages: cheap
    _check_refused(db, "s", "e", big)


def test_data_at_the_event_limit_accepted(db, open_db):
    big = b"\x5a" * formats.MAX_EVENT_BYTES
    tx_id = db.append("big", "e", big)
    assert db.get("big") == big
    db.close()
    db = open_db(sync="none")
    assert db.get("big") == big
    (ev,) = db.read_stream("big")
    assert ev.tx_id == tx_id and ev.data == big


@pytest.mark.parametrize("expected", [-1, 1.0, "0", True, False, [0]])
def test_bad_expected_version_refused(db, expected):
    before = _snapshot_of(db)
    with pytest.raises(engine.InvalidEventError):
        db.append("base", "e", b"x", expected_version=expected)
    with pytest.raises(engine.InvalidEventError), db.transaction() as tx:
        tx.append("ok", "e", b"fine")
        tx.append("base", "e", b"x", expected_version=expected)
    assert _snapshot_of(db) == before


BAD_ELEMENTS = [
    pytest.param(("s", "e"), id="pair"),
    pytest.param(("s", "e", b"d", b"extra"), id="quadruple"),
    pytest.param(None, id="none"),
    pytest.param(5, id="int"),
    pytest.param("sed", id="3-char-str"),
    pytest.param(b"abc", id="3-bytes"),
    pytest.param(("s", "e", "str-data"), id="str-data"),
    pytest.param(("", "e", b"d"), id="empty-stream"),
    pytest.param(("s", None, b"d"), id="none-type"),
]


@pytest.mark.parametrize("as_gen", [False, True], ids=["list", "generator"])
@pytest.mark.parametrize("position", [0, 1, 2])
@pytest.mark.parametrize("bad", BAD_ELEMENTS)
def test_extend_with_a_bad_element_adds_none_of_its_events(db, bad, position, as_gen):
    events = [("ok", "e", b"1"), ("ok", "e", b"2")]
    events.insert(position, bad)
    before = _snapshot_of(db)
    with db.transaction() as tx:
        tx.append("ok", "kept", b"k")
        with pytest.raises(engine.InvalidEventError):
            tx.extend(x for x in events) if as_gen else tx.extend(events)
    # only the event appended before the failed extend committed
    assert tx.tx_id == before[1].tx_id + 1
    (committed,) = db.read_log(tx.tx_id)
    assert [(e.stream, e.type, e.data) for e in committed.events] == [("ok", "kept", b"k")]
    assert db.version("ok") == 1


@pytest.mark.parametrize("events", [None, 5, object()], ids=["none", "int", "object"])
def test_extend_with_a_non_iterable_raises(db, events):
    before = _snapshot_of(db)
    with pytest.raises(engine.InvalidEventError), db.transaction() as tx:
        tx.extend(events)
    assert _snapshot_of(db) == before


def test_extend_accepts_lists_and_tuples_of_three(db):
    with db.transaction() as tx:
        tx.extend([["a", "e", b"1"], ("b", "e", b"2")])
        tx.extend(iter([("a", "e", b"3")]))
    assert [(e.stream, e.data) for e in next(iter(db.read_log(tx.tx_id))).events] == [
        ("a", b"1"), ("b", b"2"), ("a", b"3")]


def test_extend_accepts_named_tuples_and_subclasses_beside_plain_triples(db):
    # tx.extend's fast path takes only exact tuples and lists; subclasses are checked
    # one by one first and must come out as the same columns
    Ev = namedtuple("Ev", "stream type data")

    class Row(list):
        pass

    with db.transaction() as tx:
        tx.extend([Ev("a", "e", b"1"), ("b", "e", b"2"), Row(["a", "f", b"3"])])
    assert [(e.stream, e.type, e.data) for e in next(iter(db.read_log(tx.tx_id))).events] == [
        ("a", "e", b"1"), ("b", "e", b"2"), ("a", "f", b"3")]
    with pytest.raises(engine.InvalidEventError, match=r"events\[1\] must be"), \
            db.transaction() as tx:
        tx.extend([Ev("a", "e", b"4"), Ev("a", "e", b"5")._replace(data=b"6")[:2]])
    assert db.version("a") == 2


def test_read_stream_bad_from_version(db):
    for bad in [0, -1, 1.5, "1"]:
        with pytest.raises(engine.InvalidEventError):
            list(db.read_stream("base", from_version=bad))
