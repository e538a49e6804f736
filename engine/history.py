"""Reading committed history from the log: ``read_log`` and ``read_stream``.

Every record passes the :class:`~engine.logreader.LogReader` checks. History before
the log's base (lost in a log-loss recovery) raises :class:`HistoryLostError` naming
the range; it is never silently skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from .errors import CorruptLogError, DatabaseClosedError, HistoryLostError, InvalidEventError
from .formats import U64_MAX
from .log import LogStore
from .logreader import LogReader
from .model import EpochRecord, Event, Transaction
from .native import TxColumns, position_hint
from .state import TRACK_PREFIX, State


def events_of(cols: TxColumns) -> tuple[Event, ...]:
    """The events of one decoded record."""
    ts = cols.ts_ns / 1e9
    return tuple(Event(s, v, t, d, cols.first_position + i, cols.tx_id, cols.epoch, ts)
                 for i, (s, t, v, d) in enumerate(zip(cols.streams, cols.types, cols.versions,
                                                      cols.datas, strict=True)))


class Committed(Protocol):
    """How far the database is committed, and whether it is still open
    (``engine.commit.CommitPipeline``)."""

    @property
    def state(self) -> State: ...
    @property
    def last_tx(self) -> int: ...
    @property
    def last_position(self) -> int: ...
    @property
    def closed(self) -> bool: ...


class History:
    """Reads of one open database's log, up to what ``committed`` says is committed.

    Holds no reference to the ``Database`` (no cycle: a closed handle is freed at once).
    """

    def __init__(self, log: LogStore, reader: LogReader, committed: Committed,
                 history: tuple[EpochRecord, ...]) -> None:
        self._log = log
        self._reader = reader
        self._committed = committed
        self._history = history

    def _check_open(self) -> None:
        if self._committed.closed:
            raise DatabaseClosedError(f"database {self._reader.where} is closed; open it "
                                      "again to use it")

    def lost(self, what: str) -> HistoryLostError:
        """The error for a read of history before the log's base."""
        base = self._reader.base_tx
        fork = self._history[-1] if self._history else None
        when = f" (epoch {fork.epoch} began at tx {fork.first_tx}: {fork.reason})" if fork else ""
        return HistoryLostError(
            f"{what}: transactions 1..{base} are not in this log; they were lost with "
            f"the previous epoch's log{when}. The state at tx {base} is intact; "
            "restore an older log or backup to read that history.")

    def _missing(self, tx_id: int) -> CorruptLogError:
        return CorruptLogError(
            f"tx {tx_id} is committed but missing from the log of {self._reader.where}. "
            f"Run `engine-admin verify {self._reader.where}` to see every damaged record.")

    def read_log(self, from_tx: int = 1, to_tx: int | None = None) -> Iterator[Transaction]:
        """Committed transactions ``from_tx..to_tx`` (inclusive) in order."""
        bad_to = to_tx is not None and (type(to_tx) is not int or not 0 <= to_tx <= U64_MAX)
        if type(from_tx) is not int or not 1 <= from_tx <= U64_MAX or bad_to:
            raise InvalidEventError("from_tx must be an int in 1..2**64-1 and to_tx an int in "
                                    f"0..2**64-1 or None; got {from_tx!r}, {to_tx!r}")
        if from_tx <= self._reader.base_tx:
            raise self.lost(f"read_log({from_tx}) asks for history before tx "
                            f"{self._reader.base_tx + 1}")
        return self._read_log(from_tx, to_tx)

    def _read_log(self, from_tx: int, to_tx: int | None) -> Iterator[Transaction]:
        last = self._committed.last_tx
        end = last if to_tx is None else min(to_tx, last)
        # Point reads, not a cursor walk: a damaged tree page is then an error, never an
        # LMDB abort, and a committed tx whose key is lost is found (engine.log.iter_exact).
        for tx_id, rec in self._log.iter_exact(from_tx, end):
            self._check_open()
            if rec is None:
                raise self._missing(tx_id)
            cols = self._reader.decode(tx_id, rec)
            yield Transaction(tx_id, cols.epoch, cols.ts_ns / 1e9, events_of(cols), cols.tracking)

    # ---------------------------------------------------------- by position
    def read_events(self, from_position: int = 1, to_position: int | None = None, *,
                    types: Iterable[str] | None = None,
                    limit: int | None = None) -> Iterator[Event]:
        """Committed events ``from_position..to_position`` (inclusive), oldest first,
        only those whose type is in ``types`` (if given), at most ``limit`` of them.

        Seeks the record holding ``from_position`` by binary search over the tx keys
        (O(log n) header reads, no decode), then reads forward; events of other types
        become no objects. Positions before the log's base raise HistoryLostError.
        """
        bad_to = to_position is not None and (type(to_position) is not int
                                              or not 0 <= to_position <= U64_MAX)
        if type(from_position) is not int or not 1 <= from_position <= U64_MAX or bad_to:
            raise InvalidEventError(
                "from_position must be an int in 1..2**64-1 and to_position an int in "
                f"0..2**64-1 or None; got {from_position!r}, {to_position!r}")
        if limit is not None and (type(limit) is not int or limit < 0):
            raise InvalidEventError(f"limit must be an int >= 0 or None, got {limit!r}")
        wanted = type_set(types)
        base_position = self._reader.base_position
        if from_position <= base_position:
            raise self.lost(f"read_events({from_position}) asks for events before position "
                            f"{base_position + 1}")
        return self._read_events(from_position, to_position, wanted, limit)

    def _read_events(self, from_position: int, to_position: int | None,
                     wanted: frozenset[str] | None, limit: int | None) -> Iterator[Event]:
        last_tx = self._committed.last_tx
        end = self._committed.last_position if to_position is None else \
            min(to_position, self._committed.last_position)
        if from_position > end or limit == 0:
            return
        tx = self._seek(from_position, last_tx)
        left = limit
        first_chunk = 4 if limit is not None and limit < 64 else 64
        # Point reads, as read_log: a damaged tree page is an error, never an LMDB abort.
        for tx_id, rec in self._log.iter_exact(tx, last_tx, first_chunk=first_chunk):
            self._check_open()
            if rec is None:
                raise self._missing(tx_id)
            hint_first, _ = position_hint(rec)
            lo = from_position - hint_first
            hi = end - hint_first + 1
            sel = self._reader.select_events(tx_id, rec, lo, hi, wanted)
            if sel.first_position != hint_first:  # pragma: no cover - the C check agrees
                raise CorruptLogError(f"tx {tx_id}'s header changed while it was read")
            ts = sel.ts_ns / 1e9
            p0 = sel.first_position
            for i, s, t, v, d in zip(sel.indexes, sel.streams, sel.types, sel.versions,
                                     sel.datas, strict=True):
                yield Event(s, v, t, d, p0 + i, tx_id, sel.epoch, ts)
                if left is not None:
                    left -= 1
                    if left == 0:
                        return
            if p0 + sel.event_count - 1 >= end:
                return

    def _seek(self, position: int, last_tx: int) -> int:
        """The tx whose record holds ``position`` (``base_position < position <= last
        committed position``), by binary search over the gap-free tx keys. A header
        that lies cannot make the read skip events: the record the search lands on is
        decoded with every check, and events before ``position`` are cut off by it."""
        base = self._reader.base_tx
        tx = max(self._log.find_position(position, base + 1, last_tx), base + 1)
        # The search trusted unchecked headers: a damaged one can send it past the
        # record that holds ``position``. Check the landing record (and step back while
        # it starts after ``position``: each step decodes a record with every check, so
        # the damaged one is met and raises) before reading forward from it.
        with self._log.getter() as get:
            while True:
                rec = get(tx)
                if rec is None:
                    raise self._missing(tx)
                first = self._reader.select_events(tx, rec, 0, 0, None).first_position
                if first <= position or tx <= base + 1:
                    return tx
                tx -= 1

    def read_stream(self, stream: str, from_version: int = 1) -> Iterator[Event]:
        """The stream's events from ``from_version`` on, oldest first.

        Follows the stream's chain through the log (newest tx back via each event's
        prev_tx), so it reads only the transactions that hold the stream.
        """
        if type(from_version) is not int or not 1 <= from_version <= U64_MAX:
            raise InvalidEventError(f"from_version must be an int in 1..2**64-1, got "
                                    f"{from_version!r}")
        if not isinstance(stream, str):
            raise InvalidEventError(f"a stream name is a str, got {type(stream).__name__} "
                                    f"({stream!r:.40})")
        if TRACK_PREFIX in stream:
            raise InvalidEventError(f"stream {stream[:40]!r} contains U+0001, which no stream "
                                    "name holds (the engine reserves it for tracking)")
        e = self._committed.state.lookup(stream)
        if e is None or from_version > e[0]:
            return iter(())
        chunks: list[list[Event]] = []
        oldest = e[0] + 1
        t = e[2]
        base = self._reader.base_tx
        with self._log.getter() as get:  # one read txn for the whole walk
            while t:
                if t <= base:
                    raise self.lost(f"stream {stream!r} versions {from_version}..{oldest - 1}")
                rec = get(t)
                if rec is None:
                    raise CorruptLogError(f"stream {stream!r} refers to tx {t}, which is "
                                          f"missing from the log of {self._reader.where}")
                sel = self._reader.select(t, rec, stream)
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


def type_set(types: Iterable[str] | None) -> frozenset[str] | None:
    """``types`` as a set of names (None: every type); a lone str is refused, since
    iterating it would filter by its characters."""
    if types is None:
        return None
    if isinstance(types, (str, bytes)):
        raise InvalidEventError(f"types is a collection of type names, not one "
                                f"{type(types).__name__}: give [{types!r}]")
    try:
        out = frozenset(types)
    except TypeError:
        raise InvalidEventError(f"types is a collection of type names, got "
                                f"{type(types).__name__}") from None
    bad = [t for t in out if type(t) is not str]
    if bad:
        raise InvalidEventError(f"types holds a {type(bad[0]).__name__}; type names are str")
    return out
