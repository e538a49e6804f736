"""Committer throughput with a log backup running against none, in alternating rounds.

``bench/compare.py``'s ``backup_overhead`` runs a few rounds of each; on a noisy
2-core VM (the same block of appends runs at 17k-37k commits/s from one second to
the next) that is too few to see a 10% difference. This script runs many short
rounds, alternating which database goes first, in one process with both databases
open, and reports the median of the per-pair ratios (on / off) beside the ratio of
the median rates::

    python bench/backup_overhead_ab.py --mode single --rounds 16
    python bench/backup_overhead_ab.py --mode batch --rounds 12

Each "on" round is followed by an untimed flush, so every round starts with nothing
to ship; the uploader ships (at its default 0.2 s interval) while the round runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

import engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=("single", "batch"), default="single",
                    help="one-event db.append commits, or 1000-event tx.extend")
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--events", type=int, default=None,
                    help="events per round (default 20,000 single, 400,000 batch)")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp one)")
    ap.add_argument("--target", default=None,
                    help="backup URL (default: file:// in the scratch directory; memory:// "
                         "takes the target's file writes and fsyncs out of the picture)")
    args = ap.parse_args()
    n = args.events or (20_000 if args.mode == "single" else 400_000)
    root = args.dir or tempfile.mkdtemp(prefix="backup-ab-")
    payload = os.urandom(100)
    names = [f"acct-{i}" for i in range(10_000)]
    dbs = {
        False: engine.open(os.path.join(root, "off"), sync="none"),
        True: engine.open(os.path.join(root, "on"), sync="none",
                          backup=args.target
                          or "file://" + os.path.join(os.path.abspath(root), "target")),
    }
    rates: dict[bool, list[float]] = {False: [], True: []}
    done = 0
    try:
        for db in dbs.values():
            db.append("warm-up", "opened", payload)
        dbs[True].backup.flush(timeout=60)
        for r in range(args.rounds):
            for on in ((False, True) if r % 2 == 0 else (True, False)):
                db = dbs[on]
                t0 = time.perf_counter()
                if args.mode == "single":
                    append = db.append
                    for i in range(done, done + n):
                        append(names[i % len(names)], "deposited", payload)
                else:
                    for t in range(n // 1000):
                        b = done + t * 1000
                        with db.transaction() as tx:
                            tx.extend([(names[(b + i) % len(names)], "deposited", payload)
                                       for i in range(1000)])
                rates[on].append(n / (time.perf_counter() - t0))
                if on:
                    dbs[True].backup.flush(timeout=600)  # untimed: the next round starts clean
            done += n
    finally:
        for db in dbs.values():
            db.close()
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    pairs = [a / b for a, b in zip(rates[True], rates[False], strict=True)]
    print(f"mode={args.mode} rounds={args.rounds} events/round={n:,} "
          f"target={args.target or 'file://'}")
    print(f"  off: median {statistics.median(rates[False]):,.0f}/s "
          f"(min {min(rates[False]):,.0f}, max {max(rates[False]):,.0f})")
    print(f"  on:  median {statistics.median(rates[True]):,.0f}/s "
          f"(min {min(rates[True]):,.0f}, max {max(rates[True]):,.0f})")
    of_medians = statistics.median(rates[True]) / statistics.median(rates[False])
    print(f"  on/off: ratio of medians {of_medians:.3f}, "
          f"median of paired ratios {statistics.median(pairs):.3f}")


if __name__ == "__main__":
    main()
