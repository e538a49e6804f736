"""engine-admin backup status|flush and restore: output, --json, exit codes, refusals."""

from __future__ import annotations

import subprocess
import sys

import engine
from engine.backup.uploader import BackupOptions
from tests.support.cli import run, run_json


def _db_with_unshipped(tmp_path, n_shipped: int = 5, n_pending: int = 4) -> tuple[str, str]:
    path, url = str(tmp_path / "db"), f"file://{tmp_path}/target"
    with engine.open(path, backup=BackupOptions(target=url, interval_seconds=60)) as db:
        for i in range(n_shipped):
            db.append("s", "e", b"%d" % i)
        db.backup.flush()
        db.backup.pause()  # close() does not flush a paused backup: these stay unshipped
        for i in range(n_pending):
            db.append("p", "e", b"%d" % i)
    return path, url


def test_status_of_a_closed_database_reports_the_lag(tmp_path):
    path, url = _db_with_unshipped(tmp_path)
    code, rep = run_json("backup", "status", path)
    assert code == 0, rep
    assert (rep["checkpoint_tx"], rep["last_tx"], rep["lag_txs"]) == (5, 9, 4)
    assert rep["target"] == url and rep["lag_seconds"] >= 0
    code, text = run("backup", "status", path)
    assert code == 0 and "lag: 4 txs" in text


def test_flush_of_a_closed_database_ships_the_rest(tmp_path):
    path, _url = _db_with_unshipped(tmp_path)
    code, rep = run_json("backup", "flush", path)
    assert code == 0, rep
    assert (rep["epoch"], rep["flushed_through_tx"], rep["pending_txs"]) == (1, 9, 0)
    code, rep = run_json("backup", "status", path)
    assert rep["lag_txs"] == 0


def test_status_of_a_database_never_backed_up_says_what_to_do(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        db.append("s", "e", b"1")
    code, rep = run_json("backup", "status", path)
    assert code == 1 and "--target URL" in rep["message"]
    code, rep = run_json("backup", "flush", path)
    assert code == 1 and "--target URL" in rep["message"]
    code, rep = run_json("backup", "flush", path, "--target", f"file://{tmp_path}/t")
    assert code == 0 and rep["flushed_through_tx"] == 1


def test_status_on_a_live_database_names_the_holder(tmp_path):
    path, _url = _db_with_unshipped(tmp_path)
    with engine.open(path):
        code, rep = run_json("backup", "status", path)
    assert code == 1 and rep["error"] == "DatabaseLockedError"


def test_restore_json_and_refusals(tmp_path):
    _path, url = _db_with_unshipped(tmp_path, n_pending=0)
    code, rep = run_json("restore", "--from", url, str(tmp_path / "r"))
    assert code == 0, rep
    assert (rep["last_tx"], rep["new_epoch"], rep["restored_epoch"]) == (5, 2, 1)
    code, rep = run_json("restore", "--from", url, str(tmp_path / "r"))
    assert code == 1 and "not an empty directory" in rep["message"]
    code, rep = run_json("restore", "--from", url, str(tmp_path / "r2"), "--to-tx", "99")
    assert code == 1 and "outside the backup" in rep["message"]
    code, rep = run_json("restore", "--from", url, str(tmp_path / "r2"), "--to-time",
                         "yesterday")
    assert code == 1 and "ISO 8601" in rep["message"]
    code, rep = run_json("restore", "--from", url, str(tmp_path / "r2"), "--to-time",
                         "2026-01-01T00:00:00")
    assert code == 1 and "time zone" in rep["message"]
    code, rep = run_json("restore", "--from", "ftp://x/y", str(tmp_path / "r2"))
    assert code == 1 and rep["error"] == "InvalidTargetError"
    assert not (tmp_path / "r2").exists()


def test_restore_in_a_subprocess_prints_what_it_did(tmp_path):
    _path, url = _db_with_unshipped(tmp_path, n_pending=0)
    p = subprocess.run([sys.executable, "-m", "engine.cli", "restore", "--from", url,
                        str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "restored" in p.stdout and "opens epoch 2" in p.stdout
    with engine.open(str(tmp_path / "r")) as db:
        assert db.position.tx_id == 5 and db.get("s") == b"4"
