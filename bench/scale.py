"""How the engine scales with the number of streams (issue 12 baseline), run by hand.

Usage::

    python bench/scale.py [--quick] [--streams N [N ...]] [--rounds R] [--dir PARENT]
                          [--keep] [--json]

Not part of the pytest suite or CI. For each N (default 100,000 and 1,000,000;
``--quick`` 100,000 and 300,000; ``--streams 10000000`` by hand) a database of N
distinct streams is built in a scratch directory under ``--dir`` (default /tmp),
removed afterwards unless ``--keep``. Every event carries its own 100-byte payload
(``benchlib.make_payload``: half random hex, so it compresses like real data and
zstd finds no repeats across events) and every database is opened with
``sync="none"``, so the disk's flushes are not measured.

Each phase runs in a fresh subprocess per N, so one phase's memory (RSS, and the
VmHWM peak, both from /proc/self/status) never counts in another's:

1. **write**: ``engine.open`` of a new directory, then N events, one per stream, in
   transactions of 1000 events through ``tx.extend``: seconds and events/s of the
   transactions (open, ``extend``, commit; each batch's list is built outside the
   timing, and the wall time with it is reported beside). Then
   **snapshot**: seconds of ``db.snapshot()`` and its file size. Memory right after
   open, after the write and after the snapshot. Then (untimed set-up for phase 2)
   a tail of min(N, 300,000) events in 1000-event transactions after the snapshot,
   and the same state as a dict ``{stream: (version, last data)}`` (distinct bytes
   objects, as a loaded state's are) pickled to a file.
2. **reopen**: ``engine.open`` + ``close`` of that database (its snapshot plus the
   tail), against ``pickle.loads`` of the pickled dict plus a raw py-lmdb cursor scan
   of the tail's log records (``DIR/log`` opened ``readonly=True, lock=False``, every
   value from the tail's first tx key on). Rounds alternate the order of the two;
   medians (and minima) after one warm-up round each. Target: engine <= 0.5x the
   alternative.
3. **stall**: the database is opened again (an indexed open: the snapshot and tail
   indexed in C, no dict yet), one writer thread commits single ``db.append`` events
   (``sync="none"``, to 10,000 of the existing streams in turn) continuously and,
   after 0.5 s of warm-up and 5x phase 1's snapshot time (at least 2 s),
   ``db.snapshot()`` runs in another thread. From the writer's
   commit timestamps: the longest gap between two consecutive commits overlapping the
   snapshot (target <= 5 ms), its commit rate during the snapshot against its rate
   in an equal time just before it (target >= 0.8), and RSS after that first
   snapshot against RSS right after open (target <= 1.3x; VmHWM reported beside it;
   that includes what the writer itself added since open, so RSS just before the
   snapshot and the snapshot's own ratio, after / just before, are reported too).
   The longest gap in the window before is the noise floor (GC, other jobs, the
   GIL's 5 ms switch interval).
4. **memory**: the database opened once more (indexed) and snapshotted with nothing
   else running: RSS after the snapshot against RSS after open (target <= 1.3x),
   VmHWM and the private part beside it. Phase 3's ratio mixes in what its writer
   adds (the log's pages it maps as it appends), so the target is judged here.

The targets are only measured and reported (MET / MISSED), never tuned for here.
Growth factors are each figure at one N over the same figure at the previous N.
``--json`` prints one JSON object; otherwise a table. Either way the result is
written to ``bench/results/latest/scale.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ only (benchlib)
from benchlib import (
    EVENTS_PER_TX,
    LATEST_DIR,
    import_engine,
    machine_info,
    make_payload,
    make_payloads,
)

engine = import_engine()
import lmdb  # noqa: E402

DEFAULT_STREAMS = (100_000, 1_000_000)
QUICK_STREAMS = (100_000, 300_000)
TAIL_MAX = 300_000
WRITE_SEED = 12
TAIL_SEED = 13
LOG_KEY = struct.Struct(">Q")  # the log's tx keys (engine/log.py)

STALL_TARGET_MS = 5.0
THROUGHPUT_TARGET = 0.8
MEMORY_TARGET = 1.3
REOPEN_TARGET = 0.5

Result = dict[str, Any]


def stream_name(i: int) -> str:
    """The ``i``-th stream: ``account-00000042`` (8 digits: fixed width up to 10M)."""
    return f"account-{i:08d}"


def memory() -> dict[str, float]:
    """This process's resident memory now and its peak, in MiB (/proc/self/status),
    and its private part: RssAnon (the heap, and the C index's private mappings) +
    RssShmem (where those mappings were shared, before 2026-12-01), without RssFile
    (mostly the log's mapped pages, which grow with the log as a writer appends and
    which the kernel can drop and read back)."""
    names = {"VmRSS": "rss", "VmHWM": "hwm", "RssAnon": "anon", "RssShmem": "shmem"}
    out: dict[str, float] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in names:
                out[names[key] + "_mib"] = round(int(rest.split()[0]) / 1024, 1)
    out["private_mib"] = round(out.pop("anon_mib", 0.0) + out.pop("shmem_mib", 0.0), 1)
    return out  # {"rss_mib": ..., "hwm_mib": ..., "private_mib": ...}


def timed(fn: Callable[[], Any]) -> float:
    """Seconds ``fn()`` takes, after a garbage collection."""
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ------------------------------------------------------------------ phases (subprocesses)


def _batches(n: int, seed: int, etype: str) -> Iterator[list[tuple[str, str, bytes]]]:
    """Events for streams 0..n-1 in order, 1000 a list; payload i is ``make_payload(i)``
    of a ``Random(seed)``: distinct, half random hex (no repeats for zstd to find)."""
    rnd = random.Random(seed)
    for start in range(0, n, EVENTS_PER_TX):
        yield [(stream_name(i), etype, make_payload(i, rnd))
               for i in range(start, min(start + EVENTS_PER_TX, n))]


def phase_write(db_path: str, n: int, pickle_path: str) -> Result:
    """Phase 1: write N streams, snapshot, memory; then the tail and the pickled state."""
    out: Result = {"before_open": memory()}
    db = engine.open(db_path, sync="none")
    out["after_open"] = memory()

    # Each batch's list is built outside the timing (distinct payloads cost ~1 us each
    # to make); the timing covers the transaction: open, tx.extend, commit.
    gc.collect()
    commit_s = 0.0
    wall0 = time.perf_counter()
    for batch in _batches(n, WRITE_SEED, "opened"):
        t0 = time.perf_counter()
        with db.transaction() as tx:
            tx.extend(batch)
        commit_s += time.perf_counter() - t0
    wall_s = time.perf_counter() - wall0
    out["write"] = {"seconds": commit_s, "events_per_s": n / commit_s, "wall_s": wall_s,
                    "txs": -(-n // EVENTS_PER_TX)}
    out["after_write"] = memory()
    info: list[Any] = []
    snap_s = timed(lambda: info.append(db.snapshot()))
    out["snapshot"] = {"seconds": snap_s, "bytes": info[0].bytes, "streams": info[0].streams}
    out["after_snapshot"] = memory()

    tail = min(n, TAIL_MAX)
    t0 = time.perf_counter()
    for batch in _batches(tail, TAIL_SEED, "deposited"):
        with db.transaction() as tx:
            tx.extend(batch)
    tail_s = time.perf_counter() - t0
    first_tail_tx = info[0].tx_id + 1
    last_tx = db.position.tx_id
    last = stream_name(n - 1)
    checks = (db.version(stream_name(0)), db.version(last), db.get(last))
    db.close()
    out["tail"] = {"events": tail, "seconds": tail_s, "first_tx": first_tail_tx,
                   "txs": last_tx - first_tail_tx + 1}

    # The same state as a dict, rebuilt from the same payload sequences; its values are
    # distinct objects, as a loaded state's are.
    state: dict[str, tuple[int, bytes]] = {}
    for version, (m, seed, etype) in enumerate(
            ((n, WRITE_SEED, "opened"), (tail, TAIL_SEED, "deposited")), start=1):
        for batch in _batches(m, seed, etype):
            for stream, _t, data in batch:
                state[stream] = (version, data)
    assert checks == (2, *state[last]), (checks, state[last])
    data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    del state
    Path(pickle_path).write_bytes(data)
    out["pickle_bytes"] = len(data)
    return out


def _scan_tail(log_path: str, first_tx: int) -> tuple[int, int]:
    """Raw py-lmdb scan of every log value from ``first_tx`` on: (values, bytes)."""
    env = lmdb.open(log_path, readonly=True, lock=False, subdir=True)
    try:
        n = size = 0
        with env.begin() as txn:
            cur = txn.cursor()
            if cur.set_range(LOG_KEY.pack(first_tx)):
                for v in cur.iternext(keys=False, values=True):
                    n += 1
                    size += len(v)
        return n, size
    finally:
        env.close()


def phase_reopen(db_path: str, pickle_path: str, first_tx: int, txs: int, rounds: int) -> Result:
    """Phase 2: engine open + close against pickle.loads + raw LMDB tail scan."""
    pickled = Path(pickle_path).read_bytes()
    log_path = str(Path(db_path) / "log")
    probe = stream_name(0)
    engine_s: list[float] = []
    open_s: list[float] = []
    alt_s: list[float] = []
    loads_s: list[float] = []
    scan_s: list[float] = []

    def engine_round() -> None:
        gc.collect()
        t0 = time.perf_counter()
        db = engine.open(db_path, sync="none")
        t1 = time.perf_counter()
        ok = db.version(probe) == 2
        db.close()
        t2 = time.perf_counter()
        assert ok
        engine_s.append(t2 - t0)
        open_s.append(t1 - t0)

    def alt_round() -> None:
        gc.collect()
        t0 = time.perf_counter()
        state = pickle.loads(pickled)
        t1 = time.perf_counter()
        n, _size = _scan_tail(log_path, first_tx)
        t2 = time.perf_counter()
        ok = state[probe][0] == 2
        del state  # freed inside the timing, as the engine's close frees its state
        t3 = time.perf_counter()
        assert ok and n == txs, (n, txs)
        alt_s.append(t3 - t0)
        loads_s.append(t1 - t0)
        scan_s.append(t2 - t1)

    engine_round()  # warm-up: page cache, first-call costs
    alt_round()
    for lst in (engine_s, open_s, alt_s, loads_s, scan_s):
        lst.clear()
    for r in range(rounds):
        for fn in ((engine_round, alt_round) if r % 2 == 0 else (alt_round, engine_round)):
            fn()
    med = statistics.median
    eng, alt = med(engine_s), med(alt_s)
    return {
        "rounds": rounds,
        "engine_open_close_s": eng, "engine_open_close_min_s": min(engine_s),
        "engine_open_s": med(open_s),
        "alt_s": alt, "alt_min_s": min(alt_s),
        "pickle_loads_s": med(loads_s), "lmdb_scan_s": med(scan_s),
        "ratio": eng / alt, "ratio_min": min(engine_s) / min(alt_s),
    }


def phase_stall(db_path: str, n: int, before_s: float) -> Result:
    """Phase 3: a single-event committer's gaps and rate while db.snapshot() runs."""
    payload = make_payloads(1, seed=13)[0]
    step = max(1, n // 10_000)
    names = [stream_name(i) for i in range(0, n, step)]
    gc.collect()
    out: Result = {"before_open": memory()}
    db = engine.open(db_path, sync="none")
    out["after_open"] = memory()
    times: list[float] = []
    stop = threading.Event()

    def writer() -> None:
        append, stamp, now, k, m = db.append, times.append, time.perf_counter, 0, len(names)
        while not stop.is_set():
            append(names[k % m], "deposited", payload)
            stamp(now())
            k += 1

    snap: list[Any] = []
    snap_err: list[BaseException] = []

    def snapshotter() -> None:
        try:
            snap.append(db.snapshot())
        except BaseException as exc:  # reported by the caller
            snap_err.append(exc)

    w = threading.Thread(target=writer, name="scale-writer")
    w.start()
    warm_end = time.perf_counter() + 0.5
    time.sleep(0.5 + before_s)
    s = threading.Thread(target=snapshotter, name="scale-snapshot")
    out["before_snapshot"] = memory()  # the writer's own growth since open is before this
    s0 = time.perf_counter()
    s.start()
    s.join()
    s1 = time.perf_counter()
    out["after_snapshot"] = memory()
    time.sleep(0.3)
    stop.set()
    w.join()
    db.close()
    if snap_err:
        raise snap_err[0]

    dur = s1 - s0
    b0 = max(warm_end, s0 - dur)
    during = [t for t in times if s0 <= t <= s1]
    before = [t for t in times if b0 <= t < s0]

    def max_gap(lo: float, hi: float) -> float:
        """Longest gap between consecutive commits where it overlaps [lo, hi]."""
        best = 0.0
        for a, b in pairwise(times):
            if b > lo and a < hi:
                best = max(best, b - a)
        return best

    rate_during = len(during) / dur
    rate_before = len(before) / (s0 - b0)
    out.update({
        "snapshot_s": dur, "snapshot_streams": snap[0].streams, "snapshot_bytes": snap[0].bytes,
        "before_window_s": s0 - b0, "before_window_short": s0 - b0 < dur * 0.999,
        "commits_during": len(during), "commits_before": len(before),
        "rate_before": rate_before, "rate_during": rate_during,
        "throughput_ratio": rate_during / rate_before if rate_before else 0.0,
        "max_gap_during_ms": max_gap(s0, s1) * 1e3,
        "max_gap_before_ms": max_gap(b0, s0) * 1e3,
        "gaps_over_5ms_during": sum(1 for a, b in pairwise(during)
                                    if b - a > STALL_TARGET_MS / 1e3),
        "memory_ratio": out["after_snapshot"]["rss_mib"] / out["after_open"]["rss_mib"],
        "hwm_ratio": out["after_snapshot"]["hwm_mib"] / out["after_open"]["rss_mib"],
        "snapshot_memory_ratio": (out["after_snapshot"]["rss_mib"]
                                  / out["before_snapshot"]["rss_mib"]),
        "private_memory_ratio": (out["after_snapshot"]["private_mib"]
                                 / out["after_open"]["private_mib"]),
        "switch_interval_ms": sys.getswitchinterval() * 1e3,
    })
    return out


def phase_memory(db_path: str) -> Result:
    """Phase 4: RSS after an indexed open and after its first snapshot, nothing else
    running (the stall phase's ratio includes what its writer adds meanwhile)."""
    gc.collect()
    out: Result = {"before_open": memory()}
    db = engine.open(db_path, sync="none")
    gc.collect()
    out["after_open"] = memory()
    t0 = time.perf_counter()
    info = db.snapshot()
    out["snapshot_s"] = time.perf_counter() - t0
    out["snapshot_streams"] = info.streams
    gc.collect()
    out["after_snapshot"] = memory()
    db.close()
    a, o = out["after_snapshot"], out["after_open"]
    out.update({"memory_ratio": a["rss_mib"] / o["rss_mib"],
                "hwm_ratio": a["hwm_mib"] / o["rss_mib"],
                "private_memory_ratio": a["private_mib"] / o["private_mib"]})
    return out


PHASES: dict[str, Callable[[dict[str, Any]], Result]] = {
    "write": lambda a: phase_write(a["db"], a["n"], a["pickle"]),
    "reopen": lambda a: phase_reopen(a["db"], a["pickle"], a["first_tx"], a["txs"], a["rounds"]),
    "stall": lambda a: phase_stall(a["db"], a["n"], a["before_s"]),
    "memory": lambda a: phase_memory(a["db"]),
}


def run_phase(name: str, args: dict[str, Any]) -> Result:
    """Run one phase in a fresh interpreter; its result is the last line of its stdout."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", name,
           "--phase-args", json.dumps(args)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"phase {name} (N={args['n']:,}) failed with exit code "
                         f"{proc.returncode}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------ one N, all phases


def measure(n: int, parent: Path, rounds: int, keep: bool) -> Result:
    """Every phase for a database of ``n`` streams, in its own scratch directory."""
    work = Path(tempfile.mkdtemp(prefix=f"scale-{n}-", dir=parent))
    db, pkl = str(work / "db"), str(work / "state.pickle")
    t0 = time.perf_counter()
    try:
        log(f"N={n:,}: write + snapshot + tail")
        w = run_phase("write", {"n": n, "db": db, "pickle": pkl})
        log(f"N={n:,}: reopen ({rounds} rounds)")
        r = run_phase("reopen", {"n": n, "db": db, "pickle": pkl, "rounds": rounds,
                                 "first_tx": w["tail"]["first_tx"], "txs": w["tail"]["txs"]})
        log(f"N={n:,}: snapshot stall")
        before = max(2.0, 5.0 * w["snapshot"]["seconds"])
        s = run_phase("stall", {"n": n, "db": db, "before_s": before})
        log(f"N={n:,}: memory of a snapshot alone")
        m = run_phase("memory", {"n": n, "db": db})
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return {"streams": n, "write": w, "reopen": r, "stall": s, "memory": m,
            "wall_s": time.perf_counter() - t0}


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ report

# (label, path into a result, format, target text) -- the table's rows, in order
Row = tuple[str, tuple[str, ...], str, str]
ROWS: list[Row] = [
    ("write: seconds", ("write", "write", "seconds"), "{:.2f}", ""),
    ("write: events/s", ("write", "write", "events_per_s"), "{:,.0f}", ""),
    ("write: wall s, with batches", ("write", "write", "wall_s"), "{:.2f}", ""),
    ("snapshot: seconds", ("write", "snapshot", "seconds"), "{:.2f}", ""),
    ("snapshot: file MiB", ("write", "snapshot", "mib"), "{:.1f}", ""),
    ("RSS after open, MiB", ("write", "after_open", "rss_mib"), "{:.0f}", ""),
    ("RSS after write, MiB", ("write", "after_write", "rss_mib"), "{:.0f}", ""),
    ("RSS after snapshot, MiB", ("write", "after_snapshot", "rss_mib"), "{:.0f}", ""),
    ("VmHWM after snapshot, MiB", ("write", "after_snapshot", "hwm_mib"), "{:.0f}", ""),
    ("stall: max commit gap, ms", ("stall", "max_gap_during_ms"), "{:.1f}", "<= 5 ms"),
    ("stall: max gap before, ms", ("stall", "max_gap_before_ms"), "{:.1f}", "noise floor"),
    ("stall: gaps > 5 ms", ("stall", "gaps_over_5ms_during"), "{:d}", ""),
    ("stall: snapshot s (loaded)", ("stall", "snapshot_s"), "{:.2f}", ""),
    ("stall: commits/s before", ("stall", "rate_before"), "{:,.0f}", ""),
    ("stall: commits/s during", ("stall", "rate_during"), "{:,.0f}", ""),
    ("stall: throughput ratio", ("stall", "throughput_ratio"), "{:.2f}", ">= 0.8"),
    ("stall: RSS after open, MiB", ("stall", "after_open", "rss_mib"), "{:.0f}", ""),
    ("stall: RSS just before snap, MiB", ("stall", "before_snapshot", "rss_mib"), "{:.0f}",
     ""),
    ("stall: RSS after snap, MiB", ("stall", "after_snapshot", "rss_mib"), "{:.0f}", ""),
    ("stall: VmHWM, MiB", ("stall", "after_snapshot", "hwm_mib"), "{:.0f}", ""),
    ("stall: memory ratio (RSS, writer's growth in)", ("stall", "memory_ratio"), "{:.2f}", ""),
    ("stall:   snapshot's own (after / before)", ("stall", "snapshot_memory_ratio"), "{:.2f}",
     ""),
    ("stall:   private (anon+shmem) after / open", ("stall", "private_memory_ratio"),
     "{:.2f}", ""),
    ("stall: peak ratio (HWM)", ("stall", "hwm_ratio"), "{:.2f}", ""),
    ("memory: RSS after open, MiB", ("memory", "after_open", "rss_mib"), "{:.0f}", ""),
    ("memory: RSS after its snapshot, MiB", ("memory", "after_snapshot", "rss_mib"), "{:.0f}",
     ""),
    ("memory: snapshot s", ("memory", "snapshot_s"), "{:.2f}", ""),
    ("memory: ratio (RSS)", ("memory", "memory_ratio"), "{:.2f}", "<= 1.3x"),
    ("memory: peak ratio (HWM)", ("memory", "hwm_ratio"), "{:.2f}", ""),
    ("memory: private after / open", ("memory", "private_memory_ratio"), "{:.2f}", ""),
    ("reopen: engine open+close s", ("reopen", "engine_open_close_s"), "{:.3f}", ""),
    ("reopen: pickle+scan s", ("reopen", "alt_s"), "{:.3f}", ""),
    ("reopen:   pickle.loads s", ("reopen", "pickle_loads_s"), "{:.3f}", ""),
    ("reopen:   LMDB tail scan s", ("reopen", "lmdb_scan_s"), "{:.3f}", ""),
    ("reopen: engine / alt", ("reopen", "ratio"), "{:.2f}", "<= 0.5x"),
    ("reopen: engine / alt (min)", ("reopen", "ratio_min"), "{:.2f}", ""),
]


def pick(result: Result, path: tuple[str, ...]) -> float:
    v: Any = result
    for k in path:
        v = v[k]
    return v  # type: ignore[no-any-return]


def targets(result: Result) -> dict[str, dict[str, Any]]:
    """The issue's four targets for one N: value, target, met."""
    s, r, m = result["stall"], result["reopen"], result["memory"]
    return {
        "stall_ms": {"value": s["max_gap_during_ms"], "target": f"<= {STALL_TARGET_MS}",
                     "met": s["max_gap_during_ms"] <= STALL_TARGET_MS},
        "throughput_ratio": {"value": s["throughput_ratio"], "target": f">= {THROUGHPUT_TARGET}",
                             "met": s["throughput_ratio"] >= THROUGHPUT_TARGET},
        "memory_ratio": {"value": m["memory_ratio"], "target": f"<= {MEMORY_TARGET}",
                         "met": m["memory_ratio"] <= MEMORY_TARGET},
        "reopen_ratio": {"value": r["ratio"], "target": f"<= {REOPEN_TARGET}",
                         "met": r["ratio"] <= REOPEN_TARGET},
    }


def growth(results: list[Result]) -> dict[str, dict[str, float]]:
    """Each row's figure at N_k over N_(k-1), keyed ``"N_(k-1)->N_k"``."""
    out: dict[str, dict[str, float]] = {}
    for prev, cur in pairwise(results):
        key = f"{prev['streams']}->{cur['streams']}"
        out[key] = {}
        for label, path, _fmt, _t in ROWS:
            a, b = pick(prev, path), pick(cur, path)
            out[key][label] = round(b / a, 3) if a else float("nan")
    return out


def print_table(report: Result) -> None:
    results: list[Result] = report["results"]
    ns = [r["streams"] for r in results]
    keys = list(report["growth"])
    head = ["figure", *(f"N={n:,}" for n in ns), *(f"x {k}" for k in keys), "target"]
    rows = [head]
    for label, path, fmt, target in ROWS:
        cells = [label, *(fmt.format(pick(r, path)) for r in results)]
        cells += [f"{report['growth'][k][label]:.2f}" for k in keys]
        rows.append([*cells, target])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for j, row in enumerate(rows):
        print("  ".join(c.ljust(widths[i]) if i in (0, len(row) - 1) else c.rjust(widths[i])
                        for i, c in enumerate(row)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    print()
    for r in results:
        t = r["targets"]
        verdicts = ", ".join(f"{k} {v['value']:.2f} ({v['target']}): "
                             f"{'MET' if v['met'] else 'MISSED'}" for k, v in t.items())
        print(f"N={r['streams']:,} targets: {verdicts}")
        if r["stall"]["before_window_short"]:
            print(f"  note: the window before the snapshot was {r['stall']['before_window_s']:.2f}"
                  f" s, shorter than the snapshot ({r['stall']['snapshot_s']:.2f} s)")
    print(f"\ntotal {report['wall_s']:.0f} s; written to {LATEST_DIR / 'scale.json'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, nargs="+", help="N values (default 100k 1M)")
    ap.add_argument("--quick", action="store_true", help="N in 100k, 300k; 3 reopen rounds")
    ap.add_argument("--rounds", type=int, help="reopen rounds per N (default 5, quick 3)")
    ap.add_argument("--dir", default="/tmp", help="parent of the scratch directory")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--phase-args", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.phase:  # a child: one phase, one JSON line
        print(json.dumps(PHASES[args.phase](json.loads(args.phase_args))))
        return

    ns = args.streams or list(QUICK_STREAMS if args.quick else DEFAULT_STREAMS)
    rounds = args.rounds or (3 if args.quick else 5)
    parent = Path(tempfile.mkdtemp(prefix="engine-scale-", dir=args.dir))
    t0 = time.perf_counter()
    results: list[Result] = []
    try:
        for n in ns:
            res = measure(n, parent, rounds, args.keep)
            res["write"]["snapshot"]["mib"] = res["write"]["snapshot"]["bytes"] / 2**20
            res["targets"] = targets(res)
            results.append(res)
    finally:
        if args.keep:
            log(f"kept {parent}")
        else:
            shutil.rmtree(parent, ignore_errors=True)
    report: Result = {
        "streams": ns, "payload_bytes": 100, "events_per_tx": EVENTS_PER_TX, "sync": "none",
        "reopen_rounds": rounds, "engine": engine.__file__, "machine": machine_info(),
        "results": results, "growth": growth(results), "wall_s": time.perf_counter() - t0,
    }
    LATEST_DIR.mkdir(parents=True, exist_ok=True)
    (LATEST_DIR / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
