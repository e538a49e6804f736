"""Full backups (issue: backup full/list/verify/prune, restore --backup): round trips,
transient and permanent faults, resume, integrity, unsafe manifests, consistency under
writers, point in time with the log backup; against file, memory and the real S3 server."""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
import uuid

import pytest
import xxhash

import engine
from engine.backup import keys
from engine.backup.faults import FaultyTarget
from engine.backup.full import (
    MANIFEST_FORMAT,
    BackupIntegrityError,
    _canonical,
    backup_full,
    list_backups,
    parse_manifest,
    prune_backups,
    restore_full,
    verify_backup,
)
from engine.backup.retry import retry_attempts
from engine.backup.targets import Target, open_target
from engine.errors import (
    BackupError,
    InvalidEventError,
    OptionsError,
    PermanentBackupError,
    StorageError,
    TransientBackupError,
)

PART = 64 << 10  # the smallest part size: a few hundred KiB snapshot goes up in parts
FAST = {"backoff_max": 0.002, "retries": 30}


@pytest.fixture(params=["file", "memory", "s3"])
def url(request, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "file":
        return f"file://{tmp_path}/target"
    if request.param == "memory":
        return f"memory://fullbackup-{os.getpid()}-{id(request)}-{time.monotonic_ns()}"
    server = request.getfixturevalue("s3_server")
    return server.options(f"fullbackup-{uuid.uuid4().hex[:12]}")


def fill(db: engine.Database, n: int, start: int = 0, streams: int = 50) -> None:
    """Incompressible values, so the snapshot is several parts of PART bytes."""
    with db.transaction() as tx:
        for i in range(start, start + n):
            tx.append(f"s{i % streams}", "e", os.urandom(16) + b"%d" % i)
    for i in range(start, start + n, 10):
        db.append(f"big{(i // 10) % 60}", "e", os.urandom(4000))


def state_of(db: engine.Database) -> dict[str, tuple[int, bytes | None]]:
    return {s: (db.version(s), db.get(s)) for s in db.streams()}


def fold(db: engine.Database, to_tx: int) -> dict[str, tuple[int, bytes | None]]:
    """The state at ``to_tx`` from the log (the default reducer)."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for t in db.read_log(1, to_tx):
        for e in t.events:
            out[e.stream] = (e.version, None if e.type == "delete" else e.data)
    return out


def opened(path: str) -> dict[str, tuple[int, bytes | None]]:
    with engine.open(path, create=False) as db:
        return state_of(db)


def manifest_of(target: Target, db_id: str, backup_id: str) -> dict:
    return json.loads(target.get(keys.manifest_key(db_id, backup_id)))


def test_backup_and_restore_round_trip_in_parts(tmp_path, url):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        fill(db, 2000)
        expected, pos = state_of(db), db.position
        info = db.backup_full(url, part_size=PART)
        assert (info.epoch, info.tx_id, info.files) == (pos.epoch, pos.tx_id, 1)
        assert info.parts >= 3 and info.bytes > 2 * PART and info.retry_attempts == 0
    target = open_target(url)
    m = manifest_of(target, info.db_id, info.id)
    assert m["format"] == MANIFEST_FORMAT and m["version"] == 1
    assert (m["backup_id"], m["db_id"], m["epoch"], m["tx_id"]) == (info.id, info.db_id, 1,
                                                                    pos.tx_id)
    assert m["engine_version"] and m["started"] <= m["finished"] and m["history"]
    f = m["files"][0]
    snap = os.path.join(path, "snapshots", f["name"])
    with open(snap, "rb") as fh:
        raw = fh.read()
    assert f["size"] == len(raw) and f["xxh64"] == f"{xxhash.xxh64_intdigest(raw):016x}"
    assert [p["key"] for p in f["parts"]] == [f"files/{f['name']}.part-{i:06d}"
                                              for i in range(info.parts)]
    for p in f["parts"]:  # every part is in the target, as the manifest says
        data = target.get(keys.backup_prefix(info.db_id, info.id) + p["key"])
        assert len(data) == p["size"] and f"{xxhash.xxh64_intdigest(data):016x}" == p["xxh64"]
    [entry] = list_backups(url)
    assert entry.complete and entry.tx_id == pos.tx_id and entry.bytes == len(raw)
    assert verify_backup(url, info.id).ok
    rep = restore_full(url, str(tmp_path / "restored"))
    assert (rep.backup_id, rep.last_tx, rep.new_epoch) == (info.id, pos.tx_id, 2)
    assert opened(str(tmp_path / "restored")) == expected
    with engine.open(str(tmp_path / "restored"), create=False) as r:
        assert r.db_id == info.db_id and r.position == engine.Position(2, pos.tx_id)
        assert r.append("s0", "e", b"after") == pos.tx_id + 1


def test_a_closed_database_is_backed_up_at_its_last_tx(tmp_path, url):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        fill(db, 300)
        db.snapshot()
        fill(db, 100, start=300)  # after the newest snapshot: still in the backup
        expected, last = state_of(db), db.position.tx_id
    info = backup_full(path, url)
    assert info.tx_id == last
    restore_full(url, str(tmp_path / "r"), backup=info.id)
    assert opened(str(tmp_path / "r")) == expected


def test_thirty_percent_transient_faults_backup_and_restore_exact(tmp_path, url, caplog):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        fill(db, 2000)
        expected = state_of(db)
    before = retry_attempts()
    faulty = FaultyTarget(open_target(url), fail_rate=0.3, seed=11)
    with caplog.at_level(logging.WARNING, logger="engine.backup"):
        info = backup_full(path, faulty, part_size=PART, **FAST)
    # every injected failure was retried, counted, logged once
    assert faulty.injected > 0 and info.retry_attempts == faulty.injected
    assert retry_attempts()["backup"] - before["backup"] == faulty.injected
    logged = [r for r in caplog.records if "retrying" in r.getMessage()
              and r.getMessage().startswith("backup:")]
    assert len(logged) == faulty.injected
    assert any(" part " in r.getMessage() and "sleeping" in r.getMessage() for r in logged)
    assert verify_backup(url, info.id).ok
    faulty_r = FaultyTarget(open_target(url), fail_rate=0.3, seed=5)
    rep = restore_full(faulty_r, str(tmp_path / "r"), **FAST)
    assert faulty_r.injected > 0 and rep.retry_attempts == faulty_r.injected
    assert retry_attempts()["restore"] - before["restore"] == faulty_r.injected
    assert opened(str(tmp_path / "r")) == expected


def test_torn_retried_writes_end_whole_with_their_true_checksums(tmp_path, url):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        fill(db, 2000)
        expected = state_of(db)
    faulty = FaultyTarget(open_target(url), fail_rate=0.3, seed=3,
                          fail_after_partial_write=True)
    info = backup_full(path, faulty, part_size=PART, **FAST)
    assert faulty.injected_by_op["put"] > 0 and info.retry_attempts > 0
    target = open_target(url)
    m = manifest_of(target, info.db_id, info.id)
    with open(os.path.join(path, "snapshots", m["files"][0]["name"]), "rb") as fh:
        raw = fh.read()
    assert m["files"][0]["xxh64"] == f"{xxhash.xxh64_intdigest(raw):016x}"
    joined = b"".join(target.get(keys.backup_prefix(info.db_id, info.id) + p["key"])
                      for p in m["files"][0]["parts"])
    assert joined == raw  # whole in the target, not the torn halves
    assert verify_backup(url, info.id).ok
    restore_full(url, str(tmp_path / "r"))
    assert opened(str(tmp_path / "r")) == expected


def test_one_file_failing_permanently_leaves_an_incomplete_backup(tmp_path, url):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        fill(db, 500)
        good = db.backup_full(url, part_size=PART)
        expected = state_of(db)
        fill(db, 1500, start=500)
        last = db.position.tx_id
    faulty = FaultyTarget(open_target(url), fail_keys=["part-000002"], transient=False,
                          ops={"put"})
    t0 = time.monotonic()
    with pytest.raises(PermanentBackupError, match="part-000002"):
        backup_full(path, faulty, part_size=PART, backoff_max=1.0)
    assert time.monotonic() - t0 < 5 and faulty.injected == 1  # failed at once
    entries = list_backups(url)
    assert [e.complete for e in entries] == [True, False]
    bad = entries[1]
    assert bad.tx_id == last and "incomplete" in (bad.problem or "")
    target = open_target(url)
    assert target.head(keys.manifest_key(bad.db_id, bad.id)) is None
    with pytest.raises(BackupIntegrityError, match="incomplete"):
        restore_full(url, str(tmp_path / "r1"), backup=bad.id)
    assert not os.path.exists(tmp_path / "r1")
    rep = restore_full(url, str(tmp_path / "r2"), backup=bad.id, fallback=True)
    assert rep.backup_id == good.id and rep.fell_back_from == [bad.id]
    assert f"falling back to {good.id}" in rep.notes[0]
    assert opened(str(tmp_path / "r2")) == expected
    # latest is the newest *complete* one
    assert restore_full(url, str(tmp_path / "r3")).backup_id == good.id
    # a re-run resumes the failed backup: the verified parts are not sent again
    again = FaultyTarget(open_target(url))
    info = backup_full(path, again, part_size=PART)
    assert info.id == bad.id and info.resumed_parts >= 2 and info.tx_id == last
    assert again.calls["put"] == info.parts - info.resumed_parts + 1  # + the manifest
    assert [e.complete for e in list_backups(url)] == [True, True]
    assert verify_backup(url, info.id).ok


def test_altered_or_deleted_file_is_caught_by_verify_and_restore(tmp_path, url):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        fill(db, 500)
        first = db.backup_full(url, part_size=PART)
        early = state_of(db)
        fill(db, 500, start=500)
        second = db.backup_full(url, part_size=PART)
    target = open_target(url)
    m = manifest_of(target, second.db_id, second.id)
    k1 = keys.backup_prefix(second.db_id, second.id) + m["files"][0]["parts"][1]["key"]
    data = bytearray(target.get(k1))
    data[100] ^= 0xFF
    target.put(k1, bytes(data))
    rep = verify_backup(url, second.id)
    assert not rep.ok and k1 in rep.problems[0]
    with pytest.raises(BackupIntegrityError, match=k1.replace(".", r"\.")):
        restore_full(url, str(tmp_path / "r1"), backup=second.id)
    assert not os.path.exists(tmp_path / "r1")
    assert not [p for p in os.listdir(tmp_path) if ".restore-" in p]  # nothing left over
    k0 = keys.backup_prefix(first.db_id, first.id) + manifest_of(
        target, first.db_id, first.id)["files"][0]["parts"][0]["key"]
    r = restore_full(url, str(tmp_path / "r2"), backup=second.id, fallback=True)
    assert r.backup_id == first.id and opened(str(tmp_path / "r2")) == early
    target.delete(k0)
    rep = verify_backup(url, first.id)
    assert not rep.ok and "missing" in rep.problems[0] and k0 in rep.problems[0]
    with pytest.raises(BackupIntegrityError, match="missing"):
        restore_full(url, str(tmp_path / "r3"), backup=first.id)
    with pytest.raises(BackupIntegrityError, match="no usable full backup"):
        restore_full(url, str(tmp_path / "r4"), fallback=True)


def _evil(target: Target, db_id: str, backup_id: str, mutate) -> None:  # type: ignore[no-untyped-def]
    m = manifest_of(target, db_id, backup_id)
    mutate(m)
    m["checksum"] = f"{xxhash.xxh64_intdigest(_canonical(m)):016x}"
    target.delete(keys.manifest_key(db_id, backup_id))
    target.put(keys.manifest_key(db_id, backup_id), json.dumps(m).encode())


@pytest.mark.parametrize("how", ["dotdot", "absolute", "subdir", "symlink", "hardlink",
                                 "duplicate", "part_key"])
def test_unsafe_manifests_are_refused(tmp_path, url, how):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        fill(db, 200)
        info = db.backup_full(url)
    target = open_target(url)

    def mutate(m: dict) -> None:
        f = m["files"][0]
        if how == "dotdot":
            f["name"] = "../../escaped.snap"
        elif how == "absolute":
            f["name"] = str(tmp_path / "escaped.snap")
        elif how == "subdir":
            f["name"] = "sub/1-200.snap"
        elif how in ("symlink", "hardlink"):
            f["type"] = how
            f["target"] = "/etc/passwd"
        elif how == "duplicate":
            m["files"].append(dict(f))
        else:
            f["parts"][0]["key"] = "../../../other/files/x"

    _evil(target, info.db_id, info.id, mutate)
    with pytest.raises(BackupIntegrityError) as exc:
        restore_full(url, str(tmp_path / "r"), backup=info.id)
    assert "manifest" in str(exc.value)
    assert not os.path.exists(tmp_path / "r") and not os.path.exists(tmp_path / "escaped.snap")
    assert not [e for e in list_backups(url) if e.complete]  # listed as not usable
    with pytest.raises(BackupIntegrityError):
        parse_manifest(target.get(keys.manifest_key(info.db_id, info.id)),
                       where="m", db_id=info.db_id, backup_id=info.id)


def test_a_tampered_manifest_fails_its_checksum(tmp_path):
    url = f"file://{tmp_path}/t"
    with engine.open(str(tmp_path / "db")) as db:
        db.append("s", "e", b"1")
        info = db.backup_full(url)
    target = open_target(url)
    m = manifest_of(target, info.db_id, info.id)
    m["tx_id"] = 99
    with pytest.raises(BackupIntegrityError, match="checksum"):
        parse_manifest(json.dumps(m).encode(), where="m", db_id=info.db_id,
                       backup_id=info.id)


def test_a_backup_taken_while_writers_commit_is_consistent(tmp_path, url):
    path = str(tmp_path / "db")
    stop = threading.Event()
    with engine.open(path, sync="none") as db:
        fill(db, 300)

        def writer(w: int) -> None:
            i = 0
            while not stop.is_set():
                with db.transaction() as tx:  # two streams move together
                    tx.append(f"a{w}", "e", b"%d" % i)
                    tx.append(f"b{w}", "e", b"%d" % i)
                i += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.1)
        info = db.backup_full(url, part_size=PART)
        time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join()
        assert db.position.tx_id > info.tx_id > 300
        at_backup = fold(db, info.tx_id)
    restore_full(url, str(tmp_path / "r"))
    got = opened(str(tmp_path / "r"))
    assert got == at_backup
    for w in range(3):
        if f"a{w}" in got:
            assert got[f"a{w}"][1] == got[f"b{w}"][1]


def test_point_in_time_past_the_backup_replays_the_log_backup(tmp_path, url):
    path = str(tmp_path / "db")
    with engine.open(path, backup=url) as db:
        for i in range(100):
            db.append(f"s{i % 9}", "e", b"%d" % i)
        info = db.backup_full(url)
        for i in range(100, 160):
            db.append(f"s{i % 9}", "e", b"%d" % i)
        t_cut = time.time()
        time.sleep(0.02)
        for i in range(160, 200):
            db.append(f"s{i % 9}", "e", b"%d" % i)
        db.backup.flush()
        at130, at160, at200 = fold(db, 130), fold(db, 160), state_of(db)
    assert info.tx_id == 100
    rep = restore_full(url, str(tmp_path / "r130"), to_tx=130)
    assert (rep.backup_tx, rep.last_tx) == (100, 130) and rep.segments >= 1
    assert opened(str(tmp_path / "r130")) == at130
    rep = restore_full(url, str(tmp_path / "rt"), to_time=t_cut)
    assert rep.last_tx == 160 and opened(str(tmp_path / "rt")) == at160
    rep = restore_full(url, str(tmp_path / "r200"), backup=info.id, to_tx=200)
    assert opened(str(tmp_path / "r200")) == at200
    with pytest.raises(BackupError, match="reaches tx 200"):
        restore_full(url, str(tmp_path / "rx"), to_tx=201)
    with pytest.raises(BackupError):  # latest at or before tx 50: there is none
        restore_full(url, str(tmp_path / "ry"), to_tx=50)
    with pytest.raises(InvalidEventError):
        restore_full(url, str(tmp_path / "rz"), backup=info.id, to_tx=50)


def test_prune_keeps_the_newest_and_never_log_segments(tmp_path, url):
    path = str(tmp_path / "db")
    with engine.open(path, backup=url) as db:
        ids = []
        for round_ in range(3):
            for i in range(20):
                db.append("s", "e", b"%d-%d" % (round_, i))
            ids.append(db.backup_full(url).id)
        db.backup.flush()
        db_id = db.db_id
    faulty = FaultyTarget(open_target(url), fail_keys=["manifest.json"], transient=False,
                          ops={"put"})
    with engine.open(path, create=False) as db:
        db.append("s", "e", b"more")
        with pytest.raises(PermanentBackupError):
            db.backup_full(faulty)  # an incomplete one newer than every complete one
    target = open_target(url)
    segments = sorted(i.key for i in target.list(f"{db_id}/log/"))
    with pytest.raises(OptionsError):
        prune_backups(url, 0)
    dry = prune_backups(url, 2, dry_run=True)
    assert dry.deleted == ids[:1] and dry.objects > 0
    assert len(list_backups(url)) == 4
    rep = prune_backups(url, 2)
    assert rep.deleted == ids[:1]
    left = list_backups(url)
    assert [e.id for e in left if e.complete] == ids[1:] and len(left) == 3
    assert sorted(i.key for i in target.list(f"{db_id}/log/")) == segments
    # the oldest kept backup's point in time still replays the log past it
    r = restore_full(url, str(tmp_path / "r"), backup=ids[1], to_tx=60)
    assert (r.backup_tx, r.last_tx) == (40, 60)
    assert prune_backups(url, 1).deleted == ids[1:2]
    assert [e.id for e in list_backups(url) if e.complete] == ids[2:]


def test_local_disk_full_fails_at_once(tmp_path, monkeypatch):
    url = f"file://{tmp_path}/t"
    with engine.open(str(tmp_path / "db")) as db:
        fill(db, 100)
        db.backup_full(url)
    import engine.backup.full as full

    def full_disk(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(full.os, "pwrite", full_disk)
    t0 = time.monotonic()
    with pytest.raises(StorageError, match="No space left"):
        restore_full(url, str(tmp_path / "r"), backoff_max=1.0)
    assert time.monotonic() - t0 < 2 and not os.path.exists(tmp_path / "r")


def test_retries_are_bounded(tmp_path):
    url = f"file://{tmp_path}/t"
    with engine.open(str(tmp_path / "db")) as db:
        db.append("s", "e", b"1")
        always = FaultyTarget(open_target(url), fail_rate=1.0)
        with pytest.raises(TransientBackupError, match=r"gave up .* after 3 attempt"):
            db.backup_full(always, retries=2, backoff_max=0.001)
        assert always.injected == 3
        t0 = time.monotonic()
        with pytest.raises(TransientBackupError, match="gave up"):
            db.backup_full(FaultyTarget(open_target(url), fail_rate=1.0), retries=1000,
                           backoff_max=0.01, timeout=0.3)
        assert time.monotonic() - t0 < 2


class SilentlyCorrupting(FaultyTarget):
    """Stores the first put of every file part with one byte flipped, and says nothing:
    only checking what the target holds can catch it."""

    def __init__(self, inner: Target) -> None:
        super().__init__(inner)
        self.seen: set[str] = set()

    def put(self, key: str, data, *, create_only: bool = False):  # type: ignore[no-untyped-def]
        if "/files/" in key and key not in self.seen:
            self.seen.add(key)
            bad = bytearray(data)
            bad[len(bad) // 2] ^= 0x01
            return self.inner.put(key, bytes(bad), create_only=create_only)
        return super().put(key, data, create_only=create_only)


@pytest.mark.parametrize("verify_by_read", [False, True])
def test_a_part_stored_wrong_without_an_error_is_caught_and_sent_again(tmp_path, url,
                                                                       verify_by_read):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        fill(db, 2000)
        expected = state_of(db)
    target = SilentlyCorrupting(open_target(url))
    info = backup_full(path, target, part_size=PART, verify_by_read=verify_by_read, **FAST)
    assert len(target.seen) == info.parts >= 3
    assert info.retry_attempts == info.parts  # each part: caught once, sent again once
    m = manifest_of(open_target(url), info.db_id, info.id)
    with open(os.path.join(path, "snapshots", m["files"][0]["name"]), "rb") as fh:
        assert m["files"][0]["xxh64"] == f"{xxhash.xxh64_intdigest(fh.read()):016x}"
    assert verify_backup(url, info.id).ok
    restore_full(url, str(tmp_path / "r"))
    assert opened(str(tmp_path / "r")) == expected


def test_no_such_bucket_fails_at_once(tmp_path, s3_server):
    with engine.open(str(tmp_path / "db")) as db:
        db.append("s", "e", b"1")
        opts = s3_server.options("x", url="s3://no-such-bucket-here/x")
        before = retry_attempts()["backup"]
        t0 = time.monotonic()
        with pytest.raises(PermanentBackupError, match="bucket"):
            db.backup_full(opts, backoff_max=1.0)
        assert time.monotonic() - t0 < 5 and retry_attempts()["backup"] == before


def test_the_snapshot_pruned_during_the_upload_is_still_backed_up_whole(tmp_path, url):
    path = str(tmp_path / "db")
    with engine.open(path, keep_snapshots=1) as db:
        fill(db, 2000)
        at_backup, at_tx = state_of(db), db.position.tx_id
        slow = FaultyTarget(open_target(url), latency_seconds=0.02, ops={"put"})
        result: list[object] = []
        t = threading.Thread(target=lambda: result.append(
            db.backup_full(slow, part_size=PART, concurrency=1)))
        t.start()
        deadline = time.monotonic() + 10
        while slow.calls["put"] < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        backed = sorted(os.listdir(os.path.join(path, "snapshots")))
        db.append("later", "e", b"x")
        db.snapshot()  # keep_snapshots=1: prunes the one being uploaded
        assert sorted(os.listdir(os.path.join(path, "snapshots"))) != backed
        t.join()
        [info] = result
    assert info.tx_id == at_tx and info.parts >= 3  # type: ignore[attr-defined]
    assert verify_backup(url, "latest").ok
    restore_full(url, str(tmp_path / "r"))
    assert opened(str(tmp_path / "r")) == at_backup


def test_a_torn_manifest_of_ours_is_replaced_and_the_backup_restores(tmp_path, url, caplog):
    """The manifest's first put lands half (a torn write) and fails: the retry finds the
    torn object, replaces it by compare-and-swap, and the backup is complete and exact."""
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        fill(db, 300)
        expected = state_of(db)
    faulty = FaultyTarget(open_target(url), fail_keys=["manifest.json"],
                          fail_after_partial_write=True, ops={"put"})
    calls = {"n": 0}
    real_put = faulty.put

    def put_once_torn(key, data, **kw):  # type: ignore[no-untyped-def]
        if key.endswith("manifest.json"):
            calls["n"] += 1
            if calls["n"] > 1:  # only the first manifest put is torn
                return faulty.inner.put(key, data, **kw)
        return real_put(key, data, **kw)

    faulty.put = put_once_torn  # type: ignore[method-assign]
    caplog.set_level("WARNING", logger="engine.backup")
    info = backup_full(path, faulty, part_size=PART, **FAST)
    assert calls["n"] >= 2 and "replacing a torn" in caplog.text
    m = manifest_of(open_target(url), info.db_id, info.id)
    assert m["backup_id"] == info.id and m["db_id"] == info.db_id
    assert verify_backup(url, info.id).ok
    restore_full(url, str(tmp_path / "r"))
    assert opened(str(tmp_path / "r")) == expected
