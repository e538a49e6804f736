"""Block decoder errors reached through files whose file-level checksums are valid.

Each test decompresses a real snapshot's body, tampers one field of one block
(re-checksumming the block where the point is to get past its checksum),
recompresses it, and rebuilds the header and footer checksums with the C xxh64,
so only the block decoder can notice.
"""

from __future__ import annotations

import struct

import pytest
import zstandard

import engine
from engine import formats
from engine.model import EpochRecord
from engine.native import xxh64
from engine.snapshot import DICT_BLOCK_ENTRIES, load_snapshot, write_snapshot

DB_ID = "9d0e2d4c-1b7a-4e0f-8a61-5b3c7d9e0f12"
E_TRUNCATED, E_MAGIC, E_CHECKSUM, E_OVERRUN = -1, -2, -4, -5
E_NAMES, E_LENGTHS, E_FIELD = -6, -7, -9
# entries: 0 "alpha"=b"AAAA", 1 "beta"=None, 2 "gamma"=b"", 3 "delta"=b"DD", 4 "eps"=None
STATE = {
    "alpha": (3, b"AAAA", 7),
    "beta": (2, None, 5),
    "gamma": (1, b"", 6),
    "delta": (4, b"DD", 8),
    "eps": (1, None, 9),
}


class Block:
    """A mutable view of one encoded snapshot block."""

    def __init__(self, raw: bytes) -> None:
        self.b = bytearray(raw)

    n = property(lambda self: struct.unpack_from("<I", self.b, 4)[0])
    m = property(lambda self: struct.unpack_from("<I", self.b, 8)[0])
    names_len = property(lambda self: struct.unpack_from("<I", self.b, 12)[0])
    versions = property(lambda self: 24)
    last_tx = property(lambda self: 24 + 8 * self.n)
    value_lens = property(lambda self: 24 + 16 * self.n)
    none_idx = property(lambda self: 24 + 20 * self.n)
    names = property(lambda self: 24 + 20 * self.n + 4 * self.m)
    values = property(lambda self: self.names + self.names_len)

    def u32(self, off: int, v: int) -> None:
        struct.pack_into("<I", self.b, off, v)

    def u64(self, off: int, v: int) -> None:
        struct.pack_into("<Q", self.b, off, v)

    def get_u32(self, off: int) -> int:
        return int(struct.unpack_from("<I", self.b, off)[0])

    def rechecksum(self) -> Block:
        struct.pack_into("<Q", self.b, len(self.b) - 8, xxh64(bytes(self.b[:-8])))
        return self

    def bytes(self) -> bytes:
        return bytes(self.b)


def _split_blocks(body: bytes) -> list[bytes]:
    out, off = [], 0
    while off < len(body):
        n, m, nl, vl = struct.unpack_from("<IIII", body, off + 4)
        size = 24 + 20 * n + 4 * m + nl + vl + 8
        out.append(body[off:off + size])
        off += size
    assert off == len(body)
    return out


def _write(tmp_path, state):
    info = write_snapshot(str(tmp_path / "src"), db_id=DB_ID, epoch=1, tx_id=9,
                          last_position=20, history=[EpochRecord(1, 1, 1, 1.0, "created")],
                          state=state, tx_checksum=None)
    with open(info.path, "rb") as f:
        return f.read()


def _body(data: bytes) -> bytes:
    header_len = struct.unpack_from("<I", data, 12)[0]
    raw_len, comp_len = struct.unpack_from("<QQ", data, 96)
    return zstandard.ZstdDecompressor().decompress(
        data[header_len:header_len + comp_len], max_output_size=raw_len)


def _rebuild(data: bytes, body: bytes) -> bytes:
    """The file ``data`` with its body replaced and every file-level checksum valid."""
    header_len = struct.unpack_from("<I", data, 12)[0]
    comp = zstandard.ZstdCompressor(level=3).compress(body)
    head = bytearray(data[:header_len])
    struct.pack_into("<QQ", head, 96, len(body), len(comp))
    struct.pack_into("<Q", head, header_len - 8, xxh64(bytes(head[: header_len - 8])))
    payload = bytes(head) + comp
    return payload + struct.pack("<Q", xxh64(payload)) + formats.SNAP_END_MAGIC


def _load(tmp_path, data: bytes):
    path = str(tmp_path / "1-9.snap")
    with open(path, "wb") as f:
        f.write(data)
    return path, load_snapshot(path)


def _expect_block_error(tmp_path, data: bytes, code: int, block: int = 0, why: str | None = None):
    """Both loads refuse the file alike: the plain one, and the open's indexed one
    (the body decompressed in a helper thread, each block indexed as it is whole)."""
    path = str(tmp_path / "1-9.snap")
    with open(path, "wb") as f:
        f.write(data)
    with pytest.raises(engine.CorruptSnapshotError) as ei:
        load_snapshot(path)
    with pytest.raises(engine.CorruptSnapshotError) as indexed:
        load_snapshot(path, indexed=True)
    msg = str(ei.value)
    assert str(indexed.value) == msg
    assert path in msg
    assert f"block {block}" in msg
    assert (why or formats.DECODE_ERRORS[code]) in msg
    assert getattr(ei.value.__cause__, "code", None) == code
    assert getattr(indexed.value.__cause__, "code", None) == code
    return ei.value


@pytest.fixture
def snap(tmp_path):
    data = _write(tmp_path, STATE)
    (blk,) = _split_blocks(_body(data))
    return data, Block(blk)


def test_rebuild_helpers_round_trip(tmp_path, snap):
    data, blk = snap
    assert blk.n == 5 and blk.m == 2
    assert [blk.get_u32(blk.none_idx), blk.get_u32(blk.none_idx + 4)] == [1, 4]
    rebuilt = _rebuild(data, blk.rechecksum().bytes())
    _, loaded = _load(tmp_path, rebuilt)
    assert loaded.state == STATE


# ------------------------------------------------------------------ FIELD


@pytest.mark.parametrize("tamper", [
    "count-zero", "none-over-count", "reserved", "version-zero", "last-tx-zero",
    "none-idx-out-of-range", "none-idx-not-increasing", "none-idx-equal",
    "none-idx-non-empty-value",
])
def test_field_errors(tmp_path, snap, tamper):
    data, blk = snap
    if tamper == "count-zero":
        blk.u32(4, 0)
    elif tamper == "none-over-count":
        blk.u32(8, blk.n + 1)
    elif tamper == "reserved":
        blk.u32(20, 1)
    elif tamper == "version-zero":
        blk.u64(blk.versions + 8 * 3, 0)
    elif tamper == "last-tx-zero":
        blk.u64(blk.last_tx + 8 * 4, 0)
    elif tamper == "none-idx-out-of-range":
        blk.u32(blk.none_idx + 4, blk.n)
    elif tamper == "none-idx-not-increasing":
        blk.u32(blk.none_idx, 4)
        blk.u32(blk.none_idx + 4, 1)
    elif tamper == "none-idx-equal":
        blk.u32(blk.none_idx, 4)
    elif tamper == "none-idx-non-empty-value":
        blk.u32(blk.none_idx, 0)  # entry 0 ("alpha") has a 4-byte value
    blk.rechecksum()
    _expect_block_error(tmp_path, _rebuild(data, blk.bytes()), E_FIELD)


# ------------------------------------------------------------------ NAMES


@pytest.mark.parametrize("tamper", ["missing-nul", "extra-nul", "empty-name"])
def test_names_errors(tmp_path, snap, tamper):
    data, blk = snap
    names = bytes(blk.b[blk.names:blk.values])
    assert names == b"alpha\0beta\0gamma\0delta\0eps\0"
    if tamper == "missing-nul":
        new = names.replace(b"alpha\0", b"alphaX", 1)
    elif tamper == "extra-nul":
        new = names.replace(b"gamma", b"ga\0ma", 1)
    else:
        new = b"\0lpha" + names[5:]  # the first name is empty
    assert len(new) == len(names)
    blk.b[blk.names:blk.values] = new
    blk.rechecksum()
    _expect_block_error(tmp_path, _rebuild(data, blk.bytes()), E_NAMES)


def test_name_not_utf8(tmp_path, snap):
    data, blk = snap
    blk.b[blk.names + 1] = 0xFF
    blk.rechecksum()
    _expect_block_error(tmp_path, _rebuild(data, blk.bytes()), E_NAMES, why="UTF-8")


# ---------------------------------------------------------------- LENGTHS


@pytest.mark.parametrize("entry, delta", [(0, 1), (0, -1), (3, 1), (2, 1)])
def test_lengths_errors(tmp_path, snap, entry, delta):
    data, blk = snap
    off = blk.value_lens + 4 * entry
    blk.u32(off, blk.get_u32(off) + delta)
    blk.rechecksum()
    _expect_block_error(tmp_path, _rebuild(data, blk.bytes()), E_LENGTHS)


# --------------------------------------------------------------- CHECKSUM


@pytest.mark.parametrize("where", ["version", "value", "name", "trailer"])
def test_block_checksum_errors(tmp_path, snap, where):
    data, blk = snap
    off = {"version": blk.versions, "value": blk.values + 1, "name": blk.names + 2,
           "trailer": len(blk.b) - 1}[where]
    blk.b[off] ^= 0x10
    _expect_block_error(tmp_path, _rebuild(data, blk.bytes()), E_CHECKSUM)


# ------------------------------------------------- MAGIC, OVERRUN, TRUNCATED


def test_block_bad_magic(tmp_path, snap):
    data, blk = snap
    blk.b[0:4] = b"XBLK"
    _expect_block_error(tmp_path, _rebuild(data, blk.rechecksum().bytes()), E_MAGIC)


@pytest.mark.parametrize("field", [12, 16])
def test_block_overrun(tmp_path, snap, field):
    data, blk = snap
    blk.u32(field, blk.get_u32(field) + 1000)
    _expect_block_error(tmp_path, _rebuild(data, blk.bytes()), E_OVERRUN)


def test_block_overrun_huge_count(tmp_path, snap):
    data, blk = snap
    blk.u32(4, 0xFFFFFFFF)
    blk.u32(8, 0)
    _expect_block_error(tmp_path, _rebuild(data, blk.bytes()), E_OVERRUN)


@pytest.mark.parametrize("junk", [b"S", b"SBLK", b"SBLK" + bytes(20)])
def test_trailing_partial_block_is_truncated(tmp_path, snap, junk):
    data, blk = snap
    _expect_block_error(tmp_path, _rebuild(data, blk.bytes() + junk), E_TRUNCATED, block=1)


def test_extra_valid_block_disagrees_with_header_counts(tmp_path, snap):
    data, blk = snap
    path = str(tmp_path / "1-9.snap")
    with open(path, "wb") as f:
        f.write(_rebuild(data, blk.bytes() + blk.bytes()))
    with pytest.raises(engine.CorruptSnapshotError, match="block"):
        load_snapshot(path)
    with pytest.raises(engine.CorruptSnapshotError, match="block"):
        load_snapshot(path, indexed=True)


def test_error_in_a_later_block_is_named(tmp_path):
    n = DICT_BLOCK_ENTRIES * 2 + 7
    state = {f"s{i}": (1, b"v%d" % i, 1 + i) for i in range(n)}
    data = _write(tmp_path, state)
    blocks = _split_blocks(_body(data))
    assert len(blocks) == 3
    blk = Block(blocks[1])
    blk.u64(blk.versions + 8 * 100, 0)
    blk.rechecksum()
    body = blocks[0] + blk.bytes() + blocks[2]
    err = _expect_block_error(tmp_path, _rebuild(data, body), E_FIELD, block=1)
    assert f"offset {len(blocks[0])}" in str(err)
