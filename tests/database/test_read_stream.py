"""read_stream follows one stream through a log where it is interleaved with others."""

from __future__ import annotations

import contextlib
import random

import pytest


def _filtered(db, stream, from_version=1):
    return [e for t in db.read_log() for e in t.events
            if e.stream == stream and e.version >= from_version]


@pytest.mark.parametrize("snapshot_at", [None, 150, 299])
def test_read_stream_matches_a_filter_over_read_log(open_db, snapshot_at):
    rng = random.Random(7)
    db = open_db(sync="none")
    streams = ["hot", "warm", "cold", "ünï", "x" * 300]
    weights = [10, 5, 1, 3, 2]
    for i in range(300):
        k = rng.choice([1, 1, 1, 2, 5])
        picks = rng.choices(streams, weights, k=k)
        if k == 1:
            db.append(picks[0], "e", b"%d" % i)
        else:
            with db.transaction() as tx:
                for j, s in enumerate(picks):
                    tx.append(s, "delete" if j == 3 else "e", b"%d.%d" % (i, j))
        if snapshot_at == i:
            db.snapshot()
    db.append("late", "e", b"only")

    for reopen in (False, True):
        if reopen:
            db.close()
            db = open_db(sync="none")
        for s in [*streams, "late"]:
            want = _filtered(db, s)
            assert want, s
            got = list(db.read_stream(s))
            assert got == want
            assert [e.version for e in got] == list(range(1, len(got) + 1))
            assert db.version(s) == len(want)
            for fv in {1, 2, len(want) // 2 or 1, len(want), len(want) + 1}:
                assert list(db.read_stream(s, from_version=fv)) == _filtered(db, s, fv)


def test_read_stream_of_a_stream_written_many_times_in_one_tx(open_db):
    db = open_db()
    db.append("s", "e", b"0")
    db.append("t", "e", b"t")
    with db.transaction() as tx:
        for i in range(1, 6):
            tx.append("s", "e", b"%d" % i)
            tx.append("t", "e", b"t%d" % i)
    db.append("s", "e", b"6")
    got = list(db.read_stream("s"))
    assert [(e.version, e.data) for e in got] == [(i, b"%d" % (i - 1)) for i in range(1, 8)]
    assert [e.tx_id for e in got] == [1, 3, 3, 3, 3, 3, 4]
    assert [e.version for e in db.read_stream("s", from_version=4)] == [4, 5, 6, 7]
    assert got == _filtered(db, "s")
    assert list(db.read_stream("t", from_version=3)) == _filtered(db, "t", 3)


def test_read_stream_reads_only_the_transactions_that_hold_the_stream(open_db):
    """The per-stream chain (prev_tx) is followed: no scan of the log."""
    db = open_db()
    holding = []
    for t in range(1, 401):
        with db.transaction() as tx:
            tx.append(f"noise-{t}", "set", b"n")
            if t % 40 == 0:
                tx.append("rare", "set", str(t).encode())
                holding.append(t)
    log = db._log
    fetched: list[int] = []
    real_getter = log.getter

    @contextlib.contextmanager
    def spying_getter():  # type: ignore[no-untyped-def]
        with real_getter() as get:
            yield lambda tx_id: (fetched.append(tx_id), get(tx_id))[1]

    log.getter = spying_getter  # type: ignore[method-assign]
    log.get = log.iter_range = None  # type: ignore[method-assign, assignment]  # no scans
    events = list(db.read_stream("rare"))
    assert [e.data for e in events] == [str(t).encode() for t in holding]
    assert sorted(fetched) == holding  # 10 records read out of 400
    fetched.clear()
    tail = list(db.read_stream("rare", from_version=9))
    assert [e.version for e in tail] == [9, 10]
    assert sorted(fetched) == holding[-2:]  # stops once from_version is reached
