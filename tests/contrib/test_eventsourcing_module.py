"""engine.contrib.eventsourcing beyond eventsourcing's own test cases: configuration,
the layout on disk, shared databases, error translation, select_events' narrowing,
subscriptions and reopening."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    InfrastructureFactory,
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
    StoredEvent,
    Tracking,
)
from eventsourcing.utils import Environment

import engine
from engine.contrib import eventsourcing as es

MODULE = "engine.contrib.eventsourcing"


def _env(path: Path, **extra: str) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": MODULE, "ENGINE_PATH": str(path), **extra}


def _factory(path: Path, name: str = "", **extra: str) -> es.EngineFactory:
    f = InfrastructureFactory.construct(Environment(name, _env(path, **extra)))
    assert isinstance(f, es.EngineFactory)
    return f


def _event(oid: UUID | str, v: int, topic: str = "t", state: bytes = b"s") -> StoredEvent:
    return StoredEvent(originator_id=oid, originator_version=v, topic=topic, state=state)


@pytest.fixture
def factory(tmp_path: Path) -> Any:
    f = _factory(tmp_path)
    yield f
    f.close()


# ------------------------------------------------------------------ packaging


def test_import_engine_does_not_import_eventsourcing() -> None:
    code = ("import sys, engine, engine.contrib; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'eventsourcing']; "
            "assert not bad, bad")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr


def test_the_module_holds_exactly_one_factory_class() -> None:
    found = {m for m in vars(es).values() if isinstance(m, type)
             and issubclass(m, InfrastructureFactory) and not getattr(m, "__parameters__", ())}
    assert found == {es.EngineFactory}


# -------------------------------------------------------------- configuration


def test_missing_engine_path_is_an_environment_error(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="TESTCASE_ENGINE_PATH, ENGINE_PATH"):
        InfrastructureFactory.construct(Environment("TestCase", {"PERSISTENCE_MODULE": MODULE}))


@pytest.mark.parametrize(("key", "value"), [("ENGINE_SYNC", "always"),
                                            ("ORIGINATOR_ID_TYPE", "int")])
def test_bad_settings_are_environment_errors(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(OSError, match=f"Invalid {key}"):
        _factory(tmp_path, **{key: value})


@pytest.mark.parametrize("sync", ["commit", "group", "none"])
def test_engine_sync_reaches_the_database(tmp_path: Path, sync: str) -> None:
    f = _factory(tmp_path, ENGINE_SYNC=sync.upper())
    try:
        assert f.sync == sync
        assert f.database().db.sync == sync
    finally:
        f.close()


def test_settings_may_carry_the_application_name(tmp_path: Path) -> None:
    env = {"PERSISTENCE_MODULE": MODULE, "BANK_ENGINE_PATH": str(tmp_path / "bank"),
           "ENGINE_PATH": str(tmp_path / "other")}
    with Application(env=env) as app:  # name "Application": reads ENGINE_PATH
        app.save(Aggregate())
    Bank = type("Bank", (Application,), {})
    with Bank(env=env) as bank:
        bank.save(Aggregate())
    assert sorted(os.listdir(tmp_path / "other")) == ["application_events"]
    assert sorted(os.listdir(tmp_path / "bank")) == ["bank_events"]


# ---------------------------------------------------------------------- layout


def test_snapshots_live_apart_and_take_no_notification_ids(tmp_path: Path) -> None:
    with Application(env=_env(tmp_path, IS_SNAPSHOTTING_ENABLED="y")) as app:
        a = Aggregate()
        app.save(a)
        app.take_snapshot(a.id)
        b = Aggregate()
        rec = app.save(b)
        assert [r.notification.id for r in rec] == [2]
        assert [n.id for n in app.notification_log.select(start=1, limit=10)] == [1, 2]
        assert app.snapshots is not None
        assert [s.originator_version for s in app.snapshots.get(a.id)] == [1]
    assert sorted(os.listdir(tmp_path)) == ["application_events", "application_snapshots"]


def test_a_bad_purpose_is_refused(factory: es.EngineFactory) -> None:
    with pytest.raises(es.ProgrammingError, match="directory name"):
        factory.aggregate_recorder("../elsewhere")


# ----------------------------------------------------------- shared databases


def test_factories_of_one_path_share_its_database_until_the_last_closes(
        tmp_path: Path) -> None:
    f1, f2 = _factory(tmp_path), _factory(tmp_path)
    r1, r2 = f1.application_recorder(), f2.application_recorder()
    assert f1.database().db is f2.database().db
    assert r1.insert_events([_event(uuid4(), 1)]) == [1]
    f1.close()
    assert r2.insert_events([_event(uuid4(), 1)]) == [2]  # still open for f2
    f2.close()
    with pytest.raises(InterfaceError):  # closed with its last user
        r2.insert_events([_event(uuid4(), 1)])
    with engine.open(tmp_path / "stored_events") as db:  # and the directory released
        assert db.last_position == 2


def test_dropped_recorders_release_their_database(tmp_path: Path) -> None:
    recorder = _factory(tmp_path).application_recorder()  # the factory is dropped
    db = recorder.db
    assert recorder.insert_events([_event(uuid4(), 1)]) == [1]  # the recorder holds it
    del recorder
    import gc
    gc.collect()
    assert db.closed


def test_threads_opening_and_closing_factories_of_one_path(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def churn() -> None:
        try:
            for _ in range(20):
                f = _factory(tmp_path)
                f.application_recorder().insert_events([_event(uuid4(), 0)])
                f.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engine.open(tmp_path / "stored_events") as db:  # every user released it
        assert db.last_position == 80


def test_one_path_in_two_sync_modes_is_refused(tmp_path: Path) -> None:
    f1 = _factory(tmp_path, ENGINE_SYNC="commit")
    f2 = _factory(tmp_path, ENGINE_SYNC="none")
    try:
        f1.application_recorder()
        with pytest.raises(OperationalError, match="ENGINE_SYNC=commit"):
            f2.application_recorder()
    finally:
        f1.close()
        f2.close()


def test_a_directory_held_elsewhere_is_an_operational_error(tmp_path: Path) -> None:
    with engine.open(tmp_path / "stored_events"):
        f = _factory(tmp_path)
        with pytest.raises(OperationalError, match="is locked by this process"):
            f.application_recorder()
        f.close()


def test_a_reopened_application_finds_its_events_and_tracking(tmp_path: Path) -> None:
    f = _factory(tmp_path)
    r = f.process_recorder()
    oid = uuid4()
    r.insert_events([_event(oid, 0), _event(oid, 1)], tracking=Tracking("up", 7))
    f.close()
    f = _factory(tmp_path)
    r = f.process_recorder()
    try:
        assert [(n.id, n.originator_id, n.originator_version)
                for n in r.select_notifications(None, 10)] == [(1, oid, 0), (2, oid, 1)]
        assert r.max_tracking_id("up") == 7
        assert r.max_notification_id() == 2
        assert r.insert_events([_event(oid, 2)]) == [3]
    finally:
        f.close()


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(("bad", "match"), [
    (_event(uuid4(), 0, topic="x" * 257), "type is 257 bytes"),
    (_event(uuid4(), -2), "version"),
    (_event(uuid4(), 0, state="text"), "bytes"),  # type: ignore[arg-type]
    (_event("not-a-uuid", 0), "not a UUID"),
    (_event(42, 0), "UUID or a str"),  # type: ignore[arg-type]
    (_event(uuid4(), None), "int"),  # type: ignore[arg-type]
])
def test_bad_events_are_data_errors_and_write_nothing(factory: es.EngineFactory,
                                                      bad: StoredEvent, match: str) -> None:
    r = factory.application_recorder()
    good = _event(uuid4(), 0)
    with pytest.raises(DataError, match=match):
        r.insert_events([good, bad])
    with pytest.raises(DataError, match=match):
        r.insert_events([bad])
    assert r.max_notification_id() is None


@pytest.mark.parametrize("oid", ["", "a\0b", "a\1b", "x" * 1025])
def test_text_ids_the_engine_cannot_store_are_data_errors(tmp_path: Path, oid: str) -> None:
    f = _factory(tmp_path, ORIGINATOR_ID_TYPE="text")
    try:
        with pytest.raises(DataError):
            f.aggregate_recorder().insert_events([_event(oid, 0)])
    finally:
        f.close()


def test_events_out_of_order_in_one_insert_are_integrity_errors(
        factory: es.EngineFactory) -> None:
    r = factory.application_recorder()
    oid = uuid4()
    with pytest.raises(IntegrityError):
        r.insert_events([_event(oid, 2), _event(oid, 1)])
    r.insert_events([_event(oid, 1), _event(oid, 3)])  # a gap is allowed ...
    with pytest.raises(IntegrityError):  # ... and never filled later
        r.insert_events([_event(oid, 2)])
    assert [e.originator_version for e in r.select_events(oid)] == [1, 3]


def test_process_recorder_commits_events_and_tracking_together(
        factory: es.EngineFactory) -> None:
    r = factory.process_recorder()
    oid = uuid4()
    r.insert_events([_event(oid, 0)], tracking=Tracking("up", 5))
    with pytest.raises(IntegrityError):  # the tracking entry conflicts: no event either
        r.insert_events([_event(oid, 1)], tracking=Tracking("up", 5))
    with pytest.raises(IntegrityError):  # the event conflicts: no tracking either
        r.insert_events([_event(oid, 0)], tracking=Tracking("up", 6))
    assert r.max_tracking_id("up") == 5
    assert [e.originator_version for e in r.select_events(oid)] == [0]
    with pytest.raises(DataError):  # positions start at 1
        r.insert_tracking(Tracking("up", 0))


def test_a_closed_database_is_an_interface_error(tmp_path: Path) -> None:
    f = _factory(tmp_path)
    r = f.application_recorder()
    f.close()
    for call in (lambda: r.insert_events([_event(uuid4(), 0)]),
                 lambda: r.select_events(uuid4()), lambda: r.select_notifications(1, 1),
                 r.max_notification_id):
        with pytest.raises(InterfaceError, match="closed"):
            call()


@pytest.mark.parametrize(("exc", "expected"), [
    (engine.VersionConflictError("s", 1, 1), IntegrityError),
    (engine.ConcurrencyError("s", 0, 1), IntegrityError),
    (engine.InvalidEventError("bad"), DataError),
    (engine.DatabaseClosedError("closed"), InterfaceError),
    (engine.DiskFullError("full"), OperationalError),
    (engine.StorageError("io"), OperationalError),
    (engine.DatabaseLockedError("held"), OperationalError),
    (engine.LogMissingError("gone"), OperationalError),
    (engine.HistoryLostError("lost"), OperationalError),
    (engine.CorruptLogError("bad record"), OperationalError),
    (engine.CorruptSnapshotError("bad snapshot"), OperationalError),
    (engine.DatabaseMismatchError("other db"), OperationalError),
    (engine.ReducerError("reducer"), InternalError),
    (engine.EngineError("other"), DatabaseError),
])
def test_error_table(exc: engine.EngineError, expected: type[Exception]) -> None:
    got = es.translate_error(exc)
    assert type(got) is expected
    assert str(exc) in str(got)


# ------------------------------------------------------- select_events narrowing


def _model(versions: list[int], gt: int | None, lte: int | None, desc: bool,
           limit: int | None) -> list[int]:
    out = [v for v in versions if (gt is None or v > gt) and (lte is None or v <= lte)]
    if desc:
        out.reverse()
    return out if limit is None else out[:limit]


def test_select_events_matches_a_model(factory: es.EngineFactory) -> None:
    r = factory.aggregate_recorder()
    contiguous, gappy = uuid4(), uuid4()
    r.insert_events([_event(contiguous, v) for v in range(6)])
    for v in (0, 1, 4, 5, 9):  # gaps, over several transactions
        r.insert_events([_event(gappy, v)])
    bounds = [None, -1, 0, 1, 3, 5, 9, 12]
    for oid, versions in ((contiguous, list(range(6))), (gappy, [0, 1, 4, 5, 9])):
        for gt, lte, desc, limit in itertools.product(bounds, bounds, (False, True),
                                                      (None, 0, 1, 2, 3, 10)):
            got = [e.originator_version for e in r.select_events(
                oid, gt=gt, lte=lte, desc=desc, limit=limit)]
            assert got == _model(versions, gt, lte, desc, limit), (oid, gt, lte, desc, limit)
    assert r.select_events(uuid4(), desc=True, limit=1) == []


def test_the_latest_event_reads_only_from_the_last_version(
        factory: es.EngineFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    r = factory.aggregate_recorder()
    oid = uuid4()
    for v in range(20):
        r.insert_events([_event(oid, v)])
    calls: list[tuple[Any, ...]] = []
    real = engine.Database.read_stream

    def spy(self: engine.Database, stream: str, *args: Any, **kwargs: Any) -> Any:
        calls.append((*args, kwargs))
        return real(self, stream, *args, **kwargs)

    monkeypatch.setattr(engine.Database, "read_stream", spy)
    assert [e.originator_version for e in r.select_events(oid, desc=True, limit=1)] == [19]
    # the engine reads newest first and stops after one record
    assert calls == [(1, None, {"reverse": True, "limit": 1})]


def test_uuid_ids_given_as_text_name_the_same_aggregate(factory: es.EngineFactory) -> None:
    r = factory.aggregate_recorder()
    oid = uuid4()
    r.insert_events([_event(str(oid), 0)])
    got = r.select_events(oid)
    assert [(e.originator_id, e.originator_version) for e in got] == [(oid, 0)]
    assert r.select_events(str(oid))[0].originator_id == oid  # converted back to a UUID


# ---------------------------------------------------------------- subscriptions


def test_stop_from_another_thread_ends_a_blocked_subscription(
        factory: es.EngineFactory) -> None:
    r = factory.application_recorder()
    r.insert_events([_event(uuid4(), 0)])
    got: list[int] = []
    with r.subscribe(gt=None) as sub:
        def consume() -> None:
            got.extend(n.id for n in sub)

        t = threading.Thread(target=consume)
        t.start()
        r.insert_events([_event(uuid4(), 0)])
        for _ in range(6000):  # at most a minute: a hang fails below instead
            if len(got) >= 2:
                break
            t.join(0.01)
        sub.stop()
        t.join(10)
        assert not t.is_alive()
    assert got == [1, 2]


def test_a_subscription_follows_topics_and_ends_when_the_database_closes(
        tmp_path: Path) -> None:
    f = _factory(tmp_path)
    r = f.application_recorder()
    r.insert_events([_event(uuid4(), 0, topic="a"), _event(uuid4(), 0, topic="b")])
    sub = r.subscribe(gt=0, topics=["b"])
    with sub:
        first = next(sub)
        assert (first.id, first.topic) == (2, "b")
        f.close()  # the last user: the database closes
        assert list(sub) == []


# ------------------------------------------------------------------------ rows


def test_rows_built_by_filling_their_dict_equal_constructed_ones() -> None:
    assert es._FAST_ROWS  # eventsourcing 9.5's StoredEvent and Notification qualify
    oid = uuid4()
    made = es.stored_event(oid, 3, "t", b"s")
    assert made == StoredEvent(oid, 3, "t", b"s") and type(made) is StoredEvent
    assert hash(made) == hash(StoredEvent(oid, 3, "t", b"s"))
    n = es.notification(oid, 3, "t", b"s", 9)
    from eventsourcing.persistence import Notification
    assert n == Notification(oid, 3, "t", b"s", 9) and repr(n) == repr(
        Notification(oid, 3, "t", b"s", 9))
    with pytest.raises(AttributeError):  # still frozen
        n.id = 10  # type: ignore[misc]


def test_a_dataclass_with_other_fields_is_built_by_its_constructor() -> None:
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Other:
        originator_id: Any
        extra: int

    assert not es._plain_dataclass(Other, ("originator_id", "originator_version", "topic",
                                           "state"))
    assert es._plain_dataclass(StoredEvent, ("originator_id", "originator_version",
                                             "topic", "state"))


# ----------------------------------------------------------------- projections


def test_an_event_sourced_projection_follows_the_application(tmp_path: Path) -> None:
    """eventsourcing's projection runner: a thread iterates the application's
    subscription, and the projection's process recorder commits each result with its
    tracking entry."""
    from uuid import NAMESPACE_URL, uuid5

    from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
    from eventsourcing.domain import DomainEventProtocol, event
    from eventsourcing.projection import EventSourcedProjection, EventSourcedProjectionRunner
    from eventsourcing.utils import get_topic

    class Tally(Aggregate):
        def __init__(self, topic: str) -> None:
            self.topic = topic
            self.count = 0

        @classmethod
        def create_id(cls, topic: str) -> UUID:
            return tally_id(topic)

        @event("Counted")
        def add(self) -> None:
            self.count += 1

    def tally_id(topic: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/tally/{topic}")

    class Tallies(EventSourcedProjection[UUID]):
        name = "Tallies"

        def policy(self, domain_event: DomainEventProtocol[UUID],
                   processing_event: ProcessingEvent[UUID]) -> None:
            topic = get_topic(type(domain_event))
            try:
                tally: Tally = self.repository.get(tally_id(topic))
            except AggregateNotFoundError:
                tally = Tally(topic)
            tally.add()
            processing_event.collect_events(tally)

    with EventSourcedProjectionRunner(application_class=Application,
                                      projection_class=Tallies,
                                      env=_env(tmp_path, ENGINE_SYNC="group")) as runner:
        for _ in range(3):
            recordings = runner.app.save(Aggregate())
        a = Aggregate()
        a.trigger_event(Aggregate.Event)
        recordings = runner.app.save(a)
        runner.wait(recordings[-1].notification.id, timeout=10)
        counts = {t: runner.projection.repository.get(tally_id(get_topic(t))).count
                  for t in (Aggregate.Created, Aggregate.Event)}
        assert counts == {Aggregate.Created: 4, Aggregate.Event: 1}
        assert runner.projection.recorder.max_tracking_id("Application") == 5
    assert sorted(os.listdir(tmp_path)) == ["application_events", "tallies_events"]


# ------------------------------------------------------------------ tracking wait


def test_wait_returns_when_another_thread_records_the_tracking(
        factory: es.EngineFactory) -> None:
    r = factory.process_recorder()
    done: list[BaseException | None] = []

    def waiter() -> None:
        try:
            r.wait("up", 3, timeout=60)
            done.append(None)
        except BaseException as exc:  # pragma: no cover - reported below
            done.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    r.insert_events([_event(uuid4(), 0)], tracking=Tracking("up", 2))  # not yet
    r.insert_tracking(Tracking("other", 9))  # another name: not it either
    r.insert_events([], tracking=Tracking("up", 3))
    t.join(60)
    assert done == [None]


def test_wait_is_interrupted_from_another_thread(factory: es.EngineFactory) -> None:
    from eventsourcing.persistence import WaitInterruptedError

    r = factory.tracking_recorder()
    interrupt = threading.Event()
    caught: list[BaseException] = []

    def waiter() -> None:
        try:
            r.wait("up", 1, timeout=60, interrupt=interrupt)
        except BaseException as exc:
            caught.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    r.insert_tracking(Tracking("other", 1))  # a commit wakes it; it waits on
    interrupt.set()
    t.join(60)
    assert [type(e) for e in caught] == [WaitInterruptedError]
    assert interrupt.is_set()


def test_wait_on_a_closed_database_is_an_interface_error(tmp_path: Path) -> None:
    f = _factory(tmp_path)
    r = f.tracking_recorder()
    f.close()
    with pytest.raises(InterfaceError):
        r.wait("up", 1, timeout=5)
