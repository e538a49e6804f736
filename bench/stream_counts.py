"""Batched appends at several stream counts: the engine's ``tx.extend`` and a loop of
``tx.append`` against raw py-lmdb ``putmulti`` of the same records (issue 12, item 2).

Each database first holds ``S`` distinct streams (one event each, untimed), then each
timed round appends ``--txs`` transactions of 1000 events of 100 B, every event on
its own stream (1000 distinct streams per transaction, walking through all ``S``),
``sync="none"``. The raw LMDB side writes the same records as a log: the key the
event's global position (big-endian u64), the value a small header, stream, type and
data (``benchlib.raw_record``, as ``bench/test_bench_core.py``), built in a Python
loop (names encoded there) and written with ``putmulti(append=True)`` in one write
transaction. Rounds alternate the three, in one process; reported: median ms per
transaction and the ratios (raw LMDB time / engine time: >= 0.8 is the target;
extend / append time: <= 1 is the target)::

    python bench/stream_counts.py                       # 10k, 50k and 1M streams
    python bench/stream_counts.py --streams 10000 --rounds 9
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

import lmdb
from benchlib import raw_record

import engine

EVENTS_PER_TX = 1000


def names(n: int) -> list[str]:
    return [f"stream-{i:08d}" for i in range(n)]


class Raw:
    """py-lmdb as a log of the same records (see the module docstring)."""

    def __init__(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.env = lmdb.open(path, map_size=64 << 30, sync=False, metasync=False)
        self.position = 0

    def append_batch(self, events: list[tuple[str, str, bytes]]) -> None:
        items: list[tuple[bytes, bytes]] = []
        add = items.append
        pos = self.position
        for s, t, d in events:
            pos += 1
            add((pos.to_bytes(8, "big"), raw_record(s.encode(), t.encode(), d)))
        with self.env.begin(write=True) as txn:
            txn.cursor().putmulti(items, append=True)
        self.position = pos

    def close(self) -> None:
        self.env.close()


def run(streams: int, txs: int, rounds: int, root: str) -> dict[str, object]:
    pool = [os.urandom(100) for _ in range(64)]
    ns = names(streams)
    db_extend = engine.open(os.path.join(root, f"extend-{streams}"), sync="none")
    db_append = engine.open(os.path.join(root, f"append-{streams}"), sync="none")
    raw = Raw(os.path.join(root, f"raw-{streams}"))
    cursor = [0]

    def batch(start: int) -> list[tuple[str, str, bytes]]:
        return [(ns[(start + i) % streams], "deposited", pool[(start + i) % 64])
                for i in range(EVENTS_PER_TX)]

    def extend(events: list[tuple[str, str, bytes]]) -> None:
        with db_extend.transaction() as tx:
            tx.extend(events)

    def append(events: list[tuple[str, str, bytes]]) -> None:
        with db_append.transaction() as tx:
            ap = tx.append
            for s, t, d in events:
                ap(s, t, d)

    systems: dict[str, Callable[[list[tuple[str, str, bytes]]], None]] = {
        "extend": extend, "append": append, "raw": raw.append_batch}
    try:
        for start in range(0, streams, EVENTS_PER_TX):  # every stream exists (untimed)
            events = batch(start)
            for fn in systems.values():
                fn(events)
        cursor[0] = streams
        per: dict[str, list[float]] = {k: [] for k in systems}
        order = list(systems)
        for r in range(rounds):
            first = cursor[0]
            batches = [batch(first + t * EVENTS_PER_TX) for t in range(txs)]
            for name in order[r % 3:] + order[:r % 3]:  # rotate who goes first
                fn = systems[name]
                t0 = time.perf_counter()
                for events in batches:
                    fn(events)
                per[name].append((time.perf_counter() - t0) / txs * 1000)
            cursor[0] = first + txs * EVENTS_PER_TX
    finally:
        db_extend.close()
        db_append.close()
        raw.close()
    med = {k: statistics.median(v) for k, v in per.items()}
    return {
        "streams": streams, "txs_per_round": txs, "rounds": rounds,
        "ms_per_tx_median": med, "ms_per_tx_min": {k: min(v) for k, v in per.items()},
        "extend_vs_raw": med["raw"] / med["extend"],
        "append_vs_raw": med["raw"] / med["append"],
        "extend_time_over_append_time": med["extend"] / med["append"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, nargs="*", default=[10_000, 50_000, 1_000_000])
    ap.add_argument("--txs", type=int, default=50, help="transactions per timed round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="stream-counts-")
    try:
        results = [run(s, args.txs, args.rounds, root) for s in args.streams]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'streams':>10} {'extend ms/tx':>13} {'append ms/tx':>13} {'raw ms/tx':>10} "
          f"{'raw/extend':>11} {'extend/append':>14}")
    for r in results:
        m = r["ms_per_tx_median"]
        assert isinstance(m, dict)
        print(f"{r['streams']:>10,} {m['extend']:>13.3f} {m['append']:>13.3f} {m['raw']:>10.3f} "
              f"{r['extend_vs_raw']:>10.2f}x {r['extend_time_over_append_time']:>13.2f}x")
    print("targets: raw/extend >= 0.8 (engine at least 0.8x raw LMDB's speed); "
          "extend/append <= 1 (tx.extend never slower)")


if __name__ == "__main__":
    main()
