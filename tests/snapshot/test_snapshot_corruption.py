"""Every damaged snapshot file is refused with CorruptSnapshotError naming it."""

from __future__ import annotations

import os
import struct

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

import engine
from engine import formats
from engine.model import EpochRecord
from engine.native import xxh64
from engine.snapshot import load_snapshot, read_header, write_snapshot

DB_ID = "6f1d1f9e-3f7e-4a63-8d55-0c4b3c2a1b00"
STATE = {
    "alpha": (3, b"value-a" * 20, 7),
    "beta": (2, None, 5),
    "gamma": (1, b"", 6),
    "dëlta": (4, b"xyz" * 50, 8),
    "eps": (1, b"e", 9),
}
_HEAD_FIXED = 136  # version 2: the 128 bytes of version 1 and the u64 tx_checksum
OFF_TX_CHECKSUM = 128
TX_CHECKSUM = 0xC37BBE4F2F268B2C
OFF_VERSION, OFF_HEADER_LEN, OFF_DB_ID, OFF_EPOCH, OFF_TX = 8, 12, 16, 56, 64
OFF_STREAMS, OFF_BLOCKS, OFF_RAW, OFF_COMP, OFF_HISTORY_LEN = 80, 88, 96, 104, 120


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> bytes:
    d = tmp_path_factory.mktemp("orig")
    info = write_snapshot(str(d), db_id=DB_ID, epoch=1, tx_id=9, last_position=11,
                          history=[EpochRecord(1, 1, 1, 1.5, "created")], state=STATE,
                          tx_checksum=TX_CHECKSUM)
    with open(info.path, "rb") as f:
        data = f.read()
    assert load_snapshot(info.path).state == STATE
    return data


def _layout(data: bytes) -> tuple[int, int, int]:
    header_len = struct.unpack_from("<I", data, OFF_HEADER_LEN)[0]
    raw_len, comp_len = struct.unpack_from("<QQ", data, OFF_RAW)
    return header_len, raw_len, comp_len


def _expect_corrupt(tmp_path, data: bytes, name: str = "1-9.snap") -> engine.CorruptSnapshotError:
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.write(data)
    with pytest.raises(engine.CorruptSnapshotError) as ei:
        load_snapshot(path)
    assert path in str(ei.value)
    with pytest.raises(engine.CorruptSnapshotError) as indexed:  # the open's way: the same
        load_snapshot(path, indexed=True)
    # zstd words its one-shot and its streaming errors differently; both name the body
    plain, streamed = str(ei.value), str(indexed.value)
    assert streamed == plain or ("decompress" in plain and "decompress" in streamed)
    return ei.value


def _flip(data: bytes, off: int, mask: int = 0x01) -> bytes:
    b = bytearray(data)
    b[off] ^= mask
    return bytes(b)


def _recheck(data: bytes) -> bytes:
    """Recompute the header checksum and the file checksum of a (tampered) file."""
    header_len = struct.unpack_from("<I", data, OFF_HEADER_LEN)[0]
    head = bytearray(data[:header_len])
    struct.pack_into("<Q", head, header_len - 8, xxh64(bytes(head[: header_len - 8])))
    payload = bytes(head) + data[header_len:-16]
    return payload + struct.pack("<Q", xxh64(payload)) + formats.SNAP_END_MAGIC


def test_recheck_of_an_untouched_file_is_identity(original):
    assert _recheck(original) == original


@pytest.mark.parametrize("where", ["magic", "version", "flags", "header_len", "db_id",
                                   "epoch", "tx_id", "streams", "raw_len", "comp_len",
                                   "created", "history_len", "reserved", "tx_checksum",
                                   "history", "header_checksum"])
def test_flipped_header_byte(tmp_path, original, where):
    header_len = _layout(original)[0]
    off = {"magic": 0, "version": 8, "flags": 10, "header_len": 12, "db_id": 20, "epoch": 56,
           "tx_id": 64, "streams": 80, "raw_len": 96, "comp_len": 104, "created": 112,
           "history_len": 120, "reserved": 126, "tx_checksum": OFF_TX_CHECKSUM + 5,
           "history": _HEAD_FIXED + 3,
           "header_checksum": header_len - 3}[where]
    _expect_corrupt(tmp_path, _flip(original, off))


@pytest.mark.parametrize("frac", [0.0, 0.3, 0.5, 0.99])
def test_flipped_body_byte(tmp_path, original, frac):
    header_len, _, comp_len = _layout(original)
    off = header_len + min(int(comp_len * frac), comp_len - 1)
    err = _expect_corrupt(tmp_path, _flip(original, off, 0x40))
    assert "checksum" in str(err)


@pytest.mark.parametrize("back", list(range(1, 17)))
def test_flipped_footer_byte(tmp_path, original, back):
    _expect_corrupt(tmp_path, _flip(original, len(original) - back, 0x80))


def test_truncated_at_many_points(tmp_path, original):
    header_len, _, comp_len = _layout(original)
    cuts = sorted({0, 1, 7, 8, 64, _HEAD_FIXED - 1, _HEAD_FIXED, header_len - 8, header_len - 1,
                   header_len, header_len + 1, header_len + comp_len // 2, header_len + comp_len,
                   len(original) - 16, len(original) - 9, len(original) - 8, len(original) - 1})
    for cut in cuts:
        _expect_corrupt(tmp_path, original[:cut], name=f"1-{cut}.snap")


@pytest.mark.parametrize("extra", [b"\0", b"garbage" * 11, formats.SNAP_END_MAGIC,
                                   bytes(16) + formats.SNAP_END_MAGIC])
def test_appended_garbage(tmp_path, original, extra):
    _expect_corrupt(tmp_path, original + extra)


def test_appended_copy_of_itself(tmp_path, original):
    _expect_corrupt(tmp_path, original + original)


@pytest.mark.parametrize("magic", [b"ENGSNAP2", b"XXXXXXXX", b"\0" * 8, formats.SNAP_END_MAGIC])
@pytest.mark.parametrize("recheck", [False, True])
def test_wrong_magic(tmp_path, original, magic, recheck):
    data = magic + original[8:]
    err = _expect_corrupt(tmp_path, _recheck(data) if recheck else data)
    assert "magic" in str(err)


@pytest.mark.parametrize("version", [0, 3, 0xFFFF])
@pytest.mark.parametrize("recheck", [False, True])
def test_wrong_version(tmp_path, original, version, recheck):
    data = bytearray(original)
    struct.pack_into("<H", data, OFF_VERSION, version)
    data = bytes(data)
    err = _expect_corrupt(tmp_path, _recheck(data) if recheck else data)
    assert "version" in str(err)


def as_version_1(data: bytes) -> bytes:
    """The same snapshot as a version-1 writer made it: no tx_checksum field, flags 0."""
    header_len = struct.unpack_from("<I", data, OFF_HEADER_LEN)[0]
    head = bytearray(data[:OFF_TX_CHECKSUM] + data[_HEAD_FIXED:header_len])
    struct.pack_into("<HHI", head, OFF_VERSION, 1, 0, header_len - 8)
    return _recheck(bytes(head) + data[header_len:])


def test_a_version_1_snapshot_still_loads_with_unproven_lineage(tmp_path, original):
    assert read_header_of(tmp_path, original).tx_checksum == TX_CHECKSUM
    path = str(tmp_path / "1-9.snap")
    with open(path, "wb") as f:
        f.write(as_version_1(original))
    loaded = load_snapshot(path)
    assert loaded.state == STATE
    assert (loaded.header.version, loaded.header.tx_checksum) == (1, None)


def read_header_of(tmp_path, data: bytes):
    path = str(tmp_path / "probe-1-9.snap")
    with open(path, "wb") as f:
        f.write(data)
    return read_header(path)


def _with_lineage(data: bytes, *, flags: int, tx_checksum: int, tx_id: int | None = None) -> bytes:
    head = bytearray(data)
    struct.pack_into("<H", head, 10, flags)
    struct.pack_into("<Q", head, OFF_TX_CHECKSUM, tx_checksum)
    if tx_id is not None:
        struct.pack_into("<Q", head, OFF_TX, tx_id)
    return _recheck(bytes(head))


def test_a_tx_checksum_without_its_flag_is_refused(tmp_path, original):
    # a consistently checksummed header (a writer's bug, not a flipped bit)
    err = _expect_corrupt(tmp_path, _with_lineage(original, flags=0, tx_checksum=5))
    assert "tx_checksum 0x0000000000000005" in str(err) and "out of range" in str(err)


def test_a_tx_checksum_for_tx_0_is_refused(tmp_path, original):
    data = _with_lineage(original, flags=1, tx_checksum=5, tx_id=0)
    err = _expect_corrupt(tmp_path, data, name="1-0.snap")
    assert "tx 0" in str(err)


def test_no_tx_checksum_reads_as_unknown(tmp_path, original):
    h = read_header_of(tmp_path, _with_lineage(original, flags=0, tx_checksum=0))
    assert (h.version, h.tx_checksum) == (2, None)


def test_unknown_flag_bits_are_ignored(tmp_path, original):
    h = read_header_of(tmp_path, _with_lineage(original, flags=0x8001, tx_checksum=7))
    assert h.tx_checksum == 7


def test_write_refuses_a_tx_checksum_it_cannot_mean(tmp_path):
    for tx_id, value in ((0, 1), (3, -1), (3, 1 << 64)):
        with pytest.raises(ValueError, match="tx_checksum"):
            write_snapshot(str(tmp_path), db_id=DB_ID, epoch=1, tx_id=tx_id, last_position=0,
                           history=[], state={}, tx_checksum=value)


def test_wrong_end_magic(tmp_path, original):
    _expect_corrupt(tmp_path, original[:-8] + b"ENGSEND2")


@pytest.mark.parametrize("field, delta", [(OFF_STREAMS, 1), (OFF_STREAMS, -1),
                                          (OFF_STREAMS, 2**33), (OFF_BLOCKS, 1),
                                          (OFF_RAW, 1), (OFF_RAW, -1), (OFF_COMP, 1),
                                          (OFF_COMP, -1)])
def test_consistently_checksummed_header_with_wrong_counts(tmp_path, original, field, delta):
    data = bytearray(original)
    (v,) = struct.unpack_from("<Q", data, field)
    struct.pack_into("<Q", data, field, v + delta)
    _expect_corrupt(tmp_path, _recheck(bytes(data)))


@pytest.mark.parametrize("history", [b"not json", b"{}", b'""', b"[1]", b"[{}]", b"null",
                                     b"\xff\xfe",
                                     b'[{"epoch": "x", "first_tx": 1, "first_position": 1, '
                                     b'"time": 0, "reason": "r"}]'])
def test_unreadable_history_with_valid_checksums(tmp_path, original, history):
    header_len = _layout(original)[0]
    old_len = struct.unpack_from("<I", original, OFF_HISTORY_LEN)[0]
    head = bytearray(original[:_HEAD_FIXED])
    struct.pack_into("<I", head, OFF_HEADER_LEN, _HEAD_FIXED + len(history) + 8)
    struct.pack_into("<I", head, OFF_HISTORY_LEN, len(history))
    assert header_len == _HEAD_FIXED + old_len + 8
    data = bytes(head) + history + bytes(8) + original[header_len:]
    _expect_corrupt(tmp_path, _recheck(data))


def test_non_ascii_db_id_with_valid_checksums(tmp_path, original):
    data = bytearray(original)
    data[OFF_DB_ID] = 0xC3
    _expect_corrupt(tmp_path, _recheck(bytes(data)))


def test_body_that_is_not_zstd_with_valid_checksums(tmp_path, original):
    header_len, _, comp_len = _layout(original)
    junk = bytes(range(256))[:comp_len].ljust(comp_len, b"j")
    data = original[:header_len] + junk + original[header_len + comp_len:]
    _expect_corrupt(tmp_path, _recheck(data))


@pytest.mark.parametrize("extra", ["junk", "a second frame"])
def test_data_after_the_frame_with_valid_checksums(tmp_path, original, extra):
    header_len, _, comp_len = _layout(original)
    frame = original[header_len:header_len + comp_len]
    more = b"junk" if extra == "junk" else frame
    data = bytearray(original[:header_len] + frame + more + original[header_len + comp_len:])
    struct.pack_into("<Q", data, OFF_COMP, comp_len + len(more))
    err = _expect_corrupt(tmp_path, _recheck(bytes(data)))
    assert "does not decompress" in str(err)


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_a_frame_without_its_end_with_valid_checksums(tmp_path, original, cut):
    header_len, _, comp_len = _layout(original)
    data = bytearray(original[:header_len + comp_len - cut] + original[header_len + comp_len:])
    struct.pack_into("<Q", data, OFF_COMP, comp_len - cut)
    _expect_corrupt(tmp_path, _recheck(bytes(data)))


def test_read_header_checks_the_header_too(tmp_path, original):
    path = str(tmp_path / "1-9.snap")
    with open(path, "wb") as f:
        f.write(_flip(original, OFF_EPOCH))
    with pytest.raises(engine.CorruptSnapshotError, match=path):
        read_header(path)


@given(off=st.integers(min_value=0), mask=st.integers(1, 255))
def test_any_single_byte_change_is_detected(tmp_path_factory, original, off, mask):
    d = tmp_path_factory.mktemp("fuzz", numbered=True)
    data = _flip(original, off % len(original), mask)
    path = os.path.join(d, "1-9.snap")
    with open(path, "wb") as f:
        f.write(data)
    with pytest.raises(engine.CorruptSnapshotError):
        load_snapshot(path)
    with pytest.raises(engine.CorruptSnapshotError):
        load_snapshot(path, indexed=True)


@given(cut=st.integers(min_value=0), extra=st.binary(max_size=40))
def test_any_truncation_or_extension_is_detected(tmp_path_factory, original, cut, extra):
    cut %= len(original)
    data = original[:cut] + extra
    d = tmp_path_factory.mktemp("fuzz", numbered=True)
    path = os.path.join(d, "1-9.snap")
    with open(path, "wb") as f:
        f.write(data)
    with pytest.raises(engine.CorruptSnapshotError):
        load_snapshot(path)
    with pytest.raises(engine.CorruptSnapshotError):
        load_snapshot(path, indexed=True)


def test_zstd_module_matches_the_body(original):
    """Sanity check of the helpers above: the body is one zstd frame of raw_len bytes."""
    header_len, raw_len, comp_len = _layout(original)
    body = zstandard.ZstdDecompressor().decompress(
        original[header_len:header_len + comp_len], max_output_size=raw_len)
    assert len(body) == raw_len
    assert body[:4] == formats.BLOCK_MAGIC
