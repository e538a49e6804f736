"""The transaction log: an LMDB environment in ``DIR/log``.

This is the only module that talks to LMDB; lmdb's exceptions are translated
here into the engine's (``StorageError``, ``CorruptLogError``).

Layout (see docs/FORMAT.md): one unnamed LMDB database maps an 8-byte big-endian
tx_id (>= 1) to one encoded transaction record; keys made of 8 zero bytes and a
name hold the meta: db_id, log format, the log's epoch, ``base_tx`` and
``base_position`` (what precedes the first record: 0 for a database's first
epoch, the snapshot's position for an epoch rebuilt from one) and the epoch
history. Meta keys sort before every tx key, so tx appends stay MDB_APPEND.

Invariants: records are only ever appended with increasing keys (MDB_APPEND);
a log holds exactly one epoch, so every record's epoch equals the meta epoch.
The map is grown only while no transaction of this process is open
(py-lmdb#379): readers take short transactions through :meth:`_reading`, and
growth waits for them to finish.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import struct
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeVar

import lmdb

from . import formats, journal, layout, lmdbfile
from .errors import (
    DISK_FULL_ERRNOS,
    CorruptLogError,
    DatabaseClosedError,
    DatabaseLockedError,
    JournalPendingError,
    StorageError,
    disk_full,
    storage_error,
)
from .files import fs
from .lmdbfile import RUNBOOK as RUNBOOK  # re-exported: the advice of every log error
from .model import EpochRecord
from .native import peek_tx_header, xxh64
from .recent import RecentRecords, fitting, within

log = logging.getLogger(__name__)

_U64 = struct.Struct("<Q")
_U16 = struct.Struct("<H")
_KEY = struct.Struct(">Q")
DEFAULT_MAP_SIZE = 256 << 20
_MAX_TX = 1 << 63  # tx keys never collide with the all-zero meta prefix (tx ids start at 1)
READ_CHUNK = 256  # records fetched per short read transaction
# The sync modes whose commits are made durable by the commit journal (engine.journal)
JOURNALED = ("commit", "group")
# A journaled writer checkpoints (flushes LMDB, saves its meta pages, moves its pinned
# reader) after this many commits or journal bytes. Until then LMDB reuses no page freed
# since the last checkpoint, so its file grows by what these commits wrote, once.
CHECKPOINT_TXS = 2048
CHECKPOINT_BYTES = 8 << 20
_Copied = TypeVar("_Copied")  # what iter_range_into's copy makes of a record


def tx_key(tx_id: int) -> bytes:
    """The LMDB key of a transaction: 8-byte big-endian, so keys sort by tx_id."""
    return _KEY.pack(tx_id)


@dataclass(frozen=True)
class LogInfo:
    """What a log directory holds, as found on open (read without changing it)."""

    path: str
    exists: bool                     # an LMDB environment with our meta is there
    db_id: str | None = None
    epoch: int = 0
    base_tx: int = 0
    base_position: int = 0
    first_tx: int | None = None      # first record's tx_id, None if no records
    last_tx: int = 0                 # last record's tx_id, or base_tx if none
    last_position: int = 0           # position of the last event (base_position if none)
    history: tuple[EpochRecord, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        """No records, and nothing before them either: a fresh or blank log."""
        return self.first_tx is None and self.base_tx == 0

    def describe(self) -> str:
        if not self.exists:
            return "no log"
        if self.first_tx is None:
            if self.base_tx:
                return f"an empty log of epoch {self.epoch} starting after tx {self.base_tx}"
            return "an empty log"
        return f"a log of epoch {self.epoch} holding txs {self.first_tx}..{self.last_tx}"


def _translate(exc: Exception, what: str, *, log_dir: str | None = None, need: int = 0,
               consequence: str = "nothing was committed") -> Exception:
    """Turn an lmdb or OS error into the engine's tree, keeping the cause.

    With ``log_dir`` (a write or an open that may create files) a full disk is named as
    such: ``ENOSPC``/``EDQUOT`` directly, or any other LMDB failure (LMDB reports a
    short page write as EIO) while the filesystem has (nearly) no room for ``need``
    more bytes.
    """
    if isinstance(exc, lmdb.CorruptedError | lmdb.InvalidError | lmdb.PageNotFoundError):
        return CorruptLogError(f"{what}: the LMDB environment is damaged ({exc}); {RUNBOOK}.")
    if log_dir is not None and _disk_full(exc, log_dir, need):
        return disk_full(log_dir, layout.log_data_file(log_dir), consequence,
                         exc if isinstance(exc, OSError) else None)
    if isinstance(exc, (lmdb.DiskError, OSError)):
        return StorageError(f"{what}: {exc}. Check free disk space and permissions.")
    return StorageError(f"{what}: LMDB error {exc}. Check free disk space, permissions and "
                        "the file size limit (ulimit -f).")


NEARLY_FULL_BYTES = 1 << 20  # less free than this (or than twice the write) is "full"


def _disk_full(exc: Exception, log_dir: str, need: int) -> bool:
    """Whether the failure ``exc`` of a write into ``log_dir`` came from a full disk."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return True
    if isinstance(exc, lmdb.DiskError):  # py-lmdb's class for ENOSPC
        return True
    try:
        st = os.statvfs(log_dir)
    except OSError:
        return False
    # root may use the blocks reserved for it: what it can still write is f_bfree
    return _free_bytes(st) < max(NEARLY_FULL_BYTES, 2 * need) or _no_inodes(st)


def _free_bytes(st: os.statvfs_result) -> int:
    # root may use the blocks reserved for it: what it can still write is f_bfree
    return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize


def _no_inodes(st: os.statvfs_result) -> bool:
    return st.f_files > 0 and st.f_favail == 0  # f_files 0: no inode limit (btrfs, ...)


def _room_for_a_new_env(path: str) -> None:
    """Refuse to create an LMDB environment on a (nearly) full filesystem.

    LMDB sizes ``lock.mdb`` and maps it at once: where the filesystem has no page left
    for it (tmpfs), the first touch of the map kills the process with SIGBUS instead
    of returning an error. An environment whose files exist already has its pages.
    """
    if os.path.exists(os.path.join(path, "lock.mdb")) and _env_present(path):
        return
    try:
        st = os.statvfs(path)
    except OSError:
        return
    if _free_bytes(st) < NEARLY_FULL_BYTES or _no_inodes(st):
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: less than "
                      f"{NEARLY_FULL_BYTES >> 20} MiB free to create the log's LMDB files")


def _tx_of(key: bytes, path: str) -> int:
    """The tx id of a record key; a key of another length means a damaged tree."""
    if len(key) != _KEY.size:
        raise CorruptLogError(
            f"the log {layout.log_data_file(path)} holds a key of {len(key)} bytes where tx "
            f"keys are {_KEY.size}: its tree is damaged; {RUNBOOK}.")
    return int(_KEY.unpack(key)[0])


def _foreign(path: str, why: str) -> CorruptLogError:
    return CorruptLogError(
        f"{layout.log_data_file(path)} is not an engine log: {why}. Nothing was written to "
        "it. If it belongs to another application, give the engine a directory of its own; "
        f"if it was the engine's log, {RUNBOOK}.")


class _MetaDecoder:
    """Decodes the meta entries of one log; a damaged entry is a :class:`CorruptLogError`
    naming the key and the file (never a struct, JSON or Unicode error)."""

    def __init__(self, path: str, meta: dict[bytes, bytes]) -> None:
        self.path = path
        self.meta = meta

    def damaged(self, key: bytes, what: str) -> CorruptLogError:
        name = key[len(formats.META_PREFIX):].decode("ascii")
        return CorruptLogError(
            f"the log's meta entry {name!r} in {layout.log_data_file(self.path)} is damaged: "
            f"{what}; {RUNBOOK}.")

    def raw(self, key: bytes) -> bytes:
        value = self.meta.get(key)
        if value is None:
            raise self.damaged(key, "it is missing")
        return value

    def _fixed(self, key: bytes, fmt: struct.Struct, what: str) -> int:
        value = self.raw(key)
        if len(value) != fmt.size:
            raise self.damaged(key, f"{len(value)} bytes, expected {fmt.size} ({what})")
        return int(fmt.unpack(value)[0])

    def u64(self, key: bytes) -> int:
        return self._fixed(key, _U64, "u64 LE")

    def u16(self, key: bytes) -> int:
        return self._fixed(key, _U16, "u16 LE")

    def db_id(self) -> str:
        value = self.raw(formats.META_DB_ID)
        try:
            text = value.decode("ascii")
            uuid.UUID(text)
        except ValueError:
            raise self.damaged(formats.META_DB_ID, f"{value[:40]!r} is not an ASCII "
                                                   "UUID") from None
        if len(text) != 36:
            raise self.damaged(formats.META_DB_ID, f"{len(text)} characters, expected 36")
        return text

    def history(self) -> tuple[EpochRecord, ...]:
        value = self.raw(formats.META_HISTORY)
        try:
            items = json.loads(value)
            if not isinstance(items, list):
                raise TypeError("not a JSON list")
            return tuple(EpochRecord.from_json(d) for d in items)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise self.damaged(formats.META_HISTORY, f"not a JSON list of epoch records "
                                                     f"({type(exc).__name__}: {exc})") from None


def _env_present(path: str) -> bool:
    """A log environment is there: ``data.mdb`` exists and is not empty. An empty one is
    what a crash or power cut leaves between LMDB creating the file and its first
    flushed write (no meta page yet): it holds nothing, LMDB cannot open it read-only,
    and a writer's LMDB initialises it as a new file."""
    data = layout.log_data_file(path)
    try:
        return os.path.isfile(data) and os.path.getsize(data) > 0
    except OSError:
        return False


class LogStore:
    """An open log. Not thread-safe for writers: the database serialises commits."""

    def __init__(self, path: str, *, sync: str = "commit", map_size: int = DEFAULT_MAP_SIZE,
                 readonly: bool = False, shared: bool = False) -> None:
        """``readonly`` opens without writing anything; ``shared`` (with ``readonly``)
        also takes a reader slot in LMDB's ``lock.mdb``, which makes reading safe beside
        a live writer in another process (the writer then never reuses the pages a
        reader still sees). A bare ``readonly`` log is for a closed database only."""
        self.path = path
        self.sync_mode = sync
        self.readonly = readonly
        self.shared = shared  # a writer may be live in another process
        # `with` blocks take the gate's C-level lock: Condition.__enter__/__exit__ are
        # Python functions, where an interrupt could leave the lock held.
        self._gate_lock = threading.RLock()
        self._gate = threading.Condition(self._gate_lock)
        # Guarded by _gate: open read transactions of this process, per thread ident, as
        # one token per transaction (so releasing one is idempotent and can be retried
        # when an interrupt lands in it). An interrupt can leave one of the interrupted
        # thread's open (inside contextlib's __enter__, after _reading yielded): close()
        # and map growth wait only for other threads' readers, since a thread inside
        # close() or a write is not reading.
        self._reader_threads: dict[int, set[object]] = {}
        self._growing = 0  # guarded by _gate: remaps under way (they block new readers)
        self._closed = False  # guarded by _gate
        self._write_lock = threading.Lock()  # one write transaction at a time (see _write)
        # Guarded by _write_lock: the error of a failed flush (sync); every later write
        # and flush raises it (the pages it covered may be gone).
        self._sync_failed: StorageError | None = None
        # Committed records not yet shipped, for the one log service that ships them (the
        # backup uploader, through values_from) so that it need not read them back
        # through LMDB: py-lmdb releases the GIL around every cursor step, and a
        # thousand steps a second handing the GIL back and forth cost a CPU-bound
        # committer ~15% (README, "Log backup against Litestream"). A one-producer,
        # one-consumer queue (engine/recent.py has its invariants): commits add to it
        # inside _write_lock, after their LMDB commit returned, so everything kept is
        # in the log; readers (values_from) take from it under _recent_lock, which
        # also guards swapping the object (keep_recent, close). None while no service
        # asked for it.
        self._recent_lock = threading.Lock()
        self._recent: RecentRecords | None = None
        # The commit journal (sync "commit"/"group", a writer): guarded by _write_lock.
        # _pins are read transactions that keep checkpoints' trees from being reused
        # (engine.journal), oldest first; the last one is on the newest slot's tree.
        # Invariant: a journaled commit is made only while _pins is not empty (else a
        # checkpoint comes first); a new pin is added before its slot is written and
        # older ones are dropped only after, so an interrupt anywhere leaves the
        # newest slot's tree pinned (at worst with an extra older pin, dropped later).
        self._journal: journal.Journal | None = None
        self._pins: list[Any] = []
        self._slot_txnid = -1  # the LMDB txnid the newest slot names (-1: none yet)
        self._boot_id = fs().boot_id()
        if readonly:
            _refuse_unrecovered_journal(path, self._boot_id, shared)
        elif _env_present(path):
            recover_journal(path)  # a database opened through Database did it already
        # Before LMDB maps the file: a truncated or garbled header would otherwise
        # kill the process (SIGBUS, SIGFPE) instead of raising (engine.lmdbfile).
        header = lmdbfile.read_header(layout.log_data_file(path))
        if header is not None and header.newest.main.flags != 0:
            raise _foreign(path, f"its main database has LMDB flags "
                                 f"{header.newest.main.flags:#x} (the engine's has none)")
        try:
            if not readonly:
                os.makedirs(path, exist_ok=True)
                _room_for_a_new_env(path)
            size = max(map_size, _file_size(path) * 2)
            # "commit" and "group" let LMDB flush at each commit: data pages, fsync,
            # then the meta page, fsync. A "group" batch is one LMDB commit, so its
            # committers share those flushes. (MDB_NOSYNC plus a later env.sync would
            # leave a window where a meta page could reach the disk before the pages
            # it points to.) "none" leaves flushing to the OS.
            # Under the commit journal ("commit", "group") LMDB itself does not flush at a
            # commit: each commit's records are flushed once in the journal first.
            journaled = sync in JOURNALED and not readonly
            durable = sync in JOURNALED and not journaled
            # "data" (LMDB's MDB_NOMETASYNC): the data pages are flushed at each commit,
            # the meta page that makes the commit current is written but flushed only
            # by the next commit's flush (or sync(): the meta flusher, close). LMDB's
            # integrity holds (the older meta still points at intact pages); what a
            # power loss can undo is the commits whose meta page was not flushed yet.
            data_only = sync == "data"
            # As bytes: py-lmdb encodes a str path as strict UTF-8, which fails for a
            # directory whose name holds undecodable bytes (they arrive as surrogates).
            self._env = fs().wrap_env(lmdb.open(
                os.fsencode(path), map_size=size, max_dbs=0, subdir=True, readonly=readonly,
                sync=durable or data_only, metasync=durable, readahead=False,
                max_readers=256, lock=not readonly or shared,
            ))  # fmt: skip
            if data_only and not readonly:
                # a process that crashed under "data" may have left its last commit's
                # meta page unflushed (the page cache holds it): flush it before
                # anything (a snapshot, a backup) builds on that commit
                self._env.sync(True)
            try:
                if journaled:
                    self._start_journal()
                elif not readonly and os.path.exists(layout.log_journal_file(path)):
                    # a mode without the journal: make what LMDB holds durable, then the
                    # journal (already recovered above) is not needed any more
                    self._env.sync(True)
                    journal.remove(path)
            except BaseException:
                with contextlib.suppress(lmdb.Error):  # else the next open finds it open
                    self._env.close()
                raise
        except (lmdb.Error, OSError) as exc:
            if isinstance(exc, lmdb.Error) and "already open in this process" in str(exc):
                # py-lmdb refuses a second environment on one file in a process: LMDB's
                # locks on lock.mdb are POSIX record locks, which belong to the process,
                # so closing the second handle would drop the first one's.
                raise DatabaseLockedError(
                    f"this process already has the database at {os.path.dirname(path)} "
                    "open; read through that handle (LMDB cannot have one environment "
                    "open twice in a process; readonly=True is for other processes)",
                    os.getpid()) from None
            raise _translate(exc, f"cannot open the log at {path}",
                             log_dir=None if readonly else path,
                             consequence="nothing was opened") from exc

    # ------------------------------------------------------------ the journal
    def _start_journal(self) -> None:
        """Open (or create) the journal. Its newest slot stays if it already names what
        LMDB holds, on this boot, with no frame after it (a clean close: opening and
        closing a database writes nothing); else a checkpoint at once names it."""
        state = journal.read(self.path, frames=False)
        slot = state.slot if state is not None else None
        self._journal = journal.Journal(self.path, slot.seq if slot is not None else 0)
        try:
            txnid = int(self._env.info()["last_txnid"])
            with self._env.begin() as txn:
                ident = _identity(txn)
            if (slot is not None and slot.boot_id == self._boot_id != bytes(16)
                    and slot.lmdb_txnid == txnid
                    and (slot.last_tx, slot.db_id, slot.last_checksum, slot.epoch) == ident
                    and not journal.marked_unsure(self.path)
                    and journal.lap_is_empty(self.path, slot)):
                self._slot_txnid = txnid
                self._pins.append(self._env.begin())  # flushed when the slot was written
                return
            with self._write_lock:
                self._checkpoint()
        except BaseException:
            self._journal.close()
            self._journal = None
            raise

    def _checkpoint(self) -> None:
        """Under _write_lock, journaled: flush LMDB, save both meta pages in a new slot,
        and move the pin to this tree. Every frame before becomes dead (the new slot
        starts a lap). A failure is remembered as a failed flush is (sync), and marks
        the journal for a replay at the next open (the flush may have lost pages)."""
        j = self._journal
        assert j is not None
        try:
            txnid = int(self._env.info()["last_txnid"])
            if (txnid == self._slot_txnid and j.txs == 0 and self._pins and not j.unsure
                    and not j.pending):
                return  # nothing since the newest slot: it and its pin stand
            self._env.sync(True)
            psize = int(self._env.stat()["psize"])
            data = layout.log_data_file(self.path)
            m0, m1 = lmdbfile.read_meta_bytes(data, psize)
            newest = max(lmdbfile.parse_meta(m0, 0).txnid, lmdbfile.parse_meta(m1, 1).txnid)
            if newest != txnid:  # LMDB's file does not say what LMDB does: never save it
                raise StorageError(f"the meta pages of {data} name LMDB transaction "
                                   f"{newest}, the environment {txnid}")
            pin = self._env.begin()  # on this tree: no commit is in flight
            self._pins.append(pin)
            last_tx, db_id, last_sum, epoch = _identity(pin)  # from LMDB, never tracked
            j.write_slot(journal.Slot(j.seq + 1, txnid, last_tx, psize, self._boot_id, m0, m1,
                                      db_id, last_sum, epoch))
            self._slot_txnid = txnid
            while len(self._pins) > 1:  # the trees of older slots may be reused now
                self._pins.pop(0).abort()
        except (lmdb.Error, OSError, StorageError) as exc:
            err = (exc if isinstance(exc, StorageError) else
                   _translate(exc, "cannot checkpoint the log's commit journal"))
            self._sync_failed = StorageError(
                f"a checkpoint of the log at {self.path} failed ({err}); the log refuses "
                "every write since, because the pages it flushes may not be on the disk. "
                "Check the disk, then close and reopen the database (docs/RUNBOOK.md, "
                "'A failed flush').")
            with contextlib.suppress(OSError):
                journal.mark_unsure(self.path, self._accepted_last_tx())
            raise err from exc

    def _accepted_last_tx(self) -> int | None:
        """The last tx LMDB accepted, for the replay mark (None if it cannot be read)."""
        try:
            with self._env.begin() as txn:
                return _identity(txn)[0]
        except lmdb.Error:
            return None

    def _void_frames(self) -> None:
        """Under _write_lock, after a write whose frames reached the journal failed in
        LMDB: a checkpoint starts a new lap, so recovery never replays them."""
        with contextlib.suppress(StorageError):  # remembered in _sync_failed
            self._checkpoint()  # pending is set (the append set it first): never a no-op

    def _journal_failed(self, exc: OSError) -> StorageError:
        """Under _write_lock: the error of a failed journal write or flush; every later
        write refuses (what reached the disk is unknown)."""
        assert self._journal is not None
        where = self._journal.path
        err = storage_error(exc, f"cannot write the commit journal {where}: {exc}. Check "
                            "the disk and its free space.", directory=self.path,
                            writing=where, consequence="nothing was committed")
        self._sync_failed = StorageError(
            f"an earlier write of the commit journal {where} failed ({err}); the log "
            "refuses every write since. Check the disk, then close and reopen the "
            "database (docs/RUNBOOK.md, 'A failed flush').")
        return err

    # ---------------------------------------------------------------- probing
    @staticmethod
    def probe(path: str, *, shared: bool = False) -> LogInfo:
        """Describe the log at ``path`` without creating or changing anything
        (``shared``: a writer may be live in another process; see ``__init__``)."""
        if not _env_present(path):
            return LogInfo(path=path, exists=False)
        store = LogStore(path, readonly=True, shared=shared)
        try:
            _check_first_leaves(path, shared)
            return store.info()
        finally:
            store.close()

    @staticmethod
    def probe_open(path: str, *, shared: bool = False) -> tuple[LogInfo, LogStore | None]:
        """As :meth:`probe`, but the read-only store is handed back open for a few more
        reads (None when there is no environment); the caller closes it. Saves opening
        the environment twice (~0.3 ms) when a decision needs a record."""
        if not _env_present(path):
            return LogInfo(path=path, exists=False), None
        store = LogStore(path, readonly=True, shared=shared)
        try:
            _check_first_leaves(path, shared)
            return store.info(), store
        except BaseException:
            store.close()
            raise

    def info(self) -> LogInfo:
        """What the log holds; :class:`CorruptLogError` if a meta entry is damaged or the
        environment is not an engine log (nothing is written to it)."""
        meta = self.read_meta()
        if meta.get(formats.META_DB_ID) is None:
            if meta or self._has_keys():
                raise _foreign(self.path, "it holds keys but no engine db_id entry")
            return LogInfo(path=self.path, exists=False)
        decode = _MetaDecoder(self.path, meta)
        db_id = decode.db_id()
        fmt = decode.u16(formats.META_FORMAT)
        if fmt != formats.LOG_FORMAT:
            raise CorruptLogError(
                f"the log at {self.path} has format {fmt}; this build reads format "
                f"{formats.LOG_FORMAT}. Open it with the engine version that wrote it.")
        epoch = decode.u64(formats.META_EPOCH)
        base_tx = decode.u64(formats.META_BASE_TX)
        base_pos = decode.u64(formats.META_BASE_POSITION)
        history = decode.history()
        first, last = self.bounds()
        last_pos = base_pos
        if last is not None:
            rec = self.get(last)
            if rec is None:  # the cursor found the key, a search for it does not
                raise CorruptLogError(
                    f"the log's last key, tx {last}, cannot be found again in "
                    f"{layout.log_data_file(self.path)}: its tree is damaged; {RUNBOOK}.")
            try:
                _, _, _, first_pos, count = peek_tx_header(rec)
            except CorruptLogError as exc:
                raise CorruptLogError(
                    f"the last log record (tx {last}) is damaged: {exc}. "
                    "Run `engine-admin verify DIR` to see the extent."
                ) from exc
            last_pos = first_pos + count - 1
        return LogInfo(
            path=self.path, exists=True, db_id=db_id, epoch=epoch, base_tx=base_tx,
            base_position=base_pos, first_tx=first,
            last_tx=last if last is not None else base_tx, last_position=last_pos,
            history=history,
        )  # fmt: skip

    def _has_keys(self) -> bool:
        with self._reading() as txn:
            return bool(txn.cursor().first())

    def read_meta(self) -> dict[bytes, bytes]:
        with self._reading() as txn:
            cur = txn.cursor()
            meta = {}
            if cur.set_range(formats.META_PREFIX):
                for k, v in cur.iternext():
                    if not k.startswith(formats.META_PREFIX):
                        break
                    meta[bytes(k)] = bytes(v)
            return meta

    def initialise(self, db_id: str, epoch: int, base_tx: int, base_position: int,
                   history: Sequence[EpochRecord], *, durable: bool = True) -> None:
        """Write the meta of a new log (fresh database or a new epoch). Durable on return
        unless ``durable`` is false: a caller building a log in a staging directory
        that it fsyncs once before publishing (restore) skips this fsync.

        Raises :class:`CorruptLogError` without writing if the environment holds any
        key already (another application's LMDB database, or a log whose db_id entry
        was lost): a new log is only ever made in an empty environment."""
        if self._has_keys():
            raise _foreign(self.path, "it holds keys but no engine db_id entry")
        meta = {
            formats.META_DB_ID: db_id.encode("ascii"),
            formats.META_FORMAT: struct.pack("<H", formats.LOG_FORMAT),
            formats.META_EPOCH: _U64.pack(epoch),
            formats.META_BASE_TX: _U64.pack(base_tx),
            formats.META_BASE_POSITION: _U64.pack(base_position),
            formats.META_HISTORY: json.dumps([h.to_json() for h in history]).encode(),
        }
        def put(txn: Any) -> None:
            for k, v in meta.items():
                txn.put(k, v)
        self._write(put)
        if durable:
            self.sync()

    def put_meta(self, key: bytes, value: bytes) -> None:
        """Write one meta entry (``formats.META_*``) in its own LMDB write transaction;
        durable on return unless sync is "none" (then flushed with the next fsync).
        Under "data" it is flushed here: a meta write publishes no commit, so neither
        a next commit nor the meta flusher would carry its meta page."""
        if not key.startswith(formats.META_PREFIX) or len(key) <= len(formats.META_PREFIX):
            raise ValueError(f"not a meta key: {key!r}")

        def put(txn: Any) -> None:
            txn.put(key, value)

        self._write(put)
        if self.sync_mode == "data" or self._journal is not None:
            self.sync()  # journaled: LMDB did not flush it, and no frame holds it

    def get_meta(self, key: bytes) -> bytes | None:
        """One meta entry, or None."""
        with self._reading() as txn:
            v = txn.get(key)
            return None if v is None else bytes(v)

    # ---------------------------------------------------------------- writing
    def append(self, records: Sequence[tuple[int, bytes | bytearray]]) -> None:
        """Append ``(tx_id, record)`` pairs in one LMDB write transaction.

        Durable on return unless sync is "none" (under "data": all but its meta page,
        which the next commit's flush or the meta flusher carries). Keys must be greater than every
        key already present.
        """
        def put(txn: Any) -> None:
            for tx_id, rec in records:
                if tx_id < 1 or tx_id >= _MAX_TX:
                    raise CorruptLogError(f"tx id {tx_id} is out of the log's key range")
                if not txn.put(_KEY.pack(tx_id), rec, append=True, overwrite=False):
                    raise CorruptLogError(f"tx {tx_id} already exists in the log")
        self._write(put, records)

    def keep_recent(self, max_bytes: int) -> None:
        """Keep up to ``max_bytes`` of committed records not yet shipped in memory for
        :meth:`values_from` (0: stop, and drop what is kept)."""
        with self._recent_lock:
            self._recent = (RecentRecords(max_bytes) if max_bytes > 0 and not self._closed
                            else None)  # nothing is kept for a closed log

    def _check_writable(self) -> None:
        """Under _write_lock: refuse after close, or after a flush failed (sync)."""
        if self._closed:
            raise DatabaseClosedError(f"the log at {self.path} is closed; open the "
                                      "database again to write it")
        if self._sync_failed is not None:
            raise self._sync_failed

    def _write(self, body: Any,
               records: Sequence[tuple[int, bytes | bytearray]] = ()) -> None:
        # One write transaction of this process at a time (commits and a service's meta
        # writes): the map can then grow inside a failed attempt with no other write
        # transaction open, which LMDB requires (py-lmdb#379). ``records`` are the tx
        # records ``body`` puts (for the free-space check, and kept for values_from).
        with self._write_lock:
            self._check_writable()
            j = self._journal
            if j is not None and (not self._pins or j.unsure or j.pending):
                # a remap, a slot write or an append that an interrupt or a failure cut
                # short: pin and name the newest tree again (killing any live frame no
                # LMDB commit matches) before anything is journaled on top of it
                self._checkpoint()
            for _attempt in range(32):
                if j is not None and records:
                    try:
                        j.make_room(records)
                    except OSError as exc:  # nothing written: a plain failure, retryable
                        raise storage_error(
                            exc, f"cannot grow the commit journal {j.path}: {exc}. Check "
                            "the disk and its free space.", directory=self.path,
                            writing=j.path, consequence="nothing was committed") from exc
                    try:
                        j.append(records)  # durable from here: before LMDB sees it
                    except BaseException as exc:
                        # they may be on the disk whole (an interrupt after the flush):
                        # kill them, or recovery would replay a commit reported failed
                        err = self._journal_failed(exc) if isinstance(exc, OSError) else None
                        self._void_frames()
                        if err is not None:
                            raise err from exc
                        raise
                try:
                    with self._env.begin(write=True) as txn:
                        body(txn)
                except lmdb.MapFullError:
                    if j is not None:
                        self._checkpoint()  # this attempt's frames die; the pin may move
                    self._grow()
                except BaseException as exc:
                    if j is not None and records:
                        self._void_frames()  # never replay what LMDB refused
                    if isinstance(exc, lmdb.KeyExistsError):
                        raise CorruptLogError(f"a tx id was written twice: {exc}") from exc
                    if isinstance(exc, lmdb.Error):
                        need = sum(len(r) for _, r in records)  # for the free-space check
                        raise _translate(exc, "cannot write the log", log_dir=self.path,
                                         need=need) from exc
                    raise
                else:
                    if j is not None:
                        j.pending = False  # LMDB holds what the frames hold
                    kept = self._recent  # committed: keep the records, in commit order
                    if kept is not None and records:
                        kept.add(records)  # (the objects themselves; no lock: recent.py)
                    if j is not None and (j.txs >= CHECKPOINT_TXS
                                          or j.bytes >= CHECKPOINT_BYTES):
                        # the commit is durable (journaled); a failure here is
                        # remembered and refuses the next write
                        with contextlib.suppress(StorageError):
                            self._checkpoint()
                    return
        raise StorageError("the log map could not be grown enough to hold the write")

    @property
    def _readers(self) -> int:
        """Open read transactions of this process (under _gate, or as a snapshot)."""
        return sum(map(len, self._reader_threads.values()))

    def _others_reading(self) -> bool:
        """Under _gate: a thread other than this one has a read transaction open."""
        me = threading.get_ident()
        return any(t != me and held for t, held in self._reader_threads.items())

    def _grow(self) -> None:
        """Double the map size, waiting until no read transaction is open."""
        self._remap(lambda: self._env.info()["map_size"] * 2, "grow the log map")

    def _remap(self, size: Callable[[], int], what: str) -> None:
        """``set_mapsize(size())`` once no other thread has a read transaction open
        (LMDB requires none, py-lmdb#379); new readers wait meanwhile. A read of this
        thread's own still open (an interrupt cut it short) refuses instead of waiting
        for itself."""
        with self._gate_lock:
            self._growing += 1  # a count: concurrent remaps must not clear each other's
            try:
                while self._others_reading():
                    self._gate.wait()
                if self._closed:  # close() ran while this waited (it was not counted)
                    raise DatabaseClosedError(f"the log at {self.path} is closed; open the "
                                              "database again to read it")
                if self._reader_threads.get(threading.get_ident()):  # own, left by an interrupt
                    raise StorageError(
                        f"cannot {what} of {self.path}: a read of the log that an interrupt "
                        "cut short in this thread still holds its LMDB read transaction "
                        "(until that exception's traceback is dropped). Nothing was written; "
                        "retry, or reopen the database.")
                new_size = size()
                # LMDB remaps only with no read transaction of this process open, the
                # journal's pins included; a journaled writer checkpointed just before
                # (_write), so the tree to protect is the flushed newest one, pinned
                # again after (if an interrupt prevents that, _write checkpoints first)
                pinned = bool(self._pins)
                while self._pins:
                    self._pins.pop().abort()
                try:
                    self._env.set_mapsize(new_size)
                except lmdb.Error as exc:
                    to = f" to {new_size} bytes" if new_size else ""
                    raise _translate(exc, f"cannot {what}{to}") from exc
                finally:
                    if pinned:
                        self._pins.append(self._env.begin())
            finally:
                self._growing -= 1
                self._gate.notify_all()

    def sync(self) -> None:
        """fsync the environment (after a new log's meta; the meta flusher and the
        snapshotter of sync="data"). Under the write lock: close() cannot close the
        environment under a flush, and the flush sees no half-written commit.

        A failed flush is remembered: the pages it should have made durable may be
        lost, and Linux reports a writeback error to one fsync only, so a committer's
        later flush could succeed over them. Every later write then refuses with the
        same error (reopen the database once the disk is healthy)."""
        with self._write_lock:
            self._check_writable()
            if self._journal is not None:
                self._checkpoint()  # the flush, and the journal's frames before it die
                return
            try:
                self._env.sync(True)
            except lmdb.Error as exc:
                err = _translate(exc, "cannot fsync the log")
                self._sync_failed = StorageError(
                    f"an earlier flush of the log at {self.path} failed ({err}); the log "
                    "refuses every write since, because the pages that flush covered may "
                    "not be on the disk. Check the disk, then close and reopen the database "
                    "(docs/RUNBOOK.md, 'A failed flush').")
                raise err from exc

    # ---------------------------------------------------------------- reading
    def _adopt_map_size(self) -> None:
        """Another process grew the map (MDB_MAP_RESIZED): take the size it set (0 makes
        LMDB adopt the size in the file's meta), by the same rule as :meth:`_grow`."""
        self._remap(lambda: 0, "follow the new map size")

    @contextmanager
    def _reading(self, buffers: bool = False) -> Iterator[Any]:
        """A short read transaction; with ``buffers`` values are memoryviews into the
        map, valid only inside the block (no copy). A map another process grew
        (MDB_MAP_RESIZED, a read-only handle beside the writer) is adopted first."""
        me = threading.get_ident()
        for attempt in (0, 1):
            token = object()  # this transaction's entry in _reader_threads
            counted = False
            resized = False
            try:
                with self._gate_lock:
                    while self._growing:
                        self._gate.wait()
                    if self._closed:
                        raise DatabaseClosedError(f"the log at {self.path} is closed; open "
                                                  "the database again to read it")
                    counted = True  # before the add: releasing an absent token is a no-op
                    self._reader_threads.setdefault(me, set()).add(token)
                try:
                    txn = self._env.begin(write=False, buffers=buffers)
                except lmdb.MapResizedError:
                    if attempt:
                        raise
                    resized = True
                if not resized:
                    with txn:
                        yield txn
                    return
            except lmdb.Error as exc:
                raise _translate(exc, "cannot read the log") from exc
            finally:
                if counted:
                    self._release_reader(me, token)
            self._adopt_map_size()  # not counted now: then read again

    def _release_reader(self, me: int, token: object) -> None:
        """Drop a read transaction's token, to the end even if interrupts land in it
        (the wait for a contended gate lock is one: each interrupt restarts the
        idempotent release), then re-raise the first of them."""
        pending: BaseException | None = None
        while True:
            try:
                with self._gate_lock:
                    held = self._reader_threads.get(me)
                    if held is not None:
                        held.discard(token)
                        if not held:
                            del self._reader_threads[me]
                    self._gate.notify_all()
                break
            except BaseException as exc:
                if pending is None:
                    pending = exc
        if pending is not None:
            raise pending

    @contextmanager
    def getter(self) -> Iterator[Callable[[int], bytes | None]]:
        """One read transaction for a run of point reads (a chain walk): yields
        ``get(tx_id) -> record | None``, valid until the block ends. Keep the block
        short: the map cannot grow while it is open."""
        with self._reading() as txn:
            def get(tx_id: int) -> bytes | None:
                v = txn.get(_KEY.pack(tx_id)) if tx_id >= 1 else None
                return None if v is None else bytes(v)
            yield get

    @contextmanager
    def viewer(self) -> Iterator[Callable[[int], memoryview | None]]:
        """Like :meth:`getter`, but ``get(tx_id)`` returns a memoryview into the map (no
        copy), valid only until the block ends: copy out what must outlive it."""
        with self._reading(buffers=True) as txn:
            tget = txn.get

            def get(tx_id: int) -> memoryview | None:
                return tget(_KEY.pack(tx_id)) if tx_id >= 1 else None
            yield get

    def find_position(self, position: int, lo: int, hi: int) -> int:
        """The tx in ``lo..hi`` whose record's header says it holds event ``position``
        (or where the search ends if none does): a binary search over the tx keys in
        one read transaction, reading 44 header bytes of each probe in place (no copy,
        no decode). Headers are *unchecked* here; the caller decodes the record it
        lands on with every check. Missing keys raise CorruptLogError."""
        first_off, count_off = formats.TX_FIRST_POSITION_OFFSET, formats.TX_EVENT_COUNT_OFFSET
        need = count_off + 4
        with self._reading(buffers=True) as txn:
            get = txn.get
            while lo < hi:
                mid = (lo + hi) // 2
                v = get(_KEY.pack(mid))
                if v is None or len(v) < need:
                    raise CorruptLogError(f"tx {mid} is committed but missing or truncated "
                                          f"in the log at {self.path}; run `engine-admin "
                                          "verify`")
                first = _U64.unpack_from(v, first_off)[0]
                if position < first:
                    hi = mid - 1
                elif position >= first + formats.U32_LE.unpack_from(v, count_off)[0]:
                    lo = mid + 1
                else:
                    return mid
        return lo

    def last_point(self) -> tuple[int, int] | None:
        """``(tx_id, position of its last event)`` of the newest record as its header
        says (unchecked; None if there are no records): how a reader in another
        process learns how far the writer has committed, reading 44 bytes in place."""
        with self._reading(buffers=True) as txn:
            cur = txn.cursor()
            if not cur.last():
                return None
            key = bytes(cur.key())
            if len(key) != 8 or key == bytes(8):
                return None  # only meta keys
            v = cur.value()
            if len(v) < formats.TX_EVENT_COUNT_OFFSET + 4:
                raise CorruptLogError(f"the newest record in the log at {self.path} is "
                                      "truncated; run `engine-admin verify`")
            first = _U64.unpack_from(v, formats.TX_FIRST_POSITION_OFFSET)[0]
            n = formats.U32_LE.unpack_from(v, formats.TX_EVENT_COUNT_OFFSET)[0]
            return _KEY.unpack(key)[0], first + n - 1

    def get(self, tx_id: int) -> bytes | None:
        """The record of ``tx_id``, or None (one short read transaction)."""
        with self.getter() as get:
            return get(tx_id)

    def bounds(self) -> tuple[int | None, int | None]:
        """``(first_tx, last_tx)`` of the records, ``(None, None)`` if there are none."""
        with self._reading() as txn:
            cur = txn.cursor()
            if not cur.set_range(_KEY.pack(1)):
                return None, None  # only meta keys (or nothing)
            first = _tx_of(cur.key(), self.path)
            cur.last()
            return first, _tx_of(cur.key(), self.path)

    def count(self) -> int:
        with self._reading() as txn:
            entries = int(txn.stat(self._env.open_db())["entries"])
        return entries - len(self.read_meta())

    def check_pages_from(self, from_tx: int) -> int:
        """Check, with plain reads, the pages a walk from ``from_tx`` to the last record
        visits (``lmdbfile.check_range_pages``), before LMDB reads them: a zeroed or
        garbled tree page is a :class:`CorruptLogError`, not an LMDB abort. Returns
        the leaf pages checked. Only while nothing writes the log (open, verify): a
        commit rewrites pages under the plain reads, so a ``shared`` store (a reader
        beside a live writer) skips it and relies on LMDB's own checks."""
        if self.shared:  # beside a live writer the pages change under plain reads
            return 0
        return lmdbfile.check_range_pages(layout.log_data_file(self.path),
                                          _KEY.pack(max(from_tx, 1)))

    def iter_range(self, from_tx: int, to_tx: int | None = None, *,
                   first_chunk: int = READ_CHUNK) -> Iterator[tuple[int, bytes]]:
        """``(tx_id, record)`` for from_tx <= tx_id <= to_tx, in short read transactions.

        Each read transaction copies out a chunk of records; a reader that may stop
        early (``read_events`` with a limit, a subscription) starts with a small
        ``first_chunk``, and chunks grow fourfold up to READ_CHUNK."""
        return self._chunks(None, from_tx, to_tx, first_chunk)

    def iter_range_into(self, copy: Callable[[memoryview], _Copied], from_tx: int,
                        to_tx: int | None = None, *, first_chunk: int = READ_CHUNK
                        ) -> Iterator[tuple[int, _Copied]]:
        """:meth:`iter_range` with each record copied out of the map by ``copy(view)``,
        called inside the read transaction with a view valid only during the call (the
        open copies a tail of long records into memory of its own this way). For short
        records it is slower than :meth:`iter_range`, where py-lmdb copies in C."""
        return self._chunks(copy, from_tx, to_tx, first_chunk)

    def _chunks(self, copy: Callable[[memoryview], Any] | None, from_tx: int,
                to_tx: int | None, first_chunk: int) -> Iterator[tuple[int, Any]]:
        nxt = from_tx
        size = max(1, min(first_chunk, READ_CHUNK))
        while True:
            chunk: list[tuple[int, Any]] = []
            with self._reading(buffers=copy is not None) as txn:
                cur = txn.cursor()
                if not cur.set_range(_KEY.pack(max(nxt, 1))):
                    return
                k = v = None  # with copy, views into the map: none outlives the transaction
                try:
                    for k, v in cur.iternext():
                        t = _tx_of(k, self.path)
                        if to_tx is not None and t > to_tx:
                            break
                        chunk.append((t, v if copy is None else copy(v)))
                        if len(chunk) >= size:
                            break
                finally:
                    del k, v
            if not chunk:
                return
            yield from chunk
            if to_tx is not None and chunk[-1][0] >= to_tx:
                return
            if len(chunk) < size:
                return
            nxt = chunk[-1][0] + 1
            size = min(size * 4, READ_CHUNK)

    def iter_exact(self, from_tx: int, to_tx: int, *,
                   first_chunk: int = READ_CHUNK) -> Iterator[tuple[int, bytes | None]]:
        """``(tx_id, record or None)`` for every tx_id in ``from_tx..to_tx``, by point reads
        in short read transactions. Each point read is a page search, in which LMDB checks
        every page's type (a damaged page is ``MDB_CORRUPTED``, a ``CorruptLogError``);
        a cursor stepping to a sibling page asserts instead and aborts the process.
        A reader that may stop early starts with a small ``first_chunk``; chunks grow
        fourfold up to READ_CHUNK."""
        nxt = max(from_tx, 1)
        size = max(1, min(first_chunk, READ_CHUNK))
        while nxt <= to_tx:
            end = min(to_tx, nxt + size - 1)
            with self.getter() as get:
                chunk = [(t, get(t)) for t in range(nxt, end + 1)]
            yield from chunk
            nxt = end + 1
            size = min(size * 4, READ_CHUNK)

    def values_from(self, from_tx: int, limit: int, max_bytes: int = 1 << 62
                    ) -> list[bytes | bytearray]:
        """Records from the key ``from_tx`` on, in key order: at most ``limit`` and, past
        the first, at most ``max_bytes`` in all (the log-backup uploader's bulk read: it
        checks them itself, tx by tx, so a missing key shows as a break).

        With :meth:`keep_recent` on, records from ``from_tx`` on that are still kept in
        memory come from there: the committed record objects themselves (the same
        bytes LMDB committed; the caller reads them and must never write them), and
        kept records before ``from_tx`` are dropped: the caller has shipped them. The
        kept run may stop short (a commit not kept: the bound was full, or an interrupt
        came between its LMDB commit and keeping it): the answer is then a prefix of
        LMDB's, and the next call, from past it, reads LMDB. Otherwise one short read
        transaction with the iteration in C."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if self._recent is not None:
            with self._recent_lock:
                kept = None if self._recent is None else self._recent.take(from_tx, limit)
            if kept is not None:
                return fitting(kept, max_bytes)  # out of the lock
        with self._reading() as txn:
            cur = txn.cursor()
            if not cur.set_range(_KEY.pack(max(from_tx, 1))):
                return []
            return within(islice(cur.iternext(keys=False, values=True), limit), max_bytes)

    def close(self) -> None:
        # LMDB must not close under a live read transaction: wait for other threads'
        # readers first (a reader of this thread is one an interrupt left behind: closing
        # the environment invalidates its transaction).
        with self._write_lock, self._gate_lock:
            self._closed = True
            while self._others_reading():
                self._gate.wait()
        with self._recent_lock:
            self._recent = None  # nothing is served from memory after close
        if self._journal is not None:
            with self._write_lock:
                try:
                    if self._sync_failed is None:
                        self._checkpoint()  # a clean journal: no frame left to replay
                except StorageError as exc:
                    log.error("closing the log at %s: the last checkpoint failed (%s); the "
                              "commit journal keeps the commits since the one before",
                              self.path, exc)
                while self._pins:
                    with contextlib.suppress(lmdb.Error):
                        self._pins.pop().abort()
                self._journal.close()  # idempotent: an interrupt may repeat this close
                self._journal = None
        if self.sync_mode == "data" and not self.readonly:
            # the last commit's meta page is written but not flushed: flush it now
            try:
                self._env.sync(True)
            except lmdb.Error as exc:
                log.error("closing the log at %s: the last flush failed (%s): the last "
                          "commit may not survive a power cut", self.path, exc)
        with contextlib.suppress(lmdb.Error):  # closing twice or a broken env: nothing to do
            self._env.close()


def _check_first_leaves(path: str, shared: bool) -> None:
    """info() walks the first leaf with a cursor and may step to the second: both are
    checked first (a zeroed one would make LMDB abort). Not beside a live writer
    (``shared``): pages read by plain reads under it could be half-rewritten, and would
    look damaged."""
    if not shared:
        lmdbfile.check_range_pages(layout.log_data_file(path), formats.META_PREFIX,
                                   max_leaves=2)


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(layout.log_data_file(path))
    except OSError:
        return 0


# ------------------------------------------------------------ the commit journal
def _identity(txn: Any) -> tuple[int, bytes, int, int]:
    """``(last_tx, db_id, last_checksum, epoch)`` of the log a read transaction sees, as
    a slot records them: the last record's tx id and xxh64 trailer, or for a log
    without records its ``base_tx`` and ``base_checksum`` (a log rebuilt from a
    snapshot starts past 0), its db_id (36 bytes; zeros before it has one) and its
    epoch (0 before it has one: two epochs of one database share the db_id, and a new
    epoch's base is the old log's tx at the snapshot)."""
    cur = txn.cursor()
    key = bytes(cur.key()) if cur.last() else b""
    db_id = txn.get(formats.META_DB_ID)
    ident = bytes(db_id)[:36].ljust(36, b"\0") if db_id is not None else bytes(36)
    epoch = _u64_or_zero(txn.get(formats.META_EPOCH))
    if len(key) == _KEY.size and key >= _KEY.pack(1):
        value = cur.value()
        return _KEY.unpack(key)[0], ident, (_U64.unpack_from(value, len(value) - 8)[0]
                                            if len(value) >= 8 else 0), epoch
    return (_u64_or_zero(txn.get(formats.META_BASE_TX)), ident,
            _u64_or_zero(txn.get(formats.META_BASE_CHECKSUM)), epoch)


def _u64_or_zero(value: Any) -> int:
    return _U64.unpack(value)[0] if value is not None and len(value) == 8 else 0


def _journal_to_replay(path: str, boot_id: bytes) -> journal.JournalState | None:
    """The journal of ``path`` if LMDB's file may lack what it holds: the machine
    restarted since its slot was written (or gives no boot id), and it has frames or
    LMDB's file was written after the slot. None when LMDB's file can be trusted as
    it is: no journal, or a crashed process on this boot (the page cache kept all)."""
    slots = journal.read(path, frames=False)
    if slots is None or slots.slot is None:
        return None
    if boot_id != bytes(16) and slots.slot.boot_id == boot_id \
            and not journal.marked_unsure(path):
        return None
    state = journal.read(path)
    assert state is not None and state.slot is not None
    slot = state.slot
    limit = journal.marked_last_tx(path)
    if limit is not None and journal.marked_unsure(path):
        # after a failed checkpoint: frames past the last tx LMDB accepted belong to
        # commits that were refused, never acknowledged
        state = journal.JournalState(state.path, slot,
                                     tuple(f for f in state.frames if f[0] <= limit))
    data = layout.log_data_file(path)
    if not os.path.exists(data) or os.path.getsize(data) == 0:
        return None  # no LMDB file: the log is lost (the open says so), not replayable
    if not state.frames and _newest_txnid(data) == slot.lmdb_txnid:
        return None
    return state


def _newest_txnid(data: str) -> int | None:
    """The txnid LMDB would open ``data`` at; None if its meta pages are not fit to open
    (a power cut can leave a meta page naming pages that never reached the disk)."""
    try:
        header = lmdbfile.read_header(data)
    except CorruptLogError:
        return None
    return None if header is None else header.newest.txnid


def _refuse_unrecovered_journal(path: str, boot_id: bytes, shared: bool) -> None:
    """A read-only open must not read an LMDB file that a power cut may have left with
    a meta page ahead of its pages: the writer's open recovers it first. Beside a live
    writer (``shared``) on a system that gives no boot id, the page cache is taken as
    whole (the writer's frames are its own, not a power cut's)."""
    if shared and boot_id == bytes(16):
        return
    state = _journal_to_replay(path, boot_id)
    if state is not None:
        raise JournalPendingError(
            f"the log at {path} has a commit journal to apply first ({len(state.frames)} "
            "commit(s) since its last checkpoint; the machine restarted since its writer "
            "ran, or a flush of its log failed, so LMDB's file may not hold them whole). "
            "Open the database for writing "
            "once (engine.open(DIR)), which applies them; then read it (docs/RUNBOOK.md, "
            "'After a power cut').")


def journal_pending(path: str) -> str | None:
    """What a read-only open of ``path`` would refuse with while its commit journal
    waits to be applied (:class:`JournalPendingError`'s message), or None."""
    try:
        _refuse_unrecovered_journal(path, fs().boot_id(), False)
    except JournalPendingError as exc:
        return str(exc)
    return None


def recover_journal(path: str) -> int:
    """Bring LMDB's file in ``path`` back to what every acknowledged commit left, after
    a power cut or a reboot (engine.journal): put back the last checkpoint's meta pages
    (their tree was kept intact), check that the log they name is the slot's (its last
    tx, that record's checksum, its db_id and epoch, and every frame's epoch; else the
    file is put back as it was),
    apply the journal's frames after it, flush, and write a fresh slot. Returns the
    commits applied (0: nothing to do). A writer calls it, holding the directory's
    lock, before anything reads the log."""
    boot_id = fs().boot_id()
    state = _journal_to_replay(path, boot_id)
    if state is None:
        if journal.marked_unsure(path):
            journal.clear_mark(path)  # LMDB's newest tree is the slot's: nothing was lost
        return 0
    slot = state.slot
    assert slot is not None
    data = layout.log_data_file(path)
    psize = slot.page_size
    # The meta pages as they were before any recovery touched them: an earlier recovery
    # cut short (a crash, a power cut) left them in the side file, and they go back
    # first, so this attempt starts from the file as it was; they are saved there
    # (durably) again before anything is written.
    earlier = _saved_before(path, slot)
    if earlier is not None and not _put_back(path, psize, earlier):
        raise StorageError(f"cannot put back the meta pages an interrupted recovery of the "
                           f"commit journal saved in {layout.log_journal_metas_before(path)}; "
                           "check the disk and open again")
    try:
        before = lmdbfile.read_meta_bytes(data, psize)
    except (OSError, CorruptLogError) as exc:
        raise CorruptLogError(f"the commit journal {state.path} cannot be applied: {data} "
                              f"cannot be read as an LMDB file ({exc}). {RUNBOOK}.") from None
    restored = False
    try:
        if _newest_txnid(data) != slot.lmdb_txnid:  # put the checkpoint's tree back
            try:
                lmdbfile.check_saved_metas(data, psize, slot.meta0, slot.meta1,
                                           _KEY.pack(max(slot.last_tx, 1)))
            except CorruptLogError as exc:
                raise CorruptLogError(
                    f"the commit journal {state.path} cannot be applied: the tree its last "
                    f"checkpoint names is not in {data} ({exc}). The journal does not belong "
                    "to this log, or the file was damaged; nothing was changed. "
                    f"{RUNBOOK}.") from None
            _save_before(path, psize, before, slot)
            restored = True
            lmdbfile.write_meta_bytes(data, psize, slot.meta0, slot.meta1)
        size = _file_size(path) * 2 + sum(len(r) for _, r in state.frames) * 2
        env = lmdb.open(os.fsencode(path), map_size=max(DEFAULT_MAP_SIZE, size), max_dbs=0,
                        subdir=True, sync=True, metasync=True, readahead=False,
                        max_readers=256)
    except BaseException as exc:  # an interrupt too: the file is put back as it was
        if restored:
            _put_back(path, psize, before)
        if isinstance(exc, lmdb.Error | OSError):
            raise _translate(exc, f"cannot apply the commit journal of {path}", log_dir=path,
                             consequence="nothing was applied; the journal is kept") from exc
        raise
    try:
        with env.begin() as txn:
            ident = _identity(txn)
        wrong_epoch = [tx for tx, rec in state.frames if peek_tx_header(rec)[1] != ident[3]]
        if ident != (slot.last_tx, slot.db_id, slot.last_checksum, slot.epoch) or wrong_epoch:
            env.close()
            changed = restored and not _put_back(path, psize, before)
            raise CorruptLogError(
                f"the commit journal {state.path} does not belong to this log: its last "
                f"checkpoint holds txs up to {slot.last_tx} of database "
                f"{_name(slot.db_id)}, but the tree it names ends at tx {ident[0]} of "
                f"{_name(ident[1])}, or that record or the epoch ({slot.epoch} against "
                f"{ident[3]}{', frames of tx ' + str(wrong_epoch[0]) if wrong_epoch else ''}) "
                "differs; "
                + (f"the meta pages could not be put back: the originals are in "
                   f"{layout.log_journal_metas_before(path)}" if changed else
                   "nothing was changed")
                + " (docs/RUNBOOK.md, 'A damaged commit journal').")
        with env.begin(write=True) as txn:
            for tx_id, rec in state.frames:
                txn.put(_KEY.pack(tx_id), rec, append=True, overwrite=False)
        env.sync(True)
        m0, m1 = lmdbfile.read_meta_bytes(data, int(env.stat()["psize"]))
        with env.begin() as txn:
            last_tx, db_id, last_sum, epoch = _identity(txn)
        j = journal.Journal(path, slot.seq)
        try:
            j.write_slot(journal.Slot(slot.seq + 1, int(env.info()["last_txnid"]), last_tx,
                                      psize, boot_id, m0, m1, db_id, last_sum, epoch))
        finally:
            j.close()
        _remove_before(path)  # the new slot names the new tree
        journal.clear_mark(path)
    except (lmdb.Error, OSError) as exc:
        raise _translate(exc, f"cannot apply the commit journal of {path}", log_dir=path,
                         consequence="the journal is kept; opening again retries") from exc
    finally:
        env.close()
    log.warning("the log at %s: applied %d commit(s) from its commit journal after a "
                "restart or a failed flush (txs %d-%d)", path, len(state.frames), slot.last_tx + 1,
                slot.last_tx + len(state.frames))
    return len(state.frames)


def _name(db_id: bytes) -> str:
    return db_id.rstrip(b"\0").decode("ascii", "replace") or "(none)"


# magic b"EJMB", page size, and the seq and LMDB txnid of the slot the recovery
# applied; then the two meta copies and a u64 xxh64 of all before it
_BEFORE = struct.Struct("<4sIQQ")


def _save_before(path: str, psize: int, metas: tuple[bytes, bytes],
                 slot: journal.Slot) -> None:
    """Save the meta pages recovery is about to replace (durably, before it does),
    tied to the slot it applies: a side file of another slot is stale."""
    body = _BEFORE.pack(b"EJMB", psize, slot.seq, slot.lmdb_txnid) + metas[0] + metas[1]
    final = layout.log_journal_metas_before(path)
    fs().write_atomic(final, final + ".tmp", [body, _U64.pack(xxh64(body))])


def _saved_before(path: str, slot: journal.Slot) -> tuple[bytes, bytes] | None:
    """The meta pages an interrupted earlier recovery of ``slot`` saved, or None. A side
    file of another slot (a recovery that finished, whose removal a crash undid) is
    stale: it is deleted, never written back."""
    try:
        with open(layout.log_journal_metas_before(path), "rb") as f:
            raw = f.read(4096)
    except FileNotFoundError:
        return None
    n = _BEFORE.size + 2 * lmdbfile.META_BYTES
    if len(raw) != n + 8 or raw[:4] != b"EJMB" or _U64.unpack_from(raw, n)[0] != xxh64(raw[:n]):
        _remove_before(path)
        return None
    _magic, _psize, seq, txnid = _BEFORE.unpack_from(raw)
    if (seq, txnid) != (slot.seq, slot.lmdb_txnid):
        _remove_before(path)
        return None
    m = _BEFORE.size
    return raw[m:m + lmdbfile.META_BYTES], raw[m + lmdbfile.META_BYTES:n]


def _remove_before(path: str) -> None:
    """Delete the side file, durably (a power cut must not bring it back)."""
    fs().remove_durably(layout.log_journal_metas_before(path))


def _put_back(path: str, psize: int, metas: tuple[bytes, bytes]) -> bool:
    """Write back the meta pages a failed recovery replaced (the file as it was);
    False if that failed (the side file keeps them)."""
    try:
        lmdbfile.write_meta_bytes(layout.log_data_file(path), psize, *metas)
        _remove_before(path)
    except (OSError, CorruptLogError):
        return False
    return True
