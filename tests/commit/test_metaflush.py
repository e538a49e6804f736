"""The meta flusher of sync="data" (engine/metaflush.py): once commits pause it
flushes the log once; under steady commits and with none it does nothing; a failing
flush is counted and logged, and the thread goes on; close stops it."""

from __future__ import annotations

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


def test_a_failed_flush_is_counted_and_the_next_commit_retries(caplog):
    port = _Port()
    flusher = MetaFlusher.start(port, delay=0.001)  # type: ignore[arg-type]
    try:
        with caplog.at_level(logging.WARNING, logger="engine.metaflush"):
            port.signal.publish(CommitPoint(1, 1, 1))
            assert wait_until(lambda: flusher.failures == 1)
            assert "injected" in caplog.text
            port.signal.publish(CommitPoint(1, 2, 2))  # not flushed yet: tried again
            assert wait_until(lambda: flusher.flushes == 1)
    finally:
        flusher.close()
    assert not flusher._thread.is_alive()
    assert port.calls == 2


def test_close_ends_a_waiting_flusher_at_once():
    port = _Port()
    flusher = MetaFlusher.start(port)  # type: ignore[arg-type]
    flusher.close()
    assert not flusher._thread.is_alive()  # woken and joined, not left behind
    assert port.calls == 0
