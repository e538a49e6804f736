"""engine.notify.CommitSignal: waiters wake when their tx is committed, never early,
never lost; close wakes everyone."""

from __future__ import annotations

import threading
import time

import pytest

import engine
from engine.notify import CommitPoint, CommitSignal


def test_wait_returns_at_once_when_already_reached():
    sig = CommitSignal(CommitPoint(1, 5, 9))
    assert sig.wait_for_tx(5, timeout=0) == CommitPoint(1, 5, 9)


def test_wait_times_out_without_a_commit():
    sig = CommitSignal(CommitPoint(1, 5, 9))
    t0 = time.monotonic()
    assert sig.wait_for_tx(6, timeout=0.05).tx_id == 5
    assert time.monotonic() - t0 >= 0.04


def test_publish_wakes_only_the_waiters_it_satisfies():
    sig = CommitSignal(CommitPoint(1, 0, 0))
    woke: dict[int, CommitPoint] = {}

    def waiter(target: int) -> None:
        woke[target] = sig.wait_for_tx(target, timeout=5)

    threads = [threading.Thread(target=waiter, args=(t,)) for t in (1, 3)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    sig.publish(CommitPoint(1, 2, 2))
    threads[0].join(5)
    assert woke[1].tx_id == 2 and 3 not in woke  # target 3 is not reached yet
    sig.publish(CommitPoint(1, 3, 3))
    threads[1].join(5)
    assert woke[3].tx_id == 3


def test_close_wakes_waiters_and_later_waits_return_at_once():
    sig = CommitSignal(CommitPoint(1, 0, 0))
    out: list[CommitPoint] = []
    t = threading.Thread(target=lambda: out.append(sig.wait_for_tx(10, timeout=5)))
    t.start()
    time.sleep(0.05)
    sig.close()
    t.join(5)
    assert out == [CommitPoint(1, 0, 0)] and sig.closed
    t0 = time.monotonic()
    sig.wait_for_tx(99, timeout=5)
    assert time.monotonic() - t0 < 1


@pytest.mark.parametrize("sync", ["commit", "group", "none"])
def test_every_commit_is_published_and_no_wakeup_is_lost(open_db, sync):
    """A waiter that always waits for 'one more than it last saw' sees every commit
    of concurrent writers up to the last (coalesced, never missed)."""
    db = open_db(sync=sync)
    sig = db.commit_signal
    n_writers, per_writer = 4, 50
    seen: list[int] = []
    done = threading.Event()

    def follower() -> None:
        last = 0
        while not done.is_set() or sig.current.tx_id > last:
            p = sig.wait_for_tx(last + 1, timeout=1)
            if p.tx_id > last:
                seen.append(p.tx_id)
                last = p.tx_id

    f = threading.Thread(target=follower)
    f.start()
    writers = [threading.Thread(target=lambda w=w: [db.append(f"s{w}", "e", b"x")
                                                     for _ in range(per_writer)])
               for w in range(n_writers)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    f.join(10)
    total = n_writers * per_writer
    assert seen[-1] == total and seen == sorted(set(seen))
    assert sig.current == engine.CommitPoint(1, total, total)
    assert db.position.tx_id == total and db.last_position == total


def test_published_point_carries_the_event_position(open_db):
    db = open_db()
    with db.transaction() as tx:
        tx.extend([("a", "e", b"1"), ("b", "e", b"2"), ("a", "e", b"3")])
    db.append("c", "e", b"4")
    assert db.commit_signal.current == engine.CommitPoint(1, 2, 4)


def test_close_ends_a_service_waiting_on_the_signal(open_db):
    db = open_db()
    out: list[CommitPoint] = []
    t = threading.Thread(target=lambda: out.append(db.commit_signal.wait_for_tx(1000)))
    t.start()
    time.sleep(0.02)
    db.close()
    t.join(5)
    assert not t.is_alive() and out[0].tx_id == 0
