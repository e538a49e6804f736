"""Reading committed history from the log: ``read_log`` and ``read_stream``.

Every record passes the :class:`~engine.logreader.LogReader` checks. History before
the log's base (lost in a log-loss recovery) raises :class:`HistoryLostError` naming
the range; it is never silently skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from .errors import CorruptLogError, DatabaseClosedError, HistoryLostError, InvalidEventError
from .formats import U64_MAX
from .log import LogStore
from .logreader import LogReader
from .model import EpochRecord, Event, Transaction
from .native import TxColumns
from .state import State


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
                raise CorruptLogError(
                    f"tx {tx_id} is committed but missing from the log of "
                    f"{self._reader.where}. Run `engine-admin verify {self._reader.where}` to "
                    "see every damaged record.")
            cols = self._reader.decode(tx_id, rec)
            yield Transaction(tx_id, cols.epoch, cols.ts_ns / 1e9, events_of(cols))

    def read_stream(self, stream: str, from_version: int = 1) -> Iterator[Event]:
        """The stream's events from ``from_version`` on, oldest first.

        Follows the stream's chain through the log (newest tx back via each event's
        prev_tx), so it reads only the transactions that hold the stream.
        """
        if type(from_version) is not int or from_version < 1:
            raise InvalidEventError(f"from_version must be an int >= 1, got {from_version!r}")
        e = self._committed.state.lookup(stream) if isinstance(stream, str) else None
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
