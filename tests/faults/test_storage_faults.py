"""Storage faults (disk full, failed fsync, LMDB errors) surface as the engine's
errors, publish nothing partial, and leave log and state consistent."""

from __future__ import annotations

import errno
import os

import lmdb
import pytest

import engine
from engine import snapshot as snapshot_mod
from engine.lock import DirLock
from engine.recovery import recover_new_epoch


def _enospc(*_a, **_k):  # type: ignore[no-untyped-def]
    raise OSError(errno.ENOSPC, "No space left on device")


def test_snapshot_fsync_failure_publishes_nothing(tmp_path, monkeypatch):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        db.append("s", "set", b"1")
        monkeypatch.setattr(snapshot_mod.os, "fsync", _enospc)
        with pytest.raises(engine.StorageError, match="free disk space"):
            db.snapshot()
        monkeypatch.undo()
        snaps = os.listdir(os.path.join(path, "snapshots"))
        assert snaps == []  # neither the .snap nor its temp file
        assert db.append("s", "set", b"2") == 2  # the database keeps working
        assert db.snapshot().tx_id == 2


def test_background_snapshot_failure_is_recorded_and_writes_continue(tmp_path, monkeypatch):
    path = str(tmp_path / "db")
    db = engine.open(path, snapshot_every=2)
    calls = []

    def failing_write(*a, **k):  # type: ignore[no-untyped-def]
        calls.append(1)
        raise engine.StorageError("disk full (injected)")

    monkeypatch.setattr("engine.database.write_snapshot", failing_write)
    for i in range(6):
        db.append("s", "set", str(i).encode())
    import time

    deadline = time.monotonic() + 10
    while db.last_snapshot_error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert isinstance(db.last_snapshot_error, engine.StorageError) and calls
    assert db.get("s") == b"5" and db.position.tx_id == 6
    db.close()
    with engine.open(path) as db2:  # the log alone still rebuilds everything
        assert db2.get("s") == b"5"


def test_lmdb_write_error_rolls_back_the_commit(tmp_path, monkeypatch):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        db.append("s", "set", b"kept")
        env = db._log._env

        class BrokenEnv:
            def __getattr__(self, name):  # type: ignore[no-untyped-def]
                return getattr(env, name)

            def begin(self, write=False, **kw):  # type: ignore[no-untyped-def]
                if write:
                    raise lmdb.DiskError("Input/output error (injected)")
                return env.begin(write=write, **kw)

        db._log._env = BrokenEnv()
        with pytest.raises(engine.StorageError, match="cannot write the log"):
            db.append("s", "set", b"lost")
        with pytest.raises(engine.StorageError), db.transaction() as tx:
            tx.extend([("a", "t", b"1"), ("b", "t", b"2")])
        db._log._env = env
        assert db.get("s") == b"kept" and db.version("a") == 0  # state untouched
        assert db.append("s", "set", b"next") == 2  # no tx id was consumed
    with engine.open(path) as db2:
        assert [e.data for e in db2.read_stream("s")] == [b"kept", b"next"]


def test_recovery_interrupted_by_os_error_deletes_nothing(tmp_path, monkeypatch):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        db.append("s", "set", b"1")
        db.snapshot()
        db.append("s", "set", b"2")
    import lmdb as _lmdb

    env = _lmdb.open(os.path.join(path, "log"))
    with env.begin(write=True) as txn:
        txn.delete((1).to_bytes(8, "big"))
        txn.delete((2).to_bytes(8, "big"))
    env.close()
    real_replace = os.replace

    def replace_fails_for_staging(src, dst):  # type: ignore[no-untyped-def]
        if str(src).endswith("log.new"):
            raise OSError(errno.EIO, "I/O error (injected)")
        return real_replace(src, dst)

    monkeypatch.setattr("engine.recovery.os.replace", replace_fails_for_staging)
    lock = DirLock(path)
    try:
        with pytest.raises(engine.StorageError, match="Nothing was deleted"):
            recover_new_epoch(path)
        monkeypatch.undo()
        with pytest.raises(engine.LogMissingError):  # half-made epoch does not open
            engine.database.Database(path, _held_lock=lock)
        report = recover_new_epoch(path)              # re-running finishes the job
    finally:
        lock.release()
    assert report.new_epoch == 2
    aside = os.listdir(os.path.join(path, "aside"))
    assert len(aside) == 1  # the original log, moved once, kept
    with engine.open(path) as db:
        assert db.get("s") == b"1" and db.position == engine.Position(2, 1)


def test_lock_file_that_cannot_be_created_is_a_storage_error(tmp_path):
    path = tmp_path / "db"
    (path / "LOCK").mkdir(parents=True)  # a directory where the lock file goes
    with pytest.raises(engine.StorageError, match="LOCK"):
        engine.open(str(path))
