"""Durable single-event commits: the engine's ``sync="commit"`` and ``sync="data"``
against raw py-lmdb with ``sync=True`` writing records of the same size, in
alternating rounds in one process (each round a fresh directory).

It answers where ``append_durable``'s gap to SQLite comes from: if the engine's
``"commit"`` runs as fast as raw LMDB's durable commit, the cost is LMDB's two
ordered flushes per commit, not the engine's own work::

    python bench/durable_ab.py --rounds 5 --commits 300
"""

from __future__ import annotations

import argparse
import os
import shutil
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
                                     "engine data": []}
    try:
        for r in range(args.rounds):
            for name in (list(rates) if r % 2 == 0 else list(rates)[::-1]):
                d = os.path.join(root, f"{r}-{name.replace(' ', '-')}")
                if name.startswith("raw"):
                    os.makedirs(d)
                    rates[name].append(raw(d, args.commits))
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


if __name__ == "__main__":
    main()
