"""engine-admin commands: output, --json, exit codes, and what they detect."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import lmdb
import pytest

import engine
from engine.log import tx_key
from tests.support.cli import run, run_json


@pytest.fixture
def db_dir(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        for i in range(20):
            db.append(f"s{i % 4}", "set", f"v{i}".encode())
        db.snapshot()
        db.append("s0", "delete", b"")
        db.append("bin", "set", b"\x00\xff")
    return path


def test_demo_writes_snapshots_reopens_and_reports(tmp_path):
    path = str(tmp_path / "demo")
    code, rep = run_json("demo", path, "--events", "500")
    assert code == 0 and rep["ok"]
    assert rep["events_written"] == 503
    assert rep["sample_state"]["account-0"] == "closed"
    assert rep["sample_state"]["account-1"] is None
    assert rep["sample_state"]["account-2"] == "tail event after the snapshot"
    with engine.open(path) as db:
        assert db.position.tx_id == rep["position"]["tx_id"]
        assert db.version("account-0") == rep["sample_versions"]["account-0"]
    assert os.path.isfile(rep["snapshot"])


def test_demo_refuses_a_non_empty_directory(db_dir):
    code, rep = run_json("demo", db_dir)
    assert code == 1 and "not empty" in rep["message"]
    with engine.open(db_dir) as db:
        assert db.version("account-0") == 0  # nothing was written
    code, rep = run_json("demo", db_dir, "--force", "--events", "100")
    assert code == 0 and rep["ok"]


def test_demo_console_script_runs_in_a_subprocess(tmp_path):
    p = subprocess.run([sys.executable, "-m", "engine.cli", "demo", str(tmp_path / "d"),
                        "--events", "200"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "engine demo" in p.stdout and "reopened" in p.stdout


def test_status_of_healthy_database(db_dir):
    code, rep = run_json("status", db_dir)
    assert code == 0 and rep["verdict"] == "ok"
    assert rep["log"]["last_tx"] == 22 and rep["epoch"] == 1
    assert [s["tx_id"] for s in rep["snapshots"]] == [20]
    code, out = run("status", db_dir)
    assert code == 0 and "txs 1..22" in out


def test_status_reports_corrupt_snapshot_as_degraded(db_dir):
    snap = os.path.join(db_dir, "snapshots", "1-20.snap")
    with open(snap, "r+b") as f:
        f.seek(20)
        f.write(b"XX")
    code, rep = run_json("status", db_dir)
    assert code == 0 and rep["verdict"] == "degraded"
    assert rep["snapshots"][0]["ok"] is False


def test_status_refuses_while_open_elsewhere(db_dir):
    with engine.open(db_dir):
        code, rep = run_json("status", db_dir)
    assert code == 1 and rep["error"] == "DatabaseLockedError"
    assert str(os.getpid()) in rep["message"]


def test_status_of_missing_directory_fails_clearly(tmp_path):
    code, rep = run_json("status", str(tmp_path / "nope"))
    assert code == 1 and "not a directory" in rep["message"]


def test_verify_ok(db_dir):
    code, rep = run_json("verify", db_dir)
    assert code == 0 and rep["ok"] and rep["log_records"] == 22 and rep["snapshots_ok"] == 1


def test_verify_names_a_corrupt_log_record(db_dir):
    env = lmdb.open(os.path.join(db_dir, "log"), max_dbs=4)
    txdb = env.open_db()
    with env.begin(write=True) as txn:
        rec = bytearray(txn.get(tx_key(7), db=txdb))
        rec[60] ^= 0x01
        txn.put(tx_key(7), bytes(rec), db=txdb)
    env.close()
    code, rep = run_json("verify", db_dir)
    assert code == 1 and not rep["ok"]
    assert any("tx 7" in p and "checksum" in p for p in rep["problems"])
    code, out = run("verify", db_dir)
    assert code == 1 and "tx 7" in out


def test_verify_names_a_corrupt_snapshot(db_dir):
    snap = os.path.join(db_dir, "snapshots", "1-20.snap")
    with open(snap, "r+b") as f:
        f.truncate(os.path.getsize(snap) - 3)
    code, rep = run_json("verify", db_dir)
    assert code == 1 and any("1-20.snap" in p for p in rep["problems"])


def test_verify_detects_a_gap_in_the_log(db_dir):
    env = lmdb.open(os.path.join(db_dir, "log"), max_dbs=4)
    txdb = env.open_db()
    with env.begin(write=True) as txn:
        txn.delete(tx_key(10), db=txdb)
    env.close()
    code, rep = run_json("verify", db_dir)
    assert code == 1 and any("expected tx 10, found 11" in p for p in rep["problems"])


def test_snapshot_command(db_dir):
    code, rep = run_json("snapshot", db_dir)
    assert code == 0 and rep["tx_id"] == 22 and os.path.isfile(rep["path"])
    with engine.open(db_dir) as db:
        assert db.get("bin") == b"\x00\xff"


def test_snapshot_command_on_a_database_needing_recovery_fails(db_dir):
    shutil.rmtree(os.path.join(db_dir, "log"))
    code, rep = run_json("snapshot", db_dir)
    assert code == 1 and rep["error"] == "LogMissingError"


def test_inspect_tx_and_stream(db_dir):
    code, rep = run_json("inspect", db_dir, "--tx", "22")
    assert code == 0
    (ev,) = rep["events"]
    assert ev["stream"] == "bin" and ev["data"] == {"base64": "AP8="}
    code, rep = run_json("inspect", db_dir, "--stream", "s1")
    assert code == 0 and rep["version"] == 5 and rep["value"] == "v17"
    assert [e["version"] for e in rep["events"]] == [1, 2, 3, 4, 5]
    code, out = run("inspect", db_dir, "--tx", "3")
    assert code == 0 and "s2" in out


def test_inspect_unknown_tx_and_missing_option(db_dir):
    code, rep = run_json("inspect", db_dir, "--tx", "999")
    assert code == 1 and "no tx 999" in rep["message"]
    code, _ = run("inspect", db_dir)
    assert code == 2


def test_recover_requires_new_epoch_flag(db_dir):
    code, out = run("recover", db_dir)
    assert code == 2 and "--new-epoch" in out
