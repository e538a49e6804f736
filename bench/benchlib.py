"""Helpers shared by every benchmark: the core ones (bench/test_bench_*.py and
bench/conftest.py) and the comparison (bench/compare.py, bench/comparison/).

A plain module (not ``conftest``) so test modules can import it whatever other
``conftest.py`` files pytest has loaded; bench/ is on ``sys.path`` through
``pythonpath`` in pyproject.toml (and as the script's directory for compare.py).

Importing it imports the *installed* ``engine`` (see :func:`import_engine`), so a
benchmark measures what ``pip install`` built, never the checkout's source
directory.
"""

from __future__ import annotations

import importlib
import os
import platform
import random
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LATEST_DIR = RESULTS_DIR / "latest"  # every run writes here (git-ignored)
REFERENCE_DIR = RESULTS_DIR / "reference"  # committed; updated only by copying from latest/


def import_engine() -> ModuleType:
    """Import ``engine`` as installed, even when the checkout root is on ``sys.path``.

    ``python -m pytest`` puts the working directory on ``sys.path``, and pytest's
    default import mode the rootdir (to import the root conftest.py); from a checkout
    either makes ``import engine`` find the source directory ``engine/``, which holds
    no compiled core after a plain (non-editable) ``pip install '.[bench]'``. So the
    package is first looked up with the checkout root left out: that finds a regular
    install (site-packages) and an editable one (its finder maps ``engine`` to the
    checkout). Only when no engine is installed at all is the checkout's imported (a
    core built in place). ``sys.path`` is restored either way; once ``engine`` is in
    ``sys.modules`` every later ``import engine`` gets this module.
    """
    if "engine" in sys.modules:
        return sys.modules["engine"]
    saved = list(sys.path)
    sys.path[:] = [p for p in saved if Path(p or ".").resolve() != REPO_ROOT]
    try:
        return importlib.import_module("engine")
    except ModuleNotFoundError as e:
        if e.name != "engine":
            raise
    finally:
        sys.path[:] = saved
    return importlib.import_module("engine")  # not installed: the checkout's own


engine = import_engine()

EVENTS_PER_TX = 1000
PAYLOAD_BYTES = 100
APPEND_STREAMS = 10_000  # batched appends cycle over this many streams
REOPEN_STREAMS = 300_000  # streams in the reopen/snapshot fixtures
REOPEN_TAIL_TXS = 300  # tail after the snapshot: 300 txs x 1000 events

# (group, alternative role, engine role, target ratio)
TARGETS: list[tuple[str, str, str, float | None]] = [
    ("append_batch", "raw_lmdb_putmulti", "engine_tx_extend", 0.6),
    ("append_batch", "raw_lmdb_putmulti", "engine_tx_append", 0.4),
    ("append_durable", "raw_lmdb_sync_put", "engine_sync_commit", 0.8),
    ("reopen", "pickle_loads_lmdb_scan", "engine_open_close", 1.0),
    ("snapshot_write", "pickle_dumps_write_fsync", "engine_snapshot", None),
    ("backup_overhead_none", "engine_backup_off", "engine_backup_on", 0.95),
    ("backup_overhead_commit", "engine_backup_off", "engine_backup_on", 0.95),
]
TARGET_TEXT = {
    ("append_batch", "engine_tx_extend"): "extend >= 0.6x raw py-lmdb putmulti",
    ("append_batch", "engine_tx_append"): "tx.append >= 0.4x raw py-lmdb putmulti",
    ("append_durable", "engine_sync_commit"): ">= 0.8x raw LMDB sync=True put",
    ("reopen", "engine_open_close"): "faster than pickle.loads + LMDB scan (> 1.0x)",
    ("snapshot_write", "engine_snapshot"): "no target (reported)",
    ("backup_overhead_none", "engine_backup_on"): "sync=none extend, backup on >= 0.95x off",
    ("backup_overhead_commit", "engine_backup_on"): "sync=commit append, backup on >= 0.95x off",
}

RESULTS: dict[str, dict[str, dict[str, float]]] = {}


def make_payload(i: int, rnd: random.Random, size: int = PAYLOAD_BYTES) -> bytes:
    """A ``size``-byte event body shaped like a small JSON document.

    About half of it is random hex, so it compresses like real event data (neither
    all-zero, which flatters zstd, nor pure noise).
    """
    body = b'{"seq":%d,"key":"%s","note":"' % (i, rnd.randbytes(24).hex().encode())
    return (body + b"." * size)[: size - 2] + b'"}'


def make_payloads(n: int, seed: int = 1, size: int = PAYLOAD_BYTES) -> list[bytes]:
    """``n`` payloads of ``size`` bytes (:func:`make_payload`), the same for the same seed."""
    rnd = random.Random(seed)
    return [make_payload(i, rnd, size) for i in range(n)]


def stream_name(i: int) -> str:
    """The ``i``-th stream's name: ``account-0000042``."""
    return f"account-{i:07d}"


def machine_info() -> dict[str, Any]:
    """What every result file records about the machine and the run."""
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


RAW_HEADER = struct.Struct(">HH")  # len(stream), len(type): the raw log record header


def raw_record(stream: bytes, etype: bytes, data: bytes) -> bytes:
    """The raw-LMDB alternative's record: a small header, stream, type, data."""
    return RAW_HEADER.pack(len(stream), len(etype)) + stream + etype + data


def record(group: str, role: str, benchmark: Any) -> None:
    """Remember a finished benchmark's timing for the ratio report."""
    meta = getattr(benchmark, "stats", None)
    stats = getattr(meta, "stats", None)
    if stats is None:  # --benchmark-disable: ran once, not timed
        return
    RESULTS.setdefault(group, {})[role] = {
        "median_s": float(stats.median),
        "mean_s": float(stats.mean),
        "min_s": float(stats.min),
        "rounds": int(stats.rounds),
    }


def ratios() -> dict[str, Any]:
    """``engine throughput / alternative throughput`` per target.

    ``ratio`` compares medians (the verdict); ``ratio_min`` compares the fastest
    rounds, which is less sensitive to other jobs on a shared machine.
    """
    out: dict[str, Any] = {}
    for group, alt, eng, target in TARGETS:
        g = RESULTS.get(group, {})
        if alt not in g or eng not in g:
            continue
        ratio = g[alt]["median_s"] / g[eng]["median_s"]
        out.setdefault(group, {"timings": g, "ratios": {}})
        met = None
        if target is not None:
            met = ratio > target if target == 1.0 else ratio >= target
        out[group]["ratios"][f"{eng}_vs_{alt}"] = {
            "ratio": round(ratio, 3),
            "ratio_min": round(g[alt]["min_s"] / g[eng]["min_s"], 3),
            "target": target,
            "met": met,
            "meaning": TARGET_TEXT[(group, eng)],
        }
    return out


# ------------------------------------------------------------------ fixtures' data


@dataclass
class ReopenFixture:
    """A closed engine database: 300k streams in a snapshot plus a 300k-event tail.

    ``state`` is the same state as ``{stream: (version, value)}`` (what the pickle
    alternative loads); ``raw_env_path`` holds a raw LMDB environment with one value
    per tail transaction, each the size of that transaction's events in raw form.
    """

    db_path: str
    state: dict[str, tuple[int, bytes]]
    pickled: bytes
    raw_env_path: str
    raw_values: int
    raw_value_bytes: int


def build_state_db(
    path: str, streams: list[str], payloads: list[bytes], tail_txs: int
) -> dict[str, tuple[int, bytes]]:
    """Write one event to every stream, snapshot, then ``tail_txs`` more txs of 1000."""
    state: dict[str, tuple[int, bytes]] = {}
    np = len(payloads)
    with engine.open(path, sync="none") as db:
        for start in range(0, len(streams), EVENTS_PER_TX):
            part = streams[start : start + EVENTS_PER_TX]
            with db.transaction() as tx:
                tx.extend([(s, "opened", payloads[(start + j) % np]) for j, s in enumerate(part)])
            for j, s in enumerate(part):
                state[s] = (1, payloads[(start + j) % np])
        db.snapshot()
        for t in range(tail_txs):
            base = t * EVENTS_PER_TX
            events = [
                (streams[(base + j) % len(streams)], "deposited", payloads[(base + j + 7) % np])
                for j in range(EVENTS_PER_TX)
            ]
            with db.transaction() as tx:
                tx.extend(events)
            for s, _t, d in events:
                state[s] = (state[s][0] + 1, d)
        for s in (streams[0], streams[-1]):
            assert db.get(s) == state[s][1] and db.version(s) == state[s][0]
    return state


@dataclass
class SnapshotFixture:
    """An open engine database holding 300k streams, and the same state as a dict."""

    db: engine.Database
    state: dict[str, tuple[int, bytes]]
    workdir: Path
