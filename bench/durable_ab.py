"""Durable single-event commits: the engine's ``sync="commit"`` (through its commit
journal: one flush per commit) and ``sync="data"`` against raw py-lmdb with
``sync=True`` (two ordered flushes per commit) and SQLite in WAL mode with
``synchronous=FULL`` (one flush), writing records of about the same size, in
alternating rounds in one process (each round a fresh directory, warmed by one
commit). Reported: each system's median rate, its ratio to raw LMDB, and the median
of the per-round ratios engine ``"commit"`` / SQLite (issue 12, item 1: >= 1.0)::

    python bench/durable_ab.py --rounds 5 --commits 300
    python bench/durable_ab.py --rounds 15 --commits 2000     # checkpoints inside rounds
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import tempfile
import time

import lmdb

import engine


def raw(path: str, commits: int) -> float:
    env = lmdb.open(path, map_size=256 << 20, sync=True, metasync=True, readahead=False,
                    max_readers=256)
    try:
        with env.begin(write=True) as txn:
            txn.put(b"\0", b"meta")
        t0 = time.perf_counter()
        for i in range(commits):
            with env.begin(write=True) as txn:
                txn.put((i + 1).to_bytes(8, "big"), os.urandom(230), append=True)
        return commits / (time.perf_counter() - t0)
    finally:
        env.close()


def sqlite_full(path: str, commits: int) -> float:
    """As bench/comparison's SQLite system: WAL, synchronous=FULL, one INSERT per
    BEGIN/COMMIT into a table keyed (stream, version), versions kept in memory."""
    conn = sqlite3.connect(os.path.join(path, "events.db"), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE events (stream TEXT NOT NULL, version INTEGER NOT NULL, "
                     "type TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (stream, version))")
        conn.execute("INSERT INTO events VALUES ('warm-up', 1, 'opened', x'00')")
        versions: dict[str, int] = {}
        t0 = time.perf_counter()
        for i in range(commits):
            s = f"acct-{i % 100}"
            v = versions[s] = versions.get(s, 0) + 1
            conn.execute("BEGIN")
            conn.execute("INSERT INTO events VALUES (?, ?, ?, ?)",
                         (s, v, "deposited", os.urandom(150)))
            conn.execute("COMMIT")
        return commits / (time.perf_counter() - t0)
    finally:
        conn.close()


def eng(path: str, commits: int, sync: str) -> float:
    with engine.open(path, sync=sync) as db:
        db.append("warm-up", "opened", b"x")
        t0 = time.perf_counter()
        for i in range(commits):
            db.append(f"acct-{i % 100}", "deposited", os.urandom(150))  # ~230 B records
        return commits / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--commits", type=int, default=300)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="durable-ab-")
    rates: dict[str, list[float]] = {"raw lmdb sync=True": [], "engine commit": [],
                                     "engine data": [], "sqlite WAL FULL": []}
    try:
        for r in range(args.rounds):
            for name in (list(rates) if r % 2 == 0 else list(rates)[::-1]):
                d = os.path.join(root, f"{r}-{name.replace(' ', '-')}")
                if name.startswith("raw"):
                    os.makedirs(d)
                    rates[name].append(raw(d, args.commits))
                elif name.startswith("sqlite"):
                    os.makedirs(d)
                    rates[name].append(sqlite_full(d, args.commits))
                else:
                    rates[name].append(eng(d, args.commits, name.split()[1]))
                shutil.rmtree(d)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = statistics.median(rates["raw lmdb sync=True"])
    for name, v in rates.items():
        med = statistics.median(v)
        print(f"{name:20s} median {med:7.0f} commits/s  ({med / base:.2f}x raw LMDB)  "
              f"{[round(x) for x in v]}")
    pairs = [e / q for e, q in zip(rates["engine commit"], rates["sqlite WAL FULL"],
                                   strict=True)]
    print(f"engine commit / sqlite WAL FULL, per round: median {statistics.median(pairs):.2f}x"
          f" (range {min(pairs):.2f}-{max(pairs):.2f})")


if __name__ == "__main__":
    main()
