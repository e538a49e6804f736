"""``engine.watch.LogWatcher``: a reader's inotify watch on ``log/data.mdb`` exists only
while the log is quiet, so a busy writer's writes raise no events (each one cost the
writer a kernel event in its own ``pwrite``); while busy the watcher polls, and the
step from polling back to the watch loses no commit.

The watch is read from the kernel (``/proc/self/fdinfo`` of the inotify descriptor
lists one ``inotify wd:`` line per watch), not only from the watcher's own flag."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import engine
from engine import watch
from engine.watch import LogWatcher
from tests.support.writer import Writer

WAIT = 20.0  # generous deadlines for a loaded CI machine; the waits end at once when met


def _kernel_watches(w: LogWatcher) -> int:
    with open(f"/proc/self/fdinfo/{w._inotify.fileno()}") as f:
        return sum(1 for line in f if line.startswith("inotify wd:"))


def _until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


class FakeLog:
    """A plain file standing in for data.mdb: a 'commit' appends a byte; on_change
    reports whether the size grew since it last looked (as Reader._observe reports a
    newer last tx)."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "wb"):
            pass
        self.seen = 0
        self.calls = 0
        self.hook: Callable[[], None] | None = None
        self.lock = threading.Lock()

    def commit(self) -> None:
        with open(self.path, "ab") as f:
            f.write(b"x")

    def on_change(self) -> bool:
        with self.lock:
            self.calls += 1
            size = os.path.getsize(self.path)
            changed, self.seen = size > self.seen, size
            if self.hook is not None:
                self.hook()  # after the read: a commit it makes is not seen by this look
            return changed


@pytest.fixture
def fake(tmp_path) -> Iterator[tuple[FakeLog, LogWatcher]]:  # type: ignore[no-untyped-def]
    log = FakeLog(str(tmp_path / "data.mdb"))
    w = LogWatcher(log.path, log.on_change, "test")
    yield log, w
    w.close()


def test_a_quiet_log_is_watched_and_a_commit_wakes_the_watcher(fake, monkeypatch):
    log, w = fake
    monkeypatch.setattr(watch, "SAFETY_NET_SECONDS", 3600.0)  # only an event can wake it
    assert w.armed and _kernel_watches(w) == 1  # armed from the start
    log.commit()
    _until(lambda: log.seen == 1, "the commit to be seen")


def test_while_commits_keep_coming_no_watch_exists(fake, monkeypatch):
    log, w = fake
    monkeypatch.setattr(watch, "IDLE_AFTER_SECONDS", 3600.0)  # never quiet long enough
    log.commit()
    _until(lambda: not w.armed, "the first commit to disarm the watch")
    assert _kernel_watches(w) == 0
    for i in range(2, 12):
        log.commit()  # seen by polling: no watch raises an event for it
        _until(lambda i=i: log.seen == i, f"commit {i} to be seen by polling")
        assert _kernel_watches(w) == 0


def test_a_log_quiet_again_is_watched_again(fake, monkeypatch):
    log, w = fake
    monkeypatch.setattr(watch, "SAFETY_NET_SECONDS", 3600.0)
    log.commit()
    _until(lambda: log.seen == 1 and not w.armed, "the watcher to poll")
    _until(lambda: w.armed, "the quiet log to be watched again")  # IDLE_AFTER_SECONDS
    assert _kernel_watches(w) == 1
    log.commit()  # woken by the new watch (the safety net never fires here)
    _until(lambda: log.seen == 2, "the commit after re-arming to be seen")


def test_a_commit_between_the_last_look_and_the_watch_is_not_missed(fake, monkeypatch):
    """The step from polling to the watch: the watch is added, then the log is looked
    at once more, so a commit landing after that look read the log raises an event on
    the watch and is seen at once (looking first and adding the watch after would
    leave a commit landing between the two unseen until the safety net, set to an hour
    here). Both halves: the order of the two steps, and a commit landing inside the
    last look, after its read."""
    log, w = fake
    monkeypatch.setattr(watch, "SAFETY_NET_SECONDS", 3600.0)
    log.commit()
    _until(lambda: log.seen == 1 and not w.armed, "the watcher to poll")
    steps: list[str] = []
    arm = w._arm

    def recorded_arm() -> None:
        steps.append("arm")
        arm()

    landed = threading.Event()
    order: list[str] = []

    def commit_inside_the_last_look() -> None:
        steps.append("look")
        if w.armed and not landed.is_set():
            order.extend(steps[-2:])  # what led to this first look with the watch armed
            log.commit()  # after this look's read: only the watch can tell of it
            landed.set()

    w._arm = recorded_arm  # type: ignore[method-assign]
    log.hook = commit_inside_the_last_look
    _until(landed.is_set, "the watcher to arm")
    assert order == ["arm", "look"]  # the watch first, then the last look
    _until(lambda: log.seen == 2, "the commit that landed while arming to be seen")


def test_a_replaced_log_file_is_noticed_while_polling(tmp_path, monkeypatch):
    """Arming fails once the file is gone: the watcher keeps polling (correct, and
    free for the writer) instead of failing."""
    log = FakeLog(str(tmp_path / "data.mdb"))
    monkeypatch.setattr(watch, "IDLE_AFTER_SECONDS", 0.0)
    w = LogWatcher(log.path, log.on_change, "test")
    try:
        log.commit()
        _until(lambda: log.seen == 1, "the commit to be seen")
        gone = log.calls
        os.unlink(log.path)  # the next look and the next arming both meet no file
        log.hook = None

        def looks_without_file() -> bool:
            with log.lock:
                log.calls += 1
            return os.path.exists(log.path)

        w._on_change = looks_without_file
        _until(lambda: log.calls > gone + 20, "the watcher to keep looking")
        assert not w.armed and _kernel_watches(w) == 0
    finally:
        w.close()


def test_a_subscriber_in_another_process_keeps_no_watch_while_the_writer_commits(
        db_path, monkeypatch):
    """The real pair: a writer process committing and a subscribed read-only handle.
    After the first commit wakes it, the reader's watcher polls with no watch in the
    kernel, and every commit still arrives; once the writer stops, it watches again."""
    monkeypatch.setattr(watch, "IDLE_AFTER_SECONDS", 3600.0)
    w = Writer(db_path)
    try:
        w.send("append", "s", "e", "first")
        with engine.open(db_path, readonly=True) as r, \
                r.subscribe(after_position=r.last_position) as sub:
            watcher = r._watcher
            assert watcher is not None
            for i in range(20):
                w.send("append", "s", "e", f"x{i}")
                ev = sub.next_event(timeout=WAIT)
                assert ev is not None and ev.data == f"x{i}".encode()
                assert not watcher.armed and _kernel_watches(watcher) == 0
            monkeypatch.setattr(watch, "IDLE_AFTER_SECONDS", 0.0)
            _until(lambda: watcher.armed, "the quiet log to be watched again")
            assert _kernel_watches(watcher) == 1
            w.send("append", "s", "e", "after")
            ev = sub.next_event(timeout=WAIT)
            assert ev is not None and ev.data == b"after"
    finally:
        w.close()
