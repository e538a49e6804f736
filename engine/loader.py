"""Loading the state on open: the newest valid snapshot plus the log after it.

Two ways to the same state (a hypothesis test holds them equal):

* **indexed** (default reducer, tail within budget): the snapshot body and the
  tail's records are indexed in C (:class:`~engine.native.StateIndex`), with no
  Python object per stream; the state keeps the index as its read-only base.
* **eager** (a custom reducer, or a tail past the budget): the snapshot's state is
  built as a dict and the tail is replayed through the reducer.

The tail is streamed: records are kept only while the indexed way is still
possible; once past the budget, what was kept is replayed into a dict and the rest
streams through it. Every tail record passes the :class:`~engine.logreader.LogReader`
checks (key, epoch, gap-free continuation from the snapshot).
"""

from __future__ import annotations

import gc
import queue
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, islice
from typing import TypeVar

from .errors import CorruptSnapshotError, StorageError
from .log import LogStore
from .logreader import Continuity, LogReader
from .model import EpochRecord, Reducer
from .native import StateIndex, anonymous_memory, decode_tx, event_count_hint
from .ops.plan import OpenPlan
from .snapshot import LoadedSnapshot, build_state
from .state import State, StateEntry, tracking_entries

_T = TypeVar("_T")

# A tail up to max(this, 2x the snapshot body) is indexed, not built.
LAZY_TAIL_BYTES = 64 << 20
# Batches of records the read-ahead thread may hold that the loader has not taken
# yet, and the most records in one batch.
READ_AHEAD_BATCHES = 4
READ_AHEAD_BATCH = 64
# The tail is read ahead only if its first PROBE_RECORDS records (read in the loader's
# own thread) hold READ_AHEAD_MIN_BYTES or more on average (see _tail).
PROBE_RECORDS = 8
READ_AHEAD_MIN_BYTES = 16 << 10


@dataclass(frozen=True)
class Loaded:
    """What open found and built: identity, timeline, position and state."""

    db_id: str
    epoch: int
    base_tx: int
    base_position: int
    history: tuple[EpochRecord, ...]
    snapshot_tx: int
    last_tx: int
    last_position: int
    state: State


def load(plan: OpenPlan, log: LogStore, reducer: Reducer | None, where: str) -> Loaded:
    """Initialise a new log if the plan says so, then load snapshot and tail."""
    # Loading builds millions of tuples that can hold no cycles: the cyclic GC would
    # rescan them again and again while they are made (~10-20% of a reopen).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _load(plan, log, reducer, where)
    finally:
        if gc_was_enabled:
            gc.enable()


def _load(plan: OpenPlan, log: LogStore, reducer: Reducer | None, where: str) -> Loaded:
    snap = plan.snapshot
    info = plan.log
    if plan.create or not info.exists:
        db_id = snap.header.db_id if snap else str(uuid.uuid4())
        epoch = snap.header.epoch if snap else 1
        history = list(snap.header.history) if snap else [
            EpochRecord(1, 1, 1, time.time(), "created")]
        base_tx = snap.header.tx_id if snap else 0
        base_pos = snap.header.last_position if snap else 0
        log.initialise(db_id, epoch, base_tx, base_pos, history)
        info = log.info()
    assert info.db_id is not None  # the log was initialised above
    reader = LogReader(log, epoch=info.epoch, base_tx=info.base_tx,
                       base_position=info.base_position, where=where,
                       history=info.history)
    start_tx = snap.header.tx_id if snap else info.base_tx
    start_pos = snap.header.last_position if snap else info.base_position
    cont = Continuity(start_tx, start_pos)
    budget = max(LAZY_TAIL_BYTES, 2 * len(snap.body)) if snap else LAZY_TAIL_BYTES
    indexed = _IndexedTail(snap, reader, cont) if reducer is None else None
    eager: State | None = None if reducer is None else State(
        snap.state if snap else {}, reducer)
    # The tail's tree pages are checked with plain reads first: LMDB aborts the process
    # on a zeroed leaf it meets while iterating (docs/FORMAT.md, section 3).
    if plan.pages_checked_from is None or plan.pages_checked_from > start_tx + 1:
        log.check_pages_from(start_tx + 1)  # not twice: the plan's lineage read did it
    # Indexed, a tail of long records is copied into memory of the loader's own
    # (TailArena); the eager way decodes records into Python objects from bytes.
    arena = TailArena() if indexed is not None else None
    with _tail(log, start_tx + 1, arena) as records:
        for tx_id, rec in records:
            if indexed is not None:
                budget -= len(rec)
                if budget >= 0:
                    indexed.put(tx_id, rec)
                    continue
                # Past the budget: the state is built as a dict after all, from the
                # snapshot and every record so far, checked again from the start.
                eager = State(snap.state if snap else {}, reducer)
                cont = Continuity(start_tx, start_pos)
                assert arena is not None  # the indexed way may copy into the arena
                arena.min_bytes = sys.maxsize  # from here on, records come as bytes
                pending = [*indexed.tail, (tx_id, rec)]
                indexed = None  # the index (and its keep of the records) goes now
            else:
                pending = [(tx_id, rec)]
            assert eager is not None
            for t, r in pending:
                cols = reader.decode(t, bytes(r))  # bytes: decoded values are slices of it
                reader.follow(cont, t, cols.first_position, len(cols.streams))
                eager.replay(cols)
    if indexed is not None:
        state = indexed.state()
    else:
        assert eager is not None  # indexed is None only once the eager state exists
        state = eager
    assert cont.position is not None  # RAISE never lets a damaged record through
    return Loaded(db_id=info.db_id, epoch=info.epoch, base_tx=info.base_tx,
                  base_position=info.base_position, history=info.history,
                  snapshot_tx=start_tx, last_tx=cont.tx_id, last_position=cont.position,
                  state=state)


class _IndexedTail:
    """Open without a Python object per stream: the snapshot body and the tail's
    records are indexed in C (default reducer), and kept as the state's base. Each
    record is indexed as it is read (:meth:`put`), while the next ones are read
    beside it (:func:`read_ahead`)."""

    def __init__(self, snap: LoadedSnapshot | None, reader: LogReader,
                 cont: Continuity) -> None:
        self._snap = snap
        self._reader = reader
        self._cont = cont
        self.tail: list[tuple[int, bytes | memoryview]] = []  # every record put, for build()
        # put_tx indexes a record's events only: its tracking entries go here (the
        # body's, which put_body indexes like any entry, are in the index)
        self._tracked: dict[str, StateEntry] = {}
        self._index: StateIndex | None = None
        if snap is not None:
            if snap.index is not None:
                # The plan indexed the body as it loaded it. The index is the state's
                # from here on (the tail goes into it): the snapshot lets go of it, so
                # a switch to the eager way frees it with this object.
                index = snap.index
                object.__setattr__(snap, "index", None)
            else:
                # Sized for the snapshot's streams and some new ones from the tail
                # (most tail events update streams that exist); it grows if short.
                index = StateIndex(snap.header.stream_count * 5 // 4)
                index.put_body(snap.body)
            if len(index) != snap.header.stream_count:
                raise CorruptSnapshotError(
                    f"snapshot {snap.header.path} holds {len(index)} distinct streams, its "
                    f"header says {snap.header.stream_count} (a name appears twice). "
                    "Move it aside to fall back to an older snapshot.")
            self._index = index

    def put(self, tx_id: int, record: bytes | memoryview) -> None:
        """Index one tail record (checked: key, epoch, continuation)."""
        if self._index is None:
            self._index = StateIndex(4 * event_count_hint(record))
        index = self._index
        got = self._reader.checked(tx_id, lambda: index.put_tx(record))
        self._reader.follow(self._cont, tx_id, got.first_position, got.event_count)
        self.tail.append((tx_id, record))
        if got.tracking_count:  # decoded from bytes: its values become the state's
            self._tracked.update(tracking_entries(self._reader.decode(tx_id, bytes(record))))

    def state(self) -> State:
        if self._index is None:  # nothing to index: an empty dict answers faster
            return State({}, None)
        snap, tail = self._snap, self.tail

        def build() -> dict[str, StateEntry]:  # the same state, eagerly (tested code)
            st = State(build_state(snap.header, snap.body) if snap else {}, None)
            for _tx_id, rec in tail:
                st.replay(decode_tx(bytes(rec)))  # bytes: decoded values are slices of it
            return st.entries

        return State(self._tracked, None, base=self._index, build_base=build)


@contextmanager
def _tail(log: LogStore, first_tx: int, arena: TailArena | None
          ) -> Iterator[Iterator[tuple[int, bytes | memoryview]]]:
    """The tail's records from ``first_tx``. Its first PROBE_RECORDS are read as bytes
    in the loader's thread; if they average READ_AHEAD_MIN_BYTES or more (and
    ``arena``: the indexed way), the rest is copied into the arena and read ahead in a
    helper thread (:func:`read_ahead`) while the loader indexes. A tail of short
    records is read as bytes in the loader's thread: py-lmdb copies those in C
    faster than a view and a copy in Python, and indexing one is a C call of a few
    microseconds that releases the GIL, which a reader thread busy in Python then
    holds (with 60k single-event records the open took 8% longer read ahead)."""
    records = log.iter_range(first_tx, first_chunk=PROBE_RECORDS)
    head: list[tuple[int, bytes | memoryview]] = []
    try:
        head.extend(islice(records, PROBE_RECORDS))
    except Exception as exc:  # a damaged key or page: raised after the records before it
        yield chain(head, _raising(exc))
        return
    if arena is None or len(head) < PROBE_RECORDS or \
            sum(len(r) for _, r in head) < PROBE_RECORDS * READ_AHEAD_MIN_BYTES:
        yield chain(head, records)
        return
    # The probe's iterator is dropped here, between two read transactions (its first
    # chunk was all it read); the rest is read anew from the next tx.
    del records
    rest = log.iter_range_into(arena, head[-1][0] + 1)
    with read_ahead(rest) as ahead:
        yield chain(head, ahead)


def _raising(exc: Exception) -> Iterator[tuple[int, bytes | memoryview]]:
    """An iterator that raises ``exc`` when it is reached."""
    raise exc
    yield  # pragma: no cover - makes this a generator


class TailArena:
    """Copies the records of an indexed open's tail out of LMDB's map into chunks of
    private anonymous memory that ask for huge pages (``native.anonymous_memory``),
    handing out a view of each copy: the index points into them, and they live as
    long as it (its ``_keep``). A ``bytes`` object per record cost a mapping and a
    page fault per 4 KiB each (about half the tail's read time on this VM). A short
    record is copied into ``bytes`` as before: there a view's own ~200 bytes would
    cost more than the copy saves (a tail of 60k single-event records opened 7%
    slower through views).

    Used by the read-ahead's thread only (``_tail`` reads short tails without it); the
    views are only read afterwards. ``min_bytes`` may be raised from another thread
    (the loader, on going the eager way): one attribute write.
    """

    CHUNK_BYTES = 32 << 20  # a record longer than this gets a chunk of its own size
    MIN_BYTES = 4096  # records shorter than this are copied into bytes

    def __init__(self) -> None:
        self._chunk: memoryview | None = None
        self._used = 0
        self.min_bytes = self.MIN_BYTES

    def __call__(self, record: memoryview) -> bytes | memoryview:
        n = len(record)
        if n < self.min_bytes:
            return bytes(record)
        if self._chunk is None or self._used + n > len(self._chunk):
            size = max(self.CHUNK_BYTES, n)
            try:
                self._chunk = memoryview(anonymous_memory(size))
            except OSError as exc:
                raise StorageError(f"cannot allocate {size} bytes to read the log's tail "
                                   f"into: {exc}. Free memory and open again.") from exc
            self._used = 0
        out = self._chunk[self._used : self._used + n]
        out[:] = record
        self._used += n
        return out


class _Done:
    """The read-ahead thread's last item: ``items`` ended, or raised ``failure``."""

    def __init__(self, failure: BaseException | None) -> None:
        self.failure = failure


@contextmanager
def read_ahead(items: Iterator[_T], depth: int = READ_AHEAD_BATCHES) -> Iterator[Iterator[_T]]:
    """``items``, consumed in a helper thread up to ``depth`` batches (of at most
    READ_AHEAD_BATCH items) ahead of the caller.

    The open reads the log's tail this way: py-lmdb copies each record out of the
    map (holding the GIL) while the loader indexes the previous ones in C (GIL
    released), so the two overlap. ``items`` runs only in the helper thread (its
    LMDB read transactions begin and end there). An exception it raises is raised
    to the caller in its place; on leaving the block early the helper is stopped,
    ``items`` closed in it, and the thread joined before the block is left.
    """
    out: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        # Items go over in batches: a queue hand-off costs ~10-20 us between threads,
        # as much as indexing a short record. A batch goes when it is full, or at once
        # when the caller has nothing left to take (so it never waits on a full one).
        failure: BaseException | None = None
        batch: list[_T] = []
        try:
            for item in items:
                batch.append(item)
                if len(batch) >= READ_AHEAD_BATCH or out.empty():
                    if not put(batch):
                        return
                    batch = []
        except BaseException as exc:  # handed to the caller, raised there
            failure = exc
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        if batch and not put(batch):
            return
        put(_Done(failure))

    def taken() -> Iterator[_T]:
        while True:
            got = out.get()
            if isinstance(got, _Done):
                if got.failure is not None:
                    raise got.failure
                return
            yield from got  # type: ignore[misc]  # a batch: list[_T]

    helper = threading.Thread(target=run, name="engine-open-read-ahead", daemon=True)
    try:
        helper.start()  # inside: an interrupt in start() may come once it runs
        yield taken()
    finally:
        stop.set()
        if helper.ident is not None:  # started
            helper.join()
