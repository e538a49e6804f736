"""engine/formats.py mirrors csrc/engine_format.h: the two must never drift."""

from __future__ import annotations

import os
import re

from engine._ccore import lib

from engine import formats

HEADER = os.path.join(os.path.dirname(__file__), "..", "..", "csrc", "engine_format.h")


def test_integer_constants_match_the_header():
    pairs = {
        "ENG_TX_VERSION": formats.TX_VERSION,
        "ENG_TX_VERSION_TRACKING": formats.TX_VERSION_TRACKING,
        "ENG_TX_FLAG_TRACKING": formats.TX_FLAG_TRACKING,
        "ENG_MAX_NAME": formats.MAX_NAME_BYTES,
        "ENG_TX_HEADER_SIZE": formats.TX_HEADER_SIZE,
        "ENG_TX_TRAILER_SIZE": formats.TX_TRAILER_SIZE,
        "ENG_BLOCK_HEADER_SIZE": formats.BLOCK_HEADER_SIZE,
        "ENG_BLOCK_TRAILER_SIZE": formats.BLOCK_TRAILER_SIZE,
        "ENG_OK": formats.ENG_OK,
        "ENG_SEG_FOOTER_SIZE": formats.SEG_FOOTER_SIZE,
    }
    for name, value in pairs.items():
        assert getattr(lib, name) == value, name


def test_every_error_code_has_a_message():
    codes = {getattr(lib, n) for n in dir(lib) if n.startswith("ENG_E_")}
    assert codes == set(formats.DECODE_ERRORS)


def test_magics_match_the_header():
    with open(HEADER, encoding="utf-8") as f:
        text = f.read()
    magics = dict(re.findall(r'#define\s+(ENG_\w+_MAGIC)\s+"(\w+)"', text))
    assert magics["ENG_TX_MAGIC"].encode() == formats.TX_MAGIC
    assert magics["ENG_BLOCK_MAGIC"].encode() == formats.BLOCK_MAGIC
    assert magics["ENG_SEG_END_MAGIC"].encode() == formats.SEG_END_MAGIC
