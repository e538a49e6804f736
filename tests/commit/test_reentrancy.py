"""A reducer runs inside the commit: calling back into the database that is committing
(``db.append``, a transaction, ``snapshot()``, ``close()``) would wait for itself. It is
refused with ReentrantCallError (the transaction being committed is not written) in every
sync mode, and the database stays usable."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import engine

MODES = ["commit", "group", "none"]


def _calls(db_box: list[engine.Database]) -> dict[str, Callable[[], object]]:
    def block() -> None:
        with db_box[0].transaction() as tx:
            tx.append("other", "e", b"y")

    return {
        "append": lambda: db_box[0].append("other", "e", b"y"),
        "transaction": block,
        "snapshot": lambda: db_box[0].snapshot(),
        "close": lambda: db_box[0].close(),
    }


@pytest.mark.parametrize("sync", MODES)
@pytest.mark.parametrize("call", ["append", "transaction", "snapshot", "close"])
def test_a_reducer_calling_back_into_the_database_is_refused(open_db, db_path, sync, call):
    box: list[engine.Database] = []
    calls = _calls(box)
    armed = [True]

    def reducer(value: bytes | None, event: engine.Event) -> bytes | None:
        if event.stream == "trigger" and armed[0]:
            calls[call]()
        return event.data

    db = open_db(sync=sync, reducer=reducer)
    box.append(db)
    db.append("s", "e", b"1")
    with pytest.raises(engine.ReentrantCallError, match="inside its reducer") as ei:
        db.append("trigger", "e", b"x")
    assert isinstance(ei.value, engine.EngineError)
    assert not db.closed and db.position.tx_id == 1 and db.version("trigger") == 0
    assert db.version("other") == 0  # the reentrant call wrote nothing either
    armed[0] = False
    assert db.append("trigger", "e", b"x") == 2  # usable, from the same thread
    db.snapshot()
    db.close()
    with engine.open(db_path, reducer=reducer) as again:
        assert again.get("trigger") == b"x" and again.position.tx_id == 2


@pytest.mark.parametrize("sync", MODES)
def test_a_reducer_that_catches_the_refusal_commits_its_own_event(open_db, sync):
    box: list[engine.Database] = []
    refused: list[BaseException] = []

    def reducer(value: bytes | None, event: engine.Event) -> bytes | None:
        if event.stream == "trigger":
            try:
                box[0].append("other", "e", b"y")
            except engine.ReentrantCallError as exc:
                refused.append(exc)
        return event.data

    db = open_db(sync=sync, reducer=reducer)
    box.append(db)
    assert db.append("trigger", "e", b"x") == 1
    assert len(refused) == 1 and db.get("trigger") == b"x" and db.version("other") == 0


@pytest.mark.parametrize("sync", MODES)
def test_a_reducer_may_read(open_db, sync):
    box: list[engine.Database] = []
    seen: list[Any] = []

    def reducer(value: bytes | None, event: engine.Event) -> bytes | None:
        if event.stream == "b":
            seen.append((box[0].get("a"), [e.data for e in box[0].read_stream("a")]))
        return event.data

    db = open_db(sync=sync, reducer=reducer)
    box.append(db)
    db.append("a", "e", b"1")
    db.append("b", "e", b"2")
    assert seen == [(b"1", [b"1"])]


def test_other_threads_commit_while_a_reducer_runs(open_db):
    """The refusal is for the committing thread only: another thread's commit during a
    reducer queues as usual (sync="group": it may be planned by this leader)."""
    started = threading.Event()
    go_on = threading.Event()

    def reducer(value: bytes | None, event: engine.Event) -> bytes | None:
        if event.stream == "slow":
            started.set()
            assert go_on.wait(30)
        return event.data

    db = open_db(sync="group", reducer=reducer)
    out: list[int] = []
    t = threading.Thread(target=lambda: out.append(db.append("slow", "e", b"1")))
    t.start()
    assert started.wait(30)
    u = threading.Thread(target=lambda: out.append(db.append("fast", "e", b"2")))
    u.start()
    go_on.set()
    t.join(30)
    u.join(30)
    assert sorted(out) == [1, 2]
