"""XXH64 parity: the C core's ``eng_xxh64`` (and ``engine.native.xxh64``) against
the reference xxHash implementation (the ``xxhash`` package)."""

from __future__ import annotations

import random

import pytest
import xxhash
from engine._ccore import ffi, lib
from hypothesis import given, settings
from hypothesis import strategies as st

SEEDS = [0, 1, 2**64 - 1]
U64 = st.integers(min_value=0, max_value=2**64 - 1)
CI = settings(derandomize=True, database=None, deadline=None, max_examples=300)


def c_xxh64(data: bytes | bytearray | memoryview, seed: int) -> int:
    return int(lib.eng_xxh64(ffi.from_buffer(data), len(data), seed))


@pytest.mark.parametrize("seed", SEEDS)
def test_every_length_0_to_70(seed: int) -> None:
    rng = random.Random(70)
    blob = rng.randbytes(70)
    for n in range(71):
        assert c_xxh64(blob[:n], seed) == xxhash.xxh64_intdigest(blob[:n], seed), n


@pytest.mark.parametrize("seed", SEEDS)
def test_one_mebibyte(seed: int) -> None:
    blob = random.Random(seed).randbytes(1 << 20)
    assert c_xxh64(blob, seed) == xxhash.xxh64_intdigest(blob, seed)


def test_known_vectors() -> None:
    # Published XXH64 values (xxHash's own sanity list).
    assert c_xxh64(b"", 0) == 0xEF46DB3751D8E999
    assert c_xxh64(b"a", 0) == 0xD24EC4F1A98C6E5B
    assert c_xxh64(b"abc", 0) == 0x44BC2CF5AD770999


def test_unaligned_views() -> None:
    blob = random.Random(7).randbytes(200)
    view = memoryview(blob)
    for start in range(9):
        for n in (0, 1, 7, 8, 31, 32, 33, 100):
            piece = view[start : start + n]
            assert c_xxh64(piece, 0) == xxhash.xxh64_intdigest(bytes(piece), 0)


@CI
@given(data=st.binary(max_size=4096), seed=st.sampled_from(SEEDS) | U64)
def test_random_buffers(data: bytes, seed: int) -> None:
    assert c_xxh64(data, seed) == xxhash.xxh64_intdigest(data, seed)


# ------------------------------------------------- engine.native wrapper


def test_native_wrapper_matches_reference() -> None:
    from engine import native

    rng = random.Random(3)
    for n in [*range(71), 1000, 1 << 16]:
        blob = rng.randbytes(n)
        assert native.xxh64(blob) == xxhash.xxh64_intdigest(blob, 0), n
        for seed in SEEDS:
            assert native.xxh64(blob, seed=seed) == xxhash.xxh64_intdigest(blob, seed)
    blob = rng.randbytes(100)
    assert native.xxh64(bytearray(blob)) == xxhash.xxh64_intdigest(blob)
    assert native.xxh64(memoryview(blob)[3:50]) == xxhash.xxh64_intdigest(blob[3:50])


@CI
@given(data=st.binary(max_size=1024), seed=U64)
def test_native_wrapper_random(data: bytes, seed: int) -> None:
    from engine import native

    assert native.xxh64(data, seed=seed) == xxhash.xxh64_intdigest(data, seed)
