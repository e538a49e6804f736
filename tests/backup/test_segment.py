"""The log-backup segment format (docs/FORMAT.md section 8): the documented offsets,
a round trip, and one test per check of the reader."""

from __future__ import annotations

import struct

import pytest
import zstandard

from engine import formats
from engine.backup.segment import (
    CorruptSegmentError,
    decode_segment,
    encode_segment,
    parse_segment_name,
    read_segment_header,
    segment_name,
)
from engine.native import encode_tx, xxh64

DB = "c99006b6-255a-4ec8-82bd-9d1033a324e0"


def _rec(tx_id: int, first_pos: int, n: int = 2, epoch: int = 3, ts: int = 1000) -> bytes:
    names = "".join(f"s{i}\0" for i in range(n)).encode()
    return bytes(encode_tx(tx_id, epoch, ts + tx_id, first_pos, [1] * n, [0] * n, names,
                           b"e\0" * n, [b"data%d" % i for i in range(n)]))


RECORDS = [(5, _rec(5, 9)), (6, _rec(6, 11, n=3)), (7, _rec(7, 14))]


def _seg() -> bytes:
    return encode_segment(DB, RECORDS)[1]


def _reseal(data: bytearray) -> bytes:
    """Recompute both checksums after editing the header (to reach later checks)."""
    data[136:144] = struct.pack("<Q", xxh64(bytes(data[:136])))
    end = len(data) - 16
    data[end : end + 8] = struct.pack("<Q", xxh64(bytes(data[:end])))
    return bytes(data)


def test_round_trip_and_documented_offsets():
    h, data = encode_segment(DB, RECORDS)
    assert data[:8] == b"ENGSEG01" and data[-8:] == b"ENGSEND1"
    assert struct.unpack_from("<HHI", data, 8) == (1, 1, 144)
    assert data[16:52] == DB.encode()
    epoch, first, last, fpos, lpos = struct.unpack_from("<QQQQQ", data, 56)
    assert (epoch, first, last, fpos, lpos) == (3, 5, 7, 9, 15)
    assert struct.unpack_from("<QQ", data, 96) == (1005, 1007)
    assert struct.unpack_from("<I", data, 112) == (3,)
    raw_len, body_len = struct.unpack_from("<QQ", data, 120)
    assert len(data) == 144 + body_len + 16
    assert struct.unpack_from("<Q", data, 136)[0] == xxh64(data[:136])
    assert struct.unpack_from("<Q", data, len(data) - 16)[0] == xxh64(data[:-16])
    raw = zstandard.ZstdDecompressor().decompress(data[144 : 144 + body_len])
    assert len(raw) == raw_len and raw[:4] == struct.pack("<I", len(RECORDS[0][1]))
    got_h, records = decode_segment(data, "x")
    assert records == RECORDS and got_h.first_tx == h.first_tx == 5
    assert read_segment_header(data[:144], "x").last_position == 15


def test_encoding_is_deterministic():
    assert _seg() == _seg()  # a retried upload writes the same bytes


def test_names_sort_by_tx():
    assert segment_name(5, 7) == "00000000000000000005-00000000000000000007.seg"
    assert parse_segment_name(segment_name(12, 99)) == (12, 99)
    assert parse_segment_name("5-7.seg") is None and parse_segment_name("x.seg") is None


def _edit(offset: int, fmt: str, value: int) -> bytes:
    data = bytearray(_seg())
    struct.pack_into(fmt, data, offset, value)
    return _reseal(data)


@pytest.mark.parametrize(("data", "why"), [
    (_seg()[:100], "shorter than a header"),
    (b"XXXXXXXX" + _seg()[8:], "bad magic"),
    (_edit(8, "<H", 2), "format version 2"),
    (_edit(10, "<H", 0), "flags"),
    (_edit(12, "<I", 140), "header length"),
    (bytes(bytearray(_seg()[:136]) + b"\0" * 8) + _seg()[144:], "header checksum"),
    (_edit(112, "<I", 2), "ranges are inconsistent"),
    (_edit(64, "<Q", 9), "ranges are inconsistent"),
])
def test_each_header_check(data, why):
    with pytest.raises(CorruptSegmentError, match=why):
        decode_segment(data, "seg-under-test")


def test_the_message_names_the_object():
    with pytest.raises(CorruptSegmentError, match="seg-under-test"):
        decode_segment(b"short", "seg-under-test")


def test_size_and_end_magic():
    data = _seg()
    with pytest.raises(CorruptSegmentError, match="truncated or extended"):
        decode_segment(data[:-1], "x")
    with pytest.raises(CorruptSegmentError, match="truncated or extended"):
        decode_segment(data + b"\0", "x")
    with pytest.raises(CorruptSegmentError, match="truncated or extended"):
        decode_segment(data[:-8] + b"XXXXXXXX", "x")


def test_footer_checksum():
    data = bytearray(_seg())
    data[150] ^= 1  # a body byte; the header checksum still holds
    with pytest.raises(CorruptSegmentError, match="file checksum mismatch"):
        decode_segment(bytes(data), "x")


def _with_body(raw: bytes, *, raw_len: int | None = None, count: int | None = None,
               last_pos: int | None = None) -> bytes:
    body = zstandard.ZstdCompressor().compress(raw)
    data = bytearray(_seg()[:144])
    struct.pack_into("<QQ", data, 120, len(raw) if raw_len is None else raw_len, len(body))
    if count is not None:
        struct.pack_into("<I", data, 112, count)
    if last_pos is not None:
        struct.pack_into("<Q", data, 88, last_pos)
    data += body + b"\0" * 8 + b"ENGSEND1"
    return _reseal(data)


def _raw(records: list[tuple[int, bytes]]) -> bytes:
    return b"".join(struct.pack("<I", len(r)) + r for _, r in records)


def test_body_that_does_not_decompress():
    data = bytearray(_seg()[:144])
    body = b"not zstd at all"
    struct.pack_into("<Q", data, 128, len(body))
    data += body + b"\0" * 8 + b"ENGSEND1"
    with pytest.raises(CorruptSegmentError, match="does not decompress"):
        decode_segment(_reseal(data), "x")


def test_body_of_the_wrong_length():
    with pytest.raises(CorruptSegmentError, match=r"wrong length|does not decompress"):
        decode_segment(_with_body(_raw(RECORDS), raw_len=len(_raw(RECORDS)) + 10), "x")


def test_record_count_mismatch():
    with pytest.raises(CorruptSegmentError, match="holds 2 records"):
        decode_segment(_with_body(_raw(RECORDS[:2])), "x")


def test_a_truncated_record_length_or_record():
    raw = _raw(RECORDS)
    with pytest.raises(CorruptSegmentError, match=r"truncated record length|overruns"):
        decode_segment(_with_body(raw + b"\x01\x00"), "x")
    with pytest.raises(CorruptSegmentError, match="overruns"):
        decode_segment(_with_body(raw[:-5]), "x")


def test_a_damaged_record_inside():
    bad = bytearray(RECORDS[1][1])
    bad[-1] ^= 0xFF
    with pytest.raises(CorruptSegmentError, match=r"record 1 \(tx 6\) is damaged"):
        decode_segment(_with_body(_raw([RECORDS[0], (6, bytes(bad)), RECORDS[2]])), "x")


def test_records_out_of_order_or_of_another_epoch():
    swapped = [RECORDS[0], RECORDS[2], RECORDS[1]]
    with pytest.raises(CorruptSegmentError, match="expected tx 6"):
        decode_segment(_with_body(_raw(swapped)), "x")
    other = [RECORDS[0], (6, _rec(6, 11, n=3, epoch=4)), RECORDS[2]]
    with pytest.raises(CorruptSegmentError, match="of epoch 4"):
        decode_segment(_with_body(_raw(other)), "x")


def test_positions_must_end_where_the_header_says():
    with pytest.raises(CorruptSegmentError, match="records end at position 15"):
        decode_segment(_with_body(_raw(RECORDS), last_pos=16), "x")


def test_an_empty_segment_cannot_be_encoded():
    with pytest.raises(ValueError):
        encode_segment(DB, [])


def test_header_constants_match_the_struct():
    assert formats.SEG_HEADER.size + 8 == formats.SEG_HEADER_SIZE == 144
