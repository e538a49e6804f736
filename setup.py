"""Build glue: compiles csrc/ into engine._ccore through build_ffi.py.

Metadata lives in pyproject.toml; this file exists only because cffi's
``cffi_modules`` keyword has no pyproject.toml spelling. Before handing over to
setuptools it checks that a C compiler is present, so a machine without one gets
one clear sentence instead of a page of distutils output.
"""

from __future__ import annotations

import os
import shutil
import sys

from setuptools import setup


def _require_c_compiler() -> None:
    import sysconfig

    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    exe = cc.split()[0]
    if shutil.which(exe) is None:
        sys.stderr.write(
            f"\nengine: no C compiler found (looked for {exe!r}).\n"
            "The engine's core is C and is compiled at install time.\n"
            "Install one (Debian/Ubuntu: `apt-get install gcc python3-dev`; "
            "Fedora: `dnf install gcc python3-devel`; macOS: `xcode-select --install`)\n"
            "or point CC at a compiler, then run the install again.\n\n"
        )
        raise SystemExit(1)


_BUILDS = ("build_ext", "build", "bdist_wheel", "install", "develop", "editable_wheel")
if any(cmd in sys.argv for cmd in _BUILDS):
    _require_c_compiler()

setup(cffi_modules=["build_ffi.py:ffibuilder"])
