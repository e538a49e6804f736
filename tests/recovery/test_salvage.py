"""``engine.salvage``: intact records and meta entries found in raw bytes."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

import engine
from engine import formats
from engine.log import LogStore
from engine.native import check_tx, decode_tx, encode_tx
from engine.salvage import page_size_of, read_salvage, salvage_chunks, scan


def _rec(tx_id: int, data: bytes, epoch: int = 1) -> bytes:
    return bytes(encode_tx(tx_id, epoch, 1_700_000_000_000_000_000 + tx_id, tx_id, [tx_id],
                           [0], b"s\0", b"set\0", [data]))


@given(st.lists(st.tuples(st.binary(max_size=64), st.binary(max_size=300)), min_size=1,
                max_size=12), st.binary(max_size=64))
def test_every_record_between_arbitrary_bytes_is_found(pieces, tail):
    buf = bytearray()
    want = []
    for i, (noise, data) in enumerate(pieces, start=1):
        buf += noise
        want.append((len(buf), _rec(i, data)))
        buf += want[-1][1]
    buf += tail
    got = scan(buf, "mem")
    found = {(r.offset, bytes(buf[r.offset : r.offset + r.size])) for r in got.records}
    assert set(want) <= found


def test_a_record_inside_another_records_payload_is_not_a_second_record():
    inner = _rec(7, b"inner")
    outer = _rec(8, b"xx" + inner + b"yy")
    got = scan(bytearray(b"\0" * 10 + outer), "mem")
    assert [r.tx_id for r in got.records] == [8]


def test_torn_and_flipped_records_are_reported_damaged_with_their_claimed_tx():
    good = _rec(3, b"payload" * 10)
    flipped = bytearray(_rec(4, b"payload" * 10))
    flipped[70] ^= 1
    buf = bytearray(good + bytes(flipped) + good[: len(good) // 2])
    got = scan(buf, "mem")
    assert [r.tx_id for r in got.records] == [3]
    assert [(d.claims_tx, d.why) for d in got.damaged] == [
        (4, "checksum mismatch"),
        (3, f"its header says {len(good)} bytes, past the end of the file")]


def test_salvage_file_round_trip_and_a_damaged_one_names_the_offset(tmp_path):
    recs = [_rec(t, b"d%d" % t) for t in (1, 2, 2, 9)]
    buf = bytearray(b"".join(recs))
    got = scan(buf, "mem")
    p = tmp_path / "s.etxr"
    p.write_bytes(b"".join(salvage_chunks(buf, got.records)))
    assert list(read_salvage(str(p))) == recs
    bad = bytearray(p.read_bytes())
    bad[len(recs[0]) + 60] ^= 0xFF
    p.write_bytes(bytes(bad))
    with pytest.raises(engine.CorruptLogError, match=f"offset {len(recs[0])} is not intact"):
        list(read_salvage(str(p)))


def test_meta_in_overflow_pages_and_records_in_a_real_lmdb_file(tmp_path):
    log = str(tmp_path / "log")
    history = [engine.EpochRecord(e, e * 10, e * 10, 0.0, "r" * 500) for e in range(1, 30)]
    store = LogStore(log)
    recs = [(t, _rec(t, os.urandom(50 if t % 2 else 3000), epoch=29)) for t in range(290, 300)]
    try:
        store.initialise("c99006b6-255a-4ec8-82bd-9d1033a324e0", 29, 289, 289, history)
        store.append(recs)
    finally:
        store.close()
    with open(os.path.join(log, "data.mdb"), "rb") as f:
        buf = bytearray(f.read())
    got = scan(buf, "data.mdb")
    assert page_size_of(buf) == got.page_size == 4096
    assert got.meta["db_id"] == [b"c99006b6-255a-4ec8-82bd-9d1033a324e0"]
    (hist,) = got.meta["epoch_history"]  # ~17 KB: stored in overflow pages (F_BIGDATA)
    assert len(hist) > 4096 and b'"epoch": 29' in hist
    assert got.meta["base_tx"] == [formats.U64_LE.pack(289)]
    by_tx = {r.tx_id: r for r in got.records}
    assert sorted(by_tx) == [t for t, _ in recs]
    assert all(r.anchored for r in by_tx.values())  # leaf nodes and overflow runs
    assert {t: bytes(buf[r.offset : r.offset + r.size]) for t, r in by_tx.items()} == dict(recs)
    assert decode_tx(dict(recs)[290]).epoch == 29


def _page(pgno: int, flags: int, body: bytes) -> bytes:
    head = struct.pack("<QHHHH", pgno, 0, flags, 0, 0)
    return (head + body).ljust(4096, b"\0")


def _meta_node(name: bytes, value: bytes) -> bytes:
    key = formats.META_PREFIX + name
    return struct.pack("<HHHH", len(value) & 0xFFFF, len(value) >> 16, 0, len(key)) + key + value


def test_meta_found_in_a_reused_page_only_when_no_leaf_page_holds_it():
    a, b = b"c99006b6-255a-4ec8-82bd-9d1033a324e0", b"0f0e0d0c-255a-4ec8-82bd-9d1033a324e0"
    stale = _page(3, 0x04, b"x" * 100 + _meta_node(b"db_id", a))  # an overflow page now
    got = scan(bytearray(b"\0" * 8192 + stale), "mem")
    assert got.meta["db_id"] == [a]
    leaf = _page(4, 0x02, b"\0" * 40 + _meta_node(b"db_id", b))
    got = scan(bytearray(b"\0" * 8192 + stale + leaf), "mem")
    assert got.meta["db_id"] == [b]
    node = bytearray(_meta_node(b"db_id", a))
    node[6] = 12  # a key size that is not this key's: the bytes are not this node
    assert scan(bytearray(b"\0" * 8192 + _page(5, 0x02, bytes(node))), "mem").meta["db_id"] == []


@given(st.binary(min_size=1, max_size=40), st.integers(0, 10_000), st.integers(0, 255))
def test_check_tx_accepts_exactly_what_decode_tx_accepts(data, where, byte):
    rec = bytearray(_rec(5, data))
    rec[where % len(rec)] = byte

    def outcome(fn):
        try:
            return fn(bytes(rec))
        except engine.CorruptLogError as exc:
            return exc.code

    got = outcome(check_tx)
    want = outcome(decode_tx)
    if isinstance(want, int):
        assert got == want
    else:
        assert got == (want.tx_id, want.epoch, want.ts_ns, want.first_position,
                       len(want.streams))


def test_check_tx_refuses_names_that_are_not_utf8():
    rec = bytes(encode_tx(1, 1, 0, 1, [1], [0], b"\xff\0", b"set\0", [b"x"]))
    with pytest.raises(engine.CorruptLogError, match="UTF-8") as exc:
        check_tx(rec)
    assert exc.value.code == -6


def test_records_with_tracking_sections_are_found_whole():
    """A version-2 record's size includes its tracking section (and may have no
    events): the scan must cut it at its real end, or repair would lose it."""
    from engine.native import encode_tracking

    recs = [bytes(encode_tx(i, 1, 5, i, [1] if i % 3 else [], [0] if i % 3 else [],
                            b"s\0" if i % 3 else b"", b"t\0" if i % 3 else b"",
                            [b"x" * i] if i % 3 else [],
                            encode_tracking([("app", i), ("b" * i, 1)]) if i % 2 or i % 3 == 0
                            else b""))
            for i in range(1, 10)]
    buf = bytearray(b"noise".join(recs) + b"end")
    got = scan(buf, "mem")
    found = {bytes(buf[r.offset : r.offset + r.size]) for r in got.records}
    assert set(recs) <= found
