"""``db.subscribe``: catch up from the log, then follow live commits.

A :class:`Subscription` is a pull iterator owned by one consumer thread. It never
holds events in a queue that writers fill: it remembers only the last position it
has passed and reads the log (``read_events``) from there, so a slow subscriber
costs writers nothing and can never miss or reorder an event. When it has read
everything committed it waits on the :class:`~engine.notify.CommitSignal` for the
next transaction: woken by the commit itself, no polling.

It ends (``StopIteration``) when :meth:`Subscription.stop` is called (from any
thread; also on leaving its ``with`` block) or when the database closes. A range
lost in a log-loss recovery raises :class:`~engine.errors.HistoryLostError`, as
``read_events`` does; it is never skipped silently.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType

from .errors import DatabaseClosedError, InvalidEventError
from .formats import U64_MAX
from .model import Event
from .notify import CommitSignal

# read_events(from_position, to_position, types, limit)
ReadEvents = Callable[[int, int, frozenset[str] | None, int], Iterator[Event]]

BATCH = 512  # events read per log pass (bounds the memory a subscriber holds)


class Subscription:
    """Events after ``after_position`` (of ``types``, if given), in position order,
    first those already committed, then each new commit as it lands.

    Not thread-safe as an iterator (one consumer); :meth:`stop` may be called from
    any thread and wakes a consumer blocked in ``next``.
    """

    def __init__(self, read: ReadEvents, signal: CommitSignal, after_position: int,
                 types: frozenset[str] | None) -> None:
        if type(after_position) is not int or not 0 <= after_position < U64_MAX:
            raise InvalidEventError(f"after_position must be an int in 0..2**64-2, got "
                                    f"{after_position!r}")
        self._read = read
        self._signal = signal
        self._types = types
        # Consumer-thread only: every position <= _passed was delivered or filtered out.
        self._passed = after_position
        self._ready: deque[Event] = deque()  # consumer-thread only
        # Set by stop() (any thread); also the event the signal wait is woken with.
        self._wake = threading.Event()
        self._stopped = False

    @property
    def position(self) -> int:
        """The last position this subscription has passed (delivered or filtered out):
        resume from here with ``db.subscribe(after_position=sub.position)``."""
        return self._ready[0].position - 1 if self._ready else self._passed

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Event:
        ev = self.next_event(None)
        if ev is None:
            raise StopIteration
        return ev

    def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting at most ``timeout`` seconds (None: until one comes,
        the subscription stops or the database closes); None if there is none."""
        if self._stopped:
            return None
        ready = self._ready
        if ready:
            try:
                return ready.popleft()
            except IndexError:  # stop() (another thread) emptied it just now
                return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped:
            point = self._signal.current
            if point.position > self._passed:
                self._fill(point.position)
                if ready:
                    try:
                        return ready.popleft()
                    except IndexError:  # stop() emptied it just now
                        return None
                continue  # only other types (or tracking) committed: look again
            if self._signal.closed:
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._wake.clear()
            if self._stopped:
                break
            self._signal.wait_for_tx(point.tx_id + 1, left, wake=self._wake)
        return None

    def _fill(self, upto: int) -> None:
        try:
            got = list(self._read(self._passed + 1, upto, self._types, BATCH))
        except DatabaseClosedError:
            self._stopped = True
            return
        if self._stopped:  # stop() came while this batch was read: it is not delivered
            return
        self._ready.extend(got)
        # A full batch may stop short of ``upto``; otherwise the whole range was read.
        self._passed = got[-1].position if len(got) == BATCH else upto

    def stop(self) -> None:
        """End the subscription (idempotent, any thread): a blocked ``next`` returns."""
        self._stopped = True
        ready = self._ready
        if ready:  # what was read but not delivered is not passed: resume before it
            self._passed = ready[0].position - 1
            ready.clear()
        self._wake.set()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
