"""A failed ``open`` releases everything it took, whatever the failure: the directory
lock (for this process and any other), file descriptors, threads, the admin socket.

Each case injects one failure at one step of open (lock, directory, the lineage check,
set-aside moves, the LMDB environment, loading, the backup and admin services) and
then checks that nothing is left behind and the next open succeeds.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import lmdb
import pytest

import engine
from engine import files

from .faultfs import FaultyFileSystem

FD_DIR = "/proc/self/fd"


def _fds() -> int:
    return len(os.listdir(FD_DIR))


def _threads() -> set[int]:
    return {t.ident for t in threading.enumerate() if t.ident is not None}


def _lock_is_free_for_another_process(path: str) -> bool:
    """Another process can take the flock (the kernel's view: no descriptor here holds it)."""
    probe = ("import fcntl, os, sys\n"
             "fd = os.open(sys.argv[1], os.O_RDWR)\n"
             "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
             "except BlockingIOError:\n    sys.exit(3)\n")
    done = subprocess.run([sys.executable, "-c", probe, os.path.join(path, "LOCK")],
                          check=False, timeout=60)
    return done.returncode == 0


def _opens_in_another_process(path: str) -> None:
    code = ("import sys, warnings, engine\n"
            "warnings.simplefilter('ignore')\n"
            "engine.open(sys.argv[1], create=False).close()\n")
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr


def _boom(exc: BaseException) -> Callable[..., Any]:
    def fail(*_a: Any, **_k: Any) -> Any:
        raise exc
    return fail


def _with_snapshot(path: str) -> None:
    with engine.open(path) as db:
        db.append("s", "set", b"1")
        db.snapshot()
        db.append("s", "set", b"2")


def _with_foreign_snapshot(path: str) -> None:
    """A database holding a diverged copy's snapshot at tx 2 (set aside on open)."""
    with engine.open(path) as db:
        db.append("s", "set", b"1")
    other = path + "-copy"
    shutil.copytree(path, other)
    with engine.open(path) as db:
        db.append("s", "set", b"mine")
    with engine.open(other) as db:
        db.append("s", "set", b"theirs")
        snap = db.snapshot().path
    os.makedirs(os.path.join(path, "snapshots"), exist_ok=True)
    shutil.copy(snap, os.path.join(path, "snapshots"))


class _NoThreads:
    """``threading`` as seen by the admin server, where no thread can be started."""

    class Thread(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't start new thread")

    def __getattr__(self, name: str) -> Any:
        return getattr(threading, name)


def _inject_flock(mp: pytest.MonkeyPatch, path: str) -> None:
    mp.setattr(engine.lock.fcntl, "flock", _boom(OSError(errno.ENOLCK, "No locks available")))


def _inject_mkdir(mp: pytest.MonkeyPatch, path: str) -> None:
    shutil.rmtree(path)
    mp.setattr(engine.database.os, "makedirs", _boom(OSError(errno.ENOSPC, "No space left")))


def _inject_lineage_check(mp: pytest.MonkeyPatch, path: str) -> None:
    _with_snapshot(path)  # the check opens the log read-only, then is interrupted
    mp.setattr(engine.ops.plan, "diverged", _boom(KeyboardInterrupt()))


def _inject_set_aside(mp: pytest.MonkeyPatch, path: str) -> None:
    _with_foreign_snapshot(path)
    faulty = FaultyFileSystem(fail_makedirs="*/diverged")
    mp.setattr(files, "_current", faulty)


def _inject_env_open(mp: pytest.MonkeyPatch, path: str) -> None:
    mp.setattr(engine.log.lmdb, "open", _boom(lmdb.Error("mdb_env_open: Input/output error")))


def _inject_load(mp: pytest.MonkeyPatch, path: str) -> None:
    _with_snapshot(path)
    mp.setattr(engine.database, "load", _boom(KeyboardInterrupt()))


def _inject_backup(mp: pytest.MonkeyPatch, path: str) -> None:
    from engine.backup import uploader

    mp.setattr(uploader.LogBackup, "start", _boom(RuntimeError("backup cannot start")))


def _inject_admin(mp: pytest.MonkeyPatch, path: str) -> None:
    from engine.admin import server

    mp.setattr(server, "threading", _NoThreads())


def _inject_admin_stat(mp: pytest.MonkeyPatch, path: str) -> None:
    from engine.admin import server

    real = os.stat

    def stat(p: Any, *a: Any, **k: Any) -> Any:
        if str(p).endswith("admin.sock"):
            raise OSError(errno.EIO, "Input/output error")
        return real(p, *a, **k)

    mp.setattr(server.os, "stat", stat)


CASES: dict[str, tuple[Callable[[pytest.MonkeyPatch, str], None], type[BaseException],
                       dict[str, Any]]] = {
    "lock": (_inject_flock, engine.StorageError, {}),
    "directory": (_inject_mkdir, engine.DiskFullError, {}),
    "lineage-check": (_inject_lineage_check, KeyboardInterrupt, {}),
    "set-aside": (_inject_set_aside, engine.DiskFullError, {}),
    "lmdb-open": (_inject_env_open, engine.StorageError, {}),
    "load": (_inject_load, KeyboardInterrupt, {"snapshot_every": 1}),
    "backup": (_inject_backup, RuntimeError, {"snapshot_every": 1, "backup": "memory://unwind"}),
    "admin-thread": (_inject_admin, RuntimeError,
                     {"snapshot_every": 1, "backup": "memory://unwind2", "admin_socket": True}),
    "admin-stat": (_inject_admin_stat, engine.StorageError,
                   {"snapshot_every": 1, "admin_socket": True}),
}


@pytest.mark.filterwarnings("ignore::engine.EngineWarning")  # set-aside: the diverged file
@pytest.mark.parametrize("case", list(CASES))
def test_a_failed_open_releases_everything(tmp_path, monkeypatch, case):
    inject, expected, options = CASES[case]
    warm = str(tmp_path / "warm")  # load every lazily imported module and cache first
    with engine.open(warm, **options) as db:
        db.append("w", "set", b"1")
        db.snapshot()
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        db.append("s", "set", b"0")
    fds, threads = _fds(), _threads()

    with monkeypatch.context() as mp:
        inject(mp, path)
        with pytest.raises(expected):
            engine.open(path, **options)

    assert _fds() == fds, f"{case}: a descriptor leaked"
    assert _threads() == threads, f"{case}: a thread was left running"
    if case == "directory":  # failed before anything was made: nothing exists
        assert not os.path.exists(path)
    else:
        assert not os.path.exists(os.path.join(path, "admin.sock"))
        assert not [n for n in os.listdir(path) if n.startswith(".admin-")]
        assert _lock_is_free_for_another_process(path)
        _opens_in_another_process(path)
    with engine.open(path, **options) as db:  # and in this process
        assert db.get("s") in (None, b"0", b"2", b"mine")
    assert _fds() == fds


def test_a_pid_that_cannot_be_written_still_locks_and_opens(tmp_path, monkeypatch, caplog):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        db.append("s", "set", b"1")
    monkeypatch.setattr(engine.lock.os, "pwrite", _boom(OSError(errno.ENOSPC, "No space")))
    fds = _fds()
    db = engine.open(path)  # the pid is a courtesy; the flock is the lock
    try:
        assert "could not write this process's pid" in caplog.text
        assert os.path.getsize(os.path.join(path, "LOCK")) == 0
        assert not _lock_is_free_for_another_process(path)
        with pytest.raises(engine.DatabaseLockedError, match="another process"):
            engine.open(path)
        assert db.get("s") == b"1"
    finally:
        db.close()
    assert _fds() == fds and _lock_is_free_for_another_process(path)


def test_a_lock_file_that_cannot_be_created_on_a_full_disk_says_so(tmp_path, monkeypatch):
    path = tmp_path / "db"
    path.mkdir()
    real = os.open

    def no_inode(p: Any, flags: int, *a: Any) -> int:
        if str(p).endswith("LOCK"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(p, flags, *a)

    monkeypatch.setattr(engine.lock.os, "open", no_inode)
    with pytest.raises(engine.DiskFullError, match=r"disk holding .*db is full .*/LOCK"):
        engine.open(str(path))
