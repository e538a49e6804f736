"""engine-admin against a live process: through its admin socket when it has one (the
same output as on a closed database), and a clear refusal naming the pid when not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import engine

REPO = str(Path(__file__).resolve().parents[2])
ADMIN = [sys.executable, "-m", "engine.cli"]

HOLDER = """
import sys, time
import engine
kw = {"admin_socket": sys.argv[2] == "1"}
if len(sys.argv) > 3:
    kw["backup"] = sys.argv[3]
db = engine.open(sys.argv[1], **kw)
print("ready", flush=True)
i = 0
while True:  # keeps writing while the operator asks
    i += 1
    db.append("s%d" % (i % 5), "e", b"%d" % i)
    time.sleep(0.002)
"""


def _admin(*args: str) -> tuple[int, dict]:
    p = subprocess.run([*ADMIN, *args, "--json"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": REPO})
    return p.returncode, json.loads(p.stdout)


@pytest.fixture
def holder(tmp_path):  # type: ignore[no-untyped-def]
    procs = []

    def start(socket: bool, backup: str | None = None) -> tuple[str, subprocess.Popen[str]]:
        path = str(tmp_path / "db")
        args = [sys.executable, "-c", HOLDER, path, "1" if socket else "0"]
        if backup:
            args.append(backup)
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": REPO})
        procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        time.sleep(0.1)
        return path, p

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def test_status_snapshot_and_backup_go_through_the_socket(holder, tmp_path):
    url = f"file://{tmp_path}/target"
    path, proc = holder(True, url)
    code, st = _admin("status", path)
    assert code == 0 and st["live"] is True and st["pid"] == proc.pid
    assert st["verdict"] == "ok" and st["log"]["last_tx"] > 0
    code, snap = _admin("snapshot", path)
    assert code == 0 and snap["tx_id"] > 0 and os.path.exists(snap["path"])
    code, fl = _admin("backup", "flush", path)
    assert code == 0 and fl["flushed_through_tx"] >= snap["tx_id"]
    code, bs = _admin("backup", "status", path)
    assert code == 0 and bs["state"] == "running" and bs["checkpoint_tx"] >= fl[
        "flushed_through_tx"]
    proc.terminate()
    proc.wait(10)
    # the same commands on the closed database print the same keys
    code, closed = _admin("status", path)
    assert code == 0 and set(st) >= set(closed)
    assert {k: closed[k] for k in ("db_id", "epoch")} == {k: st[k] for k in ("db_id", "epoch")}
    code, closed_bs = _admin("backup", "status", path)
    common = {"ok", "path", "target", "epoch", "last_tx", "state", "checkpoint_tx", "lag_txs",
              "lag_seconds"}
    assert common <= set(closed_bs) and common <= set(bs)


def test_without_a_socket_the_error_names_the_pid_and_the_fix(holder):
    path, proc = holder(False)
    for cmd in (["status"], ["snapshot"], ["backup", "status"], ["backup", "flush"]):
        code, err = _admin(*cmd, path)
        assert code == 1 and err["error"] == "DatabaseLockedError", (cmd, err)
        assert str(proc.pid) in err["message"] and "admin_socket=True" in err["message"]


def test_the_text_output_is_the_same_either_way(holder, tmp_path):
    path, proc = holder(True)
    p = subprocess.run([*ADMIN, "status", path], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": REPO})
    assert p.returncode == 0 and "ok" in p.stdout and f"pid {proc.pid}" in p.stdout
    proc.terminate()
    proc.wait(10)
    p2 = subprocess.run([*ADMIN, "status", path], capture_output=True, text=True, timeout=60,
                        env={**os.environ, "PYTHONPATH": REPO})
    assert p2.returncode == 0
    first = [ln.split()[0] for ln in p.stdout.splitlines()[1:4]]
    assert first == [ln.split()[0] for ln in p2.stdout.splitlines()[1:4]]  # db_id, log, ...


def test_a_live_database_is_unharmed_by_the_cli(holder):
    path, proc = holder(True)
    for _ in range(5):
        _admin("status", path)
        _admin("snapshot", path)
    proc.terminate()
    proc.wait(10)
    with engine.open(path) as db:
        n = db.position.tx_id
        assert n > 0 and sum(db.version(f"s{i}") for i in range(5)) == n
