"""Runs the C core's own test suite (csrc/run_c_tests.sh): the C unit tests and the
mutation fuzzer under ASan + UBSan, and the unit tests under valgrind when present."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_c_suite_passes() -> None:
    # The package itself needs a C compiler to install, so gcc missing here is a
    # broken machine, not a reason to skip the C suite.
    assert shutil.which("gcc") is not None, "gcc is not on PATH; install gcc to run the C tests"
    proc = subprocess.run(
        ["bash", str(ROOT / "csrc" / "run_c_tests.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert " passed, 0 failed" in output, output
