"""Crash test: SIGKILL a committing writer at random moments, then check the log.

Each cycle starts a writer process on the same directory (continuing the
database), lets it commit for a random while (sync="commit", background
snapshots on), and kills it. The writer prints each tx id after its commit
returned: every printed tx must be in the log afterwards, whole. Payloads are a
deterministic function of the tx id, so every tx in the log (acknowledged or
not) can be checked event by event.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import engine
from engine import layout
from engine.snapshot import list_snapshots, load_snapshot

REPO = str(Path(__file__).resolve().parents[2])
CYCLES = int(os.environ.get("ENGINE_CRASH_CYCLES", "50"))
SNAPSHOT_EVERY = 25
NSTREAMS = 211

SPEC = f"""
def spec(t):
    n = 1 if t % 3 == 0 else 1 + (t * 7919) % 6
    out = []
    for i in range(n):
        s = "s%d" % ((t * 31 + i * 17) % {NSTREAMS})
        typ = "delete" if (t + i) % 11 == 0 else "t%d" % i
        data = ("tx%d/ev%d/" % (t, i)).encode() * (1 + (t + i) % 7)
        out.append((s, typ, data))
    return out
"""
_ns: dict = {}
exec(SPEC, _ns)
spec = _ns["spec"]

WRITER = SPEC + f"""
import sys
import engine

db = engine.open(sys.argv[1], sync="commit", snapshot_every={SNAPSHOT_EVERY}, keep_snapshots=2)
out = sys.stdout
while True:
    t = db.position.tx_id + 1
    evs = spec(t)
    if len(evs) == 1:
        got = db.append(*evs[0])
    else:
        with db.transaction() as tx:
            if t % 2:
                tx.extend(evs)
            else:
                for e in evs:
                    tx.append(*e)
        got = tx.tx_id
    if got != t:
        sys.stderr.write("tx id %r, expected %d\\n" % (got, t))
        sys.exit(3)
    out.write("%d\\n" % got)
    out.flush()
"""


def _fold(txs, upto=None):
    state: dict[str, tuple[bytes | None, int]] = {}
    for tx in txs:
        if upto is not None and tx.tx_id > upto:
            break
        for e in tx.events:
            state[e.stream] = (None if e.type == "delete" else e.data, e.version)
    return state


def _check_tx(tx) -> None:
    want = spec(tx.tx_id)
    got = [(e.stream, e.type, e.data) for e in tx.events]
    assert got == want, f"tx {tx.tx_id} differs from what the writer wrote"


def _open_quietly(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", engine.EngineWarning)
        return engine.open(path)


@pytest.mark.slow
def test_sigkill_during_commits_loses_no_acknowledged_tx(tmp_path):
    path = str(tmp_path / "db")
    rng = random.Random(int(os.environ.get("ENGINE_CRASH_SEED", "20240601")))
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    last = 0                      # last tx id verified in the log
    position = 0                  # last event position verified
    state: dict[str, tuple[bytes | None, int]] = {}   # fold of everything verified
    acked_total = 0
    for cycle in range(CYCLES):
        out_path = tmp_path / f"out-{cycle}.txt"
        err_path = tmp_path / f"err-{cycle}.txt"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=out,
                                    stderr=err, env=env, cwd=REPO)
            time.sleep(rng.uniform(0.05, 0.7))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL, (
            f"cycle {cycle}: writer exited by itself ({proc.returncode}): "
            + err_path.read_text())
        text = out_path.read_text()
        lines = text.split("\n")[:-1]  # a torn last line was never acknowledged
        acked = [int(x) for x in lines]
        # the writer continued the database exactly where the last cycle ended
        assert acked == list(range(last + 1, last + 1 + len(acked))), f"cycle {cycle}"
        acked_total += len(acked)

        db = _open_quietly(path)
        try:
            now = db.position.tx_id
            floor = acked[-1] if acked else last
            # every acknowledged tx is there; at most one more committed unacknowledged
            assert floor <= now <= floor + 1, f"cycle {cycle}: log ends at {now}, acked {floor}"
            new = list(db.read_log(last + 1)) if now > last else []
            assert [t.tx_id for t in new] == list(range(last + 1, now + 1))
            for tx in new:
                _check_tx(tx)
                assert tx.epoch == 1
                for e in tx.events:
                    position += 1
                    assert e.position == position
                    prev = state.get(e.stream, (None, 0))[1]
                    assert e.version == prev + 1, (tx.tx_id, e.stream)
                    state[e.stream] = (None if e.type == "delete" else e.data, e.version)
            for i in range(NSTREAMS):
                s = f"s{i}"
                assert (db.get(s), db.version(s)) == state.get(s, (None, 0)), (cycle, s)
            last = now
        finally:
            db.close()

    assert acked_total > 0
    # final full check: the whole log, state as a fold of it, streams, snapshots
    db = _open_quietly(path)
    try:
        txs = list(db.read_log())
        assert [t.tx_id for t in txs] == list(range(1, last + 1))
        for tx in txs:
            _check_tx(tx)
        events = [e for t in txs for e in t.events]
        assert [e.position for e in events] == list(range(1, len(events) + 1))
        assert _fold(txs) == state
        for s in {e.stream for e in events}:
            assert list(db.read_stream(s)) == [e for e in events if e.stream == s]
        snaps = list_snapshots(os.path.join(path, layout.SNAP_SUBDIR))
        if last >= SNAPSHOT_EVERY * 2:
            assert snaps, "no background snapshot was ever written"
        for pos, spath in snaps:
            loaded = load_snapshot(spath)
            assert loaded.header.db_id == db.db_id
            want = _fold(txs, pos.tx_id)
            assert {k: (v[1], v[0]) for k, v in loaded.state.items()} == want, spath
    finally:
        db.close()
