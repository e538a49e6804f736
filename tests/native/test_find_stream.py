"""StreamFinder (read_stream's selective decode in C, ``eng_tx_find_stream``) agrees
with the pure-Python reference: the full ``decode_tx`` filtered by stream name, on
valid records and on hostile ones (mutated and re-signed)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import CorruptLogError
from engine.native import StreamFinder, decode_tx, encode_tx, xxh64

# Names that are prefixes and suffixes of each other, multi-byte UTF-8, long ones.
NAMES = ["a", "ab", "abc", "b", "ba", "ünï", "ün", "😀", "d" * 40, "account-0000042",
         "account-0000043"]
names = st.sampled_from(NAMES)
events = st.lists(st.tuples(names, st.sampled_from(["set", "delete", "x", "ü"]),
                            st.binary(max_size=40)), min_size=1, max_size=40)


def _record(evs: list[tuple[str, str, bytes]], tx_id: int = 9) -> bytes:
    streams = [s for s, _, _ in evs]
    return bytes(encode_tx(tx_id, 2, 123, 50, list(range(1, len(evs) + 1)),
                           list(range(len(evs))), ("\0".join(streams) + "\0").encode(),
                           ("\0".join(t for _, t, _ in evs) + "\0").encode(),
                           [d for _, _, d in evs]))


def _reference(rec: bytes, stream: str) -> tuple[int, int, int, int, list[tuple[object, ...]]]:
    """decode_tx, then the stream's events by a plain filter."""
    full = decode_tx(rec)
    got = [(i, full.versions[i], full.prev_tx[i], full.types[i], full.datas[i])
           for i, s in enumerate(full.streams) if s == stream]
    return full.tx_id, full.epoch, full.ts_ns, full.first_position, got


def _found(rec: bytes, stream: str, cap: int = 8) -> tuple[int, int, int, int,
                                                            list[tuple[object, ...]]]:
    """StreamFinder.find, its hits turned into the reference's shape."""
    tx_id, epoch, ts_ns, p0, hits = StreamFinder(stream, cap).find(rec)
    assert len(hits) % 7 == 0
    got = []
    for j in range(0, len(hits), 7):
        i, v, prev, to, tl, do, dl = hits[j : j + 7]
        got.append((i, v, prev, bytes(rec[to : to + tl]).decode(), bytes(rec[do : do + dl])))
    return tx_id, epoch, ts_ns, p0, got


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(events, names, st.sampled_from([1, 2, 8, 64]))
def test_find_matches_decode_and_filter(evs, stream, cap):
    rec = _record(evs)
    want = _reference(rec, stream)
    assert _found(rec, stream, cap) == want
    assert want[:4] == (9, 2, 123, 50)
    # a memoryview (what read_stream passes, straight from LMDB) gives the same
    assert _found(memoryview(rec), stream, cap) == want  # type: ignore[arg-type]


def _resign(rec: bytearray) -> bytes:
    rec[-8:] = struct.pack("<Q", xxh64(bytes(rec[:-8])))
    return bytes(rec)


def _verdict(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return fn(*args)
    except CorruptLogError as exc:
        return ("corrupt", exc.code)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(events, names, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                               min_size=1, max_size=4), st.booleans())
def test_find_agrees_with_decode_on_hostile_records(evs, stream, edits, resign):
    """Bytes rewritten anywhere (header, columns, names: often into ill-formed UTF-8),
    re-signed so that the deep checks are reached: the finder raises exactly when the
    reference does, with the same code, and otherwise finds the same events."""
    rec = bytearray(_record(evs))
    for at, byte in edits:
        rec[at % (len(rec) - 8)] = byte
    data = _resign(rec) if resign else bytes(rec)
    assert _verdict(_found, data, stream) == _verdict(_reference, data, stream)


@pytest.mark.parametrize("bad", [b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                                 b"\xe2\x82", b"\x80", b"\xff"])
@pytest.mark.parametrize("column", ["streams", "types"])
def test_ill_formed_utf8_in_any_name_is_corrupt(bad, column):
    """The other events' names are checked too, as decode_tx checks them."""
    streams = b"s\0" + (b"x" + bad if column == "streams" else b"t") + b"\0"
    types = b"e\0" + (b"y" + bad if column == "types" else b"f") + b"\0"
    rec = bytes(encode_tx(1, 1, 0, 1, [1, 1], [0, 0], streams, types, [b"1", b"2"]))
    with pytest.raises(CorruptLogError) as ref:
        decode_tx(rec)
    with pytest.raises(CorruptLogError) as got:
        StreamFinder("s").find(rec)
    assert got.value.code == ref.value.code == -6


def test_exact_names_only():
    rec = _record([("ab", "set", b"1"), ("a", "set", b"2"), ("abc", "set", b"3"),
                   ("ba", "set", b"4")])
    assert [e[4] for e in _found(rec, "a")[4]] == [b"2"]
    assert [e[4] for e in _found(rec, "ab")[4]] == [b"1"]
    assert _found(rec, "b")[4] == []
    assert _found(rec, "a\0ab")[4] == []  # a NUL inside the name matches nothing
    assert _found(rec, "\udcff")[4] == []  # a lone surrogate: no record holds it


def test_the_hit_array_grows_for_a_record_of_one_stream():
    rec = _record([("s", "set", b"%d" % i) for i in range(300)])
    finder = StreamFinder("s", 1)
    hits = finder.find(rec)[4]
    assert hits[1::7] == list(range(1, 301))
    assert finder.find(rec)[4] == hits  # the grown array is reused


def test_a_damaged_record_is_corrupt():
    rec = bytearray(_record([("a", "set", b"xyz")]))
    rec[-20] ^= 1
    with pytest.raises(CorruptLogError, match="checksum"):
        StreamFinder("a").find(bytes(rec))
