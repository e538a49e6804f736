"""Committed log records not yet shipped, kept in memory (LogStore.keep_recent).

While a log backup runs, its uploader ships what was just committed. Reading that
back through LMDB costs a CPU-bound committer (py-lmdb releases the GIL around every
cursor step), so the log keeps the records its commits wrote, and the uploader takes
them from here. Both sides are costs to committers: the producer's steps run in every
commit, and the consumer's run under the GIL that committers need. Measured in one
process, alternating rounds of 20,000 single-event ``sync="none"`` commits with and
without a backup running (``bench/backup_overhead_ab.py``; README, "Log backup"):

- the previous design took a lock around every add and derived ids from one end id
  kept beside the records (~0.76 us per add in a tight loop on this VM, 0.45 us of
  it the lock), and its consumer did a Python step per record (dropping, checking,
  a read-only view each): with a backup running, py-spy counted the uploader in
  ~10% of the samples that held the GIL, most of them in those per-record steps;
- here the producer takes no lock (a count and one ``list.append``: ~0.8 us in place,
  against 1.5-2.7 us) and the consumer works in a handful of C-level calls per read,
  whatever the number of records: the uploader in 15 of 1,029 GIL-holding samples,
  and committers at 0.89-0.97x with a backup running (paired medians of eight A/B
  runs, median 0.94x; 0.89x before in one run the same day).

The layout is a single-producer, single-consumer queue that relies only on what one
C-level call does atomically under the GIL (``list.append``, ``list.extend`` of a
list, a slice copy, a slice deletion, binding an int attribute):

- the producer is the committer, inside ``LogStore._write_lock`` (so one thread at a
  time, in commit order): ``add`` appends the records of a commit whose LMDB
  transaction committed to ``_queue`` and counts their bytes in ``added``, which
  only it writes;
- the consumer is ``LogStore.values_from`` (serialised by ``LogStore._recent_lock``,
  which the producer never takes): ``take`` moves what is queued onto ``_mine``
  (its own, touched by no other thread), cuts what was shipped, and counts what it
  let go in ``dropped``, which only it writes;
- the bytes held are ``added - dropped``: each counter has one writer, so no update is
  lost. ``add`` keeps nothing while keeping it would pass ``max_bytes`` (the
  consumer is behind: it reads that stretch from LMDB). ``added`` grows before the
  append, and ``dropped`` after the cut; records move off the queue by a copy, then
  the deletion of what was copied, then the extension of ``_mine``: an interrupt
  between any two steps can only lose records (a gap, below) or leave the count too
  high (less is kept from then on), never duplicate a record or pass the bound;
- a record's tx id is read from the record (``formats.TX_ID_OFFSET``; the committer
  encodes the id it is stored under, and ``add`` keeps nothing whose header says
  otherwise), never derived from a position: a commit that
  was not added (an interrupt between its LMDB commit and ``add``, or a bound that
  was full) is a gap in the ids, and ``take`` answers only the run of consecutive
  ids from the one asked for. What it serves is then a prefix of what LMDB holds,
  never other records, and the next read, from past that prefix, is answered by
  LMDB;
- the kept ids strictly increase (see ``take``), which is what lets ``take`` find
  both of its cuts by bisection;
- a kept record is the committer's own object (``bytes`` or the ``bytearray`` it
  encoded into), which nobody writes again: ``take`` hands the objects themselves
  out, and whoever reads them must never write them (a read-only view each cost the
  uploader more GIL time than anything else it did per record).
"""

from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate

from .formats import TX_ID_OFFSET

#: What one kept record costs beyond its bytes (its object, allocator rounding, its
#: list slot; ~80 B, rounded up): the bound counts it.
ENTRY_OVERHEAD = 100

Record = bytes | bytearray

_U64 = struct.Struct("<Q")
_ID_END = TX_ID_OFFSET + _U64.size


def record_tx_id(rec: Record) -> int:
    """The tx id a log record carries in its header (-1 if it is too short to)."""
    return _U64.unpack_from(rec, TX_ID_OFFSET)[0] if len(rec) >= _ID_END else -1


class RecentRecords:
    """Up to ``max_bytes`` of committed records, oldest first, not yet shipped. One
    producer (``add``) and one consumer (``take``, ``ids``) at a time; see the module
    doc for why they need no common lock."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.added = 0  # producer only: bytes (with ENTRY_OVERHEAD each) ever queued
        self.dropped = 0  # consumer only: bytes (with ENTRY_OVERHEAD each) let go
        self._queue: list[Record] = []  # producer appends, consumer cuts from the front
        self._mine: list[Record] = []  # consumer only: off the queue, not yet shipped

    @property
    def held(self) -> int:
        """Bytes kept, with ENTRY_OVERHEAD each (never less than what is kept)."""
        return self.added - self.dropped

    def add(self, records: Sequence[tuple[int, Record]]) -> None:
        """Producer, inside the log's write lock, after the LMDB commit of ``records``
        (``(tx_id, record)``, in order) returned: keep them, unless that would pass
        the bound, or a record's header does not carry the key it was stored under
        (the committer's never do; anything else must not be served under an id it
        does not have, nor break the order the reader bisects). Every commit's
        path, kept to a few steps."""
        if len(records) == 1:
            tx_id, rec = records[0]
            size = len(rec) + ENTRY_OVERHEAD
            if (self.added + size - self.dropped <= self.max_bytes
                    and record_tx_id(rec) == tx_id):  # the id take() will read: the key's
                self.added += size  # before the append: an interrupt overcounts only
                self._queue.append(rec)
            return
        batch = [rec for _, rec in records]
        size = sum(map(len, batch)) + ENTRY_OVERHEAD * len(batch)
        if (batch and self.added + size - self.dropped <= self.max_bytes
                and list(map(record_tx_id, batch)) == [t for t, _ in records]):
            self.added += size
            self._queue.extend(batch)

    def _drain(self) -> list[Record]:
        """Consumer: move what the producer queued onto ``_mine``. The copy of the first
        ``n`` and their deletion are one C call each; the producer only ever appends
        at the end, so what it adds between them stays queued for the next drain."""
        queue = self._queue
        n = len(queue)
        if n:
            moved = queue[:n]
            del queue[:n]  # (an interrupt here loses them: a gap, never a duplicate)
            self._mine += moved
        return self._mine

    def ids(self) -> list[int]:
        """Consumer: the tx ids of what is kept, oldest first, read from the records."""
        return [record_tx_id(rec) for rec in self._drain()]

    def take(self, from_tx: int, limit: int) -> list[Record] | None:
        """Consumer: up to ``limit`` records of consecutive txs from ``from_tx`` on, or
        None if ``from_tx`` is not the oldest kept once the records before it are
        dropped (the caller has shipped them). The caller applies any byte limit.

        The kept ids strictly increase (``add`` runs in commit order, and LMDB's
        ``append=True`` refuses a key not above the last; the log never deletes
        one), so both cuts are bisections on ids read from a few records, not a
        Python step per record: what is shipped, and where the run from
        ``from_tx`` first skips an id (a commit that was not added)."""
        mine = self._drain()
        shipped = bisect_left(mine, from_tx, key=record_tx_id)
        if shipped:
            size = sum(map(len, mine[:shipped])) + ENTRY_OVERHEAD * shipped
            del mine[:shipped]
            self.dropped += size  # after the cut: an interrupt leaves the count high
        if not mine or record_tx_id(mine[0]) != from_tx:
            return None
        n = min(max(0, limit), len(mine))
        if n and record_tx_id(mine[n - 1]) != from_tx + n - 1:
            # id - index never falls along the list and equals from_tx up to the gap
            n = bisect_right(range(n), from_tx, key=lambda i: record_tx_id(mine[i]) - i)
        return mine[:n]


def fitting(records: list[Record], max_bytes: int) -> list[Record]:
    """The first of ``records`` that fit ``max_bytes`` (the first one always): the
    rule of ``within``, for records already in a list (the kept path), in C-level
    loops rather than a Python step per record, and without views (the caller
    reads the committer's objects and must never write them)."""
    return records[:max(1, bisect_right(list(accumulate(map(len, records))), max_bytes))]


def within(records: Iterable[Record], max_bytes: int) -> list[Record]:
    """The first of ``records`` that fit ``max_bytes`` (the first one always): the one
    byte-limit rule of ``LogStore.values_from``. For its LMDB path: it stops consuming
    ``records`` (a cursor there) at the first one that does not fit."""
    out: list[Record] = []
    total = 0
    for rec in records:
        if out and total + len(rec) > max_bytes:
            break
        out.append(rec)
        total += len(rec)
    return out
