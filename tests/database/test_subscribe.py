"""``db.subscribe``: catch up from the log, then follow live commits, woken by the
commit (no polling); slow subscribers never hold writers; close ends them."""

from __future__ import annotations

import threading
import time

import pytest

import engine
from tests.recovery.helpers import admin_json, delete_log, write_txs

JOIN = 30.0  # generous: a hang fails the test instead of stalling CI


def _consume(sub: engine.Subscription, out: list[engine.Event],
             until: int | None = None) -> threading.Thread:
    def run() -> None:
        for ev in sub:
            out.append(ev)
            if until is not None and len(out) >= until:
                return
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("sync", ["commit", "group", "none"])
def test_catch_up_then_follow_live_commits(db_path, sync):
    with engine.open(db_path, sync=sync) as db:
        for i in range(5):
            db.append("a", "e", b"%d" % i)
        got: list[engine.Event] = []
        with db.subscribe(after_position=2) as sub:
            t = _consume(sub, got, until=8)
            for i in range(5):
                db.append("b", "e", b"live%d" % i)
            t.join(JOIN)
            assert not t.is_alive()
        assert [e.position for e in got] == list(range(3, 11))
        assert got == list(db.read_events(3))


def test_a_blocked_subscriber_is_woken_by_a_commit(db_path):
    with engine.open(db_path) as db:
        sub = db.subscribe()
        got: list[engine.Event] = []
        t = _consume(sub, got, until=1)
        time.sleep(0.05)  # let it block in the wait
        assert got == [] and t.is_alive()
        db.append("s", "e", b"wake")
        t.join(JOIN)
        assert not t.is_alive() and [e.data for e in got] == [b"wake"]
        sub.stop()


def test_types_filter_and_resume_position(db_path):
    with engine.open(db_path) as db:
        with db.transaction() as tx:
            tx.append("s", "opened", b"1")
            tx.append("s", "noise", b"2")
            tx.append("s", "deposited", b"3")
        db.append("s", "noise", b"4")
        with db.subscribe(types={"opened", "deposited"}) as sub:
            assert [e.data for e in (next(sub), next(sub))] == [b"1", b"3"]
            assert sub.next_event(timeout=0.01) is None  # only noise after: nothing
            assert sub.position == 4  # passed the filtered-out events too
        db.append("s", "deposited", b"5")
        with db.subscribe(after_position=4) as again:
            assert next(again).data == b"5"


def test_next_event_with_a_timeout_returns_none_when_idle(db_path):
    with engine.open(db_path) as db, db.subscribe() as sub:
        assert sub.next_event(timeout=0.01) is None
        db.append("s", "e", b"x")
        ev = sub.next_event(timeout=5)
        assert ev is not None and ev.data == b"x"


def test_a_slow_subscriber_never_blocks_writers(db_path):
    with engine.open(db_path, sync="none") as db:
        sub = db.subscribe()
        db.append("s", "e", b"0")
        assert next(sub).data == b"0"
        # the subscriber reads nothing while 2000 commits land: writers do not wait
        for i in range(1, 2000):
            db.append(f"s{i % 7}", "e", b"%d" % i)
        assert db.last_position == 2000
        got = [next(sub) for _ in range(1999)]
        assert [e.position for e in got] == list(range(2, 2001))
        sub.stop()


def test_stop_from_another_thread_ends_a_blocked_iteration(db_path):
    with engine.open(db_path) as db:
        sub = db.subscribe()
        got: list[engine.Event] = []
        t = _consume(sub, got)
        time.sleep(0.05)
        sub.stop()
        t.join(JOIN)
        assert not t.is_alive() and got == []
        db.append("s", "e", b"after stop")
        assert list(sub) == []  # a stopped subscription stays stopped


def test_close_ends_subscriptions_cleanly(db_path):
    db = engine.open(db_path)
    db.append("s", "e", b"1")
    subs = [db.subscribe() for _ in range(3)]
    got: list[list[engine.Event]] = [[], [], []]
    threads = [_consume(s, g) for s, g in zip(subs, got, strict=True)]
    deadline = time.monotonic() + JOIN
    while any(len(g) < 1 for g in got) and time.monotonic() < deadline:
        time.sleep(0.005)
    db.close()
    for t in threads:
        t.join(JOIN)
        assert not t.is_alive()
    assert all([e.data for e in g] == [b"1"] for g in got)
    with pytest.raises(engine.DatabaseClosedError):
        db.subscribe()


def test_many_writers_one_subscriber_sees_every_event_in_order(db_path):
    with engine.open(db_path, sync="group") as db:
        total = 4 * 250
        got: list[engine.Event] = []
        with db.subscribe() as sub:
            t = _consume(sub, got, until=total)

            def write(w: int) -> None:
                for i in range(250):
                    db.append(f"w{w}", "e", b"%d" % i)

            writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
            for w in writers:
                w.start()
            for w in writers:
                w.join(JOIN)
            t.join(JOIN)
        assert [e.position for e in got] == list(range(1, total + 1))
        for w in range(4):
            assert [e.data for e in got if e.stream == f"w{w}"] == \
                [b"%d" % i for i in range(250)]


def test_catch_up_across_a_lost_range_raises_history_lost(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        write_txs(db, 6)
        db.snapshot()
    delete_log(path)
    assert admin_json("recover", "--new-epoch", path)[0] == 0
    with engine.open(path) as db:
        db.append("s1", "set", b"new")
        with db.subscribe(after_position=0) as sub, pytest.raises(engine.HistoryLostError):
            next(sub)
        with db.subscribe(after_position=12) as sub:
            ev = next(sub)
            assert (ev.position, ev.epoch, ev.data) == (13, 2, b"new")


@pytest.mark.parametrize("bad", [-1, 2**64, "0", 1.0, None])
def test_bad_after_position_is_refused(db_path, bad):
    with engine.open(db_path) as db, pytest.raises(engine.InvalidEventError):
        db.subscribe(after_position=bad)


def test_bad_types_are_refused(db_path):
    with engine.open(db_path) as db, pytest.raises(engine.InvalidEventError):
        db.subscribe(types="opened")


def test_position_after_stop_resumes_before_what_was_not_delivered(db_path):
    """A subscription reads ahead in batches; stopping it must not count the events
    it read but never delivered as passed (review finding)."""
    with engine.open(db_path) as db:
        for i in range(10):
            db.append("s", "e", b"%d" % i)
        with db.subscribe() as sub:
            assert next(sub).position == 1
        assert sub.position == 1
        with db.subscribe(after_position=sub.position) as again:
            assert [next(again).position for _ in range(9)] == list(range(2, 11))


def test_stop_while_a_batch_is_read_delivers_nothing_more(db_path):
    """stop() from another thread while the consumer is inside a log read: the batch
    being read is dropped, not delivered after stop (review finding)."""
    from engine.subscription import Subscription

    with engine.open(db_path) as db:
        for i in range(20):
            db.append("s", "e", b"%d" % i)
        history = db._history_reader  # the read the subscription makes
        holder: list[Subscription] = []

        def read(a, b, t, limit):  # type: ignore[no-untyped-def]
            got = list(history.read_events(a, b, types=t, limit=limit))
            holder[0].stop()  # as if another thread stopped it right now
            return iter(got)

        sub = Subscription(read, db.commit_signal, 0, None)
        holder.append(sub)
        assert list(sub) == []
        assert sub.position == 0  # nothing was delivered, nothing passed
