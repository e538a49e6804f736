"""The backup workloads: the engine's log backup against Litestream, and its own costs.

Registered in workloads.py (``WORKLOADS``); they write rows like the other workloads'
(``account-*`` streams, ``deposited`` events, 100-byte payloads; those that ship
volume use distinct payloads, see ``PAYLOAD_POOL``), the same rows for every system.
The engine runs with ``backup="file://<dir>"`` at its default ``BackupOptions`` (0.2 s
interval) and ``sync="none"``; Litestream replicates an SQLite WAL database
(``synchronous=NORMAL``, the ``sqlite`` system's) to a file replica at its defaults
(1 s sync interval). Both replicas are local directories on the same disk.

``backup_lag`` (engine vs litestream)
    Steady writes: one event per commit, one commit every ``lag_period_seconds``
    (10 ms; the writer sleeps to a fixed schedule, it never bursts to catch up) for
    ``lag_seconds``, per system per round, rounds rotated, a fresh database and
    replica per round. Replication is first given time to start and to hold the
    (empty) database (``wait_ready``). A writer records, for each commit, its mark
    (engine: tx id; SQLite: rowid, one row per commit in a fresh table) and
    ``time.monotonic()`` right after the commit returns. A sampler thread polls what
    the replica holds every ``lag_poll_seconds`` (5 ms) and records each change with
    its time: the engine's ``db.backup.status().checkpoint_tx`` (a tx is shipped once
    durable and verified in the target); for Litestream, the newest TXID among the
    names in ``<replica>/ltx/0/`` (each LTX file is written as ``.ltx.tmp`` and renamed
    into place, so a listed name is a complete file). An LTX TXID counts Litestream
    syncs, not SQLite commits, so after the run each observed TXID is *resolved* to
    the rows it holds by ``litestream restore -txid TXID`` into a scratch file and
    ``max(rowid)`` (outside the timing; the replica is only read). A commit's lag is
    the first observation at which the replica holds its mark, minus its commit
    time: exact up to the poll interval (so over-estimated by at most 5 ms, for both
    systems alike). No flush or sync is ever forced; after the last commit the run
    waits, polling, until the replica holds it, so every commit has a lag. Reported:
    median, p99 (nearest rank) and max over all commits of all rounds;
    ``ops_per_s`` is 1 / median lag, so ``engine_speedup`` is Litestream's median
    lag over the engine's. Target: engine median <= 0.25 s.
``restore`` (engine vs litestream)
    One database per system holding ``restore_events`` events written in
    transactions of ``restore_tx_events`` (the same rows), replicated, then closed.
    Timed, rounds rotated, a new destination each time: the command line a user
    runs, ``engine-admin restore --from file://... DIR --json`` against ``litestream
    restore -o OUT file://...`` (each a subprocess, so each includes its program's
    start: Python and the engine's imports for the engine, a Go binary for
    Litestream). The engine's in-process ``engine.backup.restore.restore()`` is timed
    in the same turn and reported beside it. Every restore is checked (event count)
    outside the timing. ``ops_per_s`` = events restored per second. Target: the
    engine at least as fast as Litestream (``engine_speedup >= 1``). The engine's
    bytecode is compiled first, as ``pip install`` does: an editable install under
    ``PYTHONDONTWRITEBYTECODE`` (set on this project's machine) would otherwise
    compile every engine module from source on each start (~0.15 s).
``backup_flush`` (engine)
    ``db.backup.flush()`` latency, ``flush_calls`` calls per case: with nothing
    pending; right after one append (one tx pending); and under steady writes (a
    writer thread commits every 10 ms, a flush every 25 ms, so what is pending is at
    most one interval's commits). Median and p99. ``ops_per_s`` = 1 / median of the
    one-pending case. Target: <= 50 ms with nothing pending beyond one interval
    (checked on the p99 of the one-pending and steady cases).
``backup_shipping`` (engine)
    Shipping a backlog against appending it: per round, ``db.backup.pause()``, append
    ``ship_txs`` txs of ``batch_events`` events with ``sync="none"`` (timed: local
    append throughput, nothing shipping), then ``resume()`` and ``flush()`` (timed:
    until the checkpoint reaches the last tx; includes the re-observation of the
    target that every resume does). ``ops_per_s`` = events shipped per second; the
    ratio shipped/appended (from the median seconds) must be >= 1 (it keeps up).
``backup_overhead`` (engine)
    Committer throughput with the backup on against off, same run, six databases:
    txs of ``batch_events`` events with ``sync="none"`` (events/s), one-event
    commits with ``sync="none"`` and with ``sync="commit"`` (commits/s). Each round
    runs each variant's off and on blocks back to back (which one first alternates
    by round; the variants' order rotates). After each timed block of a backed-up
    database its backlog is flushed (untimed, reported: what was left and how long
    it took) so no shipping spills into the next block. Reported per variant: the
    median of the per-round (adjacent) on/off ratios, and the ratio of the median
    rates. Target: the paired median >= 0.95 ("never slows committers beyond a few
    percent").
"""

from __future__ import annotations

import math
import shutil
import statistics
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

from benchlib import make_payloads, stream_name

from .measure import populate, rotations, timed
from .sizes import Sizes
from .systems import SYSTEM_CLASSES, EngineSystem, ReplicatedSystem, open_replicated

LAG_TARGET_S = 0.25
FLUSH_TARGET_S = 0.05
OVERHEAD_TARGET = 0.95
LAG_STREAMS = 1000
# Distinct payloads the volume workloads cycle through: more than a segment holds (8 MiB,
# ~57k events), so compression sees event data, not the same 1000 payloads every tx.
PAYLOAD_POOL = 100_000


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return float(s[k])


def _target(value: float, target: float, meaning: str, *, at_most: bool) -> dict[str, Any]:
    met = value <= target if at_most else value >= target
    return {"value": value, "target": target, "met": bool(met), "meaning": meaning}


def _replicated_class(name: str) -> type[ReplicatedSystem]:
    cls = SYSTEM_CLASSES[name]
    assert issubclass(cls, ReplicatedSystem), name  # systems_for checked it
    return cls


# ------------------------------------------------------------------- backup_lag


def lag_per_commit(
    commits: list[tuple[float, int]], seen: list[tuple[float, int]]
) -> tuple[list[float], int]:
    """Each commit's lag: the first time in ``seen`` (time, newest mark held, in time
    order) that holds its mark, minus its commit time; and how many were clamped at 0
    (observed held before the writer read the clock after the commit returned)."""
    out: list[float] = []
    clamped = 0
    j = 0
    held = -1
    for t_commit, mark in commits:  # marks and times both increase
        while held < mark:
            if j >= len(seen):
                raise AssertionError(f"mark {mark} never observed in the replica")
            held = max(held, seen[j][1])
            t_seen = seen[j][0]
            j += 1
        lag = t_seen - t_commit
        if lag < 0:
            clamped += 1
            lag = 0.0
        out.append(lag)
    return out, clamped


def _lag_round(name: str, where: Path, sizes: Sizes) -> dict[str, Any]:
    payloads = make_payloads(64, seed=11, size=sizes.payload_bytes)
    names = [stream_name(i) for i in range(LAG_STREAMS)]
    s = open_replicated(name, where)
    try:
        s.wait_ready(timeout=60)
        observed: list[tuple[float, int]] = []
        stop = threading.Event()
        poll = sizes.lag_poll_seconds

        def sample() -> None:
            last = None
            while not stop.is_set():
                p = s.progress()
                t = time.monotonic()
                if p != last:
                    observed.append((t, p))
                    last = p
                stop.wait(poll)

        sampler = threading.Thread(target=sample, name="lag-sampler", daemon=True)
        sampler.start()
        commits: list[tuple[float, int]] = []
        n = max(1, round(sizes.lag_seconds / sizes.lag_period_seconds))
        period = sizes.lag_period_seconds
        try:
            t0 = time.monotonic()
            for i in range(n):
                wait = t0 + i * period - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                s.append_one(names[i % LAG_STREAMS], "deposited", payloads[i % 64])
                commits.append((time.monotonic(), s.commit_mark()))
            wrote = time.monotonic() - t0
            s.wait_replicated(commits[-1][1], timeout=60)
            time.sleep(3 * poll)  # the sampler sees what wait_replicated saw
        finally:
            stop.set()
            sampler.join()
        seen = [(t, s.resolve(p)) for t, p in observed]  # after the run: may be slow
    finally:
        s.close()
    lags, clamped = lag_per_commit(commits, seen)
    return {
        "lags": lags,
        "clamped": clamped,
        "commits": n,
        "commits_per_s": n / wrote,
        "replica_steps": len({p for _t, p in observed}),
    }


def backup_lag(systems: list[str], sizes: Sizes, root: Path) -> dict[str, Any]:
    rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in systems}
    for r, order in enumerate(rotations(systems, sizes.lag_rounds)):
        for name in order:
            where = root / "backup_lag" / f"round{r}"
            rounds[name].append(_lag_round(name, where, sizes))
            shutil.rmtree(where / name, ignore_errors=True)
    out: dict[str, Any] = {}
    for name, rs in rounds.items():
        lags = [x for r in rs for x in r["lags"]]
        med = statistics.median(lags)
        round_medians = [statistics.median(r["lags"]) for r in rs]
        entry: dict[str, Any] = {
            "ops_per_s": 1.0 / med if med > 0 else math.inf,
            "ops_per_s_best": 1.0 / min(round_medians) if min(round_medians) > 0 else math.inf,
            "ops_per_round": len(rs[0]["lags"]),
            "rounds": len(rs),
            "unit": "",
            "lag_median_s": med,
            "lag_p99_s": percentile(lags, 99),
            "lag_max_s": max(lags),
            "lag_mean_s": statistics.fmean(lags),
            "lag_round_medians_s": round_medians,
            "commits": len(lags),
            "commits_per_s": statistics.median(r["commits_per_s"] for r in rs),
            "replica_steps": sum(r["replica_steps"] for r in rs),
            "clamped_to_zero": sum(r["clamped"] for r in rs),
            "poll_s": sizes.lag_poll_seconds,
            "period_s": sizes.lag_period_seconds,
        }
        entry["summary"] = (
            f"lag median {med * 1000:.0f} ms, p99 {entry['lag_p99_s'] * 1000:.0f}"
            f" ms, max {entry['lag_max_s'] * 1000:.0f} ms over {len(lags)} "
            f"commits at {entry['commits_per_s']:.0f}/s"
        )
        out[name] = entry
    if "engine" in out:
        eng = out["engine"]
        eng["targets"] = {
            "lag_median": _target(
                eng["lag_median_s"], LAG_TARGET_S, f"median lag <= {LAG_TARGET_S} s", at_most=True
            )
        }
        if "litestream" in out:
            ls = out["litestream"]
            eng["lag_ratio_vs_litestream"] = {
                "median": ls["lag_median_s"] / eng["lag_median_s"],
                "p99": ls["lag_p99_s"] / eng["lag_p99_s"],
            }
    return out


# ---------------------------------------------------------------------- restore


def restore(systems: list[str], sizes: Sizes, root: Path) -> dict[str, Any]:
    from engine.backup.restore import restore as engine_restore

    payloads = make_payloads(sizes.restore_events, seed=12, size=sizes.payload_bytes)
    names = [stream_name(i) for i in range(sizes.batch_streams)]
    n = sizes.restore_events
    events = [(names[i % len(names)], "deposited", payloads[i]) for i in range(n)]
    base = root / "restore"
    replicas: dict[str, Path] = {}
    for name in systems:  # build and replicate each database, then close it
        s = open_replicated(name, base / name)
        try:
            s.wait_ready(timeout=60)
            populate(s, events, sizes.restore_tx_events)
            s.wait_replicated(s.commit_mark(), timeout=300)
        finally:
            s.close()
        assert s.replica is not None
        replicas[name] = s.replica
    if "engine" in systems:  # an installed engine's bytecode, as pip compiles it
        import compileall

        import engine

        compileall.compile_dir(str(Path(engine.__file__).parent), quiet=1)
    classes = {n: _replicated_class(n) for n in systems}
    per_round: dict[str, list[float]] = {name: [] for name in systems}
    inprocess: list[float] = []
    cli_reported: list[float] = []
    for r, order in enumerate(rotations(systems, sizes.restore_rounds)):
        for name in order:
            cls = classes[name]
            dest = base / f"{name}-restored-{r}"
            if cls.file_suffix is not None:
                dest = dest.with_suffix(cls.file_suffix)
            reported: list[dict[str, Any]] = []

            def run(
                cls: type[ReplicatedSystem] = cls,
                src: Path = replicas[name],
                dest: Path = dest,
                reported: list[dict[str, Any]] = reported,
            ) -> None:
                reported.append(cls.restore(src, dest))

            per_round[name].append(timed(run))
            if name == "engine":  # the restore's own time, as engine-admin reports it
                cli_reported.append(float(reported[0]["seconds"]))
            assert cls.restored_events(dest) == n, (name, dest)
            if dest.is_dir():
                shutil.rmtree(dest)
            else:
                dest.unlink()
            if name == "engine":  # the same restore in process, in the same turn
                dest = base / f"engine-inprocess-{r}"
                url = replicas[name].resolve().as_uri()
                inprocess.append(timed(partial(engine_restore, url, str(dest))))
                assert cls.restored_events(dest) == n
                shutil.rmtree(dest)
    out: dict[str, Any] = {}
    for name, secs in per_round.items():
        med = statistics.median(secs)
        out[name] = {
            "ops_per_s": n / med,
            "ops_per_s_best": n / min(secs),
            "ops_per_round": n,
            "rounds": len(secs),
            "unit": "",
            "seconds_median": med,
            "events": n,
            "events_per_tx": sizes.restore_tx_events,
            "summary": f"{med:.3f} s for {n:,} events (command line)",
        }
    if "engine" in out:
        eng = out["engine"]
        ip = statistics.median(inprocess)
        eng.update(
            inprocess_seconds_median=ip,
            inprocess_ops_per_s=n / ip,
            cli_reported_seconds_median=statistics.median(cli_reported),
            cli_overhead_s=eng["seconds_median"] - statistics.median(cli_reported),
        )
        eng["summary"] += f"; restore() in process {ip:.3f} s"
        if "litestream" in out:
            ls_s = out["litestream"]["seconds_median"]
            eng["restore_ratio_vs_litestream"] = {
                "cli": ls_s / eng["seconds_median"],
                "inprocess": ls_s / ip,
            }
            eng["targets"] = {
                "restore_cli": _target(
                    ls_s / eng["seconds_median"],
                    1.0,
                    "engine-admin restore at least as fast as litestream "
                    "restore (litestream s / engine s >= 1)",
                    at_most=False,
                ),
                "restore_inprocess": _target(
                    ls_s / ip,
                    1.0,
                    "restore() in process at least as fast as litestream restore",
                    at_most=False,
                ),
            }
    return out


# ------------------------------------------------------------------ backup_flush


def _stats_ms(xs: list[float]) -> dict[str, float]:
    return {
        "median_s": statistics.median(xs),
        "p99_s": percentile(xs, 99),
        "max_s": max(xs),
        "calls": len(xs),
    }


def backup_flush(systems: list[str], sizes: Sizes, root: Path) -> dict[str, Any]:
    assert systems == ["engine"], systems
    payloads = make_payloads(64, seed=13, size=sizes.payload_bytes)
    names = [stream_name(i) for i in range(LAG_STREAMS)]
    s = open_replicated("engine", root / "backup_flush")
    assert isinstance(s, EngineSystem)
    db = s.db
    try:
        s.wait_ready(timeout=60)
        db.backup.flush()
        idle = []
        for _ in range(sizes.flush_calls):
            t0 = time.perf_counter()
            db.backup.flush()
            idle.append(time.perf_counter() - t0)
        one = []
        for i in range(sizes.flush_calls):
            db.append(names[i % LAG_STREAMS], "deposited", payloads[i % 64])
            t0 = time.perf_counter()
            db.backup.flush()
            one.append(time.perf_counter() - t0)
        steady: list[float] = []
        pending: list[int] = []
        stop = threading.Event()

        def writer() -> None:
            t0, i = time.monotonic(), 0
            while not stop.is_set():
                db.append(names[i % LAG_STREAMS], "deposited", payloads[i % 64])
                i += 1
                stop.wait(max(0.0, t0 + i * sizes.lag_period_seconds - time.monotonic()))

        w = threading.Thread(target=writer, name="flush-writer", daemon=True)
        w.start()
        try:
            time.sleep(0.3)  # past one interval: the uploader is in its steady rhythm
            for _ in range(sizes.flush_calls):
                time.sleep(0.025)
                pending.append(db.backup.status().lag_txs)
                t0 = time.perf_counter()
                db.backup.flush()
                steady.append(time.perf_counter() - t0)
        finally:
            stop.set()
            w.join()
    finally:
        s.close()
    cases = {
        "idle": _stats_ms(idle),
        "one_pending": _stats_ms(one),
        "steady_writes": {
            **_stats_ms(steady),
            "pending_txs_median": statistics.median(pending),
            "pending_txs_max": max(pending),
        },
    }
    entry: dict[str, Any] = {
        "ops_per_s": 1.0 / cases["one_pending"]["median_s"],
        "ops_per_s_best": 1.0 / min(one),
        "ops_per_round": sizes.flush_calls,
        "rounds": 1,
        "unit": "",
        "cases": cases,
        "summary": "flush median/p99: "
        + ", ".join(
            f"{k} {v['median_s'] * 1000:.2f}/{v['p99_s'] * 1000:.2f} ms" for k, v in cases.items()
        ),
        "targets": {
            f"flush_{k}_p99": _target(
                cases[k]["p99_s"],
                FLUSH_TARGET_S,
                f"flush ({k.replace('_', ' ')}) p99 <= {FLUSH_TARGET_S * 1000:.0f} ms",
                at_most=True,
            )
            for k in ("one_pending", "steady_writes")
        },
    }
    return {"engine": entry}


# --------------------------------------------------------------- backup_shipping


def _wait_state(s: EngineSystem, state: str, timeout: float = 30.0) -> None:
    t0 = time.monotonic()
    while s.db.backup.status().state != state:
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"backup never reached state {state!r}: {s.db.backup.status()}")
        time.sleep(0.002)


def backup_shipping(systems: list[str], sizes: Sizes, root: Path) -> dict[str, Any]:
    assert systems == ["engine"], systems
    payloads = make_payloads(
        max(sizes.ship_txs * sizes.batch_events, PAYLOAD_POOL), seed=14, size=sizes.payload_bytes
    )
    np = len(payloads)
    names = [stream_name(i) for i in range(sizes.batch_streams)]
    ns, be = sizes.batch_streams, sizes.batch_events
    s = open_replicated("engine", root / "backup_shipping")
    assert isinstance(s, EngineSystem)
    db = s.db
    append_s: list[float] = []
    ship_s: list[float] = []
    shipped_bytes: list[int] = []
    counter = 0
    try:
        s.wait_ready(timeout=60)
        for _ in range(sizes.ship_rounds):
            db.backup.pause()
            _wait_state(s, "paused")
            before = db.backup.status().bytes_shipped

            def append_backlog(start: int = counter) -> None:
                for t in range(sizes.ship_txs):
                    b = (start + t) * be
                    s.append_batch(
                        [
                            (names[(b + i) % ns], "deposited", payloads[(b + i) % np])
                            for i in range(be)
                        ]
                    )

            append_s.append(timed(append_backlog))
            counter += sizes.ship_txs
            last = s.commit_mark()
            t0 = time.perf_counter()
            db.backup.resume()
            got = db.backup.flush(timeout=600)
            ship_s.append(time.perf_counter() - t0)
            assert got.flushed_through_tx >= last, got
            shipped_bytes.append(db.backup.status().bytes_shipped - before)
    finally:
        s.close()
    n = sizes.ship_txs * be
    ship_med, app_med = statistics.median(ship_s), statistics.median(append_s)
    ratio = app_med / ship_med
    entry: dict[str, Any] = {
        "ops_per_s": n / ship_med,
        "ops_per_s_best": n / min(ship_s),
        "ops_per_round": n,
        "rounds": len(ship_s),
        "unit": "",
        "ship_seconds_median": ship_med,
        "append_seconds_median": app_med,
        "append_events_per_s": n / app_med,
        "ship_over_append": ratio,
        "events_per_tx": be,
        "shipped_mb_per_s": statistics.median(shipped_bytes) / ship_med / 1e6,
        "summary": (
            f"ships {n / ship_med:,.0f} events/s vs appends {n / app_med:,.0f} "
            f"events/s (sync=none): {ratio:.2f}x"
        ),
        "targets": {
            "keeps_up": _target(
                ratio,
                1.0,
                "ships a backlog at least as fast as sync='none' appends it (>= 1)",
                at_most=False,
            )
        },
    }
    return {"engine": entry}


# --------------------------------------------------------------- backup_overhead

_VARIANTS = (  # name, sync, events per commit (None: batch_events), unit
    ("none_batch", "none", None, "events"),
    ("none_single", "none", 1, "commits"),
    ("commit_single", "commit", 1, "commits"),
)


def backup_overhead(systems: list[str], sizes: Sizes, root: Path) -> dict[str, Any]:
    import engine

    assert systems == ["engine"], systems
    be = sizes.batch_events
    payloads = make_payloads(PAYLOAD_POOL, seed=15, size=sizes.payload_bytes)
    np = len(payloads)
    names = [stream_name(i) for i in range(sizes.batch_streams)]
    ns = len(names)
    count = {
        "none_batch": sizes.overhead_batch_txs,
        "none_single": sizes.overhead_single_commits,
        "commit_single": sizes.overhead_durable_commits,
    }
    dbs: dict[str, Any] = {}
    counters: dict[str, int] = {}
    per_round: dict[str, list[float]] = {}
    left: dict[str, list[int]] = {}
    drain: dict[str, list[float]] = {}
    base = root / "backup_overhead"
    try:
        for v, sync, _e, _u in _VARIANTS:
            for on in (False, True):
                key = f"{v}/{'on' if on else 'off'}"
                backup = (base / f"{v}-on.replica").resolve().as_uri() if on else None
                dbs[key] = engine.open(str(base / key.replace("/", "-")), sync=sync, backup=backup)
                dbs[key].append(names[0], "opened", payloads[0])  # warm-up
                if on:
                    dbs[key].backup.flush()
                counters[key], per_round[key], left[key], drain[key] = 0, [], [], []

        def run(key: str) -> None:
            db, c = dbs[key], counters[key]
            n = count[key.split("/")[0]]
            if key.startswith("none_batch"):
                for t in range(c, c + n):
                    b = t * be
                    with db.transaction() as tx:
                        tx.extend(
                            [
                                (names[(b + i) % ns], "deposited", payloads[(b + i) % np])
                                for i in range(be)
                            ]
                        )
            else:
                append = db.append
                for i in range(c, c + n):
                    append(names[i % ns], "deposited", payloads[i % np])
            counters[key] = c + n

        # Each round runs every variant's off and on blocks back to back (which goes
        # first alternates by round), so each pair shares the machine's state of the
        # moment: on this 2-core VM the same loop runs 20-37k commits/s from one
        # block to the next, drift that the ratio of medians over few rounds did not
        # cancel (0.79-0.90x single events where the paired A/B script measured
        # 0.92-0.97x). The target is on the median of those adjacent pairs.
        for r in range(sizes.overhead_rounds):
            for v, _sync, _e, _u in _VARIANTS[r % 3:] + _VARIANTS[:r % 3]:
                for key in ((f"{v}/off", f"{v}/on") if r % 2 == 0 else (f"{v}/on", f"{v}/off")):
                    per_round[key].append(timed(partial(run, key)))
                    if key.endswith("/on"):  # untimed: ship the backlog before the next block
                        left[key].append(dbs[key].backup.status().lag_txs)
                        t0 = time.perf_counter()
                        dbs[key].backup.flush(timeout=600)
                        drain[key].append(time.perf_counter() - t0)
    finally:
        for db in dbs.values():
            db.close()
    variants: dict[str, Any] = {}
    for v, sync, e, unit in _VARIANTS:
        ops = count[v] * (be if e is None else e)
        off, on = per_round[f"{v}/off"], per_round[f"{v}/on"]
        off_rate, on_rate = ops / statistics.median(off), ops / statistics.median(on)
        variants[v] = {
            "sync": sync,
            "events_per_commit": be if e is None else e,
            "unit": unit,
            "off_ops_per_s": off_rate,
            "on_ops_per_s": on_rate,
            "ratio_on_off": on_rate / off_rate,
            # off and on seconds of one round ran back to back: their ratio is the on/off rate
            "ratio_on_off_paired": statistics.median(a / b for a, b in zip(off, on, strict=True)),
            "ratio_on_off_best": min(off) / min(on),
            "ops_per_round": ops,
            "lag_txs_after_block_median": statistics.median(left[f"{v}/on"]),
            "drain_seconds_median": statistics.median(drain[f"{v}/on"]),
        }
    nb = variants["none_batch"]
    entry: dict[str, Any] = {
        "ops_per_s": nb["on_ops_per_s"],
        "ops_per_s_best": nb["on_ops_per_s"],
        "ops_per_round": nb["ops_per_round"],
        "rounds": sizes.overhead_rounds,
        "unit": "",
        "variants": variants,
        "summary": "backup on/off (paired: median of adjacent rounds; ratio of medians): "
        + ", ".join(
            f"{v} {r['ratio_on_off_paired']:.3f}x ({r['ratio_on_off']:.3f}x)"
            for v, r in variants.items()
        ),
        "targets": {
            f"overhead_{v}": _target(
                r["ratio_on_off_paired"],
                OVERHEAD_TARGET,
                f"{v}: throughput with backup >= {OVERHEAD_TARGET}x without",
                at_most=False,
            )
            for v, r in variants.items()
        },
    }
    return {"engine": entry}
