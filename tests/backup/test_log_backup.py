"""Continuous log backup: shipping, flush, pause/resume, stale control requests,
outages, fencing and reopen, against file and memory targets (the S3 target is in
test_log_backup_s3.py)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid

import pytest

import engine
from engine.backup import keys
from engine.backup.faults import FaultyTarget
from engine.backup.segment import decode_segment
from engine.backup.targets import open_target
from engine.backup.uploader import BackupOptions, Control, next_observation_id

from .logcheck import assert_exactly_once, assert_restore_equals


@pytest.fixture(params=["file", "memory", "s3"])
def url(request, tmp_path):  # type: ignore[no-untyped-def]
    """A fresh target of each backend: a URL (file, memory) or TargetOptions (the real S3
    server of the session)."""
    if request.param == "file":
        return f"file://{tmp_path}/target"
    if request.param == "memory":
        return f"memory://logbackup-{os.getpid()}-{id(request)}-{time.monotonic_ns()}"
    server = request.getfixturevalue("s3_server")
    return server.options(f"logbackup-{uuid.uuid4().hex[:12]}")


def _fill(db: engine.Database, n: int, prefix: str = "s") -> None:
    for i in range(n):
        db.append(f"{prefix}{i % 7}", "e", b"v%d" % i)


def test_flush_ships_everything_committed_and_segments_verify(db_path, url):
    with engine.open(db_path, backup=url) as db:
        _fill(db, 120)
        with db.transaction() as tx:
            tx.extend([(f"m{i}", "e", b"x" * 50) for i in range(300)])
        r = db.backup.flush()
        assert (r.epoch, r.flushed_through_tx, r.pending_txs) == (1, 121, 0)
        assert r.seconds >= 0
        st = db.backup.status()
        assert st.state == "running" and st.checkpoint_tx == 121 and st.lag_txs == 0
        assert st.lag_seconds == 0.0 and st.segments_shipped >= 1 and st.bytes_shipped > 0
        target = open_target(url)
        assert_exactly_once(target, db)
        # the checkpoint object and the log's meta say the same
        ck = json.loads(target.get(keys.checkpoint_key(db.db_id, 1)))
        assert ck["tx_id"] == 121
        meta = json.loads(db._log.get_meta(engine.formats.META_BACKUP))
        assert meta["checkpoint_tx"] == 121 and meta["target"] == target.url


def test_flush_with_nothing_pending_returns_at_once(db_path, url):
    with engine.open(db_path, backup=url) as db:
        db.append("s", "e", b"1")
        db.backup.flush()
        r = db.backup.flush()
        assert r.flushed_through_tx == 1 and r.pending_txs == 0 and r.seconds < 0.5


def test_shipping_follows_commits_without_a_flush(db_path, url):
    opts = BackupOptions(target=url, interval_seconds=0.01)
    with engine.open(db_path, backup=opts) as db:
        _fill(db, 30)
        deadline = time.monotonic() + 10
        while db.backup.status().checkpoint_tx < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert db.backup.status().checkpoint_tx == 30


def test_close_flushes(db_path, url):
    with engine.open(db_path, backup=BackupOptions(target=url, interval_seconds=60)) as db:
        _fill(db, 40)  # a 60 s interval: only close() can have shipped these
        db_id = db.db_id
    from .logcheck import shipped_records

    assert [t for t, _ in shipped_records(open_target(url), db_id)] == list(range(1, 41))


def test_concurrent_flushes_share_rounds_during_writes(db_path, url):
    with engine.open(db_path, sync="group", backup=url) as db:
        stop = threading.Event()
        errors: list[BaseException] = []
        results = []

        def writer(w: int) -> None:
            while not stop.is_set():
                db.append(f"w{w}", "e", b"x")

        def flusher() -> None:
            try:
                for _ in range(5):
                    before = db.position.tx_id
                    r = db.backup.flush(timeout=30)
                    assert r.flushed_through_tx >= before  # everything before the call
                    results.append(r)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        ws = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
        fs = [threading.Thread(target=flusher) for _ in range(4)]
        for t in ws + fs:
            t.start()
        for t in fs:
            t.join()
        stop.set()
        for t in ws:
            t.join()
        assert not errors and len(results) == 20
        db.backup.flush()
        assert_exactly_once(open_target(url), db)


def test_pause_stops_shipping_and_resume_ships_the_backlog(db_path, url):
    with engine.open(db_path, backup=url) as db:
        _fill(db, 10)
        db.backup.flush()
        db.backup.pause()
        _fill(db, 15, "p")
        time.sleep(0.3)
        st = db.backup.status()
        assert st.state == "paused" and st.checkpoint_tx == 10 and st.lag_txs == 15
        assert st.lag_seconds > 0
        with pytest.raises(engine.BackupError, match="paused"):
            db.backup.flush(timeout=1)
        db.backup.resume()
        assert db.backup.flush().flushed_through_tx == 25
        assert_exactly_once(open_target(url), db)


def test_a_stale_stop_never_tears_down_the_live_observation(db_path, url):
    """tikv#18243/#18290: a stop issued before a start, but arriving after it, is stale."""
    with engine.open(db_path, backup=url) as db:
        stale_stop = Control("stop", next_observation_id(), "a slow source")
        live_start = Control("start", next_observation_id(), "a fast source")
        db.backup.submit(live_start)
        db.backup.submit(stale_stop)  # arrives late: older id
        _fill(db, 5)
        assert db.backup.flush().flushed_through_tx == 5  # still observing
        st = db.backup.status()
        assert st.state == "running" and st.stale_requests_ignored == 1
        db.backup.submit(stale_stop)  # a duplicate of a stale request: ignored again
        db.backup.submit(live_start)  # and a duplicate of the applied one
        db.append("x", "e", b"1")
        assert db.backup.flush().flushed_through_tx == 6
        assert db.backup.status().stale_requests_ignored == 3


def test_txs_committed_while_no_backup_ran_ship_when_one_runs_again(db_path, url):
    with engine.open(db_path, backup=url) as db:
        _fill(db, 10)
    with engine.open(db_path) as db:  # no backup=
        _fill(db, 20, "offline")
    with engine.open(db_path, backup=url) as db:
        db.append("back", "e", b"1")
        assert db.backup.flush().flushed_through_tx == 31
        assert_exactly_once(open_target(url), db)


def test_a_target_outage_fails_flush_loses_nothing_and_ships_after(db_path, tmp_path):
    faulty = FaultyTarget(open_target(f"file://{tmp_path}/t"))
    opts = BackupOptions(target=faulty, backoff_max_seconds=0.05)
    with engine.open(db_path, backup=opts) as db:
        _fill(db, 5)
        db.backup.flush()
        faulty.outage()
        _fill(db, 5, "during")
        with pytest.raises(engine.TransientBackupError, match=r"timed out.*Nothing is lost"):
            db.backup.flush(timeout=0.3)
        st = db.backup.status()
        assert st.state == "failing" and st.last_error and st.checkpoint_tx == 5
        assert st.lag_txs == 5
        faulty.restore_service()
        assert db.backup.flush(timeout=10).flushed_through_tx == 10
        assert db.backup.status().state == "running"
        assert_exactly_once(faulty, db)


def test_a_partial_write_is_replaced_not_trusted(db_path, tmp_path):
    inner = open_target(f"file://{tmp_path}/t")
    faulty = FaultyTarget(inner, fail_keys=[".seg"], fail_after_partial_write=True,
                          ops={"put"})
    opts = BackupOptions(target=faulty, backoff_max_seconds=0.02)
    with engine.open(db_path, backup=opts) as db:
        _fill(db, 8)
        with pytest.raises(engine.TransientBackupError):
            db.backup.flush(timeout=0.3)
        faulty.fail_keys = ()
        assert db.backup.flush(timeout=10).flushed_through_tx == 8
        assert_exactly_once(inner, db)


def test_a_newer_epoch_in_the_target_fences_the_old_writer(db_path, tmp_path, url):
    """The database is restored elsewhere (epoch 2 claimed); the old process stops."""
    with engine.open(db_path, backup=BackupOptions(target=url, fence_check_seconds=0.05)) as db:
        _fill(db, 5)
        db.backup.flush()
        target = open_target(url)
        target.put(keys.claim_key(db.db_id, 2), json.dumps(
            {"format": 1, "db_id": db.db_id, "epoch": 2, "first_tx": 6, "writer": "other",
             "history": []}).encode(), create_only=True)
        before = {o.key: o.size for o in target.list("")}
        _fill(db, 5, "late")
        deadline = time.monotonic() + 10
        while db.backup.status().state != "fenced" and time.monotonic() < deadline:
            time.sleep(0.02)
        st = db.backup.status()
        assert st.state == "fenced" and "epoch 2" in (st.last_error or "")
        with pytest.raises(engine.BackupFencedError):
            db.backup.flush(timeout=1)
        after = {o.key: o.size for o in target.list("")}
        assert after == before  # nothing written or deleted after the fence
        assert db.append("still", "e", b"writes go on") == 11


def test_another_writer_of_the_same_epoch_is_fenced(tmp_path, url):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    with engine.open(a, backup=url) as db:
        _fill(db, 3)
    import shutil

    shutil.copytree(a, b)
    # b is a copy (same db_id, epoch, token): give it another writer token, diverge it
    with engine.open(b) as db:
        db._log.put_meta(engine.formats.META_BACKUP, json.dumps({"writer": "x"}).encode())
        db.append("diverged", "e", b"b")
    with engine.open(b, backup=url) as db:
        time.sleep(0.2)
        st = db.backup.status()
        assert st.state == "fenced" and "another writer" in (st.last_error or "")


def test_a_diverged_copy_with_the_same_token_is_fenced(tmp_path, url):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    with engine.open(a, backup=url) as db:
        _fill(db, 3)
    import shutil

    shutil.copytree(a, b)
    with engine.open(a, backup=url) as db:
        db.append("a-only", "e", b"a")  # ships tx 4 of copy a
    with engine.open(b) as db:
        db.append("b-only", "e", b"b")  # copy b has another tx 4
    with engine.open(b, backup=url) as db:
        deadline = time.monotonic() + 5
        while db.backup.status().state not in ("fenced",) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert db.backup.status().state == "fenced"


def test_restore_equals_the_source(db_path, tmp_path, url):
    with engine.open(db_path, backup=url) as db:
        _fill(db, 50)
        with db.transaction() as tx:
            tx.extend([(f"m{i}", "e", b"y") for i in range(100)])
        db.append("s1", "delete", b"")
        db.snapshot()
        _fill(db, 20, "t")
    out = tmp_path / "out"
    out.mkdir()
    assert_restore_equals(url, db_path, str(out))


def test_point_in_time_restore_is_exact(db_path, tmp_path, url):
    from engine.backup.restore import restore

    times = {}
    with engine.open(db_path, backup=BackupOptions(target=url, max_segment_txs=7)) as db:
        for i in range(1, 41):
            db.append(f"s{i % 3}", "e", b"%d" % i)
            times[i] = next(iter(db.read_log(i, i))).ts
            if i % 10 == 0:
                time.sleep(0.02)
    for cut in (1, 7, 8, 23, 40):
        dest = str(tmp_path / f"to-tx-{cut}")
        rep = restore(url, dest, to_tx=cut)
        assert rep.last_tx == cut
        with engine.open(dest) as r:
            assert r.position.tx_id == cut
            assert [t.tx_id for t in r.read_log(1)] == list(range(1, cut + 1))
            assert r.get(f"s{cut % 3}") == b"%d" % cut
    # --to-time picks the last tx committed at or before T
    t20 = times[20]
    dest = str(tmp_path / "to-time")
    rep = restore(url, dest, to_time=t20)
    assert rep.last_tx == max(i for i, t in times.items() if t <= t20)
    assert rep.last_tx >= 20


def test_restore_refuses_bad_points_and_a_non_empty_directory(db_path, tmp_path, url):
    from engine.backup.restore import restore

    with engine.open(db_path, backup=url) as db:
        _fill(db, 5)
        first_ts = next(iter(db.read_log(1, 1))).ts
    with pytest.raises(engine.InvalidEventError, match="outside the backup"):
        restore(url, str(tmp_path / "a"), to_tx=6)
    with pytest.raises(engine.InvalidEventError, match="to-tx must be"):
        restore(url, str(tmp_path / "a"), to_tx=0)
    with pytest.raises(engine.InvalidEventError, match="before the first transaction"):
        restore(url, str(tmp_path / "a"), to_time=first_ts - 3600)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("keep me")
    with pytest.raises(engine.EngineError, match="not an empty directory"):
        restore(url, str(busy))
    assert (busy / "x").read_text() == "keep me"
    assert not (tmp_path / "a").exists()


def _one_segment_key(url: str, db_id: str, index: int) -> str:
    t = open_target(url)
    segs = sorted(o.key for o in t.list(keys.log_prefix(db_id, 1)) if o.key.endswith(".seg"))
    return segs[index]


def test_restore_fails_fast_naming_a_corrupt_segment(db_path, tmp_path, url):
    from engine.backup.restore import restore

    with engine.open(db_path, backup=BackupOptions(target=url, max_segment_txs=5)) as db:
        _fill(db, 20)
        db_id = db.db_id
    key = _one_segment_key(url, db_id, 2)
    t = open_target(url)
    data = bytearray(t.get(key))
    data[200] ^= 0xFF
    t.put(key, bytes(data))
    with pytest.raises(engine.BackupError, match=key.rsplit("/", 1)[1]):
        restore(url, str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()
    assert not [n for n in os.listdir(tmp_path) if ".restore-" in n]  # nothing left behind


def test_restore_fails_naming_a_missing_segment(db_path, tmp_path, url):
    from engine.backup.restore import restore

    with engine.open(db_path, backup=BackupOptions(target=url, max_segment_txs=5)) as db:
        _fill(db, 20)
        db_id = db.db_id
    key = _one_segment_key(url, db_id, 1)
    first, last = keys.parse_segment_key(key, db_id, 1)  # type: ignore[misc]
    open_target(url).delete(key)
    with pytest.raises(engine.BackupError, match=rf"gap: txs {first}\.\.{last} .* missing"):
        restore(url, str(tmp_path / "r"))
    rep = restore(url, str(tmp_path / "r"), to_tx=first - 1)  # up to the gap still works
    assert rep.last_tx == first - 1


def test_restore_follows_the_newest_epoch_not_an_older_timeline(db_path, tmp_path, url):
    """litestream#631: epoch 1 went on past the fork; restore takes epoch 2's lineage."""
    from engine.backup.restore import restore

    with engine.open(db_path, backup=url) as db:
        _fill(db, 10)
    r1 = str(tmp_path / "r1")
    restore(url, r1)  # a fork: epoch 2 starts at tx 11
    with engine.open(r1, backup=url) as db2:
        db2.append("epoch2", "e", b"new timeline")  # tx 11 of epoch 2
        assert db2.backup.flush().epoch == 2
    # the old writer (epoch 1) is fenced and ships nothing more: the old timeline's
    # extra txs, if any had been shipped past the fork, are not on the lineage
    r2 = str(tmp_path / "r2")
    rep = restore(url, r2)
    assert rep.restored_epoch == 2 and rep.epochs == [1, 2] and rep.last_tx == 11
    with engine.open(r2) as db3:
        assert db3.get("epoch2") == b"new timeline"
        assert [e.epoch for t in db3.read_log(10, 11) for e in t.events] == [1, 2]
        assert db3.position.epoch == 3


def test_restore_asks_which_database_when_the_target_holds_several(tmp_path, url):
    from engine.backup.restore import restore

    for name in ("a", "b"):
        with engine.open(str(tmp_path / name), backup=url) as db:
            db.append("s", "e", name.encode())
    with pytest.raises(engine.DatabaseMismatchError, match="--db-id"):
        restore(url, str(tmp_path / "r"))
    with engine.open(str(tmp_path / "b")) as db:
        want = db.db_id
    rep = restore(url, str(tmp_path / "r"), db_id=want)
    assert rep.db_id == want
    with pytest.raises(engine.DatabaseMismatchError, match="no backup of database"):
        restore(url, str(tmp_path / "r2"), db_id="00000000-0000-0000-0000-000000000000")


def test_bad_backup_urls_are_refused_and_open_nothing(tmp_path):
    for bad, why in [("ftp://host/x", "scheme"), ("file://relative/dir", "absolute"),
                     ("s3://ab/x", "bucket")]:
        with pytest.raises(engine.InvalidTargetError, match=why):
            engine.open(str(tmp_path / "db"), backup=bad)
        assert not (tmp_path / "db").exists()
    with pytest.raises(engine.InvalidTargetError):
        engine.open(str(tmp_path / "db"), backup=42)


def test_credentials_never_appear_in_status_or_logs(db_path, caplog):
    from engine.backup.targets import TargetOptions

    secret = "SECRET-do-not-print-1234"
    opts = TargetOptions(url="s3://nobucket-here/p", endpoint="http://127.0.0.1:9",
                         region="us-east-1", access_key_id="AKIDEXAMPLE",
                         secret_access_key=secret, allow_http=True, timeout_seconds=0.5,
                         connect_timeout_seconds=0.2)
    caplog.set_level(logging.DEBUG, logger="engine")
    with engine.open(db_path, backup=BackupOptions(target=opts, close_timeout_seconds=0.2,
                                                   backoff_max_seconds=0.05)) as db:
        db.append("s", "e", b"1")
        with pytest.raises(engine.BackupError) as ei:
            db.backup.flush(timeout=0.5)
        st = db.backup.status()
        assert st.state == "failing"
        text = " ".join([str(ei.value), repr(st), json.dumps(st.to_json()), caplog.text])
        assert secret not in text and "AKIDEXAMPLE" not in text


def test_recover_from_backup_loses_only_what_was_never_shipped(db_path, tmp_path, url):
    import shutil

    from engine.backup.recover import backup_tail
    from engine.lock import DirLock
    from engine.ops.recover import recover_new_epoch

    with engine.open(db_path, backup=url) as db:
        _fill(db, 10)
        db.snapshot()  # snapshot at tx 10
        _fill(db, 15, "after")  # txs 11..25, shipped on close
        want = {s: db.get(s) for s in db.streams()}
    shutil.rmtree(os.path.join(db_path, "log"))  # the log is lost
    with pytest.raises(engine.LogMissingError):
        engine.open(db_path)
    lock = DirLock(db_path)
    try:
        report = recover_new_epoch(db_path, tail=backup_tail(url))
    finally:
        lock.release()
    assert report.new_epoch == 2 and report.next_tx == 26
    assert "never shipped" in report.lost
    with engine.open(db_path) as db:
        assert db.position == engine.Position(2, 25)
        assert {s: db.get(s) for s in db.streams()} == want
        assert [t.tx_id for t in db.read_log(1)] == list(range(1, 26))  # history is back
        assert [e.version for e in db.read_stream("s2")] == [1, 2]  # txs 3 and 10
        db.append("s", "e", b"new")
        assert next(iter(db.read_log(26))).epoch == 2


def test_recover_from_backup_cli(db_path, url, monkeypatch):
    import shutil

    from click.testing import CliRunner

    from engine.backup.targets import TargetOptions
    from engine.cli import main

    if isinstance(url, TargetOptions):  # the CLI takes a URL and the usual AWS_* variables
        for var, value in (("AWS_ENDPOINT_URL", url.endpoint), ("AWS_REGION", url.region),
                           ("AWS_ACCESS_KEY_ID", url.access_key_id),
                           ("AWS_SECRET_ACCESS_KEY", url.secret_access_key),
                           ("AWS_ALLOW_HTTP", "true"),
                           ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false")):
            monkeypatch.setenv(var, value or "")
        url = url.url

    with engine.open(db_path, backup=url) as db:
        _fill(db, 5)
        db.snapshot()
        _fill(db, 5, "x")
    shutil.rmtree(os.path.join(db_path, "log"))
    res = CliRunner().invoke(main, ["recover", "--new-epoch", "--from-backup", url, db_path,
                                    "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["next_tx"] == 11 and any("from the log backup" in n for n in rep["notes"])


def test_segments_carry_the_records_byte_for_byte(db_path, url):
    with engine.open(db_path, backup=url) as db:
        _fill(db, 12)
        db.backup.flush()
        t = open_target(url)
        for o in t.list(keys.log_prefix(db.db_id, 1)):
            if not o.key.endswith(".seg"):
                continue
            h, records = decode_segment(t.get(o.key), o.key)
            assert h.db_id == db.db_id and h.epoch == 1
            for tx_id, rec in records:
                assert rec == db._log.get(tx_id)
