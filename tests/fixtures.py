"""Shared fixtures and hypothesis profiles for the engine's tests (log, state, snapshot, ...).

A pytest plugin, not ``tests/conftest.py``: the root conftest.py registers it for test
runs only. pytest imports the conftest of every ``testpaths`` entry before any option
takes effect, so a conftest here would be imported (with hypothesis and ``engine``)
even by ``pytest --benchmark-only``, which must run with the bench extra alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

import engine

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture
def db_path(tmp_path: Any) -> str:
    """A fresh, not yet existing database directory."""
    return str(tmp_path / "db")


@pytest.fixture
def open_db(db_path: str) -> Iterator[Callable[..., engine.Database]]:
    """``open_db(path=db_path, **kw)``: engine.open, closed again at teardown."""
    opened: list[engine.Database] = []

    def _open(path: str | None = None, **kw: Any) -> engine.Database:
        db = engine.open(db_path if path is None else path, **kw)
        opened.append(db)
        return db

    yield _open
    for db in reversed(opened):
        with contextlib.suppress(engine.DatabaseClosedError):
            db.close()
