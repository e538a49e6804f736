"""Root conftest: tests and benchmarks never mix.

A plain `pytest` runs the tests and nothing else (no skipped benchmark entries);
`pytest --benchmark-only` from the root runs every benchmark in bench/ and neither
collects nor imports anything under tests/: the tests' shared fixtures live in the
plugin ``tests/fixtures.py``, registered here for test runs only (a
``tests/conftest.py`` would be imported in both modes, hypothesis included, which the
bench extra does not install).
"""

from __future__ import annotations

from pathlib import Path

import pytest

_BENCH = Path(__file__).parent / "bench"
_TESTS = Path(__file__).parent / "tests"


def _only_bench(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_only", default=False))


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@pytest.hookimpl(tryfirst=True)  # before hypothesis's, so --hypothesis-profile still wins
def pytest_configure(config: pytest.Config) -> None:
    if not _only_bench(config):
        config.pluginmanager.import_plugin("tests.fixtures")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    only_bench = _only_bench(config)
    if _under(collection_path, _BENCH) and not only_bench:
        return True
    if _under(collection_path, _TESTS) and only_bench:
        return True  # `--benchmark-only` would list every test as skipped
    return None
