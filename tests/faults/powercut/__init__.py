"""A power cut, simulated: ``powercut.c`` (an LD_PRELOAD shim) records every write to
the watched files (LMDB's ``data.mdb``, the commit journal) and every flush of them
while a child process runs; after the child is killed, :func:`cut` rebuilds each
file as the disk would hold it had the power gone at that moment: only writes that a
later flush of that file covered, or that went through an ``O_SYNC``/``O_DSYNC``
descriptor, survive (every other write is dropped). LMDB's
writes come from C (py-lmdb), where the engine's filesystem seam (engine.files)
cannot see them; the shim can.

What it does not model: reordering among unflushed writes (it drops them all, the
strictest single outcome), torn sector writes, and metadata (file creation, renames:
taken as durable). The rebuilt file is exact for what it models."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("powercut.c")
_REC = struct.Struct("<IIQQ")  # kind, flags, offset, len (struct rec in powercut.c)
WRITE, FLUSH_BEGIN, TRUNCATE, FLUSH_END = 1, 2, 3, 4
DSYNC = 1
FILE_SHIFT = 8  # a record's flags carry its file's index in bits 8-15


def build_shim(directory: Path) -> Path:
    """Compile the shim into ``directory`` (the C compiler that builds the engine)."""
    out = directory / "powercut.so"
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or "cc"
    subprocess.run([cc, "-Wall", "-Wextra", "-Werror", "-O1", "-shared", "-fPIC", "-o",
                    str(out), str(SOURCE), "-ldl", "-lpthread"], check=True,
                   capture_output=True, timeout=120)
    return out


def shim_env(shim: Path, watched: Path | list[Path], log: Path) -> dict[str, str]:
    """The environment that runs a child under the shim, watching ``watched`` (one file
    or several: index i in the records is ``watched[i]``)."""
    files = watched if isinstance(watched, list) else [watched]
    return {**os.environ, "LD_PRELOAD": str(shim),
            "POWERCUT_FILE": ":".join(os.path.realpath(f) for f in files),
            "POWERCUT_LOG": str(log)}


def records(log: Path) -> list[tuple[int, int, int, bytes]]:
    """The shim's records: (kind, flags, offset, data)."""
    raw = log.read_bytes() if log.exists() else b""
    out, i = [], 0
    while i + _REC.size <= len(raw):
        kind, flags, offset, n = _REC.unpack_from(raw, i)
        if kind not in (WRITE, FLUSH_BEGIN, TRUNCATE, FLUSH_END):
            raise ValueError(f"shim log damaged at byte {i}")
        i += _REC.size
        data = b""
        if kind == WRITE:
            data = raw[i:i + n]
            if len(data) != n:
                break  # the kill landed in this record's write: see below
            i += n
        out.append((kind, flags, offset, data))
    # A record cut short by the kill is the last one: a write is logged after it
    # completed and a flush before it starts, so nothing after it exists and no flush
    # covers it; leaving it out drops a write no flush covered (as the cut would).
    return out


def covered_before(recs: list[tuple[int, int, int, bytes]]) -> int:
    """Index of the last completed flush's BEGIN record (-1 if none): every record
    before it was on the disk when that flush returned."""
    done = {r[2] for r in recs if r[0] == FLUSH_END}
    return max((i for i, r in enumerate(recs) if r[0] == FLUSH_BEGIN and r[2] in done),
               default=-1)


def durable_image(baseline: bytes, recs: list[tuple[int, int, int, bytes]]) -> bytes:
    """``baseline`` with only the durable writes (and truncations) applied, in order:
    a write is durable if it went through an O_(D)SYNC descriptor or a flush of the
    file that began after it completed (see :func:`covered_before`)."""
    last_flush = covered_before(recs)
    image = bytearray(baseline)
    for i, (kind, flags, offset, data) in enumerate(recs):
        durable = bool(flags & DSYNC) or i < last_flush
        if not durable:
            continue
        if kind == WRITE:
            end = offset + len(data)
            if len(image) < end:
                image.extend(bytes(end - len(image)))
            image[offset:end] = data
        elif kind == TRUNCATE:
            del image[offset:]
            if len(image) < offset:
                image.extend(bytes(offset - len(image)))
    return bytes(image)


def of_file(recs: list[tuple[int, int, int, bytes]], index: int
            ) -> list[tuple[int, int, int, bytes]]:
    """The records of watched file ``index`` (a flush covers its own file only)."""
    return [r for r in recs if r[1] >> FILE_SHIFT == index]


def cut(watched: Path, baseline: bytes, log: Path, index: int = 0) -> tuple[int, int]:
    """Rewrite ``watched`` (watched file ``index``) as the power cut leaves it; returns
    (writes kept, dropped). A file the child never wrote is left as it is."""
    recs = of_file(records(log), index)
    if not recs:
        return 0, 0
    image = durable_image(baseline, recs)
    watched.write_bytes(image)
    last_flush = covered_before(recs)
    writes = [(i, r) for i, r in enumerate(recs) if r[0] == WRITE]
    kept = sum(1 for i, r in writes if r[1] & DSYNC or i < last_flush)
    return kept, len(writes) - kept
