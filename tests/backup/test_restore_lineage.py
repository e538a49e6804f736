"""Restores keep the lineage proof of the snapshot a log is built on (the log's
``base_checksum``), and a full disk during a restore is a DiskFullError, not a raw
OSError, leaving nothing behind."""

from __future__ import annotations

import errno
import os
import shutil
import time
import warnings
from typing import Any

import pytest

import engine
from engine import formats
from engine.backup import forget_memory_targets
from engine.backup import full as full_backup
from engine.backup import restore as log_restore
from engine.lock import DirLock
from engine.log import LogStore
from engine.ops.recover import recover_new_epoch
from engine.ops.verify import verify_directory
from engine.snapshot import list_snapshots, read_header


@pytest.fixture
def url() -> Any:
    name = f"lineage-{os.getpid()}-{time.monotonic_ns()}"
    yield f"memory://{name}"
    forget_memory_targets(name)


def _base_checksum(path: str) -> bytes | None:
    store = LogStore(os.path.join(path, "log"), readonly=True)
    try:
        return store.get_meta(formats.META_BASE_CHECKSUM)
    finally:
        store.close()


def _opens_cleanly(path: str) -> engine.Position:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with engine.open(path, create=False) as db:
            return db.position


def test_a_full_restore_records_the_snapshots_proof_as_its_base(tmp_path, url):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        for i in range(5):
            db.append(f"s{i % 2}", "set", b"%d" % i)
        info = db.backup_full(url)
    snap = read_header(os.path.join(path, "snapshots", f"1-{info.tx_id}.snap"))
    assert snap.tx_checksum is not None
    out = str(tmp_path / "restored")
    full_backup.restore_full(url, out)
    assert _base_checksum(out) == formats.U64_LE.pack(snap.tx_checksum)
    assert _opens_cleanly(out) == engine.Position(2, 5)
    assert verify_directory(out).ok


def test_a_log_restore_from_a_base_snapshot_records_its_proof(tmp_path, url):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        for i in range(3):
            db.append("s", "set", b"%d" % i)
        db.snapshot()
    shutil.rmtree(os.path.join(path, "log"))
    lock = DirLock(path)
    try:
        recover_new_epoch(path)  # epoch 2, base tx 3: the backup must ship a base snapshot
    finally:
        lock.release()
    with engine.open(path, backup=url) as db:
        db.append("s", "set", b"after")
        db.backup.flush(timeout=30)
    base = read_header(list_snapshots(os.path.join(path, "snapshots"))[-1][1])
    assert base.tx_id == 3 and base.tx_checksum is not None
    out = str(tmp_path / "restored")
    log_restore.restore(url, out)
    assert _base_checksum(out) == formats.U64_LE.pack(base.tx_checksum)
    assert _opens_cleanly(out).tx_id == 4
    assert verify_directory(out).ok


@pytest.mark.parametrize("kind", ["log", "full"])
def test_a_full_disk_during_a_restore_is_disk_full_and_leaves_nothing(tmp_path, url,
                                                                       monkeypatch, kind):
    path = str(tmp_path / "db")
    with engine.open(path, backup=url) as db:
        db.append("s", "set", b"1")
        db.backup.flush(timeout=30)
        db.backup_full(url)
    module = log_restore if kind == "log" else full_backup

    def no_room(*_a: Any, **_k: Any) -> str:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".staging"))

    monkeypatch.setattr(module.tempfile, "mkdtemp", no_room)
    out = str(tmp_path / "restored")
    with pytest.raises(engine.DiskFullError, match="nothing was restored"):
        if kind == "log":
            log_restore.restore(url, out)
        else:
            full_backup.restore_full(url, out)
    assert sorted(os.listdir(tmp_path)) == ["db"]
