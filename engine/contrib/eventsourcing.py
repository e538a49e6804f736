"""The engine as a persistence module for the ``eventsourcing`` library (9.x).

Configure an application with::

    PERSISTENCE_MODULE=engine.contrib.eventsourcing
    ENGINE_PATH=/var/lib/app          # a directory (created if missing)
    ENGINE_SYNC=commit                # optional: commit (default), group, data or none
    ORIGINATOR_ID_TYPE=uuid           # optional: uuid (default) or text

Like every eventsourcing setting, each may be prefixed with the application's name
(``BANKACCOUNTS_ENGINE_PATH``).

Layout. Every event of an engine database takes a global, gap-free position, and
those positions are the application's notification ids; so each purpose gets its own
database, and snapshots never consume notification ids. As eventsourcing's
PostgreSQL module names its tables, the databases are named after the application
(``<prefix>`` is the application's name in lower case, ``stored`` without one)::

    ENGINE_PATH/<prefix>_events/      application, process and tracking recorders, and
                                      aggregate_recorder("events"): the events and
                                      the tracking entries (which take no position)
    ENGINE_PATH/<prefix>_snapshots/   aggregate_recorder("snapshots")
    ENGINE_PATH/<prefix>_<purpose>/   any other aggregate_recorder(purpose)

so the applications of a system may share one ``ENGINE_PATH``.

Mapping. An aggregate is a stream (a UUID's 32 hex digits, or the text id), an event
type is the event's topic, the data is the stored state. eventsourcing versions may
be 0, engine versions start at 1: the engine version is ``originator_version + 1``.
The engine refuses a version not greater than the stream's last one at commit, so
``(originator_id, originator_version)`` is unique (:class:`IntegrityError`), and so is
a version below the last one of its aggregate (a gap cannot be filled later, which
eventsourcing never does). Engine errors become eventsourcing's
(:data:`ERROR_TABLE`).

One process may open a directory once: the databases are shared by every factory
(and recorder) of the process that names them, counted, and closed when the last
factory closes (``Application.close()`` closes its factory) or its recorders are gone.

This module needs ``eventsourcing`` (``pip install 'eventsourcing>=9.5,<10'``);
``import engine`` never imports it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, Literal, TypeVar, cast
from uuid import UUID

import engine

try:
    from eventsourcing.persistence import (
        AggregateRecorder,
        ApplicationRecorder,
        DatabaseError,
        DataError,
        InfrastructureFactory,
        IntegrityError,
        InterfaceError,
        InternalError,
        Notification,
        OperationalError,
        PersistenceError,
        ProcessRecorder,
        ProgrammingError,
        Recorder,
        StoredEvent,
        Subscription,
        Tracking,
        TrackingRecorder,
        WaitInterruptedError,
    )
    from eventsourcing.utils import Environment, EnvType, resolve_topic
except ImportError as _exc:  # pragma: no cover - the test extras install it
    raise ImportError(
        "engine.contrib.eventsourcing needs the eventsourcing package (9.x): "
        "pip install 'eventsourcing>=9.5,<10'") from _exc

OriginatorIdType = Literal["uuid", "text"]
SYNC_MODES = ("commit", "group", "data", "none")

# ------------------------------------------------------------------------- errors

#: Engine error -> eventsourcing error, first match wins (py-lmdb's table, reversed).
ERROR_TABLE: tuple[tuple[type[engine.EngineError], type[PersistenceError]], ...] = (
    # a version or tracked position already recorded (VersionConflictError is one)
    (engine.ConcurrencyError, IntegrityError),
    # bad input: an id, topic or tracking name the engine cannot store, state not bytes
    (engine.InvalidEventError, DataError),
    (engine.DatabaseClosedError, InterfaceError),
    # the disk, the directory lock, the files on disk: not the caller's doing
    (engine.StorageError, OperationalError),
    (engine.DatabaseLockedError, OperationalError),
    (engine.RecoveryRequired, OperationalError),
    (engine.HistoryLostError, OperationalError),
    (engine.CorruptLogError, OperationalError),
    (engine.CorruptSnapshotError, OperationalError),
    (engine.DatabaseMismatchError, OperationalError),
    (engine.ReducerError, InternalError),
)


def translate_error(exc: engine.EngineError) -> PersistenceError:
    """The eventsourcing error for an engine error (raise it ``from exc``)."""
    for engine_cls, es_cls in ERROR_TABLE:
        if isinstance(exc, engine_cls):
            return es_cls(str(exc))
    return DatabaseError(str(exc))


# ------------------------------------------------------------ shared databases


class _Entry:
    """One open database and how many leases use it."""

    __slots__ = ("db", "users")

    def __init__(self, db: engine.Database) -> None:
        self.db = db
        self.users = 1


class _Registry:
    """The engine databases this module has open, by directory, with their users.

    The lock is reentrant because a lease dropped in a garbage cycle is released by its
    finalizer wherever the collector runs, which may be inside :meth:`acquire` on the
    same thread; counts are mutated in place, so such a release is never lost.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()  # guards _open and the entries' counts
        self._open: dict[str, _Entry] = {}

    def acquire(self, path: str, sync: str) -> engine.Database:
        """The open database at ``path``, opened on first use; counts one more user."""
        with self._lock:
            entry = self._open.get(path)
            if entry is not None and not entry.db.closed:
                if entry.db.sync != sync:
                    raise OperationalError(
                        f"{path} is already open in this process with ENGINE_SYNC="
                        f"{entry.db.sync}, not {sync}: give every application of one "
                        "ENGINE_PATH the same ENGINE_SYNC")
                entry.users += 1
                if not entry.db.closed:
                    return entry.db
                # a finalizer released its last user meanwhile: open it again
            try:
                db = engine.open(path, sync=sync)
            except engine.EngineError as exc:
                raise translate_error(exc) from exc
            self._open[path] = _Entry(db)
            return db

    def release(self, path: str, db: engine.Database) -> None:
        """One user fewer of ``db``; the last one closes it (under the lock, so a new
        ``acquire`` of the directory never finds it still locked)."""
        with self._lock:
            entry = self._open.get(path)
            if entry is None or entry.db is not db:
                db.close()  # replaced after it was closed: nothing else counts it
                return
            entry.users -= 1
            if entry.users > 0:
                return
            del self._open[path]
            db.close()


_REGISTRY = _Registry()


class DatabaseLease:
    """One factory's use of a shared engine database (``.db``): released by the
    factory's ``close()``, or when the factory and its recorders are gone."""

    __slots__ = ("__weakref__", "_release", "db", "path")

    def __init__(self, path: str, sync: str) -> None:
        self.path = path
        self.db = _REGISTRY.acquire(path, sync)
        self._release = weakref.finalize(self, _REGISTRY.release, path, self.db)

    def release(self) -> None:
        """Give the database back (idempotent)."""
        self._release()


# ------------------------------------------------------------------- reading


def select_stream(db: engine.Database, stream: str, gt: int | None, lte: int | None,
                  desc: bool, limit: int | None) -> list[engine.Event]:
    """The events of ``stream`` whose eventsourcing version ``v`` (engine version
    ``v + 1``) has ``gt < v <= lte``, oldest first (newest first with ``desc``), at most
    ``limit`` (a negative limit is none, as SQLite's ``LIMIT -1``)."""
    lo = 1 if gt is None else max(gt + 2, 1)
    hi = None if lte is None else lte + 1
    if limit is not None and limit < 0:
        limit = None
    if limit == 0 or (hi is not None and hi < lo):
        return []
    # newest first with a limit reads only as many records as it yields (limit 1: one)
    return list(db.read_stream(stream, lo, hi, reverse=desc, limit=limit))


# --------------------------------------------------------------------- rows

_new = object.__new__


def _plain_dataclass(cls: type, names: tuple[str, ...]) -> bool:
    """Whether ``cls`` is a dataclass with exactly these fields, an instance
    ``__dict__`` and no ``__post_init__``: then an instance may be made by filling its
    ``__dict__`` (as eventsourcing's Mapper makes domain events), three times faster
    than its frozen ``__init__`` and equal to what that makes (tested)."""
    return (dataclasses.is_dataclass(cls)
            and tuple(f.name for f in dataclasses.fields(cls)) == names
            and "__slots__" not in vars(cls) and not hasattr(cls, "__post_init__"))


_FAST_ROWS = (
    _plain_dataclass(StoredEvent, ("originator_id", "originator_version", "topic", "state"))
    and _plain_dataclass(Notification, ("originator_id", "originator_version", "topic",
                                        "state", "id")))


def stored_event(originator_id: UUID | str, version: int, topic: str,
                 state: bytes) -> StoredEvent:
    """``StoredEvent(originator_id, version, topic, state)``."""
    if not _FAST_ROWS:
        return StoredEvent(originator_id, version, topic, state)
    o: StoredEvent = _new(StoredEvent)
    o.__dict__.update(originator_id=originator_id, originator_version=version,
                      topic=topic, state=state)
    return o


def notification(originator_id: UUID | str, version: int, topic: str, state: bytes,
                 id: int) -> Notification:
    """``Notification(originator_id, version, topic, state, id)``."""
    if not _FAST_ROWS:
        return Notification(originator_id, version, topic, state, id)
    o: Notification = _new(Notification)
    o.__dict__.update(originator_id=originator_id, originator_version=version,
                      topic=topic, state=state, id=id)
    return o


# ----------------------------------------------------------------- recorders


class EngineRecorder(Recorder):
    """Base of the recorders: one shared engine database and the id mapping."""

    def __init__(self, database: DatabaseLease, *,
                 originator_id_type: OriginatorIdType = "uuid") -> None:
        if originator_id_type not in ("uuid", "text"):
            raise ProgrammingError(f"originator_id_type is 'uuid' or 'text', not "
                                   f"{originator_id_type!r}")
        self.database = database  # held: the database stays open while this lives
        self.db = database.db
        self.originator_id_type = originator_id_type
        self._uuid_ids = originator_id_type == "uuid"

    def stream_name(self, originator_id: UUID | str) -> str:
        """The engine stream of an aggregate: a UUID's hex digits, or the text id."""
        if type(originator_id) is UUID:
            return originator_id.hex
        if isinstance(originator_id, UUID):
            return originator_id.hex
        if not isinstance(originator_id, str):
            raise DataError(f"originator_id must be a UUID or a str, got "
                            f"{type(originator_id).__name__}")
        if self._uuid_ids:
            try:
                return UUID(originator_id).hex
            except ValueError:
                raise DataError(f"originator_id {originator_id[:60]!r} is not a UUID "
                                "(ORIGINATOR_ID_TYPE is 'uuid'; set it to 'text' for "
                                "text ids)") from None
        return originator_id

    def originator_id(self, stream: str) -> UUID | str:
        """The aggregate id of an engine stream (inverse of :meth:`stream_name`)."""
        return UUID(hex=stream) if self._uuid_ids else stream

    def _insert(self, stored_events: Sequence[StoredEvent],
                tracking: Tracking | None) -> Sequence[int]:
        """Commit the events (and the tracking entry) in one transaction; their
        positions, which are their notification ids."""
        db = self.db
        stream_name = self.stream_name
        try:
            if len(stored_events) == 1 and tracking is None:  # one event: no builder
                s = stored_events[0]
                return (db.append_event(stream_name(s.originator_id), s.topic, s.state,
                                        version=_version(s)).position,)
            with db.transaction() as tx:
                append = tx.append
                for s in stored_events:
                    append(stream_name(s.originator_id), s.topic, s.state,
                           version=_version(s))
                if tracking is not None:
                    tx.track(tracking.application_name, tracking.notification_id)
        except engine.EngineError as exc:
            raise translate_error(exc) from exc
        return tx.positions


def _version(s: StoredEvent) -> int:
    v = s.originator_version
    if type(v) is not int:
        raise DataError(f"originator_version must be an int, got {type(v).__name__}")
    return v + 1


class EngineAggregateRecorder(EngineRecorder, AggregateRecorder):
    """Stored events of aggregates (the events, or snapshots) in one engine database."""

    def insert_events(self, stored_events: Sequence[StoredEvent],
                      **kwargs: Any) -> Sequence[int] | None:
        self._insert(stored_events, None)
        return None

    def select_events(self, originator_id: UUID | str, *, gt: int | None = None,
                      lte: int | None = None, desc: bool = False,
                      limit: int | None = None) -> Sequence[StoredEvent]:
        stream = self.stream_name(originator_id)
        try:
            events = select_stream(self.db, stream, gt, lte, desc, limit)
        except engine.EngineError as exc:
            raise translate_error(exc) from exc
        oid = originator_id if self._uuid_ids and isinstance(originator_id, UUID) else \
            self.originator_id(stream)
        return [stored_event(oid, e.version - 1, e.type, e.data) for e in events]


class EngineApplicationRecorder(EngineAggregateRecorder, ApplicationRecorder):
    """Aggregate events plus the application sequence: notification ids are the
    events' global positions in the database (gap-free, from 1)."""

    def insert_events(self, stored_events: Sequence[StoredEvent],
                      **kwargs: Any) -> Sequence[int] | None:
        return list(self._insert(stored_events, None))

    def select_notifications(self, start: int | None, limit: int, stop: int | None = None,
                             topics: Sequence[str] = (), *,
                             inclusive_of_start: bool = True) -> Sequence[Notification]:
        lo = 1 if start is None else start if inclusive_of_start else start + 1
        lo = max(lo, 1)
        if limit == 0 or (stop is not None and stop < lo):
            return []
        try:
            events = self.db.read_events(lo, stop, types=list(topics) or None,
                                         limit=None if limit < 0 else limit)
            if not self._uuid_ids:
                return [notification(e.stream, e.version - 1, e.type, e.data, e.position)
                        for e in events]
            ids: dict[str, UUID] = {}  # an aggregate's events share one UUID object
            out = []
            for e in events:
                oid = ids.get(e.stream)
                if oid is None:
                    oid = ids[e.stream] = UUID(hex=e.stream)
                out.append(notification(oid, e.version - 1, e.type, e.data, e.position))
            return out
        except engine.EngineError as exc:
            raise translate_error(exc) from exc

    def notification(self, e: engine.Event) -> Notification:
        """The notification of a committed event."""
        return notification(self.originator_id(e.stream), e.version - 1, e.type, e.data,
                            e.position)

    def max_notification_id(self) -> int | None:
        if self.db.closed:
            raise InterfaceError(f"the engine database {self.db.path} is closed")
        return self.db.last_position or None

    def subscribe(self, gt: int | None = None,
                  topics: Sequence[str] = ()) -> Subscription[ApplicationRecorder]:
        return EngineSubscription(self, gt=gt, topics=topics)


class EngineSubscription(Subscription[EngineApplicationRecorder]):
    """Notifications after ``gt`` (of ``topics``, if given): those recorded, then each
    new one as it commits, woken by the commit (``engine.Subscription``: no thread, no
    polling). Ends when stopped (from any thread) or when the database closes."""

    def __init__(self, recorder: EngineApplicationRecorder, gt: int | None = None,
                 topics: Sequence[str] = ()) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        try:
            self._events = recorder.db.subscribe(max(gt or 0, 0), types=list(topics) or None)
        except engine.EngineError as exc:
            raise translate_error(exc) from exc

    def stop(self) -> None:
        super().stop()
        self._events.stop()

    def __next__(self) -> Notification:
        if self._has_been_stopped:
            raise StopIteration
        try:
            e = self._events.next_event(None)
        except engine.EngineError as exc:
            raise translate_error(exc) from exc
        except IndexError:
            # engine.Subscription.stop() from another thread can empty its buffer
            # between next_event's check and its pop; that is a stop, not an error.
            if self._has_been_stopped:
                raise StopIteration from None
            raise
        if e is None or self._has_been_stopped:
            raise StopIteration
        self._last_notification_id = e.position
        return self._recorder.notification(e)


class EngineTrackingRecorder(EngineRecorder, TrackingRecorder):
    """Tracking entries (``tx.track``): the last notification id processed per upstream
    application; each must exceed the last (:class:`IntegrityError`)."""

    def insert_tracking(self, tracking: Tracking) -> None:
        try:
            with self.db.transaction() as tx:
                tx.track(tracking.application_name, tracking.notification_id)
        except engine.EngineError as exc:
            raise translate_error(exc) from exc

    def max_tracking_id(self, application_name: str) -> int | None:
        try:
            return self.db.tracked(application_name)
        except engine.EngineError as exc:
            raise translate_error(exc) from exc

    def wait(self, application_name: str, notification_id: int | None,
             timeout: float = 1.0, interrupt: threading.Event | None = None) -> None:
        """As eventsourcing's ``TrackingRecorder.wait`` (``TimeoutError`` after
        ``timeout``, ``WaitInterruptedError`` once ``interrupt`` is set), but woken by
        each commit (``db.commit_signal``) instead of polling with sleeps of 0.1-0.8 s.
        ``interrupt`` is looked at every 50 ms: a commit sets the event it wakes, so
        the caller's own is never handed to the signal."""
        signal = self.db.commit_signal
        deadline = time.monotonic() + timeout
        while True:
            seen = signal.current  # before the check: a commit after it ends the wait
            if self.has_tracking_id(application_name, notification_id):
                return
            if interrupt is not None and interrupt.is_set():
                raise WaitInterruptedError
            remaining = deadline - time.monotonic()
            if remaining < 0:
                raise TimeoutError(f"Timed out waiting for notification {notification_id} "
                                   f"from application '{application_name}' to be processed")
            signal.wait_for_tx(seen.tx_id + 1,
                               remaining if interrupt is None else min(remaining, 0.05))


class EngineProcessRecorder(EngineTrackingRecorder, EngineApplicationRecorder,
                            ProcessRecorder):
    """Events and their ``tracking`` entry in one transaction."""

    def insert_events(self, stored_events: Sequence[StoredEvent],
                      **kwargs: Any) -> Sequence[int] | None:
        return list(self._insert(stored_events, kwargs.get("tracking")))


# ------------------------------------------------------------------- factory

_DIR_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_R = TypeVar("_R", bound=EngineRecorder)


class EngineFactory(InfrastructureFactory[EngineTrackingRecorder]):
    """The infrastructure factory of ``PERSISTENCE_MODULE=engine.contrib.eventsourcing``.

    Reads ``ENGINE_PATH`` (required), ``ENGINE_SYNC`` and ``ORIGINATOR_ID_TYPE``; a
    missing or bad value raises ``OSError`` (``EnvironmentError``), as eventsourcing's
    own modules do. Databases open when the first recorder needs them.
    """

    ENGINE_PATH = "ENGINE_PATH"
    ENGINE_SYNC = "ENGINE_SYNC"
    ORIGINATOR_ID_TYPE = "ORIGINATOR_ID_TYPE"

    aggregate_recorder_class = EngineAggregateRecorder
    application_recorder_class = EngineApplicationRecorder
    tracking_recorder_class = EngineTrackingRecorder
    process_recorder_class = EngineProcessRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        path = self.env.get(self.ENGINE_PATH)
        if not path:
            raise OSError("engine database directory not found in environment with keys: "
                          f"{', '.join(self.env.create_keys(self.ENGINE_PATH))}")
        sync = (self.env.get(self.ENGINE_SYNC) or "commit").strip().lower()
        if sync not in SYNC_MODES:
            raise OSError(f"Invalid {self.ENGINE_SYNC} {sync!r}, must be one of "
                          f"{', '.join(SYNC_MODES)}")
        id_type = (self.env.get(self.ORIGINATOR_ID_TYPE) or "uuid").strip().lower()
        if id_type not in ("uuid", "text"):
            raise OSError(f"Invalid {self.ORIGINATOR_ID_TYPE} {id_type!r}, must be "
                          "'uuid' or 'text'")
        self.path = os.path.abspath(path)
        self.sync = sync
        self.originator_id_type = cast(OriginatorIdType, id_type)
        self.prefix = self.env.name.lower() or "stored"
        self._lock = threading.Lock()  # guards _leases
        self._leases: dict[str, DatabaseLease] = {}

    def database_path(self, purpose: str = "events") -> str:
        """The engine database directory of ``purpose`` (see the module docstring)."""
        name = f"{self.prefix}_{purpose}"
        if not _DIR_NAME.fullmatch(name):
            raise ProgrammingError(f"{name!r} (application name and purpose) is not a "
                                   "plain directory name: use letters, digits, _ . -")
        return os.path.join(self.path, name)

    def database(self, purpose: str = "events") -> DatabaseLease:
        """This factory's use of the database of ``purpose``, opened on first use."""
        path = self.database_path(purpose)
        with self._lock:
            lease = self._leases.get(purpose)
            if lease is None or lease.db.closed:
                lease = self._leases[purpose] = DatabaseLease(path, self.sync)
            return lease

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        return self.aggregate_recorder_class(
            self.database(purpose), originator_id_type=self.originator_id_type)

    def application_recorder(self) -> ApplicationRecorder:
        cls = self._recorder_class(self.APPLICATION_RECORDER_TOPIC,
                                   self.application_recorder_class)
        return cls(self.database(), originator_id_type=self.originator_id_type)

    def tracking_recorder(self, tracking_recorder_class: type[EngineTrackingRecorder] | None
                          = None) -> EngineTrackingRecorder:
        cls = tracking_recorder_class or self._recorder_class(
            self.TRACKING_RECORDER_TOPIC, self.tracking_recorder_class)
        if not issubclass(cls, EngineTrackingRecorder):
            raise ProgrammingError(f"{cls.__qualname__} is not an EngineTrackingRecorder")
        return cls(self.database(), originator_id_type=self.originator_id_type)

    def process_recorder(self) -> ProcessRecorder:
        cls = self._recorder_class(self.PROCESS_RECORDER_TOPIC, self.process_recorder_class)
        return cls(self.database(), originator_id_type=self.originator_id_type)

    def _recorder_class(self, topic_key: str, default: type[_R]) -> type[_R]:
        topic = self.env.get(topic_key)
        if not topic:
            return default
        cls = resolve_topic(topic)
        if not (isinstance(cls, type) and issubclass(cls, default)):
            raise ProgrammingError(f"{topic_key}={topic!r} is not a subclass of "
                                   f"{default.__qualname__}")
        return cls

    def close(self) -> None:
        """Release this factory's databases (each closes when its last user does)."""
        with self._lock:
            leases = list(self._leases.values())
            self._leases.clear()
        for lease in leases:
            lease.release()


__all__ = [
    "ERROR_TABLE",
    "DatabaseLease",
    "EngineAggregateRecorder",
    "EngineApplicationRecorder",
    "EngineFactory",
    "EngineProcessRecorder",
    "EngineRecorder",
    "EngineSubscription",
    "EngineTrackingRecorder",
    "select_stream",
    "translate_error",
]
