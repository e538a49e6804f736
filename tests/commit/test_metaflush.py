"""The meta flusher of sync="data" (engine/metaflush.py): once commits pause it
flushes the log once; under steady commits and with none it does nothing; a failing
flush is counted and logged, and the thread goes on; close stops it."""

from __future__ import annotations

import functools
import logging
import time

import engine
from engine.errors import StorageError
from engine.metaflush import MetaFlusher
from engine.notify import CommitPoint, CommitSignal


def wait_until(pred, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


def test_a_pause_after_commits_flushes_once(tmp_path):
    db = engine.open(str(tmp_path / "db"), sync="data")
    try:
        flusher = db._services["metaflush"]
        assert flusher.flushes == 0
        for i in range(20):
            db.append("a", "set", b"%d" % i)
        assert wait_until(lambda: flusher.flushes == 1)
        time.sleep(0.1)
        assert flusher.flushes == 1  # nothing new: no second flush
        db.append("a", "set", b"again")
        assert wait_until(lambda: flusher.flushes == 2)
    finally:
        db.close()
    assert not flusher._thread.is_alive()
    with engine.open(str(tmp_path / "db")) as again:
        assert again.get("a") == b"again"


def test_other_modes_have_no_flusher(tmp_path):
    for sync in ("commit", "group", "none"):
        with engine.open(str(tmp_path / sync), sync=sync) as db:
            assert "metaflush" not in db._services


class _Port:
    """A stand-in port: a real commit signal, a flush that fails the first time."""

    def __init__(self) -> None:
        self.path = "/nowhere"
        self.signal = CommitSignal(CommitPoint(1, 0, 0))
        self.calls = 0

    def flush_log(self) -> None:
        self.calls += 1
        if self.calls == 1:
            raise StorageError("injected: the disk failed the flush")


def test_a_failed_flush_is_counted_logged_and_ends_the_flusher(caplog):
    """The log refuses every write after a failed flush (LogStore.sync), so the flusher
    says so once and stops."""
    port = _Port()
    flusher = MetaFlusher.start(port, delay=0.001)  # type: ignore[arg-type]
    try:
        with caplog.at_level(logging.WARNING, logger="engine.metaflush"):
            port.signal.publish(CommitPoint(1, 1, 1))
            assert wait_until(lambda: not flusher._thread.is_alive())
            assert flusher.failures == 1 and flusher.flushes == 0
            assert "injected" in caplog.text and "refuses further writes" in caplog.text
    finally:
        flusher.close()
    assert port.calls == 1


def test_close_ends_a_waiting_flusher_at_once():
    port = _Port()
    flusher = MetaFlusher.start(port)  # type: ignore[arg-type]
    flusher.close()
    assert not flusher._thread.is_alive()  # woken and joined, not left behind
    assert port.calls == 0


def test_database_without_engine_open_refuses_sync_data(tmp_path):
    import pytest

    with pytest.raises(engine.OptionsError, match="meta flusher"):
        engine.Database(str(tmp_path / "db"), sync="data")


def test_under_sync_data_meta_writes_snapshots_and_shipping_flush(tmp_path, monkeypatch):
    """What the commit signal does not cover is flushed where it is made: a service's
    meta entry, the tx a snapshot captures, what a backup is about to ship (and in
    "commit" only the meta entry: the commit journal carries commits, not meta entries,
    so it is checkpointed where it is made)."""
    from engine import formats
    from engine.log import LogStore

    calls: list[str] = []
    real = LogStore.sync

    def counting(self: LogStore) -> None:
        calls.append(self.sync_mode)
        real(self)

    monkeypatch.setattr(LogStore, "sync", counting)
    for sync, extras in (("data", (1, 1, 1)), ("commit", (1, 0, 0))):
        db = engine.open(str(tmp_path / sync), sync=sync)
        try:
            if "metaflush" in db._services:
                db._services["metaflush"].close()  # leave only the flushes under test
            port = db.service_port()
            db.append("a", "set", b"1")
            put = functools.partial(port.put_meta, formats.META_BACKUP, b'{"probe": 1}')
            for action, extra in zip((put, db.snapshot, port.flush_before_shipping), extras,
                                     strict=True):
                n = len(calls)
                action()
                assert len(calls) == n + extra, (sync, action)
        finally:
            db.close()


def test_a_failed_flush_makes_the_log_refuse_writes(tmp_path, monkeypatch):
    """Linux reports a writeback error to one fsync only: after a failed flush no later
    commit may be acknowledged over the lost pages."""
    import lmdb
    import pytest

    db = engine.open(str(tmp_path / "db"), sync="data")
    try:
        log = db._log
        db.append("a", "set", b"1")

        class FailingEnv:
            def __init__(self, env):
                self._env = env

            def sync(self, force=False):
                raise lmdb.Error("injected: EIO on fdatasync")

            def __getattr__(self, name):
                return getattr(self._env, name)

        real_env = log._env
        monkeypatch.setattr(log, "_env", FailingEnv(real_env))
        with pytest.raises(engine.StorageError, match="fsync"):
            log.sync()
        monkeypatch.setattr(log, "_env", real_env)  # the disk "recovers": still refused
        with pytest.raises(engine.StorageError, match=r"earlier flush .* failed .*injected"
                           r".*reopen the database"):
            db.append("a", "set", b"2")
        with pytest.raises(engine.StorageError, match="earlier flush"):
            log.sync()
        assert db.get("a") == b"1"
    finally:
        db.close()
