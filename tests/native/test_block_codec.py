"""Snapshot-block codec of the C core, tested at the raw ``lib`` level.

A small reference implementation of the block layout in ``csrc/engine_format.h``
(written with ``struct``) lives in this file: the C encoder must match it byte for
byte, the C decoder must find its columns, and a reference validator fixes the exact
error code (in the decoder's check order) for every mutated buffer.
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

CI = settings(derandomize=True, database=None, deadline=None, max_examples=200)

OK = lib.ENG_OK
TRUNCATED = lib.ENG_E_TRUNCATED
BAD_MAGIC = lib.ENG_E_BAD_MAGIC
CHECKSUM = lib.ENG_E_CHECKSUM
OVERRUN = lib.ENG_E_OVERRUN
NAMES = lib.ENG_E_NAMES
LENGTHS = lib.ENG_E_LENGTHS
FIELD = lib.ENG_E_FIELD
ARG = lib.ENG_E_ARG
ALL_CODES = {OK, TRUNCATED, BAD_MAGIC, lib.ENG_E_VERSION, CHECKSUM, OVERRUN, NAMES,
             LENGTHS, lib.ENG_E_TRAILING, FIELD}  # fmt: skip

HEAD = struct.Struct("<4sIIIII")  # 24 bytes
assert HEAD.size == lib.ENG_BLOCK_HEADER_SIZE == 24
assert lib.ENG_BLOCK_TRAILER_SIZE == 8
OFF_N, OFF_M, OFF_NAMES_LEN, OFF_VALUES_LEN, OFF_RESERVED = 4, 8, 12, 16, 20

Value = bytes | None

# ------------------------------------------------------- reference codec


def ref_encode(
    names: Sequence[str], versions: Sequence[int], last_tx: Sequence[int], values: Sequence[Value]
) -> bytes:
    n = len(names)
    none_idx = [i for i, v in enumerate(values) if v is None]
    present = [b"" if v is None else v for v in values]
    names_col = b"".join(s.encode("utf-8") + b"\0" for s in names)
    vals = b"".join(present)
    body = b"".join([
        HEAD.pack(b"SBLK", n, len(none_idx), len(names_col), len(vals), 0),
        struct.pack(f"<{n}Q", *versions),
        struct.pack(f"<{n}Q", *last_tx),
        struct.pack(f"<{n}I", *map(len, present)),
        struct.pack(f"<{len(none_idx)}I", *none_idx),
        names_col, vals,
    ])  # fmt: skip
    return body + struct.pack("<Q", xxhash.xxh64_intdigest(body))


def ref_offsets(n: int, m: int, nl: int, vl: int) -> dict[str, int]:
    o = {"versions_off": 24, "last_tx_off": 24 + 8 * n, "value_lens_off": 24 + 16 * n}
    o["none_idx_off"] = 24 + 20 * n
    o["names_off"] = o["none_idx_off"] + 4 * m
    o["values_off"] = o["names_off"] + nl
    o["block_len"] = o["values_off"] + vl + 8
    return o


def names_ok(col: bytes, n: int) -> bool:
    return col.endswith(b"\0") and col.count(b"\0") == n and b"" not in col[:-1].split(b"\0")


def declared_len(buf: bytes | bytearray) -> int:
    n, m, nl, vl = struct.unpack_from("<4I", buf, 4)
    return 24 + 20 * n + 4 * m + nl + vl + 8


def ref_validate(buf: bytes) -> int:
    """The decoder's verdict: TRUNCATED, BAD_MAGIC, FIELD (header), OVERRUN,
    CHECKSUM, FIELD (columns), NAMES, LENGTHS."""
    if len(buf) < 32:
        return TRUNCATED
    if buf[:4] != b"SBLK":
        return BAD_MAGIC
    n, m, nl, vl, reserved = struct.unpack_from("<5I", buf, 4)
    if n == 0 or m > n or reserved != 0:
        return FIELD
    total = declared_len(buf)
    if total > len(buf):
        return OVERRUN
    if xxhash.xxh64_intdigest(buf[: total - 8]) != struct.unpack_from("<Q", buf, total - 8)[0]:
        return CHECKSUM
    o = ref_offsets(n, m, nl, vl)
    versions = struct.unpack_from(f"<{n}Q", buf, o["versions_off"])
    last_tx = struct.unpack_from(f"<{n}Q", buf, o["last_tx_off"])
    lens = struct.unpack_from(f"<{n}I", buf, o["value_lens_off"])
    none_idx = struct.unpack_from(f"<{m}I", buf, o["none_idx_off"])
    if 0 in versions or 0 in last_tx:
        return FIELD
    for j, idx in enumerate(none_idx):
        if idx >= n or (j and idx <= none_idx[j - 1]) or lens[idx] != 0:
            return FIELD
    if not names_ok(buf[o["names_off"] : o["names_off"] + nl], n):
        return NAMES
    if sum(lens) != vl:
        return LENGTHS
    return OK


def resign(buf: bytearray) -> bytearray:
    """Re-sign at the declared block end when it fits, else at the buffer end."""
    end = declared_len(buf) if len(buf) >= 24 else len(buf)
    if end > len(buf) or end < 8:
        end = len(buf)
    if end >= 8:
        buf[end - 8 : end] = struct.pack("<Q", xxhash.xxh64_intdigest(bytes(buf[: end - 8])))
    return buf


# ------------------------------------------------------------- C calls


def c_encode(
    versions: Sequence[int],
    last_tx: Sequence[int],
    value_lens: Sequence[int],
    none_idx: Sequence[int],
    names_col: bytes,
    vals: bytes,
    *,
    n: int | None = None,
    m: int | None = None,
    out: bytearray | None = None,
    out_cap: int | None = None,
) -> tuple[int, bytearray]:
    n = len(versions) if n is None else n
    m = len(none_idx) if m is None else m
    if out is None:
        out = bytearray(lib.eng_block_encoded_size(n, m, len(names_col), len(vals)) or 1)
    cap = len(out) if out_cap is None else out_cap
    rc = lib.eng_block_encode(
        n, ffi.new("uint64_t[]", list(versions)), ffi.new("uint64_t[]", list(last_tx)),
        ffi.new("uint32_t[]", list(value_lens)), m, ffi.new("uint32_t[]", list(none_idx)),
        ffi.from_buffer(names_col), len(names_col), ffi.from_buffer(vals), len(vals),
        ffi.from_buffer(out), cap,
    )  # fmt: skip
    return int(rc), out


def c_encode_entries(
    names: Sequence[str], versions: Sequence[int], last_tx: Sequence[int], values: Sequence[Value]
) -> tuple[int, bytearray]:
    present = [b"" if v is None else v for v in values]
    return c_encode(
        versions, last_tx, [len(v) for v in present],
        [i for i, v in enumerate(values) if v is None],
        b"".join(s.encode("utf-8") + b"\0" for s in names), b"".join(present),
    )  # fmt: skip


def c_decode(buf: bytes | bytearray, offset: int = 0) -> tuple[int, dict[str, int]]:
    view = ffi.new("eng_block_view *")
    rc = lib.eng_block_decode(ffi.from_buffer(buf) + offset, len(buf) - offset, view)
    fields = [name for name, _ in ffi.typeof("eng_block_view").fields]
    return int(rc), {name: int(getattr(view, name)) for name in fields}


def check_view_in_bounds(v: dict[str, int], length: int) -> None:
    assert 32 <= v["block_len"] <= length
    end = v["block_len"] - 8
    n = v["entry_count"]
    spans = [
        (v["versions_off"], 8 * n), (v["last_tx_off"], 8 * n), (v["value_lens_off"], 4 * n),
        (v["none_idx_off"], 4 * v["none_count"]), (v["names_off"], v["names_len"]),
        (v["values_off"], v["values_len"]),
    ]  # fmt: skip
    for off, size in spans:
        assert off >= 0 and off + size <= end, (off, size, length)


# ------------------------------------------------------------- samples

SAMPLE: dict[str, Any] = dict(
    names=["k1", "key2", "k3", "z"],
    versions=[1, 3, 9, 2**64 - 1],
    last_tx=[5, 6, 7, 8],
    values=[b"hi", None, None, b"abc"],
)
S_OFF = ref_offsets(4, 2, 13, 5)  # names column: k1\0key2\0k3\0z\0


def sample() -> bytearray:
    return bytearray(ref_encode(**SAMPLE))


names_text = st.text(
    alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=12,
)
entries = st.lists(
    st.tuples(
        names_text,
        st.integers(1, 2**64 - 1),
        st.integers(1, 2**64 - 1),
        st.none() | st.binary(max_size=48),
    ),
    min_size=1,
    max_size=12,
)


# ------------------------------------------------------------- round trips


def test_sample_roundtrip() -> None:
    ref = bytes(sample())
    rc, out = c_encode_entries(**SAMPLE)
    assert rc == len(ref) == S_OFF["block_len"] == 138
    assert bytes(out) == ref
    rc, v = c_decode(ref)
    assert rc == OK
    assert (v["entry_count"], v["none_count"], v["names_len"], v["values_len"]) == (4, 2, 13, 5)
    assert {k: v[k] for k in S_OFF} == S_OFF


# docs/FORMAT.md section 4, the block example: the block, byte for byte.
WORKED_EXAMPLE = bytes.fromhex(
    "53 42 4c 4b 03 00 00 00 01 00 00 00 0b 00 00 00 04 00 00 00 00 00 00 00"
    "02 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00"
    "02 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00"
    "02 00 00 00 02 00 00 00 00 00 00 00 02 00 00 00 61 63 63 74 00 6c 6f 67"
    "00 78 00 35 30 68 69 fc d1 70 12 34 80 ff 7a"
)


def test_format_doc_worked_example() -> None:
    args = (["acct", "log", "x"], [2, 1, 2], [2, 2, 3], [b"50", b"hi", None])
    assert ref_encode(*args) == WORKED_EXAMPLE
    rc, out = c_encode_entries(*args)
    assert rc == len(WORKED_EXAMPLE) == 111
    assert bytes(out) == WORKED_EXAMPLE
    rc, v = c_decode(WORKED_EXAMPLE)
    assert rc == OK
    assert (v["entry_count"], v["none_count"], v["block_len"]) == (3, 1, 111)


@CI
@given(ents=entries)
def test_c_encode_matches_reference(ents: list[tuple[str, int, int, Value]]) -> None:
    names = [e[0] for e in ents]
    versions = [e[1] for e in ents]
    last_tx = [e[2] for e in ents]
    values = [e[3] for e in ents]
    ref = ref_encode(names, versions, last_tx, values)
    rc, out = c_encode_entries(names, versions, last_tx, values)
    assert rc == len(ref)
    assert bytes(out) == ref

    rc, v = c_decode(ref)
    assert rc == OK
    n, m = len(ents), values.count(None)
    nl = sum(len(s.encode("utf-8")) + 1 for s in names)
    vl = sum(len(x) for x in values if x is not None)
    assert (v["entry_count"], v["none_count"], v["names_len"], v["values_len"]) == (n, m, nl, vl)
    assert {k: v[k] for k in S_OFF} == ref_offsets(n, m, nl, vl)
    assert list(struct.unpack_from(f"<{n}Q", ref, v["versions_off"])) == versions
    assert list(struct.unpack_from(f"<{n}Q", ref, v["last_tx_off"])) == last_tx
    col = ref[v["names_off"] : v["names_off"] + v["names_len"] - 1]
    assert col.decode("utf-8").split("\0") == names
    lens = struct.unpack_from(f"<{n}I", ref, v["value_lens_off"])
    got: list[Value] = []
    pos = v["values_off"]
    for ln in lens:
        got.append(ref[pos : pos + ln])
        pos += ln
    for i in struct.unpack_from(f"<{m}I", ref, v["none_idx_off"]):
        got[i] = None
    assert got == values


def test_blocks_back_to_back() -> None:
    blocks = [
        ref_encode(**SAMPLE),
        ref_encode(["only"], [1], [1], [None]),
        ref_encode(["a", "b"], [1, 2], [3, 4], [b"", b"x" * 100]),
    ]
    body = b"".join(blocks)
    off, seen = 0, []
    while off < len(body):
        rc, v = c_decode(body, off)
        assert rc == OK
        seen.append(v["block_len"])
        off += v["block_len"]
    assert seen == [len(b) for b in blocks]


# ------------------------------------------------------------ encoder args

S_ARGS = ([1, 3, 9, 7], [5, 6, 7, 8], [2, 0, 0, 3], [1, 2], b"k1\0key2\0k3\0z\0", b"hiabc")


@pytest.mark.parametrize(
    "change",
    [
        {"n": 0},
        {"n": 1},  # m = 2 > n
        {"value_lens": [2, 0, 0, 4]},
        {"none_idx": [2, 1]},
        {"none_idx": [1, 1]},
        {"none_idx": [1, 4]},
        {"none_idx": [0, 1]},  # entry 0 has a non-zero length
    ],
    ids=["n-0", "m-gt-n", "lens-sum", "none-order", "none-repeat", "none-range", "none-nonzero"],
)
def test_encoder_rejects_inconsistent_arguments(change: dict[str, Any]) -> None:
    versions, last_tx, lens, none_idx, names_col, vals = S_ARGS
    kw: dict[str, Any] = {}
    if "value_lens" in change:
        lens = change["value_lens"]
    if "none_idx" in change:
        none_idx = change["none_idx"]
    if "n" in change:
        kw["n"] = change["n"]
        kw["out"] = bytearray(256)
    rc, _ = c_encode(versions, last_tx, lens, none_idx, names_col, vals, **kw)
    assert rc == ARG


def test_encoder_never_writes_past_out_cap() -> None:
    size = S_OFF["block_len"]
    guard = bytearray(b"\xa5" * (size + 16))
    rc, out = c_encode(*S_ARGS, out=guard, out_cap=size - 1)
    assert rc == ARG
    assert out == b"\xa5" * (size + 16)
    rc, out = c_encode(*S_ARGS, out=guard, out_cap=size)
    assert rc == size
    assert out[size:] == b"\xa5" * 16
    assert c_decode(bytes(out[:size]))[0] == OK


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


VO, LO, VLO = S_OFF["versions_off"], S_OFF["last_tx_off"], S_OFF["value_lens_off"]
NIO, NMO, VALO = S_OFF["none_idx_off"], S_OFF["names_off"], S_OFF["values_off"]

# (id, edit, re-sign afterwards, expected code)
ERROR_CASES = [
    ("bad-magic", setbyte(3, ord("k")), True, BAD_MAGIC),
    ("n-0", put32(OFF_N, 0), False, FIELD),
    ("n-0-resigned", put32(OFF_N, 0), True, FIELD),
    ("m-gt-n", put32(OFF_M, 5), False, FIELD),
    ("reserved", setbyte(OFF_RESERVED + 3, 1), False, FIELD),
    ("names_len+1", put32(OFF_NAMES_LEN, 14), False, OVERRUN),
    ("values_len-max", put32(OFF_VALUES_LEN, 2**32 - 1), False, OVERRUN),
    ("n-and-m-max", both(put32(OFF_N, 2**32 - 1), put32(OFF_M, 2**32 - 1)), False, OVERRUN),
    ("checksum-value", setbyte(VALO, ord("H")), False, CHECKSUM),
    ("checksum-trailer", lambda b: b.__setitem__(-1, b[-1] ^ 1), False, CHECKSUM),
    ("version-0", put64(VO + 8, 0), True, FIELD),
    ("last-tx-0", put64(LO + 24, 0), True, FIELD),
    ("none-order", both(put32(NIO, 2), put32(NIO + 4, 1)), True, FIELD),
    ("none-repeat", put32(NIO, 2), True, FIELD),
    ("none-eq-n", put32(NIO + 4, 4), True, FIELD),
    ("none-max", put32(NIO + 4, 2**32 - 1), True, FIELD),
    ("none-nonzero-len", put32(NIO, 0), True, FIELD),
    ("name-nul-gone", setbyte(NMO + 2, ord("x")), True, NAMES),
    ("name-empty", both(setbyte(NMO, 0), setbyte(NMO + 1, 0), setbyte(NMO + 2, ord("q"))),
     True, NAMES),
    ("name-last-byte", setbyte(NMO + 12, ord("x")), True, NAMES),
    ("value-lens-sum", put32(VLO, 1), True, LENGTHS),
    ("value-lens-wrap", both(put32(VLO, 2**32 - 1), put32(VLO + 12, 6)), True, LENGTHS),
    # check order: the earliest failing check wins
    ("order-field-before-overrun", both(put32(OFF_M, 9), put32(OFF_NAMES_LEN, 999)),
     False, FIELD),
    ("order-overrun-before-checksum", both(put32(OFF_NAMES_LEN, 99), setbyte(VALO, 0)),
     False, OVERRUN),
    ("order-checksum-before-column-field", put64(VO, 0), False, CHECKSUM),
    ("order-field-before-names", both(put64(VO, 0), setbyte(NMO + 2, ord("x"))), True, FIELD),
    ("order-names-before-lengths", both(setbyte(NMO + 2, 1), put32(VLO, 1)), True, NAMES),
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


def test_truncated() -> None:
    assert c_decode(b"")[0] == TRUNCATED
    assert c_decode(bytes(sample())[:31])[0] == TRUNCATED


def test_every_truncation_fails() -> None:
    ref = bytes(sample())
    for n in range(len(ref)):
        assert c_decode(ref[:n])[0] == (TRUNCATED if n < 32 else OVERRUN), n


def test_following_bytes_are_not_part_of_the_block() -> None:
    ref = bytes(sample())
    rc, v = c_decode(ref + b"\xee" * 7)
    assert rc == OK
    assert v["block_len"] == len(ref)


# -------------------------------------------------------------- mutation fuzz

Mutation = tuple[Any, ...]
HEADER_FIELDS = [OFF_N, OFF_M, OFF_NAMES_LEN, OFF_VALUES_LEN, OFF_RESERVED]
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
    elif kind == "column" and len(buf) >= 24 + 4:
        pos = 24 + 4 * (m[1] % ((len(buf) - 24) // 4))
        struct.pack_into("<I", buf, pos, m[2])


@CI
@given(ents=entries, muts=st.lists(mutation, min_size=1, max_size=4), do_resign=st.booleans())
def test_mutations_never_crash(
    ents: list[tuple[str, int, int, Value]], muts: list[Mutation], do_resign: bool
) -> None:
    buf = bytearray(ref_encode(
        [e[0] for e in ents], [e[1] for e in ents], [e[2] for e in ents], [e[3] for e in ents],
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
    # The record decoder must cope with a block's bytes too.
    view = ffi.new("eng_tx_view *")
    assert lib.eng_tx_decode(ffi.from_buffer(data), len(data), view) in ALL_CODES


def test_random_garbage_never_crashes() -> None:
    rng = random.Random(2)
    for _ in range(2000):
        n = rng.randrange(0, 300)
        buf = bytearray(rng.randbytes(n))
        if n >= 4 and rng.random() < 0.7:
            buf[:4] = b"SBLK"
        if n >= 24 and rng.random() < 0.7:
            k = rng.randrange(1, 6)
            struct.pack_into("<5I", buf, 4, k, rng.randrange(0, k + 1),
                             rng.randrange(0, 40), rng.randrange(0, 40), 0)  # fmt: skip
        if rng.random() < 0.5:
            resign(buf)
        rc, v = c_decode(bytes(buf))
        assert rc == ref_validate(bytes(buf))
        if rc == OK:
            check_view_in_bounds(v, n)
