"""Snapshots written from the C state index (an indexed open) plus the changes since
open: the same state as a snapshot of the folded dict, whatever the index holds, what
the changes shadow or add, and however the blocks are cut. The index's part is cut
and encoded in C (StateIndex.mark / blocks, csrc/engine_index.c)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import formats
from engine.native import StateIndex, decode_blocks
from engine.snapshot import load_snapshot, write_snapshot
from engine.state import TRACK_PREFIX

NAMES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FF), min_size=1,
                max_size=6)
ENTRY = st.tuples(st.integers(1, 2**64 - 1), st.one_of(st.none(), st.binary(max_size=40)),
                  st.integers(1, 2**63 - 1))


def _write(path: Path, state: dict, base: StateIndex | None = None, tx: int = 7):
    info = write_snapshot(str(path), db_id="00000000-0000-4000-8000-000000000000", epoch=1,
                          tx_id=tx, last_position=tx, history=(), state=state,
                          tx_checksum=None, base=base)
    return info, load_snapshot(info.path)


def _index_of(path: Path, state: dict) -> StateIndex:
    """The C index of ``state``, built the way an indexed open builds it."""
    _, snap = _write(path, state, tx=1)
    index = StateIndex(len(state))
    index.put_body(snap.body)
    return index


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(NAMES, ENTRY, max_size=30), st.dictionaries(NAMES, ENTRY, max_size=10),
       st.dictionaries(NAMES, ENTRY, max_size=3))
def test_index_plus_changes_is_the_folded_state(tmp_path_factory, base, changes, tracking):
    root = tmp_path_factory.mktemp("snap")
    index = _index_of(root / "base", base)
    changes = dict(changes)
    changes.update({TRACK_PREFIX + k: (v[0], None, v[2]) for k, v in tracking.items()})
    info, snap = _write(root / "new", changes, base=index)
    expected = {**base, **changes}
    assert snap.state == expected
    assert snap.header.stream_count == info.streams == len(expected)


def test_many_entries_and_big_values_are_cut_into_blocks(tmp_path):
    # more entries than one block holds, values that pass the block's byte target,
    # and one value bigger than the gatherer's first buffer
    base = {f"s{i:05d}": (i + 1, b"v%d" % i if i % 7 else None, i + 1)
            for i in range(formats.BLOCK_MAX_ENTRIES + 1500)}
    big = formats.BLOCK_TARGET_BYTES // 3
    base.update({f"big{i}": (1, bytes([i]) * big, 1) for i in range(5)})
    base["huge"] = (1, b"h" * (formats.BLOCK_TARGET_BYTES + (1 << 17)), 1)
    index = _index_of(tmp_path / "base", base)
    assert sum(1 for _ in index.blocks()) >= 4
    changes = {"s00003": (99, b"new", 9), "fresh": (1, b"f", 9)}
    info, snap = _write(tmp_path / "new", changes, base=index)
    assert snap.state == {**base, **changes}
    assert info.streams == len(base) + 1


def test_marking_counts_each_indexed_name_once(tmp_path):
    index = _index_of(tmp_path / "base", {"a": (1, b"1", 1), "b": (1, None, 1)})
    bits, n = index.mark(["a", "a", "zz", "b", "\udcff"])  # repeats, absent, not UTF-8
    assert n == 2 and sum(bin(x).count("1") for x in bits) == 2
    assert index.mark([]) == (bytearray(len(bits)), 0)
    assert list(index.blocks(bits)) == []  # everything marked: nothing left to cut


def _snapshotted(path: str, streams: int) -> None:
    """A database of ``streams`` streams (s0 = b"0", s1 = b"1", ...) and a snapshot of
    them, so that the next default open indexes it."""
    with engine.open(path) as db:
        with db.transaction() as tx:
            tx.extend((f"s{i}", "set", b"%d" % i) for i in range(streams))
        db.snapshot()


def test_the_first_snapshot_after_an_indexed_open_keeps_the_index(tmp_path):
    path = str(tmp_path / "db")
    _snapshotted(path, 300)
    with engine.open(path) as db:
        db.append("s1", "delete", b"")
        db.append("late", "set", b"L")
    with engine.open(path) as db:
        index = db._pipeline.state.base
        assert index is not None  # an indexed open
        db.append("s2", "set", b"changed")
        with db.transaction() as tx:
            tx.track("proj", 5)
            tx.append("s3", "set", b"tracked too")
        db.snapshot()
        assert db._pipeline.state.base is index  # not folded into a dict
        before = {s: (db.version(s), db.get(s)) for s in db.streams()}
    with engine.open(path, reducer=engine.default_reducer) as eager:  # from that snapshot
        assert {s: (eager.version(s), eager.get(s)) for s in eager.streams()} == before
        assert eager.tracked("proj") == 5 and eager.get("s1") is None
        assert eager.get("s2") == b"changed" and eager.get("late") == b"L"


def test_odd_names_to_mark(tmp_path):
    index = _index_of(tmp_path / "base", {"a": (1, b"1", 1), "b": (1, b"2", 1)})
    assert index.mark(["", ""])[1] == 0  # empty names are never streams
    with pytest.raises(ValueError, match="NUL"):
        index.mark(["a\x00b"])  # never split into "a" and "b"


@pytest.mark.parametrize("size", [formats.MAX_EVENT_BYTES,
                                  formats.BLOCK_TARGET_BYTES + formats.MAX_EVENT_BYTES + 1])
def test_a_value_of_any_size_is_written_from_the_index(tmp_path, size):
    # MAX_EVENT_BYTES is an event's bound; a custom reducer's value (folded, then
    # reopened with the default reducer: an indexed open) may be larger still
    base = {"small": (1, b"s", 1), "huge": (2, b"h" * size, 2), "after": (1, None, 2)}
    index = _index_of(tmp_path / "base", base)
    _, snap = _write(tmp_path / "new", {"new": (1, b"n", 3)}, base=index)
    assert snap.state == {**base, "new": (1, b"n", 3)}


def test_marking_many_names_goes_in_batches(tmp_path):
    base = {f"s{i}": (1, b"v", 1) for i in range(10_000)}
    index = _index_of(tmp_path / "base", base)
    names = [f"s{i}" for i in range(0, 10_000, 2)] + [f"new{i}" for i in range(5000)]
    bits, n = index.mark(names)  # 10,000 names: three batches
    assert n == 5000
    got = {}
    for blk in index.blocks(bits):
        for cols in decode_blocks(bytes(blk)):
            got.update(zip(cols.names, cols.versions, strict=True))
    assert set(got) == {f"s{i}" for i in range(1, 10_000, 2)}
    with pytest.raises(ValueError, match="bits"):
        next(index.blocks(bytearray(1)))  # a bitmap too short for the table


def test_snapshots_while_the_index_is_folded_and_written_over(tmp_path):
    # db.streams() folds the index (State.materialize) while snapshots are taken and a
    # writer commits: every snapshot still holds every stream (a capture that read
    # the index outside the lock would lose the ones nobody wrote)
    path = str(tmp_path / "db")
    _snapshotted(path, 20_000)
    with engine.open(path, keep_snapshots=10) as db:
        assert db._pipeline.state.base is not None
        stop = threading.Event()

        def write() -> None:
            k = 0
            while not stop.is_set():
                db.append(f"s{k % 50}", "set", b"w%d" % k)
                k += 1

        def fold() -> None:
            while not stop.is_set():
                db.streams()

        threads = [threading.Thread(target=write), threading.Thread(target=fold)]
        for t in threads:
            t.start()
        try:
            infos = [db.snapshot() for _ in range(3)]
        finally:
            stop.set()
            for t in threads:
                t.join()
    for info in infos:
        snap = load_snapshot(info.path)
        assert info.streams == snap.header.stream_count == 20_000
        assert all(snap.state[f"s{i}"][1] == b"%d" % i for i in range(50, 20_000, 997))
