"""The newest committed log records, kept in memory (LogStore.keep_recent).

While a log backup runs, its uploader ships what was just committed. Reading that
back through LMDB costs a CPU-bound committer (py-lmdb releases the GIL around every
cursor step), so the log keeps the records its commits wrote, and the uploader takes
them from here. What a commit pays for that is the committer's hot path, measured in
one process that toggles only the keeping (``/tmp``-style A/B of 32 alternating
rounds of 10,000 single-event commits, twice, 2026-12-01):

- the records themselves in a deque, ids derived from one end id: 1.07x the time of
  a commit that keeps nothing (what this module does);
- ``(tx_id, record)`` pairs in a deque: 1.10-1.13x (a tracked tuple per commit kept
  alive: the allocator and the cyclic collector);
- each record copied onto the end of a few large buffers: 1.12-1.13x (the Python
  around the copy costs more than the objects it saves);
- the floor, a lock and one ``deque.append``: 1.04-1.05x.

Invariants (the owner serialises every call: LogStore._recent_lock):

- the kept records are txs ``end - len(records) .. end - 1``, oldest on the left;
- ``end`` reads CHANGING while a commit's records go in: an interrupt between the two
  steps leaves that marker, and the next call drops what is kept rather than map ids
  onto records that may be off by some;
- a kept record is the committer's own object, which nobody writes again; it is
  handed out as a read-only view of it (writes through the view are refused);
- ``held`` (the bytes kept plus ENTRY_OVERHEAD each) grows in ``add`` before the end
  id is set (an interrupt between them leaves CHANGING, so what is kept is dropped
  and the count reset) and is clamped in the same statement that drops: an
  interrupt can leave it counting too much, never too little, never negative;
- what is kept is always a run of consecutive txs the log holds, but it may end
  before the newest commit (read between a commit and its ``add``, or after an
  interrupt skipped an ``add``): a read then answers a prefix of what LMDB would,
  and the next one, from past that prefix, is answered by LMDB.

An interrupt on the few bytecodes where ``with lock:`` hands back (outside its
exception table) would leave the owner's lock held; that is CPython's ``with``
itself, the same for every lock in the engine, and not guarded against here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from itertools import islice

#: What one kept record costs beyond its bytes (its object, allocator rounding, the
#: deque slot; ~80 B, rounded up): the bound counts it.
ENTRY_OVERHEAD = 100
#: ``end`` while a commit's records are going in (see the module doc).
CHANGING = -1

Record = bytes | bytearray


class RecentRecords:
    """Up to ``max_bytes`` of the newest records (oldest dropped first). Not
    thread-safe: the owner holds one lock around every call."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.held = 0
        self.end = 0  # the tx id after the newest kept record (or CHANGING)
        self._recs: deque[Record] = deque()

    def __len__(self) -> int:
        return len(self._recs)

    def ids(self) -> range:
        """The tx ids kept (empty if none, or after an interrupted add)."""
        if self.end == CHANGING:
            return range(0)
        return range(self.end - len(self._recs), self.end)

    def clear(self) -> None:
        self._recs.clear()
        self.held = 0

    def add(self, records: Sequence[tuple[int, Record]]) -> None:
        """Keep the records of a commit that returned (``(tx_id, record)``, in order).
        A batch that does not continue what is kept, or whose ids skip, starts over.
        Every commit's path, kept to a few steps."""
        if not records:
            return
        recs = self._recs
        first = records[0][0]
        last = records[-1][0]
        if self.end != first or last - first + 1 != len(records):
            self.clear()  # a gap (or an interrupted add): start again from here
            if last - first + 1 != len(records):
                return  # ids that skip: never guess which record is which tx
        self.end = CHANGING
        if len(records) == 1:
            rec = records[0][1]
            recs.append(rec)
            size = len(rec) + ENTRY_OVERHEAD
        else:
            batch = [rec for _, rec in records]
            recs.extend(batch)
            size = sum(map(len, batch)) + ENTRY_OVERHEAD * len(batch)
        self.held += size  # before the end id: an interrupt between leaves CHANGING
        self.end = last + 1
        if self.held > self.max_bytes:
            while self.held > self.max_bytes and recs:
                self.held = max(0, self.held - len(recs.popleft()) - ENTRY_OVERHEAD)
            if not recs:
                self.held = 0

    def take(self, from_tx: int, limit: int) -> list[Record] | None:
        """Up to ``limit`` records from ``from_tx`` on, or None if ``from_tx`` is not
        kept. Kept records before ``from_tx`` are dropped (the caller has shipped
        them). The caller applies any byte limit and makes views (out of the lock)."""
        recs = self._recs
        if self.end == CHANGING:
            self.clear()
            return None
        first = self.end - len(recs)
        for _ in range(min(max(0, from_tx - first), len(recs))):
            self.held = max(0, self.held - len(recs.popleft()) - ENTRY_OVERHEAD)
        if not recs:
            self.held = 0
            return None
        if self.end - len(recs) != from_tx:
            return None
        return list(islice(recs, max(0, limit)))


def within(records: Iterable[Record], max_bytes: int) -> list[bytes | bytearray | memoryview]:
    """The first of ``records`` that fit ``max_bytes`` (the first one always), as
    read-only views (kept records are the committer's objects, never to be written).
    The one byte-limit rule of ``LogStore.values_from``, for its LMDB path too: it
    stops consuming ``records`` (a cursor there) at the first one that does not fit."""
    out: list[bytes | bytearray | memoryview] = []
    total = 0
    for rec in records:
        if out and total + len(rec) > max_bytes:
            break
        out.append(memoryview(rec).toreadonly())
        total += len(rec)
    return out
