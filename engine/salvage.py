"""Finding intact transaction records, and the log's meta entries, in raw bytes.

A damaged ``data.mdb`` can crash a process that lets LMDB map it (a truncated file
raises SIGBUS when a page past its end is touched; a zeroed or scrambled page trips
an LMDB assertion, SIGABRT). So ``engine-admin repair`` never opens it with LMDB:
it reads the file with plain ``pread`` calls and looks for the records themselves.

Why that finds them: LMDB stores a value contiguously, either inline in a leaf
page (node header ``u16 lo, u16 hi, u16 flags, u16 ksize``, the key, then the value;
size = ``lo | hi << 16``) or in consecutive overflow pages (one 16-byte page header,
then the value). A transaction record starts with "ETXR", its fixed header gives
its total size, and it ends with the xxh64 of everything before it: a run of bytes
that passes the C decoder is a whole record, wherever it lies. LMDB is
copy-on-write, so freed pages may hold older copies of records: the scan reports
every intact copy; choosing among them is the caller's job (``ops.repair``).

Meta entries (key = 8 zero bytes + ASCII name) are found the same way, by their
key inside a leaf node whose header agrees with it.

Nothing here writes; the salvage file helpers read and build the bytes of
docs/FORMAT.md section 10 (records back to back).
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from . import formats
from .errors import CorruptLogError, StorageError
from .native import check_tx

# progress(bytes done, bytes total)
Progress = Callable[[int, int], None]

READ_CHUNK = 4 << 20        # bytes per pread: a failing chunk is zero-filled and reported
PROGRESS_BYTES = 8 << 20    # progress is reported every this many scanned bytes

# LMDB's on-disk constants (lmdb's mdb.c): page header = pgno u64, pad u16, flags u16,
# then lower/upper u16 (or the u32 overflow page count); the meta page's MDB_meta
# starts after it with magic u32 and version u32, and the page size is stored in
# the free database's md_pad (u32) at offset 40 of the page.
_PAGE_HEADER = 16
_P_BRANCH, _P_LEAF, _P_OVERFLOW = 0x01, 0x02, 0x04
_F_BIGDATA = 0x01
_MDB_MAGIC = 0xBEEFC0DE
_NODE = struct.Struct("<HHHH")   # lo, hi, flags, ksize
_U16 = struct.Struct("<H")
_U32 = formats.U32_LE
_U64 = formats.U64_LE
_LENGTHS = struct.Struct("<IIII")  # n, streams_len, types_len, data_len at offset 40
_BE64 = struct.Struct(">Q")
_MIN_RECORD = formats.TX_HEADER_SIZE + formats.TX_TRAILER_SIZE

META_NAMES = ("db_id", "format", "epoch", "base_tx", "base_position", "epoch_history")


@dataclass(frozen=True)
class FoundRecord:
    """One intact copy of a record: where it lies and what its header says.

    ``anchored``: LMDB's structure around it agrees (a leaf node whose key is its
    tx id and whose size is its length, or the start of an overflow run); a copy that
    is not anchored is still intact, but might be bytes inside some other value.
    """

    offset: int
    size: int
    tx_id: int
    epoch: int
    ts_ns: int
    first_position: int
    count: int
    anchored: bool
    checksum: int

    @property
    def last_position(self) -> int:
        return self.first_position + self.count - 1


@dataclass(frozen=True)
class DamagedCopy:
    """A run of bytes that starts like a record but fails a check."""

    offset: int
    claims_tx: int | None   # the tx id its header claims (unverified), if readable
    why: str


@dataclass
class RawScan:
    """Everything a scan of one file found (plain data)."""

    path: str
    size: int
    page_size: int
    records: list[FoundRecord] = field(default_factory=list)
    damaged: list[DamagedCopy] = field(default_factory=list)
    meta: dict[str, list[bytes]] = field(default_factory=dict)  # name -> distinct values
    unreadable: list[tuple[int, int]] = field(default_factory=list)  # [start, end) zeroed


def read_raw(path: str, progress: Progress | None = None
             ) -> tuple[bytearray, list[tuple[int, int]]]:
    """The whole file read with plain reads (never mapped): a chunk the disk refuses
    (EIO) is left zero-filled and listed as ``[start, end)``. The file is held in
    memory whole (repair needs random access to it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}. Check that it exists and is "
                           "readable.") from exc
    try:
        size = os.fstat(fd).st_size
        buf = bytearray(size)
        unreadable: list[tuple[int, int]] = []
        view = memoryview(buf)
        off = 0
        while off < size:
            n = min(READ_CHUNK, size - off)
            try:
                got = os.preadv(fd, [view[off : off + n]], off)
            except OSError:
                got = 0
                unreadable.append((off, off + n))
                off += n
                continue
            if got == 0:  # the file shrank while read: the rest stays zero
                unreadable.append((off, size))
                break
            off += got
            if progress is not None:
                progress(off, size)
        view.release()
        return buf, unreadable
    finally:
        os.close(fd)


def page_size_of(buf: bytes | bytearray) -> int:
    """LMDB's page size from either meta page (page 0, or page 1 at a likely size);
    the machine's page size when both are damaged."""
    for at in (0, 4096, 8192, 16384, 32768, 65536):
        if len(buf) >= at + 44 and _U32.unpack_from(buf, at + _PAGE_HEADER)[0] == _MDB_MAGIC:
            psize = _U32.unpack_from(buf, at + 40)[0]
            if psize >= 512 and psize & (psize - 1) == 0 and (at == 0 or at == psize):
                return int(psize)
    return mmap.PAGESIZE


def _page_flags(buf: bytes | bytearray, offset: int, psize: int) -> int:
    start = offset - offset % psize
    return int(_U16.unpack_from(buf, start + 10)[0]) if start + 12 <= len(buf) else 0


def _anchored(buf: bytes | bytearray, off: int, size: int, tx_id: int, psize: int) -> bool:
    if off % psize == _PAGE_HEADER:  # the start of an overflow run
        flags = _U16.unpack_from(buf, off - 6)[0]
        pages = _U32.unpack_from(buf, off - 4)[0]
        return bool(flags & _P_OVERFLOW) and pages * psize >= size + _PAGE_HEADER
    if off < 16:
        return False
    lo, hi, flags, ksize = _NODE.unpack_from(buf, off - 16)
    return (ksize == 8 and flags == 0 and lo | hi << 16 == size
            and _BE64.unpack_from(buf, off - 8)[0] == tx_id
            and bool(_page_flags(buf, off - 16, psize) & _P_LEAF))


# record version 2 with flags bit 0 (FORMAT.md section 2)
_V2_TRACKING = struct.pack("<HH", formats.TX_VERSION_TRACKING, formats.TX_FLAG_TRACKING)


def _tracking_len(buf: bytes | bytearray, at: int, end: int) -> int:
    """Bytes of the tracking section at ``at`` as its own lengths say (bounded by
    ``end``; a section that runs past it yields a size the caller finds too big)."""
    if at + 4 > end:
        return end - at + 1
    count = _U32.unpack_from(buf, at)[0]
    p = at + 4
    for _ in range(min(count, (end - p) // 12 + 1)):
        if p + 12 > end:
            return end - at + 1
        p += 12 + _U32.unpack_from(buf, p + 8)[0]
    return p - at


def _record_at(buf: bytes | bytearray, off: int, psize: int) -> FoundRecord | DamagedCopy:
    end = len(buf)
    claims = _U64.unpack_from(buf, off + 8)[0] if off + 16 <= end else None
    if end - off < _MIN_RECORD:
        return DamagedCopy(off, claims, "cut off by the end of the file")
    n, sl, tl, dl = _LENGTHS.unpack_from(buf, off + 40)
    size = _MIN_RECORD + 20 * n + sl + tl + dl
    if buf[off + 4 : off + 8] == _V2_TRACKING:  # a tracking section before the trailer
        size += _tracking_len(buf, off + size - formats.TX_TRAILER_SIZE, end)
    if size > end - off:
        return DamagedCopy(off, claims, f"its header says {size} bytes, past the end of "
                                        "the file")
    rec = bytes(buf[off : off + size])
    try:
        tx_id, epoch, ts_ns, first_pos, count = check_tx(rec)
    except CorruptLogError as exc:
        return DamagedCopy(off, claims, str(exc))
    return FoundRecord(off, size, tx_id, epoch, ts_ns, first_pos, count,
                       _anchored(buf, off, size, tx_id, psize),
                       int(_U64.unpack_from(rec, size - 8)[0]))


def _meta_values(buf: bytes | bytearray, name: str, psize: int) -> list[bytes]:
    """Distinct values stored under the meta key ``name``: those in leaf pages, or if
    there are none, those in a node that agrees with its key anywhere else (a freed
    leaf page reused as an overflow page keeps its old nodes past the new value)."""
    key = formats.META_PREFIX + name.encode("ascii")
    in_leaf: list[bytes] = []
    elsewhere: list[bytes] = []
    at = buf.find(key)
    while at >= 0:
        if at >= 8:
            lo, hi, flags, ksize = _NODE.unpack_from(buf, at - 8)
            size = lo | hi << 16
            leaf = bool(_page_flags(buf, at - 8, psize) & _P_LEAF)
            found = in_leaf if leaf else elsewhere
            if ksize == len(key):
                value: bytes | None = None
                vstart = at + len(key)
                if flags == 0 and vstart + size <= len(buf):
                    value = bytes(buf[vstart : vstart + size])
                elif flags == _F_BIGDATA and vstart + 8 <= len(buf):
                    page = _U64.unpack_from(buf, vstart)[0] * psize
                    if (page + _PAGE_HEADER + size <= len(buf)
                            and _page_flags(buf, page, psize) & _P_OVERFLOW):
                        value = bytes(buf[page + _PAGE_HEADER : page + _PAGE_HEADER + size])
                if value is not None and value not in found:
                    found.append(value)
        at = buf.find(key, at + 1)
    return in_leaf or elsewhere


def scan(buf: bytes | bytearray, path: str, progress: Progress | None = None) -> RawScan:
    """Every intact record copy, every damaged one, and the meta values in ``buf``.

    The search skips over each intact record (bytes inside it are its payload, never
    another stored value); after a damaged candidate it goes on at the next byte.
    """
    psize = page_size_of(buf)
    out = RawScan(path=path, size=len(buf), page_size=psize)
    magic = formats.TX_MAGIC
    pos = 0
    next_report = PROGRESS_BYTES
    while True:
        off = buf.find(magic, pos)
        if off < 0:
            break
        got = _record_at(buf, off, psize)
        if isinstance(got, FoundRecord):
            out.records.append(got)
            pos = off + got.size
        else:
            out.damaged.append(got)
            pos = off + 1
        if progress is not None and off >= next_report:
            progress(off, len(buf))
            next_report = off + PROGRESS_BYTES
    for name in META_NAMES:
        out.meta[name] = _meta_values(buf, name, psize)
    if progress is not None:
        progress(len(buf), len(buf))
    return out


def salvage_chunks(buf: bytes | bytearray, records: list[FoundRecord]) -> Iterator[bytes]:
    """The bytes of a salvage file holding ``records`` (FORMAT.md section 10)."""
    for r in records:
        yield bytes(buf[r.offset : r.offset + r.size])


def read_salvage(path: str) -> Iterator[bytes]:
    """The records of a salvage file, each checked by the C decoder; raises
    :class:`CorruptLogError` naming the offset of the first one that is not intact."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    off = 0
    while off < len(data):
        got = _record_at(data, off, mmap.PAGESIZE)
        if isinstance(got, DamagedCopy):
            why = got.why
            raise CorruptLogError(f"salvage file {path}: the record at offset {off} is not "
                                  f"intact ({why})")
        yield data[off : off + got.size]
        off += got.size
