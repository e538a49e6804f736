"""The open reads the log's tail in a helper thread while it indexes the records it
has (engine.loader.read_ahead): order kept, errors raised in their place, and the
helper stopped, its iterator closed and the thread joined whenever the block is
left, early or not."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import engine
from engine.loader import TailArena, read_ahead
from tests.log.test_log_corruption import _flip_at, _tamper


def _helpers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "engine-open-read-ahead"]


def _counting(n: int, closed: list[str], fail_at: int | None = None) -> Iterator[int]:
    try:
        for i in range(n):
            if i == fail_at:
                raise engine.CorruptLogError(f"record {i} is damaged")
            yield i
    finally:
        closed.append(threading.current_thread().name)


@pytest.mark.parametrize("depth", [1, 3, 64])
def test_every_item_in_order(depth):
    closed: list[str] = []
    with read_ahead(_counting(500, closed), depth=depth) as items:
        assert list(items) == list(range(500))
    assert closed == ["engine-open-read-ahead"] and _helpers() == []


def test_an_error_is_raised_after_the_items_before_it():
    closed: list[str] = []
    got: list[int] = []
    with (pytest.raises(engine.CorruptLogError, match="record 7 is damaged"),
          read_ahead(_counting(100, closed, fail_at=7), depth=2) as items):
        for i in items:
            got.append(i)
    assert got == list(range(7)) and closed and _helpers() == []


@pytest.mark.parametrize("depth", [1, 8])
def test_leaving_early_stops_a_helper_waiting_on_a_full_queue(depth):
    closed: list[str] = []
    with read_ahead(_counting(10_000, closed), depth=depth) as items:
        assert next(items) == 0
    # the helper was blocked putting item depth+1: it stopped, closed the iterator
    assert closed == ["engine-open-read-ahead"] and _helpers() == []


def test_an_error_in_the_consumer_stops_the_helper():
    closed: list[str] = []
    with pytest.raises(KeyError), read_ahead(_counting(10_000, closed), depth=4) as items:
        for i in items:
            if i == 3:
                raise KeyError(i)
    assert closed and _helpers() == []


# ------------------------------------------------ the tail copied into an arena


@pytest.mark.parametrize("chunk", [64, 1000, 1 << 20])
def test_tail_arena_copies_every_record_whole(monkeypatch, chunk):
    monkeypatch.setattr(TailArena, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(TailArena, "MIN_BYTES", 10)
    arena = TailArena()
    sizes = [1, 63, 64, 65, 500, 2000, 7, 0, 300]
    sources = [bytearray([i % 251]) * n for i, n in enumerate(sizes)]
    copies = [arena(memoryview(r)) for r in sources]
    for src in sources:  # the copies are copies: changing the source changes none
        src[:] = b"\xff" * len(src)
    assert [bytes(c) for c in copies] == [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    for n, c in zip(sizes, copies, strict=True):  # short ones as bytes, the rest views
        assert type(c) is bytes if n < 10 else isinstance(c, memoryview)
    arena.min_bytes = 1 << 62  # what the loader does on going the eager way
    assert type(arena(memoryview(b"x" * 5000))) is bytes


def test_iter_range_into_copies_each_record_inside_its_transaction(db_path):
    with engine.open(db_path) as db:
        for i in range(40):
            db.append(f"s{i % 3}", "set", b"v%d" % i * (i + 1))
        log = db._log
        direct = [(t, log.get(t)) for t in range(5, 31)]
        seen: list[int] = []

        def copy(view: memoryview) -> bytes:
            seen.append(len(view))
            return bytes(view)

        assert list(log.iter_range_into(copy, 5, 30, first_chunk=2)) == direct
        assert seen == [len(r or b"") for _, r in direct] and len(direct) == 26
        arena = TailArena()
        assert [(t, bytes(r)) for t, r in log.iter_range_into(arena, 1)] == \
            [(t, log.get(t)) for t in range(1, 41)]


def test_every_path_of_an_indexed_open_gives_bytes_values(db_path, monkeypatch):
    """The tail's records are views of the arena; what the state hands out is always
    bytes (or None): tracking entries, the eager fold of the index (db.streams()),
    and a switch to the eager way past the budget."""
    with engine.open(db_path) as db:
        with db.transaction() as tx:
            tx.extend((f"s{i}", "set", b"%d" % i) for i in range(100))
        db.snapshot()
        for t in range(30):  # records of ~20 kB: the tail is read into the arena, as views
            with db.transaction() as tx:
                tx.append(f"s{t}", "set", b"tail-%d" % t * 3000)
                tx.append(f"new{t}", "delete" if t % 5 == 0 else "set", b"n%d" % t)
                tx.track("projection", t + 1)
    names = [f"s{i}" for i in range(100)] + [f"new{t}" for t in range(30)]

    def values(db: engine.Database) -> dict[str, object]:
        got = {n: db.get(n) for n in names}
        assert all(v is None or type(v) is bytes for v in got.values()), \
            {type(v) for v in got.values()}
        return got

    with engine.open(db_path) as db:
        assert db._pipeline.state.base is not None and db.tracked("projection") == 30
        assert any(isinstance(r, memoryview) for r in db._pipeline.state.base._keep)
        expected = values(db)
        assert expected["s3"] == b"tail-3" * 3000 and expected["new5"] is None
        assert set(db.streams()) == set(names)  # folds the index: build() decodes the tail
        assert db._pipeline.state.base is None
        folded = [e[1] for e in db._pipeline.state.entries.values()]
        assert len(folded) > 100 and all(type(v) is bytes or v is None for v in folded)
        assert values(db) == expected
    monkeypatch.setattr("engine.loader.LAZY_TAIL_BYTES", 0)  # past the budget midway
    with engine.open(db_path) as db:
        assert db._pipeline.state.base is None and db.tracked("projection") == 30
        assert values(db) == expected


def _spy_read_ahead(monkeypatch) -> list[int]:
    import engine.loader as loader

    calls: list[int] = []
    real = loader.read_ahead

    def spy(items, depth=loader.READ_AHEAD_BATCHES):  # type: ignore[no-untyped-def]
        calls.append(depth)
        return real(items, depth)

    monkeypatch.setattr(loader, "read_ahead", spy)
    return calls


def _tail_of(db_path: str, records: int, size: int) -> None:
    with engine.open(db_path) as db:
        db.append("a", "set", b"1")
        db.snapshot()
        for t in range(records):
            db.append(f"s{t}", "set", bytes([t % 251]) * size)


def test_a_tail_of_long_records_is_read_ahead_and_short_ones_are_not(db_path, monkeypatch):
    calls = _spy_read_ahead(monkeypatch)
    _tail_of(db_path, 20, 20_000)
    with engine.open(db_path) as db:
        assert calls == [4] and db.get("s19") == bytes([19]) * 20_000
        assert db._pipeline.state.base is not None
    assert _helpers() == []
    short = db_path + "-short"
    _tail_of(short, 20, 100)
    with engine.open(short) as db:
        assert calls == [4] and db.get("s19") == bytes([19]) * 100  # not read ahead
    with engine.open(db_path, reducer=engine.default_reducer) as db:  # eager: not either
        assert calls == [4] and db.get("s3") == bytes([3]) * 20_000


@pytest.mark.parametrize("bad", [3, 12, 20])  # in the probe, the first batch, the last but one
def test_a_corrupt_long_record_fails_the_open_read_ahead_with_no_thread_left(
        db_path, monkeypatch, bad):
    calls = _spy_read_ahead(monkeypatch)
    _tail_of(db_path, 20, 20_000)  # tx 1 the first append, tx 2..21 the tail
    _tamper(db_path, bad, _flip_at(-1))
    with pytest.raises(engine.CorruptLogError, match=rf"\btx {bad}\b"):
        engine.open(db_path)
    assert calls == [4] and _helpers() == []


def test_a_key_that_fails_inside_the_probe_is_raised_after_the_records_before_it(
        db_path, monkeypatch):
    """Reading the probe's 4th record fails (a damaged tree would), in a later read
    transaction than the first three (chunks of 2 here): those are checked first, so
    damage in the 2nd is the error named, as the records' order says, not the read
    failure behind it."""
    import engine.log as log_module

    monkeypatch.setattr(log_module, "READ_CHUNK", 2)
    _tail_of(db_path, 20, 20_000)
    _tamper(db_path, 3, _flip_at(-1))  # the 2nd record of the tail
    real = log_module._tx_of

    def failing(key, path):  # type: ignore[no-untyped-def]
        t = real(key, path)
        if t == 5:
            raise engine.CorruptLogError("tx key 5 cannot be read (injected)")
        return t

    monkeypatch.setattr(log_module, "_tx_of", failing)
    with pytest.raises(engine.CorruptLogError, match=r"\btx 3\b"):
        engine.open(db_path)
    _tamper(db_path, 3, _flip_at(-1))  # undone: now the read failure is the first
    with pytest.raises(engine.CorruptLogError, match="tx key 5 cannot be read"):
        engine.open(db_path)
