"""eventsourcing's own recorder test cases (``eventsourcing.tests.persistence``), run
on ``engine.contrib.eventsourcing`` in ``commit`` and ``group`` modes.

Subclassed as eventsourcing's SQLite tests subclass them (tests/persistence_tests/
test_sqlite.py, test_noninterleaving_notification_ids.py): a ``create_recorder``
over a fresh database, a text-originator-id variant of the aggregate, application and
process cases, the factory case, and the non-interleaving case at SQLite's size. The
application case adds ``test_insert_subscribe`` (``optional_test_insert_subscribe``),
as eventsourcing's POPO and PostgreSQL tests do for recorders that support
subscriptions (SQLite's does not). Nothing is skipped or overridden.
"""

from __future__ import annotations

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    ProcessRecorder,
    TrackingRecorder,
)
from eventsourcing.tests.persistence import (
    AggregateRecorderTestCase,
    ApplicationRecorderTestCase,
    InfrastructureFactoryTestCase,
    NonInterleavingNotificationIDsBaseCase,
    ProcessRecorderTestCase,
    TrackingRecorderTestCase,
)

from engine.contrib.eventsourcing import (
    EngineAggregateRecorder,
    EngineApplicationRecorder,
    EngineFactory,
    EngineProcessRecorder,
    EngineTrackingRecorder,
)

from .esbase import MODULE, GroupMode, WithEngine, WithTextOriginatorID


class TestEngineAggregateRecorder(WithEngine, AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        return self.factory().aggregate_recorder()


class TestEngineAggregateRecorderWithTextOriginatorID(
        WithTextOriginatorID, TestEngineAggregateRecorder):
    pass


class TestEngineApplicationRecorder(WithEngine,
                                    ApplicationRecorderTestCase[EngineApplicationRecorder]):
    def create_recorder(self) -> EngineApplicationRecorder:
        recorder = self.factory().application_recorder()
        assert isinstance(recorder, EngineApplicationRecorder)
        return recorder

    def test_insert_subscribe(self) -> None:
        super().optional_test_insert_subscribe()


class TestEngineApplicationRecorderWithTextOriginatorID(
        WithTextOriginatorID, TestEngineApplicationRecorder):
    pass


class TestEngineTrackingRecorder(WithEngine, TrackingRecorderTestCase):
    def create_recorder(self) -> TrackingRecorder:
        return self.factory().tracking_recorder()


class TestEngineProcessRecorder(WithEngine, ProcessRecorderTestCase):
    def create_recorder(self) -> ProcessRecorder:
        return self.factory().process_recorder()


class TestEngineProcessRecorderWithTextOriginatorID(
        WithTextOriginatorID, TestEngineProcessRecorder):
    pass


class TestEngineNonInterleaving(WithEngine, NonInterleavingNotificationIDsBaseCase):
    insert_num = 10000

    def create_recorder(self) -> ApplicationRecorder:
        return self.factory().application_recorder()


class TestEngineInfrastructureFactory(WithEngine,
                                      InfrastructureFactoryTestCase[EngineFactory]):
    def expected_factory_class(self) -> type[EngineFactory]:
        return EngineFactory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return EngineAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return EngineApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return EngineTrackingRecorder

    class EngineTrackingRecorderSubclass(EngineTrackingRecorder):
        pass

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return self.EngineTrackingRecorderSubclass

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return EngineProcessRecorder

    def setUp(self) -> None:
        self.engine_setup()  # as SQLite's: the environment, then the case's setUp
        self.env = self.engine_env()
        self.env.name = "TestCase"
        self.assertEqual(self.env["PERSISTENCE_MODULE"], MODULE)
        super(WithEngine, self).setUp()  # InfrastructureFactoryTestCase.setUp


# The same cases with ENGINE_SYNC=group.
class TestEngineAggregateRecorderGroup(GroupMode, TestEngineAggregateRecorder):
    pass


class TestEngineAggregateRecorderWithTextOriginatorIDGroup(
        GroupMode, TestEngineAggregateRecorderWithTextOriginatorID):
    pass


class TestEngineApplicationRecorderGroup(GroupMode, TestEngineApplicationRecorder):
    pass


class TestEngineApplicationRecorderWithTextOriginatorIDGroup(
        GroupMode, TestEngineApplicationRecorderWithTextOriginatorID):
    pass


class TestEngineTrackingRecorderGroup(GroupMode, TestEngineTrackingRecorder):
    pass


class TestEngineProcessRecorderGroup(GroupMode, TestEngineProcessRecorder):
    pass


class TestEngineProcessRecorderWithTextOriginatorIDGroup(
        GroupMode, TestEngineProcessRecorderWithTextOriginatorID):
    pass


class TestEngineNonInterleavingGroup(GroupMode, TestEngineNonInterleaving):
    pass


class TestEngineInfrastructureFactoryGroup(GroupMode, TestEngineInfrastructureFactory):
    pass


del AggregateRecorderTestCase
del ApplicationRecorderTestCase
del TrackingRecorderTestCase
del ProcessRecorderTestCase
del InfrastructureFactoryTestCase
del NonInterleavingNotificationIDsBaseCase
