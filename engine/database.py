"""The database handle: a thin facade over the rooms that do the work.

``Database`` wires the pieces together on open and hands each call to the one
that owns it:

* :mod:`engine.ops.plan` decides what ``open`` does with what is on disk;
* :mod:`engine.loader` loads the snapshot and replays the log tail;
* :mod:`engine.transaction` checks input and builds transactions;
* :mod:`engine.commit` serialises commits into the log and the state, and
  publishes each one on the :class:`~engine.notify.CommitSignal`;
* :mod:`engine.history` reads committed history back from the log;
* :mod:`engine.snapshotter` writes snapshots, on request and in the background.

Background services wait on ``db.commit_signal``; none of them is a thread of this
class, and none reaches into its fields.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Protocol

from . import layout
from .commit import GROUP_BUCKETS, LATENCY_BUCKETS, CommitPipeline, Intent
from .errors import (
    DatabaseClosedError,
    EngineError,
    InvalidEventError,
    OptionsError,
    storage_error,
)
from .history import History, type_set
from .lineage import checksum_source
from .loader import load
from .lock import DirLock
from .log import LogInfo, LogStore, recover_journal
from .logreader import LogReader
from .model import EpochRecord, Event, Position, SnapshotInfo, Transaction
from .notify import CommitPoint, CommitSignal
from .ops.plan import apply_set_aside, plan_open
from .options import SMALL_LEADER_BYTES, SMALL_LEADER_EXTRA_BYTES, Options
from .port import ServicePort
from .snapshotter import Snapshotter
from .state import TRACK_PREFIX, tracking_key
from .subscription import Subscription
from .transaction import TransactionBuilder, check_event, check_expected, check_version

log = logging.getLogger("engine")


class Service(Protocol):
    """A background service attached to an open database."""

    def close(self) -> None: ...


# The full-backup procedure builds on Database (engine.backup.full imports this module),
# so Database cannot import it: it installs itself here when imported (engine.api
# imports it, so `import engine` always has it). See docs/ARCHITECTURE.md.
_full_backup: list[Callable[..., Any]] = []


def install_full_backup(fn: Callable[..., Any]) -> None:
    """Called once by ``engine.backup.full`` on import."""
    _full_backup[:] = [fn]


class Database:
    """An open database. Create with :func:`engine.open`; close with :meth:`close`.

    Thread-safe: any number of threads may commit and read at once. Commits are
    serialised by the pipeline; reads take no lock.
    """

    def __init__(self, path: str | os.PathLike[str], options: Options | None = None, *,
                 _held_lock: DirLock | None = None, _services: bool = False,
                 **kwargs: Any) -> None:
        if options is None:
            options = Options.from_kwargs(kwargs)
        elif kwargs:
            raise OptionsError("give either an Options object or keyword options, not both")
        if (options.backup is not None or options.admin_socket) and not _services:
            raise OptionsError("backup= and admin_socket= are started by engine.open(); "
                               "Database() opens only the core. Use engine.open(path, ...)")
        if options.sync == "data" and not _services:
            raise OptionsError('sync="data" needs its meta flusher, which engine.open() '
                               'starts; Database() opens only the core. Use '
                               'engine.open(path, sync="data")')
        self.options = options  # immutable
        self.path = database_directory(path, options.create)  # absolute; immutable
        self._closed = True  # until the open below completes
        # A caller that already holds the directory lock (engine-admin recover) lends it;
        # then close() leaves it held.
        self._owns_lock = _held_lock is None
        self._lock = DirLock(self.path) if _held_lock is None else _held_lock
        # Every step below unwinds what the earlier ones took if it fails, whatever the
        # failure (an interrupt too): the log is closed, the snapshot thread stopped, the
        # lock released, so a failed open leaves no descriptor, thread or lock behind.
        undo: list[Callable[[], None]] = []  # what each step took, to release on failure
        try:
            self._open(options, undo)
        except BaseException:
            self._unwind_open(undo)
            raise

    def _open(self, options: Options, undo: list[Callable[[], None]]) -> None:
        """The steps of open after the lock; each registers in ``undo`` how to release
        what it took (``__init__`` runs them, newest first, if a later step fails)."""
        # After a power cut, LMDB's file is put back to what the commit journal says
        # before anything reads it (engine.journal); a crashed process needs nothing.
        replayed = recover_journal(layout.log_dir(self.path))
        plan = plan_open(self.path, create=options.create,
                         indexed=options.reducer is None)
        apply_set_aside(plan)
        log_kwargs: dict[str, Any] = {"sync": options.sync}
        if options.map_size:
            log_kwargs["map_size"] = options.map_size
        log = LogStore(layout.log_dir(self.path), **log_kwargs)
        undo.append(log.close)
        self._log = log  # the only LMDB handle; closed by close()
        loaded = load(plan, log, options.reducer, self.path)
        # Every field below is set once here and never reassigned; the objects they
        # name guard their own mutable parts (see docs/ARCHITECTURE.md, "Locks").
        self.open_warnings: list[str] = list(plan.warnings)
        if replayed:
            self.open_warnings.append(
                f"applied {replayed} commit(s) from the log's commit journal: the machine "
                "restarted since this database was last written, or a flush of its log "
                "failed")
        self.db_id: str = loaded.db_id
        self._epoch = loaded.epoch
        self._history: tuple[EpochRecord, ...] = loaded.history
        # The last committed point; background services wait on it.
        self.commit_signal = CommitSignal(
            CommitPoint(loaded.epoch, loaded.last_tx, loaded.last_position))
        # Owns the state and the position (under its state_lock); every commit goes
        # through it.
        self._pipeline = CommitPipeline(
            log=log, state=loaded.state, signal=self.commit_signal, epoch=loaded.epoch,
            last_tx=loaded.last_tx, last_position=loaded.last_position,
            group=options.sync == "group", group_max_txs=options.group_max_txs,
            group_max_bytes=options.group_max_bytes, small_leader_bytes=SMALL_LEADER_BYTES,
            small_leader_extra=SMALL_LEADER_EXTRA_BYTES, describe=self.path)
        reader = LogReader(log, epoch=loaded.epoch, base_tx=loaded.base_tx,
                           base_position=loaded.base_position, where=self.path,
                           history=loaded.history)
        # Nothing below holds a reference back to self: a closed, dropped handle is
        # freed by reference counting at once (a cycle would keep the whole state alive
        # until the cyclic GC runs; tested).
        self._history_reader = History(log, reader, self._pipeline, loaded.history)
        self._snapshots = Snapshotter(
            snapshot_dir=layout.snapshot_dir(self.path), db_id=loaded.db_id,
            epoch=loaded.epoch, history=loaded.history, capture=self._pipeline.capture,
            lineage=checksum_source(log, loaded.base_tx), keep=options.keep_snapshots,
            last_snapshot_tx=loaded.snapshot_tx, signal=self.commit_signal,
            every=options.snapshot_every, name=self.path)
        undo.append(self._snapshots.close)  # after the signal's close below: it wakes the thread
        undo.append(self.commit_signal.close)
        self._reader = reader
        self._commit = self._pipeline.commit  # bound once: every append calls it
        # Background services attached after open (the log backup, ...), by name; each
        # has close(). Written by attach() before the handle is handed out, then only
        # read; close() closes them before the log.
        self._services: dict[str, Service] = {}
        # Written only by close() (then never back); read lock-free by every call.
        self._closed = False
        # Written only by close(): True while a close has not run to its end (one cut
        # short by an interrupt is finished by the next close() call).
        self._close_unfinished = False

    def _unwind_open(self, undo: list[Callable[[], None]]) -> None:
        """Release what a failed open took, newest first; never raises over the cause."""
        self._closed = True
        for release in reversed(undo):
            try:
                release()
            except Exception as exc:  # keep unwinding: the open's own error is what matters
                log.error("cleaning up a failed open of %s: %s", self.path, exc)
        if self._owns_lock:
            self._lock.release()

    # ------------------------------------------------------------- options
    @property
    def sync(self) -> str:
        return self.options.sync

    @property
    def snapshot_every(self) -> int | None:
        return self.options.snapshot_every

    @property
    def keep_snapshots(self) -> int:
        return self.options.keep_snapshots

    # --------------------------------------------------------------- writing
    def transaction(self) -> TransactionBuilder:
        """Start an atomic transaction (use as a context manager)."""
        self._check_open()
        self._pipeline.check_reentry("db.transaction()")
        return TransactionBuilder(self._pipeline.commit)

    def append(self, stream: str, type: str, data: bytes, *,
               expected_version: int | None = None, version: int | None = None) -> int:
        """Append one event in its own transaction; returns its tx_id (``append_event``
        returns the committed event, with its position and version)."""
        stream, type, data = check_event(stream, type, data)
        expects = [] if expected_version is None else [(0, check_expected(expected_version))]
        if version is None:
            return self._commit(Intent([stream], [type], [data], expects, len(data)))
        return self._commit(Intent([stream], [type], [data], expects, len(data),
                                   [(0, check_version(version))]))

    def append_event(self, stream: str, type: str, data: bytes, *,
                     expected_version: int | None = None,
                     version: int | None = None) -> Event:
        """As :meth:`append`, but returns the committed :class:`Event` (its version,
        global position, tx id, epoch and commit time)."""
        stream, type, data = check_event(stream, type, data)
        expects = [] if expected_version is None else [(0, check_expected(expected_version))]
        fixed = None if version is None else [(0, check_version(version))]
        w = Intent([stream], [type], [data], expects, len(data), fixed)
        tx_id = self._commit(w)
        return Event(stream, w.versions[0], type, data, w.first_position, tx_id, self._epoch,
                     w.ts)

    def tracked(self, name: str) -> int | None:
        """The last position tracked under ``name`` (``tx.track``), None if never."""
        self._check_open()
        if type(name) is not str:
            raise InvalidEventError(f"a tracking name is a str, got {type(name).__name__}")
        e = self._pipeline.state.lookup(tracking_key(name))
        return None if e is None else e[0]

    # --------------------------------------------------------------- reading
    def get(self, stream: str) -> bytes | None:
        """The current state value of ``stream`` (None if unknown or deleted);
        :class:`InvalidEventError` if ``stream`` is not a str."""
        self._check_open()
        if type(stream) is not str:
            raise _not_a_name(stream)
        e = self._pipeline.state.lookup(stream)
        # A key with U+0001 is a tracking entry (streams cannot have one): not a stream.
        return None if e is None or stream[0] == TRACK_PREFIX else e[1]

    def version(self, stream: str) -> int:
        """The stream's version: its number of events, 0 for an unknown stream;
        :class:`InvalidEventError` if ``stream`` is not a str."""
        self._check_open()
        if type(stream) is not str:
            raise _not_a_name(stream)
        e = self._pipeline.state.lookup(stream)
        return 0 if e is None or stream[0] == TRACK_PREFIX else e[0]

    def streams(self) -> Iterator[str]:
        """Every stream with at least one event (a snapshot of the key set)."""
        self._check_open()
        state = self._pipeline.state
        state.materialize(self._pipeline.state_lock)
        return iter([s for s in state.entries if s[:1] != TRACK_PREFIX])  # not tracking

    @property
    def position(self) -> Position:
        """``(epoch, tx_id)`` of the last committed transaction."""
        return Position(self._epoch, self._pipeline.last_tx)

    @property
    def last_position(self) -> int:
        """The position of the last committed event (0 before the first)."""
        return self._pipeline.last_position

    @property
    def epoch_history(self) -> tuple[EpochRecord, ...]:
        return self._history

    def read_log(self, from_tx: int = 1, to_tx: int | None = None) -> Iterator[Transaction]:
        """Committed transactions ``from_tx..to_tx`` (inclusive) in order."""
        self._check_open()
        return self._history_reader.read_log(from_tx, to_tx)

    def read_events(self, from_position: int = 1, to_position: int | None = None, *,
                    types: Iterable[str] | None = None,
                    limit: int | None = None) -> Iterator[Event]:
        """Committed events by global position, ``from_position..to_position``
        (inclusive), oldest first; only ``types`` if given; at most ``limit``."""
        self._check_open()
        return self._history_reader.read_events(from_position, to_position, types=types,
                                                limit=limit)

    def subscribe(self, after_position: int = 0, *,
                  types: Iterable[str] | None = None) -> Subscription:
        """Events after ``after_position`` (of ``types``, if given): first what is
        committed, then each commit as it lands, woken by the commit (no polling).
        Iterate it; ``stop()`` it or use it as a context manager. It ends when the
        database closes."""
        self._check_open()
        history = self._history_reader  # not self: a subscription keeps no handle alive

        def read(a: int, b: int, t: frozenset[str] | None, limit: int) -> Iterator[Event]:
            return history.read_events(a, b, types=t, limit=limit)

        return Subscription(read, self.commit_signal, after_position, type_set(types))

    def read_stream(self, stream: str, from_version: int = 1, to_version: int | None = None,
                    *, reverse: bool = False, limit: int | None = None) -> Iterator[Event]:
        """The stream's events ``from_version..to_version`` (inclusive; None: to its
        newest), oldest first or newest first with ``reverse``, at most ``limit`` of
        them. Bad arguments raise InvalidEventError at once; the log is read as the
        iterator is consumed (``reverse=True, limit=1`` reads one record)."""
        self._check_open()
        return self._history_reader.read_stream(stream, from_version, to_version,
                                                reverse=reverse, limit=limit)

    def log_info(self) -> LogInfo:
        """What the open log holds (db_id, epoch, base, first/last tx and position, history)."""
        self._check_open()
        return self._log.info()

    def stats(self) -> dict[str, Any]:
        """Counters for monitoring (the admin endpoint's /metrics reads these): commits,
        events, LMDB commits, failed transactions, the commit latency and group size
        histograms (bucket bounds and counts), snapshots, state and log size."""
        c = self._pipeline.stats
        sn = self._snapshots
        state = self._pipeline.state
        base = state.base
        try:
            log_bytes = os.path.getsize(layout.log_data_file(layout.log_dir(self.path)))
        except OSError:
            log_bytes = 0
        last_tx, last_pos = self._pipeline.last_tx, self._pipeline.last_position
        group_counts = list(c.group_counts)
        return {
            "commits": last_tx - c.first_tx, "events": last_pos - c.first_position,
            "batches": sum(group_counts), "failed": c.failed, "latency_sum": c.latency_sum,
            "latency_buckets": LATENCY_BUCKETS, "latency_counts": list(c.latency_counts),
            "group_buckets": GROUP_BUCKETS, "group_counts": group_counts,
            "snapshots": sn.taken, "snapshot_failures": sn.failures,
            "snapshot_seconds": sn.seconds_total, "snapshot_last_bytes": sn.last_bytes,
            # an upper bound after an indexed open (a stream written since open counts
            # in both), exact once db.streams() has folded the index
            "state_streams": len(state.entries) + (len(base) if base is not None else 0),
            "log_bytes": log_bytes, "epoch": self._epoch, "last_tx": self._pipeline.last_tx,
            "last_position": self._pipeline.last_position,
        }

    # -------------------------------------------------------------- services
    def service_port(self) -> ServicePort:
        """What a background service may use of this database (see engine.port)."""
        self._check_open()
        return ServicePort(path=self.path, db_id=self.db_id, epoch=self._epoch,
                           base_tx=self._reader.base_tx,
                           base_position=self._reader.base_position,
                           history=self._history, signal=self.commit_signal,
                           reader=self._reader, _log=self._log)

    def attach(self, name: str, service: Service) -> None:
        """Hand ``service`` to this handle: ``close()`` will close it before the log."""
        self._check_open()
        if name in self._services:
            raise EngineError(f"a {name} service is already attached to {self.path}")
        self._services[name] = service

    @property
    def backup(self) -> Any:
        """The continuous log backup (``engine.backup.uploader.LogBackup``) of a database
        opened with ``backup=``; :class:`EngineError` otherwise."""
        svc = self._services.get("backup")
        if svc is None:
            raise EngineError(f"{self.path} was opened without backup=: there is no log "
                              "backup to control. Open it with backup=URL.")
        return svc

    def backup_full(self, url: Any, **kwargs: Any) -> Any:
        """A full backup of this live database into ``url`` (``engine.backup.full.
        backup_full``: a fresh snapshot uploaded file by file, verified, manifest last);
        returns its ``BackupInfo`` (``.id .epoch .tx_id .bytes .files .retry_attempts``)."""
        self._check_open()
        if not _full_backup:
            raise EngineError("full backups are not loaded: import engine (or "
                              "engine.backup.full) first")
        return _full_backup[0](self, url, **kwargs)

    # ------------------------------------------------------------- snapshots
    def snapshot(self) -> SnapshotInfo:
        """Write a snapshot of the current state now; returns once it is durable."""
        self._check_open()
        self._pipeline.check_reentry("db.snapshot()")
        return self._snapshots.take()

    @property
    def last_snapshot_error(self) -> BaseException | None:
        """The last background snapshot's failure (None after a success or if none ran)."""
        return self._snapshots.last_error

    # --------------------------------------------------------------- closing
    def _check_open(self) -> None:
        if self._closed:
            raise DatabaseClosedError(f"database {self.path} is closed; open it again to use it")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Wait for in-flight commits, stop background work, release the directory.

        Interrupted (a signal), the handle is closed all the same; calling ``close()``
        again finishes what the interrupt cut short (every step is idempotent).
        """
        self._pipeline.check_reentry("db.close()")
        if self._closed and not self._close_unfinished:
            return
        self._closed = True
        self._close_unfinished = True  # until the last step: a later close() resumes
        try:
            self._pipeline.close()
            for name, svc in reversed(list(self._services.items())):
                try:
                    svc.close()  # a backup flushes what is committed (bounded) and stops
                except Exception as exc:  # close the rest regardless; the service logged it
                    log.error("closing the %s service of %s failed: %s", name, self.path, exc)
        finally:  # even an interrupt must not leave the log open and the directory locked
            self.commit_signal.close()
            self._snapshots.close()
            self._log.close()
            if self._owns_lock:
                self._lock.release()
            self._close_unfinished = False

    def __enter__(self) -> Database:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"epoch {self._epoch}, tx {self._pipeline.last_tx}"
        return f"<engine.Database {self.path} ({state})>"


def _not_a_name(stream: object) -> InvalidEventError:
    return InvalidEventError(f"a stream name is a str, got {type(stream).__name__} "
                             f"({stream!r:.40})")


def database_directory(path: str | os.PathLike[str], create: bool) -> str:
    """The absolute database directory, created if allowed and missing."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise OptionsError(f"the database path is a str or os.PathLike, not "
                           f"{type(path).__name__}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if "\0" in path:
        raise OptionsError(f"the database path {path!r} contains a NUL byte; give a "
                           "directory path without one")
    if not path:
        raise OptionsError("the database path is empty; give a directory path")
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise OptionsError(f"{path} exists and is not a directory; give a directory path")
    if not create and not (os.path.isdir(path) and layout.holds_database(path)):
        # Checked before the lock is taken: a refused open leaves no LOCK behind.
        raise EngineError(f"no database at {path} (create=False)")
    if not os.path.isdir(path):
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, f"cannot create {path}: {exc}", directory=path,
                                writing=path, consequence="nothing was opened") from exc
    return path
