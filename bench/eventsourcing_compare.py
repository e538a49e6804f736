"""engine.contrib.eventsourcing beside eventsourcing's own SQLite module.

Usage::

    python bench/eventsourcing_compare.py [--quick] [--rounds R] [--json]

Both persistence modules are driven through eventsourcing itself, in one process and
one run, in alternating rounds (the order flips each round; medians reported):

* the **recorder API**: ``factory.application_recorder()`` of
  ``PERSISTENCE_MODULE=engine.contrib.eventsourcing`` (``ENGINE_PATH``) and of
  ``eventsourcing.sqlite`` (``SQLITE_DBNAME``, a file: WAL), ``insert_events`` of
  ``StoredEvent`` rows, ``select_events``, ``select_notifications``;
* the **Application API**: an ``Application`` saving ``Aggregate`` events
  (``app.save``), ``app.repository.get``, ``app.events.get(..., desc=True,
  limit=1)``, ``app.notification_log.select``.

Rows: insert (save) 1 event per call, durable (engine ``ENGINE_SYNC=commit``, SQLite
at its default ``synchronous=FULL``) and not (``ENGINE_SYNC=none``, SQLite
``PRAGMA synchronous=NORMAL`` on its pooled connection); 100 events per call (not
durable); reading a 100-event aggregate written in one call and in 100 calls (the
100-call aggregates are written round robin, as concurrent aggregates are); its
latest event alone; 10,000 notifications in one select. Each 1-event-per-call
insert goes to one of 100 aggregates in turn, at its next version.

Ratios are engine / SQLite throughput: above 1 the engine is faster. Writes
``bench/results/latest/eventsourcing_compare.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ only (benchlib)
from benchlib import LATEST_DIR, import_engine, machine_info

engine = import_engine()
from eventsourcing.application import Application  # noqa: E402
from eventsourcing.domain import Aggregate, event  # noqa: E402
from eventsourcing.persistence import InfrastructureFactory, StoredEvent  # noqa: E402

SYSTEMS = ("engine", "sqlite")
TOPIC = "bench.events:Account.Deposited"
STATE = b'{"amount":{"_type_":"decimal_str","_data_":"10.00"},"note":"' + b"x" * 40 + b'"}'


@dataclass(frozen=True)
class Sizes:
    single: int  # 1-event calls per round (not durable)
    single_durable: int  # 1-event calls per round (durable)
    batches: int  # 100-event calls per round
    aggregates: int  # 100-event aggregates read per round
    notifications: int  # events selected in one select_notifications


QUICK = Sizes(single=1000, single_durable=300, batches=50, aggregates=50,
              notifications=10_000)
FULL = Sizes(single=3000, single_durable=1000, batches=200, aggregates=200,
             notifications=10_000)
TINY = Sizes(single=5, single_durable=3, batches=2, aggregates=2, notifications=200)


def env_for(system: str, path: Path, durable: bool) -> dict[str, str]:
    """The environment naming ``system``'s persistence module at ``path``."""
    if system == "engine":
        return {"PERSISTENCE_MODULE": "engine.contrib.eventsourcing",
                "ENGINE_PATH": str(path), "ENGINE_SYNC": "commit" if durable else "none"}
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(path / "es.db")}


def _sqlite_not_durable(datastore: Any) -> None:
    # eventsourcing's SQLite datastore has no synchronous setting: set it on the pooled
    # connection, which single-threaded use keeps reusing (as bench/comparison does).
    with datastore.get_connection(commit=True) as conn:
        conn._sqlite_conn.execute("PRAGMA synchronous=NORMAL")


class Store:
    """One system's recorder and application over one fresh directory."""

    def __init__(self, system: str, root: Path, durable: bool) -> None:
        self.system = system
        self.path = root / f"{system}-{'durable' if durable else 'fast'}-{uuid4().hex[:8]}"
        self.path.mkdir(parents=True)
        env = env_for(system, self.path, durable)
        self.factory: Any = InfrastructureFactory.construct(dict(env))
        self.recorder: Any = self.factory.application_recorder()
        self.app = BenchApp(env={**env, "SQLITE_DBNAME": str(self.path / "app.db"),
                                 "ENGINE_PATH": str(self.path / "app")})
        if system == "sqlite" and not durable:
            _sqlite_not_durable(self.factory.datastore)
            _sqlite_not_durable(self.app.factory.datastore)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.app.close()
        self.factory.close()


class BenchApp(Application[UUID]):
    log_section_size = 10_000  # one select of 10,000 notifications


class Account(Aggregate):
    @event("Deposited")
    def deposit(self, note: str) -> None:
        self.note = note


def _events(oid: UUID, first: int, n: int) -> list[StoredEvent]:
    return [StoredEvent(oid, v, TOPIC, STATE) for v in range(first, first + n)]


# Each workload: (store, sizes) -> (operations, seconds). Set-up is not timed.
Workload = Callable[[Store, Sizes], tuple[int, float]]


def rec_insert_one(store: Store, sizes: Sizes, n: int) -> tuple[int, float]:
    oids = [uuid4() for _ in range(100)]
    versions = dict.fromkeys(oids, 0)
    insert = store.recorder.insert_events
    t = time.perf_counter()
    for i in range(n):
        oid = oids[i % 100]
        v = versions[oid] = versions[oid] + 1
        insert([StoredEvent(oid, v, TOPIC, STATE)])
    return n, time.perf_counter() - t


def rec_insert_hundred(store: Store, sizes: Sizes) -> tuple[int, float]:
    batches = [_events(uuid4(), 1, 100) for _ in range(sizes.batches)]
    insert = store.recorder.insert_events
    t = time.perf_counter()
    for b in batches:
        insert(b)
    return 100 * len(batches), time.perf_counter() - t


def _aggregates(store: Store, sizes: Sizes, calls: int) -> list[UUID]:
    """``sizes.aggregates`` aggregates of 100 events each, written in ``calls`` calls
    per aggregate (round robin over the aggregates)."""
    oids = [uuid4() for _ in range(sizes.aggregates)]
    per = 100 // calls
    for c in range(calls):
        for oid in oids:
            store.recorder.insert_events(_events(oid, 1 + c * per, per))
    return oids


def rec_select(store: Store, sizes: Sizes, calls: int) -> tuple[int, float]:
    oids = _aggregates(store, sizes, calls)
    select = store.recorder.select_events
    t = time.perf_counter()
    for oid in oids:
        got = select(oid)
    dt = time.perf_counter() - t
    assert len(got) == 100
    return len(oids), dt


def rec_latest(store: Store, sizes: Sizes) -> tuple[int, float]:
    oids = _aggregates(store, sizes, 100)
    select = store.recorder.select_events
    t = time.perf_counter()
    for oid in oids:
        got = select(oid, desc=True, limit=1)
    dt = time.perf_counter() - t
    assert got[0].originator_version == 100
    return len(oids), dt


def rec_notifications(store: Store, sizes: Sizes) -> tuple[int, float]:
    n = sizes.notifications
    for _ in range(n // 100):
        store.recorder.insert_events(_events(uuid4(), 1, 100))
    t = time.perf_counter()
    got = store.recorder.select_notifications(start=1, limit=n)
    dt = time.perf_counter() - t
    assert len(got) == n
    return n, dt


def app_save_one(store: Store, sizes: Sizes, n: int) -> tuple[int, float]:
    accounts = [Account() for _ in range(100)]
    store.app.save(*accounts)
    save = store.app.save
    t = time.perf_counter()
    for i in range(n):
        a = accounts[i % 100]
        a.deposit("x" * 40)
        save(a)
    return n, time.perf_counter() - t


def app_save_hundred(store: Store, sizes: Sizes) -> tuple[int, float]:
    accounts = []
    for _ in range(sizes.batches):
        a = Account()
        for _ in range(99):
            a.deposit("x" * 40)
        accounts.append(a)  # 100 pending events: Created + 99 Deposited
    save = store.app.save
    t = time.perf_counter()
    for a in accounts:
        save(a)
    return 100 * len(accounts), time.perf_counter() - t


def _app_aggregates(store: Store, sizes: Sizes, calls: int) -> list[UUID]:
    accounts = [Account() for _ in range(sizes.aggregates)]
    per = 100 // calls
    for c in range(calls):
        for a in accounts:
            for _ in range(per - (1 if c == 0 else 0)):  # Created is the first
                a.deposit("x" * 40)
            store.app.save(a)
    return [a.id for a in accounts]


def app_get(store: Store, sizes: Sizes, calls: int) -> tuple[int, float]:
    ids = _app_aggregates(store, sizes, calls)
    get = store.app.repository.get
    t = time.perf_counter()
    for i in ids:
        a = get(i)
    dt = time.perf_counter() - t
    assert a.version == 100
    return len(ids), dt


def app_latest(store: Store, sizes: Sizes) -> tuple[int, float]:
    ids = _app_aggregates(store, sizes, 100)
    get = store.app.events.get
    t = time.perf_counter()
    for i in ids:
        e = next(get(i, desc=True, limit=1))
    dt = time.perf_counter() - t
    assert e.originator_version == 100
    return len(ids), dt


def app_notifications(store: Store, sizes: Sizes) -> tuple[int, float]:
    n = sizes.notifications
    for _ in range(n // 100):
        a = Account()
        for _ in range(99):
            a.deposit("x" * 40)
        store.app.save(a)
    t = time.perf_counter()
    got = store.app.notification_log.select(start=1, limit=n)
    dt = time.perf_counter() - t
    assert len(got) == n
    return n, dt


@dataclass(frozen=True)
class Row:
    name: str
    api: str  # "recorder" or "application"
    unit: str
    durable: bool
    run: Workload


ROWS = [
    Row("insert 1 event per call, durable", "recorder", "events/s", True,
        lambda s, z: rec_insert_one(s, z, z.single_durable)),
    Row("insert 1 event per call", "recorder", "events/s", False,
        lambda s, z: rec_insert_one(s, z, z.single)),
    Row("insert 100 events per call", "recorder", "events/s", False, rec_insert_hundred),
    Row("select_events, 100 events written in 1 call", "recorder", "aggregates/s", False,
        lambda s, z: rec_select(s, z, 1)),
    Row("select_events, 100 events written in 100 calls", "recorder", "aggregates/s",
        False, lambda s, z: rec_select(s, z, 100)),
    Row("latest event (desc, limit 1)", "recorder", "reads/s", False, rec_latest),
    Row("select_notifications of 10,000", "recorder", "notifications/s", False,
        rec_notifications),
    Row("save 1 event per call, durable", "application", "events/s", True,
        lambda s, z: app_save_one(s, z, z.single_durable)),
    Row("save 1 event per call", "application", "events/s", False,
        lambda s, z: app_save_one(s, z, z.single)),
    Row("save 100 events per call", "application", "events/s", False, app_save_hundred),
    Row("repository.get, 100 events saved in 1 call", "application", "aggregates/s", False,
        lambda s, z: app_get(s, z, 1)),
    Row("repository.get, 100 events saved in 100 calls", "application", "aggregates/s",
        False, lambda s, z: app_get(s, z, 100)),
    Row("latest event (events.get desc, limit 1)", "application", "reads/s", False,
        app_latest),
    Row("notification_log.select of 10,000", "application", "notifications/s", False,
        app_notifications),
]


def run(sizes: Sizes, rounds: int, workdir: Path | None = None) -> dict[str, Any]:
    """Every row on both systems, ``rounds`` times (order flipped each round)."""
    root = Path(workdir or tempfile.mkdtemp(prefix="es-compare-"))
    started = time.perf_counter()
    results: dict[str, Any] = {}
    try:
        for row in ROWS:
            rates: dict[str, list[float]] = {s: [] for s in SYSTEMS}
            for r in range(rounds):
                for system in SYSTEMS if r % 2 == 0 else SYSTEMS[::-1]:
                    store = Store(system, root, row.durable)
                    try:
                        ops, seconds = row.run(store, sizes)
                    finally:
                        store.close()
                        shutil.rmtree(store.path, ignore_errors=True)
                    rates[system].append(ops / seconds)
            med = {s: statistics.median(v) for s, v in rates.items()}
            results[row.name] = {
                "api": row.api, "unit": row.unit, "durable": row.durable,
                "engine": med["engine"], "sqlite": med["sqlite"],
                "ratio": med["engine"] / med["sqlite"],
                "rounds": {s: v for s, v in rates.items()},
            }
    finally:
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    return {"rows": results, "sizes": sizes.__dict__, "rounds": rounds,
            "seconds": time.perf_counter() - started, "machine": machine_info(),
            "engine": os.path.dirname(engine.__file__)}


def target(row: str, ratio: float) -> str:
    need = 1.0 if row.startswith(("insert 1 event per call, durable",
                                  "save 1 event per call, durable")) else 2.0
    return f">= {need:g}x: {'met' if ratio >= need else 'missed'}"


def table(result: dict[str, Any]) -> str:
    lines = ["| API | row | engine | eventsourcing.sqlite | engine / SQLite | target |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, r in result["rows"].items():
        lines.append(f"| {r['api']} | {name} | {r['engine']:,.0f} {r['unit']} | "
                     f"{r['sqlite']:,.0f} | {r['ratio']:.2f}x | {target(name, r['ratio'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per row (default 3, "
                    "5 without --quick)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 5)
    result = run(QUICK if args.quick else FULL, rounds)
    LATEST_DIR.mkdir(parents=True, exist_ok=True)
    out = LATEST_DIR / "eventsourcing_compare.json"
    out.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"engine: {result['engine']}; {result['seconds']:.1f} s; wrote {out}")
        print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
