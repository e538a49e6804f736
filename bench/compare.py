"""Compare the engine with the alternatives a user would pick, in one process run.

Usage::

    python bench/compare.py [--quick] [--json] [--plot]

``--quick`` uses smaller sizes (under 3 minutes on 2 cores); ``--json`` prints exactly
one JSON object on stdout (progress goes to stderr)::

    {"workloads": {"<workload>": {"<system>": {"ops_per_s": <float>, ...}}},
     "machine": {...}, "skipped": {...}, "notes": {...}}

``--plot`` writes ``bench/results/compare.png`` (one subplot per workload, one bar
per system, log scale).

Method. Every workload first builds one database per system from the same events
(the same streams, types, 100-byte payloads and transaction boundaries), then runs
``rounds`` timed rounds; in each round every system runs the same operations, and
the order of the systems rotates from round to round, so machine drift (other jobs,
page-cache or CPU-frequency changes) hits all systems alike. ``ops_per_s`` is the
median over rounds; ``engine_speedup`` is the engine's ``ops_per_s`` divided by the
system's (> 1: the engine is faster). The garbage collector is run before each
timed block.

Systems, each through its own idiomatic API:

``engine``
    ``engine.open(path, sync="none")`` (``sync="commit"`` for ``append_durable``);
    ``tx.extend`` for batches, ``db.append`` for single events, ``db.get``,
    ``db.read_stream``. The engine assigns versions itself and folds the state.
``lmdb``
    raw py-lmdb as a hand-rolled event store: one key per event,
    ``stream + b"\\0" + version`` (8-byte big-endian), value ``type + b"\\0" + data``;
    batches with ``cursor.putmulti``; the current state is the stream's last
    event (``set_range`` + ``prev``), a stream read a prefix range scan.
    ``sync=False, metasync=False`` except for ``append_durable`` (``sync=True``).
``sqlite``
    stdlib ``sqlite3``, WAL, table ``events(stream, version, type, data,
    PRIMARY KEY(stream, version))``; ``executemany`` in one ``BEGIN``/``COMMIT``;
    current state ``ORDER BY version DESC LIMIT 1``. ``synchronous=NORMAL`` (no fsync
    per commit in WAL mode) except ``append_durable`` (``synchronous=FULL``).
``eventsourcing``
    the PyPI ``eventsourcing`` library's SQLite persistence module, used through its
    **recorder API** directly (``SQLiteApplicationRecorder.insert_events`` of
    ``StoredEvent`` rows, ``select_events``): the library's fastest path, without
    the Application/Aggregate layer's domain objects and JSON transcoding, so its
    numbers are an upper bound for an eventsourcing application. Its datastore
    uses WAL; it has no ``synchronous`` setting, so for the non-durable workloads
    ``PRAGMA synchronous=NORMAL`` is set on its pooled connection (as for
    ``sqlite``); ``append_durable`` keeps its default (``FULL``).
    ``append_batch`` also measures the **Application + Aggregate** API in the same
    rotation (reported as ``application_api_ops_per_s`` and the table row
    ``eventsourcing/app``): one ``Account`` aggregate per stream, held in
    memory between batches (no ``repository.get`` replay timed), a ``Deposited``
    event per event (payload as ``str``: the default transcoder has no ``bytes``),
    and one ``app.save(*touched)`` per batch.

lmdb, sqlite and eventsourcing get each stream's next version from an in-memory
counter the benchmark keeps (what an application knows from the aggregate it
loaded); computing it is part of their timed work, as it is inside the engine.

Workloads (``ops`` is what ``ops_per_s`` counts):

``append_batch``
    transactions of 1000 events of 100 B over 10k streams, no fsync per
    transaction where the system allows it; ops = events.
``append_durable``
    one event per transaction, durable when the call returns; ops = commits.
``read_state``
    random point reads of a stream's current state (value of its last event) over
    ``state_streams`` streams of 2 events each; ops = reads.
``read_stream``
    all events of a random stream (``stream_events`` events, written interleaved
    with other streams in transactions of ``stream_tx_events`` events); ops = streams
    read (``events_per_s`` is reported too).
``reopen``
    a database holding ``reopen_streams`` streams (one event each; the engine
    snapshots after them) and a tail of ``reopen_tail_txs`` transactions of 1000
    events; timed: open, answer one state read, close. ops_per_s = 1/seconds. The
    engine loads its memory image (snapshot + tail replay) here; the disk-based
    systems load nothing, which is what buys them this workload and costs them
    ``read_state``.

Skipped for now: ``backup_lag`` and ``restore`` against Litestream; the engine's
log backup does not exist yet.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import gc
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lmdb

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python bench/compare.py` from a source checkout
    sys.path.insert(1, str(REPO_ROOT))

RESULTS_DIR = Path(__file__).resolve().parent / "results"

SYSTEMS = ("engine", "lmdb", "sqlite", "eventsourcing")
WORKLOADS = ("append_batch", "append_durable", "read_state", "read_stream", "reopen")
SKIPPED = {
    "backup_lag": "skipped: vs Litestream; the engine's log backup does not exist yet",
    "restore": "skipped: vs Litestream; the engine's log backup does not exist yet",
}
NOTES = {
    "engine": "engine.open; tx.extend / db.append / db.get / db.read_stream",
    "lmdb": "raw py-lmdb, key stream\\0version, putmulti; state = last key of the stream",
    "sqlite": "stdlib sqlite3, WAL, synchronous NORMAL (FULL when durable), executemany",
    "eventsourcing": "eventsourcing SQLite recorder API (SQLiteApplicationRecorder."
    "insert_events / select_events), its fastest path; the 'eventsourcing/app' row is "
    "Application+Aggregate (append_batch only)",
}
UNITS = {
    "append_batch": "events",
    "append_durable": "commits",
    "read_state": "reads",
    "read_stream": "streams",
    "reopen": "reopens",
}

Event = tuple[str, str, bytes]


@dataclass(frozen=True)
class Sizes:
    rounds: int
    batch_events: int  # events per transaction (append_batch, populating)
    batch_streams: int  # append_batch cycles over this many streams
    batch_txs: int  # transactions per system per round
    durable_commits: int  # commits per system per round
    state_streams: int
    state_reads: int  # reads per system per round
    stream_count: int
    stream_events: int  # events per stream (read_stream)
    stream_tx_events: int  # events per transaction when populating read_stream
    stream_reads: int  # streams read per system per round
    reopen_streams: int
    reopen_tail_txs: int  # tail transactions of batch_events events
    reopen_rounds: int
    payload_bytes: int = 100


FULL = Sizes(
    rounds=7, batch_events=1000, batch_streams=10_000, batch_txs=40, durable_commits=300,
    state_streams=100_000, state_reads=50_000, stream_count=1000, stream_events=100,
    stream_tx_events=100, stream_reads=300, reopen_streams=300_000, reopen_tail_txs=300,
    reopen_rounds=5,
)  # fmt: skip
QUICK = Sizes(
    rounds=7, batch_events=1000, batch_streams=10_000, batch_txs=30, durable_commits=300,
    state_streams=20_000, state_reads=20_000, stream_count=300, stream_events=50,
    stream_tx_events=100, stream_reads=100, reopen_streams=100_000, reopen_tail_txs=100,
    reopen_rounds=3,
)  # fmt: skip
TINY = Sizes(
    rounds=2, batch_events=50, batch_streams=100, batch_txs=2, durable_commits=3,
    state_streams=100, state_reads=50, stream_count=10, stream_events=5, stream_tx_events=7,
    stream_reads=5, reopen_streams=200, reopen_tail_txs=2, reopen_rounds=2,
)  # fmt: skip


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------- data


def make_payloads(n: int, size: int, seed: int = 1) -> list[bytes]:
    """``size``-byte JSON-like bodies, about half random hex (compress like real data)."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        body = b'{"seq":%d,"key":"%s","note":"' % (i, rnd.randbytes(24).hex().encode())
        out.append((body + b"." * size)[: size - 2] + b'"}')
    return out


def stream_name(i: int) -> str:
    return f"account-{i:07d}"


def batches(events: list[Event], size: int) -> Iterator[list[Event]]:
    for i in range(0, len(events), size):
        yield events[i : i + size]


# ------------------------------------------------------------------ systems


class System(abc.ABC):
    """One store under test. Subclasses use their own idiomatic API."""

    name = ""

    def __init__(self, path: Path, durable: bool) -> None:
        self.path = path
        self.durable = durable
        self.versions: dict[str, int] = {}  # next-version bookkeeping (not the engine)

    def _versioned(self, events: list[Event]) -> list[tuple[str, int, str, bytes]]:
        versions = self.versions
        out = []
        for s, t, d in events:
            v = versions.get(s, 0) + 1
            versions[s] = v
            out.append((s, v, t, d))
        return out

    @abc.abstractmethod
    def append_batch(self, events: list[Event]) -> None:
        ...

    def append_one(self, stream: str, etype: str, data: bytes) -> None:
        self.append_batch([(stream, etype, data)])

    def get(self, stream: str) -> bytes | None:
        # Optional: a system measured on append_batch only (eventsourcing/app) lacks it.
        raise NotImplementedError(f"{self.name} is measured on append_batch only")

    def read_stream(self, stream: str) -> list[tuple[int, str, bytes]]:
        # Optional: a system measured on append_batch only (eventsourcing/app) lacks it.
        raise NotImplementedError(f"{self.name} is measured on append_batch only")

    def checkpoint(self) -> None:  # noqa: B027 - a hook: most systems need nothing here
        """Called once between the bulk and the tail of the reopen database."""

    @abc.abstractmethod
    def close(self) -> None:
        ...


class EngineSystem(System):
    name = "engine"

    def __init__(self, path: Path, durable: bool) -> None:
        import engine

        super().__init__(path, durable)
        self.db = engine.open(str(path), sync="commit" if durable else "none")

    def append_batch(self, events: list[Event]) -> None:
        with self.db.transaction() as tx:
            tx.extend(events)

    def append_one(self, stream: str, etype: str, data: bytes) -> None:
        self.db.append(stream, etype, data)

    def get(self, stream: str) -> bytes | None:
        return self.db.get(stream)

    def read_stream(self, stream: str) -> list[tuple[int, str, bytes]]:
        return [(e.version, e.type, e.data) for e in self.db.read_stream(stream)]

    def checkpoint(self) -> None:
        self.db.snapshot()

    def close(self) -> None:
        self.db.close()


class LmdbSystem(System):
    name = "lmdb"

    def __init__(self, path: Path, durable: bool) -> None:
        super().__init__(path, durable)
        self.env = lmdb.open(str(path), map_size=8 << 30, sync=durable, metasync=durable)

    @staticmethod
    def _key(stream: str, version: int) -> bytes:
        return stream.encode() + b"\0" + version.to_bytes(8, "big")

    def append_batch(self, events: list[Event]) -> None:
        versions = self.versions
        items: list[tuple[bytes, bytes]] = []
        add = items.append
        for s, t, d in events:
            v = versions.get(s, 0) + 1
            versions[s] = v
            add((s.encode() + b"\0" + v.to_bytes(8, "big"), t.encode() + b"\0" + d))
        with self.env.begin(write=True) as txn:
            txn.cursor().putmulti(items)

    def append_one(self, stream: str, etype: str, data: bytes) -> None:
        v = self.versions.get(stream, 0) + 1
        self.versions[stream] = v
        with self.env.begin(write=True) as txn:
            txn.put(self._key(stream, v), etype.encode() + b"\0" + data)

    def get(self, stream: str) -> bytes | None:
        prefix = stream.encode() + b"\0"
        with self.env.begin() as txn:
            cur = txn.cursor()
            found = cur.set_range(stream.encode() + b"\x01")
            found = cur.prev() if found else cur.last()
            if not found or not cur.key().startswith(prefix):
                return None
            return cur.value().split(b"\0", 1)[1]

    def read_stream(self, stream: str) -> list[tuple[int, str, bytes]]:
        prefix = stream.encode() + b"\0"
        n = len(prefix)
        out: list[tuple[int, str, bytes]] = []
        with self.env.begin() as txn:
            cur = txn.cursor()
            if not cur.set_range(prefix):
                return out
            for k, v in cur:
                if not k.startswith(prefix):
                    break
                t, d = v.split(b"\0", 1)
                out.append((int.from_bytes(k[n:], "big"), t.decode(), d))
        return out

    def close(self) -> None:
        self.env.close()


class SqliteSystem(System):
    name = "sqlite"

    def __init__(self, path: Path, durable: bool) -> None:
        super().__init__(path, durable)
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS events (stream TEXT NOT NULL, version INTEGER NOT NULL,"
            " type TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (stream, version))"
        )

    def append_batch(self, events: list[Event]) -> None:
        rows = self._versioned(events)
        c = self.conn
        c.execute("BEGIN")
        try:
            c.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", rows)
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def get(self, stream: str) -> bytes | None:
        row = self.conn.execute(
            "SELECT data FROM events WHERE stream = ? ORDER BY version DESC LIMIT 1", (stream,)
        ).fetchone()
        return None if row is None else row[0]

    def read_stream(self, stream: str) -> list[tuple[int, str, bytes]]:
        return self.conn.execute(
            "SELECT version, type, data FROM events WHERE stream = ? ORDER BY version", (stream,)
        ).fetchall()

    def close(self) -> None:
        self.conn.close()


class EventsourcingSystem(System):
    name = "eventsourcing"

    def __init__(self, path: Path, durable: bool) -> None:
        from eventsourcing.persistence import StoredEvent
        from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

        super().__init__(path, durable)
        self._stored_event = StoredEvent
        self.datastore = SQLiteDatastore(str(path), originator_id_type="text")
        self.recorder = SQLiteApplicationRecorder(self.datastore)
        self.recorder.create_table()
        if not durable:
            # The datastore has no synchronous option; set it on the pooled connection,
            # which single-threaded use keeps reusing (checked in the smoke test).
            with self.datastore.get_connection(commit=True) as conn:
                conn._sqlite_conn.execute("PRAGMA synchronous=NORMAL")

    def append_batch(self, events: list[Event]) -> None:
        se = self._stored_event
        versions = self.versions
        stored: list[Any] = []
        add = stored.append
        for s, t, d in events:
            v = versions.get(s, 0) + 1
            versions[s] = v
            add(se(originator_id=s, originator_version=v, topic=t, state=d))
        self.recorder.insert_events(stored)

    def get(self, stream: str) -> bytes | None:
        found = self.recorder.select_events(stream, desc=True, limit=1)
        return found[0].state if found else None

    def read_stream(self, stream: str) -> list[tuple[int, str, bytes]]:
        return [
            (e.originator_version, e.topic, e.state) for e in self.recorder.select_events(stream)
        ]

    def synchronous(self) -> int:
        with self.datastore.get_connection(commit=False) as conn:
            return int(conn._sqlite_conn.execute("PRAGMA synchronous").fetchone()[0])

    def close(self) -> None:
        self.datastore.close()


class EventsourcingAppSystem(System):
    """eventsourcing's Application + Aggregate layer (append_batch only, reported as
    ``application_api_ops_per_s`` under ``eventsourcing``).

    Aggregates stay in memory between batches (as an application holding them would),
    so no ``repository.get`` replay is timed: only the domain events, their JSON
    transcoding and ``app.save`` of the touched aggregates in one transaction. The
    event carries the payload as a ``str`` (the default transcoder has no ``bytes``).
    """

    name = "eventsourcing_app"

    def __init__(self, path: Path, durable: bool) -> None:
        from eventsourcing.application import Application

        super().__init__(path, durable)
        self.app: Any = Application(
            env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
        )
        if not durable:
            with self.app.recorder.datastore.get_connection(commit=True) as conn:  # type: ignore[attr-defined]
                conn._sqlite_conn.execute("PRAGMA synchronous=NORMAL")
        self.aggregates: dict[str, Any] = {}

    def append_batch(self, events: list[Event]) -> None:
        aggs = self.aggregates
        touched = {}
        for s, _t, d in events:
            a = aggs.get(s)
            if a is None:
                a = aggs[s] = Account(s)
            a.deposit(d.decode("ascii"))
            touched[s] = a
        self.app.save(*touched.values())

    def close(self) -> None:
        self.app.close()


try:
    from eventsourcing.domain import Aggregate as _Aggregate
    from eventsourcing.domain import event as _event

    _HAVE_EVENTSOURCING = True
except ImportError:  # compare.py still runs the other systems
    _HAVE_EVENTSOURCING = False

if _HAVE_EVENTSOURCING:

    class Account(_Aggregate):
        """The aggregate of the Application-API variant: one per stream."""

        def __init__(self, name: str) -> None:
            self.name = name
            self.last = ""

        @_event("Deposited")
        def deposit(self, note: str) -> None:
            self.last = note


SYSTEM_CLASSES: dict[str, type[System]] = {
    c.name: c
    for c in (EngineSystem, LmdbSystem, SqliteSystem, EventsourcingSystem, EventsourcingAppSystem)
}


def open_system(name: str, root: Path, workload: str, durable: bool = False) -> System:
    path = root / workload / name
    if name in ("engine", "lmdb"):
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path = path.with_suffix(".db")
    return SYSTEM_CLASSES[name](path, durable)


# ---------------------------------------------------------------- measuring


def _rotations(systems: list[str], rounds: int) -> Iterator[list[str]]:
    n = len(systems)
    for r in range(rounds):
        k = r % n
        yield systems[k:] + systems[:k]


def _timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _summarise(per_round: dict[str, list[float]], ops: int, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, secs in per_round.items():
        rates = [ops / s for s in secs]
        out[name] = {
            "ops_per_s": float(statistics.median(rates)),
            "ops_per_s_best": float(max(rates)),
            "ops_per_round": ops,
            "rounds": len(secs),
            "unit": "",
            **extra,
        }
    return out


def _populate(sys_: System, events: list[Event], tx_events: int) -> None:
    for chunk in batches(events, tx_events):
        sys_.append_batch(chunk)


def workload_append_batch(systems: list[str], sizes: Sizes, root: Path) -> dict[str, Any]:
    payloads = make_payloads(sizes.batch_events, sizes.payload_bytes)
    names = [stream_name(i) for i in range(sizes.batch_streams)]
    reported = list(systems)
    if "eventsourcing" in systems:  # its Application API too, in the same rotation
        systems = [*systems, "eventsourcing_app"]
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
        if "eventsourcing_app" in opened:  # create every aggregate before timing
            for start in range(0, ns, be):
                opened["eventsourcing_app"].append_batch(
                    [(n, "opened", payloads[0]) for n in names[start : start + be]]
                )
        for order in _rotations(systems, sizes.rounds):
            for name in order:
                per_round[name].append(_timed(partial(run, name)))
    finally:
        for s in opened.values():
            s.close()
    out = _summarise(per_round, sizes.batch_txs * be, events_per_tx=be)
    app = out.pop("eventsourcing_app", None)
    if app is not None:
        out["eventsourcing"]["application_api_ops_per_s"] = app["ops_per_s"]
        out["eventsourcing"]["api"] = "recorder (application_api_ops_per_s: Application+Aggregate)"
    assert list(out) == reported
    return out


def workload_append_durable(systems: list[str], sizes: Sizes, root: Path) -> dict[str, Any]:
    payloads = make_payloads(64, sizes.payload_bytes)
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
        for order in _rotations(systems, sizes.rounds):
            for name in order:
                per_round[name].append(_timed(partial(run, name)))
    finally:
        for s in opened.values():
            s.close()
    return _summarise(per_round, sizes.durable_commits)


def workload_read_state(systems: list[str], sizes: Sizes, root: Path) -> dict[str, Any]:
    payloads = make_payloads(1024, sizes.payload_bytes, seed=5)
    names = [stream_name(i) for i in range(sizes.state_streams)]
    events = [(s, "opened", payloads[i % 1024]) for i, s in enumerate(names)]
    events += [(s, "deposited", payloads[(i + 3) % 1024]) for i, s in enumerate(names)]
    want = {s: payloads[(i + 3) % 1024] for i, s in enumerate(names)}
    rnd = random.Random(7)
    per_round: dict[str, list[float]] = {n: [] for n in systems}
    opened: dict[str, System] = {}
    try:
        for n in systems:
            opened[n] = open_system(n, root, "read_state")
            _populate(opened[n], events, sizes.batch_events)
        for r, order in enumerate(_rotations(systems, sizes.rounds)):
            keys = rnd.choices(names, k=sizes.state_reads)
            for name in order:
                get = opened[name].get

                def run(get: Callable[[str], bytes | None] = get, keys: list[str] = keys) -> None:
                    for k in keys:
                        get(k)

                per_round[name].append(_timed(run))
                if r == 0:  # correctness, outside the timing
                    assert all(get(k) == want[k] for k in keys[:20]), name
    finally:
        for s in opened.values():
            s.close()
    return _summarise(per_round, sizes.state_reads, streams=sizes.state_streams)


def workload_read_stream(systems: list[str], sizes: Sizes, root: Path) -> dict[str, Any]:
    payloads = make_payloads(1024, sizes.payload_bytes, seed=6)
    names = [stream_name(i) for i in range(sizes.stream_count)]
    events = [
        (s, "deposited", payloads[(v * 31 + i) % 1024])
        for v in range(sizes.stream_events)
        for i, s in enumerate(names)
    ]
    rnd = random.Random(8)
    per_round: dict[str, list[float]] = {n: [] for n in systems}
    opened: dict[str, System] = {}
    try:
        for n in systems:
            opened[n] = open_system(n, root, "read_stream")
            _populate(opened[n], events, sizes.stream_tx_events)
        for r, order in enumerate(_rotations(systems, sizes.rounds)):
            keys = rnd.choices(names, k=sizes.stream_reads)
            for name in order:
                read = opened[name].read_stream

                def run(read: Callable[[str], Any] = read, keys: list[str] = keys) -> None:
                    for k in keys:
                        read(k)

                per_round[name].append(_timed(run))
                if r == 0:
                    got = read(keys[0])
                    assert [e[0] for e in got] == list(range(1, sizes.stream_events + 1))
    finally:
        for s in opened.values():
            s.close()
    out = _summarise(
        per_round,
        sizes.stream_reads,
        events_per_stream=sizes.stream_events,
        events_per_tx_written=sizes.stream_tx_events,
    )
    for r in out.values():
        r["events_per_s"] = r["ops_per_s"] * sizes.stream_events
    return out


def workload_reopen(systems: list[str], sizes: Sizes, root: Path) -> dict[str, Any]:
    payloads = make_payloads(4096, sizes.payload_bytes, seed=9)
    names = [stream_name(i) for i in range(sizes.reopen_streams)]
    bulk = [(s, "opened", payloads[i % 4096]) for i, s in enumerate(names)]
    n_tail = sizes.reopen_tail_txs * sizes.batch_events
    tail = [(names[i % len(names)], "deposited", payloads[(i + 7) % 4096]) for i in range(n_tail)]
    probe = names[len(names) // 2]
    per_round: dict[str, list[float]] = {n: [] for n in systems}
    paths: dict[str, Path] = {}
    for n in systems:
        s = open_system(n, root, "reopen")
        paths[n] = s.path
        try:
            _populate(s, bulk, sizes.batch_events)
            s.checkpoint()
            _populate(s, tail, sizes.batch_events)
        finally:
            s.close()

    def reopen(name: str) -> None:
        s = SYSTEM_CLASSES[name](paths[name], False)
        try:
            assert s.get(probe) is not None
        finally:
            s.close()

    for name in systems:  # warm the page cache alike
        reopen(name)
    for order in _rotations(systems, sizes.reopen_rounds):
        for name in order:
            per_round[name].append(_timed(partial(reopen, name)))
    return _summarise(per_round, 1, streams=sizes.reopen_streams, tail_events=n_tail)


WORKLOAD_FUNCS: dict[str, Callable[[list[str], Sizes, Path], dict[str, Any]]] = {
    "append_batch": workload_append_batch,
    "append_durable": workload_append_durable,
    "read_state": workload_read_state,
    "read_stream": workload_read_stream,
    "reopen": workload_reopen,
}


def machine_info() -> dict[str, Any]:
    import lmdb as _lmdb

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sqlite": sqlite3.sqlite_version,
        "lmdb": f"py-lmdb {_lmdb.__version__}, LMDB {'.'.join(map(str, _lmdb.version()))}",
    }
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        info["eventsourcing"] = version("eventsourcing")
    with contextlib.suppress(OSError):
        info["loadavg"] = os.getloadavg()
    return info


def run(
    sizes: Sizes,
    *,
    systems: tuple[str, ...] = SYSTEMS,
    workloads: tuple[str, ...] = WORKLOADS,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run ``workloads`` on ``systems``; return the JSON-ready result object."""
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="engine-compare-")) if workdir is None else workdir
    results: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        for w in workloads:
            t0 = time.perf_counter()
            log(f"[compare] {w} ...")
            res = WORKLOAD_FUNCS[w](list(systems), sizes, root / "data")
            eng = res.get("engine", {}).get("ops_per_s")
            for r in res.values():
                r["unit"] = UNITS[w]
                r["engine_speedup"] = float(eng / r["ops_per_s"]) if eng else None
                if eng and "application_api_ops_per_s" in r:
                    r["engine_speedup_vs_application_api"] = float(
                        eng / r["application_api_ops_per_s"]
                    )
            results[w] = res
            log(f"[compare] {w} done in {time.perf_counter() - t0:.1f}s")
            shutil.rmtree(root / "data" / w, ignore_errors=True)
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return {
        "workloads": results,
        "machine": machine_info(),
        "sizes": asdict(sizes),
        "seconds": round(time.perf_counter() - started, 1),
        "skipped": SKIPPED,
        "notes": NOTES,
    }


# ------------------------------------------------------------------ output


def _fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.2f}"


def print_table(result: dict[str, Any]) -> None:
    rows = []
    for w, res in result["workloads"].items():
        for name, r in res.items():
            sp = r.get("engine_speedup")
            rows.append((w, name, _fmt_rate(r["ops_per_s"]), r["unit"],
                         "-" if sp is None else f"{sp:.2f}x"))  # fmt: skip
            if "application_api_ops_per_s" in r:
                sp = r.get("engine_speedup_vs_application_api")
                rows.append((w, f"{name}/app", _fmt_rate(r["application_api_ops_per_s"]),
                             r["unit"], "-" if sp is None else f"{sp:.2f}x"))  # fmt: skip
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain fallback
        print(f"{'workload':15s} {'system':14s} {'ops/s':>14s} {'unit':8s} {'engine/sys':>10s}")
        for row in rows:
            print(f"{row[0]:15s} {row[1]:14s} {row[2]:>14s} {row[3]:8s} {row[4]:>10s}")
    else:
        table = Table(title="engine vs alternatives (median ops/s over rounds)")
        for col, just in (("workload", "left"), ("system", "left"), ("ops/s", "right"),
                          ("unit", "left"), ("engine ÷ system", "right")):  # fmt: skip
            table.add_column(col, justify=just)  # type: ignore[arg-type]
        last = None
        for row in rows:
            table.add_row(*(row if row[0] != last else ("", *row[1:])))
            last = row[0]
        Console().print(table)
    print("notes:")
    for name, note in result["notes"].items():
        print(f"  {name}: {note}")
    for w, why in result["skipped"].items():
        print(f"  {w}: {why}")
    print(f"  {result['machine']['cpu_count']} CPUs, {result['machine']['platform']}, "
          f"python {result['machine']['python']}, {result['seconds']}s")  # fmt: skip


def plot(result: dict[str, Any], path: Path) -> Path:
    """One subplot per workload, one bar per system (log scale), the notes in a spare panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(result["workloads"])
    cols = min(3, len(workloads))
    rows = (len(workloads) + 1 + cols - 1) // cols  # +1: the notes panel
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False)
    flat = list(axes.flat)
    colours = {"engine": "#d62728", "lmdb": "#1f77b4", "sqlite": "#2ca02c",
               "eventsourcing": "#9467bd", "eventsourcing/app": "#c5b0d5"}  # fmt: skip
    for ax, w in zip(flat, workloads, strict=False):
        res = result["workloads"][w]
        names = list(res)
        vals = [res[n]["ops_per_s"] for n in names]
        if "application_api_ops_per_s" in res.get("eventsourcing", {}):
            names.append("eventsourcing/app")
            vals.append(res["eventsourcing"]["application_api_ops_per_s"])
        bars = ax.bar(names, vals, color=[colours.get(n, "grey") for n in names])
        ax.set_yscale("log")
        ax.set_ylim(min(vals) / 5, max(vals) * 3)  # bars start well below the smallest
        ax.set_title(w)
        ax.set_ylabel(f"{UNITS[w]}/s (log scale)")
        ax.tick_params(axis="x", rotation=25)
        for b, v in zip(bars, vals, strict=True):
            ax.annotate(_fmt_rate(v), (b.get_x() + b.get_width() / 2, v), ha="center",
                        va="bottom", fontsize=8)  # fmt: skip
    notes = flat[len(workloads)]
    notes.axis("off")
    m = result["machine"]
    text = [f"{m['cpu_count']} CPUs, python {m['python']}, {m['date']}",
            "median ops/s over rotated rounds; higher is better", ""]  # fmt: skip
    text += [f"{k}: {v}" for k, v in result["notes"].items()]
    text += [f"{k}: {v}" for k, v in result["skipped"].items()]
    import textwrap

    notes.text(0, 1, "\n".join(textwrap.fill(t, 60) for t in text), va="top", fontsize=7.5,
               family="monospace")  # fmt: skip
    for ax in flat[len(workloads) + 1 :]:
        ax.axis("off")
    fig.suptitle("engine vs alternatives")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (< 3 min on 2 cores)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--plot", action="store_true", help="write bench/results/compare.png")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # smoke tests
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset")
    args = p.parse_args(argv)
    systems = tuple(s for s in args.systems.split(",") if s)
    workloads = tuple(w for w in args.workloads.split(",") if w)
    bad = [s for s in systems if s not in SYSTEMS] + [w for w in workloads if w not in WORKLOADS]
    if bad:
        p.error(f"unknown system or workload: {', '.join(bad)}")
    sizes = TINY if args.tiny else QUICK if args.quick else FULL
    result = run(sizes, systems=systems, workloads=workloads)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    if args.plot:
        out = plot(result, RESULTS_DIR / "compare.png")
        log(f"[compare] plot written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
