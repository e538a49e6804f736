"""Storage faults (disk full, failed fsync, LMDB errors) surface as the engine's
errors, publish nothing partial, and leave log and state consistent.

Faults come from the filesystem seam (engine.files.installed with the
FaultyFileSystem of faultfs.py), never from patching module internals.
"""

from __future__ import annotations

import errno
import os
import time

import lmdb
import pytest

import engine
from engine import files
from engine.lock import DirLock
from engine.ops.recover import recover_new_epoch

from .faultfs import FaultyFileSystem


def test_snapshot_fsync_failure_publishes_nothing(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        db.append("s", "set", b"1")
        with files.installed(FaultyFileSystem(fail_fsync=True)) as faulty, \
                pytest.raises(engine.DiskFullError, match=r"disk holding .* is full"):
            db.snapshot()
        assert faulty.injected >= 1
        snaps = os.listdir(os.path.join(path, "snapshots"))
        assert snaps == []  # neither the .snap nor its temp file
        assert db.append("s", "set", b"2") == 2  # the database keeps working
        assert db.snapshot().tx_id == 2


def test_background_snapshot_failure_is_recorded_and_writes_continue(tmp_path):
    path = str(tmp_path / "db")
    faulty = FaultyFileSystem(fail_fsync=True)
    with files.installed(faulty):
        db = engine.open(path, snapshot_every=2)
        for i in range(6):
            db.append("s", "set", str(i).encode())
        deadline = time.monotonic() + 10
        while db.last_snapshot_error is None and time.monotonic() < deadline:
            time.sleep(0.01)
    assert isinstance(db.last_snapshot_error, engine.StorageError) and faulty.injected
    assert db.get("s") == b"5" and db.position.tx_id == 6
    db.close()
    with engine.open(path) as db2:  # the log alone still rebuilds everything
        assert db2.get("s") == b"5"


def test_lmdb_write_error_rolls_back_the_commit(tmp_path):
    path = str(tmp_path / "db")
    faulty = FaultyFileSystem(err=errno.EIO)
    with files.installed(faulty), engine.open(path) as db:
        db.append("s", "set", b"kept")
        faulty.fail_lmdb_writes = True
        with pytest.raises(engine.StorageError, match="cannot write the log"):
            db.append("s", "set", b"lost")
        with pytest.raises(engine.StorageError), db.transaction() as tx:
            tx.extend([("a", "t", b"1"), ("b", "t", b"2")])
        faulty.fail_lmdb_writes = False
        assert faulty.injected == 2
        assert db.get("s") == b"kept" and db.version("a") == 0  # state untouched
        assert db.append("s", "set", b"next") == 2  # no tx id was consumed
    with engine.open(path) as db2:
        assert [e.data for e in db2.read_stream("s")] == [b"kept", b"next"]


def test_recovery_interrupted_by_os_error_deletes_nothing(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        db.append("s", "set", b"1")
        db.snapshot()
        db.append("s", "set", b"2")
    env = lmdb.open(os.path.join(path, "log"))
    with env.begin(write=True) as txn:
        txn.delete((1).to_bytes(8, "big"))
        txn.delete((2).to_bytes(8, "big"))
    env.close()
    lock = DirLock(path)
    try:
        faulty = FaultyFileSystem(err=errno.EIO, fail_rename="*/log.new")
        with files.installed(faulty), pytest.raises(engine.StorageError,
                                                    match="Nothing was deleted"):
            recover_new_epoch(path)
        assert faulty.injected == 1
        with pytest.raises(engine.LogMissingError):  # half-made epoch does not open
            engine.Database(path, _held_lock=lock)
        report = recover_new_epoch(path)              # re-running finishes the job
    finally:
        lock.release()
    assert report.new_epoch == 2
    aside = os.listdir(os.path.join(path, "aside"))
    assert len(aside) == 1  # the original log, moved once, kept
    with engine.open(path) as db:
        assert db.get("s") == b"1" and db.position == engine.Position(2, 1)


def test_snapshot_directory_that_cannot_be_created_is_a_storage_error(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        db.append("s", "set", b"1")
        with files.installed(FaultyFileSystem(fail_makedirs="*/snapshots", err=errno.EACCES)), \
                pytest.raises(engine.StorageError, match="free disk space") as ei:
            db.snapshot()
        assert not isinstance(ei.value, engine.DiskFullError)  # EACCES is not a full disk
        assert db.snapshot().tx_id == 1  # works once the fault is gone


def test_lock_file_that_cannot_be_created_is_a_storage_error(tmp_path):
    path = tmp_path / "db"
    (path / "LOCK").mkdir(parents=True)  # a directory where the lock file goes
    with pytest.raises(engine.StorageError, match="LOCK"):
        engine.open(str(path))
