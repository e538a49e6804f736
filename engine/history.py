"""Reading committed history from the log: ``read_log``, ``read_events`` and ``read_stream``.

Every record passes the :class:`~engine.logreader.LogReader` checks. History before
the log's base (lost in a log-loss recovery) raises :class:`HistoryLostError` naming
the range; it is never silently skipped.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from itertools import islice
from operator import lt
from typing import Protocol

from .errors import CorruptLogError, DatabaseClosedError, HistoryLostError, InvalidEventError
from .formats import U64_MAX
from .log import LogStore
from .logreader import LogReader
from .model import EpochRecord, Event, Transaction
from .native import StreamFinder, TxColumns, position_hint
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

    # ----------------------------------------------------------- by stream
    def read_stream(self, stream: str, from_version: int = 1, to_version: int | None = None,
                    *, reverse: bool = False, limit: int | None = None) -> Iterator[Event]:
        """The stream's events ``from_version..to_version`` (inclusive), oldest first
        (newest first with ``reverse``), at most ``limit`` of them.

        Follows the stream's chain through the log (its newest record back via each
        record's prev_tx), reading only the records that hold the stream, and in C
        (:class:`~engine.native.StreamFinder`) makes nothing for the other streams'
        events. The chain runs newest to oldest, so ``reverse`` streams: it yields a
        record's events as soon as it has read the record (``limit=1`` reads one
        record). Oldest first walks back to ``from_version`` before it yields. The
        arguments are checked here; the log is read as the iterator is consumed.
        """
        if not isinstance(stream, str):
            raise InvalidEventError(f"a stream name is a str, got {type(stream).__name__} "
                                    f"({stream!r:.40})")
        if TRACK_PREFIX in stream:
            raise InvalidEventError(f"stream {stream[:40]!r} contains U+0001, which no stream "
                                    "name holds (the engine reserves it for tracking)")
        bad_to = to_version is not None and (type(to_version) is not int
                                             or not 0 <= to_version <= U64_MAX)
        if type(from_version) is not int or not 1 <= from_version <= U64_MAX or bad_to:
            raise InvalidEventError(
                "from_version must be an int in 1..2**64-1 and to_version an int in "
                f"0..2**64-1 or None; got {from_version!r}, {to_version!r}")
        if type(reverse) is not bool:
            raise InvalidEventError(f"reverse must be True or False, got {reverse!r}")
        if limit is not None and (type(limit) is not int or limit < 0):
            raise InvalidEventError(f"limit must be an int >= 0 or None, got {limit!r}")
        e = self._committed.state.lookup(stream)
        if e is None or limit == 0:
            return iter(())
        # Versions strictly increase along the chain but may have gaps (caller-chosen
        # versions), so a limit counts events, not versions: it cuts the iterator.
        # The walk itself runs from the newest record down to the one holding lo
        # either way; reverse (newest first) reads only as far as it is consumed.
        top, last_tx = e[0], e[2]
        lo, hi = from_version, top if to_version is None else min(to_version, top)
        if lo > hi:
            return iter(())
        if reverse:
            events = self._stream_newest_first(stream, top, last_tx, lo, hi, limit)
        else:
            events = self._stream_oldest_first(stream, top, last_tx, lo, hi)
        return events if limit is None else islice(events, limit)

    def _stream_newest_first(self, stream: str, top: int, last_tx: int, lo: int,
                             hi: int, limit: int | None = None) -> Iterator[Event]:
        for chunk in self._chain(stream, top, last_tx, lo, hi, 1, U64_MAX, U64_MAX,
                                 want=limit):
            for events, _ in chunk:
                yield from reversed(events or ())  # never None: no budget here

    def _stream_oldest_first(self, stream: str, top: int, last_tx: int, lo: int,
                             hi: int) -> Iterator[Event]:
        kept: list[list[Event]] = []  # the newest records' events, newest record first
        older = array("Q")  # then the tx ids of the records left to read again
        for chunk in self._chain(stream, top, last_tx, lo, hi, WALK_CHUNK, KEEP_EVENTS,
                                 KEEP_BYTES):
            for events, t in chunk:
                if events is None:
                    older.append(t)
                else:
                    kept.append(events)
        i = len(older)
        below = 0  # every version yielded so far is below the next record's
        while i:  # the oldest records first, read again in short read transactions
            self._check_open()
            batch: list[Event] = []
            finder = StreamFinder(stream, min(hi - lo + 1, 256))
            rec: memoryview | None = None
            with self._log.viewer() as get:
                try:
                    for t in reversed(older[max(0, i - WALK_CHUNK):i]):
                        rec = get(t)
                        if rec is None:
                            raise self._chain_missing(stream, t)
                        _, epoch, ts_ns, p0, hits = self._reader.find_stream(t, rec, finder)
                        got = _build(stream, rec, hits, lo, hi, p0, t, epoch, ts_ns)
                        if not got or got[0].version <= below:
                            raise CorruptLogError(f"tx {t} changed while stream {stream!r} was "
                                                  f"read from the log of {self._reader.where}")
                        below = got[-1].version
                        batch.extend(got)
                finally:
                    rec = None  # see _MAP_VIEWS
            i = max(0, i - WALK_CHUNK)
            yield from batch
        for events in reversed(kept):
            yield from events

    def _chain(self, stream: str, top: int, t: int, lo: int, hi: int, first_chunk: int,
               keep_events: int, keep_bytes: int, want: int | None = None
               ) -> Iterator[list[tuple[list[Event] | None, int]]]:
        """The records of ``stream``'s chain that hold versions ``lo..hi``, newest
        first: lists of ``(events in lo..hi oldest first, tx_id)``, one list per read
        transaction (``first_chunk`` records, then four times more up to WALK_CHUNK);
        no transaction stays open while the caller holds a list.

        ``top`` is the stream's newest version, held by tx ``t``. With ``want`` the walk
        ends once that many events were built (a newest-first read with a limit). Events are built
        while fewer than ``keep_events`` events and ``keep_bytes`` payload bytes were;
        past that a record is given as ``(None, tx_id)``. The chain is checked as it
        goes: each record continues the versions below the last (a broken chain, a
        missing record or one without the stream raise CorruptLogError), and a chain
        that reaches the log's base raises HistoryLostError.
        """
        finder = StreamFinder(stream, min(top, 256))  # a record holds <= top of its events
        find = self._reader.find_stream
        base = self._reader.base_tx
        expect = top  # the head record's newest version; below it, a ceiling (exclusive)
        head = True
        size = first_chunk
        events_left, bytes_left = keep_events, keep_bytes
        done = False
        rec: memoryview | None = None
        while not done:
            self._check_open()
            out: list[tuple[list[Event] | None, int]] = []
            failure: CorruptLogError | HistoryLostError | None = None
            with self._log.viewer() as get:  # closed before the caller sees the chunk
                try:
                    for _ in range(size):
                        if t <= base:
                            top_lost = expect if head else expect - 1
                            raise self.lost(f"stream {stream!r} versions {lo}..{top_lost}")
                        rec = get(t)
                        if rec is None:
                            raise self._chain_missing(stream, t)
                        _, epoch, ts_ns, p0, hits = find(t, rec, finder)
                        if not hits:
                            raise CorruptLogError(f"tx {t} holds no event of stream {stream!r} "
                                                  "though the stream's chain points at it")
                        first, prev = hits[1], hits[2]
                        # The chain's versions strictly increase (gaps allowed): the head
                        # record ends at the stream's version, each older record below the
                        # first version of the one after it, and a record's own versions
                        # increase.
                        vs = hits[1::_HIT]
                        if ((hits[-6] != expect) if head else (hits[-6] >= expect)) or not all(
                                map(lt, vs, islice(vs, 1, None))):  # C-level: no frame each
                            expected = f"{expect}" if head else f"versions below {expect}"
                            raise CorruptLogError(
                                f"stream {stream!r}'s chain is broken at tx {t}: it holds versions "
                                f"{first}..{hits[-6]}, the chain expects {expected} there; run "
                                f"`engine-admin verify {self._reader.where}`")
                        head = False
                        if first <= hi and hits[-6] >= lo:  # it holds one in lo..hi
                            if events_left <= 0 or bytes_left <= 0:  # past the budget
                                out.append((None, t))
                            elif len(hits) == _HIT:  # one event, in lo..hi: inline
                                to, do = hits[3], hits[5]
                                data = bytes(rec[do : do + hits[6]])
                                out.append(([_new_event(Event, (
                                    stream, first, str(rec[to : to + hits[4]], "utf-8"), data,
                                    p0 + hits[0], t, epoch, ts_ns / 1e9))], t))
                                events_left -= 1
                                bytes_left -= len(data)
                            else:
                                events = _build(stream, rec, hits, lo, hi, p0, t, epoch, ts_ns)
                                events_left -= len(events)
                                for ev in events:
                                    bytes_left -= len(ev[3])
                                out.append((events, t))
                        if first <= lo or prev == 0 or (
                                want is not None and keep_events - events_left >= want):
                            # the walk reached lo, or the stream's first event (its version
                            # may be above 1: caller-chosen), or has what was asked
                            done = True
                            break
                        if not 0 < prev < t:
                            raise CorruptLogError(
                                f"stream {stream!r}'s chain is broken at tx {t}: version {first} "
                                f"points back at tx {prev}; run `engine-admin verify "
                                f"{self._reader.where}`")
                        expect = first
                        t = prev
                except (CorruptLogError, HistoryLostError) as exc:
                    failure = exc  # raised once the records before it are handed out
                finally:
                    rec = None  # see _MAP_VIEWS
            if out:
                yield out
            if failure is not None:
                raise failure
            size = min(size * 4, WALK_CHUNK)

    def _chain_missing(self, stream: str, t: int) -> CorruptLogError:
        return CorruptLogError(f"stream {stream!r} refers to tx {t}, which is missing from the "
                               f"log of {self._reader.where}")


KEEP_EVENTS = 4096  # oldest-first reads keep the events of the newest records of the walk
KEEP_BYTES = 1 << 20  # (up to these sizes); older records are read again when yielded
WALK_CHUNK = 1024  # records of a stream's chain read in one read transaction, at most
_HIT = 7  # ints per event in StreamFinder.find's hits
# _MAP_VIEWS: records are read as memoryviews into LMDB's map (no copy), valid only in
# their read transaction. Releasing one after its transaction ended crashes the process
# (seen: a traceback kept by a caller, freed after close), so no frame may hold one past
# the transaction: the walks clear ``rec`` when their transaction closes, and the
# functions they call drop it before they raise.
_new_event = tuple.__new__  # Event(...) without the NamedTuple's Python-level __new__


def _build(stream: str, rec: memoryview, hits: list[int], lo: int, hi: int, p0: int,
           tx_id: int, epoch: int, ts_ns: int) -> list[Event]:
    """The events of ``hits`` (StreamFinder.find; versions increasing, as _chain
    checked, with gaps allowed) with versions ``lo..hi``, their type and data copied
    out of ``rec`` (C checked the record, UTF-8 included)."""
    vs = hits[1::_HIT]
    a = bisect_left(vs, lo) * _HIT
    b = bisect_right(vs, hi) * _HIT
    ts = ts_ns / 1e9
    if b - a <= 2 * _HIT:  # a few events: slice the view (no copy of the record)
        out: list[Event] = []
        for j in range(a, b, _HIT):
            to, do = hits[j + 3], hits[j + 5]
            out.append(_new_event(Event, (
                stream, hits[j + 1], str(rec[to : to + hits[j + 4]], "utf-8"),
                bytes(rec[do : do + hits[j + 6]]), p0 + hits[j], tx_id, epoch, ts)))
        return out
    whole = bytes(rec)  # many: one copy, then each slice is one bytes object
    return [_new_event(Event, (stream, v, whole[to : to + tl].decode(), whole[do : do + dl],
                               p0 + i, tx_id, epoch, ts))
            for i, v, to, tl, do, dl in zip(hits[a:b:_HIT], hits[a + 1 : b : _HIT],
                                            hits[a + 3 : b : _HIT], hits[a + 4 : b : _HIT],
                                            hits[a + 5 : b : _HIT], hits[a + 6 : b : _HIT],
                                            strict=True)]


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
