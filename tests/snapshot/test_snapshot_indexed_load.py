"""The open's way of loading a snapshot: the body decompressed in a helper thread
while each block is checked and put into the C index as soon as it is whole
(``load_snapshot(path, indexed=True)``). It gives what the plain load and an index
filled afterwards give, however the body is cut into stretches, and on damage it
refuses as the plain load does with its helper thread stopped and joined."""

from __future__ import annotations

import os
import threading
import time
import types
import weakref
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine import database as database_module
from engine import snapshot as snapshot_module
from engine.model import EpochRecord
from engine.snapshot import load_snapshot, write_snapshot
from engine.state import State
from tests.snapshot.test_snapshot_blocks import Block, _body, _rebuild, _split_blocks

DB_ID = "2b8f3c1e-9d4a-4f6b-8e2c-7a1d5e9f0c34"
ENTRY = st.tuples(st.integers(1, 2**64 - 1), st.one_of(st.none(), st.binary(max_size=40)),
                  st.integers(1, 2**64 - 1))
NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0\x01"),
                min_size=1, max_size=12)


def _write(tmp_path, state) -> str:
    return write_snapshot(str(tmp_path), db_id=DB_ID, epoch=1, tx_id=9, last_position=20,
                          history=[EpochRecord(1, 1, 1, 1.0, "created")], state=state,
                          tx_checksum=None).path


def _same_as_plain(path: str) -> None:
    plain = load_snapshot(path)
    got = load_snapshot(path, indexed=True)
    assert got.header == plain.header
    assert got.index is not None and plain.index is None
    assert bytes(got.body) == plain.body
    state = plain.state
    assert len(got.index) == len(state)
    for name, entry in state.items():
        assert got.index.get(name) == entry
    assert got.state == state  # the eager fold of the mapped body agrees too


def _inflating() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "engine-snapshot-inflate"]


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(NAMES, ENTRY, max_size=60), st.sampled_from([7, 64, 1000, 1 << 20]))
def test_indexed_load_equals_the_plain_load(tmp_path_factory, monkeypatch, state, step):
    # A stretch of 7 bytes ends inside every block header; 1 MiB holds the whole body.
    monkeypatch.setattr(snapshot_module, "INFLATE_STEP", step)
    _same_as_plain(_write(tmp_path_factory.mktemp("s"), state))


def test_many_blocks_and_a_block_longer_than_a_stretch(tmp_path, monkeypatch):
    big = os.urandom(3 << 20)  # incompressible: its block comes out over many stretches
    state = {f"s{i}": (i + 1, b"v%d" % i if i % 5 else None, i + 2) for i in range(5000)}
    state["big"] = (1, big, 1)
    path = _write(tmp_path, state)
    assert len(_split_blocks(_body(Path(path).read_bytes()))) >= 3
    _same_as_plain(path)
    monkeypatch.setattr(snapshot_module, "INFLATE_STEP", 4096)
    _same_as_plain(path)
    assert load_snapshot(path, indexed=True).index.get("big") == (1, big, 1)


def test_an_empty_state_loads_into_an_empty_index(tmp_path):
    got = load_snapshot(_write(tmp_path, {}), indexed=True)
    assert got.index is not None and len(got.index) == 0 and got.state == {}


@pytest.mark.parametrize("step", [64, 1 << 20])
def test_a_damaged_later_block_is_named_and_the_helper_is_joined(tmp_path, monkeypatch, step):
    monkeypatch.setattr(snapshot_module, "INFLATE_STEP", step)
    state = {f"s{i}": (1, b"v%d" % i, 1 + i) for i in range(5000)}
    data = Path(_write(tmp_path / "src", state)).read_bytes()
    blocks = _split_blocks(_body(data))
    assert len(blocks) >= 3
    blk = Block(blocks[1])
    blk.u64(blk.versions + 8 * 100, 0)  # version 0: a field error, block re-checksummed
    blk.rechecksum()
    path = str(tmp_path / "1-9.snap")
    with open(path, "wb") as f:
        f.write(_rebuild(data, blocks[0] + blk.bytes() + b"".join(blocks[2:])))
    with pytest.raises(engine.CorruptSnapshotError) as plain:
        load_snapshot(path)
    with pytest.raises(engine.CorruptSnapshotError) as indexed:
        load_snapshot(path, indexed=True)
    assert str(indexed.value) == str(plain.value)
    assert "block 1 at body offset" in str(indexed.value)
    assert _inflating() == []


def test_a_failure_early_in_a_long_body_stops_the_helper(tmp_path, monkeypatch):
    """The checking thread gives up at the first block while the helper still has
    most of the body to write: the helper stops at its next stretch and is joined
    before the error is raised (nothing writes the body afterwards). The helper is
    held after 1 MiB until the checking thread has given up, so the order is fixed."""
    monkeypatch.setattr(snapshot_module, "INFLATE_STEP", 4096)
    state = {f"s{i}": (1, os.urandom(200), 1 + i) for i in range(20000)}
    data = Path(_write(tmp_path / "src", state)).read_bytes()
    body = _body(data)
    blocks = _split_blocks(body)
    assert len(blocks[0]) < 1 << 20 < len(body)
    blk = Block(blocks[0])
    blk.b[-1] ^= 1  # checksum mismatch in the first block
    path = str(tmp_path / "1-9.snap")
    with open(path, "wb") as f:
        f.write(_rebuild(data, blk.bytes() + b"".join(blocks[1:])))
    made: list[snapshot_module._Inflating] = []
    written: list[int] = []

    class Watched(snapshot_module._Inflating):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    class HeldReader:
        """A stream reader that waits, once 1 MiB is out, until the checker stops it."""

        def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
            self.inner, self.done = inner, 0

        def readinto(self, out) -> int:  # type: ignore[no-untyped-def]
            deadline = time.monotonic() + 10
            while self.done >= 1 << 20 and not made[0].stop and time.monotonic() < deadline:
                time.sleep(0.001)
            n = self.inner.readinto(out)
            self.done += n
            written.append(self.done)
            return n

        def read(self, n: int) -> bytes:
            return self.inner.read(n)

    shim = types.SimpleNamespace(
        ZstdError=zstandard.ZstdError, frame_header_size=zstandard.frame_header_size,
        ZstdDecompressor=lambda: types.SimpleNamespace(
            stream_reader=lambda c: HeldReader(zstandard.ZstdDecompressor().stream_reader(c))))
    monkeypatch.setattr(snapshot_module, "_Inflating", Watched)
    monkeypatch.setattr(snapshot_module, "zstandard", shim)
    with pytest.raises(engine.CorruptSnapshotError, match="block 0 at body offset 0"):
        load_snapshot(path, indexed=True)
    assert _inflating() == []
    assert made[0].stop and made[0].finished
    assert written[-1] < len(body)  # it stopped; it did not write the rest


def test_open_uses_the_index_the_plan_built(tmp_path, monkeypatch):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        with db.transaction() as tx:
            tx.extend((f"s{i}", "set", b"%d" % i) for i in range(3000))
        db.snapshot()
        db.append("s5", "delete", b"")
        db.append("late", "set", b"L")
    planned: list[object] = []
    real_plan = database_module.plan_open

    def plan_open(*args, **kwargs):  # type: ignore[no-untyped-def]
        plan = real_plan(*args, **kwargs)
        planned.append(plan.snapshot.index)
        return plan

    monkeypatch.setattr(database_module, "plan_open", plan_open)
    with engine.open(path) as db:
        index = db._pipeline.state.base
        assert planned[0] is not None and index is planned[0]  # the plan's, not a new one
        assert len(index) == 3001
        assert db.get("s5") is None and db.version("s5") == 2
        assert db.get("s2999") == b"2999" and db.get("late") == b"L"
    with engine.open(path, reducer=engine.default_reducer) as eager:  # the plan builds no index
        assert eager._pipeline.state.base is None and eager.get("s2999") == b"2999"
    assert planned[1] is None


def test_a_switch_to_the_eager_way_lets_go_of_the_plans_index(tmp_path, monkeypatch):
    """Past the budget the loader goes the eager way; the index the plan built (and,
    through its keep, every record indexed so far) is freed before the first record
    is replayed into the dict, not at the end of the open."""
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        with db.transaction() as tx:
            tx.extend((f"s{i}", "set", b"%d" % i) for i in range(300))
        db.snapshot()
        for t in range(20):
            db.append(f"s{t}", "set", b"x" * 5000)  # 100 kB: past 2x the ~10 kB body
    monkeypatch.setattr("engine.loader.LAZY_TAIL_BYTES", 0)
    refs: list[weakref.ref[object]] = []
    real_plan = database_module.plan_open

    def plan_open(*args, **kwargs):  # type: ignore[no-untyped-def]
        plan = real_plan(*args, **kwargs)
        refs.append(weakref.ref(plan.snapshot.index))
        return plan

    alive_at_replay: list[bool] = []
    real_replay = State.replay

    def replay(self, cols):  # type: ignore[no-untyped-def]
        if not alive_at_replay:
            alive_at_replay.append(refs[0]() is not None)
        return real_replay(self, cols)

    monkeypatch.setattr(database_module, "plan_open", plan_open)
    monkeypatch.setattr(State, "replay", replay)
    with engine.open(path) as db:
        assert db._pipeline.state.base is None  # eager after all
        assert db.get("s3") == b"x" * 5000 and db.get("s299") == b"299"
    assert alive_at_replay == [False]


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.binary(max_size=3000), st.builds(lambda b, n: b * n, st.binary(min_size=1,
       max_size=3), st.integers(0, 200_000))),
       st.booleans(), st.booleans(), st.integers(1, 19))
def test_frame_end_finds_the_end_of_every_frame(data, checksum, streamed, level):
    """zstd frames of every kind the library writes (one shot with its content size,
    streamed without it, with and without a checksum, raw, RLE and compressed blocks):
    the end is found exactly; cut short it is None, followed by more it is inside."""
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=checksum)
    if streamed:
        obj = cctx.compressobj()
        frame = obj.compress(data) + obj.flush()
    else:
        frame = cctx.compress(data)
    end = snapshot_module._frame_end
    assert end(memoryview(frame)) == len(frame)
    assert end(memoryview(frame + b"more")) == len(frame)
    assert end(memoryview(frame + frame)) == len(frame)
    for cut in (1, 2, 3, 4):
        if cut < len(frame):
            got = end(memoryview(frame[:-cut]))
            assert got is None or got > len(frame) - cut
