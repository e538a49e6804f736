"""The codebase stays ruff- and mypy-clean (both are test extras, so CI enforces it)."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_ruff_is_clean():
    p = _run("ruff", "check", ".")
    assert p.returncode == 0, p.stdout + p.stderr


def test_mypy_strict_is_clean():
    p = _run("mypy")  # files and strictness come from pyproject.toml
    assert p.returncode == 0, p.stdout + p.stderr
