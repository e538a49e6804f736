"""Snapshot files: the whole state at one position, zstd-compressed.

``DIR/snapshots/<epoch>-<tx_id>.snap``, written to ``.snap.tmp``, fsynced,
renamed, and the directory fsynced, so a snapshot is either whole or absent.
Layout in docs/FORMAT.md: an uncompressed header (magic, version, db_id,
position, counts, epoch history, header checksum), a zstd frame holding
checksummed state blocks (encoded and validated by the C core), and a footer
checksum over every byte before it.

This module reads and writes files only; it knows nothing of the log.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice

import zstandard

from . import formats, layout
from .errors import CorruptSnapshotError, StorageError, storage_error
from .files import fs
from .model import EpochRecord, Position, SnapshotInfo
from .native import (
    SnapshotBody,
    StateIndex,
    anonymous_memory,
    decode_blocks,
    encode_block,
    index_blocks,
    scan_blocks,
    xxh64,
    xxh64_parts,
)

_HEADER = formats.SNAP_HEADER
_U64 = formats.U64_LE
_FOOTER_SIZE = formats.SNAP_FOOTER_SIZE

StateEntry = tuple[int, bytes | None, int]  # (version, value, last_tx)


@dataclass(frozen=True)
class SnapshotHeader:
    path: str
    db_id: str
    epoch: int
    tx_id: int
    last_position: int
    stream_count: int
    block_count: int
    body_raw_len: int
    body_compressed_len: int
    created: float
    history: tuple[EpochRecord, ...]
    file_bytes: int
    version: int = formats.SNAP_VERSION
    # xxh64 of the record of tx ``tx_id`` (its trailing 8 bytes): which log this snapshot
    # belongs to. None when not recorded (a version-1 file, tx 0, or a writer that did
    # not know it): such a snapshot's lineage is unproven and it is accepted as before.
    tx_checksum: int | None = None

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.tx_id)


@dataclass(frozen=True)
class LoadedSnapshot:
    """A verified snapshot: its header and decompressed body. ``state`` (a dict with
    one entry per stream) is built from the body on first use; opening with the
    default reducer never builds it (it indexes the body in C instead)."""

    header: SnapshotHeader
    body: SnapshotBody  # an anonymous mapping when loaded into an index
    # the StateIndex the body was loaded into (load_snapshot(..., indexed=True)), or None;
    # the loader takes it (and clears this) to index the log's tail into it
    index: StateIndex | None = None
    _state: dict[str, StateEntry] | None = None

    @property
    def state(self) -> dict[str, StateEntry]:
        if self._state is None:
            object.__setattr__(self, "_state", build_state(self.header, self.body))
        assert self._state is not None
        return self._state


def list_snapshots(snap_dir: str) -> list[tuple[Position, str]]:
    """Snapshot files in ``snap_dir``, newest ``(epoch, tx_id)`` first."""
    try:
        names = os.listdir(snap_dir)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StorageError(f"cannot list {snap_dir}: {exc}") from exc
    found = []
    for name in names:
        pos = layout.parse_snapshot_name(name)
        if pos is not None:
            found.append((Position(*pos), os.path.join(snap_dir, name)))
    found.sort(reverse=True)
    return found


#: A dict is cut into blocks of at most this many entries (the format allows up to
#: BLOCK_MAX_ENTRIES; the C index's blocks use that). Each block's Python work holds
#: the GIL, and the compressor releases it between blocks: at 2048 entries that is
#: ~1-2 ms at a time on this project's VM, so a committing thread waits about that
#: long behind a snapshot, where 16384 held it ~9 ms (more than the 5 ms switch
#: interval after which the committer would force the GIL back).
DICT_BLOCK_ENTRIES = 2048


def _blocks_of(state: dict[str, StateEntry]) -> Iterator[list[tuple[str, StateEntry]]]:
    """Cut the state into blocks of at most DICT_BLOCK_ENTRIES entries whose values
    pass BLOCK_TARGET_BYTES by at most one value (so a block's u32 lengths never
    overflow while each value is under 4 GiB: an event's data is at most
    MAX_EVENT_BYTES, a custom reducer's folded value may be larger)."""
    items = iter(state.items())
    while True:
        part = list(islice(items, DICT_BLOCK_ENTRIES))
        if not part:
            return
        start = 0
        size = 0
        for i, (_k, (_v, value, _t)) in enumerate(part):
            size += len(value) if value is not None else 0
            if size >= formats.BLOCK_TARGET_BYTES:
                yield part[start : i + 1]
                start, size = i + 1, 0
        if start < len(part):
            yield part[start:]


def _encoded_blocks(state: dict[str, StateEntry]) -> Iterator[bytes]:
    """``state`` as encoded snapshot blocks (the cut of :func:`_blocks_of`)."""
    for part in _blocks_of(state):
        names = [k for k, _ in part]
        versions, values, last_tx = zip(*(v for _, v in part), strict=True)
        yield encode_block(names, versions, last_tx, values)


def write_snapshot(
    snap_dir: str,
    *,
    db_id: str,
    epoch: int,
    tx_id: int,
    last_position: int,
    history: Iterable[EpochRecord],
    state: dict[str, StateEntry],
    tx_checksum: int | None,
    level: int = 3,
    base: StateIndex | None = None,
) -> SnapshotInfo:
    """Write ``state`` (a private copy the caller will not mutate) as a snapshot.

    With ``base`` (the C index of an indexed open, read-only), the snapshot holds
    ``base``'s entries except those ``state`` has, plus ``state``: the state of a
    database whose changes since open are ``state``. The index's entries are cut
    into blocks and encoded in C (no Python object per entry, the GIL released), so
    such a snapshot neither folds the index into a dict first nor holds the GIL for
    long (``StateIndex.blocks``).

    ``tx_checksum`` is the xxh64 of the log record of ``tx_id`` (the record's trailing
    8 bytes; see :func:`record_checksum`), or None when the writer does not know it (tx
    0 has no record). Returns once the file and its directory entry are durable.
    """
    if tx_checksum is not None and (tx_id == 0 or not 0 <= tx_checksum <= formats.U64_MAX):
        raise ValueError(f"tx_checksum {tx_checksum!r} for tx {tx_id}: a u64, and only for "
                         "a tx >= 1")
    files = fs()
    try:
        files.makedirs(snap_dir)
    except OSError as exc:
        raise storage_error(exc, f"cannot create {snap_dir}: {exc}. Check free disk space "
                            "and permissions.", directory=os.path.dirname(snap_dir),
                            writing=snap_dir, consequence="no snapshot was taken") from exc
    cctx = zstandard.ZstdCompressor(level=level)
    comp = cctx.compressobj()
    chunks: list[bytes] = []
    raw_len = 0
    blocks = 0
    streams = len(state)
    encoded: Iterator[bytes | memoryview] = _encoded_blocks(state)
    if base is not None:
        shadowed, overridden = base.mark(state)  # entries of base that state replaces
        streams += len(base) - overridden
        encoded = chain(base.blocks(shadowed), encoded)
    for blk in encoded:
        raw_len += len(blk)
        blocks += 1
        chunks.append(comp.compress(blk))
    chunks.append(comp.flush())
    body_len = sum(map(len, chunks))
    history_json = json.dumps([h.to_json() for h in history]).encode()
    header_len = _HEADER.size + len(history_json) + 8
    flags = 0 if tx_checksum is None else formats.SNAP_FLAG_TX_CHECKSUM
    head = _HEADER.pack(
        formats.SNAP_MAGIC, formats.SNAP_VERSION, flags, header_len, db_id.encode("ascii"), 0,
        epoch, tx_id, last_position, streams, blocks, raw_len, body_len, time.time_ns(),
        len(history_json), 0, tx_checksum or 0,
    ) + history_json  # fmt: skip
    head += _U64.pack(xxh64(head))
    # The header, the body's chunks and the footer are written as they are: joining
    # them in Python copied the whole file twice while holding the GIL, and even one
    # buffer assembled in C cost a committer a stall of ~5-7 ms at 1M streams when it
    # was unmapped. The file checksum is taken over the parts in C.
    parts: list[bytes | memoryview] = [head, *chunks]
    del chunks
    parts.append(_U64.pack(xxh64_parts(parts)) + formats.SNAP_END_MAGIC)
    size = sum(map(len, parts))

    final = os.path.join(snap_dir, layout.snapshot_name(epoch, tx_id))
    files.write_atomic(final, layout.snapshot_tmp(final), parts)  # StorageError on failure
    return SnapshotInfo(path=final, epoch=epoch, tx_id=tx_id, streams=streams, bytes=size)


def _corrupt(path: str, why: str) -> CorruptSnapshotError:
    return CorruptSnapshotError(
        f"snapshot {path} is corrupt: {why}. The engine falls back to an older snapshot "
        "when one is usable; `engine-admin verify DIR` lists every damaged file."
    )


def record_checksum(record: bytes | bytearray | memoryview) -> int:
    """The xxh64 a transaction record carries in its trailing 8 bytes (FORMAT.md
    section 2): what a snapshot's ``tx_checksum`` holds for the record of its tx."""
    return int(_U64.unpack_from(record, len(record) - formats.TX_TRAILER_SIZE)[0])


def _parse_header(path: str, data: bytes) -> SnapshotHeader:
    if len(data) < formats.SNAP_HEADER_V1.size + 8 + _FOOTER_SIZE:
        raise _corrupt(path, f"file is {len(data)} bytes, shorter than a header (truncated)")
    magic, version = data[:8], formats.U16_LE.unpack_from(data, 8)[0]
    if magic != formats.SNAP_MAGIC:
        raise _corrupt(path, f"bad magic {magic!r}")
    if version not in formats.SNAP_VERSIONS_READ:
        raise _corrupt(path, f"format version {version} is not readable by this build "
                             f"(reads {', '.join(map(str, formats.SNAP_VERSIONS_READ))})")
    fixed = _HEADER if version >= 2 else formats.SNAP_HEADER_V1
    if len(data) < fixed.size + 8 + _FOOTER_SIZE:
        raise _corrupt(path, f"file is {len(data)} bytes, shorter than a header (truncated)")
    (_magic, _version, flags, header_len, db_id, _r1, epoch, tx_id, last_position, streams,
     blocks, raw_len, comp_len, created_ns, history_len, _r2,
     *rest) = fixed.unpack_from(data)  # fmt: skip
    if header_len != fixed.size + history_len + 8 or header_len > len(data) - _FOOTER_SIZE:
        raise _corrupt(path, "header length field is out of range")
    (stored,) = _U64.unpack_from(data, header_len - 8)
    if xxh64(data[: header_len - 8]) != stored:
        raise _corrupt(path, "header checksum mismatch")
    tx_checksum: int | None = None
    if rest:  # version 2: the lineage field (a bad value here is a writer's bug)
        has = bool(flags & formats.SNAP_FLAG_TX_CHECKSUM)
        if has and tx_id == 0:
            raise _corrupt(path, "its header records a record checksum for tx 0, which has "
                                 "no record (header field out of range)")
        if not has and rest[0] != 0:
            raise _corrupt(path, f"its header holds tx_checksum {rest[0]:#018x} but its flag "
                                 "says none was recorded (header field out of range)")
        tx_checksum = rest[0] if has else None
    try:
        raw_history = json.loads(data[fixed.size : fixed.size + history_len])
        if not isinstance(raw_history, list) or not all(isinstance(d, dict) for d in raw_history):
            raise ValueError("not a list of epoch records")
        history = tuple(EpochRecord.from_json(d) for d in raw_history)
        db_id_s = db_id.decode("ascii")
    except (ValueError, KeyError, TypeError) as exc:
        raise _corrupt(path, f"epoch history is unreadable ({exc})") from exc
    return SnapshotHeader(
        path=path, db_id=db_id_s, epoch=epoch, tx_id=tx_id, last_position=last_position,
        stream_count=streams, block_count=blocks, body_raw_len=raw_len,
        body_compressed_len=comp_len, created=created_ns / 1e9, history=history,
        file_bytes=len(data), version=version, tx_checksum=tx_checksum,
    )  # fmt: skip


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise StorageError(f"cannot read snapshot {path}: {exc}") from exc


def read_header(path: str) -> SnapshotHeader:
    """Parse and checksum only the header (cheap: for listings and ``inspect``)."""
    return _parse_header(path, _read(path))


def load_snapshot(path: str, *, indexed: bool = False) -> LoadedSnapshot:
    """Read a snapshot and verify every checksum and block (no per-entry objects).

    With ``indexed`` (an open with the default reducer) every entry is also put into
    a :class:`StateIndex`, which the result carries (``.index``): a helper thread
    decompresses the body while this one checks and indexes each block as soon as
    it is whole (:func:`_inflate_indexed`). The checks are the same either way.

    Raises :class:`CorruptSnapshotError` naming the file and the failed check.
    """
    return _verified(path, _read(path), indexed)


def _verified(path: str, data: bytes, indexed: bool = False) -> LoadedSnapshot:
    header = _parse_header(path, data)
    body_start = len(data) - _FOOTER_SIZE - header.body_compressed_len
    if data[-8:] != formats.SNAP_END_MAGIC:
        raise _corrupt(path, "end magic missing (file truncated?)")
    if body_start != header_len_of(data):
        raise _corrupt(path, "body length does not match the file size (truncated or extended)")
    (stored,) = _U64.unpack_from(data, len(data) - _FOOTER_SIZE)
    if xxh64(memoryview(data)[: len(data) - _FOOTER_SIZE]) != stored:
        raise _corrupt(path, "file checksum mismatch")
    compressed = memoryview(data)[body_start : body_start + header.body_compressed_len]
    body: bytes | mmap.mmap
    # Sized for the snapshot's streams and some new ones from the tail (it grows), but
    # never past what the body can hold (an entry takes >= MIN_ENTRY_BYTES of it): a
    # header whose count lies, checksums and all, is refused below as the plain load
    # refuses it, not by failing to allocate a table for it.
    streams = min(header.stream_count, header.body_raw_len // MIN_ENTRY_BYTES)
    index = StateIndex(streams + streams // 4) if indexed else None
    if index is not None and header.body_raw_len > 0:
        body, blocks, entries = _inflate_indexed(path, compressed, header.body_raw_len, index)
    else:
        try:
            body = zstandard.ZstdDecompressor().decompress(
                compressed, max_output_size=header.body_raw_len, allow_extra_data=False)
        except zstandard.ZstdError as exc:
            raise _corrupt(path, f"body does not decompress ({exc})") from exc
        if len(body) != header.body_raw_len:
            raise _corrupt(path, "decompressed body has the wrong length")
        try:
            blocks, entries = scan_blocks(body)
        except CorruptSnapshotError as exc:
            raise _corrupt(path, str(exc)) from exc
    named = layout.parse_snapshot_name(os.path.basename(path))
    if named and named != (header.epoch, header.tx_id):
        raise _corrupt(path, f"its name says epoch {named[0]}, tx {named[1]} but its header "
                             f"says epoch {header.epoch}, tx {header.tx_id}")
    if blocks != header.block_count or entries != header.stream_count:
        raise _corrupt(path, f"holds {entries} entries in {blocks} blocks, header says "
                             f"{header.stream_count} in {header.block_count}")
    return LoadedSnapshot(header=header, body=body, index=index)


#: The helper thread publishes the decompressed body in stretches of this many bytes.
INFLATE_STEP = 1 << 20
#: The fewest body bytes an entry takes: 20 of columns (version, last_tx, value
#: length) and a name of at least one byte with its NUL.
MIN_ENTRY_BYTES = 22


class _Inflating:
    """How far the helper thread has decompressed a body (guarded by ``cond``)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.done_bytes = 0  # bytes of the body written (only grows)
        self.finished = False  # the helper returned (error set if it failed)
        self.error: str | None = None
        self.stop = False  # the checking thread gave up: the helper stops early


def _frame_end(compressed: memoryview) -> int | None:
    """Where the zstd frame that starts ``compressed`` ends (RFC 8878, section 3.1.1:
    its header, then blocks of a 3-byte header each, the last one flagged, then the
    optional 4-byte checksum), or None if it runs past the end. Only the framing is
    read, no block is decompressed: it tells the streaming decompressor, which
    stops quietly at the end of its input, a frame cut short or followed by more
    bytes, which the plain load's ``allow_extra_data=False`` refuses."""
    try:
        off = zstandard.frame_header_size(compressed)
    except zstandard.ZstdError:
        return None
    checksum = 4 if compressed[4] & 0x04 else 0  # Content_Checksum_flag of the descriptor
    while off + 3 <= len(compressed):
        head = compressed[off] | compressed[off + 1] << 8 | compressed[off + 2] << 16
        kind, size = (head >> 1) & 3, head >> 3
        if kind == 3:  # reserved: not a block
            return None
        off += 3 + (1 if kind == 1 else size)  # an RLE block holds one byte
        if head & 1:  # Last_Block
            return off + checksum
    return None


def _inflate(compressed: memoryview, body: mmap.mmap, progress: _Inflating) -> None:
    """Helper thread: decompress ``compressed`` into ``body``, which is exactly the
    length the header gives, publishing each stretch. The frame must end exactly at
    the end of ``compressed`` and fill ``body`` exactly, as the plain load requires.
    Never raises: an error is published."""
    error: str | None = None
    try:
        end = _frame_end(compressed)
        if end is None or end > len(compressed):
            error = "body does not decompress (its frame does not end within it)"
        elif end < len(compressed):
            error = (f"body does not decompress ({len(compressed) - end} bytes after the end "
                     "of its frame)")
        else:
            reader = zstandard.ZstdDecompressor().stream_reader(compressed)
            out = memoryview(body)
            try:
                off = 0
                while off < len(body) and not progress.stop:
                    n = reader.readinto(out[off : off + INFLATE_STEP])
                    if n == 0:
                        error = "decompressed body has the wrong length"
                        break
                    off += n
                    with progress.cond:
                        progress.done_bytes = off
                        progress.cond.notify()
                if error is None and not progress.stop and reader.read(1):
                    error = "decompressed body has the wrong length"
            finally:
                out.release()
    except zstandard.ZstdError as exc:
        error = f"body does not decompress ({exc})"
    except BaseException as exc:  # pragma: no cover - reported, never lost in the thread
        error = f"body could not be decompressed ({type(exc).__name__}: {exc})"
    with progress.cond:
        progress.error = error
        progress.finished = True
        progress.cond.notify()


def _inflate_indexed(path: str, compressed: memoryview, raw_len: int,
                     index: StateIndex) -> tuple[mmap.mmap, int, int]:
    """Decompress a body in a helper thread while this thread checks and indexes its
    blocks (:func:`engine.native.index_blocks`) as they become whole; the C calls
    on both sides release the GIL, so on two cores the two overlap. Returns
    ``(body, blocks, entries)``; the body lives in an anonymous mapping (its pages
    are touched only as the helper writes them) that the index keeps alive.

    The helper is always joined before this returns or raises: nothing writes the
    body after it."""
    body = anonymous_memory(raw_len)
    progress = _Inflating()
    helper = threading.Thread(target=_inflate, args=(compressed, body, progress),
                              name="engine-snapshot-inflate", daemon=True)
    pos = blocks = entries = avail = 0
    try:
        helper.start()  # inside: an interrupt in start() may come once it runs
        while True:
            with progress.cond:  # woken once per stretch the helper publishes
                while not progress.finished and progress.done_bytes == avail:
                    progress.cond.wait()
                avail, finished, error = progress.done_bytes, progress.finished, progress.error
            if error is not None:
                raise _corrupt(path, error)
            try:
                pos, b, e = index_blocks(body, pos, avail, index, blocks, final=finished)
            except CorruptSnapshotError as exc:
                raise _corrupt(path, str(exc)) from exc
            blocks += b
            entries += e
            if finished:
                return body, blocks, entries
    finally:
        progress.stop = True
        if helper.ident is not None:  # started
            helper.join()


def load_snapshot_from(data: bytes, where: str) -> LoadedSnapshot:
    """Verify snapshot bytes read from elsewhere (a backup target); ``where`` names them."""
    return _verified(where, data)


def load_snapshot_bytes(path: str) -> bytes:
    """The bytes of a snapshot file after verifying them all (as :func:`load_snapshot`)."""
    data = _read(path)
    _verified(path, data)
    return data


def build_state(header: SnapshotHeader, body: SnapshotBody) -> dict[str, StateEntry]:
    """The state dict of a verified body (names are distinct: checked against the header)."""
    state: dict[str, StateEntry] = {}
    try:
        for cols in decode_blocks(body):
            state.update(zip(cols.names, zip(cols.versions, cols.values, cols.last_tx,
                                             strict=True), strict=True))
    except CorruptSnapshotError as exc:
        raise _corrupt(header.path, str(exc)) from exc
    if len(state) != header.stream_count:
        raise _corrupt(header.path, f"holds {len(state)} distinct streams, header says "
                                    f"{header.stream_count} (a name appears twice)")
    return state


def header_len_of(data: bytes) -> int:
    return int(formats.U32_LE.unpack_from(data, formats.SNAP_HEADER_LEN_OFFSET)[0])


def prune(snap_dir: str, keep: int) -> list[str]:
    """Delete all but the ``keep`` newest snapshots (and stale temp files).

    Called only after a new snapshot is durable. Returns the removed paths.
    """
    files = fs()
    removed: list[str] = []
    for _pos, path in list_snapshots(snap_dir)[max(keep, 1):]:
        try:
            files.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot remove old snapshot {path}: {exc}") from exc
    try:
        names = os.listdir(snap_dir)
    except OSError as exc:
        raise StorageError(f"cannot list {snap_dir} to prune it: {exc}. The new snapshot is "
                           "durable; check the directory's permissions.") from exc
    for name in names:
        if name.endswith(layout.SNAP_TMP_SUFFIX):
            with contextlib.suppress(OSError):
                files.unlink(os.path.join(snap_dir, name))
    if removed:
        try:
            files.fsync_dir(snap_dir)
        except OSError as exc:
            raise StorageError(f"cannot fsync {snap_dir}: {exc}") from exc
    return removed
