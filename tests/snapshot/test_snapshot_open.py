"""Opening a database whose snapshots are damaged: fall back, warn, never lose state."""

from __future__ import annotations

import os
import struct
import warnings

import pytest
import zstandard

import engine
from engine import formats, layout
from engine.native import xxh64
from engine.snapshot import list_snapshots


def _snaps(db_path):
    return list_snapshots(os.path.join(db_path, layout.SNAP_SUBDIR))


def _build(open_db, db_path, keep=3):
    """Txs 1..15, snapshots at 5 and 10 (and at 15 if ``keep`` allows); returns state."""
    db = open_db(keep_snapshots=keep)
    for i in range(1, 16):
        if i % 4 == 0:
            with db.transaction() as tx:
                tx.append(f"s{i % 3}", "e", b"%d" % i)
                tx.append("multi", "delete" if i == 8 else "e", b"m%d" % i)
        else:
            db.append(f"s{i % 3}", "e", b"%d" % i)
        if i in (5, 10):
            db.snapshot()
    streams = ["s0", "s1", "s2", "multi"]
    state = {s: (db.get(s), db.version(s)) for s in streams}
    log = [(e.stream, e.type, e.data) for t in db.read_log() for e in t.events]
    db.close()
    return state, log


def _state(db):
    return {s: (db.get(s), db.version(s)) for s in ["s0", "s1", "s2", "multi"]}


def _damage_flip(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0xFF]))


def _damage_truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 5)


def _damage_block(path):
    """A block field tampered, every checksum (block, header, file) recomputed."""
    with open(path, "rb") as f:
        data = f.read()
    header_len = struct.unpack_from("<I", data, 12)[0]
    raw_len, comp_len = struct.unpack_from("<QQ", data, 96)
    body = bytearray(zstandard.ZstdDecompressor().decompress(
        data[header_len:header_len + comp_len], max_output_size=raw_len))
    n, m = struct.unpack_from("<II", body, 4)
    struct.pack_into("<Q", body, 24, 0)  # version[0] = 0
    end = 24 + 20 * n + 4 * m + sum(struct.unpack_from("<II", body, 12))
    struct.pack_into("<Q", body, end, xxh64(bytes(body[:end])))
    comp = zstandard.ZstdCompressor().compress(bytes(body))
    head = bytearray(data[:header_len])
    struct.pack_into("<QQ", head, 96, len(body), len(comp))
    struct.pack_into("<Q", head, header_len - 8, xxh64(bytes(head[:-8])))
    payload = bytes(head) + comp
    with open(path, "wb") as f:
        f.write(payload + struct.pack("<Q", xxh64(payload)) + formats.SNAP_END_MAGIC)


DAMAGES = [_damage_flip, _damage_truncate, _damage_block]


@pytest.mark.parametrize("damage", DAMAGES)
def test_corrupt_newest_falls_back_to_older_and_warns(open_db, db_path, damage):
    state, log = _build(open_db, db_path)
    newest = _snaps(db_path)[0][1]
    assert newest.endswith("1-10.snap")
    damage(newest)
    with pytest.warns(engine.EngineWarning, match="1-10.snap"):
        db = open_db()
    assert _state(db) == state
    assert db.position == engine.Position(1, 15)
    assert [(e.stream, e.type, e.data) for t in db.read_log() for e in t.events] == log
    # the database keeps working, and a new snapshot supersedes the damaged one
    assert db.append("s0", "e", b"16") == 16
    db.snapshot()
    db.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", engine.EngineWarning)
        db = open_db(keep_snapshots=1)
    assert db.get("s0") == b"16"
    assert db.version("s0") == state["s0"][1] + 1


@pytest.mark.parametrize("damage", DAMAGES)
def test_every_snapshot_corrupt_replays_the_whole_log(open_db, db_path, damage):
    state, log = _build(open_db, db_path)
    snaps = _snaps(db_path)
    assert len(snaps) == 2
    for _pos, p in snaps:
        damage(p)
    with pytest.warns(engine.EngineWarning) as rec:
        db = open_db()
    msgs = " ".join(str(w.message) for w in rec)
    assert "1-10.snap" in msgs and "1-5.snap" in msgs
    assert _state(db) == state
    assert db.position == engine.Position(1, 15)
    assert [(e.stream, e.type, e.data) for t in db.read_log() for e in t.events] == log
    assert [e.data for e in db.read_stream("multi")] == [b"m4", b"m8", b"m12"]


def test_corrupt_newest_with_custom_reducer(open_db, db_path):
    def concat(value, event):
        return (value or b"") + event.data

    db = open_db(reducer=concat)
    for i in range(12):
        db.append("c", "e", b"%x" % i)
        if i in (3, 8):
            db.snapshot()
    want = db.get("c")
    db.close()
    _damage_block(_snaps(db_path)[0][1])
    with pytest.warns(engine.EngineWarning):
        db = open_db(reducer=concat)
    assert db.get("c") == want == b"0123456789ab"
    assert db.version("c") == 12


def test_healthy_open_does_not_warn(open_db, db_path):
    state, _ = _build(open_db, db_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", engine.EngineWarning)
        db = open_db()
    assert _state(db) == state
