"""engine.commit: capped commit groups, and the policy after a failed log write."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest

import engine


def _spy_batches(db: engine.Database, delay: float = 0.0) -> list[int]:
    """Record the number of records of every LMDB append (slowed by ``delay``)."""
    sizes: list[int] = []
    real = db._log.append

    def spy(records):  # type: ignore[no-untyped-def]
        sizes.append(len(records))
        if delay:
            time.sleep(delay)
        return real(records)

    db._log.append = spy  # type: ignore[method-assign]
    return sizes


def _hammer(db: engine.Database, threads: int, per_thread: int, data: bytes = b"x") -> None:
    def work(w: int) -> None:
        for _ in range(per_thread):
            db.append(f"s{w}", "e", data)

    ts = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def test_a_commit_group_never_passes_its_transaction_cap(open_db):
    db = open_db(sync="group", group_max_txs=3)
    sizes = _spy_batches(db, delay=0.003)  # slow fsync: committers queue up behind it
    _hammer(db, threads=12, per_thread=10)
    assert sum(sizes) == 120 and db.position.tx_id == 120
    assert max(sizes) == 3  # groups form, and stop at the cap


def test_a_small_commit_does_not_wait_behind_a_huge_group(open_db):
    """Leader of 10 B: its group takes at most 128 KiB more (LevelDB's BuildBatchGroup)."""
    db = open_db(sync="group", group_max_bytes=1 << 20)
    sizes = _spy_batches(db, delay=0.003)
    _hammer(db, threads=16, per_thread=6, data=b"y" * (60 << 10))  # 60 KiB events
    assert sum(sizes) == 96
    assert max(sizes) <= 3  # 1 leader + at most two 60 KiB followers in 128 KiB


def test_the_leaders_own_transaction_always_goes_however_large(open_db):
    db = open_db(sync="group", group_max_bytes=1000)
    with db.transaction() as tx:
        tx.extend([(f"s{i}", "e", b"z" * 100) for i in range(50)])  # 5000 B > the cap
    assert db.version("s49") == 1


@pytest.mark.parametrize("sync", ["commit", "group", "none"])
def test_failure_before_the_log_commit_leaves_nothing(open_db, sync):
    db = open_db(sync=sync)
    db.append("s", "e", b"1")
    real = db._log.append

    def fail(records):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    db._log.append = fail  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        db.append("s", "e", b"2")
    db._log.append = real  # type: ignore[method-assign]
    assert db.get("s") == b"1" and db.position.tx_id == 1
    assert db.append("s", "e", b"3") == 2  # the tx id was not consumed
    assert [e.data for e in db.read_stream("s")] == [b"1", b"3"]


@pytest.mark.parametrize("sync", ["commit", "group", "none"])
def test_interrupt_after_the_log_commit_keeps_state_and_log_agreed(open_db, db_path, sync):
    db = open_db(sync=sync)
    db.append("s", "e", b"1")
    real = db._log.append

    def commit_then_interrupt(records):  # type: ignore[no-untyped-def]
        real(records)
        raise KeyboardInterrupt  # a signal landing right after LMDB committed

    db._log.append = commit_then_interrupt  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        db.append("s", "e", b"2")
    db._log.append = real  # type: ignore[method-assign]
    assert db.get("s") == b"2" and db.position.tx_id == 2  # the landed tx is visible
    assert db.append("s", "e", b"3") == 3  # no "tx 2 already exists"
    db.close()
    with engine.open(db_path) as again:
        assert [e.data for e in again.read_stream("s")] == [b"1", b"2", b"3"]


@pytest.mark.parametrize("sync", ["commit", "group", "none"])
def test_a_log_that_cannot_say_what_landed_breaks_the_handle_loudly(open_db, db_path, sync):
    db = open_db(sync=sync)
    db.append("s", "e", b"1")

    def fail(records):  # type: ignore[no-untyped-def]
        raise engine.StorageError("injected write failure")

    def no_bounds():  # type: ignore[no-untyped-def]
        raise engine.StorageError("injected read failure")

    db._log.append = fail  # type: ignore[method-assign]
    db._log.bounds = no_bounds  # type: ignore[method-assign]
    with pytest.raises(engine.StorageError, match="reopen"):
        db.append("s", "e", b"2")
    with pytest.raises(engine.StorageError, match="reopen"):  # and every later commit
        db.append("s", "e", b"3")
    assert db.get("s") == b"1"  # reads still answer
    db.close()
    with engine.open(db_path) as again:
        assert again.get("s") == b"1" and again.append("s", "e", b"4") == 2


def test_a_closed_database_is_freed_without_the_cyclic_gc(db_path):
    """No reference cycle through the handle: closing and dropping it frees the state
    at once (a cycle kept a whole reopened state alive until the GC ran)."""
    gc.collect()
    gc.disable()
    try:
        db = engine.open(db_path, snapshot_every=3)
        for i in range(10):
            db.append(f"s{i % 3}", "e", b"x")
        list(db.read_log(1))
        list(db.read_stream("s1"))
        with db.transaction() as tx:
            tx.append("s0", "e", b"y")
        db.snapshot()
        db.close()
        ref = weakref.ref(db)
        del db, tx
        assert ref() is None
    finally:
        gc.enable()
