"""Shared set-up of the eventsourcing test cases: a fresh engine database directory
per recorder (as eventsourcing's SQLite tests use a fresh ``:memory:`` database), in
one of the durability modes."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from typing import Any, ClassVar
from uuid import UUID, uuid4

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment

from engine.contrib.eventsourcing import EngineFactory

MODULE = "engine.contrib.eventsourcing"


class WithEngine:
    """Mixin for eventsourcing's recorder test cases: ``factory()`` gives a factory
    over a new directory; every factory is closed and every directory removed in
    tearDown."""

    sync: ClassVar[str] = "commit"
    originator_id_type: ClassVar[str] = "uuid"

    def setUp(self) -> None:
        self.engine_setup()
        super().setUp()  # type: ignore[misc]

    def tearDown(self) -> None:
        super().tearDown()  # type: ignore[misc]
        self.engine_teardown()

    def engine_setup(self) -> None:
        self.engine_tmp = tempfile.mkdtemp(prefix="es-engine-")
        self.engine_factories: list[EngineFactory] = []

    def engine_teardown(self) -> None:
        for f in self.engine_factories:
            f.close()
        gc.collect()  # recorders a test dropped release their databases
        shutil.rmtree(self.engine_tmp, ignore_errors=True)

    def engine_env(self, **extra: str) -> Environment:
        path = os.path.join(self.engine_tmp, str(len(self.engine_factories)))
        return Environment(env={"PERSISTENCE_MODULE": MODULE, "ENGINE_PATH": path,
                                "ENGINE_SYNC": self.sync,
                                "ORIGINATOR_ID_TYPE": self.originator_id_type, **extra})

    def factory(self, **extra: str) -> EngineFactory:
        f = InfrastructureFactory.construct(self.engine_env(**extra))
        assert isinstance(f, EngineFactory) and f.sync == self.sync
        self.engine_factories.append(f)
        return f


class GroupMode:
    """Runs the test case with ``ENGINE_SYNC=group``."""

    sync: ClassVar[str] = "group"


class WithTextOriginatorID:
    """As eventsourcing's SQLite tests: text originator ids."""

    originator_id_type: ClassVar[str] = "text"

    def new_originator_id(self) -> UUID | str:
        return "test-" + str(uuid4())


class WithEngineEnv:
    """Mixin for eventsourcing's application test cases: the process environment
    names this module and a new ENGINE_PATH for each test (as its SQLite application
    tests set SQLITE_DBNAME)."""

    sync: ClassVar[str] = "commit"
    expected_factory_topic = f"{MODULE}:EngineFactory"

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        self.engine_tmp = tempfile.mkdtemp(prefix="es-engine-app-")
        self._saved: dict[str, Any] = {k: os.environ.get(k) for k in (
            "PERSISTENCE_MODULE", "ENGINE_PATH", "ENGINE_SYNC")}
        os.environ["PERSISTENCE_MODULE"] = MODULE
        os.environ["ENGINE_PATH"] = self.engine_tmp
        os.environ["ENGINE_SYNC"] = self.sync

    def tearDown(self) -> None:
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        gc.collect()  # applications a test left open close their factories
        shutil.rmtree(self.engine_tmp, ignore_errors=True)
        super().tearDown()  # type: ignore[misc]
