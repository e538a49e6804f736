"""``engine.watch.LogWatcher``: a reader's inotify watch on ``log/data.mdb`` exists only
while the log is quiet, so a busy writer's writes raise no events (each one cost the
writer a kernel event in its own ``pwrite``); while busy the watcher polls, and the
step from polling back to the watch loses no commit.

The watch is read from the kernel (``/proc/self/fdinfo`` of the inotify descriptor
lists one ``inotify wd:`` line per watch), not only from the watcher's own flag. Tests
that must not be rescued by the 1 s safety net set it to an hour before the watcher
starts; the idle delay is kept long until a test has seen the watch come off."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import engine
from engine import watch
from engine.watch import LogWatcher
from tests.support.writer import Writer

WAIT = 20.0  # generous deadlines for a loaded CI machine; the waits end at once when met
HOUR = 3600.0


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
    """A plain file standing in for data.mdb: a 'commit' appends a byte. on_change
    answers as Reader._observe does: how far the log goes (its size here), or None
    once the file it follows is gone or replaced."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "wb"):
            pass
        self.inode = os.stat(path).st_ino
        self.seen = 0
        self.calls = 0
        self.hook: Callable[[], None] | None = None
        self.lock = threading.Lock()

    def commit(self) -> None:
        with open(self.path, "ab") as f:
            f.write(b"x")

    def on_change(self) -> int | None:
        with self.lock:
            self.calls += 1
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return None
            if st.st_ino != self.inode:
                return None
            self.seen = st.st_size
            if self.hook is not None:
                self.hook()  # after the read: a commit it makes is not seen by this look
            return self.seen


@pytest.fixture
def fake(tmp_path) -> Iterator[tuple[FakeLog, Callable[[], LogWatcher]]]:  # type: ignore[no-untyped-def]
    """The fake log and a factory for its watcher (made after a test's patches)."""
    log = FakeLog(str(tmp_path / "data.mdb"))
    made: list[LogWatcher] = []

    def make() -> LogWatcher:
        made.append(LogWatcher(log.path, log.on_change, "test"))
        return made[-1]

    yield log, make
    for w in made:
        w.close()


def _polling(log: FakeLog, w: LogWatcher) -> int:
    """Commit, each one seen, until the watcher has dropped its watch (two commits it
    sees within BUSY_GAP_SECONDS: the tests that call this set it to an hour; the
    first may be taken in by its opening look). Returns the commits made."""
    n = 0
    while w.armed:
        assert n < 10, "the watcher never took the watch off"
        log.commit()
        n += 1
        _until(lambda n=n: log.seen == n, f"commit {n} to be seen")
    _until(lambda: not w.armed, "the watcher to poll")
    return n


def _started_polling(fake: tuple[FakeLog, Callable[[], LogWatcher]], monkeypatch: Any,
                     *, safety_net: float | None = HOUR) -> tuple[FakeLog, LogWatcher, int]:
    """The fake log's watcher made with the idle delay and the busy gap at an hour (so
    it polls after two commits and stays polling) and the safety net at
    ``safety_net`` (None: left as it is), then brought to polling: (log, watcher,
    commits made)."""
    log, make = fake
    if safety_net is not None:
        monkeypatch.setattr(watch, "SAFETY_NET_SECONDS", safety_net)
    monkeypatch.setattr(watch, "IDLE_AFTER_SECONDS", HOUR)
    monkeypatch.setattr(watch, "BUSY_GAP_SECONDS", HOUR)
    w = make()
    return log, w, _polling(log, w)


def _asleep(log: FakeLog, w: LogWatcher) -> None:
    """Wait until the watch is on and the watcher has stopped looking (the look after
    arming and its recheck are done): only an event can wake it now."""
    def settled() -> bool:
        calls = log.calls
        time.sleep(0.03)
        return w.armed and log.calls == calls

    _until(settled, "the watcher to sleep on its watch")


def test_a_quiet_log_is_watched_and_a_commit_wakes_the_watcher(fake, monkeypatch):
    log, make = fake
    monkeypatch.setattr(watch, "SAFETY_NET_SECONDS", HOUR)  # only an event can wake it
    monkeypatch.setattr(watch, "IDLE_AFTER_SECONDS", HOUR)
    w = make()
    assert w.armed and _kernel_watches(w) == 1  # armed from the start
    _asleep(log, w)
    log.commit()
    _until(lambda: log.seen == 1, "the commit to be seen")
    assert w.armed  # one commit after a quiet spell is not a busy writer


def test_commits_far_apart_keep_the_watch(fake, monkeypatch):
    """Below the busy rate (here: never busy) every commit is seen through the watch,
    which stays in place: the events cost such a writer next to nothing, and polling
    would cost the reader a wake-up every POLL_SECONDS."""
    log, make = fake
    monkeypatch.setattr(watch, "SAFETY_NET_SECONDS", HOUR)
    monkeypatch.setattr(watch, "BUSY_GAP_SECONDS", 0.0)
    w = make()
    calls = log.calls
    for i in range(1, 11):
        log.commit()
        _until(lambda i=i: log.seen == i, f"commit {i} to be seen through the watch")
        assert w.armed and _kernel_watches(w) == 1
    assert log.calls - calls <= 2 * 10  # a look or two per commit, no polling between


def test_while_commits_keep_coming_no_watch_exists(fake, monkeypatch):
    log, w, n = _started_polling(fake, monkeypatch, safety_net=None)
    assert _kernel_watches(w) == 0
    for i in range(n + 1, n + 11):
        log.commit()  # seen by polling: no watch raises an event for it
        _until(lambda i=i: log.seen == i, f"commit {i} to be seen by polling")
        assert _kernel_watches(w) == 0


def test_a_log_quiet_again_is_watched_again(fake, monkeypatch):
    log, w, n = _started_polling(fake, monkeypatch)
    monkeypatch.setattr(watch, "IDLE_AFTER_SECONDS", 0.0)
    _asleep(log, w)
    assert _kernel_watches(w) == 1
    log.commit()  # woken by the new watch (the safety net never fires here)
    _until(lambda: log.seen == n + 1, "the commit after re-arming to be seen")


def test_a_writer_slower_than_the_busy_rate_gets_the_watch_back(fake, monkeypatch):
    """While polling, a look that finds fewer new txs than the busy rate would have
    brought since the look before puts the watch back, even though commits keep
    coming (the idle delay is an hour here): a writer of a few hundred commits a
    second is not worth a reader's wake-ups every POLL_SECONDS."""
    log, w, n = _started_polling(fake, monkeypatch)
    monkeypatch.setattr(watch, "BUSY_GAP_SECONDS", 0.001)
    log.commit()  # one tx in a poll of 2 ms: under 1000/s
    _asleep(log, w)
    log.commit()
    _until(lambda: log.seen == n + 2, "the next commit to be seen through the watch")


def test_an_idle_armed_watcher_looks_only_at_the_safety_net(fake, monkeypatch):
    """Nothing is written: the watcher sleeps on its watch and looks once per safety
    net, no more (no re-arming, no chain of rechecks after a look no event woke)."""
    log, make = fake
    monkeypatch.setattr(watch, "SAFETY_NET_SECONDS", 0.05)
    w = make()
    calls = log.calls
    time.sleep(0.5)
    looks = log.calls - calls
    assert 3 <= looks <= 15, looks  # ~10 at 0.05 s each
    assert w.armed and _kernel_watches(w) == 1


def test_a_fast_writer_takes_the_watch_off_even_when_looks_are_slow(fake, monkeypatch):
    """Busy is a rate of txs, not the time between two looks: with each look taking
    1.5 ms (a reader busy replaying, its subscribers holding the GIL), a writer of
    thousands of commits a second still takes the watch off."""
    log, make = fake
    monkeypatch.setattr(watch, "IDLE_AFTER_SECONDS", HOUR)
    w = make()
    _asleep(log, w)
    log.hook = lambda: time.sleep(0.0015)
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            log.commit()
            time.sleep(0.0002)

    th = threading.Thread(target=writer)
    th.start()
    try:
        _until(lambda: not w.armed, "the watch to come off")
        assert _kernel_watches(w) == 0
    finally:
        stop.set()
        th.join()


def test_a_commit_between_the_last_look_and_the_watch_is_not_missed(fake, monkeypatch):
    """The step from polling to the watch: the watch is added, then the log is looked
    at once more, so a commit landing after that look read the log raises an event on
    the watch and is seen at once (looking first and adding the watch after would
    leave a commit landing between the two unseen until the safety net, set to an hour
    here). Both halves: the order of the two steps, and a commit landing inside the
    last look, after its read."""
    log, w, n = _started_polling(fake, monkeypatch)
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
    monkeypatch.setattr(watch, "IDLE_AFTER_SECONDS", 0.0)
    _until(landed.is_set, "the watcher to arm")
    assert order == ["arm", "look"]  # the watch first, then the last look
    _until(lambda: log.seen == n + 1, "the commit that landed while arming to be seen")


def test_a_failed_look_after_arming_goes_back_to_polling(fake, monkeypatch, caplog):
    """If the last look (after the watch went on) fails, a commit that landed just
    before the watch existed raised no event and was not seen: the watcher must poll
    again, not sleep on the watch until the safety net (an hour here)."""
    log, w, n = _started_polling(fake, monkeypatch)
    committed, failed = threading.Event(), threading.Event()
    arm, real = w._arm, log.on_change

    def arm_just_after_a_commit() -> None:
        if not committed.is_set():
            log.commit()  # lands before the watch exists: it raises no event
            committed.set()
        arm()

    def fail_the_look_after_arming() -> int | None:
        if committed.is_set() and not failed.is_set():
            failed.set()
            raise OSError(errno.EIO, "a look that failed")
        return real()

    w._arm = arm_just_after_a_commit  # type: ignore[method-assign]
    w._on_change = fail_the_look_after_arming  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="engine"):
        monkeypatch.setattr(watch, "IDLE_AFTER_SECONDS", 0.0)
        _until(failed.is_set, "the look after arming to fail")
        _until(lambda: log.seen == n + 1, "the commit the failed look missed to be seen")
    assert "a look that failed" in caplog.text


@pytest.mark.parametrize("how", ["unlinked", "renamed over"])
def test_a_replaced_or_removed_log_ends_the_watcher(fake, monkeypatch, caplog, how):
    """A log replaced under the reader raises no event on the old file; the next look
    finds it (on_change returns None) and the watcher ends, rather than watching the
    new log's file and charging its writer for a reader that is stale."""
    log, make = fake
    monkeypatch.setattr(watch, "IDLE_AFTER_SECONDS", HOUR)
    monkeypatch.setattr(watch, "BUSY_GAP_SECONDS", HOUR)
    w = make()
    with caplog.at_level(logging.WARNING, logger="engine"):
        _polling(log, w)
        if how == "unlinked":
            os.unlink(log.path)
        else:
            new = log.path + ".new"
            with open(new, "wb") as f:
                f.write(b"new log")
            os.replace(new, log.path)
        _until(lambda: not w._thread.is_alive(), "the watcher to end")
        calls = log.calls
        if how == "renamed over":
            for _ in range(20):
                log.commit()  # the new log's commits: nobody looks any more
            time.sleep(0.05)
            assert log.calls == calls
    assert not caplog.records  # an expected end, not a failure
    w.close()  # idempotent after the thread ended by itself


def test_a_watch_that_cannot_be_added_again_keeps_polling(fake, monkeypatch, caplog):
    """The watch limit reached after subscribe (or the file gone between two looks):
    re-arming fails, the watcher keeps polling, and commits are still seen."""
    log, w, n = _started_polling(fake, monkeypatch, safety_net=None)

    def refuse(path: str, mask: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device (watch limit)")

    monkeypatch.setattr(w._inotify, "add_watch", refuse)
    monkeypatch.setattr(watch, "IDLE_AFTER_SECONDS", 0.0)
    with caplog.at_level(logging.WARNING, logger="engine"):
        time.sleep(0.05)  # many arming attempts, each refused
        for i in range(n + 1, n + 5):
            log.commit()
            _until(lambda i=i: log.seen == i, f"commit {i} to be seen while polling")
    assert not w.armed and _kernel_watches(w) == 0
    assert not caplog.records


@contextlib.contextmanager
def _follower(db_path: str) -> Iterator[tuple[Writer, Any, Any, LogWatcher]]:
    """A writer process with one commit, and a read-only handle subscribed after it:
    (writer, reader, subscription, the reader's watcher)."""
    w = Writer(db_path)
    try:
        w.send("append", "s", "e", "first")
        with engine.open(db_path, readonly=True) as r, \
                r.subscribe(after_position=r.last_position) as sub:
            assert r._watcher is not None
            yield w, r, sub, r._watcher
    finally:
        w.close()


def _commit_until_polling(w: Writer, sub: Any, watcher: LogWatcher) -> None:
    """Commit, each received, until the watcher drops its watch (BUSY_GAP_SECONDS is an
    hour in the callers: two commits it sees; its opening look may take in one)."""
    for k in range(10):
        w.send("append", "s", "e", f"w{k}")
        ev = sub.next_event(timeout=WAIT)
        assert ev is not None and ev.data == f"w{k}".encode()
        if not watcher.armed:
            break
    _until(lambda: not watcher.armed, "the watch to come off")


def test_a_subscriber_in_another_process_keeps_no_watch_while_the_writer_commits(
        db_path, monkeypatch):
    """The real pair: a writer process committing and a subscribed read-only handle.
    After the first commit wakes it, the reader's watcher polls with no watch in the
    kernel, and every commit still arrives; once the writer stops, it watches again,
    and the next commit arrives through the watch (the safety net is an hour)."""
    monkeypatch.setattr(watch, "IDLE_AFTER_SECONDS", HOUR)
    monkeypatch.setattr(watch, "SAFETY_NET_SECONDS", HOUR)
    monkeypatch.setattr(watch, "BUSY_GAP_SECONDS", HOUR)
    with _follower(db_path) as (w, _r, sub, watcher):
        _commit_until_polling(w, sub, watcher)
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


def test_the_reader_catching_up_first_does_not_make_a_busy_log_look_quiet(
        db_path, monkeypatch):
    """refresh() looks at the log from the caller's thread. When it finds each commit
    before the watcher does, the watcher must still see the log moving (it compares
    what its own looks return), so the watch stays off while commits keep coming."""
    monkeypatch.setattr(watch, "POLL_SECONDS", 0.05)  # refresh() always gets there first
    monkeypatch.setattr(watch, "IDLE_AFTER_SECONDS", 1.0)  # (a writer stalled 1 s is quiet)
    monkeypatch.setattr(watch, "BUSY_GAP_SECONDS", HOUR)
    with _follower(db_path) as (w, r, sub, watcher):
        _commit_until_polling(w, sub, watcher)
        arms: list[float] = []
        arm = watcher._arm

        def counted_arm() -> None:
            arms.append(time.monotonic())
            arm()

        watcher._arm = counted_arm  # type: ignore[method-assign]
        end = time.monotonic() + 2.0  # two idle delays of commits
        while time.monotonic() < end:
            w.send("append", "s", "e", "busy")
            r.refresh()
            time.sleep(0.01)
        assert arms == []  # the watcher never took the busy log for a quiet one


def test_every_commit_reaches_an_armed_watcher_without_the_safety_net(db_path, monkeypatch):
    """The watch's event comes from LMDB's meta-page write, before LMDB publishes the
    new txnid that a reader's transaction reads: a look woken by it can find nothing
    new. The recheck after POLL_SECONDS must find the commit then; here the watch
    never comes off and the safety net is an hour, so a commit left to the net would
    never arrive. Two busy processes beside it make the preemption that opens the
    window likely (without the recheck: 5 of 300 commits stuck in such a run, none on
    an idle machine)."""
    monkeypatch.setattr(watch, "BUSY_GAP_SECONDS", 0.0)  # always armed
    monkeypatch.setattr(watch, "SAFETY_NET_SECONDS", HOUR)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(2)]
    try:
        with _follower(db_path) as (w, _r, sub, watcher):
            for i in range(int(os.environ.get("ENGINE_WATCH_COMMITS", "300"))):
                w.send("append", "s", "e", f"x{i}")
                ev = sub.next_event(timeout=WAIT)
                assert ev is not None and ev.data == f"x{i}".encode()
                assert watcher.armed
    finally:
        for b in burners:
            b.kill()
            b.wait()


def test_closing_a_watcher_that_ended_by_itself_is_safe_with_sigpipe_default(tmp_path):
    """A watcher whose thread ended (its reader closed or went stale) is closed
    later by Reader.close(). In a host that restored SIGPIPE's default action (the
    usual `| head` idiom), writing to a pipe whose reading end was closed kills the
    process: the stop pipe's ends stay open until close()."""
    data = tmp_path / "data.mdb"
    data.write_bytes(b"")
    script = f"""
import signal, sys
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
from engine.watch import LogWatcher
w = LogWatcher({str(data)!r}, lambda: None, "t")  # its opening look ends the thread
w._thread.join(20)
assert not w._thread.is_alive()
w.close()
w.close()
print("closed")
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "closed", (r.returncode, r.stderr)
