"""Snapshots written from the C state index (an indexed open) plus the changes since
open: the same state as a snapshot of the folded dict, whatever the index holds, what
the changes shadow or add, and however the blocks are cut. The index's part is cut
and encoded in C (StateIndex.mark / blocks, csrc/engine_index.c)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import formats
from engine.native import StateIndex
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
    blocks = list(index.blocks())
    assert len(blocks) >= 4
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


def test_the_first_snapshot_after_an_indexed_open_keeps_the_index(tmp_path):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        with db.transaction() as tx:
            tx.extend((f"s{i}", "set", b"v%d" % i) for i in range(300))
        db.snapshot()
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
