"""The newest committed log records, kept in memory (LogStore.keep_recent).

While a log backup runs, its uploader ships what was just committed. Reading that
back through LMDB costs a CPU-bound committer (py-lmdb releases the GIL around every
cursor step), and so does keeping one Python object per commit alive until it ships
(measured: single-event commits 10-15% slower, through the allocator and the cyclic
collector). So a small record is copied, as its commit returns, onto the end of a
large buffer (a *run*); a big one (BIG_RECORD and up) is kept as it is, as a run of
its own: copying it would cost more (a page-faulting copy of every byte under the
GIL) than its one object does. The uploader takes records as views into the runs
(``take``) and frames them in C without a join (``native.frame_records``).

Invariants (the owner serialises every call: LogStore._recent_lock):

- the runs hold consecutive tx ids: run k+1 starts where run k ends;
- record ``i`` of a run is tx ``run.first + i``, bytes ``buf[ends[i-1]:ends[i]]``
  (0 for ``ends[-1]`` when ``i`` is 0); its live records are ``lo..len(ends)-1``;
- a run is appended to only while open; once a view of it was handed out it is
  sealed and never changes again (a bytearray with a view cannot grow anyway); a
  big record's run is sealed from the start (its buffer is the committer's record,
  which nobody writes again);
- bytes past ``ends[-1]`` are an append cut short by an interrupt: cut off before the
  next one. Each step of an append changes one thing, so an interrupt anywhere leaves
  ids and bytes matched (at worst the byte count is off, never negative).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Sequence
from itertools import chain
from typing import TypeAlias

#: A run is closed once it holds this much (memory goes back run by run).
RUN_BYTES = 4 << 20
#: Records from this size on are kept as they are, not copied (see the module doc).
BIG_RECORD = 16 << 10
#: What one kept record costs beyond its bytes (its ``ends`` slot), for the bound.
ENTRY_OVERHEAD = 8
#: What a big record's own run costs beyond its bytes (the run object, its arrays).
BIG_OVERHEAD = 256

#: A piece of a sealed run that ``take`` hands out: the run's bytes, the end offsets of
#: the records in it and where the first starts (``records_of`` cuts it up).
Piece: TypeAlias = "tuple[bytes | bytearray, array[int], int]"


class _Run:
    __slots__ = ("buf", "ends", "first", "lo", "own", "sealed")

    def __init__(self, first: int, big: bytes | bytearray | None = None) -> None:
        self.first = first
        # the run's bytes: its own bytearray, or a big record kept as it is (sealed)
        self.buf: bytes | bytearray = bytearray() if big is None else big
        self.ends = array("Q") if big is None else array("Q", (len(big),))
        self.lo = 0  # index of the oldest live record
        self.own = big is None  # buf is this run's own bytearray (records copied in)
        self.sealed = big is not None

    @property
    def end(self) -> int:
        """The tx id after this run's last record."""
        return self.first + len(self.ends)

    def start_of(self, i: int) -> int:
        return self.ends[i - 1] if i else 0

    def cost(self, i: int) -> int:
        """What record ``i`` counts against the bound."""
        return self.cost_of(i, i + 1)

    def cost_of(self, i: int, j: int) -> int:
        """What records ``i..j-1`` count against the bound (O(1): no loop over them)."""
        size = self.start_of(j) - self.start_of(i)
        return size + (j - i) * (ENTRY_OVERHEAD if self.own else BIG_OVERHEAD)


class RecentRecords:
    """Up to ``max_bytes`` of the newest records (oldest dropped first). Not
    thread-safe: the owner holds one lock around every call."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.held = 0  # what the live records count against the bound (_Run.cost)
        self._runs: deque[_Run] = deque()

    def __len__(self) -> int:
        return sum(len(r.ends) - r.lo for r in self._runs)

    def ids(self) -> range:
        """The tx ids kept (empty range if none)."""
        if not self._runs:
            return range(0)
        return range(self._runs[0].first + self._runs[0].lo, self._runs[-1].end)

    def clear(self) -> None:
        self._runs.clear()
        self.held = 0

    def add(self, records: Sequence[tuple[int, bytes | bytearray]]) -> None:
        """Keep the records of a commit that returned (``(tx_id, record)``, in order).
        A batch that does not continue what is kept, or whose ids skip, starts over.
        Every commit's path: kept short (a few attribute reads, two appends a record)."""
        runs = self._runs
        run: _Run | None
        if len(records) == 1 and runs:  # a single-event commit: its own short path
            tx_id, rec = records[0]
            run = runs[-1]
            buf, ends = run.buf, run.ends
            if (not run.sealed and len(rec) < BIG_RECORD and len(buf) < RUN_BYTES
                    and run.first + len(ends) == tx_id and ends and len(buf) == ends[-1]):
                assert isinstance(buf, bytearray)  # an open run's own buffer
                buf += rec
                ends.append(len(buf))
                self.held += len(rec) + ENTRY_OVERHEAD
                if self.held > self.max_bytes:
                    self._trim()
                return
        if not records:
            return
        first = records[0][0]
        run = runs[-1] if runs else None
        if (run is None or run.first + len(run.ends) != first
                or records[-1][0] - first + 1 != len(records)):
            self.clear()
            if records[-1][0] - first + 1 != len(records):
                return  # ids that skip: never guess which record is which tx
            run = None
        size = 0
        for tx_id, rec in records:
            if len(rec) >= BIG_RECORD:
                runs.append(_Run(tx_id, rec))  # kept as it is (one step: interrupt-safe)
                size += len(rec) + BIG_OVERHEAD
                run = None
                continue
            if run is None or run.sealed or len(run.buf) >= RUN_BYTES:
                run = _Run(tx_id)
                runs.append(run)
            buf, ends = run.buf, run.ends
            assert isinstance(buf, bytearray)  # an open run's own buffer
            if len(buf) != (ends[-1] if ends else 0):
                del buf[ends[-1] if ends else 0:]  # an append cut short by an interrupt
            buf += rec
            ends.append(len(buf))
            size += len(rec) + ENTRY_OVERHEAD
        self.held += size
        if self.held > self.max_bytes:
            self._trim()

    def _trim(self) -> None:
        runs = self._runs
        while self.held > self.max_bytes and runs:
            run = runs[0]
            if run.lo >= len(run.ends):
                if run is runs[-1]:
                    self.held = 0  # nothing live left (an interrupt left the count off)
                    break
                runs.popleft()
                continue
            self.held = max(0, self.held - run.cost(run.lo))  # one step: never negative
            run.lo += 1
            if run.lo >= len(run.ends) and run is not runs[-1]:
                runs.popleft()  # its memory goes back now, not at the next trim
        self.held = max(0, self.held)

    def take(self, from_tx: int, limit: int, max_bytes: int) -> list[Piece] | None:
        """Records from ``from_tx`` on: at most ``limit`` of them and, past the first,
        at most ``max_bytes`` in all; None if ``from_tx`` is not kept. Kept records
        before ``from_tx`` are dropped (the caller has shipped them). Returns pieces
        of sealed runs, O(runs) work: :func:`records_of` cuts them into records, and
        the owner does that outside its lock (a sealed run never changes)."""
        runs = self._runs
        while runs:  # drop what is before from_tx
            run = runs[0]
            if from_tx <= run.first + run.lo:
                break
            k = min(from_tx, run.first + len(run.ends)) - run.first
            self.held = max(0, self.held - run.cost_of(run.lo, k))  # one step
            run.lo = k
            if k < len(run.ends) or run is runs[-1]:
                break
            runs.popleft()
        if not len(self):
            self.held = 0
        if (not runs or runs[0].first + runs[0].lo != from_tx
                or from_tx >= runs[-1].first + len(runs[-1].ends)):
            return None
        out: list[Piece] = []
        count = total = 0
        for run in runs:
            ends, n, lo = run.ends, len(run.ends), run.lo
            if lo >= n:
                continue
            start = run.start_of(lo)
            # the records lo..j-1 that fit the count and the bytes (the first one always)
            j = bisect_right(ends, start + max_bytes - total, lo, min(n, lo + limit - count))
            if j == lo and not count and limit > 0:
                j = lo + 1
            if j > lo:
                run.sealed = True  # before any view exists: the committer never grows it
                out.append((run.buf, ends[lo:j], start))
                count += j - lo
                total += ends[j - 1] - start
            if j < n:
                break
        return out


def records_of(pieces: list[Piece]) -> list[bytes | bytearray | memoryview]:
    """The records of :meth:`RecentRecords.take`'s pieces, as read-only views of the
    kept bytes (no copies). Safe without the owner's lock: the pieces' runs are sealed."""
    out: list[bytes | bytearray | memoryview] = []
    for buf, offsets, start in pieces:
        view = memoryview(buf).toreadonly()
        # starts are one longer than ends (the last end starts nothing): not strict
        out.extend(view[a:b] for a, b in zip(chain((start,), offsets), offsets, strict=False))
    return out
