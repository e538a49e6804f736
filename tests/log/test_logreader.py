"""engine.logreader: the record checks written once (decode, key, epoch, gap-free),
with a raising reporter (open, reads) and a collecting one (verify)."""

from __future__ import annotations

import pytest

from engine.errors import CorruptLogError
from engine.logreader import RAISE, Continuity, LogReader, ProblemList
from engine.native import encode_tx


def _rec(tx_id: int, first_pos: int, n: int = 1, epoch: int = 1) -> bytes:
    names = "".join(f"s{i}\0" for i in range(n)).encode()
    return bytes(encode_tx(tx_id, epoch, 1, first_pos, [1] * n, [0] * n, names,
                           b"e\0" * n, [b"x"] * n))


class FakeLog:
    """A record source holding ``{key: record}``."""

    def __init__(self, records: dict[int, bytes]) -> None:
        self.records = records

    def iter_range(self, from_tx: int, to_tx: int | None = None):  # type: ignore[no-untyped-def]
        for k in sorted(self.records):
            if k >= from_tx and (to_tx is None or k <= to_tx):
                yield k, self.records[k]


def _reader(records: dict[int, bytes], base_tx: int = 0, base_pos: int = 0) -> LogReader:
    return LogReader(FakeLog(records), epoch=1, base_tx=base_tx, base_position=base_pos,
                     where="/db")


def test_a_clean_log_scans_without_problems():
    r = _reader({1: _rec(1, 1, 2), 2: _rec(2, 3), 3: _rec(3, 4, 3)})
    problems = ProblemList()
    got = [c.tx_id for c in r.scan(cont=r.start(), report=problems)]
    assert got == [1, 2, 3] and problems == []


def test_a_log_after_a_base_continues_from_it():
    r = _reader({11: _rec(11, 21), 12: _rec(12, 22)}, base_tx=10, base_pos=20)
    assert [c.tx_id for c in r.scan(cont=r.start())] == [11, 12]


def test_every_kind_of_problem_is_collected_and_the_scan_goes_on():
    bad = bytearray(_rec(2, 2))
    bad[-1] ^= 0xFF  # checksum
    r = _reader({1: _rec(1, 1), 2: bytes(bad), 3: _rec(3, 3), 4: _rec(9, 4),
                 5: _rec(5, 5, epoch=2), 7: _rec(7, 7), 8: _rec(8, 99)})
    problems = ProblemList()
    seen: list[int] = []
    good = [c.tx_id for c in r.scan(cont=r.start(), report=problems, on_record=seen.append)]
    assert seen == [1, 2, 3, 4, 5, 7, 8]
    assert good == [1, 3, 7, 8]  # 2, 4 and 5 fail their checks and are not yielded
    assert len(problems) == 5, problems
    assert "tx 2" in problems[0] and "checksum" in problems[0]
    assert "under key 4 holds tx 9" in problems[1]
    assert "under key 5 holds tx 5 of epoch 2" in problems[2]
    assert "expected tx 6, found 7" in problems[3]
    # after the gap the reader resynchronises: 8 must follow 7's position, it does not
    assert "tx 8: first position 99, expected 8" in problems[4]


def test_the_raising_reporter_stops_at_the_first_problem():
    r = _reader({1: _rec(1, 1), 3: _rec(3, 2)})
    with pytest.raises(CorruptLogError, match="expected tx 2, found 3"):
        list(r.scan(cont=r.start(), report=RAISE))


def test_checked_decode_keeps_the_c_error_code():
    bad = bytearray(_rec(1, 1))
    bad[0:4] = b"XXXX"
    r = _reader({})
    with pytest.raises(CorruptLogError) as ei:
        r.decode(1, bytes(bad))
    assert ei.value.code == -2 and "bad magic" in str(ei.value)
    assert "engine-admin verify /db" in str(ei.value)


def test_a_record_under_the_base_must_not_exist():
    r = _reader({}, base_tx=5, base_pos=5)
    assert r.epoch_of(5) == 0 and r.epoch_of(6) == 1
    with pytest.raises(CorruptLogError, match="expected tx 3 of epoch 0"):
        r.decode(3, _rec(3, 3))


def test_continuity_after_an_undecodable_record_takes_the_next_position():
    c = Continuity(1, 1)
    c.skip(2)
    assert c.follow(3, 50, 2) is None and (c.tx_id, c.position) == (3, 51)
    assert c.follow(5, 52, 1) == "log gap: expected tx 4, found 5"
