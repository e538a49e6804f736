"""Helpers shared by the core benchmarks (bench/test_bench_*.py) and bench/conftest.py.

A plain module (not ``conftest``) so test modules can import it whatever other
``conftest.py`` files pytest has loaded; bench/ is on ``sys.path`` under pytest's
default ``prepend`` import mode.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import engine

RESULTS_DIR = Path(__file__).resolve().parent / "results"

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
]
TARGET_TEXT = {
    ("append_batch", "engine_tx_extend"): "extend >= 0.6x raw py-lmdb putmulti",
    ("append_batch", "engine_tx_append"): "tx.append >= 0.4x raw py-lmdb putmulti",
    ("append_durable", "engine_sync_commit"): ">= 0.8x raw LMDB sync=True put",
    ("reopen", "engine_open_close"): "faster than pickle.loads + LMDB scan (> 1.0x)",
    ("snapshot_write", "engine_snapshot"): "no target (reported)",
}

RESULTS: dict[str, dict[str, dict[str, float]]] = {}


def make_payload(i: int, rnd: random.Random, size: int = PAYLOAD_BYTES) -> bytes:
    """A ``size``-byte event body shaped like a small JSON document.

    About half of it is random hex, so it compresses like real event data (neither
    all-zero, which flatters zstd, nor pure noise).
    """
    body = b'{"seq":%d,"key":"%s","note":"' % (i, rnd.randbytes(24).hex().encode())
    return (body + b"." * size)[: size - 2] + b'"}'


def make_payloads(n: int, seed: int = 1) -> list[bytes]:
    rnd = random.Random(seed)
    return [make_payload(i, rnd) for i in range(n)]


def stream_name(i: int) -> str:
    return f"account-{i:07d}"


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
