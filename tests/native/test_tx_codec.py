"""Transaction-record codec of the C core, tested at the raw ``lib`` level.

A small reference implementation of the layout in ``csrc/engine_format.h`` (written
with ``struct``) lives in this file: the C encoder must match it byte for byte, the
C decoder must find its columns, and a reference validator fixes the exact error
code (in the header's check order) for every mutated buffer.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import xxhash
from engine._ccore import ffi, lib
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import native

CI = settings(derandomize=True, database=None, deadline=None, max_examples=200)

OK = lib.ENG_OK
TRUNCATED = lib.ENG_E_TRUNCATED
BAD_MAGIC = lib.ENG_E_BAD_MAGIC
VERSION = lib.ENG_E_VERSION
CHECKSUM = lib.ENG_E_CHECKSUM
OVERRUN = lib.ENG_E_OVERRUN
NAMES = lib.ENG_E_NAMES
LENGTHS = lib.ENG_E_LENGTHS
TRAILING = lib.ENG_E_TRAILING
FIELD = lib.ENG_E_FIELD
ARG = lib.ENG_E_ARG
ALL_CODES = {OK, TRUNCATED, BAD_MAGIC, VERSION, CHECKSUM, OVERRUN, NAMES, LENGTHS,
             TRAILING, FIELD}  # fmt: skip

HEAD = struct.Struct("<4sHHQQQQIIII")  # 56 bytes
assert HEAD.size == lib.ENG_TX_HEADER_SIZE == 56
assert lib.ENG_TX_TRAILER_SIZE == 8
assert lib.ENG_TX_VERSION == 1
OFF_COUNT, OFF_STREAMS_LEN, OFF_TYPES_LEN, OFF_DATA_LEN = 40, 44, 48, 52

# ------------------------------------------------------- reference codec


def name_col(names: Sequence[str]) -> bytes:
    return b"".join(s.encode("utf-8") + b"\0" for s in names)


def ref_encode(
    tx_id: int,
    epoch: int,
    ts_ns: int,
    first_position: int,
    versions: Sequence[int],
    prev_tx: Sequence[int],
    streams: bytes,
    types: bytes,
    datas: Sequence[bytes],
    tracking: Sequence[tuple[str, int]] = (),
) -> bytes:
    n = len(versions)
    data = b"".join(datas)
    section = ref_tracking(tracking) if tracking else b""
    body = b"".join([
        HEAD.pack(b"ETXR", 2 if tracking else 1, 1 if tracking else 0, tx_id, epoch, ts_ns,
                  first_position, n, len(streams), len(types), len(data)),
        struct.pack(f"<{n}Q", *versions),
        struct.pack(f"<{n}Q", *prev_tx),
        struct.pack(f"<{n}I", *map(len, datas)),
        streams, types, data, section,
    ])  # fmt: skip
    return body + struct.pack("<Q", xxhash.xxh64_intdigest(body))


def ref_tracking(entries: Sequence[tuple[str, int]]) -> bytes:
    """The tracking section, written independently of engine.native.encode_tracking."""
    out = struct.pack("<I", len(entries))
    for name, position in entries:
        raw = name.encode("utf-8")
        out += struct.pack("<QI", position, len(raw)) + raw
    return out


def ref_tracking_verdict(sec: bytes) -> int:
    if len(sec) < 4:
        return OVERRUN
    (count,) = struct.unpack_from("<I", sec, 0)
    if count == 0:
        return FIELD
    at = 4
    for _ in range(count):
        if len(sec) - at < 12:
            return OVERRUN
        position, nl = struct.unpack_from("<QI", sec, at)
        at += 12
        if position == 0:
            return FIELD
        if nl == 0 or nl > 1024:
            return NAMES
        if len(sec) - at < nl:
            return OVERRUN
        if b"\0" in sec[at : at + nl]:
            return NAMES
        at += nl
    return OK if at == len(sec) else TRAILING


def ref_offsets(n: int, sl: int, tl: int) -> dict[str, int]:
    o = {"versions_off": 56, "prev_off": 56 + 8 * n, "data_lens_off": 56 + 16 * n}
    o["streams_off"] = 56 + 20 * n
    o["types_off"] = o["streams_off"] + sl
    o["data_off"] = o["types_off"] + tl
    return o


def names_ok(col: bytes, n: int) -> bool:
    if n == 0:
        return col == b""
    return col.endswith(b"\0") and col.count(b"\0") == n and b"" not in col[:-1].split(b"\0")


def ref_validate(buf: bytes) -> int:
    """The decoder's verdict, in the header's check order."""
    if len(buf) < 64:
        return TRUNCATED
    if buf[:4] != b"ETXR":
        return BAD_MAGIC
    version, flags = struct.unpack_from("<HH", buf, 4)
    if version not in (1, 2):
        return VERSION
    if xxhash.xxh64_intdigest(buf[:-8]) != struct.unpack_from("<Q", buf, len(buf) - 8)[0]:
        return CHECKSUM
    tracking = version == 2 and bool(flags & 1)
    if version == 2 and flags & ~1:
        return FIELD
    n, sl, tl, dl = struct.unpack_from("<4I", buf, 40)
    if n == 0 and not tracking:
        return FIELD
    end = 56 + 20 * n + sl + tl + dl
    if end > len(buf) - 8:
        return OVERRUN
    if end < len(buf) - 8 and not tracking:
        return TRAILING
    s = 56 + 20 * n
    if not names_ok(buf[s : s + sl], n) or not names_ok(buf[s + sl : s + sl + tl], n):
        return NAMES
    if sum(struct.unpack_from(f"<{n}I", buf, 56 + 16 * n)) != dl:
        return LENGTHS
    if 0 in struct.unpack_from(f"<{n}Q", buf, 56):
        return FIELD
    if tracking:
        return ref_tracking_verdict(buf[end : len(buf) - 8])
    return OK


def resign(buf: bytearray) -> bytearray:
    if len(buf) >= 8:
        buf[-8:] = struct.pack("<Q", xxhash.xxh64_intdigest(bytes(buf[:-8])))
    return buf


# ------------------------------------------------------------- C calls


def c_encode(
    tx_id: int,
    epoch: int,
    ts_ns: int,
    first_position: int,
    versions: Sequence[int],
    prev_tx: Sequence[int],
    streams: bytes,
    types: bytes,
    datas: Sequence[bytes],
    *,
    n: int | None = None,
    data_lens: Sequence[int] | None = None,
    out: bytearray | None = None,
    out_cap: int | None = None,
) -> tuple[int, bytearray]:
    data = b"".join(datas)
    n = len(versions) if n is None else n
    lens = [len(d) for d in datas] if data_lens is None else list(data_lens)
    if out is None:
        out = bytearray(lib.eng_tx_encoded_size(n, len(streams), len(types), len(data), 0))
    cap = len(out) if out_cap is None else out_cap
    rc = lib.eng_tx_encode(
        tx_id, epoch, ts_ns, first_position, n,
        ffi.new("uint64_t[]", list(versions)), ffi.new("uint64_t[]", list(prev_tx)),
        ffi.new("uint32_t[]", lens),
        ffi.from_buffer(streams), len(streams), ffi.from_buffer(types), len(types),
        ffi.from_buffer(data), len(data), ffi.NULL, 0, ffi.from_buffer(out), cap,
    )  # fmt: skip
    return int(rc), out


def c_decode(buf: bytes | bytearray) -> tuple[int, dict[str, int]]:
    view = ffi.new("eng_tx_view *")
    rc = lib.eng_tx_decode(ffi.from_buffer(buf), len(buf), view)
    fields = [name for name, _ in ffi.typeof("eng_tx_view").fields]
    return int(rc), {name: int(getattr(view, name)) for name in fields}


def check_view_in_bounds(v: dict[str, int], length: int) -> None:
    n, body = v["event_count"], length - 8
    spans = [
        (v["versions_off"], 8 * n), (v["prev_off"], 8 * n), (v["data_lens_off"], 4 * n),
        (v["streams_off"], v["streams_len"]), (v["types_off"], v["types_len"]),
        (v["data_off"], v["data_len"]),
    ]  # fmt: skip
    for off, size in spans:
        assert off >= 0 and off + size <= body, (off, size, length)


# ------------------------------------------------------------ samples

SAMPLE: dict[str, Any] = dict(
    tx_id=11, epoch=2, ts_ns=1_700_000_000_000_000_000, first_position=100,
    versions=[1, 2, 7], prev_tx=[0, 10, 20],
    streams=name_col(["alpha", "b", "ccc"]), types=name_col(["T1", "T2", "Type3"]),
    datas=[b"abc", b"", b"defgh"],
)  # fmt: skip
S_OFF = ref_offsets(3, len(SAMPLE["streams"]), len(SAMPLE["types"]))


def sample() -> bytearray:
    return bytearray(ref_encode(**SAMPLE))


names_text = st.text(
    alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=12,
)
U64 = st.integers(0, 2**64 - 1)
events = st.lists(
    st.tuples(names_text, names_text, st.binary(max_size=48), st.integers(1, 2**64 - 1), U64),
    min_size=1,
    max_size=12,
)


# ------------------------------------------------------------- round trips


def test_sample_roundtrip() -> None:
    ref = bytes(sample())
    rc, out = c_encode(**SAMPLE)
    assert rc == len(ref) == 56 + 60 + 12 + 12 + 8 + 8
    assert bytes(out) == ref
    rc, v = c_decode(ref)
    assert rc == OK
    assert (v["tx_id"], v["epoch"], v["ts_ns"], v["first_position"]) == (
        11, 2, 1_700_000_000_000_000_000, 100,
    )  # fmt: skip
    assert (v["format_version"], v["flags"], v["event_count"]) == (1, 0, 3)
    assert {k: v[k] for k in S_OFF} == S_OFF
    assert ref[v["data_off"] : v["data_off"] + v["data_len"]] == b"abcdefgh"


# docs/FORMAT.md section 2, "Worked example": the record, byte for byte.
WORKED_EXAMPLE = bytes.fromhex(
    "45 54 58 52 01 00 00 00 02 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00"
    "00 00 2a 36 fe 9c 97 17 02 00 00 00 00 00 00 00 02 00 00 00 09 00 00 00"
    "0d 00 00 00 04 00 00 00 02 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00"
    "01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 02 00 00 00 02 00 00 00"
    "61 63 63 74 00 6c 6f 67 00 64 65 70 6f 73 69 74 00 6e 6f 74 65 00 35 30"
    "68 69 2c 8b 26 2f 4f be 7b c3"
)


def test_format_doc_worked_example() -> None:
    args = (2, 1, 1_700_000_000_000_000_000, 2, [2, 1], [1, 0], b"acct\0log\0",
            b"deposit\0note\0", [b"50", b"hi"])  # fmt: skip
    assert ref_encode(*args) == WORKED_EXAMPLE
    rc, out = c_encode(*args)
    assert rc == len(WORKED_EXAMPLE) == 130
    assert bytes(out) == WORKED_EXAMPLE
    assert c_decode(WORKED_EXAMPLE)[0] == OK


@CI
@given(evs=events, tx_id=U64, epoch=U64, ts_ns=U64, first=U64)
def test_c_encode_matches_reference(
    evs: list[tuple[str, str, bytes, int, int]], tx_id: int, epoch: int, ts_ns: int, first: int
) -> None:
    streams = name_col([e[0] for e in evs])
    types = name_col([e[1] for e in evs])
    datas = [e[2] for e in evs]
    versions = [e[3] for e in evs]
    prev = [e[4] for e in evs]
    ref = ref_encode(tx_id, epoch, ts_ns, first, versions, prev, streams, types, datas)
    assert lib.eng_tx_encoded_size(len(evs), len(streams), len(types), sum(map(len, datas)),
                                   0) == (
        len(ref)
    )
    rc, out = c_encode(tx_id, epoch, ts_ns, first, versions, prev, streams, types, datas)
    assert rc == len(ref)
    assert bytes(out) == ref

    rc, v = c_decode(ref)
    assert rc == OK
    n = len(evs)
    assert v["event_count"] == n
    assert (v["tx_id"], v["epoch"], v["ts_ns"], v["first_position"]) == (tx_id, epoch, ts_ns, first)
    assert (v["streams_len"], v["types_len"], v["data_len"]) == (
        len(streams), len(types), sum(map(len, datas)),
    )  # fmt: skip
    assert {k: v[k] for k in S_OFF} == ref_offsets(n, len(streams), len(types))
    assert list(struct.unpack_from(f"<{n}Q", ref, v["versions_off"])) == versions
    assert list(struct.unpack_from(f"<{n}Q", ref, v["prev_off"])) == prev
    got_streams = ref[v["streams_off"] : v["streams_off"] + v["streams_len"] - 1]
    assert got_streams.decode("utf-8").split("\0") == [e[0] for e in evs]
    got_types = ref[v["types_off"] : v["types_off"] + v["types_len"] - 1]
    assert got_types.decode("utf-8").split("\0") == [e[1] for e in evs]
    lens = struct.unpack_from(f"<{n}I", ref, v["data_lens_off"])
    pos, got = v["data_off"], []
    for ln in lens:
        got.append(ref[pos : pos + ln])
        pos += ln
    assert got == datas


# ------------------------------------------------------------ encoder args


def test_encoder_rejects_inconsistent_arguments() -> None:
    rc, _ = c_encode(**SAMPLE, n=0)
    assert rc == ARG
    rc, _ = c_encode(**SAMPLE, data_lens=[3, 0, 4])
    assert rc == ARG
    rc, _ = c_encode(**SAMPLE, data_lens=[2**32 - 1, 1, 8])
    assert rc == ARG  # sums to data_len only modulo 2**32


def test_encoder_never_writes_past_out_cap() -> None:
    size = len(sample())
    guard = bytearray(b"\xa5" * (size + 16))
    rc, out = c_encode(**SAMPLE, out=guard, out_cap=size - 1)
    assert rc == ARG
    assert out == b"\xa5" * (size + 16)
    rc, out = c_encode(**SAMPLE, out=guard, out_cap=size)
    assert rc == size
    assert out[:size] == sample()
    assert out[size:] == b"\xa5" * 16


# ----------------------------------------------------------- error codes


def put32(off: int, value: int) -> Callable[[bytearray], None]:
    def edit(b: bytearray) -> None:
        struct.pack_into("<I", b, off, value)

    return edit


def put64(off: int, value: int) -> Callable[[bytearray], None]:
    def edit(b: bytearray) -> None:
        struct.pack_into("<Q", b, off, value)

    return edit


def setbyte(off: int, value: int) -> Callable[[bytearray], None]:
    def edit(b: bytearray) -> None:
        b[off] = value

    return edit


def both(*edits: Callable[[bytearray], None]) -> Callable[[bytearray], None]:
    def edit(b: bytearray) -> None:
        for e in edits:
            e(b)

    return edit


SO, TO, DLO = S_OFF["streams_off"], S_OFF["types_off"], S_OFF["data_lens_off"]

# (id, edit, re-sign afterwards, expected code)
ERROR_CASES = [
    ("bad-magic", setbyte(0, ord("X")), True, BAD_MAGIC),
    ("version-3", setbyte(4, 3), True, VERSION),
    ("version-256", setbyte(5, 1), True, VERSION),
    ("checksum-data", lambda b: b.__setitem__(-9, b[-9] ^ 1), False, CHECKSUM),
    ("checksum-trailer", lambda b: b.__setitem__(-1, b[-1] ^ 0x80), False, CHECKSUM),
    ("count-0", put32(OFF_COUNT, 0), True, FIELD),
    ("count-max", put32(OFF_COUNT, 2**32 - 1), True, OVERRUN),
    ("count+1", put32(OFF_COUNT, 4), True, OVERRUN),
    ("streams_len+1", put32(OFF_STREAMS_LEN, 13), True, OVERRUN),
    ("data_len-max", put32(OFF_DATA_LEN, 2**32 - 1), True, OVERRUN),
    ("count-1", put32(OFF_COUNT, 2), True, TRAILING),
    ("types_len-1", put32(OFF_TYPES_LEN, 11), True, TRAILING),
    ("stream-nul-gone", setbyte(SO + 5, ord("x")), True, NAMES),
    ("stream-empty-first", setbyte(SO, 0), True, NAMES),
    ("type-last-not-nul", setbyte(TO + 11, ord("x")), True, NAMES),
    ("type-empty-middle", both(setbyte(TO + 3, 0), setbyte(TO + 4, 0)), True, NAMES),
    ("data-lens-sum", put32(DLO, 4), True, LENGTHS),
    ("data-lens-wrap", both(put32(DLO, 2**32 - 1), put32(DLO + 4, 1), put32(DLO + 8, 8)),
     True, LENGTHS),
    ("version-0-first", put64(56, 0), True, FIELD),
    ("version-0-last", put64(56 + 16, 0), True, FIELD),
    # check order: the earliest failing check wins
    ("order-magic-before-version", both(setbyte(0, 0), setbyte(4, 9)), False, BAD_MAGIC),
    ("order-version-before-checksum", setbyte(4, 3), False, VERSION),
    ("order-checksum-before-field", put32(OFF_COUNT, 0), False, CHECKSUM),
    ("order-field-before-overrun", both(put32(OFF_COUNT, 0), put32(OFF_DATA_LEN, 99)),
     True, FIELD),
    ("order-names-before-lengths", both(setbyte(SO + 5, 1), put32(DLO, 4)), True, NAMES),
    ("order-lengths-before-version", both(put32(DLO, 4), put64(56, 0)), True, LENGTHS),
]  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "do_resign", "expected"),
    [c[1:] for c in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
def test_error_code(edit: Callable[[bytearray], None], do_resign: bool, expected: int) -> None:
    buf = sample()
    edit(buf)
    if do_resign:
        resign(buf)
    assert ref_validate(bytes(buf)) == expected  # the reference agrees with the case
    rc, _ = c_decode(bytes(buf))
    assert rc == expected


def test_truncated_header() -> None:
    assert c_decode(b"")[0] == TRUNCATED
    assert c_decode(bytes(sample())[:63])[0] == TRUNCATED


def test_trailing_byte_before_trailer() -> None:
    buf = sample()
    buf[-8:-8] = b"\0"
    assert c_decode(bytes(resign(buf)))[0] == TRAILING


def test_every_truncation_fails() -> None:
    ref = bytes(sample())
    for n in range(len(ref)):
        assert c_decode(ref[:n])[0] == (TRUNCATED if n < 64 else CHECKSUM), n
        if n >= 64:
            assert c_decode(bytes(resign(bytearray(ref[:n]))))[0] == OVERRUN, n


def test_failed_decode_leaves_view_untouched() -> None:
    buf = sample()
    buf[0] ^= 0xFF
    view = ffi.new("eng_tx_view *")
    view.tx_id = 1234
    view.data_off = 99
    assert lib.eng_tx_decode(ffi.from_buffer(bytes(buf)), len(buf), view) == BAD_MAGIC
    assert (view.tx_id, view.data_off) == (1234, 99)


# -------------------------------------------------------------- mutation fuzz

Mutation = tuple[Any, ...]
HEADER_FIELDS = [OFF_COUNT, OFF_STREAMS_LEN, OFF_TYPES_LEN, OFF_DATA_LEN]
mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 1 << 16), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=32)),
    st.tuples(st.just("field"), st.sampled_from(HEADER_FIELDS),
              st.sampled_from([0, 1, 2, 3, 2**31, 2**32 - 1]) | st.integers(0, 2**32 - 1)),
    st.tuples(st.just("column"), st.integers(0, 1 << 16),
              st.sampled_from([0, 1, 2**32 - 1]) | st.integers(0, 2**32 - 1)),
)  # fmt: skip


def apply_mutation(buf: bytearray, m: Mutation) -> None:
    kind = m[0]
    if kind in ("flip", "set") and buf:
        pos = m[1] % len(buf)
        buf[pos] = buf[pos] ^ (1 << m[2]) if kind == "flip" else m[2]
    elif kind == "truncate":
        del buf[m[1] % (len(buf) + 1) :]
    elif kind == "extend":
        buf.extend(m[1])
    elif kind == "field" and len(buf) >= m[1] + 4:
        struct.pack_into("<I", buf, m[1], m[2])
    elif kind == "column" and len(buf) >= 56 + 4:
        pos = 56 + 4 * (m[1] % ((len(buf) - 56) // 4))
        struct.pack_into("<I", buf, pos, m[2])


@CI
@given(evs=events, muts=st.lists(mutation, min_size=1, max_size=4), do_resign=st.booleans())
def test_mutations_never_crash(
    evs: list[tuple[str, str, bytes, int, int]], muts: list[Mutation], do_resign: bool
) -> None:
    buf = bytearray(ref_encode(
        1, 2, 3, 4, [e[3] for e in evs], [e[4] for e in evs],
        name_col([e[0] for e in evs]), name_col([e[1] for e in evs]), [e[2] for e in evs],
    ))  # fmt: skip
    for m in muts:
        apply_mutation(buf, m)
    if do_resign:
        resign(buf)
    data = bytes(buf)
    rc, v = c_decode(data)
    assert rc in ALL_CODES
    assert rc == ref_validate(data)
    if rc == OK:
        check_view_in_bounds(v, len(data))
    # The block decoder must cope with a record's bytes too.
    view = ffi.new("eng_block_view *")
    assert lib.eng_block_decode(ffi.from_buffer(data), len(data), view) in ALL_CODES


def test_random_garbage_never_crashes() -> None:
    rng = random.Random(1)
    for _ in range(2000):
        n = rng.randrange(0, 300)
        buf = bytearray(rng.randbytes(n))
        if n >= 4 and rng.random() < 0.5:
            buf[:4] = b"ETXR"
        if n >= 6 and rng.random() < 0.5:
            buf[4:6] = b"\x01\x00"
        if rng.random() < 0.5:
            resign(buf)
        rc, v = c_decode(bytes(buf))
        assert rc == ref_validate(bytes(buf))
        if rc == OK:
            check_view_in_bounds(v, n)


# ------------------------------------------------- tracking (record version 2)

tracking_entries = st.lists(
    st.tuples(st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
                      min_size=1, max_size=20), st.integers(1, 2**64 - 1)),
    min_size=1, max_size=5)


@CI
@given(evs=st.lists(st.tuples(st.text(min_size=1, max_size=5).filter(lambda x: "\0" not in x),
                              st.just("t"), st.binary(max_size=8), st.integers(1, 9),
                              st.integers(0, 9)), max_size=4),
       entries=tracking_entries)
def test_tracking_records_match_the_reference(
    evs: list[tuple[str, str, bytes, int, int]], entries: list[tuple[str, int]]
) -> None:
    """engine.native's encoder equals the reference byte for byte; the C decoder reads
    the entries back (a record may carry tracking without any event)."""
    args = (5, 1, 2, 40, [e[3] for e in evs], [e[4] for e in evs],
            name_col([e[0] for e in evs]), name_col([e[1] for e in evs]), [e[2] for e in evs])
    want = ref_encode(*args, tracking=entries)
    got = bytes(native.encode_tx(*args, native.encode_tracking(entries)))
    assert got == want
    assert ref_validate(got) == OK
    cols = native.decode_tx(got)
    assert cols.tracking == tuple(entries) and len(cols.streams) == len(evs)
    assert [d for d in cols.datas] == [e[2] for e in evs]


@CI
@given(entries=tracking_entries, muts=st.lists(mutation, min_size=1, max_size=4),
       do_resign=st.booleans(), with_event=st.booleans())
def test_tracking_mutations_agree_with_the_reference(
    entries: list[tuple[str, int]], muts: list[Mutation], do_resign: bool, with_event: bool
) -> None:
    evs = [("s", "t", b"x", 1, 0)] if with_event else []
    buf = bytearray(ref_encode(
        1, 2, 3, 4, [e[3] for e in evs], [e[4] for e in evs],
        name_col([e[0] for e in evs]), name_col([e[1] for e in evs]), [e[2] for e in evs],
        tracking=entries))  # fmt: skip
    for m in muts:
        apply_mutation(buf, m)
    if do_resign:
        resign(buf)
    data = bytes(buf)
    rc, v = c_decode(data)
    assert rc == ref_validate(data)
    if rc == OK:
        check_view_in_bounds(v, len(data))
        assert v["tracking_off"] + v["tracking_len"] <= len(data) - 8


def test_only_records_with_tracking_are_version_2() -> None:
    """A record without tracking is byte for byte what this format always wrote
    (version 1, flags 0), so logs without the feature stay readable by older builds;
    one with tracking is version 2, which an older build refuses as a version it
    cannot read (ENG_E_VERSION), not as damage."""
    plain = bytes(native.encode_tx(1, 2, 3, 4, [1], [0], b"s\0", b"t\0", [b"x"]))
    assert plain[4:8] == b"\x01\x00\x00\x00"
    assert plain == ref_encode(1, 2, 3, 4, [1], [0], b"s\0", b"t\0", [b"x"])
    tracked = bytes(native.encode_tx(1, 2, 3, 4, [1], [0], b"s\0", b"t\0", [b"x"],
                                     native.encode_tracking([("a", 1)])))
    assert tracked[4:8] == b"\x02\x00\x01\x00"
