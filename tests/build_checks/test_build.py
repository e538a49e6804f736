"""The build: a missing C compiler gives one clear message, not a setuptools wall."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_missing_compiler_is_reported_clearly(tmp_path):
    env = dict(os.environ, CC="/nonexistent/cc-for-test")
    p = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-lib", str(tmp_path / "lib"),
         "--build-temp", str(tmp_path / "tmp")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1
    assert "no C compiler found" in p.stderr
    assert "apt-get install gcc" in p.stderr
    assert "Traceback" not in p.stderr


def test_compiled_core_is_the_cffi_api_module():
    import engine._ccore as core

    assert hasattr(core, "ffi") and hasattr(core, "lib")
    assert core.lib.ENG_TX_HEADER_SIZE == 56
