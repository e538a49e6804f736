"""The memory image: ``stream -> (version, value, last_tx)``.

``last_tx`` is the tx holding the stream's newest event; together with each log
event's ``prev_tx`` it threads a per-stream chain through the log, so reading one
stream visits only the transactions that hold it (no scan, no extra index to write).

The state is written only by the database's commit leader (one thread at a time)
and by replay on open; readers on other threads see each committed batch appear at
once because it is merged with one ``dict.update`` under the GIL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from itertools import chain, count, repeat
from operator import itemgetter

from .errors import ConcurrencyError, ReducerError, VersionConflictError
from .model import Event, Reducer
from .native import StateIndex, TxColumns

StateEntry = tuple[int, bytes | None, int]  # (version, value, last_tx)
# What a snapshot is written from (CommitPipeline.capture): a private copy of the
# entries dict, the read-only C index under it (or None), the tx and its position.
Captured = tuple[dict[str, StateEntry], StateIndex | None, int, int]

# Tracking entries (docs/FORMAT.md section 2, "Tracking") live in the state beside the
# streams, under this prefix and with the position as their version and a None value,
# so snapshots, the C index and every replay carry them like any entry. Stream names
# may not contain it (transaction.check_event), so the two never meet.
TRACK_PREFIX = "\x01"


def tracking_key(name: str) -> str:
    """The state key of tracking name ``name``."""
    return TRACK_PREFIX + name


def tracking_entries(cols: TxColumns) -> dict[str, StateEntry]:
    """The state entries a record's tracking section sets (replay, the index's tail)."""
    return {tracking_key(n): (p, None, cols.tx_id) for n, p in cols.tracking}


class Plan:
    """What one transaction will do: per-event versions and prev_tx, and state changes."""

    __slots__ = ("changes", "prev_tx", "versions")

    def __init__(self, versions: list[int], prev_tx: list[int],
                 changes: dict[str, StateEntry]) -> None:
        self.versions = versions
        self.prev_tx = prev_tx
        self.changes = changes


class State:
    """The current state of every stream, with the reducer that folds events into it.

    Two layers: ``entries``, a dict, and ``base``, an optional read-only C index of
    the state as loaded at open (:class:`engine.native.StateIndex`). Every change
    goes to ``entries``, which therefore shadows ``base``. :meth:`materialize`
    folds ``base`` into a dict and drops it (``db.streams()`` does, to list every
    name). Snapshots do not: they are written from ``base`` (cut and encoded in C)
    and a copy of ``entries`` (``snapshot.write_snapshot``'s ``base``).
    """

    def __init__(self, entries: dict[str, StateEntry] | None = None,
                 reducer: Reducer | None = None, base: StateIndex | None = None,
                 build_base: Callable[[], dict[str, StateEntry]] | None = None) -> None:
        self.entries: dict[str, StateEntry] = entries if entries is not None else {}
        # None selects the built-in default reducer's fast path (no Event objects made).
        self.reducer = reducer
        self.base = base
        self._build_base = build_base  # the same state as ``base``, as a fresh dict

    def lookup(self, stream: str) -> StateEntry | None:
        """The stream's entry, or None. Safe against a concurrent :meth:`materialize`:
        ``base`` is read first, and materialize installs the full dict before it
        clears ``base``, so one of the two layers always answers."""
        base = self.base
        e = self.entries.get(stream)
        if e is None and base is not None:
            return base.get(stream)
        return e

    def entries_of(self, streams: Sequence[str]) -> list[StateEntry | None]:
        """:meth:`lookup` of every stream, in C-level passes: the dict for all of them,
        then the base index only for the streams the dict lacks (a state opened from a
        snapshot answers most from ``base`` until it is materialised). ``base`` is read
        before ``entries``, as in :meth:`lookup`, for the same reason."""
        base = self.base
        entries = self.entries
        if len(streams) > 1:
            try:
                # Every stream in the dict (the common case): one itemgetter pass, whose
                # loop is tight enough that the cache misses of a large dict overlap
                # (1000 lookups in random order in a dict of 1M streams, timed alone:
                # ~250 against ~400 us with map(get); README, "Batched appends at 1M
                # streams"). It stops at the first stream the dict lacks (a new one,
                # or one only in base): then get() for all.
                return list(itemgetter(*streams)(entries))
            except KeyError:
                pass
        got = list(map(entries.get, streams))
        if base is not None and None in got:
            bget = base.get
            got = [bget(s) if e is None else e for s, e in zip(streams, got, strict=True)]
        return got

    def get(self, stream: str) -> bytes | None:
        e = self.lookup(stream)
        return None if e is None else e[1]

    def version(self, stream: str) -> int:
        e = self.lookup(stream)
        return 0 if e is None else e[0]

    def materialize(self, lock: threading.Lock) -> None:
        """Replace ``base`` by a dict holding everything (built outside ``lock``; the
        swap happens under it, where commits merge their changes)."""
        if self.base is None or self._build_base is None:
            return
        full = self._build_base()  # slow part: no lock held
        with lock:
            if self.base is None:
                return
            full.update(self.entries)  # changes since open win
            self.entries = full
            self.base = None
            self._build_base = None

    # ------------------------------------------------------------------ commit
    def plan(
        self,
        tx_id: int,
        streams: Sequence[str],
        types: Sequence[str],
        datas: Sequence[bytes],
        expects: Sequence[tuple[int, int]],
        overlay: dict[str, StateEntry],
        *,
        epoch: int,
        ts: float,
        first_position: int,
        fixed: Sequence[tuple[int, int]] = (),
        tracking: Sequence[tuple[str, int]] = (),
    ) -> Plan:
        """Assign versions (the caller's ``fixed`` ones as ``(event index, version)``),
        check ``expected_version``s, fold the events, and check ``tracking``.

        ``overlay`` holds changes of earlier transactions in the same commit batch
        (not yet merged into ``entries``). Raises :class:`ConcurrencyError`, or
        whatever a custom reducer raises; either way nothing has changed.
        """
        get = self.entries.get if self.base is None else self.lookup
        # The Python loop runs once per *distinct* stream; the per-event work runs in
        # C-level iteration (map over per-stream iterators).
        uniq = dict.fromkeys(streams)
        if len(uniq) == len(streams):  # every event on its own stream: one pass
            bases = self.entries_of(streams)
            if overlay:
                bases = [overlay.get(s) or b for s, b in zip(streams, bases, strict=True)]
            versions = [1 if b is None else b[0] + 1 for b in bases]
            prev = [0 if b is None else b[2] for b in bases]
        else:
            counters = {}
            prevs = {}
            for s in uniq:
                b = overlay.get(s) or get(s)
                if b is None:
                    counters[s] = count(1)
                    prevs[s] = chain((0,), repeat(tx_id))
                else:
                    counters[s] = count(b[0] + 1)
                    prevs[s] = chain((b[2],), repeat(tx_id))
            versions = list(map(next, map(counters.__getitem__, streams)))
            prev = list(map(next, map(prevs.__getitem__, streams)))
        if fixed:
            versions = self._fixed_versions(streams, versions, fixed, overlay, get)
        for i, expected in expects:
            # auto versions count on by one, so the one before is versions[i] - 1
            actual = self._before(i, streams, versions, overlay, get) if fixed else \
                versions[i] - 1
            if actual != expected:
                raise ConcurrencyError(streams[i], expected, actual)
        changes = self._fold(tx_id, streams, types, datas, versions, overlay, epoch, ts,
                             first_position)
        if tracking:
            changes.update(self._track(tx_id, tracking, overlay, get))
        return Plan(versions, prev, changes)

    @staticmethod
    def _fixed_versions(streams: Sequence[str], auto: list[int],
                        fixed: Sequence[tuple[int, int]], overlay: dict[str, StateEntry],
                        get: Callable[[str], StateEntry | None]) -> list[int]:
        """Versions with the caller's choices (``(event index, version)``) applied: a
        chosen version must exceed the stream's version before it, and the events of
        that stream after it count on from it. The slow path: only for a transaction
        that chooses versions."""
        chosen = dict(fixed)
        cur: dict[str, int] = {}
        out = []
        for i, s in enumerate(streams):
            if s not in cur:
                b = overlay.get(s) or get(s)
                cur[s] = 0 if b is None else b[0]
            v = chosen.get(i)
            if v is None:
                v = cur[s] + 1
            elif v <= cur[s]:
                raise VersionConflictError(s, v, cur[s])
            cur[s] = v
            out.append(v)
        return out if chosen else auto

    @staticmethod
    def _before(i: int, streams: Sequence[str], versions: Sequence[int],
                overlay: dict[str, StateEntry],
                get: Callable[[str], StateEntry | None]) -> int:
        """The version of event ``i``'s stream before it: the previous event of that
        stream in this transaction, or the state (versions may have gaps)."""
        s = streams[i]
        for j in range(i - 1, -1, -1):
            if streams[j] == s:
                return versions[j]
        b = overlay.get(s) or get(s)
        return 0 if b is None else b[0]

    @staticmethod
    def _track(tx_id: int, tracking: Sequence[tuple[str, int]],
               overlay: dict[str, StateEntry],
               get: Callable[[str], StateEntry | None]) -> dict[str, StateEntry]:
        """The state entries of this transaction's tracking: each position must exceed
        the name's last one (in the state, or earlier in this batch or entry list)."""
        out: dict[str, StateEntry] = {}
        for name, position in tracking:
            key = tracking_key(name)
            b = out.get(key) or overlay.get(key) or get(key)
            if b is not None and position <= b[0]:
                raise VersionConflictError(name, position, b[0], "tracked position")
            out[key] = (position, None, tx_id)
        return out

    def _fold(
        self,
        tx_id: int,
        streams: Sequence[str],
        types: Sequence[str],
        datas: Sequence[bytes],
        versions: Sequence[int],
        overlay: dict[str, StateEntry],
        epoch: int,
        ts: float,
        first_position: int,
    ) -> dict[str, StateEntry]:
        """The state entries after this transaction's events, for its streams only."""
        reducer = self.reducer
        if reducer is None:
            if "delete" not in types:
                # Later events of a stream overwrite earlier ones in dict order.
                return dict(zip(streams, zip(versions, datas, repeat(tx_id)), strict=False))
            out: dict[str, StateEntry] = {}
            for s, t, d, v in zip(streams, types, datas, versions, strict=True):
                out[s] = (v, None if t == "delete" else d, tx_id)
            return out
        out = {}
        for i, (s, t, d, v) in enumerate(zip(streams, types, datas, versions, strict=True)):
            cur = out.get(s) or overlay.get(s) or self.lookup(s)
            value = None if cur is None else cur[1]
            ev = Event(s, v, t, d, first_position + i, tx_id, epoch, ts)
            new = reducer(value, ev)
            if new is not None and type(new) is not bytes:
                raise ReducerError(f"reducer returned {type(new).__name__} for stream {s!r}; "
                                "it must return bytes or None")
            out[s] = (v, new, tx_id)
        return out

    # ------------------------------------------------------------------ replay
    def replay(self, cols: TxColumns) -> None:
        """Fold one decoded log record into the state (open and recovery)."""
        if cols.tracking:
            changes = self._fold(cols.tx_id, cols.streams, cols.types, cols.datas,
                                 cols.versions, {}, cols.epoch, cols.ts_ns / 1e9,
                                 cols.first_position)
            changes.update(tracking_entries(cols))
            self.entries.update(changes)  # one update: a reader never sees half of it
            return
        if self.reducer is None and "delete" not in cols.types:
            self.entries.update(zip(cols.streams, zip(cols.versions, cols.datas,
                                                       repeat(cols.tx_id)), strict=False))
            return
        changes = self._fold(cols.tx_id, cols.streams, cols.types, cols.datas, cols.versions,
                             {}, cols.epoch, cols.ts_ns / 1e9, cols.first_position)
        self.entries.update(changes)
