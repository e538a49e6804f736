"""The commit signal: the one hook background services wait on.

Every commit publishes the last committed :class:`CommitPoint` (epoch, tx, event
position) here, after its record is in the log (durable unless ``sync="none"``) and
its state change is visible. A service (snapshotter, backup uploader, subscription
pump) waits with :meth:`CommitSignal.wait_for_tx` and then reads what it needs from
the log itself: the signal says *that* something was committed, never *what*, so a
missed or coalesced wake-up can never make a service skip a transaction.

Cost on the commit path: one attribute store and one integer compare, plus waking
the waiters whose target was reached (one lock release each, or ``Event.set`` for a
caller's own ``wake`` event), so an idle service costs committers nothing.

Interrupts: a commit may publish from the main thread, where a signal handler can raise
at any bytecode. A waiter of the signal's own waits on a plain lock that publishing
releases in one C call (``threading.Event.set`` runs Python-level ``Condition.__enter__``,
where an interrupt can leave the event's lock held for good: the waiter would never wake
and the next ``set`` would deadlock). Waking is idempotent, so a publication cut short is
simply published again by the commit path.
"""

from __future__ import annotations

import threading
from _thread import LockType
from typing import NamedTuple

_NEVER = 1 << 64
_allocate_lock = threading.Lock
_Waker = LockType | threading.Event


def _set(ev: _Waker) -> None:
    """Wake one waiter (idempotent): release its lock if still held, or set its event."""
    if isinstance(ev, threading.Event):
        ev.set()
    elif ev.locked():
        ev.release()


class CommitPoint(NamedTuple):
    """The last committed transaction: ``epoch``, ``tx_id`` and the ``position`` of its
    last event (``position`` 0 before the first event)."""

    epoch: int
    tx_id: int
    position: int


class CommitSignal:
    """The last :class:`CommitPoint`, and waiting for a later one.

    ``publish`` is called by the single commit leader only (commits are serialised);
    ``wait_for_tx`` and ``current`` from any thread.
    """

    def __init__(self, point: CommitPoint) -> None:
        # Replaced whole by publish(); reading it needs no lock (one object under the GIL).
        self._point = point
        self._lock = threading.Lock()
        # Guarded by _lock: (target tx, waker) of every waiting thread; a waker is a held
        # lock of the signal's own (released to wake) or the caller's wake event.
        self._waiters: list[tuple[int, _Waker]] = []
        # Smallest target among _waiters (_NEVER if none). Written under _lock, read by
        # publish() without it: publish stores the point *then* reads this, a waiter
        # stores this *then* reads the point, so one of the two always sees the other.
        self._wake_at = _NEVER
        self._closed = False  # set once by close(), under _lock

    @property
    def current(self) -> CommitPoint:
        """The last committed point."""
        return self._point

    @property
    def closed(self) -> bool:
        return self._closed

    def publish(self, point: CommitPoint) -> None:
        """Record a new last commit and wake the waiters it satisfies (leader only)."""
        self._point = point
        if point.tx_id >= self._wake_at:
            self._wake(point.tx_id)

    def _wake(self, tx_id: int) -> None:
        with self._lock:
            keep = []
            for target, ev in self._waiters:
                if target <= tx_id:
                    _set(ev)
                else:
                    keep.append((target, ev))
            self._waiters = keep
            self._wake_at = min((t for t, _ in keep), default=_NEVER)

    def wait_for_tx(self, tx_id: int, timeout: float | None = None,
                    wake: threading.Event | None = None) -> CommitPoint:
        """Block until a transaction ``>= tx_id`` is committed, the signal is closed, or
        ``timeout`` seconds pass; returns the current point either way (check it).

        ``wake``: an event of the caller's that other threads may set to end the wait
        early (a service's control requests); it is set, not cleared, by a commit.
        """
        point = self._point
        if point.tx_id >= tx_id or self._closed:
            return point
        ev: _Waker
        if wake is None:
            ev = _allocate_lock()
            ev.acquire()  # held: publish() releases it to wake us
        else:
            ev = wake
        with self._lock:
            if self._closed:
                return self._point
            self._waiters.append((tx_id, ev))
            self._wake_at = min(self._wake_at, tx_id)
        try:
            if self._point.tx_id < tx_id:  # re-check after registering (see _wake_at)
                if isinstance(ev, threading.Event):
                    ev.wait(timeout)
                else:
                    ev.acquire(True, -1 if timeout is None else timeout)
        finally:
            with self._lock:
                self._waiters = [(t, e) for t, e in self._waiters if e is not ev]
                self._wake_at = min((t for t, _ in self._waiters), default=_NEVER)
        return self._point

    def close(self) -> None:
        """Wake every waiter for good (the database is closing); later waits return at once."""
        with self._lock:
            self._closed = True
            for _, ev in self._waiters:
                _set(ev)
            self._waiters = []
            self._wake_at = _NEVER
