"""Caller-chosen versions, tracking entries and the positions of a commit: checked
inside the commit in every sync mode, durable across reopen (snapshot and tail),
replayed by read-only handles, and never consuming event positions."""

from __future__ import annotations

import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import InvalidEventError, VersionConflictError

SYNCS = ["commit", "group", "none"]


@pytest.mark.parametrize("sync", SYNCS)
def test_a_chosen_version_must_exceed_the_current_one(db_path, sync):
    with engine.open(db_path, sync=sync) as db:
        db.append("agg", "created", b"v1", version=1)
        db.append("agg", "renamed", b"v3", version=3)  # gaps are allowed
        assert db.version("agg") == 3
        for bad in (1, 2, 3):
            with pytest.raises(VersionConflictError, match=f"version {bad} of 'agg'"):
                db.append("agg", "dup", b"x", version=bad)
        assert isinstance(VersionConflictError("s", 1, 2), engine.ConcurrencyError)
        db.append("agg", "auto", b"v4")  # an unversioned event counts on from it
        assert [(e.version, e.data) for e in db.read_stream("agg")] == \
            [(1, b"v1"), (3, b"v3"), (4, b"v4")]
        assert db.position.tx_id == 3  # the refused ones wrote nothing


def test_versions_within_one_transaction(db_path):
    with engine.open(db_path) as db:
        with db.transaction() as tx:
            tx.append("a", "e", b"1", version=10)
            tx.append("a", "e", b"2")          # 11
            tx.append("b", "e", b"3")          # 1
            tx.append("a", "e", b"4", version=20)
        assert [e.version for e in db.read_stream("a", 1)] == [10, 11, 20]
        assert db.version("b") == 1
        with pytest.raises(VersionConflictError), db.transaction() as tx:
            tx.append("c", "e", b"x", version=5)
            tx.append("c", "e", b"y", version=5)  # not greater than the one before
        assert db.version("c") == 0
        # expected_version compares with the version before the event, gaps and all
        with db.transaction() as tx:
            tx.append("a", "e", b"5", expected_version=20, version=30)
            tx.append("a", "e", b"6", expected_version=30)
        assert db.version("a") == 31
        with pytest.raises(engine.ConcurrencyError):
            db.append("a", "e", b"x", expected_version=30, version=40)


def test_concurrent_writers_of_one_version_have_exactly_one_winner(db_path):
    with engine.open(db_path, sync="group") as db:
        wins: list[int] = []
        errors: list[BaseException] = []

        def write(w: int) -> None:
            for v in range(1, 51):
                try:
                    db.append("agg", "e", b"%d" % w, version=v)
                    wins.append(v)
                except VersionConflictError:
                    pass
                except BaseException as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert sorted(wins) == list(range(1, 51))  # each version won exactly once
        assert [e.version for e in db.read_stream("agg")] == list(range(1, 51))


@pytest.mark.parametrize("sync", SYNCS)
def test_tracking_is_atomic_with_the_events_and_takes_no_position(db_path, sync):
    with engine.open(db_path, sync=sync) as db:
        db.append("s", "e", b"1")
        with db.transaction() as tx:
            tx.append("s", "e", b"2")
            tx.track("upstream", 7)
        assert db.tracked("upstream") == 7 and db.last_position == 2
        with db.transaction() as tx:  # tracking alone: a tx, no position
            tx.track("upstream", 8)
        assert db.position.tx_id == 3 and db.last_position == 2 and tx.positions == range(3, 3)
        db.append("s", "e", b"3")
        assert [e.position for e in db.read_events()] == [1, 2, 3]
        t3 = next(db.read_log(3))
        assert t3.events == () and t3.tracking == (("upstream", 8),)
        # refused: not greater; the events with it are not written either
        with pytest.raises(VersionConflictError, match="tracked position 8"), \
                db.transaction() as tx:
            tx.append("s", "e", b"never")
            tx.track("upstream", 8)
        assert db.version("s") == 3 and db.tracked("upstream") == 8
        assert db.tracked("other") is None
        assert sorted(db.streams()) == ["s"]


def test_tracking_and_versions_survive_reopen_from_snapshot_and_tail(db_path):
    with engine.open(db_path) as db:
        with db.transaction() as tx:
            tx.append("agg", "e", b"1", version=4)
            tx.track("a", 3)
        db.snapshot()
        with db.transaction() as tx:
            tx.track("a", 9)
            tx.track("b", 1)
        db.append("agg", "e", b"2", version=9)
    for reducer in (None, lambda v, e: e.data):  # the indexed and the eager load
        with engine.open(db_path, reducer=reducer) as db:
            assert (db.tracked("a"), db.tracked("b")) == (9, 1)
            assert db.version("agg") == 9 and sorted(db.streams()) == ["agg"]
            with pytest.raises(VersionConflictError):
                db.append("agg", "e", b"x", version=9)
            with pytest.raises(VersionConflictError), db.transaction() as tx:
                tx.track("a", 9)


def test_a_read_only_handle_replays_tracking(db_path):
    with engine.open(db_path) as db:
        db.append("s", "e", b"x")
        db.snapshot()
        with db.transaction() as tx:
            tx.track("t", 5)
    with engine.open(db_path, readonly=True) as r:
        assert r.tracked("t") == 5 and list(r.streams()) == ["s"]


def test_positions_of_a_commit(db_path):
    with engine.open(db_path) as db:
        db.append("x", "e", b"0")
        with db.transaction() as tx:
            tx.append("a", "e", b"1")
            tx.append("b", "e", b"2")
        assert tx.positions == range(2, 4)
        assert [e.position for e in db.read_events(2)] == list(tx.positions)
        ev = db.append_event("a", "e", b"3", expected_version=1)
        assert (ev.position, ev.version, ev.tx_id, ev.stream) == (4, 2, 3, "a")
        assert next(db.read_events(4)) == ev
        ev = db.append_event("v", "e", b"4", version=7)
        assert ev.version == 7 and db.version("v") == 7
        with db.transaction() as empty:
            pass
        assert empty.tx_id is None and empty.positions == range(0)


def test_positions_under_group_commit_are_each_commit_s_own(db_path):
    with engine.open(db_path, sync="group") as db:
        got: list[engine.Event] = []
        lock = threading.Lock()

        def write(w: int) -> None:
            for i in range(100):
                ev = db.append_event(f"w{w}", "e", b"%d" % i)
                with lock:
                    got.append(ev)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(e.position for e in got) == list(range(1, 401))
        by_pos = {e.position: e for e in db.read_events()}
        assert all(by_pos[e.position] == e for e in got)


@pytest.mark.parametrize(("call", "match"), [
    (lambda db: db.append("s", "e", b"x", version=0), "version must be"),
    (lambda db: db.append("s", "e", b"x", version=-1), "version must be"),
    (lambda db: db.append("s", "e", b"x", version=2**64), "version must be"),
    (lambda db: db.append("s", "e", b"x", version="3"), "version must be"),
    (lambda db: db.append("s", "e", b"x", version=True), "version must be"),
    (lambda db: db.append("a\x01b", "e", b"x"), "U\\+0001"),
    (lambda db: db.append("\x01", "e", b"x"), "U\\+0001"),
    (lambda db: db.tracked(5), "tracking name"),
], ids=["v0", "v-1", "v-huge", "v-str", "v-bool", "u0001", "u0001-only", "tracked-int"])
def test_bad_versions_and_names_are_refused(db_path, call, match):
    with engine.open(db_path) as db:
        with pytest.raises(InvalidEventError, match=match):
            call(db)
        assert db.position.tx_id == 0


@pytest.mark.parametrize(("name", "position", "match"), [
    ("", 1, "empty"), ("a\0b", 1, "NUL"), ("n" * 1025, 1, "limit"), (5, 1, "must be a str"),
    ("t", 0, "tracked position"), ("t", -1, "tracked position"), ("t", 2**64, "tracked"),
    ("t", "1", "tracked position"), ("t", 1.0, "tracked position"),
])
def test_bad_tracking_is_refused_when_added(db_path, name, position, match):
    with engine.open(db_path) as db:
        with pytest.raises(InvalidEventError, match=match), db.transaction() as tx:
            tx.track(name, position)
        assert db.position.tx_id == 0


def test_u0001_in_extend_is_refused(db_path):
    with engine.open(db_path) as db:
        with pytest.raises(InvalidEventError, match="U\\+0001"), db.transaction() as tx:
            tx.extend([("ok", "e", b"1"), ("x\x01", "e", b"2")])
        assert db.position.tx_id == 0


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.one_of(
    st.tuples(st.just("ev"), st.sampled_from("abc"), st.none() | st.integers(1, 12)),
    st.tuples(st.just("track"), st.sampled_from(["p", "q"]), st.integers(1, 12)),
    st.tuples(st.just("commit"), st.just(""), st.none())), max_size=40))
def test_model_of_versions_and_tracking(tmp_path_factory, ops):
    """Against a dict model: each transaction commits whole or not at all."""
    path = str(tmp_path_factory.mktemp("m") / "db")
    model_v: dict[str, int] = {}
    model_t: dict[str, int] = {}
    with engine.open(path, sync="none") as db:
        pending: list[tuple[str, str, int | None]] = []

        def commit() -> None:
            v, t = dict(model_v), dict(model_t)
            ok = True
            for kind, name, num in pending:
                if kind == "ev":
                    cur = v.get(name, 0)
                    if num is not None and num <= cur:
                        ok = False
                    v[name] = cur + 1 if num is None else num
                else:
                    assert num is not None
                    if num <= t.get(name, 0):
                        ok = False
                    t[name] = num
            try:
                with db.transaction() as tx:
                    for kind, name, num in pending:
                        if kind == "ev":
                            tx.append(name, "e", b"", version=num)
                        else:
                            assert num is not None
                            tx.track(name, num)
                assert ok
                model_v.update(v)
                model_t.update(t)
            except VersionConflictError:
                assert not ok
            pending.clear()

        for kind, name, num in ops:
            if kind == "commit":
                commit()
            else:
                pending.append((kind, name, num))
        commit()
        assert {s: db.version(s) for s in "abc" if db.version(s)} == model_v
        assert {n: db.tracked(n) for n in "pq" if db.tracked(n)} == model_t
    with engine.open(path) as db:
        assert {s: db.version(s) for s in "abc" if db.version(s)} == model_v
        assert {n: db.tracked(n) for n in "pq" if db.tracked(n)} == model_t


def test_tracking_records_ship_to_a_log_backup_and_restore(tmp_path):
    from tests.support.cli import run_json

    path, target = str(tmp_path / "db"), (tmp_path / "bk").as_uri()
    with engine.open(path, backup=target) as db:
        rnd = random.Random(1)
        for i in range(1, 30):
            with db.transaction() as tx:
                if rnd.random() < 0.7:
                    tx.append(f"s{i % 3}", "e", b"%d" % i, version=i * 2)
                tx.track("up", i)
        db.backup.flush(timeout=30)
    dest = str(tmp_path / "restored")
    code, rep = run_json("restore", dest, "--from", target)
    assert code == 0, rep
    with engine.open(dest) as db, engine.open(path, readonly=True) as orig:
        assert db.tracked("up") == 29 == orig.tracked("up")
        assert [(t.tx_id, t.tracking, [(e.stream, e.version) for e in t.events])
                for t in db.read_log(1, 29)] == \
            [(t.tx_id, t.tracking, [(e.stream, e.version) for e in t.events])
             for t in orig.read_log(1, 29)]


def test_a_refused_append_leaves_no_version_for_the_next_event(db_path):
    with engine.open(db_path) as db:
        with db.transaction() as tx:
            for bad in (None, 5):
                with pytest.raises(InvalidEventError):
                    tx.append("a", bad, b"x", version=50)  # type: ignore[arg-type]
            with pytest.raises(InvalidEventError):
                tx.append("a", "t", b"x", expected_version=-1, version=60)
            tx.append("b", "t", b"y")
        assert db.version("b") == 1 and db.version("a") == 0


def test_tracking_entries_never_answer_as_streams(db_path):
    with engine.open(db_path) as db:
        db.append("s", "e", b"1")
        with db.transaction() as tx:
            tx.track("proj", 9)
        assert db.get("\x01proj") is None and db.version("\x01proj") == 0
        with pytest.raises(InvalidEventError, match="U\\+0001"):
            list(db.read_stream("\x01proj"))
        assert db.tracked("proj") == 9


def test_a_version_at_the_u64_maximum_takes_no_more_events(db_path):
    with engine.open(db_path) as db:
        db.append("s", "e", b"1", version=2**64 - 1)
        with pytest.raises(InvalidEventError, match="2\\*\\*64-1"):
            db.append("s", "e", b"2")
        assert db.version("s") == 2**64 - 1 and db.position.tx_id == 1
        db.append("t", "e", b"fine")  # the handle still commits


def test_inspect_shows_an_eventless_transaction_s_tracking(db_path):
    from tests.support.cli import run, run_json

    with engine.open(db_path) as db:
        db.append("s", "e", b"1")
        with db.transaction() as tx:
            tx.track("proj", 4)
    code, rep = run_json("inspect", db_path, "--tx", "2")
    assert code == 0 and rep["events"] == [] and rep["tracking"] == [
        {"name": "proj", "position": 4}]
    code, out = run("inspect", db_path, "--tx", "2")
    assert code == 0 and "tracks 'proj' at position 4" in out
