/*
 * engine_bytes.h — little-endian loads shared by the C core's translation units.
 * Internal: not part of the cffi interface (build_ffi.py reads only the public
 * headers).
 */
#ifndef ENGINE_BYTES_H
#define ENGINE_BYTES_H

#include <stdint.h>
#include <string.h>

/* Loads are memcpy into a native integer (one unaligned load on x86/arm64) on
 * little-endian hosts; other hosts assemble the value from bytes. The hot loop of
 * XXH64 depends on this: a byte loop that the compiler does not fold into a load
 * made it run at 0.9 GB/s instead of ~7. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ENG_NATIVE_LE 1
#else
#define ENG_NATIVE_LE 0
#endif

/* Little-endian u16 at p (p may be unaligned). */
static inline uint16_t ld16(const uint8_t *p) {
#if ENG_NATIVE_LE
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
#else
    return (uint16_t)(p[0] | ((uint16_t)p[1] << 8));
#endif
}

/* Little-endian u32 at p (p may be unaligned). */
static inline uint32_t ld32(const uint8_t *p) {
#if ENG_NATIVE_LE
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
#else
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
#endif
}

/* Little-endian u64 at p (p may be unaligned). */
static inline uint64_t ld64(const uint8_t *p) {
#if ENG_NATIVE_LE
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
#else
    return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32);
#endif
}

#endif /* ENGINE_BYTES_H */
