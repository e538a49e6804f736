/*
 * engine_core.c — the C core of the storage engine: XXH64 plus the encoders
 * and validating decoders of the transaction record and the snapshot block
 * whose byte layouts are declared in engine_format.h.
 *
 * Ground rules for everything in this file:
 *  - No allocation. The caller owns every buffer; nothing here keeps a pointer
 *    past the call.
 *  - Every integer on disk is little-endian and is read/written byte by byte
 *    through memcpy, so the code works on big-endian hosts and on unaligned
 *    buffers.
 *  - Decoders treat their input as hostile: every size is computed with
 *    overflow checks before any byte it covers is read, and nothing past
 *    buf[len - 1] is ever touched. On failure *view is left unchanged.
 */
#include <stdint.h>
#include <string.h>

#include "engine_format.h"
#include "engine_bytes.h"

/* -------------------------- Byte-order helpers -------------------------- */

/* Loads (ld16/ld32/ld64) live in engine_bytes.h, shared with engine_index.c. */

/* Writes v little-endian at p[0..2). */
static void st16(uint8_t *p, uint16_t v) {
    uint8_t b[2];
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    memcpy(p, b, 2);
}

/* Writes v little-endian at p[0..4). */
static void st32(uint8_t *p, uint32_t v) {
#if ENG_NATIVE_LE
    memcpy(p, &v, 4);
#else
    int i;
    for (i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
#endif
}

/* Writes v little-endian at p[0..8). */
static void st64(uint8_t *p, uint64_t v) {
#if ENG_NATIVE_LE
    memcpy(p, &v, 8);
#else
    int i;
    for (i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
#endif
}

/* memcpy that tolerates (NULL, 0): memcpy itself must not get NULL even for 0. */
static void copy_bytes(uint8_t *dst, const uint8_t *src, size_t n) {
    if (n) memcpy(dst, src, n);
}

/* --------------------------- Size arithmetic ---------------------------- */

/* *acc += x; returns 0, or -1 (with *acc unchanged) if the sum overflows size_t. */
static int sz_add(size_t *acc, uint64_t x) {
    if (x > (uint64_t)(SIZE_MAX - *acc)) return -1;
    *acc += (size_t)x;
    return 0;
}

/* -------------------------------- XXH64 --------------------------------- */

#define P64_1 0x9E3779B185EBCA87ULL
#define P64_2 0xC2B2AE3D27D4EB4FULL
#define P64_3 0x165667B19E3779F9ULL
#define P64_4 0x85EBCA77C2B2AE63ULL
#define P64_5 0x27D4EB2F165667C5ULL

/* v rotated left by r bits (0 < r < 64). */
static uint64_t rotl64(uint64_t v, unsigned r) {
    return (v << r) | (v >> (64u - r));
}

/* One lane step: folds an 8-byte lane into an accumulator. */
static uint64_t xxh_round(uint64_t acc, uint64_t lane) {
    acc += lane * P64_2;
    acc = rotl64(acc, 31);
    return acc * P64_1;
}

/* One 32-byte stripe at p folded into the four lane accumulators. */
static void xxh_stripe(uint64_t v[4], const uint8_t *p) {
    v[0] = xxh_round(v[0], ld64(p));
    v[1] = xxh_round(v[1], ld64(p + 8));
    v[2] = xxh_round(v[2], ld64(p + 16));
    v[3] = xxh_round(v[3], ld64(p + 24));
}

/* Folds one of the four lane accumulators into the converged hash. */
static uint64_t xxh_merge(uint64_t h, uint64_t v) {
    h ^= xxh_round(0, v);
    return h * P64_1 + P64_4;
}

/* The tail of XXH64: folds the last left (< 32) bytes at s into h (which already
 * holds the converged lanes plus the total length) and avalanches. */
static uint64_t xxh_finish(uint64_t h, const uint8_t *s, size_t left) {
    while (left >= 8) {
        h ^= xxh_round(0, ld64(s));
        h = rotl64(h, 27) * P64_1 + P64_4;
        s += 8;
        left -= 8;
    }
    if (left >= 4) {
        h ^= (uint64_t)ld32(s) * P64_1;
        h = rotl64(h, 23) * P64_2 + P64_3;
        s += 4;
        left -= 4;
    }
    while (left > 0) {
        h ^= (uint64_t)(*s) * P64_5;
        h = rotl64(h, 11) * P64_1;
        s++;
        left--;
    }
    h ^= h >> 33;
    h *= P64_2;
    h ^= h >> 29;
    h *= P64_3;
    h ^= h >> 32;
    return h;
}

/* The four lanes folded into one hash (inputs of 32 bytes or more). */
static uint64_t xxh_converge(const uint64_t v[4]) {
    uint64_t h = rotl64(v[0], 1) + rotl64(v[1], 7) + rotl64(v[2], 12) + rotl64(v[3], 18);
    h = xxh_merge(h, v[0]);
    h = xxh_merge(h, v[1]);
    h = xxh_merge(h, v[2]);
    return xxh_merge(h, v[3]);
}

/* The lanes' starting values for seed. */
static void xxh_lanes(uint64_t v[4], uint64_t seed) {
    v[0] = seed + P64_1 + P64_2;
    v[1] = seed + P64_2;
    v[2] = seed;
    v[3] = seed - P64_1;
}

/* Returns XXH64(p[0..n), seed). p may be NULL when n == 0. */
uint64_t eng_xxh64(const void *p, size_t n, uint64_t seed) {
    const uint8_t *s = (const uint8_t *)p;
    size_t left = n;
    uint64_t h;

    if (left >= 32) {
        uint64_t v[4];
        xxh_lanes(v, seed);
        do {
            xxh_stripe(v, s);
            s += 32;
            left -= 32;
        } while (left >= 32);
        h = xxh_converge(v);
    } else {
        h = seed + P64_5;
    }
    return xxh_finish(h + (uint64_t)n, s, left);
}

uint64_t eng_xxh64_v(const uint8_t *const *parts, const size_t *lens, size_t n,
                     uint64_t seed) {
    uint64_t v[4];
    uint8_t carry[32];  /* bytes of an unfinished 32-byte stripe, across parts */
    size_t held = 0, i;
    uint64_t total = 0;

    xxh_lanes(v, seed);
    for (i = 0; i < n; i++) {
        const uint8_t *s = parts[i];
        size_t left = lens[i];
        if (left == 0) continue;  /* (s may be NULL then) */
        total += (uint64_t)left;
        if (held) {  /* finish the stripe the previous parts began */
            size_t take = left < 32 - held ? left : 32 - held;
            memcpy(carry + held, s, take);
            held += take;
            s += take;
            left -= take;
            if (held < 32) continue;
            xxh_stripe(v, carry);
            held = 0;
        }
        while (left >= 32) {
            xxh_stripe(v, s);
            s += 32;
            left -= 32;
        }
        if (left) {
            memcpy(carry, s, left);
            held = left;
        }
    }
    return xxh_finish((total >= 32 ? xxh_converge(v) : seed + P64_5) + total,
                      carry, held);
}

/* ------------------------- Shared column checks ------------------------- */

/* Returns 0 if col[0..len) is exactly n non-empty names, each ended by one
 * NUL (so: n NULs, last byte NUL, no NUL at the start or after a NUL);
 * ENG_E_NAMES otherwise. Reads only col[0..len). */
static int check_names(const uint8_t *col, size_t len, uint32_t n) {
    size_t pos = 0;
    uint32_t k;
    for (k = 0; k < n; k++) {
        const uint8_t *nul;
        if (pos >= len) return ENG_E_NAMES;          /* fewer than n names */
        nul = (const uint8_t *)memchr(col + pos, 0, len - pos);
        if (nul == NULL) return ENG_E_NAMES;         /* unterminated name */
        if (nul == col + pos) return ENG_E_NAMES;    /* empty name */
        pos = (size_t)(nul - col) + 1;
    }
    return pos == len ? 0 : ENG_E_NAMES;             /* extra bytes or NULs */
}

/* Returns the sum of the n little-endian u32s at p (cannot overflow u64). */
static uint64_t sum_u32(const uint8_t *p, uint32_t n) {
    uint64_t s = 0;
    uint32_t i;
    for (i = 0; i < n; i++) s += ld32(p + 4 * (size_t)i);
    return s;
}

/* Returns 1 if any of the n little-endian u64s at p is zero, else 0. */
static int any_zero_u64(const uint8_t *p, uint32_t n) {
    uint32_t i;
    for (i = 0; i < n; i++)
        if (ld64(p + 8 * (size_t)i) == 0) return 1;
    return 0;
}

/* Returns the sum of the n host-order u32s in a (cannot overflow u64). */
static uint64_t sum_host_u32(const uint32_t *a, uint32_t n) {
    uint64_t s = 0;
    uint32_t i;
    for (i = 0; i < n; i++) s += a[i];
    return s;
}

/* -------------------------- Transaction record -------------------------- */

/* Column offsets of a record; end is where the trailer starts. */
typedef struct {
    size_t versions, prev, data_lens, streams, types, data, end, total;
} tx_layout;

/* Fills *o for the given sizes; returns 0, or -1 if any offset overflows size_t. */
static int tx_layout_of(uint32_t n, uint32_t sl, uint32_t tl, uint32_t dl,
                        tx_layout *o) {
    size_t at = ENG_TX_HEADER_SIZE;
    o->versions = at;
    if (sz_add(&at, 8 * (uint64_t)n)) return -1;
    o->prev = at;
    if (sz_add(&at, 8 * (uint64_t)n)) return -1;
    o->data_lens = at;
    if (sz_add(&at, 4 * (uint64_t)n)) return -1;
    o->streams = at;
    if (sz_add(&at, sl)) return -1;
    o->types = at;
    if (sz_add(&at, tl)) return -1;
    o->data = at;
    if (sz_add(&at, dl)) return -1;
    o->end = at;
    if (sz_add(&at, ENG_TX_TRAILER_SIZE)) return -1;
    o->total = at;
    return 0;
}

/* Returns the encoded size of a record with these sizes, or 0 on overflow. */
size_t eng_tx_encoded_size(uint32_t n, uint32_t streams_len,
                           uint32_t types_len, uint32_t data_len,
                           uint32_t tracking_len) {
    tx_layout o;
    size_t total;
    if (tx_layout_of(n, streams_len, types_len, data_len, &o)) return 0;
    total = o.total;
    if (sz_add(&total, tracking_len)) return 0;
    return total;
}

/* Checks the tracking section sec[0..len): u32 count >= 1, then count entries
 * (u64 position >= 1, u32 name_len in 1..ENG_MAX_NAME, name without NUL), ending
 * exactly at len. Every read is bounds-checked against len first. */
static int check_tracking(const uint8_t *sec, size_t len, uint32_t *count_out) {
    size_t at = 4;
    uint32_t count, i, nl;
    if (len < 4) return ENG_E_OVERRUN;
    count = ld32(sec);
    if (count == 0) return ENG_E_FIELD;
    for (i = 0; i < count; i++) {
        if (len - at < 12) return ENG_E_OVERRUN;
        if (ld64(sec + at) == 0) return ENG_E_FIELD;
        nl = ld32(sec + at + 8);
        at += 12;
        if (nl == 0 || nl > ENG_MAX_NAME) return ENG_E_NAMES;
        if (len - at < nl) return ENG_E_OVERRUN;
        if (memchr(sec + at, 0, nl) != NULL) return ENG_E_NAMES;
        at += nl;
    }
    if (at != len) return ENG_E_TRAILING;
    *count_out = count;
    return ENG_OK;
}

/* Writes one record into out[0..out_cap); returns its size or ENG_E_ARG
 * (n == 0, a NULL column with entries, data_lens not summing to data_len,
 * size overflow, out_cap too small). Writes nothing on ENG_E_ARG. The caller
 * owns all buffers; names are copied unchecked. */
int64_t eng_tx_encode(uint64_t tx_id, uint64_t epoch, uint64_t ts_ns,
                      uint64_t first_position, uint32_t n,
                      const uint64_t *versions, const uint64_t *prev_tx,
                      const uint32_t *data_lens,
                      const uint8_t *streams, uint32_t streams_len,
                      const uint8_t *types, uint32_t types_len,
                      const uint8_t *data, uint32_t data_len,
                      const uint8_t *tracking, uint32_t tracking_len,
                      uint8_t *out, size_t out_cap) {
    tx_layout o;
    uint32_t i;
    size_t total;

    if ((n == 0 && tracking_len == 0) || out == NULL ||
        (n && (versions == NULL || prev_tx == NULL || data_lens == NULL)))
        return ENG_E_ARG;
    if ((streams_len && !streams) || (types_len && !types) || (data_len && !data) ||
        (tracking_len && !tracking))
        return ENG_E_ARG;
    if (n && sum_host_u32(data_lens, n) != data_len) return ENG_E_ARG;
    if (!n && data_len) return ENG_E_ARG;
    if (tx_layout_of(n, streams_len, types_len, data_len, &o)) return ENG_E_ARG;
    total = o.total;
    if (sz_add(&total, tracking_len)) return ENG_E_ARG;
    if (total > out_cap) return ENG_E_ARG;

    memcpy(out, ENG_TX_MAGIC, 4);
    st16(out + 4, tracking_len ? ENG_TX_VERSION_TRACKING : ENG_TX_VERSION);
    st16(out + 6, tracking_len ? ENG_TX_FLAG_TRACKING : 0);
    st64(out + 8, tx_id);
    st64(out + 16, epoch);
    st64(out + 24, ts_ns);
    st64(out + 32, first_position);
    st32(out + 40, n);
    st32(out + 44, streams_len);
    st32(out + 48, types_len);
    st32(out + 52, data_len);
    for (i = 0; i < n; i++) {
        st64(out + o.versions + 8 * (size_t)i, versions[i]);
        st64(out + o.prev + 8 * (size_t)i, prev_tx[i]);
        st32(out + o.data_lens + 4 * (size_t)i, data_lens[i]);
    }
    copy_bytes(out + o.streams, streams, streams_len);
    copy_bytes(out + o.types, types, types_len);
    copy_bytes(out + o.data, data, data_len);
    copy_bytes(out + o.end, tracking, tracking_len);
    st64(out + o.end + tracking_len, eng_xxh64(out, o.end + tracking_len, 0));
    return (int64_t)total;
}

/* Steps 1-6 of the record checks (TRUNCATED, BAD_MAGIC, VERSION, CHECKSUM,
 * FIELD for n = 0, OVERRUN/TRAILING): on ENG_OK, *o holds the layout, every
 * column lies inside buf[0..len - 8), and n, sl, tl, dl the four length fields.
 * The caller has checked buf (NULL only with len 0). */
static int tx_frame(const uint8_t *buf, size_t len, tx_layout *o, uint32_t *n,
                    uint32_t *sl, uint32_t *tl, uint32_t *dl, int *tracking) {
    size_t body;
    uint16_t version, flags;

    if (len < ENG_TX_HEADER_SIZE + ENG_TX_TRAILER_SIZE) return ENG_E_TRUNCATED;
    if (memcmp(buf, ENG_TX_MAGIC, 4) != 0) return ENG_E_BAD_MAGIC;
    version = ld16(buf + 4);
    if (version != ENG_TX_VERSION && version != ENG_TX_VERSION_TRACKING)
        return ENG_E_VERSION;
    body = len - ENG_TX_TRAILER_SIZE;
    if (eng_xxh64(buf, body, 0) != ld64(buf + body)) return ENG_E_CHECKSUM;

    flags = ld16(buf + 6);
    /* Version 1 never had flags (ignored, as before); version 2 knows bit 0 only. */
    *tracking = version == ENG_TX_VERSION_TRACKING && (flags & ENG_TX_FLAG_TRACKING);
    if (version == ENG_TX_VERSION_TRACKING && (flags & ~ENG_TX_FLAG_TRACKING))
        return ENG_E_FIELD;
    *n = ld32(buf + 40);
    *sl = ld32(buf + 44);
    *tl = ld32(buf + 48);
    *dl = ld32(buf + 52);
    if (*n == 0 && !*tracking) return ENG_E_FIELD;
    if (tx_layout_of(*n, *sl, *tl, *dl, o)) return ENG_E_OVERRUN;
    if (o->end > body) return ENG_E_OVERRUN;
    if (o->end < body && !*tracking) return ENG_E_TRAILING;
    return ENG_OK;
}

/* Fills *view from a record that passed every check. */
static void tx_fill_view(const uint8_t *buf, size_t len, const tx_layout *o, uint32_t n,
                         uint32_t sl, uint32_t tl, uint32_t dl, uint32_t tcount,
                         eng_tx_view *view) {
    view->format_version = ld16(buf + 4);
    view->flags = ld16(buf + 6);
    view->tx_id = ld64(buf + 8);
    view->epoch = ld64(buf + 16);
    view->ts_ns = ld64(buf + 24);
    view->first_position = ld64(buf + 32);
    view->event_count = n;
    view->streams_len = sl;
    view->types_len = tl;
    view->data_len = dl;
    view->versions_off = o->versions;
    view->prev_off = o->prev;
    view->data_lens_off = o->data_lens;
    view->streams_off = o->streams;
    view->types_off = o->types;
    view->data_off = o->data;
    view->tracking_count = tcount;
    view->tracking_off = tcount ? o->end + 4 : 0;
    view->tracking_len = tcount ? len - ENG_TX_TRAILER_SIZE - o->end - 4 : 0;
}

/* Validates buf[0..len) as one whole record; returns ENG_OK (and fills *view
 * with offsets into buf) or the first failing ENG_E_* in the header's order.
 * ENG_E_ARG if view is NULL or buf is NULL with len > 0. */
int eng_tx_decode(const uint8_t *buf, size_t len, eng_tx_view *view) {
    tx_layout o;
    uint32_t n, sl, tl, dl, tcount = 0;
    int rc, tracking;

    if (view == NULL || (buf == NULL && len != 0)) return ENG_E_ARG;
    if ((rc = tx_frame(buf, len, &o, &n, &sl, &tl, &dl, &tracking)) != ENG_OK) return rc;
    /* From here on every column lies inside buf[0..len - 8). */
    if ((rc = check_names(buf + o.streams, sl, n)) != 0) return rc;
    if ((rc = check_names(buf + o.types, tl, n)) != 0) return rc;
    if (sum_u32(buf + o.data_lens, n) != dl) return ENG_E_LENGTHS;
    if (any_zero_u64(buf + o.versions, n)) return ENG_E_FIELD;
    if (tracking && (rc = check_tracking(buf + o.end, len - ENG_TX_TRAILER_SIZE - o.end,
                                         &tcount)) != 0)
        return rc;
    tx_fill_view(buf, len, &o, n, sl, tl, dl, tcount, view);
    return ENG_OK;
}

/* Returns 1 if p[0..len) is well-formed UTF-8 as Python's strict decoder reads
 * it (Unicode table 3-7: no overlong forms, no surrogates, nothing past
 * U+10FFFF), else 0. ASCII is skipped 8 bytes at a time. */
static int utf8_ok(const uint8_t *p, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        uint8_t lo = 0x80, hi = 0xBF;
        size_t need, k;
        if (c < 0x80) {
            uint64_t w;
            if (len - i >= 8) {
                memcpy(&w, p + i, 8);
                if ((w & 0x8080808080808080ULL) == 0) {
                    i += 8;
                    continue;
                }
            }
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return 0;  /* 80..C1 (continuation or overlong lead), F5..FF */
        }
        if (len - i - 1 < need) return 0;
        for (k = 1; k <= need; k++) {
            uint8_t b = p[i + k];
            if (b < lo || b > hi) return 0;
            lo = 0x80;
            hi = 0xBF;
        }
        i += need + 1;
    }
    return 1;
}

/* A name column read name by name under check_names' rule, finding the NULs 8
 * bytes at a time (one memchr per name costs more than the name on short names).
 * Reads only col[0..len). */
typedef struct {
    const uint8_t *col;
    size_t len;
    size_t start;  /* where the next name starts */
    size_t word;   /* offset of the word in mask (a multiple of 8) */
    uint64_t mask; /* bit 7 of byte b set: col[word + b] is a NUL not yet handed out */
} name_scan;

/* Bit 7 of each byte of the result is set exactly where that byte of w is 0. */
static uint64_t zero_bytes(uint64_t w) {
    const uint64_t low7 = 0x7F7F7F7F7F7F7F7FULL;
    return ~(((w & low7) + low7) | w | low7);
}

/* The NUL mask of the word at col[at] (at < len); bytes past len count as non-NUL. */
static uint64_t scan_word(const name_scan *sc, size_t at) {
    uint64_t w;
    if (sc->len - at >= 8) {
        w = ld64(sc->col + at);
    } else {
        uint8_t b[8];
        memset(b, 0xFF, 8);
        memcpy(b, sc->col + at, sc->len - at);
        w = ld64(b);
    }
    return zero_bytes(w);
}

static void scan_init(name_scan *sc, const uint8_t *col, size_t len) {
    sc->col = col;
    sc->len = len;
    sc->start = 0;
    sc->word = 0;
    sc->mask = len ? scan_word(sc, 0) : 0;
}

/* The next name: returns 1 with its offset and length in at and nlen, or 0 if the
 * column has no further NUL-ended name or the name is empty (ENG_E_NAMES). */
static int scan_next(name_scan *sc, size_t *at, size_t *nlen) {
    size_t nul;
    while (sc->mask == 0) {
        sc->word += 8;
        if (sc->word >= sc->len) return 0;  /* unterminated name, or none left */
        sc->mask = scan_word(sc, sc->word);
    }
    nul = sc->word + (size_t)(__builtin_ctzll(sc->mask) >> 3);
    sc->mask &= sc->mask - 1;
    if (nul == sc->start) return 0;  /* empty name */
    *at = sc->start;
    *nlen = nul - sc->start;
    sc->start = nul + 1;
    return 1;
}

/* 1 if the names handed out fill the column exactly (no bytes or NULs left). */
static int scan_done(const name_scan *sc) {
    return sc->start == sc->len;
}

/* Finds one stream's events in a record; see engine_format.h. The name columns
 * are checked in the same loops that match and locate (one pass each), so the
 * checks and their order are eng_tx_decode's, with UTF-8 after them. */
int64_t eng_tx_find_stream(const uint8_t *buf, size_t len, const uint8_t *name,
                           size_t name_len, eng_tx_view *view, eng_stream_hit *hits,
                           uint32_t cap) {
    tx_layout o;
    uint32_t n, sl, tl, dl, k, j, found = 0, kept, tcount = 0;
    uint64_t sum = 0;
    int rc, tracking;

    if (view == NULL || (buf == NULL && len != 0) || (name == NULL && name_len != 0) ||
        (hits == NULL && cap != 0))
        return ENG_E_ARG;
    if ((rc = tx_frame(buf, len, &o, &n, &sl, &tl, &dl, &tracking)) != ENG_OK) return rc;

    /* Stream column: check_names' rule, matching each name as it is delimited. */
    {
        name_scan sc;
        size_t at, nlen;
        const uint8_t *col = buf + o.streams;
        scan_init(&sc, col, sl);
        for (k = 0; k < n; k++) {
            if (!scan_next(&sc, &at, &nlen)) return ENG_E_NAMES;
            /* Stream names often share a prefix and differ at the end: the last
             * byte first, then the whole name. */
            if (nlen == name_len && col[at + nlen - 1] == name[name_len - 1] &&
                memcmp(col + at, name, name_len) == 0) {
                if (found < cap) hits[found].index = k;
                found++;
            }
        }
        if (!scan_done(&sc)) return ENG_E_NAMES;
        kept = found < cap ? found : cap;

        /* Type column: the same rule, noting where each kept hit's type lies. */
        col = buf + o.types;
        scan_init(&sc, col, tl);
        for (k = 0, j = 0; k < n; k++) {
            if (!scan_next(&sc, &at, &nlen)) return ENG_E_NAMES;
            if (j < kept && hits[j].index == k) {
                hits[j].type_off = o.types + at;
                hits[j].type_len = nlen;
                j++;
            }
        }
        if (!scan_done(&sc)) return ENG_E_NAMES;
    }

    /* Data lengths: the LENGTHS sum, noting each kept hit's payload. */
    for (k = 0, j = 0; k < n; k++) {
        uint32_t l = ld32(buf + o.data_lens + 4 * (size_t)k);
        if (j < kept && hits[j].index == k) {
            hits[j].data_off = o.data + sum;  /* inside buf once LENGTHS passes */
            hits[j].data_len = l;
            j++;
        }
        sum += l;
    }
    if (sum != dl) return ENG_E_LENGTHS;
    if (any_zero_u64(buf + o.versions, n)) return ENG_E_FIELD;
    if (tracking && (rc = check_tracking(buf + o.end, len - ENG_TX_TRAILER_SIZE - o.end,
                                         &tcount)) != 0)
        return rc;
    if (!utf8_ok(buf + o.streams, sl) || !utf8_ok(buf + o.types, tl)) return ENG_E_NAMES;

    for (j = 0; j < kept; j++) {
        size_t i = (size_t)hits[j].index;
        hits[j].version = ld64(buf + o.versions + 8 * i);
        hits[j].prev_tx = ld64(buf + o.prev + 8 * i);
    }
    tx_fill_view(buf, len, &o, n, sl, tl, dl, tcount, view);
    return (int64_t)found;
}

/* Frames a run of records as a segment body: the one implementation behind
 * eng_seg_frame (contiguous: ptrs == NULL, record i at recs + sum of lens[0..i))
 * and eng_seg_frame_v (record i at ptrs[i]); the arguments are checked by them. */
static int64_t seg_frame(const uint8_t *recs, const uint8_t *const *ptrs,
                         const uint32_t *lens, uint32_t n, uint64_t first_tx,
                         uint64_t epoch, uint64_t *position, uint8_t *out, uint32_t *bad) {
    size_t off = 0, w = 0;
    uint64_t pos = *position;
    uint32_t i;
    eng_tx_view v;
    int rc;

    for (i = 0; i < n; i++) {
        const uint8_t *rec = ptrs != NULL ? ptrs[i] : recs + off;
        if (rec == NULL) {
            *bad = i;
            return ENG_E_ARG;
        }
        rc = eng_tx_decode(rec, lens[i], &v);
        if (rc != ENG_OK) {
            *bad = i;
            return rc;
        }
        if (v.tx_id != first_tx + i || v.epoch != epoch || pos == UINT64_MAX ||
            v.first_position != pos + 1 || v.event_count > UINT64_MAX - pos) {
            *bad = i;
            return ENG_E_FIELD;
        }
        pos += v.event_count;
        st32(out + w, lens[i]);
        memcpy(out + w + 4, rec, lens[i]);
        w += 4 + (size_t)lens[i];
        off += lens[i];
    }
    *position = pos;
    return (int64_t)w;
}

/* Sums lens[0..n) into *total; returns 0, or -1 if out_cap cannot hold the framed
 * run (total + 4n) or a sum overflows size_t. */
static int seg_frame_size(const uint32_t *lens, uint32_t n, size_t out_cap, size_t *total) {
    size_t t = 0;
    uint32_t i;
    for (i = 0; i < n; i++) {
        if (t > SIZE_MAX - lens[i]) return -1;
        t += lens[i];
    }
    if (t > SIZE_MAX - 4 * (size_t)n || out_cap < t + 4 * (size_t)n) return -1;
    *total = t;
    return 0;
}

/* Frames a run of records held back to back; see engine_format.h. */
int64_t eng_seg_frame(const uint8_t *recs, size_t recs_len, const uint32_t *lens,
                      uint32_t n, uint64_t first_tx, uint64_t epoch,
                      uint64_t *position, uint8_t *out, size_t out_cap, uint32_t *bad) {
    size_t total;

    if (bad == NULL) return ENG_E_ARG;
    *bad = n;
    if (recs == NULL || lens == NULL || position == NULL || out == NULL || n == 0)
        return ENG_E_ARG;
    if (seg_frame_size(lens, n, out_cap, &total) || total != recs_len) return ENG_E_ARG;
    return seg_frame(recs, NULL, lens, n, first_tx, epoch, position, out, bad);
}

/* Frames a run of records each in its own buffer; see engine_format.h. */
int64_t eng_seg_frame_v(const uint8_t *const *recs, const uint32_t *lens, uint32_t n,
                        uint64_t first_tx, uint64_t epoch, uint64_t *position,
                        uint8_t *out, size_t out_cap, uint32_t *bad) {
    size_t total;

    if (bad == NULL) return ENG_E_ARG;
    *bad = n;
    if (recs == NULL || lens == NULL || position == NULL || out == NULL || n == 0)
        return ENG_E_ARG;
    if (seg_frame_size(lens, n, out_cap, &total)) return ENG_E_ARG;
    return seg_frame(NULL, recs, lens, n, first_tx, epoch, position, out, bad);
}

/* Seals a segment: header, body, footer; see engine_format.h. */
int64_t eng_seg_seal(const uint8_t *head, size_t head_len, const uint8_t *body,
                     size_t body_len, uint8_t *out, size_t out_cap) {
    size_t end;

    if (head == NULL || out == NULL || (body == NULL && body_len != 0)) return ENG_E_ARG;
    if (head_len > SIZE_MAX - body_len) return ENG_E_ARG;
    end = head_len + body_len;
    if (end > SIZE_MAX - ENG_SEG_FOOTER_SIZE || out_cap < end + ENG_SEG_FOOTER_SIZE)
        return ENG_E_ARG;
    memcpy(out, head, head_len);
    if (body_len) memcpy(out + head_len, body, body_len);
    st64(out + end, eng_xxh64(out, end, 0));
    memcpy(out + end + 8, ENG_SEG_END_MAGIC, 8);
    return (int64_t)(end + ENG_SEG_FOOTER_SIZE);
}

/* ---------------------------- Snapshot block ---------------------------- */

/* Column offsets of a block; end is where the trailer starts. */
typedef struct {
    size_t versions, last_tx, value_lens, none_idx, names, values, end, total;
} block_layout;

/* Fills *o for the given sizes; returns 0, or -1 if any offset overflows size_t. */
static int block_layout_of(uint32_t n, uint32_t m, uint32_t nl, uint32_t vl,
                           block_layout *o) {
    size_t at = ENG_BLOCK_HEADER_SIZE;
    o->versions = at;
    if (sz_add(&at, 8 * (uint64_t)n)) return -1;
    o->last_tx = at;
    if (sz_add(&at, 8 * (uint64_t)n)) return -1;
    o->value_lens = at;
    if (sz_add(&at, 4 * (uint64_t)n)) return -1;
    o->none_idx = at;
    if (sz_add(&at, 4 * (uint64_t)m)) return -1;
    o->names = at;
    if (sz_add(&at, nl)) return -1;
    o->values = at;
    if (sz_add(&at, vl)) return -1;
    o->end = at;
    if (sz_add(&at, ENG_BLOCK_TRAILER_SIZE)) return -1;
    o->total = at;
    return 0;
}

/* Returns the encoded size of a block with these sizes, or 0 on overflow. */
size_t eng_block_encoded_size(uint32_t n, uint32_t m, uint32_t names_len,
                              uint32_t values_len) {
    block_layout o;
    if (block_layout_of(n, m, names_len, values_len, &o)) return 0;
    return o.total;
}

/* Writes one block into out[0..out_cap); returns its size or ENG_E_ARG
 * (n == 0, m > n, a NULL column with entries, value_lens not summing to
 * values_len, a bad none_idx, size overflow, out_cap too small). Writes
 * nothing on ENG_E_ARG. The caller owns all buffers; names are copied
 * unchecked. */
int64_t eng_block_encode(uint32_t n, const uint64_t *versions,
                         const uint64_t *last_tx, const uint32_t *value_lens,
                         uint32_t m, const uint32_t *none_idx,
                         const uint8_t *names, uint32_t names_len,
                         const uint8_t *values, uint32_t values_len,
                         uint8_t *out, size_t out_cap) {
    block_layout o;
    uint32_t i;

    if (n == 0 || m > n) return ENG_E_ARG;
    if (out == NULL || versions == NULL || last_tx == NULL || value_lens == NULL)
        return ENG_E_ARG;
    if ((m && !none_idx) || (names_len && !names) || (values_len && !values))
        return ENG_E_ARG;
    if (sum_host_u32(value_lens, n) != values_len) return ENG_E_ARG;
    for (i = 0; i < m; i++) {
        uint32_t idx = none_idx[i];
        if (idx >= n || (i > 0 && idx <= none_idx[i - 1]) || value_lens[idx] != 0)
            return ENG_E_ARG;
    }
    if (block_layout_of(n, m, names_len, values_len, &o)) return ENG_E_ARG;
    if (o.total > out_cap) return ENG_E_ARG;

    memcpy(out, ENG_BLOCK_MAGIC, 4);
    st32(out + 4, n);
    st32(out + 8, m);
    st32(out + 12, names_len);
    st32(out + 16, values_len);
    st32(out + 20, 0);
    for (i = 0; i < n; i++) {
        st64(out + o.versions + 8 * (size_t)i, versions[i]);
        st64(out + o.last_tx + 8 * (size_t)i, last_tx[i]);
        st32(out + o.value_lens + 4 * (size_t)i, value_lens[i]);
    }
    for (i = 0; i < m; i++) st32(out + o.none_idx + 4 * (size_t)i, none_idx[i]);
    copy_bytes(out + o.names, names, names_len);
    copy_bytes(out + o.values, values, values_len);
    st64(out + o.end, eng_xxh64(out, o.end, 0));
    return (int64_t)o.total;
}

/* Validates the block at buf[0] (buf holds len bytes, possibly more blocks
 * after it); returns ENG_OK (filling *view, offsets relative to buf, and
 * view->block_len) or the first failing ENG_E_* in this order: TRUNCATED,
 * BAD_MAGIC, FIELD (header), OVERRUN, CHECKSUM, FIELD (columns), NAMES,
 * LENGTHS. ENG_E_ARG if view is NULL or buf is NULL with len > 0. */
int eng_block_decode(const uint8_t *buf, size_t len, eng_block_view *view) {
    block_layout o;
    uint32_t n, m, nl, vl, i;
    int rc;

    if (view == NULL || (buf == NULL && len != 0)) return ENG_E_ARG;
    if (len < ENG_BLOCK_HEADER_SIZE + ENG_BLOCK_TRAILER_SIZE) return ENG_E_TRUNCATED;
    if (memcmp(buf, ENG_BLOCK_MAGIC, 4) != 0) return ENG_E_BAD_MAGIC;

    n = ld32(buf + 4);
    m = ld32(buf + 8);
    nl = ld32(buf + 12);
    vl = ld32(buf + 16);
    if (n == 0 || m > n || ld32(buf + 20) != 0) return ENG_E_FIELD;
    if (block_layout_of(n, m, nl, vl, &o)) return ENG_E_OVERRUN;
    if (o.total > len) return ENG_E_OVERRUN;
    if (eng_xxh64(buf, o.end, 0) != ld64(buf + o.end)) return ENG_E_CHECKSUM;
    /* From here on every column lies inside buf[0..o.end). */

    if (any_zero_u64(buf + o.versions, n) || any_zero_u64(buf + o.last_tx, n))
        return ENG_E_FIELD;
    for (i = 0; i < m; i++) {
        uint32_t idx = ld32(buf + o.none_idx + 4 * (size_t)i);
        if (idx >= n) return ENG_E_FIELD;
        if (i > 0 && idx <= ld32(buf + o.none_idx + 4 * (size_t)(i - 1)))
            return ENG_E_FIELD;
        if (ld32(buf + o.value_lens + 4 * (size_t)idx) != 0) return ENG_E_FIELD;
    }
    if ((rc = check_names(buf + o.names, nl, n)) != 0) return rc;
    if (sum_u32(buf + o.value_lens, n) != vl) return ENG_E_LENGTHS;

    view->entry_count = n;
    view->none_count = m;
    view->names_len = nl;
    view->values_len = vl;
    view->versions_off = o.versions;
    view->last_tx_off = o.last_tx;
    view->value_lens_off = o.value_lens;
    view->none_idx_off = o.none_idx;
    view->names_off = o.names;
    view->values_off = o.values;
    view->block_len = o.total;
    return ENG_OK;
}
