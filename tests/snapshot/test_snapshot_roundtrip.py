"""Snapshot files round-trip the whole state."""

from __future__ import annotations

import os

import pytest

import engine
from engine import formats, layout
from engine.model import EpochRecord
from engine.snapshot import (
    DICT_BLOCK_ENTRIES,
    list_snapshots,
    load_snapshot,
    read_header,
    write_snapshot,
)

DB_ID = "0b5c2a3e-7a51-4c57-9d2e-2f6a3c0d9e11"
HISTORY = (EpochRecord(1, 1, 1, 1700000000.5, "created"),
           EpochRecord(2, 41, 90, 1700000100.25, "log lost: rebuilt from snapshot ü"))


def _write(tmp_path, state, **kw):
    args = {"db_id": DB_ID, "epoch": 2, "tx_id": 99, "last_position": 250,
            "history": HISTORY, "state": state, "tx_checksum": 0xC37BBE4F2F268B2C}
    args.update(kw)
    return write_snapshot(str(tmp_path / "snaps"), **args)


SMALL_STATE = {
    "plain": (3, b"value", 7),
    "none": (2, None, 5),
    "empty": (1, b"", 6),
    "ünïcödé-名前-😀": (9, "ü".encode() * 10, 99),
    "x" * formats.MAX_NAME_BYTES: (1, bytes(range(256)) * 4, 12),
    "nul-in-value": (4, b"\0\0\0", 13),
    "max": (2**63, b"m", 2**64 - 1),
}


def test_round_trip_small_state(tmp_path):
    info = _write(tmp_path, SMALL_STATE)
    assert info.path.endswith(os.path.join("snaps", "2-99.snap"))
    assert (info.epoch, info.tx_id, info.streams) == (2, 99, len(SMALL_STATE))
    assert info.bytes == os.path.getsize(info.path)
    assert info.position == engine.Position(2, 99)
    loaded = load_snapshot(info.path)
    assert loaded.state == SMALL_STATE
    h = loaded.header
    assert (h.db_id, h.epoch, h.tx_id, h.last_position) == (DB_ID, 2, 99, 250)
    assert (h.stream_count, h.block_count) == (len(SMALL_STATE), 1)
    assert h.history == HISTORY
    assert h.file_bytes == info.bytes
    assert read_header(info.path) == h
    assert not [n for n in os.listdir(tmp_path / "snaps") if n != "2-99.snap"]


def test_round_trip_empty_state(tmp_path):
    info = _write(tmp_path, {}, tx_id=0, last_position=0, tx_checksum=None)
    loaded = load_snapshot(info.path)
    assert loaded.state == {}
    assert (loaded.header.stream_count, loaded.header.block_count) == (0, 0)


@pytest.mark.parametrize("n", [DICT_BLOCK_ENTRIES, DICT_BLOCK_ENTRIES + 1,
                               2 * DICT_BLOCK_ENTRIES + 123, formats.BLOCK_MAX_ENTRIES + 5])
def test_round_trip_multi_block(tmp_path, n):
    state = {}
    for i in range(n):
        value = None if i % 5 == 0 else (b"" if i % 7 == 0 else b"v%d" % i)
        state[f"stream-{i}-ü" if i % 3 == 0 else f"s{i}"] = (1 + i % 9, value, 1 + i)
    info = _write(tmp_path, state)
    loaded = load_snapshot(info.path)
    assert loaded.state == state
    assert list(loaded.state) == list(state)  # order kept too
    blocks = -(-n // DICT_BLOCK_ENTRIES)
    assert loaded.header.block_count == blocks


def test_block_is_cut_once_its_values_pass_the_target(tmp_path):
    big = formats.BLOCK_TARGET_BYTES * 3 // 4  # five of these pass the target more than once
    state = {f"big{i}": (1, bytes([i]) * big, 1 + i) for i in range(5)}
    info = _write(tmp_path, state)
    loaded = load_snapshot(info.path)
    assert loaded.state == state
    assert loaded.header.block_count >= 2


def test_database_round_trip_through_snapshot(open_db, db_path):
    db = open_db(sync="none")
    names = [f"s{i}" for i in range(formats.BLOCK_MAX_ENTRIES + 500)] + ["ünï", "名前", "😀"]
    with db.transaction() as tx:
        tx.extend((s, "set", s.encode() * 2) for s in names)
    with db.transaction() as tx:
        tx.extend((s, "delete", b"") for s in names[::97])
        tx.extend((s, "set", b"") for s in names[1::101])
    expected = {s: (db.get(s), db.version(s)) for s in names}
    assert any(v is None for v, _ in expected.values())
    assert any(v == b"" for v, _ in expected.values())
    info = db.snapshot()
    assert info.streams == len(names)
    db.close()
    snap = load_snapshot(info.path)
    assert snap.header.block_count == -(-len(names) // DICT_BLOCK_ENTRIES)
    assert {s: (e[1], e[0]) for s, e in snap.state.items()} == expected
    db = open_db(sync="none")
    assert {s: (db.get(s), db.version(s)) for s in names} == expected
    assert list_snapshots(os.path.join(db_path, layout.SNAP_SUBDIR))[0][1] == info.path
    # read_stream still reaches back through the log from the snapshot's last_tx
    assert [e.type for e in db.read_stream(names[0])] == ["set", "delete"]
    assert [e.tx_id for e in db.read_stream(names[1])] == [1, 2]
