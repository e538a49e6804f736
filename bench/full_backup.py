"""Full backup and restore throughput, RTO, and the cost of the retry layer.

Usage::

    python bench/full_backup.py [--txs N] [--quick] [--rounds R] [--no-s3] [--json]

Builds one database of ``--txs`` single-event transactions (default 1,000,000;
``--quick`` 100,000) over 200,000 streams of 200-byte values, then, per target (a
file target on the local disk, and a SeaweedFS server on loopback unless
``--no-s3``), in ``--rounds`` alternating rounds (medians reported):

1. raw: ``Target.put_file`` (obstore multipart, 4 at once) and ``Target.get_file``
   of the very snapshot file the backup uploads: the baseline;
2. ``backup_full`` of the open database (a fresh snapshot, then parts put, read
   back and checked, manifest last): throughput of the upload (``upload_seconds``)
   and end to end (with the snapshot), as a ratio to raw put;
3. ``restore_full`` into a new directory: throughput of the download (parts fetched
   4 at once, sizes and xxh64s checked, written, fsynced: ``download_seconds``) and
   of the whole restore (plus the snapshot's own checks, building the log, opening
   the result) as ratios to raw get; the whole restore's time is the RTO;
4. the retry layer's cost when nothing fails: ``backup_full`` to the file target with
   ``engine.backup.full.call`` replaced by a plain call (and the reads' retrying
   wrapper by the bare target), alternating with the real thing.

Writes ``bench/results/latest/full_backup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ only (benchlib)
from benchlib import LATEST_DIR, REPO_ROOT, import_engine

engine = import_engine()
from engine.backup import full as full_mod  # noqa: E402
from engine.backup.targets import open_target  # noqa: E402

MB = 1 << 20


def build(path: str, txs: int) -> None:
    with engine.open(path, sync="none") as db:
        for i in range(txs):  # incompressible values: the snapshot is ~45 MB
            db.append(f"s{i % 200_000}", "e", os.urandom(200))


def _fresh(spec: Any, base: str, n: int) -> Any:
    if isinstance(spec, str):
        return f"{spec}/{base}-{n}"
    return spec.__class__(**{**spec.__dict__, "url": f"{spec.url}/{base}-{n}"})


def bench_target(db: Any, name: str, spec: Any, rounds: int, work: str) -> dict[str, Any]:
    raw_put, raw_get, up, e2e, rest, down, sizes = [], [], [], [], [], [], []
    for r in range(rounds):
        url = _fresh(spec, f"{name}-{os.getpid()}", r)
        target = open_target(url)
        info = db.backup_full(url)  # first, so raw reuses the same (cached) file
        snap = os.path.join(db.path, "snapshots", f"{info.epoch}-{info.tx_id}.snap")
        up.append(info.upload_seconds)
        e2e.append(info.seconds)
        sizes.append(info.bytes)
        t = time.perf_counter()
        target.put_file("raw/snapshot", snap)
        raw_put.append(time.perf_counter() - t)
        dest = os.path.join(work, f"raw-{name}-{r}")
        t = time.perf_counter()
        target.get_file("raw/snapshot", dest)
        raw_get.append(time.perf_counter() - t)
        os.remove(dest)
        out = os.path.join(work, f"restored-{name}-{r}")
        rep = full_mod.restore_full(url, out, backup=info.id)
        rest.append(rep.seconds)
        down.append(rep.download_seconds)
        shutil.rmtree(out)
    size = statistics.median(sizes)
    m = {k: statistics.median(v) for k, v in
         (("raw_put", raw_put), ("raw_get", raw_get), ("upload", up), ("backup", e2e),
          ("restore_download", down), ("restore", rest))}
    return {"bytes": int(size), "seconds": {k: round(v, 4) for k, v in m.items()},
            "MB_per_s": {k: round(size / MB / v, 1) for k, v in m.items()},
            "ratio_backup_upload_to_raw_put": round(m["raw_put"] / m["upload"], 3),
            "ratio_backup_end_to_end_to_raw_put": round(m["raw_put"] / m["backup"], 3),
            "ratio_restore_download_to_raw_get": round(m["raw_get"] / m["restore_download"],
                                                       3),
            "ratio_restore_end_to_end_to_raw_get": round(m["raw_get"] / m["restore"], 3),
            "rto_seconds": round(m["restore"], 3)}


def retry_cost(db: Any, base: str, rounds: int) -> dict[str, Any]:
    real_call, real_rt = full_mod.call, full_mod.RetryingTarget

    def bare_call(policy: Any, stats: Any, what: str, fn: Any, **kw: Any) -> Any:
        return fn()

    def bare_target(inner: Any, policy: Any, stats: Any) -> Any:
        inner.policy = policy  # restore reads .policy; unused here
        return inner

    with_layer, without = [], []
    for r in range(2 * rounds):
        url = f"{base}/retrycost-{r}"
        bare = r % 4 in (1, 2)  # ABBA order: drift hits both alike
        if bare:
            full_mod.call, full_mod.RetryingTarget = bare_call, bare_target  # type: ignore
        try:
            info = db.backup_full(url)
        finally:
            full_mod.call, full_mod.RetryingTarget = real_call, real_rt
        (without if bare else with_layer).append(info.upload_seconds)
    a, b = statistics.median(with_layer), statistics.median(without)
    # the layer's own cost per call, measured alone, times the calls of one backup
    stats = full_mod.RetryStats("backup")
    policy = full_mod.RetryPolicy()
    n, noop = 20_000, int
    t = time.perf_counter()
    for _ in range(n):
        real_call(policy, stats, "x", noop)
    per_call = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for _ in range(n):
        noop()
    per_call -= (time.perf_counter() - t) / n
    calls = info.parts + 4  # parts, the listing, the intent, the manifest
    return {"rounds": len(with_layer), "with_retry_layer_s": round(a, 4),
            "without_s": round(b, 4), "overhead_percent": round((a - b) / b * 100, 2),
            "per_call_us": round(per_call * 1e6, 2), "calls_per_backup": calls,
            "overhead_percent_from_per_call": round(per_call * calls / b * 100, 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--txs", type=int, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    txs = args.txs or (100_000 if args.quick else 1_000_000)
    work = tempfile.mkdtemp(prefix="bench-full-")
    result: dict[str, Any] = {"txs": txs, "rounds": args.rounds}
    server = None
    try:
        path = os.path.join(work, "db")
        t = time.perf_counter()
        build(path, txs)
        result["build_seconds"] = round(time.perf_counter() - t, 1)
        targets: dict[str, Any] = {"file": f"file://{work}/target"}
        if not args.no_s3:
            sys.path.insert(0, str(REPO_ROOT))
            from tests.support.seaweed import start_seaweed
            server = start_seaweed(Path(work) / "seaweed")
            targets["s3"] = server.options("bench")
        with engine.open(path, create=False, sync="none") as db:
            for name, spec in targets.items():
                result[name] = bench_target(db, name, spec, args.rounds, work)
            result["retry_layer"] = retry_cost(db, f"file://{work}/target",
                                               max(args.rounds, 15))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    LATEST_DIR.mkdir(parents=True, exist_ok=True)
    (LATEST_DIR / "full_backup.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
