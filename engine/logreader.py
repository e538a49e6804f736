"""Reading log records with their checks written once.

Three checks hold for every record of a log (docs/FORMAT.md, "Log"): the record
decodes (its checksum and layout are valid), the tx id inside equals the key it is
stored under and its epoch is the log's, and the records continue gap-free: each
tx id is the previous one plus one and its first event position follows the
previous record's last. :class:`LogReader` applies them for every consumer: open
(the replay of the tail), ``read_log``/``read_stream``, ``engine-admin verify``,
and later backup and restore.

A problem goes to a *reporter*: :data:`RAISE` turns it into a
:class:`~engine.errors.CorruptLogError` (open and reads), a :class:`ProblemList`
collects it and lets the scan go on (verify).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

from .errors import CorruptLogError
from .model import EpochRecord
from .native import EventSlice, StreamFinder, TxColumns, decode_tx, select_events


class _Header(Protocol):
    @property
    def tx_id(self) -> int: ...
    @property
    def epoch(self) -> int: ...


_Rec = TypeVar("_Rec", bound=_Header)


class Reporter(Protocol):
    def __call__(self, tx_id: int, message: str) -> None: ...


class _Raise:
    """The reporter of open and reads: a problem is a :class:`CorruptLogError`."""

    def __call__(self, tx_id: int, message: str) -> None:
        raise CorruptLogError(message)


RAISE: Reporter = _Raise()
_MAX_EPOCH = 1 << 64


class ProblemList(list[str]):
    """The reporter of verify: collects every problem's message and lets the scan go on."""

    def __call__(self, tx_id: int, message: str) -> None:
        self.append(message)


class Continuity:
    """The gap-free check: tx ids and event positions continue from a known point.

    ``tx_id`` and ``position`` are the last accepted transaction and event position;
    ``position`` is None right after a record that could not be decoded (the next
    record's position is then taken as it is).
    """

    __slots__ = ("position", "tx_id")

    def __init__(self, tx_id: int, position: int | None) -> None:
        self.tx_id = tx_id
        self.position = position

    def skip(self, tx_id: int) -> None:
        """Resynchronise after the undecodable record ``tx_id``."""
        self.tx_id = tx_id
        self.position = None

    def follow(self, tx_id: int, first_position: int, count: int) -> str | None:
        """Accept the record if it continues; returns the problem otherwise (and resyncs)."""
        problem = None
        if tx_id != self.tx_id + 1:
            problem = f"log gap: expected tx {self.tx_id + 1}, found {tx_id}"
        elif self.position is not None and first_position != self.position + 1:
            problem = (f"tx {tx_id}: first position {first_position}, expected "
                       f"{self.position + 1}")
        self.tx_id = tx_id
        self.position = first_position + count - 1
        return problem


class RecordSource(Protocol):
    """What the reader needs of the log (``engine.log.LogStore``)."""

    def iter_range(self, from_tx: int, to_tx: int | None = None
                   ) -> Iterator[tuple[int, bytes]]: ...


class LogReader:
    """Checked access to the records of one log.

    ``epoch`` is the log's (newest) epoch; ``history`` its epoch history: a record
    carries the epoch whose range holds its tx (a log rebuilt from a backup holds the
    records of earlier epochs too; any other log holds only its own epoch's).
    ``base_tx``/``base_position`` precede the log's first record (0 for a database's
    first epoch). ``where`` names the database in messages.
    """

    def __init__(self, source: RecordSource, *, epoch: int, base_tx: int,
                 base_position: int, where: str,
                 history: Sequence[EpochRecord] = ()) -> None:
        self.source = source
        self.epoch = epoch
        self.base_tx = base_tx
        self.base_position = base_position
        self.where = where
        # (first_tx, epoch) of the history's epochs up to the log's, ascending.
        self._starts = sorted((h.first_tx, h.epoch) for h in history if h.epoch <= epoch)
        # Where the newest epoch's records begin, and that epoch: epoch_of without a
        # search for them (the per-record check of a stream's chain walk).
        newest = self._starts[-1] if self._starts else (base_tx + 1, epoch)
        self._newest = (max(newest[0], base_tx + 1), newest[1])

    def epoch_of(self, tx_id: int) -> int:
        """The epoch a record under ``tx_id`` must carry (0: no record may be there)."""
        if tx_id <= self.base_tx:
            return 0
        starts = self._starts
        if starts and tx_id >= starts[-1][0]:  # the newest epoch: most reads, no search
            return starts[-1][1]
        i = bisect_right(self._starts, (tx_id, _MAX_EPOCH)) - 1
        return self._starts[i][1] if i >= 0 else self.epoch

    def _damaged(self, tx_id: int, exc: CorruptLogError) -> str:
        return (f"log record for tx {tx_id} in {self.where} is corrupt: {exc}. "
                f"Run `engine-admin verify {self.where}` to see every damaged record.")

    def _misplaced(self, tx_id: int, got: _Header) -> str | None:
        if got.tx_id == tx_id and got.epoch == self.epoch_of(tx_id):
            return None
        return self._misplaced_ids(tx_id, got.tx_id, got.epoch)

    def _misplaced_ids(self, tx_id: int, got_tx: int, got_epoch: int) -> str:
        return (f"log record under key {tx_id} holds tx {got_tx} of epoch {got_epoch} "
                f"(expected tx {tx_id} of epoch {self.epoch_of(tx_id)}) in {self.where}.")

    def checked(self, tx_id: int, decode: Callable[[], _Rec]) -> _Rec:
        """``decode()`` of the record under ``tx_id``, checked against its key and epoch;
        raises :class:`CorruptLogError`."""
        try:
            got = decode()
        except CorruptLogError as exc:
            raise CorruptLogError(self._damaged(tx_id, exc), exc.code) from exc
        problem = self._misplaced(tx_id, got)
        if problem is not None:
            raise CorruptLogError(problem)
        return got

    def decode(self, tx_id: int, rec: bytes) -> TxColumns:
        """The whole record stored under ``tx_id``, checked (raises CorruptLogError)."""
        return self.checked(tx_id, lambda: decode_tx(rec))

    def find_stream(self, tx_id: int, rec: bytes | memoryview, finder: StreamFinder
                    ) -> tuple[int, int, int, int, list[int]]:
        """``finder.find(rec)`` of the record under ``tx_id`` (one stream's events),
        checked against its key and epoch like :meth:`checked`, without its closure
        (this runs once per record of a stream's chain)."""
        try:
            found = finder.find(rec)
        except CorruptLogError as exc:
            del rec  # a view into LMDB's map must not outlive its transaction in a traceback
            raise CorruptLogError(self._damaged(tx_id, exc), exc.code) from exc
        first, epoch = self._newest
        if found[0] != tx_id or found[1] != (epoch if tx_id >= first else self.epoch_of(tx_id)):
            del rec
            raise CorruptLogError(self._misplaced_ids(tx_id, found[0], found[1]))
        return found

    def select_events(self, tx_id: int, rec: bytes, lo: int, hi: int,
                      types: frozenset[str] | None) -> EventSlice:
        """The events ``lo..hi-1`` of the record under ``tx_id`` of the given types, checked."""
        return self.checked(tx_id, lambda: select_events(rec, lo, hi, types))

    def follow(self, cont: Continuity, tx_id: int, first_position: int, count: int,
               report: Reporter = RAISE) -> None:
        """Apply the gap-free check to one record that passed the other checks."""
        problem = cont.follow(tx_id, first_position, count)
        if problem is not None:
            report(tx_id, f"{problem} in {self.where}. Run `engine-admin verify "
                          f"{self.where}`.")

    def start(self) -> Continuity:
        """Continuity from the log's base: where its first record must continue."""
        return Continuity(self.base_tx, self.base_position)

    def scan(self, from_tx: int = 1, to_tx: int | None = None, *,
             cont: Continuity | None = None, report: Reporter = RAISE,
             on_record: Callable[[int], None] | None = None) -> Iterator[TxColumns]:
        """Records ``from_tx..to_tx`` decoded and checked, in order.

        With ``cont`` the gap-free check runs too. A record that fails a check is
        reported; if ``report`` returns, the scan goes on (resynchronised after it)
        and the bad record is not yielded. ``on_record(tx_id)`` sees every record read.
        """
        for tx_id, rec in self.source.iter_range(from_tx, to_tx):
            if on_record is not None:
                on_record(tx_id)
            try:
                cols = decode_tx(rec)
            except CorruptLogError as exc:
                report(tx_id, self._damaged(tx_id, exc))
                if cont is not None:
                    cont.skip(tx_id)
                continue
            problem = self._misplaced(tx_id, cols)
            if problem is not None:
                report(tx_id, problem)
                if cont is not None:
                    cont.tx_id, cont.position = tx_id, cols.first_position + len(cols.streams) - 1
                continue
            if cont is not None:
                self.follow(cont, tx_id, cols.first_position, len(cols.streams), report)
            yield cols
