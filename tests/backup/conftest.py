"""Fixtures for the backup tests: one real S3 server (SeaweedFS) per session, and targets."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.backup import Target, forget_memory_targets, open_target
from tests.support.seaweed import SeaweedError, SeaweedServer, start_seaweed


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """A ``weed mini`` on loopback with one bucket. A missing binary fails, never skips."""
    try:
        server = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    except SeaweedError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:12]}"


MakeTarget = Callable[[str], Target]


@pytest.fixture(params=["file", "memory", "s3"])
def make_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeTarget]:
    """``make_target(suffix)``: targets of one backend whose URLs differ only by ``suffix``
    (so ``make_target("2")`` is a sibling whose prefix extends the first one's)."""
    backend = request.param
    base = unique("contract")
    opened: list[str] = []

    def make(suffix: str = "") -> Target:
        if backend == "file":
            return open_target(f"file://{tmp_path}/{base}{suffix}")
        if backend == "memory":
            opened.append(base)
            return open_target(f"memory://{base}/some/prefix{suffix}")
        server: SeaweedServer = request.getfixturevalue("s3_server")
        return open_target(server.options(f"{base}/prefix{suffix}"))

    yield make
    forget_memory_targets(*opened)


@pytest.fixture
def target(make_target: MakeTarget) -> Target:
    """A fresh, empty target of each backend (file, memory, s3)."""
    return make_target("")
