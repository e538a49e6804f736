"""select_tx (read_stream's selective decode) agrees with the full decode_tx."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import CorruptLogError
from engine.native import decode_tx, encode_tx, select_tx

names = st.sampled_from(["a", "b", "c", "ünï", "d" * 40])
events = st.lists(st.tuples(names, st.sampled_from(["set", "delete", "x"]),
                            st.binary(max_size=40)), min_size=1, max_size=40)


def _record(evs: list[tuple[str, str, bytes]]) -> bytes:
    streams = [s for s, _, _ in evs]
    return bytes(encode_tx(9, 2, 123, 50, list(range(1, len(evs) + 1)),
                           list(range(len(evs))), ("\0".join(streams) + "\0").encode(),
                           ("\0".join(t for _, t, _ in evs) + "\0").encode(),
                           [d for _, _, d in evs]))


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(events, names)
def test_select_matches_full_decode(evs, stream):
    rec = _record(evs)
    full = decode_tx(rec)
    sel = select_tx(rec, stream)
    idx = [i for i, s in enumerate(full.streams) if s == stream]
    assert sel.indexes == idx
    assert (sel.tx_id, sel.epoch, sel.ts_ns, sel.first_position) == (9, 2, 123, 50)
    assert sel.types == [full.types[i] for i in idx]
    assert sel.versions == [full.versions[i] for i in idx]
    assert sel.prev_tx == [full.prev_tx[i] for i in idx]
    assert sel.datas == [full.datas[i] for i in idx]


def test_select_refuses_a_corrupt_record():
    rec = bytearray(_record([("a", "set", b"xyz")]))
    rec[-20] ^= 1
    with pytest.raises(CorruptLogError, match="checksum"):
        select_tx(bytes(rec), "a")
