"""snapshot_every / keep_snapshots, and db.snapshot()."""

from __future__ import annotations

import os
import time

import engine
from engine import layout
from engine.snapshot import list_snapshots, load_snapshot


def _snaps(db_path):
    return list_snapshots(os.path.join(db_path, layout.SNAP_SUBDIR))


def _wait_for(cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_snapshot_returns_info_and_writes_a_loadable_file(open_db, db_path):
    db = open_db()
    db.append("a", "e", b"1")
    with db.transaction() as tx:
        tx.append("b", "e", b"2")
        tx.append("a", "delete", b"")
    info = db.snapshot()
    assert isinstance(info, engine.SnapshotInfo)
    assert (info.epoch, info.tx_id, info.streams) == (1, 2, 2)
    assert info.path == os.path.join(db_path, layout.SNAP_SUBDIR, "1-2.snap")
    assert info.bytes == os.path.getsize(info.path)
    loaded = load_snapshot(info.path)
    assert loaded.header.db_id == db.db_id
    assert (loaded.header.epoch, loaded.header.tx_id, loaded.header.last_position) == (1, 2, 3)
    assert {k: v[:2] for k, v in loaded.state.items()} == {"a": (2, None), "b": (1, b"2")}


def test_snapshot_every_triggers_a_background_snapshot(open_db, db_path):
    db = open_db(snapshot_every=10)
    for i in range(9):
        db.append(f"s{i % 3}", "e", b"%d" % i)
    db.append("s0", "e", b"ten")
    assert _wait_for(lambda: [p for p, _ in _snaps(db_path)] == [engine.Position(1, 10)])
    loaded = load_snapshot(_snaps(db_path)[0][1])
    assert loaded.header.tx_id == 10
    assert loaded.state["s0"][:2] == (4, b"ten")
    assert db.last_snapshot_error is None
    db.close()
    db = open_db()
    assert db.get("s0") == b"ten" and db.version("s0") == 4


def test_keep_snapshots_retention_with_background_snapshots(open_db, db_path):
    keep = 2
    db = open_db(snapshot_every=5, keep_snapshots=keep)
    for round_ in range(1, 6):
        for i in range(5):
            db.append(f"s{i}", "e", b"%d-%d" % (round_, i))
        want = engine.Position(1, 5 * round_)
        count = min(round_, keep)
        assert _wait_for(lambda want=want, count=count: (
            _snaps(db_path) and _snaps(db_path)[0][0] == want
            and len(_snaps(db_path)) == count))
    db.close()
    names = sorted(os.listdir(os.path.join(db_path, layout.SNAP_SUBDIR)))
    assert names == ["1-20.snap", "1-25.snap"]


def test_keep_snapshots_retention_with_manual_snapshots(open_db, db_path):
    db = open_db(keep_snapshots=3)
    for i in range(1, 8):
        db.append("s", "e", b"%d" % i)
        db.snapshot()
        assert len(_snaps(db_path)) == min(i, 3)
    assert [p.tx_id for p, _ in _snaps(db_path)] == [7, 6, 5]
    snap_dir = os.path.join(db_path, layout.SNAP_SUBDIR)
    assert not [n for n in os.listdir(snap_dir) if n.endswith(layout.SNAP_TMP_SUFFIX)]
    db.close()
    db = open_db(keep_snapshots=1)
    db.append("s", "e", b"8")
    db.snapshot()
    assert [p.tx_id for p, _ in _snaps(db_path)] == [8]


def test_open_loads_snapshot_and_replays_the_rest(open_db, db_path):
    db = open_db()
    for i in range(10):
        db.append(f"s{i % 4}", "e", b"%d" % i)
    db.snapshot()
    for i in range(10, 15):
        db.append(f"s{i % 4}", "delete" if i == 12 else "e", b"%d" % i)
    expected = {f"s{j}": (db.get(f"s{j}"), db.version(f"s{j}")) for j in range(4)}
    db.close()
    db = open_db()
    assert {f"s{j}": (db.get(f"s{j}"), db.version(f"s{j}")) for j in range(4)} == expected
    assert db.position == engine.Position(1, 15)
    # read_stream still follows chains that cross the snapshot
    assert [e.data for e in db.read_stream("s0")] == [b"0", b"4", b"8", b"12"]
    assert [e.tx_id for e in db.read_stream("s1")] == [2, 6, 10, 14]


def test_stale_temp_file_is_ignored_and_pruned(open_db, db_path):
    db = open_db()
    db.append("s", "e", b"1")
    db.snapshot()
    db.close()
    snap_dir = os.path.join(db_path, layout.SNAP_SUBDIR)
    with open(os.path.join(snap_dir, "1-9" + layout.SNAP_TMP_SUFFIX), "wb") as f:
        f.write(b"half a snapshot")
    db = open_db()
    assert db.get("s") == b"1"
    db.append("s", "e", b"2")
    db.snapshot()
    assert sorted(os.listdir(snap_dir)) == ["1-1.snap", "1-2.snap"]
