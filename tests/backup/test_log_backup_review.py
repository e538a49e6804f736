"""Regression tests for the holes a review of the log backup found: live copies of one
database, recover --from-backup across a fork, holes in the target, a lost tail, close
after resume, a bounded close, a missing base, --to-time with a gap."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

import engine
from engine.backup import keys
from engine.backup.chain import plan_chain
from engine.backup.faults import FaultyTarget
from engine.backup.recover import backup_tail
from engine.backup.restore import restore
from engine.backup.targets import open_target
from engine.backup.uploader import BackupOptions
from engine.lock import DirLock
from engine.ops.recover import recover_new_epoch

from .logcheck import assert_exactly_once


def _segs(url: str, db_id: str, epoch: int = 1) -> list[str]:
    t = open_target(url)
    return sorted(o.key for o in t.list(keys.log_prefix(db_id, epoch)) if o.key.endswith(".seg"))


def test_two_live_copies_one_is_fenced_and_the_backup_stays_restorable(tmp_path):
    a, b, url = str(tmp_path / "a"), str(tmp_path / "b"), f"file://{tmp_path}/t"
    with engine.open(a, backup=url) as db:
        for i in range(3):
            db.append("s", "e", b"%d" % i)
    shutil.copytree(a, b)  # the copy carries the writer token
    opts = BackupOptions(target=url, interval_seconds=0.001)
    da, dbb = engine.open(a, backup=opts), engine.open(b, backup=opts)
    try:
        for i in range(6):
            da.append("a", "e", b"%d" % i)
            dbb.append("b", "e", b"%d" % i)
            time.sleep(0.01)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "fenced" not in (
                da.backup.status().state, dbb.backup.status().state):
            time.sleep(0.02)
        states = {da.backup.status().state, dbb.backup.status().state}
        assert "fenced" in states, states
    finally:
        da.close()
        dbb.close()
    # whichever won, the target's lineage is whole and restorable
    out = str(tmp_path / "r")
    rep = restore(url, out)
    with engine.open(out) as r:
        got = {s: r.version(s) for s in r.streams()}
    assert got["s"] == 3 and (got.get("a", 0), got.get("b", 0)) in {(6, 0), (0, 6),
                                                                      (rep.last_tx - 3, 0),
                                                                      (0, rep.last_tx - 3)}


def test_recover_from_backup_never_splices_in_another_timeline(tmp_path):
    """Host A loses its log; the target's newest epoch is host B's restore (a fork)."""
    a, url = str(tmp_path / "a"), f"file://{tmp_path}/t"
    with engine.open(a, backup=url) as db:
        for i in range(1, 8):
            db.append("s", "e", b"A%d" % i)
        db.snapshot()  # tx 7
        for i in range(8, 11):
            db.append("s", "e", b"A%d" % i)
    b = str(tmp_path / "b")
    restore(url, b, to_tx=5)  # epoch 2 forks at tx 6 ...
    with engine.open(b, backup=url) as db:
        for i in range(6, 10):
            db.append("s", "e", b"B%d" % i)  # ... and ships txs 6..9 of epoch 2
    shutil.rmtree(os.path.join(a, "log"))
    lock = DirLock(a)
    try:
        report = recover_new_epoch(a, tail=backup_tail(url))
    finally:
        lock.release()
    assert report.new_epoch == 3  # past the fork's epoch 2 in the target
    with engine.open(a) as db:  # opens, with A's own txs 8..10 (epoch 1)
        assert db.get("s") == b"A10" and db.position == engine.Position(3, 10)
        assert [e.data for e in db.read_stream("s")][-3:] == [b"A8", b"A9", b"A10"]


def test_a_hole_in_the_target_is_filled_exactly(tmp_path):
    path, url = str(tmp_path / "db"), f"file://{tmp_path}/t"
    with engine.open(path, backup=BackupOptions(target=url, max_segment_txs=4)) as db:
        for i in range(16):
            db.append("s", "e", b"%d" % i)
        db_id = db.db_id
    segs = _segs(url, db_id)
    open_target(url).delete(segs[1])  # a lifecycle rule, a lagging listing, ...
    with engine.open(path, backup=BackupOptions(target=url, max_segment_txs=4)) as db:
        db.append("t", "e", b"x")
        assert db.backup.flush(timeout=10).flushed_through_tx == 17
        assert db.backup.status().state == "running"
        assert_exactly_once(open_target(url), db)
    with engine.open(path, backup=url) as db:  # and the next run is not fenced by it
        db.append("t", "e", b"y")
        db.backup.flush(timeout=10)
        assert db.backup.status().state == "running"
    rep = restore(url, str(tmp_path / "r"))
    assert rep.last_tx == 18


def test_a_lost_tail_is_reported_not_restored_silently_short(tmp_path):
    path, url = str(tmp_path / "db"), f"file://{tmp_path}/t"
    with engine.open(path, backup=BackupOptions(target=url, max_segment_txs=5)) as db:
        for i in range(20):
            db.append("s", "e", b"%d" % i)
        db_id = db.db_id
    open_target(url).delete(_segs(url, db_id)[-1])
    chain = plan_chain(open_target(url), db_id)
    assert chain.gap is not None and "missing" in chain.gap
    with pytest.raises(engine.BackupError, match="gap"):
        restore(url, str(tmp_path / "r"))
    assert restore(url, str(tmp_path / "r"), to_tx=chain.last_tx).last_tx == chain.last_tx


def test_close_right_after_resume_flushes(tmp_path):
    path, url = str(tmp_path / "db"), f"file://{tmp_path}/t"
    with engine.open(path, backup=BackupOptions(target=url, interval_seconds=60)) as db:
        db.append("s", "e", b"0")
        db.backup.flush()
        db.backup.pause()
        for i in range(5):
            db.append("s", "e", b"%d" % i)
        db.backup.resume()
        db_id = db.db_id
    ck = json.loads(open_target(url).get(keys.checkpoint_key(db_id, 1)))
    assert ck["tx_id"] == 6


def test_close_is_bounded_when_the_target_hangs(tmp_path):
    faulty = FaultyTarget(open_target(f"file://{tmp_path}/t"), latency_seconds=3.0)
    db = engine.open(str(tmp_path / "db"),
                     backup=BackupOptions(target=faulty, close_timeout_seconds=0.5))
    db.append("s", "e", b"x")
    t0 = time.monotonic()
    db.close()
    assert time.monotonic() - t0 < 2.5
    with engine.open(str(tmp_path / "db")) as again:  # the directory is free
        assert again.get("s") == b"x"


def _recovered_epoch_2(tmp_path) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A database never backed up in epoch 1 whose log was lost: epoch 2 starts after
    tx 10 from a snapshot, so a restore needs that snapshot as its base."""
    path, url = str(tmp_path / "db"), f"file://{tmp_path}/t"
    with engine.open(path) as db:
        for i in range(10):
            db.append("s", "e", b"%d" % i)
        db.snapshot()
    shutil.rmtree(os.path.join(path, "log"))
    lock = DirLock(path)
    try:
        recover_new_epoch(path)  # epoch 2 from the snapshot at tx 10
    finally:
        lock.release()
    return path, url


def test_a_pruned_base_is_replaced_by_the_next_snapshot_of_the_epoch(tmp_path):
    path, url = _recovered_epoch_2(tmp_path)
    with engine.open(path) as db:
        for i in range(5):
            db.append("s", "e", b"late%d" % i)
        db.snapshot()  # 2-15
    snaps = os.path.join(path, "snapshots")
    for name in os.listdir(snaps):
        if name.endswith("-10.snap"):
            os.unlink(os.path.join(snaps, name))  # the base at tx 10 was pruned
    with engine.open(path, backup=url) as db:
        db.append("s", "e", b"new")
        assert db.backup.flush(timeout=10).flushed_through_tx == 16
        assert db.backup.status().last_error is None
    rep = restore(url, str(tmp_path / "r"))
    assert rep.last_tx == 16
    with engine.open(str(tmp_path / "r")) as r:
        assert r.get("s") == b"new" and r.version("s") == 16


def test_flush_refuses_while_no_base_can_be_shipped(tmp_path, monkeypatch):
    """No snapshot to ship as the epoch's base (forced: an openable database always has
    one): flush says a restore could not rebuild the state, instead of succeeding."""
    from engine.port import ServicePort

    path, url = _recovered_epoch_2(tmp_path)
    real = ServicePort.base_snapshot
    monkeypatch.setattr(ServicePort, "base_snapshot", lambda self: None)
    opts = BackupOptions(target=url, fence_check_seconds=0.05)
    with engine.open(path, backup=opts) as db:
        db.append("s", "e", b"new")
        with pytest.raises(engine.PermanentBackupError, match="no snapshot at or after tx 10"):
            db.backup.flush(timeout=5)
        assert "no snapshot" in (db.backup.status().last_error or "")
        monkeypatch.setattr(ServicePort, "base_snapshot", real)  # a snapshot appears
        deadline = time.monotonic() + 10
        while True:
            try:
                assert db.backup.flush(timeout=5).flushed_through_tx == 11
                break
            except engine.PermanentBackupError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    assert restore(url, str(tmp_path / "r")).last_tx == 11


def test_to_time_before_a_gap_still_restores(tmp_path):
    path, url = str(tmp_path / "db"), f"file://{tmp_path}/t"
    with engine.open(path, backup=BackupOptions(target=url, max_segment_txs=5)) as db:
        for i in range(20):
            db.append("s", "e", b"%d" % (i + 1))
            time.sleep(0.002)
        t3 = next(iter(db.read_log(3, 3))).ts
        db_id = db.db_id
    open_target(url).delete(_segs(url, db_id)[2])
    assert restore(url, str(tmp_path / "r"), to_time=t3).last_tx == 3


def test_an_infinite_flush_timeout_waits_without_a_deadline(tmp_path):
    with engine.open(str(tmp_path / "db"), backup=f"file://{tmp_path}/t") as db:
        db.append("s", "e", b"x")
        assert db.backup.flush(timeout=float("inf")).flushed_through_tx == 1


class _LyingReads(FaultyTarget):
    """Reads a segment back with one byte changed, ``lies`` times (a target that
    acknowledged a write it did not store intact)."""

    def __init__(self, inner, lies: int) -> None:  # type: ignore[no-untyped-def]
        super().__init__(inner)
        self.lies = lies

    def get_view(self, key: str):  # type: ignore[no-untyped-def]
        data = bytearray(self.inner.get_view(key))
        if key.endswith(".seg") and self.lies > 0:
            self.lies -= 1
            data[len(data) // 2] ^= 0x40
        return memoryview(data)

    def get(self, key: str) -> bytes:
        return bytes(self.get_view(key))


def test_a_segment_read_back_different_is_shipped_again_not_checkpointed(tmp_path):
    inner = open_target(f"file://{tmp_path}/t")
    target = _LyingReads(inner, lies=2)
    opts = BackupOptions(target=target, interval_seconds=0.01, backoff_max_seconds=0.02)
    with engine.open(str(tmp_path / "db"), backup=opts) as db:
        for i in range(20):
            db.append(f"s{i % 3}", "e", os.urandom(50))
        result = db.backup.flush(timeout=30)
        assert result.flushed_through_tx == 20 and result.pending_txs == 0
        # both lies were seen: the read back refused, then the leftover found damaged
        # (removed), then shipped again and read back whole
        assert target.lies == 0
        assert_exactly_once(inner, db)
        ck = json.loads(inner.get(keys.checkpoint_key(db.db_id, 1)))
        assert ck["tx_id"] == 20


def test_a_target_that_keeps_lying_fails_the_flush_and_loses_nothing(tmp_path):
    inner = open_target(f"file://{tmp_path}/t")
    target = _LyingReads(inner, lies=10**6)  # never stops lying
    opts = BackupOptions(target=target, interval_seconds=0.01, backoff_max_seconds=0.02)
    with engine.open(str(tmp_path / "db"), backup=opts) as db:
        db.append("s", "e", b"x")
        with pytest.raises(engine.BackupError):
            db.backup.flush(timeout=1)
        st = db.backup.status()
        assert st.checkpoint_tx in (0, None) and st.lag_txs == 1
        err = st.last_error or ""
        # it alternates: the read back refused, then the leftover found damaged, removed
        assert ".seg" in err and ("differs from what was written" in err or "damaged" in err)
        target.lies = 0  # the target is honest again: the tx ships
        assert db.backup.flush(timeout=30).flushed_through_tx == 1


def test_a_failing_target_stays_failing_across_retries_and_is_logged_once(tmp_path, caplog):
    # Each retry observes the target again; that must not report "running" (nor clear
    # last_error, nor log the failure anew) until a segment actually ships.
    inner = open_target(f"file://{tmp_path}/t")
    target = FaultyTarget(inner, fail_keys=["*.seg"])
    opts = BackupOptions(target=target, interval_seconds=0.005, backoff_max_seconds=0.01)
    caplog.set_level("WARNING", logger="engine.backup")
    with engine.open(str(tmp_path / "db"), backup=opts) as db:
        db.append("s", "e", b"x")
        seen = set()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            st = db.backup.status()
            seen.add((st.state, st.last_error is not None))
            time.sleep(0.002)
        assert target.injected_by_op["put"] >= 5  # it did retry, many times
        assert ("failing", True) in seen
        assert not any(state == "running" for state, _ in seen), seen
        failing_logs = [r for r in caplog.records  # this database's (not a lingering one's)
                        if "is failing" in r.getMessage() and str(tmp_path) in r.getMessage()]
        assert len(failing_logs) == 1
        target.fail_keys = ()  # the target recovers: shipping resumes, state says so
        assert db.backup.flush(timeout=30).flushed_through_tx == 1
        st = db.backup.status()
        assert st.state == "running" and st.last_error is None
