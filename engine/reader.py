"""``engine.open(path, readonly=True)``: a reader beside the writer, in another process.

One process owns a database directory (``DIR/LOCK``); any number of others may read
it at the same time through a :class:`Reader`. A reader never takes the lock, never
writes a byte under ``DIR`` (LMDB's ``lock.mdb`` reader table aside: its slot is what
stops the writer from reusing pages the reader still sees), and refuses writes with
:class:`~engine.errors.ReadOnlyError`.

What it sees:

* ``read_log``, ``read_events`` and ``subscribe`` read the log itself, so they see
  every transaction the writer has committed when the call is made (a subscription
  keeps following: the writer's commits wake it through :mod:`engine.watch`);
* ``read_stream`` catches up first (it follows the stream's chain from the state);
* ``get``, ``version`` and ``streams`` answer from the reader's own in-memory state,
  which is the state after ``position``: loaded at open (newest snapshot plus the
  log after it, as the writer does) and brought up to the writer's last commit by
  :meth:`Reader.refresh`, which replays only the records committed since.

A recovery or restore that renames a new log into place (a new epoch) makes the
reader stale: its calls raise :class:`~engine.errors.StaleReaderError` and its
subscriptions end; open it again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, NoReturn

from . import layout
from .errors import (
    DatabaseClosedError,
    EngineError,
    InvalidEventError,
    ReadOnlyError,
    StaleReaderError,
    StorageError,
)
from .history import History, type_set
from .loader import load
from .log import LogInfo, LogStore
from .logreader import Continuity, LogReader
from .model import EpochRecord, Event, Position, Reducer, Transaction
from .notify import CommitPoint, CommitSignal
from .ops.plan import plan_open
from .state import TRACK_PREFIX, State, tracking_key
from .subscription import Subscription


class _View:
    """What the reader's history reads up to: the log's end as last observed (newer
    than the state between refreshes). Fields written under ``Reader._lock``."""

    def __init__(self, state: State, last_tx: int, last_position: int) -> None:
        self.state = state
        self.last_tx = last_tx
        self.last_position = last_position
        self.closed = False


class Reader:
    """A read-only handle on a database another process may be writing."""

    def __init__(self, path: str, *, reducer: Reducer | None = None,
                 map_size: int | None = None) -> None:
        self.path = path
        if not layout.holds_database(path):
            raise EngineError(f"no database at {path} (readonly=True opens only an existing "
                              "one)")
        plan = plan_open(path, create=False, shared=True,  # changes nothing
                         indexed=reducer is None)
        kwargs: dict[str, Any] = {"readonly": True, "shared": True}
        if map_size:
            kwargs["map_size"] = map_size
        data_file = layout.log_data_file(layout.log_dir(path))
        log = LogStore(layout.log_dir(path), **kwargs)
        try:
            try:
                self._inode = os.stat(data_file).st_ino  # a new log (recovery): a new file
            except OSError as exc:
                raise StorageError(f"cannot read {data_file}: {exc}. Check the directory "
                                   "and its permissions") from exc
            loaded = load(plan, log, reducer, path)
        except BaseException:
            log.close()
            raise
        self.open_warnings: list[str] = list(plan.warnings)
        self.db_id: str = loaded.db_id
        self._data_file = data_file
        self._log = log  # closed by close()
        self._epoch = loaded.epoch
        self._history: tuple[EpochRecord, ...] = loaded.history
        self._state = loaded.state
        # Guards _state_tx/_state_position (with the replay into _state), the view's
        # end, the signal's publication and _stale: refresh and observe run in the
        # caller's threads and in the watcher's.
        self._lock = threading.Lock()
        self._state_tx = loaded.last_tx
        self._state_position = loaded.last_position
        self._view = _View(loaded.state, loaded.last_tx, loaded.last_position)
        self._reader = LogReader(log, epoch=loaded.epoch, base_tx=loaded.base_tx,
                                 base_position=loaded.base_position, where=path,
                                 history=loaded.history)
        self._reads = History(log, self._reader, self._view, loaded.history)
        self.commit_signal = CommitSignal(
            CommitPoint(loaded.epoch, loaded.last_tx, loaded.last_position))
        self._watcher: Any = None  # a LogWatcher, started by the first subscribe()
        self._stale = False
        self._closed = False

    # ------------------------------------------------------------- following
    def _check(self) -> None:
        if self._closed:
            raise DatabaseClosedError(f"database {self.path} is closed; open it again to use it")
        if self._stale:
            raise self._stale_error()

    def _stale_error(self) -> StaleReaderError:
        return StaleReaderError(
            f"the log of {self.path} was replaced after this read-only handle opened (a "
            "recovery or restore started a new epoch); open the database again")

    def _observe(self) -> int | None:
        """Learn how far the writer has committed (the log's newest record) and wake
        this reader's subscriptions; notice a replaced log. Returns the last tx known
        committed, or None once there is nothing left to follow (closed, or the log
        was replaced: stale), which ends the watcher (engine.watch)."""
        try:
            inode = os.stat(self._data_file).st_ino
        except OSError:
            inode = None
        with self._lock:
            if self._closed or self._stale:
                return None
            if inode != self._inode:
                self._stale = True
                self.commit_signal.close()  # ends the subscriptions
                return None
            point = self._log.last_point()
            if point is not None and point[0] > self._view.last_tx:
                self._view.last_tx, self._view.last_position = point
                self.commit_signal.publish(CommitPoint(self._epoch, *point))
            return self._view.last_tx

    def refresh(self) -> Position:
        """Catch the state (``get``/``version``/``streams``) up with every transaction
        the writer has committed; returns the new :attr:`position`."""
        self._check()
        self._observe()
        self._check()
        with self._lock:
            cont = Continuity(self._state_tx, self._state_position)
            for cols in self._reader.scan(self._state_tx + 1, cont=cont):
                self._state.replay(cols)  # one dict update per record: no torn reads
                self._state_tx = cols.tx_id
                self._state_position = cols.first_position + len(cols.streams) - 1
            return Position(self._epoch, self._state_tx)

    # --------------------------------------------------------------- reading
    @property
    def readonly(self) -> bool:
        return True

    @property
    def position(self) -> Position:
        """``(epoch, tx_id)`` of the last transaction in the state (see refresh())."""
        return Position(self._epoch, self._state_tx)

    @property
    def last_position(self) -> int:
        """The position of the last event in the state (see refresh())."""
        return self._state_position

    @property
    def epoch_history(self) -> tuple[EpochRecord, ...]:
        return self._history

    def get(self, stream: str) -> bytes | None:
        """The stream's value in the state as of :attr:`position`."""
        self._check()
        if type(stream) is not str:
            raise _not_a_name(stream)
        e = self._state.lookup(stream)
        return None if e is None or stream[0] == TRACK_PREFIX else e[1]

    def version(self, stream: str) -> int:
        """The stream's version in the state as of :attr:`position`."""
        self._check()
        if type(stream) is not str:
            raise _not_a_name(stream)
        e = self._state.lookup(stream)
        return 0 if e is None or stream[0] == TRACK_PREFIX else e[0]

    def tracked(self, name: str) -> int | None:
        """The last position tracked under ``name`` as of :attr:`position`."""
        self._check()
        if type(name) is not str:
            raise InvalidEventError(f"a tracking name is a str, got {type(name).__name__}")
        e = self._state.lookup(tracking_key(name))
        return None if e is None else e[0]

    def streams(self) -> Iterator[str]:
        self._check()
        with self._lock:
            self._state.materialize(threading.Lock())  # replays hold _lock, not this one
            return iter([s for s in self._state.entries if s[:1] != TRACK_PREFIX])

    def read_log(self, from_tx: int = 1, to_tx: int | None = None) -> Iterator[Transaction]:
        """Every committed transaction ``from_tx..to_tx``, up to the writer's last."""
        self._check()
        self._observe()
        return self._reads.read_log(from_tx, to_tx)

    def read_events(self, from_position: int = 1, to_position: int | None = None, *,
                    types: Iterable[str] | None = None,
                    limit: int | None = None) -> Iterator[Event]:
        """Committed events by position, up to the writer's last commit."""
        self._check()
        self._observe()
        return self._reads.read_events(from_position, to_position, types=types, limit=limit)

    def read_stream(self, stream: str, from_version: int = 1, to_version: int | None = None,
                    *, reverse: bool = False, limit: int | None = None) -> Iterator[Event]:
        """The stream's events ``from_version..to_version`` as ``Database.read_stream``
        gives them (catches the state up first)."""
        self.refresh()
        return self._reads.read_stream(stream, from_version, to_version, reverse=reverse,
                                       limit=limit)

    def subscribe(self, after_position: int = 0, *,
                  types: Iterable[str] | None = None) -> Subscription:
        """Events after ``after_position``, then each commit of the writer as it lands
        (woken through inotify on the log file, or by polling it while the writer
        is busy: see engine.watch)."""
        self._check()
        wanted = type_set(types)
        from .watch import LogWatcher  # inotify only for handles that follow the writer

        with self._lock:
            if self._watcher is None:
                self._watcher = LogWatcher(self._data_file, self._observe, self.path)
        self._observe()
        reads = self._reads

        def read(a: int, b: int, t: frozenset[str] | None, limit: int) -> Iterator[Event]:
            return reads.read_events(a, b, types=t, limit=limit)

        return Subscription(read, self.commit_signal, after_position, wanted)

    def log_info(self) -> LogInfo:
        self._check()
        return self._log.info()

    # ------------------------------------------------------- writes: refused
    def _refuse(self, what: str) -> NoReturn:
        self._check()
        raise ReadOnlyError(f"{what} on {self.path}: this handle was opened with "
                            "readonly=True. Writes go through the process that owns the "
                            "directory (engine.open without readonly).")

    def append(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("append")

    def transaction(self) -> NoReturn:
        self._refuse("transaction")

    def snapshot(self) -> NoReturn:
        self._refuse("snapshot")

    def backup_full(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("backup_full")

    # --------------------------------------------------------------- closing
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop following, end the subscriptions, close the log (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._view.closed = True
            watcher, self._watcher = self._watcher, None
            self.commit_signal.close()
        if watcher is not None:
            watcher.close()
        self._log.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"read-only, at {self.position}"
        return f"<engine.Reader {self.path} ({state})>"


def _not_a_name(stream: object) -> EngineError:
    return InvalidEventError(f"a stream name is a str, got {type(stream).__name__} "
                             f"({stream!r:.40})")
