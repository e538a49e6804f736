"""The commit journal: one flush per durable commit in front of LMDB.

Under ``sync="commit"`` and ``"group"`` LMDB commits without flushing (MDB_NOSYNC)
and every commit's records are first appended to ``DIR/log/journal`` and flushed
once (``fdatasync``), as SQLite's write-ahead log is; LMDB alone needs two ordered
flushes per commit (its data pages, then the meta page that makes them current).
``docs/FORMAT.md`` section 3, "Commit journal", has the bytes and the argument for
why an acknowledged commit survives a power cut; in short:

- a *checkpoint* (``LogStore._checkpoint``) flushes LMDB, saves the first 152 bytes
  of both its meta pages here (a *slot*) and keeps a read transaction open on that
  tree until the next checkpoint, so LMDB never reuses its pages meanwhile;
- every commit after it appends *frames* (its records) and flushes them before LMDB
  sees the commit;
- after a power cut, :func:`engine.log.recover_journal` writes the saved meta pages
  back (the tree they name is intact) and replays the frames: every acknowledged
  commit comes back, and nothing that was not written whole.

A crashed *process* loses nothing LMDB wrote (the page cache keeps it), so recovery
replays only when the boot id differs from the one the slot recorded (a reboot or a
power cut), the system gives none, or a failed checkpoint left the mark
``DIR/log/journal.replay`` (a failed flush may drop pages from the page cache; the
mark names the last tx LMDB accepted, and the replay stops there).

This module knows the file only; LMDB is engine.log's. Threads: a :class:`Journal`
is used under ``LogStore._write_lock`` only (it holds no lock of its own).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

from . import formats, layout
from .errors import CorruptLogError
from .files import fs
from .native import peek_tx_header, xxh64

_SLOT_HEAD = formats.JOURNAL_SLOT_HEAD
_FRAME_HEAD = formats.JOURNAL_FRAME_HEAD
_U64 = formats.U64_LE
_META = formats.JOURNAL_META_BYTES
_SLOT_LEN = _SLOT_HEAD.size + 2 * _META + 8      # what a slot's bytes come to (420)
_FRAMES = formats.JOURNAL_FRAMES_OFFSET
_TRAILER = formats.JOURNAL_FRAME_TRAILER
# The file is extended ahead of the frames in zero-filled steps: a flush of a write
# into blocks already allocated carries no metadata (fdatasync flushes the data
# only), and the zeros end a scan (no frame magic).
_EXTEND_BYTES = 1 << 20
# A file grown past this by a large transaction is cut back at the next checkpoint.
_TRIM_BYTES = 16 << 20
_IOV_MAX = 1020  # buffers per pwritev (Linux's IOV_MAX is 1024)


@dataclass(frozen=True)
class Slot:
    """A checkpoint: LMDB was flushed at ``lmdb_txnid`` holding txs up to ``last_tx``,
    and ``meta0``/``meta1`` are its two meta pages as they were then. ``db_id`` (36
    ASCII bytes, zeros before the log has one) and ``last_checksum`` (the xxh64
    trailer of tx ``last_tx``'s record, 0 without one) tie it to its log: recovery
    checks them before it replays anything."""

    seq: int
    lmdb_txnid: int
    last_tx: int
    page_size: int
    boot_id: bytes
    meta0: bytes
    meta1: bytes
    db_id: bytes = bytes(36)
    last_checksum: int = 0
    epoch: int = 0


@dataclass(frozen=True)
class JournalState:
    """What the file holds: the newest valid slot (None: none yet) and the frames
    after it, ``(tx_id, record)`` in order."""

    path: str
    slot: Slot | None
    frames: tuple[tuple[int, bytes], ...]


def encode_slot(slot: Slot) -> bytes:
    body = _SLOT_HEAD.pack(formats.JOURNAL_SLOT_MAGIC, formats.JOURNAL_VERSION, 0, slot.seq,
                           slot.lmdb_txnid, slot.last_tx, slot.page_size, _META,
                           slot.boot_id, slot.db_id, slot.last_checksum,
                           slot.epoch) + slot.meta0 + slot.meta1
    return body + _U64.pack(xxh64(body))


def decode_slot(raw: bytes) -> Slot | None:
    """The slot in ``raw`` (a slot's room), or None if it is not whole and valid (never
    written, or torn by a crash while it was written: the other slot then holds)."""
    if len(raw) < _SLOT_LEN:
        return None
    body = raw[:_SLOT_LEN - 8]
    if _U64.unpack_from(raw, _SLOT_LEN - 8)[0] != xxh64(body):
        return None
    (magic, version, _r, seq, txnid, last_tx, psize, meta_len, boot, db_id,
     last_sum, epoch) = _SLOT_HEAD.unpack_from(body)
    if magic != formats.JOURNAL_SLOT_MAGIC or version != formats.JOURNAL_VERSION \
            or meta_len != _META:
        return None
    m0 = body[_SLOT_HEAD.size:_SLOT_HEAD.size + _META]
    return Slot(seq, txnid, last_tx, psize, boot, m0, body[_SLOT_HEAD.size + _META:],
                db_id, last_sum, epoch)


def _frame_at(data: bytes, off: int, lap: int, tx_id: int) -> tuple[bytes, int] | None:
    """The record of the frame at ``off`` if it is whole, of lap ``lap`` and holds
    ``tx_id``, with the offset after it; else None."""
    if off + _FRAME_HEAD.size > len(data):
        return None
    magic, _r, f_lap, f_tx, n = _FRAME_HEAD.unpack_from(data, off)
    end = off + _FRAME_HEAD.size + n
    if magic != formats.JOURNAL_FRAME_MAGIC or f_lap != lap or f_tx != tx_id \
            or end + _TRAILER > len(data):
        return None
    if n < _TRAILER or _U64.unpack_from(data, end)[0] != _frame_sum(
            data[off:off + _FRAME_HEAD.size], data[end - _TRAILER:end]):
        return None
    rec = data[off + _FRAME_HEAD.size:end]
    try:  # the record's own checks: its xxh64 trailer covers every byte of it
        if peek_tx_header(rec)[0] != tx_id:
            return None
    except CorruptLogError:
        return None
    return rec, end + _TRAILER


def _frame_sum(head: bytes, rec_trailer: bytes | bytearray) -> int:
    """A frame's checksum: xxh64 of its header and the record's last 8 bytes, which are
    the record's own xxh64 (FORMAT.md section 2), so the record is covered too without
    hashing it twice on the commit path."""
    return xxh64(head + rec_trailer)


def read(log_path: str, *, frames: bool = True) -> JournalState | None:
    """Parse ``log_path``'s journal (None: there is none); with ``frames`` false, only
    its slots (two small reads). The frames end at the first one that is not whole,
    valid, of the slot's lap and next in tx order: a crash leaves at most the last
    frame torn. :class:`CorruptLogError` if a valid frame of the lap follows an
    invalid one (damage in the middle, not a torn end), or frames stand where no slot
    is."""
    path = layout.log_journal_file(log_path)
    try:
        with open(path, "rb") as f:
            data = f.read() if frames else f.read(_FRAMES + 4)
    except FileNotFoundError:
        return None
    slots = [s for s in (decode_slot(data[i * formats.JOURNAL_SLOT_BYTES:
                                          (i + 1) * formats.JOURNAL_SLOT_BYTES])
                         for i in (0, 1)) if s is not None]
    if not slots:
        if data[_FRAMES:_FRAMES + 4] == formats.JOURNAL_FRAME_MAGIC:
            raise CorruptLogError(
                f"the commit journal {path} holds frames but neither of its checkpoint "
                "slots is valid: the commits in it cannot be placed. Set the file aside "
                "and open the database (the commits after LMDB's last flush are lost), "
                "or restore from a backup (docs/RUNBOOK.md, 'A damaged commit journal').")
        return JournalState(path, None, ())
    slot = max(slots, key=lambda s: s.seq)
    if not frames:
        return JournalState(path, slot, ())
    found: list[tuple[int, bytes]] = []
    off, tx = _FRAMES, slot.last_tx + 1
    while (got := _frame_at(data, off, slot.seq, tx)) is not None:
        rec, off = got
        found.append((tx, rec))
        tx += 1
    _refuse_damage_after(data, off, slot, tx, path)
    return JournalState(path, slot, tuple(found))


def lap_is_empty(log_path: str, slot: Slot) -> bool:
    """Whether no frame follows ``slot`` (one read of the first frame's place)."""
    try:
        with open(layout.log_journal_file(log_path), "rb") as f:
            f.seek(_FRAMES)
            head = f.read(_FRAME_HEAD.size)
            if len(head) < _FRAME_HEAD.size:
                return True
            n = _FRAME_HEAD.unpack_from(head)[4]
            if n > formats.MAX_TX_BYTES:
                return True
            data = head + f.read(n + _TRAILER)
    except FileNotFoundError:
        return True
    return _frame_at(data, 0, slot.seq, slot.last_tx + 1) is None


def _refuse_damage_after(data: bytes, off: int, slot: Slot, tx: int, path: str) -> None:
    """A torn last frame ends the journal; a valid frame of the same lap further on
    means the one at ``off`` (tx ``tx``) was damaged after it was flushed."""
    marker = formats.JOURNAL_FRAME_MAGIC + bytes(4) + _U64.pack(slot.seq)
    at = data.find(marker, off)  # from off itself: a whole frame there of a later tx is a gap
    while at != -1 and at + _FRAME_HEAD.size <= len(data):
        f_tx = _FRAME_HEAD.unpack_from(data, at)[3]
        if f_tx >= tx and _frame_at(data, at, slot.seq, f_tx) is not None:
            raise CorruptLogError(
                f"the commit journal {path} is damaged at byte {off}: the frame of tx {tx} "
                f"is not whole, yet tx {f_tx} follows it intact, so acknowledged commits "
                "would be lost. Restore from a backup, or set the journal aside and open "
                "the database to keep what LMDB holds (docs/RUNBOOK.md, 'A damaged "
                "commit journal').")
        at = data.find(marker, at + 1)


class Journal:
    """The open journal of a writer (engine.log.LogStore, under its ``_write_lock``).

    ``seq`` is the newest slot known to be on the disk (the lap the frames belong
    to); ``txs`` and ``bytes`` count the frames since it (the checkpoint policy reads
    them), including frames of an append that failed or was interrupted: such
    frames may be on the disk, so the region stays taken and the count non-zero
    until a checkpoint kills them. ``pending`` is set before an append takes
    anything and cleared only once LMDB holds its commit (the writer) or a new lap
    starts: while it is set, frames may be live that no LMDB commit matches, and the
    writer checkpoints before its next append. ``unsure`` is set while a slot is
    written: if that write fails or is interrupted, which slot is on the disk is
    unknown, and the writer must checkpoint again before it appends (rewriting the
    same room).
    """

    def __init__(self, log_path: str, seq: int) -> None:
        self.path = layout.log_journal_file(log_path)
        self.seq = seq
        self.txs = 0
        self.bytes = 0
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._head = _FRAMES
        self.unsure = False
        self.pending = False
        # Bytes from _FRAMES on that are written (zeros or frames) and so allocated; the
        # slots' rooms before _FRAMES are never zero-filled.
        self._allocated = max(os.fstat(self._fd).st_size, _FRAMES)

    def make_room(self, records: Sequence[tuple[int, bytes | bytearray]]) -> None:
        """Zero-fill the file ahead if the frames of ``records`` would pass its end.
        OSError if that fails (a full disk): no frame was written, nothing is lost."""
        size = sum(len(rec) for _, rec in records)
        size += len(records) * (_FRAME_HEAD.size + _TRAILER)
        if self._head + size > self._allocated:
            self._extend(self._head + size)

    def append(self, records: Sequence[tuple[int, bytes | bytearray]]) -> None:
        """Frames for ``records`` at the end of the lap (after :meth:`make_room`),
        written and flushed: on return they survive a power cut. OSError if either
        fails (the caller refuses every later write: what reached the disk is
        unknown)."""
        bufs: list[bytes | bytearray] = []
        lap = self.seq
        size = 0
        for tx_id, rec in records:
            head = _FRAME_HEAD.pack(formats.JOURNAL_FRAME_MAGIC, 0, lap, tx_id, len(rec))
            bufs += (head, rec, _U64.pack(_frame_sum(head, rec[-_TRAILER:])))
            size += len(rec)
        size += len(records) * (_FRAME_HEAD.size + _TRAILER)
        at = self._head
        if at + size > self._allocated:  # make_room was not called (or it raced): do it
            self._extend(at + size)
        if len(bufs) > _IOV_MAX:
            bufs = [b"".join(bufs)]
        # Taken before the write: whatever happens from here (an error, an interrupt
        # right after the flush), these bytes may hold live frames, and ``pending``
        # (set first) makes the writer's next checkpoint kill them (LogStore._write).
        self.pending = True
        self._head = at + size
        self.txs += len(records)
        self.bytes += size
        if fs().pwritev(self._fd, bufs, at) != size:
            raise OSError(f"a short write to {self.path}")
        self._flush()

    def _flush(self) -> None:
        fs().fdatasync(self._fd)

    def _extend(self, end: int) -> None:
        """Zero-fill the file up to past ``end`` (flushed with the next frames)."""
        new = max(end, self._allocated + _EXTEND_BYTES)  # _allocated >= _FRAMES
        zeros = bytes(min(new - self._allocated, _EXTEND_BYTES))
        at = self._allocated
        while at < new:
            n = min(len(zeros), new - at)
            if fs().pwritev(self._fd, [zeros[:n] if n < len(zeros) else zeros], at) != n:
                raise OSError(errno.ENOSPC, f"a short write to {self.path}")
            at += n
        self._allocated = new

    def write_slot(self, slot: Slot) -> None:
        """Write ``slot`` into the room the newest valid slot is not in and flush it: the
        frames after the previous slot are then dead (a new lap starts)."""
        raw = encode_slot(slot)
        self.unsure = True  # until the slot is known flushed and adopted below
        if os.pwrite(self._fd, raw, (slot.seq % 2) * formats.JOURNAL_SLOT_BYTES) != len(raw):
            raise OSError(f"a short write to {self.path}")
        self._flush()
        self.seq = slot.seq
        self._head = _FRAMES
        self.txs = self.bytes = 0
        self.pending = False  # every frame before the new slot is dead
        self.unsure = False
        if self._allocated > _TRIM_BYTES:  # a large transaction grew it: cut it back,
            os.ftruncate(self._fd, _FRAMES)  # only now that the new slot is on the disk
            self._allocated = _FRAMES

    def close(self) -> None:
        """Close the file; idempotent (a second call after an interrupt does nothing,
        never closing a descriptor number reused since)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def mark_unsure(log_path: str, last_tx: int | None) -> None:
    """Leave a mark that makes the next writer's open replay the journal even on this
    boot: a flush of LMDB's file failed, and Linux may have dropped the pages it
    could not write from the page cache, so LMDB's file is not to be trusted as is.
    ``last_tx``: the last tx LMDB accepted (every acknowledged commit; frames after it
    belong to commits that failed), or None if it could not be read."""
    path = layout.log_journal_replay_mark(log_path)
    body = json.dumps({"last_tx": last_tx}).encode()
    with open(path, "wb") as f:
        f.write(body)
        f.flush()
        fs().fsync(f.fileno())
    fs().fsync_dir(log_path)


def marked_unsure(log_path: str) -> bool:
    return os.path.exists(layout.log_journal_replay_mark(log_path))


def marked_last_tx(log_path: str) -> int | None:
    """The last tx the mark names (None: no mark, or it names none or is unreadable)."""
    try:
        with open(layout.log_journal_replay_mark(log_path), "rb") as f:
            value = json.loads(f.read(256) or b"{}").get("last_tx")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value >= 0 else None


def clear_mark(log_path: str) -> None:
    fs().remove_durably(layout.log_journal_replay_mark(log_path))


def remove(log_path: str) -> None:
    """Delete the journal of ``log_path`` (a writer of a mode without one: its LMDB
    file was flushed first, so nothing in the journal is needed)."""
    fs().remove_durably(layout.log_journal_file(log_path))
