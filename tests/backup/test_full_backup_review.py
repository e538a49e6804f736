"""Regression tests for the holes a review of full backups found: a prune racing a
running backup, a point in time on an abandoned timeline, a damaged manifest blocking
every later backup."""

from __future__ import annotations

import json
import time

import pytest

import engine
from engine.backup import keys
from engine.backup.faults import FaultyTarget
from engine.backup.full import backup_full, list_backups, prune_backups, restore_full
from engine.backup.targets import open_target


def _state(path: str) -> dict[str, tuple[int, bytes | None]]:
    with engine.open(path, create=False) as db:
        return {s: (db.version(s), db.get(s)) for s in db.streams()}


def test_prune_leaves_a_running_backup_alone_and_a_backup_never_publishes_lost_parts(
        tmp_path):
    path, url = str(tmp_path / "db"), f"file://{tmp_path}/t"
    with engine.open(path) as db:
        for i in range(50):
            db.append("s", "e", b"%d" % i)
        # an incomplete backup (its manifest refused), then a complete one after it
        bad = FaultyTarget(open_target(url), fail_keys=["manifest.json"], transient=False,
                           ops={"put"})
        with pytest.raises(engine.PermanentBackupError):
            db.backup_full(bad)
        done = db.backup_full(url, resume=False)
    entries = list_backups(url)
    running = next(e for e in entries if not e.complete)
    # the incomplete one started before the newest complete one, but it was active just
    # now: it may still be running, so prune leaves it (unless asked with --min-age 0)
    assert running.id not in prune_backups(url, 1).deleted
    assert prune_backups(url, 1, dry_run=True, min_age_seconds=0).deleted == [running.id]

    # parts vanish while a backup runs (a prune beside it): the manifest is withdrawn
    class Vanishing(FaultyTarget):
        def put(self, key, data, **kw):  # type: ignore[no-untyped-def]
            if key.endswith("manifest.json"):
                for info in self.inner.list(key.rsplit("/", 1)[0] + "/files/"):
                    self.inner.delete(info.key)
            return self.inner.put(key, data, **kw)

    with engine.open(path) as db:
        db.append("s", "e", b"more")
        with pytest.raises(engine.PermanentBackupError, match="vanished"):
            backup_full(db, Vanishing(open_target(url)), resume=False)
    assert [e.id for e in list_backups(url) if e.complete] == [done.id]


def test_point_in_time_never_uses_a_backup_of_an_abandoned_timeline(tmp_path):
    url = f"file://{tmp_path}/t"
    with engine.open(str(tmp_path / "db"), backup=url) as db:
        for i in range(50):
            db.append("s", "e", b"ep1-%d" % (i + 1))
        a = db.backup_full(url)
        for i in range(50, 100):
            db.append("s", "e", b"ep1-%d" % (i + 1))
        b = db.backup_full(url)  # tx 100 of epoch 1
    restore_full(url, str(tmp_path / "r"), backup=a.id, to_tx=60)  # epoch 2 forks at 61
    with engine.open(str(tmp_path / "r"), backup=url) as db:
        for i in range(60, 120):
            db.append("s", "e", b"ep2-%d" % (i + 1))
    for tx in (100, 110):
        rep = restore_full(url, str(tmp_path / f"x{tx}"), to_tx=tx)
        assert rep.backup_id != b.id  # B is off the newest timeline
        assert _state(str(tmp_path / f"x{tx}")) == {"s": (tx, b"ep2-%d" % tx)}


def test_a_damaged_manifest_does_not_block_later_backups(tmp_path):
    path, url = str(tmp_path / "db"), f"file://{tmp_path}/t"
    with engine.open(path) as db:
        db.append("s", "e", b"1")
        first = db.backup_full(url)
    t = open_target(url)
    mkey = keys.manifest_key(first.db_id, first.id)
    m = json.loads(t.get(mkey))
    m["finished"] = time.time() + 1  # valid JSON, wrong checksum: unreadable
    t.put(mkey, json.dumps(m).encode())
    with engine.open(path) as db:
        for _ in range(2):
            info = db.backup_full(url)
            assert info.id != first.id
    assert sum(e.complete for e in list_backups(url)) == 2
