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
import json
import os
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import lmdb

from . import formats, layout
from .errors import CorruptLogError, DatabaseClosedError, StorageError
from .files import fs
from .model import EpochRecord
from .native import peek_tx_header

_U64 = struct.Struct("<Q")
_KEY = struct.Struct(">Q")
DEFAULT_MAP_SIZE = 256 << 20
_MAX_TX = 1 << 63  # tx keys never collide with the all-zero meta prefix (tx ids start at 1)
READ_CHUNK = 256  # records fetched per short read transaction


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


def _translate(exc: Exception, what: str) -> Exception:
    """Turn an lmdb or OS error into the engine's tree, keeping the cause."""
    if isinstance(exc, lmdb.CorruptedError | lmdb.InvalidError | lmdb.PageNotFoundError):
        return CorruptLogError(
            f"{what}: the LMDB environment is damaged ({exc}). Run `engine-admin verify DIR`; "
            "if the log cannot be read, `engine-admin recover --new-epoch DIR` rebuilds from "
            "the newest snapshot."
        )
    if isinstance(exc, (lmdb.DiskError, OSError)):
        return StorageError(f"{what}: {exc}. Check free disk space and permissions.")
    return StorageError(f"{what}: LMDB error {exc}")


def _env_present(path: str) -> bool:
    return os.path.isfile(layout.log_data_file(path))


class LogStore:
    """An open log. Not thread-safe for writers: the database serialises commits."""

    def __init__(self, path: str, *, sync: str = "commit", map_size: int = DEFAULT_MAP_SIZE,
                 readonly: bool = False) -> None:
        self.path = path
        self.sync_mode = sync
        self.readonly = readonly
        # `with` blocks take the gate's C-level lock: Condition.__enter__/__exit__ are
        # Python functions, where an interrupt could leave the lock held.
        self._gate_lock = threading.RLock()
        self._gate = threading.Condition(self._gate_lock)
        # Guarded by _gate: open read transactions of this process, per thread ident. An
        # interrupt can leave one of the interrupted thread's counted (inside contextlib's
        # __enter__, after _reading yielded): close() and map growth wait only for other
        # threads' readers, since a thread inside close() or a write is not reading.
        self._reader_threads: dict[int, int] = {}
        self._growing = False  # guarded by _gate: a map growth waits for/blocks readers
        self._closed = False  # guarded by _gate
        self._write_lock = threading.Lock()  # one write transaction at a time (see _write)
        try:
            if not readonly:
                os.makedirs(path, exist_ok=True)
            size = max(map_size, _file_size(path) * 2)
            # "commit" and "group" let LMDB flush at each commit: data pages, fsync,
            # then the meta page, fsync. A "group" batch is one LMDB commit, so its
            # committers share those flushes. (MDB_NOSYNC plus a later env.sync would
            # leave a window where a meta page could reach the disk before the pages
            # it points to.) "none" leaves flushing to the OS.
            durable = sync in ("commit", "group")
            self._env = fs().wrap_env(lmdb.open(
                path, map_size=size, max_dbs=0, subdir=True, readonly=readonly,
                sync=durable, metasync=durable, readahead=False,
                max_readers=256, lock=not readonly,
            ))  # fmt: skip
        except lmdb.Error as exc:
            raise _translate(exc, f"cannot open the log at {path}") from exc
        except OSError as exc:
            raise _translate(exc, f"cannot open the log at {path}") from exc

    # ---------------------------------------------------------------- probing
    @staticmethod
    def probe(path: str) -> LogInfo:
        """Describe the log at ``path`` without creating or changing anything."""
        if not _env_present(path):
            return LogInfo(path=path, exists=False)
        store = LogStore(path, readonly=True)
        try:
            return store.info()
        finally:
            store.close()

    def info(self) -> LogInfo:
        meta = self.read_meta()
        if meta.get(formats.META_DB_ID) is None:
            return LogInfo(path=self.path, exists=False)
        fmt = struct.unpack("<H", meta.get(formats.META_FORMAT, b"\0\0"))[0]
        if fmt != formats.LOG_FORMAT:
            raise CorruptLogError(
                f"the log at {self.path} has format {fmt}; this build reads format "
                f"{formats.LOG_FORMAT}. Open it with the engine version that wrote it.")
        first, last = self.bounds()
        base_tx = _U64.unpack(meta[formats.META_BASE_TX])[0]
        base_pos = _U64.unpack(meta[formats.META_BASE_POSITION])[0]
        last_pos = base_pos
        if last is not None:
            rec = self.get(last)
            assert rec is not None
            try:
                _, _, _, first_pos, count = peek_tx_header(rec)
            except CorruptLogError as exc:
                raise CorruptLogError(
                    f"the last log record (tx {last}) is damaged: {exc}. "
                    "Run `engine-admin verify DIR` to see the extent."
                ) from exc
            last_pos = first_pos + count - 1
        return LogInfo(
            path=self.path, exists=True, db_id=meta[formats.META_DB_ID].decode("ascii"),
            epoch=_U64.unpack(meta[formats.META_EPOCH])[0], base_tx=base_tx,
            base_position=base_pos, first_tx=first,
            last_tx=last if last is not None else base_tx, last_position=last_pos,
            history=tuple(EpochRecord.from_json(d) for d in json.loads(meta[formats.META_HISTORY])),
        )  # fmt: skip

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
                   history: Sequence[EpochRecord]) -> None:
        """Write the meta of a new log (fresh database or a new epoch). Durable on return."""
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
        self.sync()

    def put_meta(self, key: bytes, value: bytes) -> None:
        """Write one meta entry (``formats.META_*``) in its own LMDB write transaction;
        durable on return unless sync is "none" (then flushed with the next fsync)."""
        if not key.startswith(formats.META_PREFIX) or len(key) <= len(formats.META_PREFIX):
            raise ValueError(f"not a meta key: {key!r}")

        def put(txn: Any) -> None:
            txn.put(key, value)

        self._write(put)

    def get_meta(self, key: bytes) -> bytes | None:
        """One meta entry, or None."""
        with self._reading() as txn:
            v = txn.get(key)
            return None if v is None else bytes(v)

    # ---------------------------------------------------------------- writing
    def append(self, records: Sequence[tuple[int, bytes | bytearray]]) -> None:
        """Append ``(tx_id, record)`` pairs in one LMDB write transaction.

        Durable on return unless sync is "none". Keys must be greater than every
        key already present.
        """
        def put(txn: Any) -> None:
            for tx_id, rec in records:
                if tx_id < 1 or tx_id >= _MAX_TX:
                    raise CorruptLogError(f"tx id {tx_id} is out of the log's key range")
                if not txn.put(_KEY.pack(tx_id), rec, append=True, overwrite=False):
                    raise CorruptLogError(f"tx {tx_id} already exists in the log")
        self._write(put)

    def _write(self, body: Any) -> None:
        # One write transaction of this process at a time (commits and a service's meta
        # writes): the map can then grow inside a failed attempt with no other write
        # transaction open, which LMDB requires (py-lmdb#379).
        with self._write_lock:
            if self._closed:
                raise DatabaseClosedError(f"the log at {self.path} is closed; open the "
                                          "database again to write it")
            for _attempt in range(32):
                try:
                    with self._env.begin(write=True) as txn:
                        body(txn)
                    return
                except lmdb.MapFullError:
                    self._grow()
                except lmdb.KeyExistsError as exc:
                    raise CorruptLogError(f"a tx id was written twice: {exc}") from exc
                except lmdb.Error as exc:
                    raise _translate(exc, "cannot write the log") from exc
        raise StorageError("the log map could not be grown enough to hold the write")

    @property
    def _readers(self) -> int:
        """Open read transactions of this process (under _gate, or as a snapshot)."""
        return sum(self._reader_threads.values())

    def _others_reading(self) -> bool:
        """Under _gate: a thread other than this one has a read transaction open."""
        me = threading.get_ident()
        return any(t != me for t in self._reader_threads)

    def _grow(self) -> None:
        """Double the map size, waiting until no read transaction is open."""
        with self._gate_lock:
            self._growing = True
            try:
                while self._others_reading():
                    self._gate.wait()
                if self._reader_threads:  # this thread's own, left open by an interrupt
                    raise StorageError(
                        f"cannot grow the log map of {self.path}: a read of the log that "
                        "an interrupt cut short in this thread still holds its LMDB read "
                        "transaction (until that exception's traceback is dropped). Nothing "
                        "was written; retry, or reopen the database.")
                new_size = self._env.info()["map_size"] * 2
                try:
                    self._env.set_mapsize(new_size)
                except lmdb.Error as exc:
                    raise _translate(exc, f"cannot grow the log map to {new_size} bytes") from exc
            finally:
                self._growing = False
                self._gate.notify_all()

    def sync(self) -> None:
        """fsync the environment (used after writing a new log's meta)."""
        try:
            self._env.sync(True)
        except lmdb.Error as exc:
            raise _translate(exc, "cannot fsync the log") from exc

    # ---------------------------------------------------------------- reading
    @contextmanager
    def _reading(self) -> Iterator[Any]:
        me = threading.get_ident()
        counted = False  # stored right after the count (no interruption point between)
        try:
            with self._gate_lock:
                while self._growing:
                    self._gate.wait()
                if self._closed:
                    raise DatabaseClosedError(f"the log at {self.path} is closed; open the "
                                              "database again to read it")
                readers = self._reader_threads
                readers[me] = readers.get(me, 0) + 1
                counted = True
            with self._env.begin(write=False) as txn:
                yield txn
        except lmdb.Error as exc:
            raise _translate(exc, "cannot read the log") from exc
        finally:
            if counted:
                with self._gate_lock:
                    readers = self._reader_threads
                    n = readers[me] - 1
                    if n:
                        readers[me] = n
                    else:
                        del readers[me]
                    self._gate.notify_all()

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
            first = _KEY.unpack(cur.key())[0]
            cur.last()
            return first, _KEY.unpack(cur.key())[0]

    def count(self) -> int:
        with self._reading() as txn:
            entries = int(txn.stat(self._env.open_db())["entries"])
        return entries - len(self.read_meta())

    def iter_range(self, from_tx: int, to_tx: int | None = None) -> Iterator[tuple[int, bytes]]:
        """``(tx_id, record)`` for from_tx <= tx_id <= to_tx, in short read transactions."""
        nxt = from_tx
        while True:
            chunk: list[tuple[int, bytes]] = []
            with self._reading() as txn:
                cur = txn.cursor()
                if not cur.set_range(_KEY.pack(max(nxt, 1))):
                    return
                for k, v in cur.iternext():
                    t = _KEY.unpack(k)[0]
                    if to_tx is not None and t > to_tx:
                        break
                    chunk.append((t, v))
                    if len(chunk) >= READ_CHUNK:
                        break
            if not chunk:
                return
            yield from chunk
            if to_tx is not None and chunk[-1][0] >= to_tx:
                return
            if len(chunk) < READ_CHUNK:
                return
            nxt = chunk[-1][0] + 1

    def values_from(self, from_tx: int, limit: int) -> list[bytes]:
        """Up to ``limit`` records from the key ``from_tx`` on, in key order, read in one
        short read transaction with the iteration in C (the log-backup uploader's bulk
        read: it checks them itself, tx by tx, so a missing key shows as a break)."""
        with self._reading() as txn:
            cur = txn.cursor()
            if not cur.set_range(_KEY.pack(max(from_tx, 1))):
                return []
            return list(islice(cur.iternext(keys=False, values=True), limit))

    def close(self) -> None:
        # LMDB must not close under a live read transaction: wait for other threads'
        # readers first (a reader of this thread is one an interrupt left behind: closing
        # the environment invalidates its transaction).
        with self._write_lock, self._gate_lock:
            self._closed = True
            while self._others_reading():
                self._gate.wait()
        with contextlib.suppress(lmdb.Error):  # closing twice or a broken env: nothing to do
            self._env.close()


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(layout.log_data_file(path))
    except OSError:
        return 0
