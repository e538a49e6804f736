"""SIGKILL a process while it ships its log, then reopen: shipping continues gap-free.

Each cycle starts a writer process (continuing the same database) that commits
without pause with a log backup to a file target (a short interval, so segments are
being written, read back and checkpointed at every moment), and kills it at a random
time. Afterwards the database is reopened with the same target and flushed: the
target must hold every committed tx exactly once, contiguous, byte-equal to the log,
whatever moment the kill hit (mid-segment upload, between upload and checkpoint,
mid-meta write).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import engine
from engine.backup.targets import open_target

from .logcheck import assert_exactly_once

REPO = str(Path(__file__).resolve().parents[2])
CYCLES = int(os.environ.get("ENGINE_BACKUP_KILL_CYCLES", "12"))

WRITER = """
import sys
import engine
from engine.backup.uploader import BackupOptions

opts = BackupOptions(target=sys.argv[2], interval_seconds=0.002, max_segment_txs=7)
db = engine.open(sys.argv[1], sync="none", backup=opts)
print("ready", flush=True)
i = 0
while True:
    i += 1
    with db.transaction() as tx:
        for j in range(1 + i % 4):
            tx.append("s%d" % ((i + j) % 13), "e", b"%d/%d" % (i, j) * (1 + i % 5))
"""


@pytest.mark.slow
def test_kill_9_while_shipping_then_reopen_continues_gap_free(tmp_path):
    path = str(tmp_path / "db")
    url = f"file://{tmp_path}/target"
    rng = random.Random(20261201)
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    shipped_before = 0
    for _cycle in range(CYCLES):
        p = subprocess.Popen([sys.executable, "-c", WRITER, path, url], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.strip() == "ready", p.stderr.read() if p.stderr else line
        time.sleep(rng.uniform(0.05, 0.4))
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        if p.stdout:
            p.stdout.close()
        if p.stderr:
            p.stderr.close()
    with engine.open(path, backup=url) as db:
        r = db.backup.flush(timeout=30)
        assert r.flushed_through_tx == db.position.tx_id > shipped_before
        assert_exactly_once(open_target(url), db)
        assert db.backup.status().state == "running"
