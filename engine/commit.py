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

Interrupts (``KeyboardInterrupt`` from a signal handler, ``SystemExit``, any
``BaseException`` that is not an ``Exception``) may land at any bytecode of a commit.
The rules that keep the handle usable, the state equal to the fold of the log, and
the group queue moving:

* A batch handed to the log is recorded in ``_pending`` (its changes and last tx)
  until its merge and publication are done. Whoever meets it next (the interrupted
  committer's own handler, else the next batch, else the group finish) *settles* it:
  asks the log whether it landed, merges it if so (idempotent), and drops it. So an
  interrupt between the LMDB commit and the merge, or inside the merge, never leaves
  the state behind the log (the old symptom: "tx N already exists in the log").
* The merge completes under ``state_lock`` before the lock is released even when
  interrupted, so a snapshot never copies a half-merged batch.
* ``sync="group"``: every way out of :meth:`_commit_group` goes through
  :meth:`_leave_queue`. A follower interrupted before a leader took its intent
  *withdraws* it (nothing written, the next intent leads). A follower whose intent a
  leader already took waits for that one write to finish and then re-raises. A leader
  interrupted before its batch landed hands its followers' intents back to the queue
  (the next leader commits them; their committers never see the interrupt); if the
  batch landed, the whole group is committed and the leader re-raises.
* The interrupt is always re-raised, never swallowed, once the bookkeeping is done;
  it carries a note (PEP 678, shown in the traceback) with the outcome: "tx N is
  committed", "nothing was written", or, if a second interrupt cut the settling
  short, "unknown: check db.position". A KeyboardInterrupt out of ``db.append`` thus
  means *look at the note (or read back)*, not "nothing happened".
* One interrupt at any point is survived exactly (``tests/commit/test_interrupts.py``
  lands hundreds at random points). The handlers retry their own bookkeeping when a
  second interrupt hits them, but Python gives no way to block signals at every
  instruction: a second interrupt landing in the few instructions before a handler
  starts can still stop it. The pending batch is then settled by the next commit, and
  in the group queue the committer's intent is marked ``left`` (an outermost
  ``finally``); a waiter whose wait times out (``_REPAIR_SECONDS``) cleans up for it
  (:meth:`_repair`), so the queue does not stall.

Reentrancy: a custom reducer runs inside the commit (planning, with the write lock
or the leader role held). ``_reducing`` names the thread running it; a commit,
``transaction()``, ``snapshot()`` or ``close()`` from that thread raises
:class:`ReentrantCallError` instead of deadlocking on the lock it already holds.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Protocol

from .errors import DatabaseClosedError, ReentrantCallError, StorageError
from .native import encode_tracking, encode_tx
from .notify import CommitPoint, CommitSignal
from .state import Captured, State, StateEntry

_perf_counter = time.perf_counter
_get_ident = threading.get_ident
_new_point = tuple.__new__  # CommitPoint without NamedTuple's Python-level __new__


class Intent:
    """One transaction waiting to commit: checked columns, ``expected_version`` checks
    as ``(event index, expected)``, and its data size. Filled in by the leader:
    ``done``, ``error``, ``tx_id``."""

    __slots__ = ("datas", "done", "error", "expects", "first_position", "fixed", "left",
                 "nbytes", "streams", "tracking", "ts", "tx_id", "types", "versions")

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
        self.left = False  # "group": its committer has left _commit_group (see _repair)


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

    @property
    def sync_mode(self) -> str: ...

    def sync(self) -> None: ...


# A batch handed to the log and not yet known to be merged: its state changes (in commit
# order), its last tx id and the position of its last event.
_Pending = tuple[list[dict[str, StateEntry]], int, int]


class CommitPipeline:
    """Serialises commits of one database and applies them to its log and state.

    Lock order: ``_queue_cv`` or ``_write_lock`` (never both by a committer), then
    ``state_lock``. ``close()`` takes both outer locks to drain the pipeline. The
    *writer* is the ``_write_lock`` holder (``"commit"``/``"none"``) or the leader
    (``"group"``): one thread at a time.
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
        # "group": the leader queue. Guarded by _queue_cv, always entered through its
        # C-level lock: Condition.__enter__/__exit__ are Python functions, and an interrupt
        # landing in one of them could leave the lock held with no `with` to release it.
        self._queue_lock = threading.RLock()
        self._queue_cv = threading.Condition(self._queue_lock)
        self._queue: deque[Intent] = deque()
        # "group": the intents the leader in flight took from the head of the queue (its
        # own first); empty between groups. Guarded by _queue_cv.
        self._taken: list[Intent] = []
        # Guarded by _write_lock or _queue_cv (set under both by close()).
        self._closed = False
        # Set by the leader when the log cannot tell what landed (see module doc); once
        # set it is never cleared: later commits raise it.
        self._broken: StorageError | None = None
        # The batch handed to the log and not yet settled (module doc). Writer only.
        self._pending: _Pending | None = None
        # The ident of the writer thread while it runs a custom reducer, else 0: a commit
        # (or snapshot, close) from that thread is reentrant. Writer only.
        self._reducing = 0
        self.stats = CommitStats(last_tx, last_position)  # written by the leader only

    # ------------------------------------------------------------- committing
    def commit(self, w: Intent) -> int:
        """Commit one intent; returns its tx id or raises what stopped it (nothing written).

        An interrupt (a ``BaseException`` that is not an ``Exception``) is re-raised once
        log, state and queue agree again, with a note saying whether ``w`` was committed.
        """
        if self._reducing and self._reducing == _get_ident():
            self.check_reentry("a commit (db.append or a transaction)")
        try:
            if self._group:
                self._commit_group(w)
            else:
                with self._write_lock:
                    if self._closed or self._broken is not None:
                        self._check_usable()  # raises
                    self._write_batch([w])
        except BaseException as exc:
            if not isinstance(exc, Exception):
                exc.add_note(self._outcome(w))
            raise
        if w.error is not None:
            raise w.error
        return w.tx_id

    @property
    def closed(self) -> bool:
        return self._closed

    def check_reentry(self, what: str) -> None:
        """Raise :class:`ReentrantCallError` if this thread is running this database's
        reducer inside a commit (``what`` names the call, for the message)."""
        if self._reducing and self._reducing == _get_ident():
            raise ReentrantCallError(
                f"{what} on {self._describe} was called from inside its reducer, while a "
                "commit of this database runs in this thread (it would wait for itself). "
                "A reducer must be a pure function of (value, event): it runs again on "
                "replay. The transaction being committed fails with this error (nothing "
                "of it is written); append follow-up events after the commit returns.")

    def _check_usable(self) -> None:
        if self._closed:
            raise DatabaseClosedError(f"database {self._describe} is closed; open it again "
                                      "to use it")
        if self._broken is not None:
            raise self._broken

    def _outcome(self, w: Intent) -> str:
        """The note an interrupt of ``w``'s commit carries (once the commit path settled)."""
        tx = w.tx_id
        if tx and tx <= self.last_tx:
            return (f"engine: the interrupt landed after tx {tx} was committed; it is in the "
                    "log and the state")
        pending = self._pending
        if tx and pending is not None and tx <= pending[1]:
            return ("engine: a second interrupt cut short checking whether this commit "
                    f"reached the log (tx {tx}): the outcome is unknown until the next "
                    "commit settles it; check db.position or read the stream back")
        return ("engine: the interrupt landed before this commit reached the log; nothing "
                "was written")

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
        """Queue ``w``; the intent at the head leads and writes a group from the queue.

        Every way out by exception goes through :meth:`_leave_queue`, which works out from
        the shared state (not from locals an interrupt may not have reached) whether ``w``
        leads a group in flight, was taken by another leader, or is only queued.
        """
        cv = self._queue_cv
        try:
            try:
                with self._queue_lock:
                    self._check_usable()
                    q = self._queue
                    q.append(w)
                    while not w.done and q[0] is not w:
                        if not cv.wait(_REPAIR_SECONDS):
                            self._repair()  # the head's committer may have left uncleanly
                    if w.done:
                        return
                    self._taken = self._take_group()
                self._write_batch(self._taken)
                self._finish_group()
            except BaseException as exc:
                _uninterrupted(self._leave_queue, w, exc)
                inner = _wrapped_interrupt(exc)
                if inner is not None:
                    raise inner from None
                raise
        finally:
            # First instruction of the finally, a store: it runs even when a second
            # interrupt cut _leave_queue short. A waiter then finds w abandoned (_repair).
            w.left = True

    def _finish_group(self) -> None:
        """Leader, after a written group: every committer of it learns its outcome (set by
        :meth:`_write_batch`), and the next intent at the head leads."""
        cv = self._queue_cv
        with self._queue_lock:
            taken = self._taken
            q = self._queue
            for g in taken:
                g.done = True
            for _ in taken:
                q.popleft()
            self._taken = []
            cv.notify_all()

    def _leave_queue(self, w: Intent, exc: BaseException) -> None:
        """``w``'s committer leaves the queue by ``exc`` (module doc). Idempotent."""
        cv = self._queue_cv
        with self._queue_lock:
            try:
                while True:
                    taken = self._taken
                    if taken and taken[0] is w:  # w leads the group in flight
                        self._hand_back(w, exc)
                        return
                    if w.done:
                        return
                    if any(t is w for t in taken):
                        # Taken by another leader: its write decides w's outcome.
                        if not cv.wait(_REPAIR_SECONDS):
                            self._repair()
                        continue
                    if w in self._queue:  # (never queued if refused before)
                        self._queue.remove(w)  # not taken: withdrawn, nothing written
                    w.tx_id = 0
                    return
            finally:
                cv.notify_all()  # w may have been the head, or a finish was cut short

    def _repair(self) -> None:
        """Under _queue_cv, by a waiter whose wait timed out: clean up after committers
        that left :meth:`_commit_group` without leaving the queue (a second interrupt cut
        their :meth:`_leave_queue` short): hand back the group of a leader that left,
        withdraw the queued intents of the others. Nothing to do in normal operation."""
        q = self._queue
        if not any(x.left for x in q):
            return
        taken = self._taken
        if taken and taken[0].left:
            self._hand_back(taken[0], _ABANDONED)
        for x in [x for x in q if x.left and not any(t is x for t in self._taken)]:
            q.remove(x)
            x.tx_id = 0
        self._queue_cv.notify_all()

    def _hand_back(self, w: Intent, exc: BaseException) -> None:
        """The leader ``w`` failed with ``exc`` (under _queue_cv): settle its batch, finish
        the intents whose outcome is known, and leave the rest queued, in place, for the
        next leader. Idempotent."""
        if self._pending is not None:
            self._settle(exc)
        taken = self._taken
        last = self.last_tx
        # Refusals (ConcurrencyError, a reducer's error) were planned on top of earlier
        # txs of the batch: they stand only if the batch landed. A log failure stands too.
        errors_stand = isinstance(exc, Exception) or any(0 < g.tx_id <= last for g in taken)
        q = self._queue
        for g in taken:
            committed = 0 < g.tx_id <= last
            if g is w or committed or (g.error is not None and errors_stand):
                if not committed:
                    g.tx_id = 0
                g.done = True
                if g in q:
                    q.remove(g)
            else:  # back to the queue: its committer never learns of the interrupt
                g.tx_id = 0
                g.error = None
        self._taken = []

    def _write_batch(self, batch: list[Intent]) -> None:
        """Writer only: plan, encode, append (one LMDB commit), merge, publish.

        On return every intent has its outcome (``tx_id`` or ``error``). An interrupt is
        re-raised after the batch is settled: then ``tx_id`` is non-zero only for a
        committed intent.
        """
        if self._pending is not None or self._broken is not None:
            if self._pending is not None:
                self._settle(None)  # an earlier batch whose settling was cut short
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
        if state.reducer is not None:
            self._reducing = _get_ident()  # the reducer may not commit from this thread
        try:
            for w in batch:
                try:
                    plan = state.plan(tx_id + 1, w.streams, w.types, w.datas, w.expects,
                                      overlay, epoch=epoch, ts=ts, first_position=pos + 1,
                                      fixed=w.fixed, tracking=w.tracking)
                    if w.streams:
                        streams_col = ("\0".join(w.streams) + "\0").encode()
                        types_col = ("\0".join(w.types) + "\0").encode()
                    else:  # tracking only
                        streams_col = types_col = b""
                    rec = encode_tx(tx_id + 1, epoch, ts_ns, pos + 1, plan.versions,
                                    plan.prev_tx, streams_col, types_col, w.datas,
                                    encode_tracking(w.tracking) if w.tracking else b"")
                except Exception as exc:  # this tx only: ConcurrencyError, a reducer's error
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
        except BaseException:
            for w in batch:
                w.tx_id = 0  # interrupted while planning: nothing reached the log
            raise
        finally:
            self._reducing = 0
        if not records:
            return
        stats = self.stats
        self._pending = (changes, tx_id, pos)
        try:
            self._log.append(records)  # one LMDB commit: durable unless sync="none" (see "data")
            # The merge (as _merge, inlined: this is every commit's path). An interrupt in
            # it completes it before the lock is released: no snapshot sees half a batch.
            with self.state_lock:
                try:
                    entries = state.entries
                    for c in changes:  # in commit order: a later tx's entry wins
                        entries.update(c)
                    self.last_tx = tx_id
                    self.last_position = pos
                except BaseException:
                    _uninterrupted(self._merge_entries, changes, tx_id, pos)
                    raise
            self.signal.publish(_new_point(CommitPoint, (epoch, tx_id, pos)))
            self._pending = None
        except BaseException as exc:
            self._after_failed_append(exc, written)  # raises, unless the batch landed
            return
        # commits and events are derived from the position at scrape time (CommitStats)
        seconds = _perf_counter() - t0
        stats.latency_sum += seconds
        stats.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        n = len(records)
        stats.group_counts[bisect_left(GROUP_BUCKETS, n) if n > 1 else 0] += 1

    def _after_failed_append(self, exc: BaseException, written: list[Intent]) -> None:
        """The failure policy (module doc), once the batch ``written`` was handed to the
        log and ``exc`` stopped it: settle the batch (even through further interrupts).
        Returns if it landed and ``exc`` is an error (the commit stands); else raises."""
        again = _uninterrupted(self._settle, exc)
        interrupt = again if isinstance(exc, Exception) else exc
        if 0 < written[-1].tx_id <= self.last_tx:  # it landed: merged and published
            if interrupt is not None:
                raise interrupt  # an interrupt still interrupts; its batch is committed
            return
        for w in written:
            w.tx_id = 0  # the next batch reuses these tx ids
        if interrupt is not None:
            raise interrupt  # nothing landed ("group": the followers go back to the queue)
        self.stats.failed += len(written)
        broken = self._broken
        for w in written:
            w.error = exc if broken is None else broken
        if broken is not None:
            raise broken from exc
        raise exc

    def _settle(self, exc: BaseException | None) -> None:
        """Writer only: resolve ``_pending`` after ``exc`` (None: found by a later batch).
        Asks the log whether the batch landed; merges it if so; drops it. If the log
        cannot say, the pipeline is broken. Idempotent."""
        pending = self._pending
        if pending is None:
            return
        changes, tx_id, pos = pending
        if isinstance(exc, DatabaseClosedError):
            self._pending = None  # the closed log refused before opening a write
            return
        try:
            _first, log_last = self._log.bounds()
        except Exception as probe_exc:
            what = (f"failed ({exc!r})" if isinstance(exc, Exception) else
                    "was interrupted")
            self._broken = StorageError(
                f"a commit to {self._describe} {what} and the log could not be read back "
                f"({probe_exc!r}), so it is unknown whether it landed. Close and reopen "
                "the database: opening rebuilds the state from the log.")
            self._pending = None
            return
        if log_last is not None and log_last >= tx_id:
            self._merge(changes, tx_id, pos)  # LMDB committed: keep state and log agreed
        self._pending = None

    def _merge(self, changes: list[dict[str, StateEntry]], tx_id: int, pos: int) -> None:
        """Merge a landed batch and publish it (idempotent: the writer settles one batch)."""
        with self.state_lock:
            _uninterrupted(self._merge_entries, changes, tx_id, pos)
        self.signal.publish(CommitPoint(self._epoch, tx_id, pos))

    def _merge_entries(self, changes: list[dict[str, StateEntry]], tx_id: int,
                       pos: int) -> None:
        """Under state_lock: the batch's entries and its position (idempotent)."""
        entries = self.state.entries
        for c in changes:  # in commit order: a later tx's entry wins
            entries.update(c)
        self.last_tx = tx_id
        self.last_position = pos

    # ----------------------------------------------------------------- state
    def capture(self) -> Captured:
        """The whole state as of one committed tx, for a snapshot: a private copy of the
        entries dict, the read-only C index under it (after an indexed open, or None),
        the tx and its last position. The index is not folded into a dict
        (write_snapshot encodes it in C), so the copy is of what changed since open."""
        with self.state_lock:  # the only moment writers wait
            captured = (self.state.entries.copy(), self.state.base, self.last_tx,
                        self.last_position)
        if self._log.sync_mode == "data":
            # The captured tx's meta page may not be flushed yet (sync="data"): flush it
            # before a snapshot of it is published, or a power cut could leave the
            # snapshot ahead of the log.
            self._log.sync()
        return captured

    # --------------------------------------------------------------- closing
    def close(self) -> None:
        """Refuse new commits and wait for queued ones (in-flight commits finish)."""
        try:
            with self._write_lock, self._queue_lock:
                self._closed = True
                while self._queue:
                    if not self._queue_cv.wait(_REPAIR_SECONDS):
                        self._repair()
        except RuntimeError as exc:  # an interrupt inside Condition.wait (see _commit_group)
            inner = _wrapped_interrupt(exc)
            if inner is None:
                raise
            raise inner from None


# How long a group committer (or close) waits before checking that the intent at the head
# still has a committer (only a second interrupt can leave one without; see _repair).
_REPAIR_SECONDS = 0.5
# The "exception" a leader that left uncleanly is handed back with: an interrupt, so the
# followers of a batch that did not land go back to the queue.
_ABANDONED = KeyboardInterrupt("the commit leader left without finishing its group")


def _uninterrupted(fn: Callable[..., object], *args: object) -> BaseException | None:
    """Run ``fn(*args)``, idempotent bookkeeping, to the end even if interrupts land in it
    (each one restarts it); returns the first interrupt caught, for the caller to re-raise
    after its own. An ``Exception`` out of ``fn`` is a bug there: it propagates."""
    first: BaseException | None = None
    while True:
        try:
            fn(*args)
            return first
        except BaseException as exc:
            inner = exc if not isinstance(exc, Exception) else _wrapped_interrupt(exc)
            if inner is None:
                raise
            if first is None:
                first = inner


def _wrapped_interrupt(exc: BaseException) -> BaseException | None:
    """The interrupt behind the ``RuntimeError`` that ``with cond:`` raises when it landed
    inside ``Condition.wait`` after the lock was released and before it was re-taken (the
    interrupt is the error's context), else None."""
    ctx = exc.__context__
    if (type(exc) is RuntimeError and "un-acquired lock" in str(exc)
            and ctx is not None and not isinstance(ctx, Exception)):
        return ctx
    return None
