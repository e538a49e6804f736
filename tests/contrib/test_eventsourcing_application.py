"""eventsourcing's own application test cases (``eventsourcing.tests.application``:
``ApplicationTestCase``, ``ExampleApplicationTestCase``) on
``engine.contrib.eventsourcing``, in ``commit`` and ``group`` modes.

Subclassed as eventsourcing's tests/application_tests/test_application_with_sqlite.py
does: the environment names the persistence module and a new database for each test
in setUp and is restored in tearDown. Nothing is skipped or overridden.
"""

from __future__ import annotations

from eventsourcing.tests.application import ApplicationTestCase, ExampleApplicationTestCase

from .esbase import GroupMode, WithEngineEnv


class TestApplicationWithEngine(WithEngineEnv, ApplicationTestCase):
    pass


class TestExampleApplicationWithEngine(WithEngineEnv, ExampleApplicationTestCase):
    pass


class TestApplicationWithEngineGroup(GroupMode, TestApplicationWithEngine):
    pass


class TestExampleApplicationWithEngineGroup(GroupMode, TestExampleApplicationWithEngine):
    pass


del ApplicationTestCase
del ExampleApplicationTestCase
