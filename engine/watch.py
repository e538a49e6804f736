"""Waking a reader in another process when the writer commits: inotify, and polling
instead while the writer is busy.

LMDB (without MDB_WRITEMAP, as the engine opens it) writes every commit's pages and
its meta page into ``log/data.mdb`` with ``pwrite``, whatever the sync mode, so each
commit raises an ``IN_MODIFY`` event on that file within microseconds. But a watch
costs the *writer*: every ``pwrite`` to a watched file queues an inotify event in the
writer's own system call (an allocation, the group's lock, the merge with the last
queued event, and waking the watcher), two per commit. Measured on this project's
2-core VM with ``sync="none"`` single-event commits against the same writer with no
reader (``python bench/reader_overhead.py``; README, "Readers in other processes"):
a process that only held such a watch and drained it took the writer to 0.64x, a
subscribed reader to 0.59x / 0.68x (two runs; 0.96x / 1.01x with what follows). So
the watch is dropped while commits come close together, and held otherwise:

- **armed** (the default): the watcher sleeps on the inotify descriptor (and at most
  ``SAFETY_NET_SECONDS``); a commit's first write wakes it (about 0.2 ms) and it
  looks at the log. A look that finds at least one new tx per ``BUSY_GAP_SECONDS``
  since the look before (1000 commits/s or more) removes the watch: the writer is
  busy. Below that rate the events cost the writer a few microseconds per commit,
  and the watch costs the reader nothing between commits;
- **polling** (the writer is busy): no watch exists, so the writer's writes cost it
  nothing; every ``POLL_SECONDS`` the watcher asks the log how far it goes (one
  short read transaction). A commit is seen within ``POLL_SECONDS`` plus that read.
  Each look costs the reader's process ~10 us and each wake-up of its thread ~45 us
  of CPU on this VM: ~3% of a core while the writer stays busy. A look that finds
  fewer new txs than the busy rate would have brought since the last one puts the
  watch back, and so does ``IDLE_AFTER_SECONDS`` without a commit;
- going from polling to armed, the watch is added *before* the last look at the log,
  so a commit that lands between the two is either seen by that look or raises an
  event on the new watch. A look can still come too early for a commit: LMDB
  writes the meta page (the event) and only then publishes the new txnid in
  ``lock.mdb``, which a reader's transaction reads (and the writer can be preempted
  in between). So a look woken by an event, or the one after arming, that finds
  nothing new is followed by more, ``POLL_SECONDS`` later and then twice as long
  each time until one finds it; one that finds a commit (the drain may have taken
  a later commit's event too) is followed by one more. No commit waits for the
  safety net. A look that fails takes the watch off again (the next look, polling,
  finds what the failed one missed).

``on_change`` asks the log how far it goes, wakes the reader's subscriptions, and
returns how far that is (the last tx), or None once there is nothing left to follow
(the reader closed, or found its log replaced): the thread then ends. The watcher
judges "busy" by comparing what its own looks return, so the reader's other
threads catching up first (``refresh``, reads) do not make a busy log look quiet. A
lost event (inotify queue overflow) is made up for within ``SAFETY_NET_SECONDS``. A
log replaced under the reader (a recovery renamed a new one into place) raises no
event on the old file, which the reader still holds open: the reader's inode check
at the next look notices it (at the safety net at worst, while armed).

:class:`LogWatcher` runs one daemon thread; ``on_change`` is called from it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable

from inotify_simple import INotify, flags

from .errors import StorageError

log = logging.getLogger("engine")

SAFETY_NET_SECONDS = 1.0
POLL_SECONDS = 0.002  # while polling: how often the log is asked
BUSY_GAP_SECONDS = 0.001  # a new tx per this long or faster: drop the watch and poll
IDLE_AFTER_SECONDS = 0.005  # polling this long without a commit: watch again
YIELD_SECONDS = 0.0002  # a pause that hands the GIL to the subscribers just woken
_EVENTS = flags.MODIFY | flags.DELETE_SELF | flags.MOVE_SELF


class LogWatcher:
    """Calls ``on_change()`` after each burst of writes to ``data_file`` (and at least
    every SAFETY_NET_SECONDS) until :meth:`close`, or until ``on_change`` returns None;
    otherwise it returns how far the log goes (module doc)."""

    def __init__(self, data_file: str, on_change: Callable[[], int | None],
                 name: str) -> None:
        self._on_change = on_change
        self._data_file = data_file
        try:
            self._inotify = INotify()  # owned here; closed by the thread on its way out
        except OSError as exc:
            raise StorageError(
                f"cannot watch {data_file} for the writer's commits ({exc}): the inotify "
                "limits may be exhausted (/proc/sys/fs/inotify/max_user_instances); raise "
                "them, or read without subscribing") from exc
        try:
            # Armed from the start; also how the watch limits are checked here, in the
            # caller's thread, rather than found exhausted later in the watcher's.
            # Owned by the thread from here: the watch descriptor, or None while polling.
            self._wd: int | None = self._inotify.add_watch(data_file, _EVENTS)
        except BaseException as exc:
            self._inotify.close()
            if isinstance(exc, OSError):
                raise StorageError(
                    f"cannot watch {data_file} for the writer's commits ({exc}): the "
                    "inotify watch limit may be exhausted "
                    "(/proc/sys/fs/inotify/max_user_watches); raise it, or read without "
                    "subscribing") from exc
            raise
        # close() writes a byte here to end the thread's select at once.
        self._stop_r, self._stop_w = os.pipe()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"engine-watch:{name}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fd = self._inotify.fileno()
        # A selector (epoll), not select(): descriptors past 1024 are fine.
        sel = selectors.DefaultSelector()
        last_change = -float("inf")  # when a look last found the log moved on
        # A look that an event woke (or the one after arming) may come before the
        # commit it is about can be seen: LMDB writes the meta page (the event) and
        # only then publishes the new txnid in lock.mdb, which a reader's transaction
        # reads, and the writer can be preempted in between. Such a look that finds
        # nothing new is followed by more, POLL_SECONDS later and then twice as long
        # each time, until one finds the commit or the delay reaches the safety net
        # (``recheck``: the next delay, or 0.0 for none).
        recheck = 0.0
        chain = False  # whether an empty recheck doubles and looks again (thread only)
        try:
            sel.register(fd, selectors.EVENT_READ)
            sel.register(self._stop_r, selectors.EVENT_READ)
            seen = -1  # what the last look returned: the last tx (thread only)
            try:
                first = self._on_change()  # where the log stands: not a change
            except Exception as exc:  # the loop's next look retries
                log.warning("watching the log for a read-only handle failed: %s", exc)
            else:
                if first is None:
                    return
                seen = first
            # this look came after the watch (made in __init__): check once more
            recheck = POLL_SECONDS
            last_look = time.monotonic()
            while not self._stopping:
                try:
                    armed = self._wd is not None
                    ready = {key.fd for key, _ in sel.select(
                        (recheck or SAFETY_NET_SECONDS) if armed else POLL_SECONDS)}
                    if self._stop_r in ready:
                        return
                    woken = fd in ready
                    if woken:
                        # drain: the count does not matter (while polling, only the
                        # IN_IGNORED of the watch just removed is there)
                        self._inotify.read(timeout=0)
                    again, recheck = recheck, 0.0
                    now = self._on_change()
                    if now is None:
                        return  # nothing left to follow (module doc)
                    t = time.monotonic()
                    quiet = False
                    if now == seen:
                        if not armed:
                            quiet = t - last_change >= IDLE_AFTER_SECONDS
                        elif woken:  # the event may be ahead of the txnid
                            recheck, chain = POLL_SECONDS, True
                        elif again and chain and again * 2 < SAFETY_NET_SECONDS:
                            recheck = again * 2  # still not visible: keep looking
                    elif armed:
                        if (now - seen) * BUSY_GAP_SECONDS >= t - last_look:
                            self._disarm()  # commits close together: poll
                        elif woken:
                            # the drain may have taken a later commit's event whose
                            # txnid this look came too early for: one more look
                            recheck, chain = POLL_SECONDS, False
                    elif t - last_look >= POLL_SECONDS / 2:  # a look on time, not an
                        # early one (a stray event): fewer txs than the busy rate?
                        quiet = (now - seen) * BUSY_GAP_SECONDS < t - last_look
                        if quiet:
                            # this look just woke the subscribers: let them take the
                            # GIL before arming (a few short system calls in a row
                            # would keep it from them up to a 5 ms switch interval)
                            time.sleep(YIELD_SECONDS)
                    if now != seen:
                        seen, last_change = now, t
                    last_look = t
                    if quiet:
                        self._arm()
                        # the watch first, then one more look: a commit between the
                        # last look and the watch is seen now or raises an event (or
                        # by the recheck, if its txnid came after this look)
                        now = self._on_change()
                        if now is None:
                            return
                        t = time.monotonic()
                        # a commit whose event came before the watch and whose txnid
                        # after this look: one more look (a chain if it saw nothing)
                        recheck, chain = POLL_SECONDS, now == seen
                        if now != seen:  # it moved on meanwhile
                            if (now - seen) * BUSY_GAP_SECONDS >= t - last_look:
                                self._disarm()  # and fast: keep polling
                                recheck = 0.0
                            seen, last_change = now, t
                        last_look = t
                except Exception as exc:  # keep watching; the reader reports on its next call
                    log.warning("watching the log for a read-only handle failed: %s", exc)
                    # poll: a look that failed after the watch went on may have missed a
                    # commit that raised its event before the watch existed
                    self._disarm()
                    last_change = time.monotonic()
                    time.sleep(0.05)  # never spin on a persistent error
        finally:
            sel.close()
            self._inotify.close()  # (the stop pipe stays open: see close())

    def _arm(self) -> None:
        """Watch the log file again (thread only). If that fails (the file was replaced
        and is gone, or the watch limit was reached meanwhile) the watcher keeps
        polling, which is correct and costs the writer nothing."""
        try:
            self._wd = self._inotify.add_watch(self._data_file, _EVENTS)
        except OSError as exc:
            log.debug("cannot watch %s again (%s); polling it", self._data_file, exc)

    def _disarm(self) -> None:
        """Remove the watch (thread only): the writer's writes stop raising events."""
        wd, self._wd = self._wd, None
        if wd is not None:
            # a watch the kernel removed itself (its file was deleted) is gone already
            with contextlib.suppress(OSError):
                self._inotify.rm_watch(wd)
            # its IN_IGNORED (and what was queued) would wake the next poll at once,
            # making it look early: drop them (a look follows anyway)
            with contextlib.suppress(OSError):
                self._inotify.read(timeout=0)

    @property
    def armed(self) -> bool:
        """Whether the watch is in place now (read by tests; module doc)."""
        return self._wd is not None

    def close(self) -> None:
        """Stop the thread and wait for it (idempotent)."""
        if self._stopping:
            return
        self._stopping = True
        # Both ends of the stop pipe live until here: the thread may have ended by
        # itself (the reader closed or stale), and a write to a pipe nobody can read
        # raises SIGPIPE, which kills a host that restored its default action.
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        self._thread.join()
        os.close(self._stop_w)
        os.close(self._stop_r)
