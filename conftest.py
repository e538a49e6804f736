"""Root conftest: benchmarks in bench/ are collected only by `pytest --benchmark-only`.

A plain `pytest` runs the tests and nothing else (no skipped benchmark entries);
`pytest --benchmark-only` from the root runs every benchmark in bench/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_BENCH = Path(__file__).parent / "bench"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if not config.getoption("benchmark_only", default=False) and (
        collection_path == _BENCH or _BENCH in collection_path.parents
    ):
        return True
    return None
