"""The workloads: one function each, registered in :data:`WORKLOADS` by :func:`workload`.

Every workload first builds one database per system from the same events (the same
streams, types, 100-byte payloads and transaction boundaries), then runs timed
rounds (see measure.py). ``ops`` is what ``ops_per_s`` counts:

``append_batch``
    transactions of 1000 events of 100 B over 10k streams, no fsync per
    transaction where the system allows it; ops = events. eventsourcing's
    Application API (``eventsourcing_app``) runs in the same rotation and is
    reported inside the ``eventsourcing`` entry.
``append_durable``
    one event per transaction, durable when the call returns; ops = commits.
``read_state``
    random point reads of a stream's current state (value of its last event) over
    ``state_streams`` streams of 2 events each; ops = reads.
``read_stream``
    all events of a random stream (``stream_events`` events, written interleaved
    with other streams in transactions of ``stream_tx_events`` events, so each
    transaction holds one event of each of ``stream_tx_events`` streams); ops = streams
    read (``events_per_s`` is reported too).
``read_stream_batched``
    the same streams and reads, but each stream written whole in one transaction of
    ``stream_events`` events.
``reopen``
    a database holding ``reopen_streams`` streams (one event each; the engine
    snapshots after them) and a tail of ``reopen_tail_txs`` transactions of 1000
    events; timed: open, answer one state read, close. ops_per_s = 1/seconds. The
    engine loads its memory image (snapshot + tail replay) here; the disk-based
    systems load nothing, which is what buys them this workload and costs them
    ``read_state``.
``backup_lag``, ``restore``
    the engine's log backup against Litestream replicating SQLite (the ``litestream``
    system): replication lag under steady writes (``ops_per_s`` = 1 / median lag),
    and the time to restore the same data (``ops_per_s`` = events restored per s).
``backup_flush``, ``backup_shipping``, ``backup_overhead``
    the engine alone: ``db.backup.flush()`` latency, shipping a backlog against
    appending it, committer throughput with the backup on against off.

The backup workloads and their method are in backup.py (its docstring).

A workload function takes the systems to run (all of which declare it, see
:func:`systems_for`), the sizes and a scratch directory, and returns
``{system: result entry}`` (:func:`measure.summarise`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from benchlib import make_payloads, stream_name

from . import backup
from .measure import populate, rotations, summarise, timed
from .sizes import Sizes
from .systems import (
    SYSTEM_CLASSES,
    EventsourcingAppSystem,
    ReadableSystem,
    ReplicatedSystem,
    System,
    open_system,
)

WorkloadFunc = Callable[[list[str], Sizes, Path], dict[str, Any]]


@dataclass(frozen=True)
class Workload:
    name: str
    unit: str  # what one op is: "events", "commits", ...
    run: WorkloadFunc
    needs: type[System]  # the interface the workload calls on each system


WORKLOADS: dict[str, Workload] = {}  # in registration order: the order of the report

# Planned, not measured yet: reported under "skipped".
SKIPPED: dict[str, str] = {}


def workload(
    name: str, unit: str, needs: type[System] = System
) -> Callable[[WorkloadFunc], WorkloadFunc]:
    """Register the decorated function as workload ``name``."""

    def register(fn: WorkloadFunc) -> WorkloadFunc:
        WORKLOADS[name] = Workload(name, unit, fn, needs)
        return fn

    return register


def systems_for(name: str, systems: Sequence[str]) -> list[str]:
    """The ``systems`` that declare workload ``name``, checked to offer what it calls."""
    w = WORKLOADS[name]
    chosen = [s for s in systems if name in SYSTEM_CLASSES[s].workloads]
    for s in chosen:
        if not issubclass(SYSTEM_CLASSES[s], w.needs):
            raise TypeError(f"{s} declares workload {name}, which needs a {w.needs.__name__}")
    return chosen


def _readable_class(name: str) -> type[ReadableSystem]:
    cls = SYSTEM_CLASSES[name]
    assert issubclass(cls, ReadableSystem), name  # systems_for checked it
    return cls


def _open_readable(name: str, root: Path, workload_name: str) -> ReadableSystem:
    s = open_system(name, root, workload_name)
    assert isinstance(s, ReadableSystem), name
    return s


@workload("append_batch", unit="events")
def append_batch(systems: list[str], sizes: Sizes, root: Path) -> dict[str, Any]:
    payloads = make_payloads(sizes.batch_events, size=sizes.payload_bytes)
    names = [stream_name(i) for i in range(sizes.batch_streams)]
    reported = list(systems)
    app = EventsourcingAppSystem.name
    if "eventsourcing" in systems:  # its Application API too, in the same rotation
        systems = [*systems, app]
    opened = {n: open_system(n, root, "append_batch") for n in systems}
    counters = dict.fromkeys(systems, 0)
    per_round: dict[str, list[float]] = {n: [] for n in systems}
    ns, be = sizes.batch_streams, sizes.batch_events

    def run(name: str) -> None:
        s = opened[name]
        for _ in range(sizes.batch_txs):
            base = counters[name] * be
            counters[name] += 1
            s.append_batch([(names[(base + i) % ns], "deposited", payloads[i]) for i in range(be)])

    try:
        for name in systems:  # warm-up: one transaction each
            opened[name].append_batch([(names[i % ns], "opened", payloads[i]) for i in range(be)])
        if app in opened:  # create every aggregate before timing
            for start in range(0, ns, be):
                opened[app].append_batch(
                    [(n, "opened", payloads[0]) for n in names[start : start + be]]
                )
        for order in rotations(systems, sizes.rounds):
            for name in order:
                per_round[name].append(timed(partial(run, name)))
    finally:
        for s in opened.values():
            s.close()
    out = summarise(per_round, sizes.batch_txs * be, events_per_tx=be)
    app_result = out.pop(app, None)
    if app_result is not None:
        out["eventsourcing"]["application_api_ops_per_s"] = app_result["ops_per_s"]
        out["eventsourcing"]["api"] = "recorder (application_api_ops_per_s: Application+Aggregate)"
    assert list(out) == reported
    return out


@workload("append_durable", unit="commits")
def append_durable(systems: list[str], sizes: Sizes, root: Path) -> dict[str, Any]:
    payloads = make_payloads(64, size=sizes.payload_bytes)
    names = [stream_name(i) for i in range(sizes.batch_streams)]
    opened = {n: open_system(n, root, "append_durable", durable=True) for n in systems}
    counters = dict.fromkeys(systems, 0)
    per_round: dict[str, list[float]] = {n: [] for n in systems}

    def run(name: str) -> None:
        s = opened[name]
        c = counters[name]
        for i in range(c, c + sizes.durable_commits):
            s.append_one(names[i % len(names)], "deposited", payloads[i % 64])
        counters[name] = c + sizes.durable_commits

    try:
        for name in systems:
            opened[name].append_one(names[0], "opened", payloads[0])
        for order in rotations(systems, sizes.rounds):
            for name in order:
                per_round[name].append(timed(partial(run, name)))
    finally:
        for s in opened.values():
            s.close()
    return summarise(per_round, sizes.durable_commits)


@workload("read_state", unit="reads", needs=ReadableSystem)
def read_state(systems: list[str], sizes: Sizes, root: Path) -> dict[str, Any]:
    payloads = make_payloads(1024, seed=5, size=sizes.payload_bytes)
    names = [stream_name(i) for i in range(sizes.state_streams)]
    events = [(s, "opened", payloads[i % 1024]) for i, s in enumerate(names)]
    events += [(s, "deposited", payloads[(i + 3) % 1024]) for i, s in enumerate(names)]
    want = {s: payloads[(i + 3) % 1024] for i, s in enumerate(names)}
    rnd = random.Random(7)
    per_round: dict[str, list[float]] = {n: [] for n in systems}
    opened: dict[str, ReadableSystem] = {}
    try:
        for n in systems:
            opened[n] = _open_readable(n, root, "read_state")
            populate(opened[n], events, sizes.batch_events)
        for r, order in enumerate(rotations(systems, sizes.rounds)):
            keys = rnd.choices(names, k=sizes.state_reads)
            for name in order:
                get = opened[name].get

                def run(get: Callable[[str], bytes | None] = get, keys: list[str] = keys) -> None:
                    for k in keys:
                        get(k)

                per_round[name].append(timed(run))
                if r == 0:  # correctness, outside the timing
                    assert all(get(k) == want[k] for k in keys[:20]), name
    finally:
        for s in opened.values():
            s.close()
    return summarise(per_round, sizes.state_reads, streams=sizes.state_streams)


@workload("read_stream", unit="streams", needs=ReadableSystem)
def read_stream(systems: list[str], sizes: Sizes, root: Path) -> dict[str, Any]:
    return _read_stream(systems, sizes, root, "read_stream", batched=False)


@workload("read_stream_batched", unit="streams", needs=ReadableSystem)
def read_stream_batched(systems: list[str], sizes: Sizes, root: Path) -> dict[str, Any]:
    return _read_stream(systems, sizes, root, "read_stream_batched", batched=True)


def _read_stream(systems: list[str], sizes: Sizes, root: Path, workload_name: str, *,
                 batched: bool) -> dict[str, Any]:
    """Both read_stream workloads: the events are the same; interleaved, transactions
    of ``stream_tx_events`` events; batched, one transaction per stream."""
    payloads = make_payloads(1024, seed=6, size=sizes.payload_bytes)
    names = [stream_name(i) for i in range(sizes.stream_count)]
    if batched:
        events = [
            (s, "deposited", payloads[(v * 31 + i) % 1024])
            for i, s in enumerate(names)
            for v in range(sizes.stream_events)
        ]
        tx_events = sizes.stream_events
    else:
        events = [
            (s, "deposited", payloads[(v * 31 + i) % 1024])
            for v in range(sizes.stream_events)
            for i, s in enumerate(names)
        ]
        tx_events = sizes.stream_tx_events
    rnd = random.Random(8)
    per_round: dict[str, list[float]] = {n: [] for n in systems}
    opened: dict[str, ReadableSystem] = {}
    try:
        for n in systems:
            opened[n] = _open_readable(n, root, workload_name)
            populate(opened[n], events, tx_events)
        for r, order in enumerate(rotations(systems, sizes.rounds)):
            keys = rnd.choices(names, k=sizes.stream_reads)
            for name in order:
                read = opened[name].read_stream

                def run(read: Callable[[str], Any] = read, keys: list[str] = keys) -> None:
                    for k in keys:
                        read(k)

                per_round[name].append(timed(run))
                if r == 0:
                    got = read(keys[0])
                    assert [e[0] for e in got] == list(range(1, sizes.stream_events + 1))
    finally:
        for s in opened.values():
            s.close()
    out = summarise(
        per_round,
        sizes.stream_reads,
        events_per_stream=sizes.stream_events,
        events_per_tx_written=tx_events,
    )
    for r in out.values():
        r["events_per_s"] = r["ops_per_s"] * sizes.stream_events
    return out


@workload("reopen", unit="reopens", needs=ReadableSystem)
def reopen(systems: list[str], sizes: Sizes, root: Path) -> dict[str, Any]:
    payloads = make_payloads(4096, seed=9, size=sizes.payload_bytes)
    names = [stream_name(i) for i in range(sizes.reopen_streams)]
    bulk = [(s, "opened", payloads[i % 4096]) for i, s in enumerate(names)]
    n_tail = sizes.reopen_tail_txs * sizes.batch_events
    tail = [(names[i % len(names)], "deposited", payloads[(i + 7) % 4096]) for i in range(n_tail)]
    probe = names[len(names) // 2]
    per_round: dict[str, list[float]] = {n: [] for n in systems}
    classes = {n: _readable_class(n) for n in systems}
    paths: dict[str, Path] = {}
    for n in systems:
        s = open_system(n, root, "reopen")
        paths[n] = s.path
        try:
            populate(s, bulk, sizes.batch_events)
            s.checkpoint()
            populate(s, tail, sizes.batch_events)
        finally:
            s.close()

    def reopen_once(name: str) -> None:
        s = classes[name](paths[name], False)
        try:
            assert s.get(probe) is not None
        finally:
            s.close()

    for name in systems:  # warm the page cache alike
        reopen_once(name)
    for order in rotations(systems, sizes.reopen_rounds):
        for name in order:
            per_round[name].append(timed(partial(reopen_once, name)))
    return summarise(per_round, 1, streams=sizes.reopen_streams, tail_events=n_tail)


# The backup workloads (backup.py), after the others in the report.
workload("backup_lag", unit="1/lag", needs=ReplicatedSystem)(backup.backup_lag)
workload("restore", unit="events", needs=ReplicatedSystem)(backup.restore)
workload("backup_flush", unit="flushes", needs=ReplicatedSystem)(backup.backup_flush)
workload("backup_shipping", unit="events", needs=ReplicatedSystem)(backup.backup_shipping)
workload("backup_overhead", unit="events", needs=ReplicatedSystem)(backup.backup_overhead)
