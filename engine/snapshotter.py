"""Taking snapshots: on request (``db.snapshot()``) and in the background.

:class:`Snapshotter` serialises snapshot writes (one at a time), prunes old files
after a new one is durable, and, with ``snapshot_every``, runs a thread that waits
on the :class:`~engine.notify.CommitSignal` until that many transactions were
committed since the last snapshot. The thread costs committers nothing while it
waits (the signal wakes it only when its target tx is reached).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .model import EpochRecord, SnapshotInfo
from .notify import CommitSignal
from .snapshot import prune, write_snapshot
from .state import Captured

log = logging.getLogger("engine")

Capture = Callable[[], Captured]
# tx_id -> the xxh64 of its log record (None if the log cannot tell): the lineage proof
# each snapshot records (engine.lineage).
Lineage = Callable[[int], int | None]


class Snapshotter:
    """Writes snapshots of one open database into ``snapshot_dir``."""

    def __init__(self, *, snapshot_dir: str, db_id: str, epoch: int,
                 history: tuple[EpochRecord, ...], capture: Capture, lineage: Lineage,
                 keep: int,
                 last_snapshot_tx: int, signal: CommitSignal, every: int | None,
                 name: str) -> None:
        self._dir = snapshot_dir
        self._db_id = db_id
        self._epoch = epoch
        self._history = history
        self._capture = capture  # (entries copy, C index under it, tx_id, last position)
        self._lineage = lineage
        self._keep = keep
        self._signal = signal
        self._every = every
        self._lock = threading.Lock()  # one snapshot write at a time
        # Written under _lock; read lock-free by the background loop.
        self.last_snapshot_tx = last_snapshot_tx
        # Written by the background thread only: the last background failure (None after
        # a success); surfaced by status and the log.
        self.last_error: BaseException | None = None
        self._stop = False  # set once by close()
        # Written under _lock (by take()), read lock-free by the metrics collector.
        self.taken = 0
        self.failures = 0
        self.seconds_total = 0.0
        self.last_bytes = 0
        self._thread: threading.Thread | None = None
        # Held while the background thread runs; it sets _exited, then releases it. close()
        # waits on this rather than on Thread.join alone: an interrupted join (CPython
        # 3.11's bpo-45274 handling) can mark a thread that is still running as stopped,
        # and the next join then returns at once, leaving it writing snapshots.
        self._running = threading.Lock()
        self._exited = False
        if every:
            self._running.acquire()
            self._thread = threading.Thread(target=self._run, name=f"engine-snapshot:{name}",
                                            daemon=True)
            self._thread.start()

    def take(self) -> SnapshotInfo:
        """Write a snapshot of the current state; returns once it is durable."""
        with self._lock:
            t0 = time.perf_counter()
            try:
                entries, base, tx_id, pos = self._capture()
                # the record of tx_id is in the log: the state is merged only after it
                info = write_snapshot(self._dir, db_id=self._db_id, epoch=self._epoch,
                                      tx_id=tx_id, last_position=pos, history=self._history,
                                      state=entries, tx_checksum=self._lineage(tx_id),
                                      base=base)
            except BaseException:
                self.failures += 1
                raise
            self.last_snapshot_tx = tx_id
            self.taken += 1
            self.seconds_total += time.perf_counter() - t0
            self.last_bytes = info.bytes
            prune(self._dir, self._keep)
            return info

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._exited = True
            self._running.release()

    def _loop(self) -> None:
        every = self._every
        assert every
        while True:
            self._signal.wait_for_tx(self.last_snapshot_tx + every)
            if self._stop or self._signal.closed:
                return
            if self._signal.current.tx_id - self.last_snapshot_tx < every:
                continue  # a snapshot was taken on request meanwhile
            try:
                self.take()
                self.last_error = None
            except Exception as exc:  # keep serving; surfaced by status and the log
                self.last_error = exc
                log.error("background snapshot into %s failed: %s", self._dir, exc)
                # Wait for the next `every` commits before trying again.
                self._signal.wait_for_tx(self._signal.current.tx_id + every)

    def close(self) -> None:
        """Stop the background thread (the signal must be closed first, or be closed next)."""
        self._stop = True
        if self._thread is not None:
            while not self._exited:  # interruptible; a later close() waits again
                if self._running.acquire(True, 1.0):
                    self._running.release()
            self._thread.join()
