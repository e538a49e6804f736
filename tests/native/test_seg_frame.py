"""native.frame_records (C eng_seg_frame, eng_seg_frame_v) and seal_segment (eng_seg_seal)
against a Python reference of the same checks:
each record decodes, and the run continues (tx ids, epoch, positions)."""

from __future__ import annotations

import struct

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from engine import formats
from engine.errors import CorruptLogError
from engine.native import (
    FrameError,
    decode_tx,
    encode_tx,
    frame_records,
    seal_segment,
    xxh64_parts,
)


def _rec(tx: int, epoch: int, pos: int, n: int) -> bytes:
    names = "".join(f"s{i}\0" for i in range(n)).encode()
    return bytes(encode_tx(tx, epoch, 1, pos, [1] * n, [0] * n, names, b"e\0" * n,
                           [b"d%d" % i for i in range(n)]))


def reference(records: list[bytes], first_tx: int, epoch: int, position: int):  # type: ignore[no-untyped-def]
    """(framed body, last position) or the index of the first bad record."""
    out = b""
    pos = position
    for i, r in enumerate(records):
        try:
            c = decode_tx(r)
        except CorruptLogError:
            return i
        if c.tx_id != first_tx + i or c.epoch != epoch or c.first_position != pos + 1:
            return i
        pos += len(c.streams)
        out += struct.pack("<I", len(r)) + r
    return out, pos


runs = st.lists(st.integers(1, 4), min_size=1, max_size=12)


def _run(counts: list[int], first_tx: int, epoch: int, start: int = 0,
         make=None) -> list[bytes]:  # type: ignore[no-untyped-def]
    """A valid run: one record per count (that many events), positions from start."""
    make = make or _rec
    recs, pos = [], start
    for i, n in enumerate(counts):
        recs.append(make(first_tx + i, epoch, pos + 1, n))
        pos += n
    return recs


@given(counts=runs, first_tx=st.integers(1, 10**6), epoch=st.integers(0, 9),
       start=st.integers(0, 10**6))
def test_valid_runs_frame_like_the_reference(counts, first_tx, epoch, start):
    recs = _run(counts, first_tx, epoch, start)
    body, last = frame_records(recs, first_tx, epoch, start)
    assert (bytes(body), last) == reference(recs, first_tx, epoch, start)
    assert last == start + sum(counts)


@given(counts=runs, data=st.data())
def test_a_broken_run_names_the_same_record_as_the_reference(counts, data):
    recs = _run(counts, 10, 1)
    victim = data.draw(st.integers(0, len(recs) - 1))
    how = data.draw(st.sampled_from(["flip", "cut", "tx", "epoch", "pos"]))
    n = counts[victim]
    first_pos = sum(counts[:victim]) + 1
    if how == "flip":
        b = bytearray(recs[victim])
        b[data.draw(st.integers(0, len(b) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        recs[victim] = bytes(b)
    elif how == "cut":
        recs[victim] = recs[victim][: data.draw(st.integers(0, len(recs[victim]) - 1))]
    elif how == "tx":
        recs[victim] = _rec(10 + victim + 1, 1, first_pos, n)
    elif how == "epoch":
        recs[victim] = _rec(10 + victim, 2, first_pos, n)
    else:
        recs[victim] = _rec(10 + victim, 1, first_pos + 1, n)
    want = reference(recs, 10, 1, 0)
    assert isinstance(want, int)
    with pytest.raises(FrameError) as ei:
        frame_records(recs, 10, 1, 0)
    assert ei.value.index == want and f"tx {10 + want}" in str(ei.value)


def test_an_empty_run_is_refused():
    with pytest.raises(ValueError):
        frame_records([], 1, 1, 0)


def _big(tx: int, epoch: int, pos: int, n: int) -> bytes:
    """A record over frame_records' pointer threshold (5 KB of data per event)."""
    names = "".join(f"s{i}\0" for i in range(n)).encode()
    return bytes(encode_tx(tx, epoch, 1, pos, [1] * n, [0] * n, names, b"e\0" * n,
                           [bytes([i]) * 5000 for i in range(n)]))


@given(counts=runs, big=st.booleans(), pad=st.integers(0, 7))
def test_views_frame_like_the_reference_on_both_paths(counts, big, pad):
    # the uploader hands views into the log's kept buffer (small records: joined) or
    # the kept records themselves (big ones: one pointer each, no join)
    recs = _run(counts, 5, 3, make=_big if big else _rec)
    buf = bytearray(b"x" * pad + b"".join(recs))
    view, views = memoryview(buf), []
    at = pad
    for r in recs:
        views.append(view[at:at + len(r)])
        at += len(r)
    body, last = frame_records(views, 5, 3, 0)
    assert (bytes(body), last) == reference(recs, 5, 3, 0)
    assert frame_records([bytearray(r) for r in recs], 5, 3, 0)[1] == last


@given(counts=runs, data=st.data())
def test_the_pointer_path_names_the_same_bad_record_as_the_reference(counts, data):
    recs = _run(counts, 10, 1, make=_big)
    victim = data.draw(st.integers(0, len(recs) - 1))
    b = bytearray(recs[victim])
    if data.draw(st.booleans()):
        b[data.draw(st.integers(0, len(b) - 1))] ^= 1  # a flipped bit: the checksum
        recs[victim] = bytes(b)
    else:  # a record of the wrong tx: decodes, does not continue the run
        recs[victim] = _big(10 + victim + 1, 1, sum(counts[:victim]) + 1, counts[victim])
    want = reference(recs, 10, 1, 0)
    assert isinstance(want, int)
    with pytest.raises(FrameError) as ei:
        frame_records(recs, 10, 1, 0)
    assert ei.value.index == want and f"tx {10 + want}" in str(ei.value)


@given(head=st.binary(min_size=0, max_size=200), body=st.binary(max_size=5000))
def test_seal_segment_matches_the_python_reference(head, body):
    want = head + body
    want += struct.pack("<Q", xxhash.xxh64_intdigest(want)) + formats.SEG_END_MAGIC
    assert bytes(seal_segment(head, body)) == want
    assert bytes(seal_segment(head, memoryview(bytearray(body)))) == want


@given(parts=st.lists(st.binary(max_size=300), max_size=6), seed=st.integers(0, 2**64 - 1))
def test_xxh64_parts_is_the_hash_of_the_joined_parts(parts, seed):
    want = xxhash.xxh64_intdigest(b"".join(parts), seed)
    assert xxh64_parts(parts, seed) == want
    assert xxh64_parts([memoryview(bytearray(p)) for p in parts], seed) == want


def test_xxh64_parts_refuses_a_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        xxh64_parts([b"x"], -1)
