"""The commit pipeline: from a checked :class:`Intent` to a record in the log and a
change in the state, one batch at a time.

``sync="group"`` (LevelDB's writer queue): every committer enqueues its intent and
waits; the intent at the head of the queue is the *leader*. The leader takes a
*group* from the head of the queue (capped: at most ``group_max_txs`` transactions
and ``group_max_bytes`` of data, and only a little more than its own transaction
when that is small, so a small write never waits behind a huge group, as in
LevelDB's ``BuildBatchGroup``), writes the group in one LMDB commit (one fsync
shared by all), and wakes the group. The next intent at the head leads the next
group. ``"commit"`` and ``"none"`` gain nothing from a shared fsync: each commit is
its own batch under a plain lock.

A batch: plan each transaction against the state (versions, ``expected_version``,
the reducer), encode one record per transaction, append them in one LMDB write
transaction, then merge the state changes under ``state_lock`` and publish the new
:class:`~engine.notify.CommitPoint`. A transaction's state change is visible only
after its record is written (and durable, unless ``sync="none"``).

Policy after a failed log write (LevelDB's ``bg_error_``), in :meth:`_after_failed_append`:
LMDB aborts a failed write transaction, so normally nothing landed; the leader then
asks the log what its last tx is. If none of the batch landed, the state is left as
it was and the next commit reuses the same tx ids (the failure is reported to the
batch's committers only). If the batch *did* land (an exception arrived after LMDB
committed, e.g. a signal), the state is brought up to the log so both agree. If the
log cannot even be asked, the pipeline is *broken*: every later commit raises
:class:`StorageError` saying to reopen the database, which rebuilds from the log.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import deque
from itertools import islice
from typing import Protocol

from .errors import DatabaseClosedError, StorageError
from .native import encode_tracking, encode_tx
from .notify import CommitPoint, CommitSignal
from .state import State, StateEntry

_perf_counter = time.perf_counter
_new_point = tuple.__new__  # CommitPoint without NamedTuple's Python-level __new__


class Intent:
    """One transaction waiting to commit: checked columns, ``expected_version`` checks
    as ``(event index, expected)``, and its data size. Filled in by the leader:
    ``done``, ``error``, ``tx_id``."""

    __slots__ = ("datas", "done", "error", "expects", "first_position", "fixed", "nbytes",
                 "streams", "tracking", "ts", "tx_id", "types", "versions")

    def __init__(self, streams: list[str], types: list[str], datas: list[bytes],
                 expects: list[tuple[int, int]], nbytes: int,
                 fixed: list[tuple[int, int]] | None = None,
                 tracking: list[tuple[str, int]] | None = None) -> None:
        self.streams = streams
        self.types = types
        self.datas = datas
        self.expects = expects
        self.nbytes = nbytes
        # caller-chosen versions as (event index, version); tracking (name, position)
        self.fixed = fixed or ()
        self.tracking = tracking or ()
        self.done = False
        self.error: BaseException | None = None
        self.tx_id = 0
        # Set by the leader with tx_id: where the events went, their versions, the time.
        self.first_position = 0
        self.versions: list[int] = []
        self.ts = 0.0


# Bucket upper bounds (seconds) of the commit latency histogram, and (transactions)
# of the commit group size histogram; the last bucket is +Inf.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 1.0)
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class CommitStats:
    """Plain counters of the commit path, read by the metrics collector at scrape time.

    Written only by the commit leader (one thread at a time), read without a lock: a
    scrape may see one batch half-counted, never a torn integer. Cheaper on the hot
    path than a metrics library's locked counters (a few integer adds per batch).
    """

    __slots__ = ("failed", "first_position", "first_tx", "group_counts", "latency_counts",
                 "latency_sum")

    def __init__(self, first_tx: int, first_position: int) -> None:
        # Commits and events since open are the position's progress since then (no
        # per-commit counting); LMDB commits are the group-size histogram's total.
        self.first_tx = first_tx
        self.first_position = first_position
        self.failed = 0  # transactions refused or failed (nothing written)
        self.latency_sum = 0.0  # seconds spent writing batches (plan to durable)
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.group_counts = [0] * (len(GROUP_BUCKETS) + 1)


class LogAppender(Protocol):
    """What the pipeline needs of the log (``engine.log.LogStore``)."""

    def append(self, records: list[tuple[int, bytes | bytearray]]) -> None: ...

    def bounds(self) -> tuple[int | None, int | None]: ...


class CommitPipeline:
    """Serialises commits of one database and applies them to its log and state.

    Lock order: ``_queue_cv`` or ``_write_lock`` (never both by a committer), then
    ``state_lock``. ``close()`` takes both outer locks to drain the pipeline.
    """

    def __init__(self, *, log: LogAppender, state: State, signal: CommitSignal,
                 epoch: int, last_tx: int, last_position: int, group: bool,
                 group_max_txs: int, group_max_bytes: int, small_leader_bytes: int,
                 small_leader_extra: int, describe: str) -> None:
        self._log = log
        self.state = state  # written by the leader under state_lock; read lock-free
        self.signal = signal
        self._epoch = epoch  # fixed for the life of an open database
        self._group = group
        self._group_max_txs = group_max_txs
        self._group_max_bytes = group_max_bytes
        self._small_leader = small_leader_bytes
        self._small_extra = small_leader_extra
        self._describe = describe  # the database path, for messages
        # Guards merging a batch into ``state`` together with last_tx/last_position;
        # a snapshot copies the state and the position under it.
        self.state_lock = threading.Lock()
        # Guarded by state_lock (written), read lock-free by readers of the position:
        self.last_tx = last_tx
        self.last_position = last_position
        # "commit"/"none": one committer at a time.
        self._write_lock = threading.Lock()
        # "group": the leader queue. Guarded by _queue_cv.
        self._queue_cv = threading.Condition()
        self._queue: deque[Intent] = deque()
        # Guarded by _write_lock or _queue_cv (set under both by close()).
        self._closed = False
        # Set by the leader when the log cannot tell what landed (see module doc); once
        # set it is never cleared: later commits raise it.
        self._broken: StorageError | None = None
        self.stats = CommitStats(last_tx, last_position)  # written by the leader only

    # ------------------------------------------------------------- committing
    def commit(self, w: Intent) -> int:
        """Commit one intent; returns its tx id or raises what stopped it (nothing written)."""
        if self._group:
            self._commit_group(w)
        else:
            with self._write_lock:
                if self._closed or self._broken is not None:
                    self._check_usable()  # raises
                self._write_batch([w])
        if w.error is not None:
            raise w.error
        return w.tx_id

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_usable(self) -> None:
        if self._closed:
            raise DatabaseClosedError(f"database {self._describe} is closed; open it again "
                                      "to use it")
        if self._broken is not None:
            raise self._broken

    def _take_group(self) -> list[Intent]:
        """The leader's group: a prefix of the queue within the caps (under _queue_cv)."""
        q = self._queue
        first = q[0]
        limit = self._group_max_bytes
        if first.nbytes <= self._small_leader:
            limit = min(limit, first.nbytes + self._small_extra)
        group = [first]
        size = first.nbytes
        for w in islice(q, 1, self._group_max_txs):
            size += w.nbytes
            if size > limit:
                break
            group.append(w)
        return group

    def _commit_group(self, w: Intent) -> None:
        """Queue ``w``; the intent at the head leads and writes a group from the queue."""
        cv = self._queue_cv
        with cv:
            self._check_usable()
            self._queue.append(w)
            while not w.done and self._queue[0] is not w:
                cv.wait()
            if w.done:
                return
            group = self._take_group()
        try:
            self._write_batch(group)
        finally:
            with cv:
                for _ in group:
                    self._queue.popleft()
                for g in group:
                    g.done = True
                cv.notify_all()

    def _write_batch(self, batch: list[Intent]) -> None:
        """Leader only: plan, encode, append (one LMDB commit), merge, publish."""
        if self._broken is not None:
            for w in batch:
                w.error = self._broken
            return
        t0 = _perf_counter()
        state = self.state
        epoch = self._epoch
        overlay: dict[str, StateEntry] = {}  # changes of earlier txs in this batch
        changes: list[dict[str, StateEntry]] = []
        records: list[tuple[int, bytes | bytearray]] = []
        written: list[Intent] = []
        tx_id = self.last_tx
        pos = self.last_position
        ts_ns = time.time_ns()
        ts = ts_ns / 1e9
        for w in batch:
            try:
                plan = state.plan(tx_id + 1, w.streams, w.types, w.datas, w.expects, overlay,
                                  epoch=epoch, ts=ts, first_position=pos + 1, fixed=w.fixed,
                                  tracking=w.tracking)
                if w.streams:
                    streams_col = ("\0".join(w.streams) + "\0").encode()
                    types_col = ("\0".join(w.types) + "\0").encode()
                else:  # tracking only
                    streams_col = types_col = b""
                rec = encode_tx(tx_id + 1, epoch, ts_ns, pos + 1, plan.versions, plan.prev_tx,
                                streams_col, types_col, w.datas,
                                encode_tracking(w.tracking) if w.tracking else b"")
            except Exception as exc:  # this tx only: ConcurrencyError, a reducer's error, ...
                w.error = exc
                self.stats.failed += 1
                continue
            tx_id += 1
            w.first_position = pos + 1
            w.versions = plan.versions
            w.ts = ts
            pos += len(w.streams)
            w.tx_id = tx_id
            if w is not batch[-1]:  # only later txs of the batch read the overlay
                overlay.update(plan.changes)
            changes.append(plan.changes)
            records.append((tx_id, rec))
            written.append(w)
        if not records:
            return
        stats = self.stats
        try:
            self._log.append(records)  # one LMDB commit: durable unless sync="none"
        except BaseException as exc:
            if not self._after_failed_append(records[-1][0], written, exc):
                stats.failed += len(written)
                if self._broken is not None:
                    raise self._broken from exc
                raise
            self._merge(changes, tx_id, pos)
            if not isinstance(exc, Exception):
                raise  # an interrupt still interrupts; the batch it arrived in is committed
            return
        # The merge (as _merge, inlined: this is every commit's path).
        with self.state_lock:
            entries = state.entries
            for c in changes:  # in commit order: a later tx's entry wins
                entries.update(c)
            self.last_tx = tx_id
            self.last_position = pos
        self.signal.publish(_new_point(CommitPoint, (epoch, tx_id, pos)))
        # commits and events are derived from the position at scrape time (CommitStats)
        seconds = _perf_counter() - t0
        stats.latency_sum += seconds
        stats.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        n = len(records)
        stats.group_counts[bisect_left(GROUP_BUCKETS, n) if n > 1 else 0] += 1

    def _after_failed_append(self, last: int, written: list[Intent],
                             exc: BaseException) -> bool:
        """The failure policy (module doc). True if the batch landed after all (merge it)."""
        try:
            _first, log_last = self._log.bounds()
        except BaseException as probe_exc:
            self._broken = StorageError(
                f"a commit to {self._describe} failed ({exc!r}) and the log could not be "
                f"read back ({probe_exc!r}), so it is unknown whether it landed. Close and "
                "reopen the database: opening rebuilds the state from the log.")
            for w in written:
                w.error = self._broken
            return False
        if log_last is not None and log_last >= last:
            return True  # LMDB committed before the exception: keep state and log agreed
        for w in written:
            w.error = exc
            w.tx_id = 0
        return False

    def _merge(self, changes: list[dict[str, StateEntry]], tx_id: int, pos: int) -> None:
        with self.state_lock:
            entries = self.state.entries
            for c in changes:  # in commit order: a later tx's entry wins
                entries.update(c)
            self.last_tx = tx_id
            self.last_position = pos
        self.signal.publish(CommitPoint(self._epoch, tx_id, pos))

    # ----------------------------------------------------------------- state
    def capture(self) -> tuple[dict[str, StateEntry], int, int]:
        """A private copy of the whole state with the position it reflects (for a snapshot)."""
        self.state.materialize(self.state_lock)  # once, after an indexed open
        with self.state_lock:  # the only moment writers wait
            return self.state.entries.copy(), self.last_tx, self.last_position

    # --------------------------------------------------------------- closing
    def close(self) -> None:
        """Refuse new commits and wait for queued ones (in-flight commits finish)."""
        with self._write_lock, self._queue_cv:
            self._closed = True
            while self._queue:
                self._queue_cv.wait()
