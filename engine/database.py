"""The database handle: opening, committing, reading, snapshotting.

Commit pipeline (LevelDB's writer queue): every committer enqueues an intent and
waits; the intent at the head of the queue is the *leader*. The leader takes the
queued intents (only itself when ``sync="commit"``), plans each against the state
(versions, ``expected_version`` checks, the reducer), encodes one record per
transaction, writes them in one LMDB write transaction, fsyncs once (``"group"``),
merges the state changes, and wakes the followers. A transaction's state change
is visible only after its record is written (and durable, unless ``sync="none"``).

Threads: commits are serialised by the queue; reads take no lock (the state is
swapped in by ``dict.update`` under the GIL); snapshots copy the state under
``_state_lock``, which the leader holds only while merging a batch.
"""

from __future__ import annotations

import gc
import logging
import os
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

from . import formats
from .errors import (
    CorruptLogError,
    CorruptSnapshotError,
    DatabaseClosedError,
    EngineError,
    HistoryLostError,
    InvalidEventError,
)
from .lock import DirLock
from .log import LogStore
from .model import EpochRecord, Event, Position, Reducer, SnapshotInfo, Transaction
from .native import StateIndex, StreamSlice, TxColumns, decode_tx, encode_tx, select_tx
from .recovery import OpenPlan, apply_set_aside, log_dir, plan_open, snap_dir
from .snapshot import LoadedSnapshot, build_state, prune, write_snapshot
from .state import State, StateEntry

log = logging.getLogger("engine")
_Rec = TypeVar("_Rec", TxColumns, StreamSlice, "_IndexedTx")
_COUNT = struct.Struct("<I")  # a record's event_count (offset 40), to size the index
LAZY_TAIL_BYTES = 64 << 20  # a tail up to max(this, 2x the snapshot body) is indexed, not built


class _IndexedTx(NamedTuple):
    tx_id: int
    epoch: int
    first_position: int
    event_count: int


SYNC_MODES = ("commit", "group", "none")
_ASCII_NAME_MAX = formats.MAX_NAME_BYTES  # an ASCII name's bytes == its length
_ASCII_TYPE_MAX = formats.MAX_TYPE_BYTES


# ------------------------------------------------------------ input checks


def _check_name(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidEventError(f"{what} must be a str, got {type(value).__name__}")
    if not value:
        raise InvalidEventError(f"{what} must not be empty")
    if "\0" in value:
        raise InvalidEventError(f"{what} {value[:40]!r} contains a NUL character")
    try:
        n = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidEventError(f"{what} {value[:40]!r} is not encodable as UTF-8 "
                                f"({exc.reason})") from None
    if n > limit:
        raise InvalidEventError(f"{what} is {n} bytes of UTF-8; the limit is {limit}")
    return str(value)


def _check_event(stream: object, etype: object, data: object) -> tuple[str, str, bytes]:
    """Full validation of one event (the slow path); returns normalised values."""
    s = _check_name(stream, "stream", formats.MAX_NAME_BYTES)
    t = _check_name(etype, "type", formats.MAX_TYPE_BYTES)
    if not isinstance(data, bytes):
        raise InvalidEventError(f"data must be bytes, got {type(data).__name__} "
                                f"(stream {s!r}); encode it first")
    if len(data) > formats.MAX_EVENT_BYTES:
        raise InvalidEventError(f"event data is {len(data)} bytes; the limit is "
                                f"{formats.MAX_EVENT_BYTES} (stream {s!r})")
    return s, t, bytes(data)


def _check_expected(expected: object) -> int:
    if type(expected) is not int or expected < 0:
        raise InvalidEventError(f"expected_version must be an int >= 0, got {expected!r}")
    return expected


def _names_ok(names: tuple[object, ...], limit: int) -> bool:
    """True if every name is a non-empty ASCII str without NUL of at most ``limit`` chars.

    C-level passes only: one join (which also rejects non-str), an O(1) isascii, a
    NUL search, an empty-name search and one length pass.
    """
    try:
        joined = "".join(names)  # type: ignore[arg-type]
    except TypeError:  # not all str: let the slow path name the culprit
        return False
    return (joined.isascii() and "\0" not in joined and "" not in names
            and max(map(len, names)) <= limit)  # type: ignore[arg-type]


class _Intent:
    """One transaction waiting in the commit queue."""

    __slots__ = ("datas", "done", "error", "expects", "streams", "tx_id", "types")

    def __init__(self, streams: list[str], types: list[str], datas: list[bytes],
                 expects: list[tuple[int, int]]) -> None:
        self.streams = streams
        self.types = types
        self.datas = datas
        self.expects = expects
        self.done = False
        self.error: BaseException | None = None
        self.tx_id = 0


class TransactionBuilder:
    """``with db.transaction() as tx``: events appended here commit atomically at exit.

    Raising inside the block (or a failed commit) leaves no trace in log or state.
    After the block, ``tx.tx_id`` is the committed tx id (None if nothing was appended).
    """

    __slots__ = ("_bytes", "_datas", "_db", "_done", "_expects", "_streams", "_types", "tx_id")

    def __init__(self, db: Database) -> None:
        self._db = db
        self._streams: list[str] = []
        self._types: list[str] = []
        self._datas: list[bytes] = []
        self._expects: list[tuple[int, int]] = []
        self._bytes = 0
        self._done = False
        self.tx_id: int | None = None

    def append(self, stream: str, type: str, data: bytes,
               expected_version: int | None = None) -> None:
        """Add one event; ``expected_version`` is the stream's version before it."""
        if self._done:
            raise InvalidEventError("this transaction has already finished")
        if not (
            builtins_type(stream) is str and builtins_type(type) is str
            and builtins_type(data) is bytes and 0 < len(stream) <= _ASCII_NAME_MAX
            and 0 < len(type) <= _ASCII_TYPE_MAX and stream.isascii() and type.isascii()
            and "\0" not in stream and "\0" not in type
            and len(data) <= formats.MAX_EVENT_BYTES
        ):
            stream, type, data = _check_event(stream, type, data)
        if expected_version is not None:
            self._expects.append((len(self._streams), _check_expected(expected_version)))
        self._streams.append(stream)
        self._types.append(type)
        self._datas.append(data)
        self._bytes += len(data)

    def extend(self, events: Iterable[tuple[str, str, bytes]]) -> None:
        """Bulk add of ``(stream, type, data)`` triples (the fast path).

        All or nothing: if one triple is invalid, none of this call's are added.
        """
        if self._done:
            raise InvalidEventError("this transaction has already finished")
        if not isinstance(events, list | tuple):
            try:
                events = list(events)  # once: a generator cannot be walked twice
            except TypeError as exc:
                raise InvalidEventError(f"events must be an iterable of (stream, type, data) "
                                        f"triples: {exc}") from None
        try:
            streams, types, datas = zip(*events, strict=True)
        except ValueError:
            streams = types = datas = ()
            for i, ev in enumerate(events):
                if not isinstance(ev, tuple | list) or len(ev) != 3:
                    raise InvalidEventError(
                        f"events[{i}] must be a (stream, type, data) triple, got {ev!r:.60}"
                    ) from None
        except TypeError as exc:
            raise InvalidEventError(f"events must be an iterable of (stream, type, data) "
                                    f"triples: {exc}") from None
        if not streams:
            return
        # C-level checks over the *distinct* names (few, usually) and one pass over the
        # data; the slow per-event path runs only when one of them fails.
        size = 0
        if not (_names_ok(streams, _ASCII_NAME_MAX) and _names_ok(types, _ASCII_TYPE_MAX)
                and set(map(builtins_type, datas)) == {bytes}
                and ((size := sum(map(len, datas))) <= formats.MAX_EVENT_BYTES
                     or max(map(len, datas)) <= formats.MAX_EVENT_BYTES)):
            checked = [_check_event(s, t, d) for s, t, d in zip(streams, types, datas, strict=True)]
            streams, types, datas = zip(*checked, strict=True)
            size = sum(map(len, datas))
        self._streams.extend(streams)
        self._types.extend(types)
        self._datas.extend(datas)
        self._bytes += size

    def __enter__(self) -> TransactionBuilder:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._done = True
        if et is not None or not self._streams:
            return  # rolled back: nothing was written anywhere
        if len(self._streams) > formats.MAX_TX_EVENTS:
            raise InvalidEventError(f"transaction has {len(self._streams)} events; the limit "
                                    f"is {formats.MAX_TX_EVENTS}. Split it.")
        if self._bytes > formats.MAX_TX_BYTES - 64 * len(self._streams):
            raise InvalidEventError(f"transaction holds {self._bytes} bytes of data; the limit "
                                    f"is about {formats.MAX_TX_BYTES}. Split it.")
        self.tx_id = self._db._commit(
            _Intent(self._streams, self._types, self._datas, self._expects))


builtins_type = type  # TransactionBuilder.append shadows ``type`` with the event type


class Database:
    """An open database. Create with :func:`engine.open`; close with :meth:`close`."""

    def __init__(self, path: str, *, create: bool = True, sync: str = "commit",
                 reducer: Reducer | None = None, snapshot_every: int | None = None,
                 keep_snapshots: int = 3, _map_size: int | None = None,
                 _held_lock: DirLock | None = None) -> None:
        if sync not in SYNC_MODES:
            raise EngineError(f"sync must be one of {', '.join(SYNC_MODES)}; got {sync!r}")
        if snapshot_every is not None and (type(snapshot_every) is not int or snapshot_every < 1):
            raise EngineError(f"snapshot_every must be a positive int or None, "
                              f"got {snapshot_every!r}")
        if type(keep_snapshots) is not int or keep_snapshots < 1:
            raise EngineError(f"keep_snapshots must be an int >= 1, got {keep_snapshots!r}")
        if reducer is not None and not callable(reducer):
            raise EngineError("reducer must be callable: reducer(value, event) -> bytes | None")
        path = os.path.abspath(os.fspath(path))
        if not os.path.isdir(path):
            if not create:
                raise EngineError(f"no database at {path} (create=False)")
            try:
                os.makedirs(path, exist_ok=True)
            except OSError as exc:
                raise EngineError(f"cannot create {path}: {exc}") from exc
        self.path = path
        self.sync = sync
        self.snapshot_every = snapshot_every
        self.keep_snapshots = keep_snapshots
        self._closed = True
        # A caller that already holds the directory lock (engine-admin recover) lends it;
        # then close() leaves it held.
        self._owns_lock = _held_lock is None
        self._lock = DirLock(path) if _held_lock is None else _held_lock
        try:
            self._open(create, reducer, _map_size)
        except BaseException:
            if self._owns_lock:
                self._lock.release()
            raise
        self._closed = False

    # ------------------------------------------------------------------ open
    def _open(self, create: bool, reducer: Reducer | None, map_size: int | None) -> None:
        # Loading builds millions of tuples that can hold no cycles: the cyclic GC would
        # rescan them again and again while they are made (~10-20% of a reopen).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._open_ungc(create, reducer, map_size)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _open_ungc(self, create: bool, reducer: Reducer | None, map_size: int | None) -> None:
        plan = plan_open(self.path, create=create)
        apply_set_aside(plan)
        self.open_warnings = list(plan.warnings)
        kwargs: dict[str, Any] = {"sync": self.sync}
        if map_size:
            kwargs["map_size"] = map_size
        self._log = LogStore(log_dir(self.path), **kwargs)
        try:
            self._load(plan, reducer)
        except BaseException:
            self._log.close()
            raise
        self._queue: deque[_Intent] = deque()  # "group": the leader's queue
        self._cv = threading.Condition()
        self._write_lock = threading.Lock()  # "commit"/"none": one committer at a time
        self._state_lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        self._snap_wake = threading.Event()
        self._snap_stop = False
        self._snap_thread: threading.Thread | None = None
        self.last_snapshot_error: BaseException | None = None
        if self.snapshot_every:
            self._snap_thread = threading.Thread(target=self._snapshot_loop,
                                                 name=f"engine-snapshot:{self.path}", daemon=True)
            self._snap_thread.start()

    def _load(self, plan: OpenPlan, reducer: Reducer | None) -> None:
        snap = plan.snapshot
        info = plan.log
        if plan.create or not info.exists:
            db_id = snap.header.db_id if snap else str(uuid.uuid4())
            epoch = snap.header.epoch if snap else 1
            history = list(snap.header.history) if snap else [
                EpochRecord(1, 1, 1, time.time(), "created")]
            base_tx = snap.header.tx_id if snap else 0
            base_pos = snap.header.last_position if snap else 0
            self._log.initialise(db_id, epoch, base_tx, base_pos, history)
            info = self._log.info()
        assert info.db_id is not None  # the log was initialised above
        self.db_id: str = info.db_id
        self._epoch: int = info.epoch
        self._base_tx: int = info.base_tx
        self._history: tuple[EpochRecord, ...] = info.history
        self._last_tx: int = snap.header.tx_id if snap else info.base_tx
        self._last_position: int = snap.header.last_position if snap else info.base_position
        self._snapshot_tx = self._last_tx
        # The tail is streamed. Records are kept only while the indexed open is still
        # possible (default reducer, tail within budget); past the budget, what was
        # kept is replayed into a dict and the rest streams through it.
        budget = max(LAZY_TAIL_BYTES, 2 * len(snap.body)) if snap else LAZY_TAIL_BYTES
        kept: list[tuple[int, bytes]] | None = [] if reducer is None else None
        eager: State | None = None if reducer is None else State(
            snap.state if snap else {}, reducer)
        for tx_id, rec in self._log.iter_range(self._last_tx + 1):
            if kept is not None:
                kept.append((tx_id, rec))
                budget -= len(rec)
                if budget >= 0:
                    continue
                eager = State(snap.state if snap else {}, reducer)
                pending, kept = kept, None
            else:
                pending = [(tx_id, rec)]
            assert eager is not None
            for t, r in pending:
                cols = self._decode(t, r)
                self._continue(t, cols.first_position, len(cols.streams))
                eager.replay(cols)
        if kept is not None:
            self._state: State = self._index_state(snap, kept)
        else:
            assert eager is not None  # kept is None only once the eager state exists
            self._state = eager

    def _continue(self, tx_id: int, first_position: int, n: int) -> None:
        """Check that a replayed record continues the log gap-free, then advance."""
        if tx_id != self._last_tx + 1 or first_position != self._last_position + 1:
            raise CorruptLogError(
                f"log record {tx_id} does not continue tx {self._last_tx} / position "
                f"{self._last_position} (found first position {first_position}). "
                f"Run `engine-admin verify {self.path}`.")
        self._last_tx = tx_id
        self._last_position += n

    def _index_state(self, snap: LoadedSnapshot | None,
                     tail: list[tuple[int, bytes]]) -> State:
        """Open without a Python object per stream: the snapshot body and the tail's
        records are indexed in C (default reducer), and kept as the state's base."""
        tail_events = sum(_COUNT.unpack_from(rec, 40)[0] if len(rec) >= 44 else 0
                          for _, rec in tail)
        # Sized for the snapshot's streams plus some new ones from the tail (most tail
        # events update streams that exist); it grows if that guess is short.
        index = StateIndex((snap.header.stream_count if snap else 0) + tail_events // 4)
        if snap is not None:
            index.put_body(snap.body)
            if len(index) != snap.header.stream_count:
                raise CorruptSnapshotError(
                    f"snapshot {snap.header.path} holds {len(index)} distinct streams, its "
                    f"header says {snap.header.stream_count} (a name appears twice). "
                    "Move it aside to fall back to an older snapshot.")
        for tx_id, record in tail:
            def put(record: bytes = record) -> _IndexedTx:
                return _IndexedTx(*index.put_tx(record))

            got = self._checked(tx_id, put)
            self._continue(tx_id, got.first_position, got.event_count)

        def build() -> dict[str, StateEntry]:  # the same state, eagerly (tested code)
            st = State(build_state(snap.header, snap.body) if snap else {}, None)
            for _tx_id, rec in tail:
                st.replay(decode_tx(rec))
            return st.entries

        return State({}, None, base=index, build_base=build)

    def _decode(self, tx_id: int, rec: bytes) -> TxColumns:
        """The whole record stored under ``tx_id``, checked against its key and epoch."""
        return self._checked(tx_id, lambda: decode_tx(rec))

    def _select(self, tx_id: int, rec: bytes, stream: str) -> StreamSlice:
        """Only ``stream``'s events of the record under ``tx_id`` (see native.select_tx)."""
        return self._checked(tx_id, lambda: select_tx(rec, stream))

    def _checked(self, tx_id: int, decode: Callable[[], _Rec]) -> _Rec:
        try:
            got = decode()
        except CorruptLogError as exc:
            raise CorruptLogError(
                f"log record for tx {tx_id} in {self.path} is corrupt: {exc}. "
                f"Run `engine-admin verify {self.path}` to see every damaged record.") from exc
        if got.tx_id != tx_id or got.epoch != self._epoch_of(tx_id):
            raise CorruptLogError(
                f"log record under key {tx_id} holds tx {got.tx_id} of epoch {got.epoch} "
                f"(expected tx {tx_id} of epoch {self._epoch_of(tx_id)}) in {self.path}.")
        return got

    def _epoch_of(self, tx_id: int) -> int:
        # A log holds one epoch; txs before base_tx are not in it.
        return self._epoch if tx_id > self._base_tx else 0

    # --------------------------------------------------------------- writing
    def transaction(self) -> TransactionBuilder:
        """Start an atomic transaction (use as a context manager)."""
        self._check_open()
        return TransactionBuilder(self)

    def append(self, stream: str, type: str, data: bytes, *,
               expected_version: int | None = None) -> int:
        """Append one event in its own transaction; returns its tx_id."""
        if not (
            builtins_type(stream) is str and builtins_type(type) is str
            and builtins_type(data) is bytes and 0 < len(stream) <= _ASCII_NAME_MAX
            and 0 < len(type) <= _ASCII_TYPE_MAX and stream.isascii() and type.isascii()
            and "\0" not in stream and "\0" not in type
            and len(data) <= formats.MAX_EVENT_BYTES
        ):
            stream, type, data = _check_event(stream, type, data)
        expects = [] if expected_version is None else [(0, _check_expected(expected_version))]
        return self._commit(_Intent([stream], [type], [data], expects))

    def _commit(self, w: _Intent) -> int:
        if self.sync != "group":
            # No shared fsync to gain: each commit is its own batch, under a plain lock.
            with self._write_lock:
                self._check_open()
                self._write_batch([w])
        else:
            self._commit_group(w)
        if w.error is not None:
            raise w.error
        if self.snapshot_every and w.tx_id - self._snapshot_tx >= self.snapshot_every:
            self._snap_wake.set()
        return w.tx_id

    def _commit_group(self, w: _Intent) -> None:
        """Queue ``w``; the intent at the head leads and writes every queued intent."""
        cv = self._cv
        with cv:
            self._check_open()
            self._queue.append(w)
            while not w.done and self._queue[0] is not w:
                cv.wait()
            if not w.done:
                batch = list(self._queue)
        if not w.done:
            try:
                self._write_batch(batch)
            finally:
                with cv:
                    for _ in batch:
                        self._queue.popleft()
                    for b in batch:
                        b.done = True
                    cv.notify_all()

    def _write_batch(self, batch: list[_Intent]) -> None:
        """Leader only: plan, encode, write and (maybe) fsync a batch; then merge state."""
        state = self._state
        epoch = self._epoch
        overlay: dict[str, StateEntry] = {}  # changes of earlier txs in this batch
        changes: list[dict[str, StateEntry]] = []
        records: list[tuple[int, bytes | bytearray]] = []
        written: list[_Intent] = []
        tx_id = self._last_tx
        pos = self._last_position
        ts_ns = time.time_ns()
        ts = ts_ns / 1e9
        for w in batch:
            try:
                plan = state.plan(tx_id + 1, w.streams, w.types, w.datas, w.expects, overlay,
                                  epoch=epoch, ts=ts, first_position=pos + 1)
                streams_col = ("\0".join(w.streams) + "\0").encode()
                types_col = ("\0".join(w.types) + "\0").encode()
                rec = encode_tx(tx_id + 1, epoch, ts_ns, pos + 1, plan.versions, plan.prev_tx,
                                streams_col, types_col, w.datas)
            except Exception as exc:  # this tx only: ConcurrencyError, a reducer's error, ...
                w.error = exc
                continue
            tx_id += 1
            pos += len(w.streams)
            w.tx_id = tx_id
            if w is not batch[-1]:  # only later txs of the batch read the overlay
                overlay.update(plan.changes)
            changes.append(plan.changes)
            records.append((tx_id, rec))
            written.append(w)
        if not records:
            return
        try:
            self._log.append(records)  # one LMDB commit: durable unless sync="none"
        except BaseException as exc:
            for w in written:
                w.error = exc
                w.tx_id = 0
            raise
        with self._state_lock:
            for c in changes:  # in commit order: a later tx's entry wins
                state.entries.update(c)
            self._last_tx = tx_id
            self._last_position = pos

    # --------------------------------------------------------------- reading
    def get(self, stream: str) -> bytes | None:
        """The current state value of ``stream`` (None if unknown or deleted)."""
        self._check_open()
        e = self._state.lookup(stream)
        return None if e is None else e[1]

    def version(self, stream: str) -> int:
        """The stream's version: its number of events, 0 for an unknown stream."""
        self._check_open()
        e = self._state.lookup(stream)
        return 0 if e is None else e[0]

    def streams(self) -> Iterator[str]:
        """Every stream with at least one event (a snapshot of the key set)."""
        self._check_open()
        self._state.materialize(self._state_lock)
        return iter(list(self._state.entries))

    @property
    def position(self) -> Position:
        """``(epoch, tx_id)`` of the last committed transaction."""
        return Position(self._epoch, self._last_tx)

    @property
    def epoch_history(self) -> tuple[EpochRecord, ...]:
        return self._history

    def _events(self, cols: TxColumns, keep: Iterable[int] | None = None) -> list[Event]:
        ts = cols.ts_ns / 1e9
        idx = range(len(cols.streams)) if keep is None else keep
        return [Event(cols.streams[i], cols.versions[i], cols.types[i], cols.datas[i],
                      cols.first_position + i, cols.tx_id, cols.epoch, ts) for i in idx]

    def _lost(self, what: str) -> HistoryLostError:
        fork = self._history[-1] if self._history else None
        when = f" (epoch {fork.epoch} began at tx {fork.first_tx}: {fork.reason})" if fork else ""
        return HistoryLostError(
            f"{what}: transactions 1..{self._base_tx} are not in this log; they were lost with "
            f"the previous epoch's log{when}. The state at tx {self._base_tx} is intact; "
            "restore an older log or backup to read that history.")

    def read_log(self, from_tx: int = 1, to_tx: int | None = None) -> Iterator[Transaction]:
        """Committed transactions ``from_tx..to_tx`` (inclusive) in order."""
        self._check_open()
        bad_to = to_tx is not None and type(to_tx) is not int
        if type(from_tx) is not int or from_tx < 1 or bad_to:
            raise InvalidEventError("from_tx must be an int >= 1 and to_tx an int or None")
        if from_tx <= self._base_tx:
            raise self._lost(f"read_log({from_tx}) asks for history before tx {self._base_tx + 1}")
        return self._read_log(from_tx, to_tx)

    def _read_log(self, from_tx: int, to_tx: int | None) -> Iterator[Transaction]:
        end = self._last_tx if to_tx is None else min(to_tx, self._last_tx)
        for tx_id, rec in self._log.iter_range(from_tx, end):
            self._check_open()
            cols = self._decode(tx_id, rec)
            yield Transaction(tx_id, cols.epoch, cols.ts_ns / 1e9, tuple(self._events(cols)))

    def read_stream(self, stream: str, from_version: int = 1) -> Iterator[Event]:
        """The stream's events from ``from_version`` on, oldest first.

        Follows the stream's chain through the log (newest tx back via each event's
        prev_tx), so it reads only the transactions that hold the stream.
        """
        self._check_open()
        if type(from_version) is not int or from_version < 1:
            raise InvalidEventError(f"from_version must be an int >= 1, got {from_version!r}")
        e = self._state.lookup(stream) if isinstance(stream, str) else None
        if e is None or from_version > e[0]:
            return iter(())
        chunks: list[list[Event]] = []
        oldest = e[0] + 1
        t = e[2]
        with self._log.getter() as get:  # one read txn for the whole walk
            while t:
                if t <= self._base_tx:
                    raise self._lost(f"stream {stream!r} versions {from_version}..{oldest - 1}")
                rec = get(t)
                if rec is None:
                    raise CorruptLogError(f"stream {stream!r} refers to tx {t}, which is "
                                          f"missing from the log of {self.path}")
                sel = self._select(t, rec, stream)
                if not sel.indexes:
                    raise CorruptLogError(f"tx {t} holds no event of stream {stream!r} though "
                                          "the stream's chain points at it")
                ts = sel.ts_ns / 1e9
                chunks.append([
                    Event(stream, v, ty, d, sel.first_position + i, t, sel.epoch, ts)
                    for i, ty, v, d in zip(sel.indexes, sel.types, sel.versions, sel.datas,
                                           strict=True)
                    if v >= from_version])
                oldest = sel.versions[0]
                if oldest <= from_version:
                    break
                t = sel.prev_tx[0]
        return (ev for chunk in reversed(chunks) for ev in chunk)

    # ------------------------------------------------------------- snapshots
    def snapshot(self) -> SnapshotInfo:
        """Write a snapshot of the current state now; returns once it is durable."""
        self._check_open()
        return self._take_snapshot()

    def _take_snapshot(self) -> SnapshotInfo:
        with self._snapshot_lock:
            self._state.materialize(self._state_lock)  # once, after an indexed open
            with self._state_lock:  # the only moment writers wait
                entries = self._state.entries.copy()
                tx_id, pos = self._last_tx, self._last_position
            info = write_snapshot(snap_dir(self.path), db_id=self.db_id, epoch=self._epoch,
                                  tx_id=tx_id, last_position=pos, history=self._history,
                                  state=entries)
            self._snapshot_tx = tx_id
            prune(snap_dir(self.path), self.keep_snapshots)
            return info

    def _snapshot_loop(self) -> None:
        every = self.snapshot_every
        assert every
        while True:
            self._snap_wake.wait()
            self._snap_wake.clear()
            if self._snap_stop:
                return
            if self._last_tx - self._snapshot_tx < every:
                continue
            try:
                self._take_snapshot()
                self.last_snapshot_error = None
            except Exception as exc:  # keep serving; surfaced by status and the log
                self.last_snapshot_error = exc
                log.error("background snapshot of %s failed: %s", self.path, exc)

    # --------------------------------------------------------------- closing
    def _check_open(self) -> None:
        if self._closed:
            raise DatabaseClosedError(f"database {self.path} is closed; open it again to use it")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Wait for in-flight commits, stop the snapshot thread, release the directory."""
        if self._closed:
            return
        with self._write_lock, self._cv:
            self._closed = True
            while self._queue:
                self._cv.wait()
        if self._snap_thread is not None:
            self._snap_stop = True
            self._snap_wake.set()
            self._snap_thread.join()
        self._log.close()
        if self._owns_lock:
            self._lock.release()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"epoch {self._epoch}, tx {self._last_tx}"
        return f"<engine.Database {self.path} ({state})>"


def open(path: str | os.PathLike[str], *, create: bool = True, sync: str = "commit",
         reducer: Reducer | None = None, snapshot_every: int | None = None,
         keep_snapshots: int = 3) -> Database:
    """Open (or create) the database in directory ``path``. See the README's API tour."""
    return Database(os.fspath(path), create=create, sync=sync, reducer=reducer,
                    snapshot_every=snapshot_every, keep_snapshots=keep_snapshots)
