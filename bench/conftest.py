"""Shared fixtures and the ratio report for the core benchmarks (bench/test_bench_*.py).

Every benchmark here is a pair (or triple): the engine and the alternative it must
beat, measured in the same process and put in one pytest-benchmark group. Each test
records its timing with :func:`record`; at the end of the session the ratios
(engine throughput / alternative throughput, i.e. alternative time / engine time,
from the medians) are printed and written to ``bench/results/latest/core_ratios.json``
(git-ignored; the committed reference is ``bench/results/reference/core_ratios.json``,
updated only by copying a run's file there, see bench/README.md).

The 300k-stream fixtures are built once per session and only when a benchmark runs:
under the default ``--benchmark-skip`` pytest-benchmark marks these tests skipped at
collection, so no fixture is set up and plain ``pytest`` stays fast.

``benchlib`` is imported before ``engine`` (import sections: third-party before
first-party), so the engine measured is the installed one (``benchlib.import_engine``);
the report header names its location.
"""

from __future__ import annotations

import json
import pickle
from typing import Any

import lmdb
import pytest
from benchlib import (
    EVENTS_PER_TX,
    LATEST_DIR,
    REOPEN_STREAMS,
    REOPEN_TAIL_TXS,
    RESULTS,
    ReopenFixture,
    SnapshotFixture,
    build_state_db,
    machine_info,
    make_payloads,
    ratios,
    raw_record,
    stream_name,
)

import engine


def pytest_report_header(config: pytest.Config) -> str | None:
    if not config.getoption("benchmark_only", default=False):
        return None
    return f"engine under test: {engine.__file__}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    report = ratios()
    tr = terminalreporter
    tr.section("engine vs alternatives: engine throughput / alternative (medians; min rounds)")
    for group, body in report.items():
        for name, r in body["ratios"].items():
            verdict = {True: "MET", False: "MISSED", None: "-"}[r["met"]]
            tr.write_line(
                f"{group:15s} {name:52s} {r['ratio']:6.3f}x (min {r['ratio_min']:6.3f}x) "
                f"{verdict:6s} {r['meaning']}"
            )
    LATEST_DIR.mkdir(parents=True, exist_ok=True)
    path = LATEST_DIR / "core_ratios.json"
    payload = {"workloads": report, "machine": machine_info()}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    tr.write_line(f"ratios written to {path}")


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def reopen_fixture(tmp_path_factory: pytest.TempPathFactory) -> ReopenFixture:
    root = tmp_path_factory.mktemp("reopen")
    streams = [stream_name(i) for i in range(REOPEN_STREAMS)]
    payloads = make_payloads(4096, seed=2)
    db_path = str(root / "db")
    state = build_state_db(db_path, streams, payloads, REOPEN_TAIL_TXS)
    # Pickle a state whose values are distinct objects, as any loaded state's are:
    # the fixture's values share 4096 payload objects, which pickle would memoize,
    # and pickle.loads would then build 4096 bytes objects instead of 300k.
    pickled = pickle.dumps({s: (v, bytes(bytearray(d))) for s, (v, d) in state.items()},
                           protocol=pickle.HIGHEST_PROTOCOL)

    raw_path = str(root / "raw")
    env = lmdb.open(raw_path, map_size=1 << 30, sync=False, metasync=False)
    value_bytes = 0
    with env.begin(write=True) as txn:
        for t in range(REOPEN_TAIL_TXS):
            base = t * EVENTS_PER_TX
            value = b"".join(
                raw_record(
                    streams[(base + j) % REOPEN_STREAMS].encode(),
                    b"deposited",
                    payloads[(base + j + 7) % len(payloads)],
                )
                for j in range(EVENTS_PER_TX)
            )
            value_bytes = len(value)
            txn.put((t + 1).to_bytes(8, "big"), value, append=True)
    env.sync(True)
    env.close()
    return ReopenFixture(db_path, state, pickled, raw_path, REOPEN_TAIL_TXS, value_bytes)


@pytest.fixture(scope="session")
def snapshot_fixture(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("snapshot")
    streams = [stream_name(i) for i in range(REOPEN_STREAMS)]
    payloads = make_payloads(4096, seed=3)
    state = build_state_db(str(root / "db"), streams, payloads, tail_txs=0)
    db = engine.open(str(root / "db"), sync="none")
    try:
        yield SnapshotFixture(db, state, root)
    finally:
        db.close()
