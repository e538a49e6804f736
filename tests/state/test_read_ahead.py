"""The open reads the log's tail in a helper thread while it indexes the records it
has (engine.loader.read_ahead): order kept, errors raised in their place, and the
helper stopped, its iterator closed and the thread joined whenever the block is
left, early or not."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import engine
from engine.loader import read_ahead
from tests.log.test_log_corruption import _build, _flip_at, _tamper


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


def test_a_corrupt_tail_record_fails_the_open_with_no_thread_left(db_path):
    _build(db_path, snapshot_at=4)
    _tamper(db_path, 7, _flip_at(-1))
    with pytest.raises(engine.CorruptLogError, match=r"\btx 7\b"):
        engine.open(db_path)
    assert _helpers() == []
    assert [t for t in threading.enumerate() if t.name == "engine-snapshot-inflate"] == []
