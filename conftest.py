"""Root conftest: benchmarks in bench/ are collected only by `pytest --benchmark-only`.

A plain `pytest` runs the tests and nothing else (no skipped benchmark entries);
`pytest --benchmark-only` from the root runs every benchmark in bench/ and collects
no tests (which it would only list as skipped).
"""

from __future__ import annotations

from pathlib import Path

import pytest

_BENCH = Path(__file__).parent / "bench"
_TESTS = Path(__file__).parent / "tests"


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    only_bench = config.getoption("benchmark_only", default=False)
    if _under(collection_path, _BENCH) and not only_bench:
        return True
    if _under(collection_path, _TESTS) and only_bench:
        return True  # `--benchmark-only` would list every test as skipped
    return None
