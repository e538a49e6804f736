"""A snapshot proves which log it belongs to (the checksum of the record it covers); a
diverged copy's snapshot is set aside on open, the state is the fold of this log, and
verify reports it (docs/FORMAT.md section 4, engine/lineage.py)."""

from __future__ import annotations

import os
import shutil
import warnings

import pytest

import engine
from engine import formats, layout
from engine.lock import DirLock
from engine.log import LogStore
from engine.ops.recover import recover_new_epoch
from engine.ops.verify import verify_directory
from engine.snapshot import list_snapshots, read_header, record_checksum

from .test_snapshot_corruption import as_version_1


def _record_checksum(path: str, tx_id: int) -> int:
    store = LogStore(os.path.join(path, "log"), readonly=True)
    try:
        rec = store.get(tx_id)
        assert rec is not None
        return record_checksum(rec)
    finally:
        store.close()


def _fold_of_log(db: engine.Database) -> dict[str, bytes | None]:
    state: dict[str, bytes | None] = {}
    for t in db.read_log():
        for e in t.events:
            state[e.stream] = None if e.type == "delete" else e.data
    return state


def _state(db: engine.Database) -> dict[str, bytes | None]:
    return {s: db.get(s) for s in db.streams()}


def _diverged_pair(tmp_path, *, own_snapshot: bool) -> tuple[str, str, str]:
    """Two copies of one directory (same db_id) that each committed txs 3..4 of their
    own; B snapshotted at tx 4 and that file was copied into A's snapshots/. Returns
    (A, B, the foreign file's path inside A)."""
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    with engine.open(a) as db:
        db.append("acct", "set", b"1")
        db.append("acct", "set", b"2")
        if own_snapshot:
            db.snapshot()  # 1-2.snap, shared by both copies
    shutil.copytree(a, b)
    with engine.open(a) as db:
        db.append("a-only", "set", b"x")
        db.append("acct", "set", b"A")
    with engine.open(b) as db:
        db.append("b-only", "set", b"y")
        db.append("acct", "set", b"B")
        foreign = db.snapshot().path
    dest = os.path.join(a, "snapshots", os.path.basename(foreign))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copyfile(foreign, dest)
    return a, b, dest


@pytest.mark.parametrize("own_snapshot", [False, True])
def test_a_diverged_copys_snapshot_is_set_aside_and_the_log_is_replayed(tmp_path, own_snapshot):
    a, b, foreign = _diverged_pair(tmp_path, own_snapshot=own_snapshot)
    ours, theirs = _record_checksum(a, 4), _record_checksum(b, 4)
    assert ours != theirs and read_header(foreign).tx_checksum == theirs

    before = verify_directory(a)  # reported before any open touches it
    assert not before.ok
    assert any("does not belong to this log" in p and "1-4.snap" in p for p in before.problems)

    with pytest.warns(engine.EngineWarning) as caught:
        db = engine.open(a)
    try:
        text = " ".join(str(w.message) for w in caught)
        assert "1-4.snap" in text and "does not belong to this log" in text
        assert f"{theirs:#018x}" in text and f"{ours:#018x}" in text  # both checksums
        assert "snapshots/diverged/1-4.snap" in text and "A diverged copy" in text
        assert db.get("b-only") is None and db.get("a-only") == b"x"
        assert db.get("acct") == b"A" and db.version("acct") == 3
        assert _state(db) == _fold_of_log(db)
        assert db.position == engine.Position(1, 4)
        assert db.open_warnings and "diverged" in db.open_warnings[0]
    finally:
        db.close()

    # moved, not deleted; the directory is durable-renamed, byte for byte the same file
    moved = os.path.join(layout.diverged_dir(a), "1-4.snap")
    assert not os.path.exists(foreign) and read_header(moved).tx_checksum == theirs
    names = [os.path.basename(p) for _, p in list_snapshots(os.path.join(a, "snapshots"))]
    assert names == (["1-2.snap"] if own_snapshot else [])
    after = verify_directory(a)  # still reported, now as set aside
    assert not after.ok and any("was set aside on open" in p for p in after.problems)

    with warnings.catch_warnings():  # the next open is clean: the file is out of the way
        warnings.simplefilter("error")
        with engine.open(a) as db:
            assert db.get("acct") == b"A" and db.get("b-only") is None
            info = db.snapshot()
    assert read_header(info.path).tx_checksum == ours  # its own snapshot is proven

    os.remove(moved)
    os.rmdir(layout.diverged_dir(a))
    assert verify_directory(a).ok


def test_a_second_diverged_file_of_the_same_name_never_replaces_the_first(tmp_path):
    a, _b, foreign = _diverged_pair(tmp_path, own_snapshot=False)
    with open(foreign, "rb") as f:
        saved = f.read()
    with pytest.warns(engine.EngineWarning):
        engine.open(a).close()
    shutil.copyfile(os.path.join(layout.diverged_dir(a), "1-4.snap"), foreign)
    with pytest.warns(engine.EngineWarning) as caught:
        engine.open(a).close()
    assert any("diverged/1-4.snap.1" in str(w.message) for w in caught)
    for name in ("1-4.snap", "1-4.snap.1"):
        with open(os.path.join(layout.diverged_dir(a), name), "rb") as f:
            assert f.read() == saved


def test_a_snapshot_of_this_log_is_proven_and_used(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        empty = db.snapshot()  # tx 0: no record to prove it by
        db.append("s", "set", b"1")
        db.append("s", "set", b"2")
        info = db.snapshot()
    assert read_header(empty.path).tx_checksum is None
    assert read_header(info.path).tx_checksum == _record_checksum(path, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with engine.open(path) as db:
            assert db.get("s") == b"2"
    assert verify_directory(path).ok


def test_an_old_format_snapshot_still_loads_unproven(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        db.append("s", "set", b"1")
        db.append("t", "set", b"2")
        snap = db.snapshot().path
        db.append("s", "set", b"3")
    with open(snap, "rb") as f:
        v1 = as_version_1(f.read())
    with open(snap, "wb") as f:
        f.write(v1)
    assert read_header(snap).version == 1 and read_header(snap).tx_checksum is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with engine.open(path) as db:
            assert (db.get("s"), db.get("t"), db.version("s")) == (b"3", b"2", 2)
    assert verify_directory(path).ok


def _log_meta(path: str, key: bytes) -> bytes | None:
    store = LogStore(os.path.join(path, "log"), readonly=True)
    try:
        return store.get_meta(key)
    finally:
        store.close()


def _lose_log_and_recover(path: str) -> None:
    shutil.rmtree(os.path.join(path, "log"))
    lock = DirLock(path)
    try:
        recover_new_epoch(path)
    finally:
        lock.release()


def test_a_recovered_epoch_keeps_the_proof_of_its_base(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        for i in range(3):
            db.append("s", "set", b"%d" % i)
        db.snapshot()
    base = _record_checksum(path, 3)
    _lose_log_and_recover(path)
    assert _log_meta(path, formats.META_BASE_CHECKSUM) == formats.U64_LE.pack(base)
    assert read_header(os.path.join(path, "snapshots", "2-3.snap")).tx_checksum == base
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with engine.open(path) as db:
            assert db.position == engine.Position(2, 3) and db.get("s") == b"2"
            # a snapshot at the base (no record of tx 3 in this log) carries it on
            assert read_header(db.snapshot().path).tx_checksum == base
    assert verify_directory(path).ok


def test_a_diverged_snapshot_at_a_recovered_base_is_refused_not_used(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    with engine.open(a) as db:
        db.append("s", "set", b"1")
    shutil.copytree(a, b)
    for path, value in ((a, b"A"), (b, b"B")):
        with engine.open(path) as db:
            db.append("s", "set", value)
            db.append("s", "set", value)
            db.snapshot()  # 1-3.snap, different on each copy
    _lose_log_and_recover(a)  # epoch 2 of A, base 3 = A's own tx 3
    for name in os.listdir(os.path.join(a, "snapshots")):
        os.remove(os.path.join(a, "snapshots", name))
    shutil.copyfile(os.path.join(b, "snapshots", "1-3.snap"),
                    os.path.join(a, "snapshots", "1-3.snap"))
    with pytest.raises(engine.LogGapError, match=r"of a diverged copy: 1-3\.snap"):
        engine.open(a)
    assert os.listdir(os.path.join(a, "snapshots")) == ["1-3.snap"]  # a refusal moves nothing
    report = verify_directory(a)
    assert any("does not belong to this log" in p for p in report.problems)


def test_a_newer_epochs_snapshot_over_an_older_log_is_still_a_gap_not_a_divergence(tmp_path):
    # The log is the suspect there (an older timeline put back): the snapshot must stay.
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        for i in range(4):
            db.append("s", "set", b"%d" % i)
        db.snapshot()  # 1-4.snap
        db.append("s", "set", b"old-5")  # tx 5 of epoch 1
    old_log = str(tmp_path / "old-log")
    shutil.copytree(os.path.join(path, "log"), old_log)
    _lose_log_and_recover(path)  # epoch 2 from 1-4.snap
    with engine.open(path) as db:
        db.append("s", "set", b"new-5")  # tx 5 of epoch 2: another record
        db.snapshot()  # 2-5.snap
    shutil.rmtree(os.path.join(path, "log"))
    shutil.copytree(old_log, os.path.join(path, "log"))
    with pytest.raises(engine.LogGapError, match="older than the snapshot's epoch"):
        engine.open(path)
    assert "2-5.snap" in os.listdir(os.path.join(path, "snapshots"))
    assert not os.path.exists(layout.diverged_dir(path))


def test_a_damaged_record_at_the_snapshots_tx_does_not_make_it_look_foreign(tmp_path):
    import lmdb

    path = str(tmp_path / "db")
    with engine.open(path) as db:
        db.append("s", "set", b"1")
        db.append("s", "set", b"2")
        db.snapshot()
        db.append("s", "set", b"3")
    env = lmdb.open(os.path.join(path, "log"))
    with env.begin(write=True) as txn:
        key = (2).to_bytes(8, "big")
        rec = bytearray(txn.get(key))
        rec[-1] ^= 0xFF  # the record's own checksum no longer matches
        txn.put(key, bytes(rec))
    env.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "does not belong" warning, nothing set aside
        with engine.open(path) as db:
            assert db.get("s") == b"3"
    assert not os.path.exists(layout.diverged_dir(path))
    problems = verify_directory(path).problems
    assert problems and all("does not belong" not in p for p in problems)
    assert any("tx 2" in p for p in problems)  # verify names the damaged record


def test_recovery_never_rebuilds_from_a_diverged_copys_snapshot(tmp_path):
    a, _b, foreign = _diverged_pair(tmp_path, own_snapshot=True)
    lock = DirLock(a)
    try:
        report = recover_new_epoch(a, dry_run=True, force=True)
    finally:
        lock.release()
    assert os.path.basename(report.snapshot) == "1-2.snap"  # its own, not the foreign 1-4
    assert any("1-4.snap" in n and "does not belong to this log" in n for n in report.notes)
    assert os.path.exists(foreign)  # a dry run moves nothing


def test_engine_admin_status_and_verify_show_a_diverged_copy(tmp_path):
    from tests.support.cli import run_json

    a, b, _foreign = _diverged_pair(tmp_path, own_snapshot=True)
    code, rep = run_json("status", a)
    assert code == 0  # degraded: it opens
    assert rep["verdict"] == "degraded" and "does not belong to this log" in rep["problem"]
    by_file = {s["file"]: s for s in rep["snapshots"]}
    assert by_file["1-4.snap"]["tx_checksum"] == f"{_record_checksum(b, 4):016x}"
    assert by_file["1-2.snap"]["tx_checksum"] == f"{_record_checksum(a, 2):016x}"
    assert by_file["1-4.snap"]["version"] == 2
    code, rep = run_json("verify", a)
    assert code == 1 and rep["ok"] is False
    assert any("does not belong to this log" in p for p in rep["problems"])
    assert os.path.exists(os.path.join(a, "snapshots", "1-4.snap"))  # neither moves it
