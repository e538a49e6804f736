"""``engine-admin recover --new-epoch`` end to end, in a subprocess."""

from __future__ import annotations

import os
import shutil

import pytest

import engine

from .helpers import (
    admin,
    admin_json,
    delete_log,
    drop_first_records,
    empty_log,
    log_dir,
    state_of,
    tree,
    write_txs,
)


def _db(tmp_path, n=6, tail=3):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        write_txs(db, n)
        db.snapshot()
        snap_state = state_of(db)
        write_txs(db, tail)
        db_id = db.db_id
    return path, db_id, snap_state


def _check_recovered(path, snap_state, epoch, next_tx):
    with engine.open(path) as db:
        assert db.position == engine.Position(epoch, next_tx - 1)
        assert state_of(db) == snap_state
        assert list(db.read_log(next_tx)) == []
        assert db.append("after", "set", b"x") == next_tx
        (t,) = list(db.read_log(next_tx))
        assert t.epoch == epoch
        assert db.epoch_history[-1].epoch == epoch
        assert db.epoch_history[-1].first_tx == next_tx


@pytest.mark.parametrize("fault", ["missing", "empty", "gap"])
def test_recover_each_log_loss(tmp_path, fault):
    path, db_id, snap_state = _db(tmp_path)
    if fault == "missing":
        delete_log(path)
    elif fault == "empty":
        empty_log(path, db_id)
    else:
        drop_first_records(path, 7)
    rc, rep = admin_json("recover", "--new-epoch", path)
    assert rc == 0, rep
    assert rep["new_epoch"] == 2 and rep["next_tx"] == 7
    assert rep["kept"] == {"epoch": 1, "tx_id": 6, "streams": len(snap_state)}
    if fault == "gap":
        assert rep["lost"].startswith("txs 7..9 of epoch 1")
        moved = rep["log_moved_to"]
        assert moved and os.path.isdir(moved) and moved.startswith(os.path.join(path, "aside"))
        assert os.path.isfile(os.path.join(moved, "data.mdb"))  # never deleted
    elif fault == "missing":
        assert "no log was found" in rep["lost"] and rep["log_moved_to"] is None
    _check_recovered(path, snap_state, epoch=2, next_tx=7)


def test_recover_stale_copy_then_old_log_stays_aside(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        write_txs(db, 2)
    stale = str(tmp_path / "stale")
    shutil.copytree(log_dir(path), stale)
    with engine.open(path) as db:
        write_txs(db, 4)
        db.snapshot()
        snap_state = state_of(db)
    shutil.rmtree(log_dir(path))
    shutil.copytree(stale, log_dir(path))
    rc, rep = admin_json("recover", "--new-epoch", path)
    assert rc == 0 and "stale copy" in rep["lost"]
    _check_recovered(path, snap_state, epoch=2, next_tx=7)


def test_refusal_text_is_what_the_runbook_quotes(tmp_path):
    path, _, _ = _db(tmp_path)
    delete_log(path)
    p = admin("status", path)
    assert p.returncode == 1
    assert "recovery required" in p.stdout
    assert f"engine-admin recover --new-epoch {path}" in p.stdout


def test_dry_run_changes_nothing(tmp_path):
    path, _, _ = _db(tmp_path)
    drop_first_records(path, 7)
    before = tree(path)
    rc, rep = admin_json("recover", "--new-epoch", path, "--dry-run")
    assert rc == 0 and rep["dry_run"] is True and rep["new_epoch"] == 2
    assert tree(path) == before
    with pytest.raises(engine.LogGapError):
        engine.open(path)


def test_healthy_database_refuses_without_force(tmp_path):
    path, _, _ = _db(tmp_path)
    before = tree(path)
    rc, rep = admin_json("recover", "--new-epoch", path)
    assert rc == 1 and rep["ok"] is False and "--force" in rep["message"]
    assert tree(path) == before


def test_force_on_healthy_database_loses_nothing(tmp_path):
    path, _, _ = _db(tmp_path)
    with engine.open(path) as db:
        full = state_of(db)
        last = db.position.tx_id
    rc, rep = admin_json("recover", "--new-epoch", path, "--force")
    assert rc == 0, rep
    assert rep["next_tx"] == last + 1 and rep["new_epoch"] == 2
    assert any("snapshot of the current state" in n for n in rep["notes"])
    _check_recovered(path, full, epoch=2, next_tx=last + 1)


def test_force_dry_run_on_healthy_database_reports_and_changes_nothing(tmp_path):
    path, _, _ = _db(tmp_path)  # snapshot at 6, log to 9
    before = tree(path)
    rc, rep = admin_json("recover", "--new-epoch", path, "--force", "--dry-run")
    assert rc == 0 and rep["dry_run"] and rep["next_tx"] == 10 and rep["new_epoch"] == 2
    assert rep["lost"].startswith("nothing")
    assert tree(path) == before


def test_recover_falls_back_when_newest_snapshot_is_corrupt(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path, keep_snapshots=5) as db:
        write_txs(db, 3)
        db.snapshot()
        older = state_of(db)
        write_txs(db, 3)
        newest = db.snapshot()
    with open(newest.path, "r+b") as f:
        f.truncate(os.path.getsize(newest.path) - 5)
    delete_log(path)
    rc, rep = admin_json("recover", "--new-epoch", path)
    assert rc == 0 and rep["kept"]["tx_id"] == 3
    assert any("falling back" in n for n in rep["notes"])
    with engine.open(path) as db:  # the new epoch's snapshot 2-3 now outranks it
        assert state_of(db) == older and db.position == engine.Position(2, 3)
    assert os.path.exists(newest.path)  # the corrupt file is kept for forensics


def test_recover_twice_moves_epochs_forward(tmp_path):
    path, _, snap_state = _db(tmp_path)
    delete_log(path)
    assert admin_json("recover", "--new-epoch", path)[1]["new_epoch"] == 2
    delete_log(path)  # lost again before any new snapshot
    rc, rep = admin_json("recover", "--new-epoch", path)
    assert rc == 0 and rep["new_epoch"] == 3 and rep["next_tx"] == 7
    with engine.open(path) as db:
        assert [h.epoch for h in db.epoch_history] == [1, 2, 3]
        assert state_of(db) == snap_state
    rc, st = admin_json("status", path)
    assert rc == 0 and st["verdict"] == "ok"
    assert [h["epoch"] for h in st["epoch_history"]] == [1, 2, 3]
    assert st["epoch_history"][-1]["reason"] == "log lost: rebuilt from snapshot"
    assert st["epoch_history"][-1]["first_tx"] == 7


def test_recover_rerun_after_crash_midway(tmp_path):
    """A crash after the log was moved aside and a half-made log.new was left."""
    path, _, snap_state = _db(tmp_path)
    drop_first_records(path, 7)
    os.makedirs(os.path.join(path, "aside", "log-crashed"))
    os.replace(log_dir(path), os.path.join(path, "aside", "log-crashed", "log"))
    os.makedirs(log_dir(path) + ".new")
    with open(os.path.join(log_dir(path) + ".new", "data.mdb"), "wb") as f:
        f.write(b"half-written")
    with pytest.raises(engine.LogMissingError):  # a half-made epoch never opens
        engine.open(path)
    rc, rep = admin_json("recover", "--new-epoch", path)
    assert rc == 0, rep
    assert not os.path.exists(log_dir(path) + ".new")
    _check_recovered(path, snap_state, epoch=2, next_tx=7)
    # The moved-aside log is still there, untouched.
    assert os.path.isfile(os.path.join(path, "aside", "log-crashed", "log", "data.mdb"))


def test_recover_without_any_snapshot_fails_clearly(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        write_txs(db, 2)
    delete_log(path)
    rc, rep = admin_json("recover", "--new-epoch", path)
    # no snapshot and no log: the directory is simply a new database, nothing to recover
    assert rc == 1 and rep["ok"] is False


def test_recover_refuses_while_database_is_open(tmp_path):
    path, _, _ = _db(tmp_path)
    with engine.open(path):
        rc, rep = admin_json("recover", "--new-epoch", path, "--force")
    assert rc == 1 and rep["error"] == "DatabaseLockedError"


def test_lost_history_is_never_silently_partial(tmp_path):
    path, _, _ = _db(tmp_path)
    delete_log(path)
    assert admin_json("recover", "--new-epoch", path)[0] == 0
    with engine.open(path) as db:
        db.append("s1", "set", b"new")
        with pytest.raises(engine.HistoryLostError, match=r"transactions 1\.\.6"):
            list(db.read_log(1))
        with pytest.raises(engine.HistoryLostError, match="'s1' versions 1"):
            list(db.read_stream("s1"))
        v = db.version("s1")
        (ev,) = list(db.read_stream("s1", from_version=v))  # history after S is readable
        assert ev.data == b"new" and ev.epoch == 2 and ev.tx_id == 7
        assert [t.tx_id for t in db.read_log(7)] == [7]


def test_recover_never_falls_back_to_a_snapshot_off_the_newest_timeline(tmp_path):
    """Epoch 2 forked at tx 4. Its own snapshot is damaged and its log is lost: the
    epoch-1 snapshot at tx 8 (past the fork) must not be used, the one at 3 is."""
    path = str(tmp_path / "db")
    with engine.open(path, keep_snapshots=10) as db:
        write_txs(db, 3, tag="a")
        db.snapshot()                                   # 1-3
        at3 = state_of(db)
        write_txs(db, 5, tag="b")
        db.snapshot()                                   # 1-8
    hidden = str(tmp_path / "1-8.snap")
    os.replace(os.path.join(path, "snapshots", "1-8.snap"), hidden)
    delete_log(path)
    assert admin_json("recover", "--new-epoch", path)[0] == 0   # epoch 2 from 1-3
    os.replace(hidden, os.path.join(path, "snapshots", "1-8.snap"))
    snap2 = os.path.join(path, "snapshots", "2-3.snap")
    with open(snap2, "r+b") as f:                     # damage the body, keep the header
        f.seek(os.path.getsize(snap2) - 30)
        f.write(b"\xff\xff\xff")
    delete_log(path)                                  # and lose epoch 2's log
    rc, rep = admin_json("recover", "--new-epoch", path)
    assert rc == 0, rep
    assert rep["kept"]["tx_id"] == 3 and rep["new_epoch"] == 3
    assert any("1-8.snap" in n and "forked off" in n for n in rep["notes"])
    with engine.open(path) as db:
        assert state_of(db) == at3
        assert [h.epoch for h in db.epoch_history] == [1, 2, 3]
