"""Chaos: at random moments of a writing workload, lose, empty, gap or swap the log.

Each cycle continues the same directory (so epochs pile up: 1, 2, 3, ...), writes a
random workload with a snapshot somewhere in it, then injects one fault and checks
the whole contract: open refuses with the right error, recovery succeeds, the state
equals the snapshot's, nothing from the old epoch past the fork is visible, and new
appends continue from S+1. ENGINE_CHAOS_CYCLES (default 30) sets the cycle count.
"""

from __future__ import annotations

import os
import random
import shutil

import pytest

import engine
from engine.lock import DirLock
from engine.ops.recover import recover_new_epoch

from .helpers import admin_json, delete_log, drop_first_records, empty_log, log_dir, state_of

CYCLES = int(os.environ.get("ENGINE_CHAOS_CYCLES", "30"))
EXPECTED = {"delete": engine.LogMissingError, "empty": engine.LogMissingError,
            "stale": engine.LogGapError, "gap": engine.LogGapError}


def _work(db: engine.Database, rng: random.Random, n: int, tag: str) -> None:
    for _ in range(n):
        with db.transaction() as tx:
            for _ in range(rng.randint(1, 4)):
                s = f"s{rng.randint(0, 12)}"
                kind = "delete" if rng.random() < 0.1 else "set"
                tx.append(s, kind, f"{tag}:{db.position.tx_id + 1}".encode())


@pytest.mark.slow
def test_chaos_log_loss_and_recovery(tmp_path):
    seed = int(os.environ.get("ENGINE_CHAOS_SEED", "20261122"))
    rng = random.Random(seed)
    path = str(tmp_path / "db")
    stale = str(tmp_path / "stale")
    epoch = 1
    faults_seen: dict[str, int] = {}
    for cycle in range(CYCLES):
        db = engine.open(path, sync="none", keep_snapshots=2)
        assert db.position.epoch == epoch
        _work(db, rng, rng.randint(0, 6), f"pre{cycle}")
        have_stale = False
        if rng.random() < 0.5:
            db.close()  # copy the log at this moment: a stale copy ends before the snapshot
            shutil.rmtree(stale, ignore_errors=True)
            shutil.copytree(log_dir(path), stale)
            have_stale = True
            db = engine.open(path, sync="none", keep_snapshots=2)
        _work(db, rng, rng.randint(1, 6), f"mid{cycle}")
        snap = db.snapshot()
        at_snapshot = state_of(db)
        s_tx = snap.tx_id
        tail = rng.randint(0, 6)
        _work(db, rng, tail, f"tail{cycle}")
        db.close()

        choices = ["delete", "empty"] + (["stale"] if have_stale else []) + \
                  (["gap"] if tail >= 2 else [])
        fault = rng.choice(choices)
        faults_seen[fault] = faults_seen.get(fault, 0) + 1
        if fault == "delete":
            delete_log(path)
        elif fault == "empty":
            empty_log(path, snap_db_id(path))
        elif fault == "stale":
            shutil.rmtree(log_dir(path))
            shutil.copytree(stale, log_dir(path))
        else:
            drop_first_records(path, s_tx + 1)  # log starts at S+2: S+1 missing

        with pytest.raises(EXPECTED[fault]) as ei:
            engine.open(path)
        assert f"tx {s_tx}" in str(ei.value) and "recover --new-epoch" in str(ei.value)

        if cycle % 5 == 0:  # through the CLI sometimes, in-process otherwise
            rc, rep = admin_json("recover", "--new-epoch", path)
            assert rc == 0, rep
            assert rep["new_epoch"] == epoch + 1
        else:
            lock = DirLock(path)
            try:
                rep_o = recover_new_epoch(path)
            finally:
                lock.release()
            assert rep_o.new_epoch == epoch + 1 and rep_o.next_tx == s_tx + 1
        epoch += 1

        with engine.open(path, sync="none") as db:
            assert db.position == engine.Position(epoch, s_tx)
            assert state_of(db) == at_snapshot
            assert list(db.read_log(s_tx + 1)) == []
            for s in db.streams():   # no tx of the old epoch past the fork is visible
                assert not (db.get(s) or b"").startswith(f"tail{cycle}".encode())
            assert db.append("after", "set", f"post{cycle}".encode()) == s_tx + 1
            (t,) = list(db.read_log(s_tx + 1))
            assert t.epoch == epoch
            assert db.epoch_history[-1] .first_tx == s_tx + 1
            assert [h.epoch for h in db.epoch_history] == list(range(1, epoch + 1))
    assert len(faults_seen) >= 3 or CYCLES < 10, faults_seen


def snap_db_id(path: str) -> str:
    from engine.snapshot import list_snapshots, read_header

    return read_header(list_snapshots(os.path.join(path, "snapshots"))[0][1]).db_id
