"""sync="group": concurrent committers share one LMDB write txn and one fsync."""

from __future__ import annotations

import threading
import time

import engine


def test_group_commit_batches_and_each_caller_waits_for_its_fsync(tmp_path):
    """Each durable LMDB commit (data fsync, meta fsync) carries a batch of txs."""
    db = engine.open(str(tmp_path / "db"), sync="group")
    log = db._log
    real_append = log.append
    synced_through = [0]
    syncs = [0]
    lock = threading.Lock()

    def slow_durable_commit(records):  # type: ignore[no-untyped-def]
        # A slow flush: committers arriving meanwhile queue up behind the leader.
        time.sleep(0.002)
        real_append(records)  # returns after LMDB's fsyncs (sync=True environment)
        with lock:
            syncs[0] += 1
            synced_through[0] = records[-1][0]

    log.append = slow_durable_commit  # type: ignore[method-assign]
    errors: list[str] = []
    per_thread = 40
    threads = 8

    def worker(n: int) -> None:
        for i in range(per_thread):
            tx = db.append(f"t{n}", "set", f"{n}:{i}".encode())
            with lock:
                if tx > synced_through[0]:
                    errors.append(f"tx {tx} returned before its fsync (synced {synced_through[0]})")

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    commits = threads * per_thread
    assert errors == []
    assert db.position.tx_id == commits
    assert syncs[0] < commits / 2, f"{syncs[0]} fsyncs for {commits} commits: no batching"
    db.close()
    with engine.open(str(tmp_path / "db")) as db2:
        for n in range(threads):
            assert [e.data for e in db2.read_stream(f"t{n}")] == [
                f"{n}:{i}".encode() for i in range(per_thread)]


def test_group_and_commit_environments_commit_through_the_journal(tmp_path):
    """"commit" and "group": LMDB does not flush at a commit (MDB_NOSYNC); the commit
    journal does, once (engine.journal). "data" flushes LMDB's data pages; "none" nothing,
    and neither keeps a journal (one left by an earlier "commit" writer is removed)."""
    for mode, lmdb_sync, journaled in (("commit", False, True), ("group", False, True),
                                       ("data", True, False), ("none", False, False)):
        path = tmp_path / mode
        if not journaled:
            engine.open(str(path), sync="commit").close()  # leaves a journal behind
        with engine.open(str(path), sync=mode) as db:
            flags = db._log._env.flags()
            assert flags["sync"] is lmdb_sync and flags["metasync"] is False, (mode, flags)
            assert (db._log._journal is not None) is journaled, mode
            assert (path / "log" / "journal").exists() is journaled, mode


def test_commit_mode_never_batches(tmp_path):
    db = engine.open(str(tmp_path / "db"), sync="commit")
    batches: list[int] = []
    real_append = db._log.append

    def spy(records):  # type: ignore[no-untyped-def]
        batches.append(len(records))
        time.sleep(0.001)
        real_append(records)

    db._log.append = spy  # type: ignore[method-assign]
    ts = [threading.Thread(target=lambda n=n: [db.append(f"s{n}", "t", b"x") for _ in range(20)])
          for n in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    db.close()
    assert batches and set(batches) == {1} and len(batches) == 80


def test_group_commit_ids_contiguous_under_eight_threads(tmp_path):
    path = str(tmp_path / "db")
    db = engine.open(path, sync="group")
    got: list[list[int]] = [[] for _ in range(8)]

    def worker(n: int) -> None:
        for i in range(200):
            got[n].append(db.append(f"w{n % 3}", "set", f"{n}:{i}".encode()))

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    db.close()
    all_ids = sorted(x for g in got for x in g)
    assert all_ids == list(range(1, 1601))
    for g in got:
        assert g == sorted(g)  # one thread's commits are ordered
    with engine.open(path) as db2:
        for s in ("w0", "w1", "w2"):
            assert [e.version for e in db2.read_stream(s)] == list(range(1, db2.version(s) + 1))
        assert sum(len(t.events) for t in db2.read_log()) == 1600


def test_refused_tx_in_a_batch_leaves_the_others_committed(tmp_path):
    """A ConcurrencyError or reducer error fails only its own tx, even in a shared batch."""

    def reducer(value, event):  # type: ignore[no-untyped-def]
        if event.data == b"boom":
            raise RuntimeError("reducer refused")
        return (value or b"") + event.data

    db = engine.open(str(tmp_path / "db"), sync="group", reducer=reducer)
    real_append = db._log.append
    db._log.append = lambda r: (time.sleep(0.003), real_append(r))  # type: ignore[method-assign]
    results: dict[str, object] = {}

    def run(name: str, fn) -> None:  # type: ignore[no-untyped-def]
        try:
            results[name] = fn()
        except Exception as exc:
            results[name] = exc

    jobs = {f"ok{i}": (lambda i=i: db.append("acc", "add", str(i).encode())) for i in range(6)}
    jobs["stale"] = lambda: db.append("acc", "add", b"x", expected_version=10_000)
    jobs["boom"] = lambda: db.append("acc", "add", b"boom")
    ts = [threading.Thread(target=run, args=(k, f)) for k, f in jobs.items()]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert isinstance(results["stale"], engine.ConcurrencyError)
    assert isinstance(results["boom"], RuntimeError)
    ok_ids = sorted(v for k, v in results.items() if k.startswith("ok"))
    assert ok_ids == list(range(1, 7))  # refused txs consumed no tx id
    value = db.get("acc")
    assert value is not None and sorted(value.decode()) == sorted("012345")
    assert db.version("acc") == 6
    db.close()
    with engine.open(str(tmp_path / "db"), reducer=reducer) as db2:
        assert db2.get("acc") == value and db2.position.tx_id == 6
