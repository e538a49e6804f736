"""Waking a reader in another process when the writer commits: inotify on the log.

LMDB (without MDB_WRITEMAP, as the engine opens it) writes every commit's pages and
its meta page into ``log/data.mdb`` with ``pwrite``, whatever the sync mode, so each
commit raises an ``IN_MODIFY`` event on that file within microseconds; the kernel
coalesces a burst into fewer events, which is fine: the watcher only says *that*
something changed, and the reader then asks the log how far it goes. A timeout
(``SAFETY_NET_SECONDS``) makes the watcher look anyway now and then, so even a lost
event (inotify queue overflow) delays a reader by at most that long, and a log
replaced under the reader (a recovery renamed a new one into place) is noticed.

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


class LogWatcher:
    """Calls ``on_change()`` after each burst of writes to ``data_file`` (and at least
    every SAFETY_NET_SECONDS) until :meth:`close`."""

    def __init__(self, data_file: str, on_change: Callable[[], None], name: str) -> None:
        self._on_change = on_change
        try:
            self._inotify = INotify()  # owned here; closed by the thread on its way out
        except OSError as exc:
            raise StorageError(
                f"cannot watch {data_file} for the writer's commits ({exc}): the inotify "
                "limits may be exhausted (/proc/sys/fs/inotify/max_user_instances); raise "
                "them, or read without subscribing") from exc
        try:
            self._inotify.add_watch(data_file, flags.MODIFY | flags.DELETE_SELF
                                    | flags.MOVE_SELF)
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
        try:
            sel.register(fd, selectors.EVENT_READ)
            sel.register(self._stop_r, selectors.EVENT_READ)
            while not self._stopping:
                try:
                    ready = {key.fd for key, _ in sel.select(SAFETY_NET_SECONDS)}
                    if self._stop_r in ready:
                        return
                    if fd in ready:
                        self._inotify.read(timeout=0)  # drain: the count does not matter
                    self._on_change()
                except Exception as exc:  # keep watching; the reader reports on its next call
                    log.warning("watching the log for a read-only handle failed: %s", exc)
                    time.sleep(0.05)  # never spin on a persistent error
        finally:
            sel.close()
            self._inotify.close()
            os.close(self._stop_r)

    def close(self) -> None:
        """Stop the thread and wait for it (idempotent)."""
        if self._stopping:
            return
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        self._thread.join()
        os.close(self._stop_w)
