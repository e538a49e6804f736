"""A full disk says so (DiskFullError, naming the disk and the file, saying what to do
and what was left behind), publishes nothing partial, and the database goes on once
space is back. Real short writes come from the kernel: a child process lowers its
RLIMIT_FSIZE (SIGXFSZ ignored) so LMDB's page writes past the limit fail or come up
short, exactly as on a full disk; the free-space reading is the only thing faked."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest

import engine
from engine import files

from .faultfs import FaultyFileSystem


def _statvfs(free_blocks: int, free_inodes: int = 1000) -> os.statvfs_result:
    # bsize, frsize, blocks, bfree, bavail, files, ffree, favail, flag, namemax
    return os.statvfs_result((4096, 4096, 1 << 20, free_blocks, free_blocks, 1 << 16,
                              free_inodes, free_inodes, 0, 255))


def test_an_lmdb_write_error_on_a_full_disk_is_disk_full(tmp_path, monkeypatch):
    path = str(tmp_path / "db")
    faulty = FaultyFileSystem(err=errno.EIO)  # LMDB reports a short page write as EIO
    with files.installed(faulty), engine.open(path) as db:
        db.append("s", "set", b"kept")
        faulty.fail_lmdb_writes = True
        monkeypatch.setattr(engine.log.os, "statvfs", lambda _p: _statvfs(free_blocks=3))
        with pytest.raises(engine.DiskFullError) as ei:
            db.append("s", "set", b"lost")
        msg = str(ei.value)
        assert msg == (f"the disk holding {path}/log is full (No space left on device) while "
                       f"writing {path}/log/data.mdb: free space and retry; nothing was "
                       "committed")
        assert ei.value.directory == os.path.join(path, "log")
        assert isinstance(ei.value, engine.StorageError) and isinstance(ei.value, OSError)
        monkeypatch.undo()
        faulty.fail_lmdb_writes = False
        assert db.get("s") == b"kept" and db.append("s", "set", b"next") == 2


def test_an_lmdb_write_error_with_space_left_is_not_called_disk_full(tmp_path, monkeypatch):
    path = str(tmp_path / "db")
    faulty = FaultyFileSystem(err=errno.EIO)
    with files.installed(faulty), engine.open(path) as db:
        faulty.fail_lmdb_writes = True
        monkeypatch.setattr(engine.log.os, "statvfs", lambda _p: _statvfs(free_blocks=1 << 18))
        with pytest.raises(engine.StorageError, match="Input/output error") as ei:
            db.append("s", "set", b"x")
        assert not isinstance(ei.value, engine.DiskFullError)


def test_no_free_inode_counts_as_full(tmp_path, monkeypatch):
    path = str(tmp_path / "db")
    faulty = FaultyFileSystem(err=errno.EIO)
    with files.installed(faulty), engine.open(path) as db:
        faulty.fail_lmdb_writes = True
        monkeypatch.setattr(engine.log.os, "statvfs",
                            lambda _p: _statvfs(free_blocks=1 << 18, free_inodes=0))
        with pytest.raises(engine.DiskFullError):
            db.append("s", "set", b"x")


def test_enospc_from_lmdb_is_disk_full(tmp_path):
    path = str(tmp_path / "db")
    faulty = FaultyFileSystem(err=errno.ENOSPC)  # py-lmdb raises DiskError for ENOSPC
    with files.installed(faulty), engine.open(path) as db:
        faulty.fail_lmdb_writes = True
        with pytest.raises(engine.DiskFullError, match="nothing was committed"), \
                db.transaction() as tx:
            tx.extend([("a", "t", b"1"), ("b", "t", b"2")])
        faulty.fail_lmdb_writes = False
        assert db.version("a") == 0 and db.append("a", "t", b"1") == 1


def test_a_new_database_is_not_created_on_a_nearly_full_disk(tmp_path, monkeypatch):
    path = str(tmp_path / "db")
    monkeypatch.setattr(engine.log.os, "statvfs", lambda _p: _statvfs(free_blocks=10))
    with pytest.raises(engine.DiskFullError, match=r"db/log is full .* nothing was opened"):
        engine.open(path)
    assert not os.path.exists(os.path.join(path, "log", "data.mdb"))
    monkeypatch.undo()
    with engine.open(path) as db:  # the lock was released; space is back
        assert db.append("s", "set", b"1") == 1
    # an existing database still opens on a full disk (reads, status, verify work)
    monkeypatch.setattr(engine.log.os, "statvfs", lambda _p: _statvfs(free_blocks=0))
    with engine.open(path) as db:
        assert db.get("s") == b"1"


def test_a_snapshot_on_a_full_disk_is_disk_full_and_leaves_nothing(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        db.append("s", "set", b"1")
        with files.installed(FaultyFileSystem(err=errno.EDQUOT, fail_fsync=True)), \
                pytest.raises(engine.DiskFullError, match=r"Disk quota exceeded\) while "
                                                          r"writing .*1-1\.snap\.tmp"):
            db.snapshot()
        assert os.listdir(os.path.join(path, "snapshots")) == []
        assert db.snapshot().tx_id == 1


def test_no_inode_for_the_snapshot_directory_is_disk_full(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        db.append("s", "set", b"1")
        with files.installed(FaultyFileSystem(fail_makedirs="*/snapshots")), \
                pytest.raises(engine.DiskFullError, match="no snapshot was taken"):
            db.snapshot()


CHILD = textwrap.dedent('''
    import os, resource, signal, sys
    import engine

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
    path, fake_full = sys.argv[1], sys.argv[2] == "full"
    db = engine.open(path)
    db.append("s", "set", b"before")
    data = os.path.join(path, "log", "data.mdb")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if fake_full:  # what statvfs says on a full disk; the short writes are real
        engine.log.os.statvfs = lambda p: os.statvfs_result(
            (4096, 4096, 1 << 20, 0, 0, 1 << 16, 100, 100, 0, 255))
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(data) + 32 * 1024, hard))
    failed = None
    for i in range(2000):
        try:
            db.append("s", "set", os.urandom(3000))
        except engine.EngineError as exc:
            failed = exc
            break
    assert failed is not None, "the file size limit never hit"
    last = db.position.tx_id
    print(type(failed).__name__, "|", failed, "|", last)
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space is back
    assert db.append("s", "set", b"after") == last + 1
    db.close()
    with engine.open(path) as again:
        assert again.position.tx_id == last + 1 and again.get("s") == b"after"
''')


@pytest.mark.parametrize("disk", ["space-left", "full"])
def test_real_short_writes_of_lmdb_fail_cleanly(tmp_path, disk):
    path = str(tmp_path / "db")
    done = subprocess.run([sys.executable, "-c", CHILD, path, disk], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    kind, message, last = (p.strip() for p in done.stdout.strip().split("|"))
    assert int(last) >= 1
    if disk == "full":
        assert kind == "DiskFullError"
        assert message.startswith(f"the disk holding {path}/log is full")
        assert message.endswith("nothing was committed")
    else:  # EFBIG / a short write with space left: a storage error, not "disk full"
        assert kind == "StorageError" and "cannot write the log" in message
