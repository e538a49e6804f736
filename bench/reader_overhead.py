"""What a subscribed reader in another process costs the writer, in alternating rounds.

Two databases are open in this process with ``sync="none"``; a child process opens
one of them ``readonly=True`` and subscribes to it from its last position, counting
the events it receives. Rounds of single-event ``db.append`` commits alternate
between the two databases (which one goes first alternates too); reported: the
median rate of each, the ratio of the medians and the median of the per-pair ratios
(followed / alone), and whether the subscriber received every event committed to its
database (it must)::

    python bench/reader_overhead.py --rounds 12
    python bench/reader_overhead.py --rounds 12 --mode watch   # a bare inotify watch

``--mode watch`` replaces the subscriber by a process that only holds an inotify watch
on ``log/data.mdb`` and drains it: what the kernel's events alone cost the writer.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import engine

_CHILD = r"""
import os, sys, time
mode, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "watch":
    import selectors
    from inotify_simple import INotify, flags
    ino = INotify()
    ino.add_watch(os.path.join(path, "log", "data.mdb"), flags.MODIFY)
    sel = selectors.DefaultSelector()
    sel.register(ino.fileno(), selectors.EVENT_READ)
    open(out, "w").write("ready")
    while True:
        sel.select(1.0)
        ino.read(timeout=0)
import engine
n = 0
with engine.open(path, readonly=True) as r, r.subscribe(after_position=r.last_position) as sub:
    open(out, "w").write("ready")
    t0, c0 = time.monotonic(), time.process_time()
    # until told how many were committed, then until all arrived (or 60 s pass)
    expected, deadline = None, None
    while expected is None or (n < expected and time.monotonic() < deadline):
        ev = sub.next_event(timeout=0.2)
        if ev is not None:
            n += 1
        if expected is None and os.path.exists(out + ".stop"):
            expected = int(open(out + ".stop").read())
            deadline = time.monotonic() + 60
    cpu, wall = time.process_time() - c0, time.monotonic() - t0
open(out, "w").write(f"{n} {cpu} {wall}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--events", type=int, default=20_000, help="commits per round")
    ap.add_argument("--mode", choices=("subscribe", "watch"), default="subscribe")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="reader-overhead-")
    payload = os.urandom(100)
    names = [f"acct-{i}" for i in range(10_000)]
    paths = {False: os.path.join(root, "alone"), True: os.path.join(root, "followed")}
    dbs: dict[bool, engine.Database] = {}
    out = os.path.join(root, "child.out")
    child: subprocess.Popen[bytes] | None = None
    rates: dict[bool, list[float]] = {False: [], True: []}
    received: tuple[int, float, float] | None = None
    try:
        for k, p in paths.items():
            dbs[k] = engine.open(p, sync="none")
            dbs[k].append("warm-up", "opened", payload)
        child = subprocess.Popen([sys.executable, "-c", _CHILD, args.mode, paths[True], out])
        deadline = time.monotonic() + 60
        while not os.path.exists(out):
            if time.monotonic() > deadline or child.poll() is not None:
                raise SystemExit("the reader process did not start (no 'ready' in 60 s)")
            time.sleep(0.01)
        done = 0
        for r in range(args.rounds):
            for on in ((False, True) if r % 2 == 0 else (True, False)):
                append = dbs[on].append
                t0 = time.perf_counter()
                for i in range(done, done + args.events):
                    append(names[i % len(names)], "deposited", payload)
                rates[on].append(args.events / (time.perf_counter() - t0))
            done += args.events
        if args.mode == "subscribe":
            with open(out + ".stop", "w") as f:
                f.write(str(done))
            child.wait(timeout=120)
            with open(out) as f:
                n, cpu, wall = f.read().split()
                received = (int(n), float(cpu), float(wall))
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        for db in dbs.values():
            db.close()
        shutil.rmtree(root, ignore_errors=True)
    pairs = [a / b for a, b in zip(rates[True], rates[False], strict=True)]
    print(f"mode={args.mode} rounds={args.rounds} commits/round={args.events:,}")
    print(f"  alone:    median {statistics.median(rates[False]):,.0f}/s")
    print(f"  followed: median {statistics.median(rates[True]):,.0f}/s")
    print(f"  followed/alone: ratio of medians "
          f"{statistics.median(rates[True]) / statistics.median(rates[False]):.3f}, "
          f"median of paired ratios {statistics.median(pairs):.3f}")
    if received is not None:
        n, cpu, wall = received
        expected = args.rounds * args.events
        print(f"  subscriber received {n:,} of {expected:,} events"
              f"{'' if n == expected else '  (MISSING EVENTS)'}; its process used "
              f"{cpu / wall:.0%} of a core over {wall:.1f} s")


if __name__ == "__main__":
    main()
