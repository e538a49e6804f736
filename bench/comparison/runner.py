"""Run the selected workloads on the selected systems; build the JSON-ready result."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import benchlib
import lmdb

from .sizes import Sizes
from .systems import NOTES, SYSTEMS
from .workloads import SKIPPED, WORKLOADS, systems_for


def log(msg: str) -> None:
    """Progress, on stderr (stdout is for the result)."""
    print(msg, file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    """benchlib's machine fields plus the versions of the stores compared."""
    info: dict[str, Any] = {
        **benchlib.machine_info(),
        "machine": platform.machine(),
        "sqlite": sqlite3.sqlite_version,
        "lmdb": f"py-lmdb {lmdb.__version__}, LMDB {'.'.join(map(str, lmdb.version()))}",
    }
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        info["eventsourcing"] = version("eventsourcing")
    with contextlib.suppress(OSError):
        info["loadavg"] = os.getloadavg()
    return info


def _add_speedups(res: dict[str, Any], unit: str) -> None:
    eng = res.get("engine", {}).get("ops_per_s")
    for r in res.values():
        r["unit"] = unit
        r["engine_speedup"] = float(eng / r["ops_per_s"]) if eng else None
        if eng and "application_api_ops_per_s" in r:
            r["engine_speedup_vs_application_api"] = float(eng / r["application_api_ops_per_s"])


def run(
    sizes: Sizes,
    *,
    systems: tuple[str, ...] = SYSTEMS,
    workloads: tuple[str, ...] = tuple(WORKLOADS),
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run ``workloads`` on those of ``systems`` that declare them; return the result.

    The result: ``{"workloads": {workload: {system: entry}}, "machine", "sizes",
    "seconds", "skipped", "notes"}``. Scratch databases go under ``workdir`` (a
    temporary directory, removed afterwards, when None), one workload at a time.
    """
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="engine-compare-")) if workdir is None else workdir
    log(f"[compare] engine under test: {benchlib.engine.__file__}")
    results: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        for w in workloads:
            t0 = time.perf_counter()
            log(f"[compare] {w} ...")
            res = WORKLOADS[w].run(systems_for(w, systems), sizes, root / "data")
            _add_speedups(res, WORKLOADS[w].unit)
            results[w] = res
            log(f"[compare] {w} done in {time.perf_counter() - t0:.1f}s")
            shutil.rmtree(root / "data" / w, ignore_errors=True)
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return {
        "workloads": results,
        "machine": machine_info(),
        "sizes": asdict(sizes),
        "seconds": round(time.perf_counter() - started, 1),
        "skipped": SKIPPED,
        "notes": NOTES,
    }
