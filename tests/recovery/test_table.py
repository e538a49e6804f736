"""One test per row of the recovery decision table (ENGINE.md, 'Opening')."""

from __future__ import annotations

import os
import shutil

import pytest

import engine
from engine.ops.plan import plan_open

from .helpers import delete_log, drop_first_records, empty_log, log_dir, state_of, write_txs


def test_no_snapshot_no_log_creates_epoch_1(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        assert db.position == engine.Position(1, 0)
        assert [h.epoch for h in db.epoch_history] == [1]


def test_no_snapshot_and_create_false_refuses(tmp_path):
    path = str(tmp_path / "db")
    os.makedirs(path)
    with pytest.raises(engine.EngineError, match="create=False"):
        engine.open(path, create=False)
    assert os.listdir(path) == []  # nothing was created, not even LOCK


def test_no_snapshot_replays_whole_log(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        write_txs(db, 7)
        expected = state_of(db)
    with engine.open(path) as db:
        assert db.position.tx_id == 7
        assert state_of(db) == expected


def test_snapshot_plus_covering_log_replays_tail(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        write_txs(db, 5)
        db.snapshot()
        write_txs(db, 4)
        expected = state_of(db)
    plan = plan_open(path)
    assert plan.snapshot is not None and plan.snapshot.header.tx_id == 5
    assert plan.replay_from == 6
    with engine.open(path) as db:
        assert db.position.tx_id == 9 and state_of(db) == expected


def test_snapshot_exactly_at_log_end_opens(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        write_txs(db, 3)
        db.snapshot()
    with engine.open(path) as db:
        assert db.position.tx_id == 3


def _snapshotted(tmp_path, n=6) -> tuple[str, str, dict]:
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        write_txs(db, n)
        db.snapshot()
        expected = state_of(db)
        write_txs(db, 2)
        db_id = db.db_id
    return path, db_id, expected


def test_log_missing_raises_with_positions_and_fix(tmp_path):
    path, _, _ = _snapshotted(tmp_path)
    delete_log(path)
    with pytest.raises(engine.LogMissingError) as ei:
        engine.open(path)
    msg = str(ei.value)
    assert "epoch 1, tx 6" in msg
    assert "no log was found" in msg
    assert f"engine-admin recover --new-epoch {path}" in msg
    assert "transactions after tx 6" in msg
    assert isinstance(ei.value, engine.RecoveryRequired)
    assert ei.value.snapshot == engine.Position(1, 6)
    assert not os.path.exists(log_dir(path))  # refusing changed nothing


def test_log_dir_without_lmdb_files_counts_as_missing(tmp_path):
    path, _, _ = _snapshotted(tmp_path)
    delete_log(path)
    os.makedirs(log_dir(path))
    with pytest.raises(engine.LogMissingError, match="no log was found"):
        engine.open(path)


def test_empty_log_raises_log_missing(tmp_path):
    path, db_id, _ = _snapshotted(tmp_path)
    empty_log(path, db_id)
    with pytest.raises(engine.LogMissingError, match="holds no transactions") as ei:
        engine.open(path)
    assert "Log found: an empty log" in str(ei.value)


def test_log_starting_after_snapshot_raises_gap(tmp_path):
    path, _, _ = _snapshotted(tmp_path, n=6)  # snapshot at 6, log 1..8
    drop_first_records(path, 7)               # log now holds only tx 8
    with pytest.raises(engine.LogGapError) as ei:
        engine.open(path)
    msg = str(ei.value)
    assert "starts at tx 8" in msg and "txs 7..7 are missing" in msg
    assert "epoch 1, tx 6" in msg and "recover --new-epoch" in msg


def test_stale_log_copy_raises_gap(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        write_txs(db, 3)
    stale = str(tmp_path / "stale-log")
    shutil.copytree(log_dir(path), stale)
    with engine.open(path) as db:
        write_txs(db, 5)
        db.snapshot()  # at tx 8
    shutil.rmtree(log_dir(path))
    shutil.copytree(stale, log_dir(path))
    with pytest.raises(engine.LogGapError) as ei:
        engine.open(path)
    msg = str(ei.value)
    assert "ends at tx 3" in msg and "stale copy" in msg and "epoch 1, tx 8" in msg


def test_no_snapshot_and_log_not_from_tx_1_raises_gap(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        write_txs(db, 4)
    drop_first_records(path, 2)
    with pytest.raises(engine.LogGapError, match="no valid snapshot covers"):
        engine.open(path)


def _recover(path: str) -> None:
    from engine.lock import DirLock
    from engine.ops.recover import recover_new_epoch

    lock = DirLock(path)
    try:
        recover_new_epoch(path)
    finally:
        lock.release()


def test_log_of_older_epoch_is_refused(tmp_path):
    path, _, _ = _snapshotted(tmp_path)
    old = str(tmp_path / "epoch1-log")
    shutil.copytree(log_dir(path), old)
    delete_log(path)
    _recover(path)  # epoch 2 from tx 6
    with engine.open(path) as db:
        assert db.position == engine.Position(2, 6)
        write_txs(db, 2)
        db.snapshot()
    shutil.rmtree(log_dir(path))
    shutil.copytree(old, log_dir(path))  # someone restores the old timeline's log
    with pytest.raises(engine.LogGapError) as ei:
        engine.open(path)
    assert "epoch 1 is older than the snapshot's epoch 2" in str(ei.value)


def test_snapshot_past_the_fork_is_set_aside(tmp_path):
    """Epoch 2 forked from tx 5; a snapshot of epoch 1 at tx 10 holds txs epoch 2 never had."""
    path = str(tmp_path / "db")
    with engine.open(path, keep_snapshots=10) as db:
        write_txs(db, 5, tag="a")
        db.snapshot()                       # 1-5
        at5 = state_of(db)
        write_txs(db, 5, tag="b")
        db.snapshot()                       # 1-10: past the fork
    hidden = str(tmp_path / "1-10.snap")
    os.replace(os.path.join(path, "snapshots", "1-10.snap"), hidden)
    delete_log(path)
    _recover(path)                          # epoch 2 from 1-5: next tx 6
    os.unlink(os.path.join(path, "snapshots", "2-5.snap"))
    with engine.open(path) as db:
        write_txs(db, 2, tag="c")           # txs 6, 7 of epoch 2
        expected = state_of(db)
    os.replace(hidden, os.path.join(path, "snapshots", "1-10.snap"))
    with pytest.warns(engine.EngineWarning, match="not on the log's timeline"):
        db = engine.open(path)
    with db:
        assert db.position == engine.Position(2, 7)
        assert state_of(db) == expected
        assert state_of(db) != at5
        for s in db.streams():   # nothing from epoch 1 past the fork (tag "b") is visible
            assert not (db.get(s) or b"").startswith(b"b")
    aside = os.listdir(os.path.join(path, "aside"))
    assert any(d.startswith("snapshots-") for d in aside)
    moved = [f for d in aside for f in os.listdir(os.path.join(path, "aside", d))]
    assert "1-10.snap" in moved            # set aside, never deleted


def test_snapshot_whose_name_disagrees_with_its_header_is_skipped(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        write_txs(db, 3)
        snap = db.snapshot()
        write_txs(db, 2)
        expected = state_of(db)
    os.replace(snap.path, os.path.join(path, "snapshots", "1-4.snap"))  # renamed by hand
    with pytest.warns(engine.EngineWarning) as caught:
        db = engine.open(path)
    messages = [str(w.message) for w in caught]
    assert any("name says epoch 1, tx 4" in m for m in messages)
    assert any("replaying the whole log from tx 1" in m for m in messages)
    assert all(w.filename == __file__ for w in caught)  # points at the caller's line
    with db:
        assert state_of(db) == expected  # replayed from the log instead


def test_corrupt_newest_snapshot_falls_back_with_warning(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path, keep_snapshots=5) as db:
        write_txs(db, 3)
        db.snapshot()
        write_txs(db, 3)
        newest = db.snapshot()
        write_txs(db, 1)
        expected = state_of(db)
    with open(newest.path, "r+b") as f:
        f.seek(200)
        b = f.read(1)
        f.seek(200)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.warns(engine.EngineWarning, match="corrupt"):
        db = engine.open(path)
    with db:
        assert state_of(db) == expected and db.position.tx_id == 7


def test_other_databases_log_is_refused(tmp_path):
    path, _, _ = _snapshotted(tmp_path)
    other = str(tmp_path / "other")
    with engine.open(other) as db:
        write_txs(db, 9)
    delete_log(path)
    shutil.copytree(log_dir(other), log_dir(path))
    with pytest.raises(engine.DatabaseMismatchError, match="belongs to database"):
        engine.open(path)


def test_other_databases_snapshot_is_refused(tmp_path):
    path, _, _ = _snapshotted(tmp_path)
    other = str(tmp_path / "other")
    with engine.open(other) as db:
        write_txs(db, 9)
        snap = db.snapshot()  # 1-9: newer than the database's own 1-6
    shutil.copy(snap.path, os.path.join(path, "snapshots", "1-9.snap"))
    with pytest.raises(engine.DatabaseMismatchError):
        engine.open(path)
