"""cffi build script for ``engine._ccore``: the C core in csrc/ (API mode, out-of-line).

``setup.py`` picks up ``ffibuilder`` through ``cffi_modules``; run this file directly
(``python build_ffi.py``) to compile the extension on its own. The declarations
below mirror ``csrc/engine_format.h`` and must change with it.
"""

from __future__ import annotations

from cffi import FFI

ffibuilder = FFI()

ffibuilder.cdef(
    """
    #define ENG_OK ...
    #define ENG_E_TRUNCATED ...
    #define ENG_E_BAD_MAGIC ...
    #define ENG_E_VERSION ...
    #define ENG_E_CHECKSUM ...
    #define ENG_E_OVERRUN ...
    #define ENG_E_NAMES ...
    #define ENG_E_LENGTHS ...
    #define ENG_E_TRAILING ...
    #define ENG_E_FIELD ...
    #define ENG_E_ARG ...

    #define ENG_TX_VERSION ...
    #define ENG_TX_HEADER_SIZE ...
    #define ENG_TX_TRAILER_SIZE ...
    #define ENG_BLOCK_HEADER_SIZE ...
    #define ENG_BLOCK_TRAILER_SIZE ...

    typedef struct {
        uint16_t format_version;
        uint16_t flags;
        uint64_t tx_id;
        uint64_t epoch;
        uint64_t ts_ns;
        uint64_t first_position;
        uint32_t event_count;
        uint32_t streams_len;
        uint32_t types_len;
        uint32_t data_len;
        size_t versions_off;
        size_t prev_off;
        size_t data_lens_off;
        size_t streams_off;
        size_t types_off;
        size_t data_off;
    } eng_tx_view;

    size_t eng_tx_encoded_size(uint32_t n, uint32_t streams_len,
                               uint32_t types_len, uint32_t data_len);

    int64_t eng_tx_encode(uint64_t tx_id, uint64_t epoch, uint64_t ts_ns,
                          uint64_t first_position, uint32_t n,
                          const uint64_t *versions, const uint64_t *prev_tx,
                          const uint32_t *data_lens,
                          const uint8_t *streams, uint32_t streams_len,
                          const uint8_t *types, uint32_t types_len,
                          const uint8_t *data, uint32_t data_len,
                          uint8_t *out, size_t out_cap);

    int eng_tx_decode(const uint8_t *buf, size_t len, eng_tx_view *view);

    typedef struct {
        uint32_t entry_count;
        uint32_t none_count;
        uint32_t names_len;
        uint32_t values_len;
        size_t versions_off;
        size_t last_tx_off;
        size_t value_lens_off;
        size_t none_idx_off;
        size_t names_off;
        size_t values_off;
        size_t block_len;
    } eng_block_view;

    size_t eng_block_encoded_size(uint32_t n, uint32_t m, uint32_t names_len,
                                  uint32_t values_len);

    int64_t eng_block_encode(uint32_t n, const uint64_t *versions,
                             const uint64_t *last_tx, const uint32_t *value_lens,
                             uint32_t m, const uint32_t *none_idx,
                             const uint8_t *names, uint32_t names_len,
                             const uint8_t *values, uint32_t values_len,
                             uint8_t *out, size_t out_cap);

    int eng_block_decode(const uint8_t *buf, size_t len, eng_block_view *view);

    uint64_t eng_xxh64(const void *p, size_t n, uint64_t seed);
    """
)

ffibuilder.set_source(
    "engine._ccore",
    '#include "engine_format.h"',
    sources=["csrc/engine_core.c"],
    include_dirs=["csrc"],
    extra_compile_args=["-Wall", "-Wextra", "-O2", "-std=c11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
