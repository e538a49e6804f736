"""Log-backup segments: a run of whole transaction records as one checksummed object.

Layout (docs/FORMAT.md, "Log-backup segment"): a fixed header naming the database,
the epoch and the tx/position/time range, with its own checksum; a zstd frame of
``[u32 length][tx record]`` repeated; a footer checksum over every byte before it.
The records inside keep their own checksums, so a segment is checked three ways:
header, whole file, and record by record when it is decoded.

The object key is ``<db_id>/log/<epoch>/<first_tx>-<last_tx>.seg`` with both tx ids
zero-padded to 20 digits, so a listing sorts by tx.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import zstandard

from .. import formats
from ..errors import CorruptLogError
from ..native import frame_records, peek_tx_header, seal_segment, xxh64

_H = formats.SEG_HEADER
_U32 = formats.U32_LE
_U64 = formats.U64_LE
_KEY = re.compile(r"^(\d{20})-(\d{20})\.seg$")


class CorruptSegmentError(CorruptLogError):
    """A log-backup segment failed its checks (restore names it and stops)."""


@dataclass(frozen=True)
class SegmentHeader:
    """What a segment's header says (checked against its checksum)."""

    db_id: str
    epoch: int
    first_tx: int
    last_tx: int
    first_position: int
    last_position: int
    first_ts_ns: int
    last_ts_ns: int
    record_count: int
    body_raw_len: int
    body_len: int


def segment_name(first_tx: int, last_tx: int) -> str:
    """``<first_tx>-<last_tx>.seg``, zero-padded to 20 digits each."""
    return f"{first_tx:020d}-{last_tx:020d}{formats.SEG_SUFFIX}"


def parse_segment_name(name: str) -> tuple[int, int] | None:
    """``(first_tx, last_tx)`` of a segment object name, or None."""
    m = _KEY.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def encode_segment(db_id: str, records: Sequence[tuple[int, bytes]], *,
                   level: int = 1) -> tuple[SegmentHeader, bytes]:
    """One segment holding ``records`` (``(tx_id, record)``, contiguous, one epoch),
    checked record by record (``native.frame_records``: raises ``CorruptLogError``).
    The segment is returned as ``bytes`` (the uploader's path, ``encode_framed``,
    keeps the view)."""
    if not records:
        raise ValueError("a segment holds at least one record")
    first = peek_tx_header(records[0][1])
    body, last_pos = frame_records([r for _, r in records], records[0][0], first[1],
                                   first[3] - 1)
    header, payload = encode_framed(
        db_id, epoch=first[1], first_tx=records[0][0], first_position=first[3],
        last_position=last_pos, first_ts_ns=first[2],
        last_ts_ns=peek_tx_header(records[-1][1])[2], count=len(records), raw=body,
        level=level)
    return header, bytes(payload)


def encode_framed(db_id: str, *, epoch: int, first_tx: int, first_position: int,
                  last_position: int, first_ts_ns: int, last_ts_ns: int, count: int,
                  raw: bytes | bytearray | memoryview, level: int = 1
                  ) -> tuple[SegmentHeader, memoryview]:
    """A segment around an already framed and checked body (``frame_records``).

    Returned as a view of one buffer assembled in C (``native.seal_segment``): on the
    uploader's thread, every copy of a whole segment made in Python holds the GIL
    that committers need."""
    body = zstandard.ZstdCompressor(level=level).compress(raw)
    header = SegmentHeader(
        db_id=db_id, epoch=epoch, first_tx=first_tx, last_tx=first_tx + count - 1,
        first_position=first_position, last_position=last_position, first_ts_ns=first_ts_ns,
        last_ts_ns=last_ts_ns, record_count=count, body_raw_len=len(raw),
        body_len=len(body))
    head = _H.pack(formats.SEG_MAGIC, formats.SEG_VERSION, formats.SEG_FLAG_ZSTD,
                   formats.SEG_HEADER_SIZE, db_id.encode("ascii"), 0, header.epoch,
                   header.first_tx, header.last_tx, header.first_position,
                   header.last_position, header.first_ts_ns, header.last_ts_ns,
                   header.record_count, 0, header.body_raw_len, header.body_len)
    head += _U64.pack(xxh64(head))
    return header, seal_segment(head, body)


def _bad(where: str, why: str) -> CorruptSegmentError:
    return CorruptSegmentError(f"log-backup segment {where} is corrupt: {why}. Restore stops "
                               "here; `engine-admin backup verify` lists every damaged object.")


def read_segment_header(data: bytes | memoryview, where: str) -> SegmentHeader:
    """Parse and checksum only the header (``data`` may be just its first bytes)."""
    if len(data) < formats.SEG_HEADER_SIZE:
        raise _bad(where, f"{len(data)} bytes, shorter than a header (truncated)")
    (magic, version, flags, header_len, db_id, _r1, epoch, first_tx, last_tx, first_pos,
     last_pos, first_ts, last_ts, count, _r2, raw_len, body_len) = _H.unpack_from(data)
    if magic != formats.SEG_MAGIC:
        raise _bad(where, f"bad magic {magic!r}")
    if version != formats.SEG_VERSION:
        raise _bad(where, f"format version {version} is not readable by this build")
    if header_len != formats.SEG_HEADER_SIZE or flags != formats.SEG_FLAG_ZSTD:
        raise _bad(where, "header length or flags out of range")
    (stored,) = _U64.unpack_from(data, _H.size)
    if xxh64(data[: _H.size]) != stored:
        raise _bad(where, "header checksum mismatch")
    if not (1 <= first_tx <= last_tx and count == last_tx - first_tx + 1
            and first_pos <= last_pos + 1):
        raise _bad(where, "header ranges are inconsistent")
    try:
        db = db_id.decode("ascii")
    except UnicodeDecodeError:
        raise _bad(where, "db_id is not ASCII") from None
    return SegmentHeader(db, epoch, first_tx, last_tx, first_pos, last_pos, first_ts,
                         last_ts, count, raw_len, body_len)


def decode_segment(data: bytes | memoryview, where: str
                   ) -> tuple[SegmentHeader, list[tuple[int, bytes]]]:
    """Verify a whole segment and return its header and ``(tx_id, record)`` pairs.

    Checks the header, the footer checksum, the body's length, that the records are
    the contiguous run the header names, and each record's own checksum.
    """
    h = read_segment_header(data, where)
    end = formats.SEG_HEADER_SIZE + h.body_len
    if len(data) != end + formats.SEG_FOOTER_SIZE or data[-8:] != formats.SEG_END_MAGIC:
        raise _bad(where, f"size {len(data)} does not match the header's {end + 16} "
                          "(truncated or extended)")
    (stored,) = _U64.unpack_from(data, end)
    if xxh64(memoryview(data)[:end]) != stored:
        raise _bad(where, "file checksum mismatch")
    try:
        raw = zstandard.ZstdDecompressor().decompress(
            data[formats.SEG_HEADER_SIZE:end], max_output_size=h.body_raw_len)
    except zstandard.ZstdError as exc:
        raise _bad(where, f"body does not decompress ({exc})") from None
    if len(raw) != h.body_raw_len:
        raise _bad(where, "decompressed body has the wrong length")
    records = list(_records(raw, where))
    if len(records) != h.record_count:
        raise _bad(where, f"holds {len(records)} records, header says {h.record_count}")
    pos = h.first_position
    for i, (tx_id, rec) in enumerate(records):
        try:
            got_tx, epoch, _ts, first_pos, n = peek_tx_header(rec)
        except CorruptLogError as exc:
            raise _bad(where, f"record {i} (tx {tx_id}) is damaged: {exc}") from None
        if got_tx != h.first_tx + i or epoch != h.epoch or first_pos != pos:
            raise _bad(where, f"record {i} is tx {got_tx} of epoch {epoch} at position "
                              f"{first_pos}; expected tx {h.first_tx + i} of epoch {h.epoch} "
                              f"at position {pos}")
        pos += n
    if pos - 1 != h.last_position:
        raise _bad(where, f"records end at position {pos - 1}, header says {h.last_position}")
    return h, records


def _records(raw: bytes, where: str) -> Iterator[tuple[int, bytes]]:
    off = 0
    while off < len(raw):
        if off + 4 > len(raw):
            raise _bad(where, "truncated record length")
        (n,) = _U32.unpack_from(raw, off)
        off += 4
        if off + n > len(raw) or n < formats.TX_HEADER_SIZE + formats.TX_TRAILER_SIZE:
            raise _bad(where, f"record length {n} overruns the body")
        rec = raw[off : off + n]
        off += n
        # the tx_id field, unchecked here: decode_segment checks every record after
        yield int(_U64.unpack_from(rec, formats.TX_ID_OFFSET)[0]), rec
