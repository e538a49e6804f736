"""Loading the state on open: the newest valid snapshot plus the log after it.

Two ways to the same state (a hypothesis test holds them equal):

* **indexed** (default reducer, tail within budget): the snapshot body and the
  tail's records are indexed in C (:class:`~engine.native.StateIndex`), with no
  Python object per stream; the state keeps the index as its read-only base.
* **eager** (a custom reducer, or a tail past the budget): the snapshot's state is
  built as a dict and the tail is replayed through the reducer.

The tail is streamed: records are kept only while the indexed way is still
possible; once past the budget, what was kept is replayed into a dict and the rest
streams through it. Every tail record passes the :class:`~engine.logreader.LogReader`
checks (key, epoch, gap-free continuation from the snapshot).
"""

from __future__ import annotations

import gc
import time
import uuid
from dataclasses import dataclass

from .errors import CorruptSnapshotError
from .log import LogStore
from .logreader import Continuity, LogReader
from .model import EpochRecord, Reducer
from .native import StateIndex, decode_tx, event_count_hint
from .ops.plan import OpenPlan
from .snapshot import LoadedSnapshot, build_state
from .state import State, StateEntry, tracking_entries

# A tail up to max(this, 2x the snapshot body) is indexed, not built.
LAZY_TAIL_BYTES = 64 << 20


@dataclass(frozen=True)
class Loaded:
    """What open found and built: identity, timeline, position and state."""

    db_id: str
    epoch: int
    base_tx: int
    base_position: int
    history: tuple[EpochRecord, ...]
    snapshot_tx: int
    last_tx: int
    last_position: int
    state: State


def load(plan: OpenPlan, log: LogStore, reducer: Reducer | None, where: str) -> Loaded:
    """Initialise a new log if the plan says so, then load snapshot and tail."""
    # Loading builds millions of tuples that can hold no cycles: the cyclic GC would
    # rescan them again and again while they are made (~10-20% of a reopen).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _load(plan, log, reducer, where)
    finally:
        if gc_was_enabled:
            gc.enable()


def _load(plan: OpenPlan, log: LogStore, reducer: Reducer | None, where: str) -> Loaded:
    snap = plan.snapshot
    info = plan.log
    if plan.create or not info.exists:
        db_id = snap.header.db_id if snap else str(uuid.uuid4())
        epoch = snap.header.epoch if snap else 1
        history = list(snap.header.history) if snap else [
            EpochRecord(1, 1, 1, time.time(), "created")]
        base_tx = snap.header.tx_id if snap else 0
        base_pos = snap.header.last_position if snap else 0
        log.initialise(db_id, epoch, base_tx, base_pos, history)
        info = log.info()
    assert info.db_id is not None  # the log was initialised above
    reader = LogReader(log, epoch=info.epoch, base_tx=info.base_tx,
                       base_position=info.base_position, where=where,
                       history=info.history)
    start_tx = snap.header.tx_id if snap else info.base_tx
    start_pos = snap.header.last_position if snap else info.base_position
    cont = Continuity(start_tx, start_pos)
    budget = max(LAZY_TAIL_BYTES, 2 * len(snap.body)) if snap else LAZY_TAIL_BYTES
    kept: list[tuple[int, bytes]] | None = [] if reducer is None else None
    eager: State | None = None if reducer is None else State(
        snap.state if snap else {}, reducer)
    # The tail's tree pages are checked with plain reads first: LMDB aborts the process
    # on a zeroed leaf it meets while iterating (docs/FORMAT.md, section 3).
    if plan.pages_checked_from is None or plan.pages_checked_from > start_tx + 1:
        log.check_pages_from(start_tx + 1)  # not twice: the plan's lineage read did it
    for tx_id, rec in log.iter_range(start_tx + 1):
        if kept is not None:
            kept.append((tx_id, rec))
            budget -= len(rec)
            if budget >= 0:
                continue
            eager = State(snap.state if snap else {}, reducer)
            pending, kept = kept, None
        else:
            pending = [(tx_id, rec)]
        assert eager is not None
        for t, r in pending:
            cols = reader.decode(t, r)
            reader.follow(cont, t, cols.first_position, len(cols.streams))
            eager.replay(cols)
    if kept is not None:
        state = _index_state(snap, kept, reader, cont)
    else:
        assert eager is not None  # kept is None only once the eager state exists
        state = eager
    assert cont.position is not None  # RAISE never lets a damaged record through
    return Loaded(db_id=info.db_id, epoch=info.epoch, base_tx=info.base_tx,
                  base_position=info.base_position, history=info.history,
                  snapshot_tx=start_tx, last_tx=cont.tx_id, last_position=cont.position,
                  state=state)


def _index_state(snap: LoadedSnapshot | None, tail: list[tuple[int, bytes]],
                 reader: LogReader, cont: Continuity) -> State:
    """Open without a Python object per stream: the snapshot body and the tail's
    records are indexed in C (default reducer), and kept as the state's base."""
    if snap is None and not tail:  # nothing to index: an empty dict answers faster
        return State({}, None)
    tail_events = sum(event_count_hint(rec) for _, rec in tail)
    # Sized for the snapshot's streams plus some new ones from the tail (most tail
    # events update streams that exist); it grows if that guess is short.
    index = StateIndex((snap.header.stream_count if snap else 0) + tail_events // 4)
    if snap is not None:
        index.put_body(snap.body)
        if len(index) != snap.header.stream_count:
            raise CorruptSnapshotError(
                f"snapshot {snap.header.path} holds {len(index)} distinct streams, its "
                f"header says {snap.header.stream_count} (a name appears twice). "
                "Move it aside to fall back to an older snapshot.")
    # put_tx indexes a record's events only: its tracking entries go here (the body's,
    # which put_body indexes like any entry, are in the index)
    tracked: dict[str, StateEntry] = {}
    for tx_id, record in tail:
        got = reader.checked(tx_id, lambda record=record: index.put_tx(record))  # type: ignore[misc]
        reader.follow(cont, tx_id, got.first_position, got.event_count)
        if got.tracking_count:
            tracked.update(tracking_entries(reader.decode(tx_id, record)))

    def build() -> dict[str, StateEntry]:  # the same state, eagerly (tested code)
        st = State(build_state(snap.header, snap.body) if snap else {}, None)
        for _tx_id, rec in tail:
            st.replay(decode_tx(rec))
        return st.entries

    return State(tracked, None, base=index, build_base=build)
