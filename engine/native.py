"""The one module that calls the C core (``engine._ccore``, built by build_ffi.py).

It turns raw ``lib`` calls into Python values and C error codes into the engine's
exceptions, in one place. The C core allocates nothing: every buffer it reads or
writes is owned by Python objects created here, kept alive for the call.

Column arrays cross the boundary in host byte order (``array('Q')``/``array('I')``);
the C side reads and writes little-endian on disk.
"""

from __future__ import annotations

import contextlib
import mmap
import struct
import sys
from array import array
from collections.abc import Collection, Iterator, Sequence
from itertools import accumulate, islice
from typing import Any, NamedTuple

from . import formats
from .errors import CorruptLogError, CorruptSnapshotError, EngineError, InvalidEventError

try:
    from ._ccore import ffi, lib
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "engine's C core (engine._ccore) is not built. Reinstall with "
        "`pip install .` (or `pip install -e .`) on a machine with a C compiler."
    ) from exc

_BIG_ENDIAN = sys.byteorder == "big"
_U32_MAX = 0xFFFFFFFF


def xxh64(data: bytes | bytearray | memoryview, seed: int = 0) -> int:
    """XXH64 of ``data`` computed by the C core; equal to ``xxhash.xxh64_intdigest``."""
    if not 0 <= seed <= formats.U64_MAX:
        raise ValueError(f"seed must be in 0..2**64-1, got {seed}")
    return int(lib.eng_xxh64(ffi.from_buffer(data), len(data), seed))


def _code_message(rc: int) -> str:
    return formats.DECODE_ERRORS.get(rc, f"error code {rc}")


def _u64_list(buf: bytes, off: int, n: int) -> list[int]:
    if _BIG_ENDIAN:  # pragma: no cover - no big-endian CI host
        a = array("Q", buf[off : off + 8 * n])
        a.byteswap()
        return a.tolist()
    return memoryview(buf)[off : off + 8 * n].cast("Q").tolist()


def _u32_list(buf: bytes, off: int, n: int) -> list[int]:
    if _BIG_ENDIAN:  # pragma: no cover
        a = array("I", buf[off : off + 4 * n])
        a.byteswap()
        return a.tolist()
    return memoryview(buf)[off : off + 4 * n].cast("I").tolist()


def _slices(buf: bytes, start: int, lens: Sequence[int]) -> list[bytes]:
    """Cut ``buf`` from ``start`` into consecutive pieces of the given lengths.

    One ``struct`` call with a generated format ("<12s0s100s...") makes every piece
    in C, about twice as fast as slicing in a map (measured: 2.2 vs 4.7 ms for 16k
    pieces); the format is built from cached strings. The C decoder has already
    checked that the lengths sum to the region, so this never overruns.
    """
    if not lens:
        return []
    if max(lens) < len(_LEN_STR):
        fmt = "<" + "s".join(map(_LEN_STR.__getitem__, lens)) + "s"
    else:
        fmt = "<" + "s".join(map(str, lens)) + "s"
    return list(struct.unpack_from(fmt, buf, start))


_LEN_STR = tuple(map(str, range(4096)))  # "0".."4095": struct codes for common lengths


def _names(buf: bytes, off: int, length: int) -> list[str]:
    """A NUL-terminated name column (validated by C: n NULs, none empty)."""
    if length == 0:  # an eventless record (tracking only)
        return []
    return buf[off : off + length - 1].decode("utf-8").split("\0")


# --------------------------------------------------------------- tx records


class TxColumns(NamedTuple):
    """A decoded transaction record, column-wise."""

    tx_id: int
    epoch: int
    ts_ns: int
    first_position: int
    streams: list[str]
    types: list[str]
    versions: list[int]
    prev_tx: list[int]
    datas: list[bytes]
    # (name, position) entries of the record's tracking section (record version 2)
    tracking: tuple[tuple[str, int], ...] = ()


def encode_tracking(entries: Sequence[tuple[str, int]]) -> bytes:
    """A record's tracking section: u32 count, then (u64 position, u32 name_len, name)
    per entry (docs/FORMAT.md section 2). The caller has checked names and positions."""
    parts = [formats.U32_LE.pack(len(entries))]
    for name, position in entries:
        raw = name.encode("utf-8")
        parts.append(_TRACK_ENTRY.pack(position, len(raw)))
        parts.append(raw)
    return b"".join(parts)


def _tracking_of(buf: bytes, view: Any) -> tuple[tuple[str, int], ...]:
    """The tracking entries of a validated record (C checked the layout; UTF-8 here)."""
    count = view.tracking_count
    if not count:
        return ()
    out = []
    at = view.tracking_off
    try:
        for _ in range(count):
            position, nl = _TRACK_ENTRY.unpack_from(buf, at)
            at += _TRACK_ENTRY.size
            out.append((buf[at : at + nl].decode("utf-8"), position))
            at += nl
    except UnicodeDecodeError as exc:
        raise _corrupt_log(-6, f"tracking name is not valid UTF-8 ({exc.reason})") from None
    return tuple(out)


_TRACK_ENTRY = struct.Struct("<QI")


def _corrupt_log(rc: int, message: str | None = None) -> CorruptLogError:
    return CorruptLogError(message or _code_message(rc), rc)


def _tx_view(buf: bytes | bytearray | memoryview) -> Any:
    """The C-validated view of a record (all whole-record checks); raises CorruptLogError."""
    view = ffi.new("eng_tx_view *")  # owned by Python; the C side only fills it
    rc = lib.eng_tx_decode(ffi.from_buffer(buf), len(buf), view)
    if rc != 0:
        raise _corrupt_log(rc)
    return view


def _tx_names(buf: bytes, view: Any) -> tuple[list[str], list[str]]:
    """Both name columns of a validated record (C checked the NULs; UTF-8 checked here)."""
    try:
        return (_names(buf, view.streams_off, view.streams_len),
                _names(buf, view.types_off, view.types_len))
    except UnicodeDecodeError as exc:
        raise _corrupt_log(-6, f"name column is not valid UTF-8 ({exc.reason})") from None


def encode_tx(
    tx_id: int,
    epoch: int,
    ts_ns: int,
    first_position: int,
    versions: Sequence[int],
    prev_tx: Sequence[int],
    streams_col: bytes,
    types_col: bytes,
    datas: Sequence[bytes],
    tracking: bytes = b"",
) -> bytearray:
    """One checksummed record for a whole batch of events, in one C call.

    ``streams_col``/``types_col`` are the NUL-terminated UTF-8 name columns;
    ``tracking`` is a section from :func:`encode_tracking` (or empty: the record
    is then version 1, as always). The caller has validated sizes against the
    limits in :mod:`engine.formats`.
    """
    n = len(versions)
    data = b"".join(datas)
    size = lib.eng_tx_encoded_size(n, len(streams_col), len(types_col), len(data),
                                   len(tracking))
    if size == 0 or size > formats.MAX_TX_BYTES:
        raise InvalidEventError(f"transaction record of {n} events would be {size or 'over'} "
                                f"bytes; the limit is {formats.MAX_TX_BYTES}. Split it.")
    try:
        if n == 0:  # tracking only
            va: Any = ffi.NULL
            pa: Any = ffi.NULL
            lens: Any = ffi.NULL
        elif n <= 16:  # cffi copies short lists itself: cheaper than building arrays
            va = versions
            pa = prev_tx
            lens = list(map(len, datas))
        else:
            va = ffi.from_buffer("uint64_t[]", array("Q", versions))
            pa = ffi.from_buffer("uint64_t[]", array("Q", prev_tx))
            lens = ffi.from_buffer("uint32_t[]", array("I", map(len, datas)))
        out = bytearray(size)
        rc = lib.eng_tx_encode(
            tx_id, epoch, ts_ns, first_position, n, va, pa, lens,
            streams_col, len(streams_col), types_col, len(types_col), data, len(data),
            tracking, len(tracking), ffi.from_buffer(out), size,
        )  # fmt: skip
    except OverflowError:
        raise InvalidEventError(
            f"a version or position of tx {tx_id} would pass 2**64-1 (a stream whose "
            "version is at the maximum takes no more events); nothing was written") from None
    if rc != size:
        raise EngineError(f"C encoder refused the record: {_code_message(int(rc))}")
    return out  # LMDB takes any buffer: no copy to bytes


def decode_tx(buf: bytes) -> TxColumns:
    """Validate and decode one record. Raises :class:`CorruptLogError` (``.code``)."""
    view = _tx_view(buf)
    n = view.event_count
    streams, types = _tx_names(buf, view)
    return TxColumns(
        view.tx_id, view.epoch, view.ts_ns, view.first_position, streams, types,
        _u64_list(buf, view.versions_off, n), _u64_list(buf, view.prev_off, n),
        _slices(buf, view.data_off, _u32_list(buf, view.data_lens_off, n)),
        _tracking_of(buf, view),
    )  # fmt: skip


_U64 = struct.Struct("<Q")


class StreamFinder:
    """Finds one stream's events in records, one C call per record
    (``eng_tx_find_stream``: every check of :func:`decode_tx`, UTF-8 of both name
    columns included, and an exact match of the name), with no Python object made
    for the other streams' events. What ``read_stream`` walks its chain with.

    Ownership: the hit array is a Python ``array`` held here, reused by each call
    and grown when a record holds more of the stream's events than it has room for.
    """

    __slots__ = ("_cap", "_hits", "_name", "_u64", "_view")

    def __init__(self, stream: str, cap: int = 8) -> None:
        try:
            self._name = stream.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no record can hold such a name
            self._name = b"\0"  # holds a NUL, so it matches no stored name
        self._view = ffi.new("eng_tx_view *")  # filled by C; the header is read from rec
        self._cap = 0
        self._alloc(max(1, cap))  # room for ``cap`` events of the stream per record

    def _alloc(self, cap: int) -> None:
        self._u64 = array("Q", bytes(8 * _HIT_WIDTH * cap))  # host order, as C writes it
        self._hits = ffi.from_buffer("eng_stream_hit[]", self._u64, require_writable=True)
        self._cap = cap

    def find(self, rec: bytes | memoryview) -> tuple[int, int, int, int, list[int]]:
        """``(tx_id, epoch, ts_ns, first_position, hits)`` of a validated record, where
        ``hits`` holds 7 ints per event of the stream, in record order: index, version,
        prev_tx, type offset, type length, data offset, data length (offsets into
        ``rec``). Raises :class:`CorruptLogError` like :func:`decode_tx`."""
        buf = ffi.from_buffer(rec)
        name = self._name
        while True:
            rc = lib.eng_tx_find_stream(buf, len(rec), name, len(name), self._view,
                                        self._hits, self._cap)
            if rc <= self._cap:
                break
            self._alloc(int(rc))
        if rc < 0:
            # rec may be a view into LMDB's map: no frame in the traceback may keep it
            # (or cffi's hold on it) past the read transaction.
            del buf, rec
            raise _corrupt_log(int(rc))
        return (*_TX_HEADER.unpack_from(rec, 8), self._u64[: _HIT_WIDTH * rc].tolist())


_HIT_WIDTH = 7  # u64 fields of eng_stream_hit
_TX_HEADER = struct.Struct("<QQQQ")  # tx_id, epoch, ts_ns, first_position at offset 8


class EventSlice(NamedTuple):
    """Some events of a record (by index range and type), with their columns."""

    tx_id: int
    epoch: int
    ts_ns: int
    first_position: int
    event_count: int  # the record's whole count, selected or not
    indexes: list[int]
    streams: list[str]
    types: list[str]
    versions: list[int]
    datas: list[bytes]


def select_events(buf: bytes, lo: int, hi: int,
                  types: frozenset[str] | None = None) -> EventSlice:
    """Validate a record (whole-record checks in C) and cut out its events with index
    in ``lo..hi-1`` whose type is in ``types`` (all types if None).

    What ``read_events`` needs: no data slices, versions or event objects are made
    for the events it leaves out. Raises :class:`CorruptLogError` like :func:`decode_tx`.
    """
    view = _tx_view(buf)
    n = view.event_count
    names, tnames = _tx_names(buf, view)
    hi = min(hi, n)
    if types is None:
        idx = list(range(max(lo, 0), hi))
    else:
        idx = [i for i in range(max(lo, 0), hi) if tnames[i] in types]
    lens = _u32_list(buf, view.data_lens_off, n)
    offs = list(accumulate(lens, initial=view.data_off))
    vo = view.versions_off
    return EventSlice(
        view.tx_id, view.epoch, view.ts_ns, view.first_position, n, idx,
        [names[i] for i in idx], [tnames[i] for i in idx],
        [_U64.unpack_from(buf, vo + 8 * i)[0] for i in idx],
        [buf[offs[i] : offs[i + 1]] for i in idx],
    )  # fmt: skip


class FrameError(CorruptLogError):
    """A record of a run being framed failed its checks; ``index`` is its place in the run."""

    def __init__(self, message: str, code: int | None, index: int) -> None:
        super().__init__(message, code)
        self.index = index


# Buffers the C core fills whole before anyone reads them: allocated without the
# zero fill (which for a segment's 8 MB is a page-faulting memset under the GIL, as
# long as a log-backup uploader's whole C check; measured 48 ms per 52 MB here).
_unzeroed = ffi.new_allocator(should_clear_after_alloc=False)

# From this average record size up, frame_records hands C one pointer per record
# instead of joining them first (measured: 60 records of 130 KB, 0.06 vs 1.5-5 ms;
# 6,000 of 200 B, 1.7-3 vs 1.5-2 ms).
_POINTERS_FROM = 4096


def frame_records(records: Sequence[bytes | bytearray | memoryview], first_tx: int,
                  epoch: int, position: int) -> tuple[memoryview, int]:
    """A log-backup segment body for ``records`` (``[u32 length][record]`` each), in
    one C call that also checks every record: it decodes, and the run is txs
    ``first_tx..`` of ``epoch`` with positions continuing after ``position``.

    Returns the body (a view of memory it owns) and the run's last event position.
    Raises :class:`FrameError` (a ``CorruptLogError``) naming the first bad record.
    The records are only read, during the call, with the GIL released.
    """
    n = len(records)
    if n == 0:
        raise ValueError("frame_records needs at least one record")
    lens = array("I", map(len, records))
    total = sum(lens)
    out = _unzeroed("uint8_t[]", total + 4 * n)
    pos = ffi.new("uint64_t *", position)  # owned by Python; C advances it
    bad = ffi.new("uint32_t *")
    c_lens = ffi.from_buffer("uint32_t[]", lens)
    if total >= _POINTERS_FROM * n:
        # the cdata in `bufs` keep each record's buffer pinned for the call
        bufs = [ffi.from_buffer(r) for r in records]
        rc = lib.eng_seg_frame_v(ffi.new("uint8_t *[]", bufs), c_lens, n, first_tx, epoch,
                                 pos, out, len(out), bad)
    else:
        joined = b"".join(records)
        rc = lib.eng_seg_frame(joined, len(joined), c_lens, n, first_tx, epoch, pos, out,
                               len(out), bad)
    if rc < 0:
        i = int(bad[0])
        what = ("does not continue the run (tx, epoch or position)" if rc == lib.ENG_E_FIELD
                and i < n and _decodes(records[i]) else _code_message(int(rc)))
        raise FrameError(f"record {i} of the run (tx {first_tx + i}): {what}", int(rc), i)
    return memoryview(ffi.buffer(out)), int(pos[0])


def seal_segment(head: bytes, body: bytes | bytearray | memoryview) -> memoryview:
    """A whole log-backup segment: ``head`` (header and its checksum), ``body``, and
    the footer (XXH64 of both, the end magic), assembled in C in one buffer (see
    eng_seg_seal: two copies of the segment fewer under the GIL than ``+``)."""
    size = len(head) + len(body) + formats.SEG_FOOTER_SIZE
    out = _unzeroed("uint8_t[]", size)
    rc = lib.eng_seg_seal(head, len(head), ffi.from_buffer(body), len(body), out, size)
    if rc != size:  # pragma: no cover - sizes are computed above
        raise EngineError(f"sealing a log-backup segment failed ({_code_message(int(rc))})")
    return memoryview(ffi.buffer(out))


def xxh64_parts(parts: Sequence[bytes | bytearray | memoryview], seed: int = 0) -> int:
    """XXH64 of ``parts`` taken as one input, without joining them (eng_xxh64_v, the
    GIL released): a snapshot file's checksum over its header and compressed chunks,
    which are then written one by one rather than assembled in one buffer (whose
    copy and, at the end, whose unmapping each held the GIL for milliseconds)."""
    if not 0 <= seed <= formats.U64_MAX:
        raise ValueError(f"seed must be in 0..2**64-1, got {seed}")
    bufs = [ffi.from_buffer(p) for p in parts]  # each keeps its part pinned for the call
    lens = array("Q" if ffi.sizeof("size_t") == 8 else "I", map(ffi.sizeof, bufs))
    return int(lib.eng_xxh64_v(ffi.new("uint8_t *[]", bufs), ffi.from_buffer("size_t[]", lens),
                               len(bufs), seed))


def _decodes(rec: bytes | bytearray | memoryview) -> bool:
    view = ffi.new("eng_tx_view *")
    return bool(lib.eng_tx_decode(ffi.from_buffer(rec), len(rec), view) == 0)


def event_count_hint(buf: bytes | memoryview) -> int:
    """The event count a record's header claims, *unchecked* (0 if too short to say):
    only for sizing (the index), never for trusting."""
    if len(buf) < formats.TX_EVENT_COUNT_OFFSET + 4:
        return 0
    claimed = int(formats.U32_LE.unpack_from(buf, formats.TX_EVENT_COUNT_OFFSET)[0])
    # Each event takes 20 bytes of columns (version, prev_tx, data length): a damaged
    # count can then never size an index past what the record could hold.
    return min(claimed, len(buf) // 20)


def position_hint(buf: bytes) -> tuple[int, int]:
    """``(first_position, event_count)`` as a record's header claims them, *unchecked*
    (``(0, 0)`` if too short): only to steer a seek by position; the record the seek
    lands on is then decoded with every check."""
    if len(buf) < formats.TX_EVENT_COUNT_OFFSET + 4:
        return 0, 0
    return (int(formats.U64_LE.unpack_from(buf, formats.TX_FIRST_POSITION_OFFSET)[0]),
            int(formats.U32_LE.unpack_from(buf, formats.TX_EVENT_COUNT_OFFSET)[0]))


def check_tx(buf: bytes) -> tuple[int, int, int, int, int]:
    """Every check :func:`decode_tx` makes (the C layout and checksum checks, UTF-8
    names) without building the columns; returns ``(tx_id, epoch, ts_ns,
    first_position, event_count)``. Raises :class:`CorruptLogError` like decode_tx.
    For scans that only need to know whether a record is intact (repair)."""
    view = _tx_view(buf)
    _tx_names(buf, view)
    _tracking_of(buf, view)
    return view.tx_id, view.epoch, view.ts_ns, view.first_position, view.event_count


def peek_tx_header(buf: bytes | bytearray | memoryview) -> tuple[int, int, int, int, int]:
    """``(tx_id, epoch, ts_ns, first_position, event_count)`` of a validated record."""
    view = _tx_view(buf)
    return view.tx_id, view.epoch, view.ts_ns, view.first_position, view.event_count


# ---------------------------------------------------------- snapshot blocks


class BlockColumns(NamedTuple):
    names: list[str]
    versions: list[int]
    last_tx: list[int]
    values: list[bytes | None]


def encode_block(
    names: Sequence[str],
    versions: Sequence[int],
    last_tx: Sequence[int],
    values: Sequence[bytes | None],
) -> bytes:
    """One checksummed snapshot block of ``len(names)`` state entries."""
    n = len(names)
    names_col = ("\0".join(names) + "\0").encode("utf-8")
    none_idx = array("I", [i for i, v in enumerate(values) if v is None])
    if none_idx:
        present: list[bytes] = [b"" if v is None else v for v in values]
    else:
        present = values  # type: ignore[assignment]
    vals = b"".join(present)
    lens = array("I", map(len, present))
    va = array("Q", versions)
    la = array("Q", last_tx)
    size = lib.eng_block_encoded_size(n, len(none_idx), len(names_col), len(vals))
    if size == 0:
        raise EngineError("snapshot block too large to encode")
    out = bytearray(size)
    rc = lib.eng_block_encode(
        n, ffi.from_buffer("uint64_t[]", va), ffi.from_buffer("uint64_t[]", la),
        ffi.from_buffer("uint32_t[]", lens), len(none_idx),
        ffi.from_buffer("uint32_t[]", none_idx),
        names_col, len(names_col), vals, len(vals), ffi.from_buffer(out), size,
    )  # fmt: skip
    if rc != size:
        raise EngineError(f"C encoder refused the block: {_code_message(int(rc))}")
    return bytes(out)


def scan_blocks(body: bytes) -> tuple[int, int]:
    """Validate every block of a snapshot body without building Python objects per
    entry (C checks plus one UTF-8 check of each name column).

    Returns ``(blocks, entries)``; raises :class:`CorruptSnapshotError` like
    :func:`decode_blocks`.
    """
    view = ffi.new("eng_block_view *")
    cbuf = ffi.from_buffer(body)
    off = blocks = entries = 0
    while off < len(body):
        rc = lib.eng_block_decode(cbuf + off, len(body) - off, view)
        if rc != 0:
            raise CorruptSnapshotError(
                f"block {blocks} at body offset {off}: {_code_message(rc)}", rc)
        try:
            body[off + view.names_off : off + view.names_off + view.names_len].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptSnapshotError(
                f"block {blocks}: name column is not valid UTF-8", -6) from exc
        entries += view.entry_count
        blocks += 1
        off += view.block_len
    return blocks, entries


#: A decompressed snapshot body: bytes, or an anonymous mapping when it was
#: decompressed straight into one (engine.snapshot._inflate_indexed).
SnapshotBody = bytes | mmap.mmap

_BLOCK_SIZES = struct.Struct("<4xIIII")  # a block header's n, m, names_len, values_len


def index_blocks(body: SnapshotBody, start: int, end: int, index: StateIndex, first_block: int, *,
                 final: bool) -> tuple[int, int, int]:
    """Check the whole blocks of ``body[start:end)`` as :func:`scan_blocks` checks them
    and put them into ``index``: the open's indexed path, called on each stretch of
    a body as it is decompressed (``end`` is how far it is). ``first_block`` is the
    number of blocks before ``start`` (for messages).

    Returns ``(offset after the last whole block, blocks, entries)``. A block's
    length comes from its header before the C decoder has checked it: a damaged
    header only makes the block look longer, and with ``final`` (``end`` is the end
    of the body) whatever is left is decoded, so the damage is an error there.
    """
    off = start
    blocks = entries = 0
    # One block at a time, C check then UTF-8, in order: the first damage is the one
    # named, as scan_blocks names it.
    while off + formats.BLOCK_HEADER_SIZE <= end:
        n, m, names_len, values_len = _BLOCK_SIZES.unpack_from(body, off)
        names_off = off + formats.BLOCK_HEADER_SIZE + 20 * n + 4 * m
        block_len = names_off - off + names_len + values_len + formats.BLOCK_TRAILER_SIZE
        if off + block_len > end:
            break
        if index.put_blocks(body, off, off + block_len):
            _block_failure(body, off, off + block_len, first_block + blocks)
        try:
            str(memoryview(body)[names_off : names_off + names_len], "utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptSnapshotError(
                f"block {first_block + blocks}: name column is not valid UTF-8", -6) from exc
        blocks += 1
        entries += n
        off += block_len
    if final and off < end:  # a stretch that is no whole block: the decoder says why
        _block_failure(body, off, end, first_block + blocks)
    return off, blocks, entries


def _block_failure(body: SnapshotBody, start: int, end: int, first_block: int) -> None:
    """Raise the :func:`scan_blocks` error for the first bad block of ``body[start:end)``
    (which the C index refused, or which is no whole block)."""
    view = ffi.new("eng_block_view *")
    cbuf = ffi.from_buffer(body)
    off, block = start, first_block
    while off < end:
        rc = lib.eng_block_decode(cbuf + off, end - off, view)
        if rc != 0:
            raise CorruptSnapshotError(
                f"block {block} at body offset {off}: {_code_message(rc)}", rc)
        off += view.block_len
        block += 1
    raise CorruptSnapshotError(  # pragma: no cover - the index refuses only what decode does
        f"blocks at body offsets {start}..{end} cannot be indexed", lib.ENG_E_ARG)


class IndexedTx(NamedTuple):
    """The header fields of a record applied to a :class:`StateIndex`."""

    tx_id: int
    epoch: int
    first_position: int
    event_count: int
    tracking_count: int = 0  # the index skips tracking: the caller applies it


# Names per eng_index_mark call (StateIndex.mark).
_MARK_BATCH = 4096
# The end of every error of a snapshot written from the index that only a bug can cause.
_SNAPSHOT_BUG = (": a bug in the engine, not damage on disk; no snapshot was written and "
                 "the database is unchanged. Please report it; meanwhile `db.streams()` folds "
                 "the index into a dict, after which `db.snapshot()` writes from the dict")


class StateIndex:
    """The C state index (csrc/engine_index.h): stream -> (version, value, last_tx)
    without a Python object per stream. Filled at open, then read-only.

    Ownership: the slots live in memory allocated here; every name and value they
    point at lives in a buffer kept in ``self._keep`` for the index's life (a record's
    ``bytes``, a snapshot body's ``bytes`` or anonymous mapping, never closed).
    """

    def __init__(self, expected_entries: int) -> None:
        cap = 16
        while cap * 3 < (expected_entries + 1) * 4:  # at most 3/4 full; grows if needed
            cap *= 2
        self._cap = cap
        self._slots = _slot_table(cap)
        self._count = ffi.new("uint64_t *")
        self._keep: list[SnapshotBody | memoryview] = []  # what the slots point into

    def _grow(self) -> None:
        if (self._count[0] + 1) * 4 <= self._cap * 3:  # ENG_E_ARG, but not from a full table
            raise EngineError("state index refused its arguments (not full): a bug, not a "
                              "damaged file; please report it")
        cap = self._cap * 2
        slots = _slot_table(cap)
        rc = lib.eng_index_rehash(self._slots, self._cap, slots, cap, self._count)
        if rc != 0:  # pragma: no cover - only on a broken invariant
            raise EngineError(f"state index rehash failed: {_code_message(rc)}")
        self._slots, self._cap = slots, cap

    def __len__(self) -> int:
        return int(self._count[0])

    def put_body(self, body: SnapshotBody) -> None:
        """Index every entry of a (verified) snapshot body."""
        if rc := self.put_blocks(body, 0, len(body)):
            raise CorruptSnapshotError(f"snapshot body cannot be indexed: {_code_message(rc)}")

    def put_blocks(self, body: SnapshotBody, start: int, end: int) -> int:
        """Index the blocks of ``body[start:end)`` (whole blocks); 0, or the C decoder's
        error code for a block it refuses (:func:`index_blocks` says which). ``body``
        is kept alive with the index."""
        buf = ffi.from_buffer(body) + start
        while (rc := lib.eng_index_put_body(self._slots, self._cap, self._count, buf,
                                            end - start)) == lib.ENG_E_ARG:
            self._grow()  # full: grow and apply the blocks again (idempotent)
        if rc != 0:
            return int(rc)
        if not self._keep or self._keep[-1] is not body:
            self._keep.append(body)
        return 0

    def put_tx(self, rec: bytes | memoryview) -> IndexedTx:
        """Apply one record (default reducer); returns what its header says."""
        view = ffi.new("eng_tx_view *")
        buf = ffi.from_buffer(rec)
        while (rc := lib.eng_index_put_tx(self._slots, self._cap, self._count, buf, len(rec),
                                          view)) == lib.ENG_E_ARG:
            self._grow()  # full: grow and apply the record again (idempotent)
        if rc != 0:
            raise _corrupt_log(rc)
        self._keep.append(rec)
        return IndexedTx(view.tx_id, view.epoch, view.first_position, view.event_count,
                         view.tracking_count)

    def get(self, stream: str) -> tuple[int, bytes | None, int] | None:
        try:
            name = stream.encode("utf-8")
        except UnicodeEncodeError:
            return None  # such a name can never have been stored
        i = lib.eng_index_find(self._slots, self._cap, name, len(name))
        if i < 0:
            return None
        s = self._slots[i]
        n = s.value_len
        value = None if n == lib.ENG_VALUE_NONE else ffi.buffer(s.value, n)[:]
        return int(s.version), value, int(s.last_tx)


    # ------------------------------------------------ snapshots from the index
    def mark(self, names: Collection[str]) -> tuple[bytearray, int]:
        """A bitmap (one bit per slot) marking the slots of ``names`` (those the index
        holds; others are skipped), and how many distinct slots it marked: the
        entries a snapshot takes from elsewhere (what changed since open). One C call
        (the GIL released) per batch of 4096 names."""
        bits = bytearray((self._cap + 7) // 8)
        # surrogatepass: a name that is not valid UTF-8 cannot be in the index (its
        # names come from validated files), so its bytes simply never match
        cbits = ffi.from_buffer(bits)
        marked = 0
        it = iter(names)
        # In batches: one join (and encode) of every name changed since open would hold
        # the GIL for ~100 ms at a million names; a batch of 4096 holds it well under 1.
        while batch := list(islice(it, _MARK_BATCH)):
            joined = "\0".join(batch)
            if joined.count("\0") != len(batch) - 1:  # names never hold one
                raise ValueError("a name to mark contains a NUL character")
            if not joined:  # only the empty name, which is never a stream's
                continue
            buf = (joined + "\0").encode("utf-8", "surrogatepass")
            got = lib.eng_index_mark(self._slots, self._cap, buf, len(buf), cbits)
            if got < 0:  # pragma: no cover - the buffer is built ended above
                raise EngineError(f"state index refused the names to mark "
                                  f"({_code_message(int(got))}){_SNAPSHOT_BUG}")
            marked += int(got)
        return bits, marked

    def blocks(self, bits: bytearray | None = None) -> Iterator[memoryview]:
        """The index's entries, except those marked in ``bits``, as encoded snapshot
        blocks (at most BLOCK_MAX_ENTRIES entries, cut once their values pass
        BLOCK_TARGET_BYTES or where the gathering buffers end), each gathered and
        encoded in C with the GIL released. The index must stay alive
        and unchanged meanwhile (it is read-only after open). Each block is a view of
        one buffer reused for the next: consume it before asking for the next (a
        buffer per block left the process holding their memory after the snapshot)."""
        most = formats.BLOCK_MAX_ENTRIES
        versions = _unzeroed("uint64_t[]", most)
        last_tx = _unzeroed("uint64_t[]", most)
        lens = _unzeroed("uint32_t[]", most)
        none_idx = _unzeroed("uint32_t[]", most)
        names_cap = most * 64  # >= MAX_NAME_BYTES + 1: any one name fits
        values_cap = formats.BLOCK_TARGET_BYTES + (1 << 16)  # grown for a bigger value
        names = _unzeroed("uint8_t[]", names_cap)
        values = _unzeroed("uint8_t[]", values_cap)
        out = _unzeroed("uint8_t[]", 1)
        if bits is not None and len(bits) * 8 < self._cap:
            raise ValueError(f"the bitmap holds {len(bits) * 8} bits for {self._cap} slots")
        cbits = ffi.NULL if bits is None else ffi.from_buffer(bits)
        pos = ffi.new("uint64_t *", 0)
        cols = ffi.new("eng_columns *")
        while True:
            rc = lib.eng_index_columns(self._slots, self._cap, cbits, pos, most,
                                       formats.BLOCK_TARGET_BYTES, versions, last_tx, lens,
                                       none_idx, names, names_cap, values, values_cap, cols)
            if rc == lib.ENG_E_ARG and cols.n == 0 and (cols.names_len > names_cap
                                                        or cols.values_len > values_cap):
                # one entry did not fit (a custom reducer's value may pass MAX_EVENT_BYTES):
                # C said what it needs: names to exactly that, values to that plus a
                # block's worth
                if cols.names_len > names_cap:
                    names_cap = cols.names_len
                    names = _unzeroed("uint8_t[]", names_cap)
                if cols.values_len > values_cap:
                    values_cap = min(0xFFFFFFFF, formats.BLOCK_TARGET_BYTES
                                     + cols.values_len)
                    values = _unzeroed("uint8_t[]", values_cap)
                continue
            if rc != 0:
                raise EngineError(f"state index could not be cut into snapshot blocks "
                                  f"({_code_message(int(rc))}){_SNAPSHOT_BUG}")
            n = cols.n
            if n == 0:
                if pos[0] != self._cap:  # pragma: no cover - C returns n == 0 only at the end
                    raise EngineError(f"state index cut stopped before its end{_SNAPSHOT_BUG}")
                return  # every slot visited
            size = lib.eng_block_encoded_size(n, cols.none_count, cols.names_len,
                                              cols.values_len)
            if len(out) < size:
                out = _unzeroed("uint8_t[]", size)
            got = lib.eng_block_encode(n, versions, last_tx, lens, cols.none_count, none_idx,
                                       names, cols.names_len, values, cols.values_len, out,
                                       size)
            if got != size:  # pragma: no cover - the columns come from the index
                raise EngineError(f"C encoder refused an index block "
                                  f"({_code_message(int(got))}){_SNAPSHOT_BUG}")
            yield memoryview(ffi.buffer(out, size))


def _slot_table(cap: int) -> Any:
    """``cap`` zeroed (empty) slots in an anonymous mapping that asks for transparent
    huge pages: the table is tens of MB written at random, and 4 KiB pages would cost
    thousands of page faults and TLB misses while the index is built. The returned
    cdata keeps the mapping alive (ffi.from_buffer holds a reference to it)."""
    return ffi.from_buffer("eng_slot[]", anonymous_memory(cap * ffi.sizeof("eng_slot")),
                           require_writable=True)


def anonymous_memory(size: int) -> mmap.mmap:
    """``size`` zeroed bytes of private anonymous memory that asks for transparent huge
    pages. Private, not shared: the kernel gives huge pages to shared (shmem) mappings
    only if ``shmem_enabled`` allows it, and on this project's VM it does not; there a
    25 MiB table took 30 ms of page faults shared and 5 ms private (2026-12-01). A
    forked child also gets its own copy, never the parent's pages."""
    mem = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        with contextlib.suppress(OSError):  # a hint: fine if the kernel declines
            mem.madvise(mmap.MADV_HUGEPAGE)
    return mem


def decode_blocks(body: SnapshotBody) -> Iterator[BlockColumns]:
    """Decode every block of a decompressed snapshot body, in order.

    Raises :class:`CorruptSnapshotError` naming the block and byte offset.
    """
    view = ffi.new("eng_block_view *")
    cbuf = ffi.from_buffer(body)
    off = 0
    index = 0
    total = len(body)
    while off < total:
        rc = lib.eng_block_decode(cbuf + off, total - off, view)
        if rc != 0:
            raise CorruptSnapshotError(
                f"block {index} at body offset {off}: {_code_message(rc)}", rc)
        n = view.entry_count
        blk = body[off : off + view.block_len]
        base = 0  # offsets in view are relative to the block start
        try:
            names = _names(blk, base + view.names_off, view.names_len)
        except UnicodeDecodeError as exc:
            raise CorruptSnapshotError(
                f"block {index}: name column is not valid UTF-8", -6) from exc
        values: list[bytes | None] = _slices(  # type: ignore[assignment]
            blk, view.values_off, _u32_list(blk, view.value_lens_off, n)
        )
        if view.none_count:
            for i in _u32_list(blk, view.none_idx_off, view.none_count):
                values[i] = None
        yield BlockColumns(
            names, _u64_list(blk, view.versions_off, n), _u64_list(blk, view.last_tx_off, n), values
        )
        off += view.block_len
        index += 1
