"""The meta flusher of ``sync="data"``: bounds how long a commit's meta page stays
unflushed.

Under ``sync="data"`` LMDB flushes a commit's data pages before the commit returns
and writes, but does not flush, the meta page that makes it current
(MDB_NOMETASYNC); the next commit's flush carries it to the disk. A database that
goes quiet would leave its last commits undoable by a power loss until the OS
writes the page back (tens of seconds). This service (one thread,
``engine-metaflush:<dir>``) waits on the commit signal and, once commits have
stopped for ``delay`` seconds, flushes the log once: under steady commits it never
runs (each commit's own flush carries the one before), after the last one it runs
once. The flush (``LogStore.sync``: one ``fdatasync``) holds the log's write lock, so
a commit arriving during it waits for that one flush; it only ever runs once commits
have paused.

Imports: ``errors``, ``port`` (``notify`` through the port).
"""

from __future__ import annotations

import logging
import threading

from .errors import EngineError
from .port import ServicePort

log = logging.getLogger(__name__)

DELAY_SECONDS = 0.01
"""Quiet time after the last commit before the flush: the longest a commit's meta page
stays unflushed once commits stop (plus the flush itself)."""


class MetaFlusher:
    """Flush the log ``delay`` seconds after the last commit (``sync="data"``).

    Thread-safe: ``close`` may be called from any thread, once or more. Fields after
    construction are written by the flusher thread only, except the two Events.
    """

    def __init__(self, port: ServicePort, delay: float = DELAY_SECONDS) -> None:
        self._port = port
        self._delay = delay
        self._stop = threading.Event()  # set by close() only
        # The commit signal sets this to wake the wait (it sets, never clears, a waker):
        # cleared by the flusher before each wait, also set by close().
        self._wake = threading.Event()
        self.flushes = 0  # flusher thread only: flushes done (read by tests)
        self.failures = 0  # flusher thread only: flushes that raised (logged)
        self._flushed_tx = port.signal.current.tx_id  # last tx known durable
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"engine-metaflush:{port.path}")

    @classmethod
    def start(cls, port: ServicePort, delay: float = DELAY_SECONDS) -> MetaFlusher:
        svc = cls(port, delay)
        svc._thread.start()
        return svc

    def _run(self) -> None:
        signal = self._port.signal
        while not self._stop.is_set():
            self._wake.clear()
            point = signal.wait_for_tx(self._flushed_tx + 1, timeout=1.0, wake=self._wake)
            if self._stop.is_set() or signal.closed:
                return
            if point.tx_id <= self._flushed_tx:
                continue  # the wait timed out: nothing new
            # Coalesce: wait until no commit has landed for `delay` seconds.
            seen = point.tx_id
            while not self._stop.wait(self._delay):
                now = signal.current.tx_id
                if now == seen:
                    break
                seen = now
            if self._stop.is_set():
                return  # closing: the log's close flushes
            try:
                self._port.flush_log()
            except EngineError as exc:  # the log closed under us, or a failing disk
                if self._stop.is_set() or signal.closed:
                    return
                # The log remembers a failed flush and refuses every later write with
                # it (LogStore.sync); there is nothing more to flush here.
                self.failures += 1
                log.error("sync=data: flushing the log of %s failed: %s; the log "
                          "refuses further writes (reopen once the disk is healthy)",
                          self._port.path, exc)
                return
            self.flushes += 1
            self._flushed_tx = seen

    def close(self) -> None:
        """Stop the thread (the log's own close flushes what is left)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5.0)
