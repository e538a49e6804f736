"""engine-admin backup full|list|verify|prune and restore --backup: output, --json,
exit codes, fault drills; POST /backup/full and backup_retry_attempts on /metrics."""

from __future__ import annotations

import json
import os
import re

from click.testing import CliRunner

import engine
from engine.backup import keys
from engine.backup.retry import retry_attempts
from engine.backup.targets import open_target
from engine.cli import main
from engine.cli.client import request


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


def run_json(*args: str) -> tuple[int, dict]:
    code, out = run(*args, "--json")
    return code, json.loads(out)


def make_db(tmp_path, n: int = 300) -> tuple[str, str]:
    path, url = str(tmp_path / "db"), f"file://{tmp_path}/target"
    with engine.open(path) as db:
        for i in range(n):
            db.append(f"s{i % 13}", "e", os.urandom(64))
    return path, url


def test_backup_full_json_and_list_and_verify(tmp_path):
    path, url = make_db(tmp_path)
    code, rep = run_json("backup", "full", path, "--to", url)
    assert code == 0, rep
    for k in ("id", "epoch", "tx_id", "bytes", "files", "seconds", "retry_attempts"):
        assert k in rep, k
    assert (rep["epoch"], rep["tx_id"], rep["files"], rep["retry_attempts"]) == (1, 300, 1, 0)
    assert rep["bytes"] > 0 and rep["seconds"] >= 0
    code, listing = run_json("backup", "list", url)
    assert code == 0
    [b] = listing["backups"]
    assert {"id", "epoch", "tx_id", "bytes", "complete", "created"} <= set(b)
    assert (b["id"], b["tx_id"], b["complete"], b["bytes"]) == (rep["id"], 300, True,
                                                                rep["bytes"])
    code, text = run("backup", "list", url)
    assert code == 0 and rep["id"] in text and "complete" in text and "tx 300" in text
    code, v = run_json("backup", "verify", url, "--backup", rep["id"])
    assert code == 0 and v["ok"] and v["bytes"] == rep["bytes"]
    code, text = run("backup", "full", path, "--to", url)
    assert code == 0 and "full backup" in text and "retries" in text


def test_fault_drill_from_the_cli(tmp_path):
    path, url = make_db(tmp_path)
    before = retry_attempts()["backup"]
    code, rep = run_json("backup", "full", path, "--to", url, "--fault-rate", "0.3",
                         "--fault-seed", "4", "--backoff-max", "0.001", "--retries", "30")
    assert code == 0, rep
    assert rep["retry_attempts"] > 0
    assert retry_attempts()["backup"] - before == rep["retry_attempts"]
    code, rep2 = run_json("restore", "--from", url, "--backup", "latest",
                          str(tmp_path / "r"), "--fault-rate", "0.3", "--fault-seed", "9",
                          "--backoff-max", "0.001", "--retries", "30")
    assert code == 0, rep2
    assert rep2["backup"] == rep["id"] and rep2["last_tx"] == 300 and rep2["retry_attempts"] > 0
    # rate 1.0 fails every call: a clear error, non-zero exit, no manifest
    code, err = run_json("backup", "full", path, "--to", url, "--fault-rate", "1.0",
                         "--retries", "2", "--backoff-max", "0.001")
    assert code == 1 and err["error"] == "TransientBackupError"
    assert "gave up" in err["message"] and "after 3 attempt(s)" in err["message"]
    code, err = run_json("restore", "--from", url, "--backup", "latest",
                         str(tmp_path / "r2"), "--fault-rate", "1.0", "--retries", "1",
                         "--backoff-max", "0.001")
    assert code == 1 and "gave up" in err["message"]
    assert not os.path.exists(tmp_path / "r2")


def test_restore_refuses_an_incomplete_backup_and_falls_back(tmp_path):
    path, url = make_db(tmp_path)
    _c, good = run_json("backup", "full", path, "--to", url)
    with engine.open(path, create=False) as db:
        db.append("late", "e", b"x")
    _c, bad = run_json("backup", "full", path, "--to", url)
    target = open_target(url)
    target.delete(keys.manifest_key(bad["db_id"], bad["id"]))  # as if it never finished
    _c, listing = run_json("backup", "list", url)
    assert [b["complete"] for b in listing["backups"]] == [True, False]
    code, text = run("backup", "list", url)
    assert "INCOMPLETE" in text
    code, err = run_json("restore", "--from", url, "--backup", bad["id"], str(tmp_path / "r"))
    assert code == 1 and err["error"] == "BackupIntegrityError" and "incomplete" in \
        err["message"]
    code, rep = run_json("restore", "--from", url, "--backup", bad["id"], "--fallback",
                         str(tmp_path / "r"))
    assert code == 0 and rep["backup"] == good["id"] and rep["fell_back_from"] == [bad["id"]]
    code, text = run("restore", "--from", url, "--backup", bad["id"], "--fallback",
                     str(tmp_path / "r3"))
    assert code == 0 and "falling back to" in text and good["id"] in text
    code, v = run_json("backup", "verify", url, "--backup", bad["id"])
    assert code == 1 and not v["ok"] and "incomplete" in v["problems"][0]


def test_prune_from_the_cli(tmp_path):
    path, url = make_db(tmp_path)
    ids = [run_json("backup", "full", path, "--to", url)[1]["id"] for _ in range(3)]
    code, dry = run_json("backup", "prune", url, "--keep", "1", "--dry-run")
    assert code == 0 and dry["deleted"] == ids[:2] and dry["dry_run"]
    assert len(run_json("backup", "list", url)[1]["backups"]) == 3
    code, text = run("backup", "prune", url, "--keep", "1")
    assert code == 0 and "deleted 2 backup(s)" in text
    assert [b["id"] for b in run_json("backup", "list", url)[1]["backups"]] == ids[2:]
    code, err = run_json("backup", "prune", url, "--keep", "0")
    assert code == 1 and "never pruned" in err["message"]


def test_live_database_through_the_admin_socket(tmp_path):
    path, url = str(tmp_path / "db"), f"file://{tmp_path}/target"
    with engine.open(path, admin_socket=True) as db:
        for i in range(50):
            db.append("s", "e", b"%d" % i)
        reply = request(path, "POST", "/backup/full", {"to": url, "fault_rate": 0.3,
                                                      "fault_seed": 2, "backoff_max": 0.001,
                                                      "retries": 30})
        assert reply["ok"] and reply["tx_id"] == 50 and reply["retry_attempts"] > 0
        code, rep = run_json("backup", "full", path, "--to", url)  # the CLI reaches it
        assert code == 0 and rep["tx_id"] == 50 and rep["id"] != reply["id"]
        text = request(path, "GET", "/metrics")
        counts = dict(re.findall(r'^backup_retry_attempts_total\{phase="(\w+)"\} ([\d.]+)$',
                                 text, re.M))
        assert set(counts) == {"log", "backup", "restore"}
        assert float(counts["backup"]) == retry_attempts()["backup"] >= reply["retry_attempts"]
        try:
            request(path, "POST", "/backup/full", {})
        except engine.EngineError as exc:
            assert "give the target" in str(exc)
        else:
            raise AssertionError("an empty body was accepted")
        info = db.backup_full(url)
        assert info.tx_id == 50
    restore = run_json("restore", "--from", url, "--backup", "latest", str(tmp_path / "r"))
    assert restore[0] == 0 and restore[1]["last_tx"] == 50
