"""cffi build script for ``engine._ccore``: the C core in csrc/ (API mode, out-of-line).

``setup.py`` picks up ``ffibuilder`` through ``cffi_modules``; run this file directly
(``python build_ffi.py``) to compile the extension on its own. The declarations
handed to ``cdef`` are read from the headers themselves (``csrc/engine_format.h``,
``csrc/engine_index.h``), so each is the one place its C interface is written down.
"""

from __future__ import annotations

import os
import re

from cffi import FFI

CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
HEADERS = [os.path.join(CSRC, "engine_format.h"), os.path.join(CSRC, "engine_index.h")]


def cdef_from_header(text: str) -> str:
    """The header as cffi's ``cdef`` accepts it: no comments, include guard or
    #includes; integer macros become ``#define NAME ...`` (cffi reads the value from
    the compiled header); string macros (the magics) are left to Python."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("#ifndef", "#endif", "#include")):
            continue
        m = re.match(r"#define\s+(\w+)\s*(.*)$", stripped)
        if m:
            name, value = m.groups()
            if value and not value.startswith('"'):
                out.append(f"#define {name} ...")
            continue  # the include guard (no value) and string macros
        out.append(line)
    return "\n".join(out)


ffibuilder = FFI()
for _header in HEADERS:
    with open(_header, encoding="utf-8") as f:
        ffibuilder.cdef(cdef_from_header(f.read()))

ffibuilder.set_source(
    "engine._ccore",
    '#include "engine_format.h"\n#include "engine_index.h"',
    sources=["csrc/engine_core.c", "csrc/engine_index.c"],
    include_dirs=["csrc"],
    extra_compile_args=["-Wall", "-Wextra", "-O2", "-std=c11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
