"""``engine.open(path, readonly=True)``: a reader beside a live writer in another
process. It reads everything committed, follows commits (woken through inotify or polling),
catches its state up on refresh(), never writes or locks, and refuses writes."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest

import engine
from tests.recovery.helpers import admin_json
from tests.support.writer import Writer

JOIN = 30.0


def _files(path: str) -> dict[str, str]:
    """Every file under path with its content hash, except LMDB's lock file (the
    reader table a read-only handle must use) and the writer's LOCK pid line."""
    out = {}
    for d, _, files in os.walk(path):
        for f in files:
            if f == "lock.mdb":
                continue
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture
def writer(db_path):  # type: ignore[no-untyped-def]
    w = Writer(db_path)
    for i in range(5):
        w.send("append", "acct", "deposited", f"d{i}")
    w.send("snapshot")
    w.send("append", "acct", "withdrawn", "w0")
    yield w
    w.close()


def test_a_reader_beside_a_live_writer_sees_what_is_committed(db_path, writer):
    with engine.open(db_path, readonly=True) as r:
        assert r.readonly and r.position.tx_id == 6
        assert r.get("acct") == b"w0" and r.version("acct") == 6
        writer.send("append", "acct", "deposited", "late")
        # the log reads see the new commit at once; the state waits for refresh()
        assert [e.data for e in r.read_events(7)] == [b"late"]
        assert [t.tx_id for t in r.read_log(6)] == [6, 7]
        assert r.get("acct") == b"w0" and r.position.tx_id == 6
        assert r.refresh() == engine.Position(1, 7)
        assert r.get("acct") == b"late" and r.version("acct") == 7
        assert [e.data for e in r.read_stream("acct", 6)] == [b"w0", b"late"]
        assert sorted(r.streams()) == ["acct"]


def test_read_stream_takes_the_full_signature(db_path, writer):
    with engine.open(db_path, readonly=True) as r:
        writer.send("append", "acct", "deposited", "late")  # refresh() catches it up first
        got = list(r.read_stream("acct", 2, 7, reverse=True, limit=3))
        assert [(e.version, e.data) for e in got] == [(7, b"late"), (6, b"w0"), (5, b"d4")]
        (newest,) = r.read_stream("acct", reverse=True, limit=1)
        assert newest.data == b"late"
        assert [e.version for e in r.read_stream("acct", to_version=2)] == [1, 2]
        with pytest.raises(engine.InvalidEventError):
            r.read_stream("acct", limit=-1)


def test_read_stream_catches_up_first(db_path, writer):
    with engine.open(db_path, readonly=True) as r:
        writer.send("append", "acct", "deposited", "new")
        assert [e.data for e in r.read_stream("acct")][-1] == b"new"
        assert r.position.tx_id == 7


def test_a_subscription_is_woken_by_the_writer_s_commits(db_path, writer):
    with engine.open(db_path, readonly=True) as r:
        got: list[engine.Event] = []
        seen = threading.Event()

        def follow() -> None:
            with r.subscribe(after_position=r.last_position) as sub:
                for ev in sub:
                    got.append(ev)
                    if ev.data == b"last":
                        seen.set()
                        return

        t = threading.Thread(target=follow, daemon=True)
        t.start()
        for i in range(20):
            writer.send("append", f"s{i % 3}", "e", f"v{i}")
        writer.send("append", "s0", "e", "last")
        assert seen.wait(JOIN)
        t.join(JOIN)
        assert [e.position for e in got] == list(range(7, 7 + 21))
        assert got == list(r.read_events(7))


def test_subscription_wake_latency_is_milliseconds(db_path, writer):
    """Measured, not asserted (no timing asserts): printed for the README; the test
    asserts only that every commit arrives."""
    with engine.open(db_path, readonly=True) as r, \
            r.subscribe(after_position=r.last_position) as sub:
        lat = []
        for i in range(30):
            t0 = time.perf_counter()
            writer.send("append", "s", "e", f"x{i}")
            ev = sub.next_event(timeout=JOIN)
            assert ev is not None and ev.data == f"x{i}".encode()
            lat.append(time.perf_counter() - t0)
        lat.sort()
        print(f"\nreader wake after a commit (incl. the writer's round trip): median "
              f"{lat[15] * 1e3:.2f} ms, max {lat[-1] * 1e3:.2f} ms")


def test_a_reader_never_writes_and_takes_no_lock(db_path, writer):
    writer.send("close")
    before = _files(db_path)
    with engine.open(db_path, readonly=True) as r:
        assert r.get("acct") == b"w0"
        list(r.read_log())
        list(r.read_events())
        r.refresh()
        with r.subscribe() as sub:
            next(sub)
        # a writer can open while the reader is open: the reader holds no DIR/LOCK
        w = Writer(db_path)
        w.send("append", "acct", "deposited", "again")
        assert r.refresh().tx_id == 7
        w.close()
    after = _files(db_path)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    # only what the second writer wrote changed: its log pages and LOCK's pid line
    assert changed <= {"log/data.mdb", "LOCK"}


@pytest.mark.parametrize("call", [
    lambda r: r.append("s", "e", b"x"),
    lambda r: r.transaction(),
    lambda r: r.snapshot(),
    lambda r: r.backup_full("file:///tmp/x"),
], ids=["append", "transaction", "snapshot", "backup_full"])
def test_writes_are_refused_with_a_clear_error(db_path, writer, call):
    with engine.open(db_path, readonly=True) as r:
        with pytest.raises(engine.ReadOnlyError, match="readonly=True"):
            call(r)
        assert r.get("acct") == b"w0"


def test_the_writer_s_map_growth_is_followed(db_path, monkeypatch):
    from engine.log import LogStore

    adopted = []
    real = LogStore._adopt_map_size

    def counting(self: LogStore) -> None:
        adopted.append(1)
        real(self)

    monkeypatch.setattr(LogStore, "_adopt_map_size", counting)
    w = Writer(db_path, map_size=1 << 20)  # 1 MiB: the writer grows it many times
    w.send("append", "s", "e", "first")
    try:
        with engine.open(db_path, readonly=True, map_size=1 << 20) as r:
            assert r.get("s") == b"first"
            w.send("bulk", 3000)  # ~3 MiB of records: past the reader's map
            assert r.refresh().tx_id == 3001
            assert sum(1 for _ in r.read_events(2)) == 3000
            assert adopted, "the reader never met MDB_MAP_RESIZED: the test proves nothing"
    finally:
        w.close()


def test_a_reader_outlives_a_killed_writer(db_path, writer):
    with engine.open(db_path, readonly=True) as r:
        writer.send("append", "acct", "deposited", "before-kill")
        writer.kill()
        assert r.refresh().tx_id == 7 and r.get("acct") == b"before-kill"
    with engine.open(db_path) as db:  # the directory is not locked by the reader
        assert db.position.tx_id == 7


def test_a_reader_goes_stale_when_the_log_is_replaced(db_path, writer):
    writer.send("close")
    r = engine.open(db_path, readonly=True)
    try:
        sub = r.subscribe(after_position=r.last_position)
        assert admin_json("recover", "--new-epoch", "--force", db_path)[0] == 0
        with pytest.raises(engine.StaleReaderError, match="open the database again"):
            r.refresh()
        assert list(sub) == []  # its subscriptions ended
    finally:
        r.close()
    with engine.open(db_path, readonly=True) as again:
        assert again.position.epoch == 2


def test_readonly_refuses_what_does_not_exist_and_creates_nothing(tmp_path):
    with pytest.raises(engine.EngineError, match="no database"):
        engine.open(str(tmp_path / "missing"), readonly=True)
    assert not (tmp_path / "missing").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(engine.EngineError, match="no database"):
        engine.open(str(tmp_path / "empty"), readonly=True)
    assert os.listdir(tmp_path / "empty") == []


@pytest.mark.parametrize("kwargs", [{"backup": "memory://x"}, {"admin_socket": True},
                                    {"snapshot_every": 10}, {"readonly": "yes"}])
def test_writer_options_are_refused_with_readonly(db_path, writer, kwargs):
    kwargs = {"readonly": True, **kwargs}
    with pytest.raises(engine.OptionsError):
        engine.open(db_path, **kwargs)


def test_one_process_cannot_be_writer_and_reader_of_one_directory(db_path):
    with engine.open(db_path) as db:
        db.append("s", "e", b"x")
        with pytest.raises(engine.DatabaseLockedError, match="already has the database"):
            engine.open(db_path, readonly=True)
        db.append("s", "e", b"still fine")
    with engine.open(db_path, readonly=True) as r:
        with pytest.raises(engine.DatabaseLockedError, match="already has the database"):
            engine.open(db_path, readonly=True)
        assert r.get("s") == b"still fine"


def test_a_closed_reader_refuses_calls_and_ends_subscriptions(db_path, writer):
    r = engine.open(db_path, readonly=True)
    sub = r.subscribe(after_position=r.last_position)
    r.close()
    assert list(sub) == []
    with pytest.raises(engine.DatabaseClosedError):
        r.get("acct")
    with pytest.raises(engine.DatabaseClosedError):
        list(r.read_events())
    r.close()


def test_the_watcher_works_past_1024_descriptors(db_path, writer):
    """select() refuses descriptors past 1024; the watcher uses a selector (review
    finding: its thread died and subscriptions were never woken)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1400
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    held = []
    try:
        while len(held) < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        with engine.open(db_path, readonly=True) as r, \
                r.subscribe(after_position=r.last_position) as sub:
            writer.send("append", "s", "e", "late")
            ev = sub.next_event(timeout=JOIN)
            assert ev is not None and ev.data == b"late"
            assert r._watcher is not None and r._watcher._thread.is_alive()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_adopting_a_grown_map_after_close_is_a_closed_error(db_path, writer):
    """A reader that met MDB_MAP_RESIZED is not counted while it adopts the new size;
    if close() ran meanwhile it must get DatabaseClosedError, not an LMDB error on a
    closed environment (review finding)."""
    r = engine.open(db_path, readonly=True)
    log = r._log
    r.close()
    with pytest.raises(engine.DatabaseClosedError):
        log._adopt_map_size()


def test_inotify_limits_are_a_storage_error_not_a_raw_oserror(db_path, writer, monkeypatch):
    """No raw OSError from a public call: exhausted inotify limits (EMFILE from
    inotify_init, ENOSPC from add_watch) say which limit to raise."""
    import errno

    import engine.watch as watch

    def no_instances() -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(watch, "INotify", no_instances)
    with engine.open(db_path, readonly=True) as r:
        with pytest.raises(engine.StorageError, match="max_user_instances"):
            r.subscribe()
        assert r.get("acct") == b"w0"  # the handle still reads

    class NoWatches:
        closed = False

        def add_watch(self, *a: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            NoWatches.closed = True

    monkeypatch.setattr(watch, "INotify", NoWatches)
    with engine.open(db_path, readonly=True) as r, \
            pytest.raises(engine.StorageError, match="max_user_watches"):
        r.subscribe()
    assert NoWatches.closed  # the inotify descriptor is not leaked


def test_an_unreadable_log_file_on_open_is_a_storage_error(db_path, writer, monkeypatch):
    import types

    import engine.reader as reader_mod

    def stat(path: object, *a: object, **k: object) -> os.stat_result:
        raise PermissionError(13, "Permission denied", str(path))

    # only the reader's own os.stat fails (the planner's file checks still work)
    monkeypatch.setattr(reader_mod, "os", types.SimpleNamespace(stat=stat))
    with pytest.raises(engine.StorageError, match="Permission denied"):
        engine.open(db_path, readonly=True)
