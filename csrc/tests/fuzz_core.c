/*
 * fuzz_core.c — a standalone mutation fuzzer for the decoders in engine_core.c.
 *
 * Usage: fuzz_core [seed] [iterations]      (defaults: 1 100000)
 *
 * Each iteration builds a valid transaction record or snapshot block with the
 * real encoders, applies 1..4 random mutations (bit flips, byte rewrites,
 * truncation, extension, insertion/deletion, header length-field and column
 * entry rewrites), re-signs the checksum in most iterations so the deep checks
 * are reached, and runs BOTH decoders on an exact-size heap copy (so ASan sees
 * any read past the end). For every result it:
 *   - compares the return code with an independent, deliberately naive
 *     reference validator that applies the header's checks in the header's
 *     order (any difference aborts), and
 *   - on success, checks that every view offset + length lies inside the
 *     buffer (abort if not).
 * The stream finder (eng_tx_find_stream) runs on the same bytes and on records
 * built for it, against a reference (ref_find: the decoder's verdict, naive
 * UTF-8, names compared one by one).
 * At the end it prints a histogram of return codes and fails if a run of at
 * least 20000 iterations never reached one of the decoders' outcomes.
 * Meant to run under -fsanitize=address,undefined (see csrc/run_c_tests.sh).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_format.h"
#include "engine_index.h"

#define CAP 8192

/* ------------------------------------------------------------- PRNG --- */

static uint64_t g_rng;

/* splitmix64: the next pseudo-random u64. */
static uint64_t rnd(void) {
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform-ish integer in [0, n); n > 0. */
static uint32_t below(uint32_t n) { return (uint32_t)(rnd() % n); }

/* ----------------------------------------------------------- Helpers --- */

static void die(const char *what, uint64_t iter) {
    fprintf(stderr, "fuzz_core: %s (iteration %llu)\n", what, (unsigned long long)iter);
    abort();
}

static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void put32(uint8_t *p, uint32_t v) {
    int i;
    for (i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v) {
    int i;
    for (i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* A random "interesting" u32 near orig. */
static uint32_t interesting32(uint32_t orig) {
    switch (below(10)) {
    case 0: return 0;
    case 1: return 1;
    case 2: return orig + 1;
    case 3: return orig - 1;
    case 4: return UINT32_MAX;
    case 5: return 0x80000000u;
    case 6: return orig + below(64);
    case 7: return orig - below(64);
    case 8: return orig ^ (1u << below(32));
    default: return (uint32_t)rnd();
    }
}

/* Fills p[0..n) with a random non-empty-name column of k names (bytes 1..255). */
static uint32_t random_names(uint8_t *p, uint32_t k, uint32_t room) {
    uint32_t at = 0, i, j;
    for (i = 0; i < k; i++) {
        uint32_t len = 1 + below(below(4) == 0 ? 24 : 6);
        if (at + len + 1 > room) len = 1;
        for (j = 0; j < len; j++) {
            uint8_t c = (uint8_t)(below(4) ? 'a' + below(26) : 1 + below(255));
            p[at++] = c;
        }
        p[at++] = 0;
    }
    return at;
}

/* ---------------------------------------------------- Valid generators --- */

/* Builds a valid record (occasionally with a zero version or a malformed
 * name column, which the encoder copies unchecked) into out; returns size. */
/* A valid tracking section of 1..4 entries into sec (names of random bytes 1..255,
 * positions >= 1; now and then a malformed one, which the encoder copies
 * unchecked); returns its size. */
static uint32_t gen_tracking(uint8_t *sec) {
    uint32_t count = 1 + below(4), at = 4, i, j, nl;
    put32(sec, count);
    for (i = 0; i < count; i++) {
        nl = 1 + below(below(8) == 0 ? 60 : 8);
        put64(sec + at, below(30) == 0 ? 0 : 1 + (rnd() % 100000));
        put32(sec + at + 8, nl);
        at += 12;
        for (j = 0; j < nl; j++) sec[at + j] = (uint8_t)(1 + below(255));
        if (below(30) == 0) sec[at + below(nl)] = 0;
        at += nl;
    }
    return at;
}

static size_t gen_tx(uint8_t *out) {
    uint64_t vers[64], prev[64];
    uint32_t dlens[64], i, n, sl, tl, dl = 0, trl = 0;
    uint8_t streams[2048], types[2048], data[2048], track[512];
    int64_t r;

    if (below(4) == 0) trl = gen_tracking(track);
    n = trl && below(3) == 0 ? 0 : 1 + below(below(8) == 0 ? 40 : 4);
    for (i = 0; i < n; i++) {
        vers[i] = below(20) == 0 ? 0 : 1 + (rnd() % 1000);
        prev[i] = rnd() % 50;
        dlens[i] = below(3) == 0 ? 0 : below(40);
        if (dl + dlens[i] > sizeof data) dlens[i] = 0;
        dl += dlens[i];
    }
    for (i = 0; i < dl; i++) data[i] = (uint8_t)rnd();
    sl = random_names(streams, n, sizeof streams);
    tl = random_names(types, n, sizeof types);
    if (sl && below(20) == 0) streams[below(sl)] ^= (uint8_t)(below(2) ? 0xFF : 0);
    if (tl && below(20) == 0) types[below(tl)] = 0;
    r = eng_tx_encode(rnd(), rnd(), rnd(), rnd(), n, vers, prev, dlens, streams, sl,
                      types, tl, data, dl, trl ? track : NULL, trl, out, CAP);
    if (r <= 0) {
        fprintf(stderr, "fuzz_core: valid tx encode failed (%lld)\n", (long long)r);
        abort();
    }
    return (size_t)r;
}

/* Builds a valid block (occasionally with a zero version/last_tx or a bad
 * name column) into out; returns size. */
static size_t gen_block(uint8_t *out) {
    uint64_t vers[64], last[64];
    uint32_t vlens[64], none[64], i, n, m = 0, nl, vl = 0;
    uint8_t names[2048], values[2048];
    int64_t r;

    n = 1 + below(below(8) == 0 ? 40 : 4);
    for (i = 0; i < n; i++) {
        vers[i] = below(30) == 0 ? 0 : 1 + (rnd() % 1000);
        last[i] = below(30) == 0 ? 0 : 1 + (rnd() % 1000);
        if (below(3) == 0) {
            vlens[i] = 0;
            none[m++] = i;
        } else {
            vlens[i] = below(3) == 0 ? 0 : below(40);
            if (vl + vlens[i] > sizeof values) vlens[i] = 0;
        }
        vl += vlens[i];
    }
    for (i = 0; i < vl; i++) values[i] = (uint8_t)rnd();
    nl = random_names(names, n, sizeof names);
    if (below(20) == 0) names[below(nl)] ^= (uint8_t)(below(2) ? 0xFF : 0);
    r = eng_block_encode(n, vers, last, vlens, m, none, names, nl, values, vl, out, CAP);
    if (r <= 0) {
        fprintf(stderr, "fuzz_core: valid block encode failed (%lld)\n", (long long)r);
        abort();
    }
    return (size_t)r;
}

/* --------------------------------------------------------- Mutations --- */

/* Where the column region of a record/block starts (aim of column-entry
 * rewrites); 0 if the buffer is too short to have one. */
static size_t column_start(const uint8_t *b, size_t len, int is_block) {
    (void)b;
    if (is_block) return len > 24 ? 24 : 0;
    return len > 56 ? 56 : 0;
}

/* Applies one random mutation to b[0..*len) (capacity CAP). */
static void mutate_once(uint8_t *b, size_t *len, int is_block) {
    size_t l = *len, pos;
    switch (below(10)) {
    case 0: /* bit flip */
        if (l) b[below((uint32_t)l)] ^= (uint8_t)(1u << below(8));
        break;
    case 1: /* byte rewrite */
        if (l) b[below((uint32_t)l)] = (uint8_t)(below(3) == 0 ? 0 : rnd());
        break;
    case 2: /* truncation */
        *len = below(3) == 0 ? below((uint32_t)l + 1) : (l > 16 ? l - 1 - below(16) : 0);
        break;
    case 3: { /* extension */
        uint32_t k = 1 + below(below(4) == 0 ? 200 : 16), i;
        if (l + k > CAP) k = (uint32_t)(CAP - l);
        for (i = 0; i < k; i++) b[l + i] = (uint8_t)(below(2) ? 0 : rnd());
        *len = l + k;
        break;
    }
    case 4: /* insert a byte */
        if (l < CAP && l) {
            pos = below((uint32_t)l);
            memmove(b + pos + 1, b + pos, l - pos);
            b[pos] = (uint8_t)(below(2) ? 0 : rnd());
            *len = l + 1;
        }
        break;
    case 5: /* delete a byte */
        if (l) {
            pos = below((uint32_t)l);
            memmove(b + pos, b + pos + 1, l - pos - 1);
            *len = l - 1;
        }
        break;
    case 6:
    case 7: { /* header count/length field rewrite */
        size_t off;
        if (is_block) off = 4 + 4 * (size_t)below(5);   /* n, m, names, values, reserved */
        else off = 40 + 4 * (size_t)below(4);           /* n, streams, types, data */
        if (off + 4 <= l) put32(b + off, interesting32(get32(b + off)));
        break;
    }
    case 8: { /* column entry rewrite (versions / lens / none_idx region) */
        size_t start = column_start(b, l, is_block);
        if (start && l >= start + 12) {
            pos = start + 4 * (size_t)below((uint32_t)((l - start - 8) / 4));
            if (below(2)) put32(b + pos, interesting32(get32(b + pos)));
            else if (pos + 8 <= l) put64(b + pos, below(2) ? 0 : get64(b + pos) + 1);
        }
        break;
    }
    default: /* magic / version / flags bytes */
        if (l >= 8) b[below(8)] ^= (uint8_t)(1 + below(255));
        break;
    }
}

/* Re-signs b[0..len) as the decoders would check it: for a block, at the end
 * its header declares (when that fits); otherwise at len - 8. */
static void resign(uint8_t *b, size_t len, int is_block) {
    if (is_block && len >= 24) {
        uint64_t total = 24 + 20 * (uint64_t)get32(b + 4) + 4 * (uint64_t)get32(b + 8) +
                         get32(b + 12) + get32(b + 16) + 8;
        if (total <= len) {
            put64(b + total - 8, eng_xxh64(b, (size_t)total - 8, 0));
            return;
        }
    }
    if (len >= 8) put64(b + len - 8, eng_xxh64(b, len - 8, 0));
}

/* ------------------------------------------------ Reference validators --- */

/* Naive NAMES rule: exactly n NULs, last byte NUL, no empty name. */
static int ref_names_ok(const uint8_t *c, uint64_t len, uint32_t n) {
    uint64_t i, nuls = 0;
    if (n == 0) return len == 0;  /* an eventless record (tracking only) */
    if (len == 0 || c[len - 1] != 0) return 0;
    for (i = 0; i < len; i++) {
        if (c[i] == 0) {
            nuls++;
            if (i == 0 || c[i - 1] == 0) return 0;
        }
    }
    return nuls == n;
}

/* The header's tx check order, written with u64 arithmetic and no shortcuts. */
/* The tracking section's reference check: walks entries with u64 arithmetic only. */
static int ref_tracking(const uint8_t *b, uint64_t at, uint64_t end) {
    uint32_t count, i, nl;
    uint64_t k;
    if (end - at < 4) return ENG_E_OVERRUN;
    count = get32(b + at);
    at += 4;
    if (count == 0) return ENG_E_FIELD;
    for (i = 0; i < count; i++) {
        if (at + 12 > end) return ENG_E_OVERRUN;
        if (get64(b + at) == 0) return ENG_E_FIELD;
        nl = get32(b + at + 8);
        at += 12;
        if (nl == 0 || nl > 1024) return ENG_E_NAMES;
        if (at + nl > end) return ENG_E_OVERRUN;
        for (k = 0; k < nl; k++)
            if (b[at + k] == 0) return ENG_E_NAMES;
        at += nl;
    }
    return at == end ? ENG_OK : ENG_E_TRAILING;
}

static int ref_tx(const uint8_t *b, size_t len) {
    uint32_t n, sl, tl, dl, i, ver, flags;
    uint64_t need, sum = 0;
    int tracking;
    if (len < 64) return ENG_E_TRUNCATED;
    if (memcmp(b, "ETXR", 4)) return ENG_E_BAD_MAGIC;
    ver = (uint32_t)(b[4] | (b[5] << 8));
    if (ver != 1 && ver != 2) return ENG_E_VERSION;
    if (eng_xxh64(b, len - 8, 0) != get64(b + len - 8)) return ENG_E_CHECKSUM;
    flags = (uint32_t)(b[6] | (b[7] << 8));
    tracking = ver == 2 && (flags & 1);
    if (ver == 2 && (flags & ~1u)) return ENG_E_FIELD;
    n = get32(b + 40);
    sl = get32(b + 44);
    tl = get32(b + 48);
    dl = get32(b + 52);
    if (n == 0 && !tracking) return ENG_E_FIELD;
    need = 56 + 20 * (uint64_t)n + sl + tl + dl;
    if (need > len - 8) return ENG_E_OVERRUN;
    if (need < len - 8 && !tracking) return ENG_E_TRAILING;
    if (!ref_names_ok(b + 56 + 20 * (uint64_t)n, sl, n)) return ENG_E_NAMES;
    if (!ref_names_ok(b + 56 + 20 * (uint64_t)n + sl, tl, n)) return ENG_E_NAMES;
    for (i = 0; i < n; i++) sum += get32(b + 56 + 16 * (uint64_t)n + 4 * (uint64_t)i);
    if (sum != dl) return ENG_E_LENGTHS;
    for (i = 0; i < n; i++)
        if (get64(b + 56 + 8 * (uint64_t)i) == 0) return ENG_E_FIELD;
    if (tracking) return ref_tracking(b, need, len - 8);
    return ENG_OK;
}

/* The block check order: TRUNCATED, BAD_MAGIC, FIELD (header), OVERRUN,
 * CHECKSUM, FIELD (columns), NAMES, LENGTHS. */
static int ref_block(const uint8_t *b, size_t len) {
    uint32_t n, m, nl, vl, i;
    uint64_t total, vo, lo, vlo, no, nmo, sum = 0;
    if (len < 32) return ENG_E_TRUNCATED;
    if (memcmp(b, "SBLK", 4)) return ENG_E_BAD_MAGIC;
    n = get32(b + 4);
    m = get32(b + 8);
    nl = get32(b + 12);
    vl = get32(b + 16);
    if (n == 0 || m > n || get32(b + 20) != 0) return ENG_E_FIELD;
    total = 24 + 20 * (uint64_t)n + 4 * (uint64_t)m + nl + vl + 8;
    if (total > len) return ENG_E_OVERRUN;
    if (eng_xxh64(b, (size_t)total - 8, 0) != get64(b + total - 8)) return ENG_E_CHECKSUM;
    vo = 24;
    lo = vo + 8 * (uint64_t)n;
    vlo = lo + 8 * (uint64_t)n;
    no = vlo + 4 * (uint64_t)n;
    nmo = no + 4 * (uint64_t)m;
    for (i = 0; i < n; i++)
        if (get64(b + vo + 8 * (uint64_t)i) == 0 || get64(b + lo + 8 * (uint64_t)i) == 0)
            return ENG_E_FIELD;
    for (i = 0; i < m; i++) {
        uint32_t idx = get32(b + no + 4 * (uint64_t)i);
        if (idx >= n) return ENG_E_FIELD;
        if (i > 0 && idx <= get32(b + no + 4 * (uint64_t)(i - 1))) return ENG_E_FIELD;
        if (get32(b + vlo + 4 * (uint64_t)idx) != 0) return ENG_E_FIELD;
    }
    if (!ref_names_ok(b + nmo, nl, n)) return ENG_E_NAMES;
    for (i = 0; i < n; i++) sum += get32(b + vlo + 4 * (uint64_t)i);
    if (sum != vl) return ENG_E_LENGTHS;
    return ENG_OK;
}

/* --------------------------------------------------- View bound checks --- */

/* 1 if [off, off + n) lies inside [0, end). Overflow-proof in u64. */
static int inside(uint64_t off, uint64_t n, uint64_t end) {
    return off <= end && n <= end - off;
}

static void check_tx_view(const eng_tx_view *v, size_t len, uint64_t iter) {
    uint64_t n = v->event_count, body = len - 8;
    if (len < 64) die("tx success on a short buffer", iter);
    if (!inside(v->versions_off, 8 * n, body) || !inside(v->prev_off, 8 * n, body) ||
        !inside(v->data_lens_off, 4 * n, body) ||
        !inside(v->streams_off, v->streams_len, body) ||
        !inside(v->types_off, v->types_len, body) ||
        !inside(v->data_off, v->data_len, body))
        die("tx view offset out of bounds", iter);
    if (v->tracking_count) {
        if (v->tracking_off != v->data_off + v->data_len + 4 ||
            !inside(v->tracking_off, v->tracking_len, body) ||
            v->tracking_off + v->tracking_len != body || v->format_version != 2 ||
            v->tracking_len < 12 * (uint64_t)v->tracking_count)
            die("tx view: tracking section out of bounds", iter);
    } else {
        if (v->data_off + v->data_len != body) die("tx view does not end at the trailer", iter);
        if (n == 0) die("tx view with zero events and no tracking", iter);
        if (v->tracking_off || v->tracking_len) die("tx view: tracking without a count", iter);
    }
}

static void check_block_view(const eng_block_view *v, size_t len, uint64_t iter) {
    uint64_t n = v->entry_count, end;
    if (v->block_len > len || v->block_len < 32) die("block_len out of bounds", iter);
    end = v->block_len - 8;
    if (!inside(v->versions_off, 8 * n, end) || !inside(v->last_tx_off, 8 * n, end) ||
        !inside(v->value_lens_off, 4 * n, end) ||
        !inside(v->none_idx_off, 4 * (uint64_t)v->none_count, end) ||
        !inside(v->names_off, v->names_len, end) ||
        !inside(v->values_off, v->values_len, end))
        die("block view offset out of bounds", iter);
    if (v->values_off + v->values_len != end) die("block view does not end at trailer", iter);
    if (n == 0 || v->none_count > n) die("block view counts", iter);
}

/* ------------------------------------------------------- Stream finder --- */

/* Naive strict UTF-8, as Python decodes it: assemble each code point, then
 * refuse overlong forms, surrogates and anything past U+10FFFF. */
static int ref_utf8(const uint8_t *p, uint64_t len) {
    uint64_t i = 0;
    while (i < len) {
        uint32_t c = p[i], cp, k, need;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            need = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i - 1 < need) return 0;
        for (k = 1; k <= need; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) ||
            (need == 3 && cp < 0x10000))
            return 0;
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += need + 1;
    }
    return 1;
}

/* The finder's contract written plainly: ref_tx's verdict, then UTF-8 of both
 * columns, then every exact match with its fields computed name by name. */
static int64_t ref_find(const uint8_t *b, size_t len, const uint8_t *name, size_t nlen,
                        eng_stream_hit *out, uint32_t cap) {
    uint64_t n, so, to, dof, sp, tp, dp, k;
    int64_t count = 0;
    int rc = ref_tx(b, len);
    if (rc != ENG_OK) return rc;
    n = get32(b + 40);
    so = 56 + 20 * n;
    to = so + get32(b + 44);
    dof = to + get32(b + 48);
    if (!ref_utf8(b + so, to - so) || !ref_utf8(b + to, dof - to)) return ENG_E_NAMES;
    for (k = 0, sp = so, tp = to, dp = dof; k < n; k++) {
        uint64_t sl = strlen((const char *)b + sp), tl = strlen((const char *)b + tp);
        uint64_t dl = get32(b + 56 + 16 * n + 4 * k);
        if (sl == nlen && memcmp(b + sp, name, nlen) == 0) {
            if (count < (int64_t)cap) {
                eng_stream_hit *h = &out[count];
                h->index = k;
                h->version = get64(b + 56 + 8 * k);
                h->prev_tx = get64(b + 56 + 8 * n + 8 * k);
                h->type_off = tp;
                h->type_len = tl;
                h->data_off = dp;
                h->data_len = dl;
            }
            count++;
        }
        sp += sl + 1;
        tp += tl + 1;
        dp += dl;
    }
    return count;
}

static unsigned long long g_find_hits, g_find_none, g_find_utf8, g_find_over, g_find_bad;

/* Runs the finder on copy[0..len) for name and compares it with ref_find. */
static void find_check(const uint8_t *copy, size_t len, const uint8_t *name, size_t nlen,
                       uint32_t cap, uint64_t iter) {
    static eng_stream_hit got[64], want[64];
    eng_tx_view v, d;
    int64_t fr, rr;
    uint32_t j;
    if (cap > 64) cap = 64;
    memset(&v, 0xA5, sizeof v);
    fr = eng_tx_find_stream(copy, len, name, nlen, &v, got, cap);
    rr = ref_find(copy, len, name, nlen, want, cap);
    if (fr != rr) {
        fprintf(stderr, "find rc %lld, reference %lld, len %zu\n", (long long)fr,
                (long long)rr, len);
        die("stream finder disagrees with the reference", iter);
    }
    if (fr < 0) {
        if (fr == ENG_E_NAMES && ref_tx(copy, len) == ENG_OK) g_find_utf8++;
        else g_find_bad++;
        return;
    }
    if (eng_tx_decode(copy, len, &d) != ENG_OK || d.tx_id != v.tx_id ||
        d.first_position != v.first_position || d.data_off != v.data_off ||
        d.event_count != v.event_count)
        die("finder view differs from the decoder's", iter);
    check_tx_view(&v, len, iter);
    for (j = 0; j < (uint32_t)fr && j < cap; j++) {
        if (memcmp(&got[j], &want[j], sizeof got[j]) != 0)
            die("finder hit differs from the reference", iter);
        if (!inside(got[j].type_off, got[j].type_len, len - 8) ||
            !inside(got[j].data_off, got[j].data_len, len - 8))
            die("finder hit out of bounds", iter);
    }
    if (fr > (int64_t)cap) g_find_over++;
    if (fr > 0) g_find_hits++;
    else g_find_none++;
}

/* ------------------------------------------------------ State index --- */

/* Every mutated buffer also goes through eng_index_put_tx / eng_index_put_body
 * on a fresh zeroed table (growing with eng_index_rehash on ENG_E_ARG). The
 * return code must be the decoders' verdict; on success, every occupied slot
 * must borrow its name and value from the input buffer, find(name) must return
 * the slot, and the entries must be the last write of each name in input order
 * (checked against a naive walk of the decoded columns). */

#define IX_CAP0 64
#define IX_MAX_GROWS 8
#define IX_MAX_ENTRIES 1024

static unsigned long long g_ix_ok[2], g_ix_fail[2], g_ix_grows, g_ix_multi_ok, g_ix_reducer_ok;

/* One entry of the naive reference, in input order. */
typedef struct {
    const uint8_t *name, *value;
    uint64_t version, last_tx;
    uint32_t name_len, value_len;
} ix_ref;

static ix_ref g_ref[IX_MAX_ENTRIES];

static eng_slot *ix_new(uint64_t cap, uint64_t iter) {
    eng_slot *s = (eng_slot *)calloc((size_t)cap, sizeof(eng_slot));
    if (s == NULL) die("out of memory", iter);
    return s;
}

/* Applies buf as a record (is_body 0) or body (1) to a fresh table of cap0
 * slots, growing on ENG_E_ARG. Returns the final rc; the table is left in
 * slots_out, cap_out and count (the caller frees it). */
static int ix_apply(int is_body, const uint8_t *buf, size_t len, uint64_t cap0,
                    eng_slot **slots_out, uint64_t *cap_out, uint64_t *count,
                    eng_tx_view *view, uint64_t iter) {
    uint64_t cap = cap0;
    eng_slot *slots = ix_new(cap, iter);
    int rc, grows = 0;
    *count = 0;
    for (;;) {
        rc = is_body ? eng_index_put_body(slots, cap, count, buf, len)
                     : eng_index_put_tx(slots, cap, count, buf, len, view);
        if (rc != ENG_E_ARG || grows == IX_MAX_GROWS) break;
        if ((*count + 1) * 4 <= cap * 3) die("index ENG_E_ARG from a table not full", iter);
        {
            eng_slot *bigger = ix_new(cap * 2, iter);
            if (eng_index_rehash(slots, cap, bigger, cap * 2, count) != ENG_OK)
                die("index rehash failed", iter);
            free(slots);
            slots = bigger;
            cap *= 2;
            grows++;
            g_ix_grows++;
        }
    }
    *slots_out = slots;
    *cap_out = cap;
    return rc;
}

/* 1 if p[0..n) lies inside buf[0..len). */
static int ix_inside(const uint8_t *p, uint64_t n, const uint8_t *buf, size_t len) {
    uintptr_t lo = (uintptr_t)buf, hi = lo + len, at = (uintptr_t)p;
    return at >= lo && at <= hi && n <= hi - at;
}

/* Whole-table and reference checks after a successful put. */
static void ix_check(const eng_slot *slots, uint64_t cap, uint64_t count, const uint8_t *buf,
                     size_t len, size_t nref, uint64_t iter) {
    uint64_t i, used = 0, distinct = 0;
    size_t r, q;
    for (i = 0; i < cap; i++) {
        const eng_slot *s = &slots[i];
        if (s->hash == 0) continue;
        used++;
        if (s->name_len == 0 || !ix_inside(s->name, s->name_len + 1ULL, buf, len) ||
            s->name[s->name_len] != 0 || memchr(s->name, 0, s->name_len) != NULL)
            die("index slot name not a NUL-terminated name inside the buffer", iter);
        if ((s->value == NULL) != (s->value_len == ENG_VALUE_NONE))
            die("index slot: value NULL iff value_len == ENG_VALUE_NONE broken", iter);
        if (s->value != NULL && !ix_inside(s->value, s->value_len, buf, len))
            die("index slot value outside the buffer", iter);
        if (eng_index_find(slots, cap, s->name, s->name_len) != (int64_t)i)
            die("index find(slot name) does not return the slot", iter);
    }
    if (used != count) die("index count differs from the occupied slots", iter);
    if (used * 4 > cap * 3) die("index more than 3/4 full", iter);
    /* Each name's final entry is its last write in input order. */
    for (r = 0; r < nref; r++) {
        const ix_ref *e = &g_ref[r];
        int64_t k;
        const eng_slot *s;
        for (q = r + 1; q < nref; q++)
            if (g_ref[q].name_len == e->name_len &&
                memcmp(g_ref[q].name, e->name, e->name_len) == 0)
                break;
        if (q < nref) continue;  /* a later write of the same name wins */
        distinct++;
        k = eng_index_find(slots, cap, e->name, e->name_len);
        if (k < 0 || (uint64_t)k >= cap) die("index lost a name", iter);
        s = &slots[k];
        if (s->version != e->version || s->last_tx != e->last_tx ||
            s->value_len != e->value_len || s->value != e->value)
            die("index entry is not the name's last write", iter);
    }
    if (distinct != count) die("index count is not the number of distinct names", iter);
}

/* Reference entries of a decoded record; returns how many. */
static size_t ix_ref_tx(const uint8_t *b, const eng_tx_view *v) {
    const uint8_t *name = b + v->streams_off, *type = b + v->types_off, *data = b + v->data_off;
    uint32_t k;
    size_t n = 0;
    for (k = 0; k < v->event_count && n < IX_MAX_ENTRIES; k++) {
        uint32_t nl = (uint32_t)strlen((const char *)name);
        uint32_t tl = (uint32_t)strlen((const char *)type);
        uint32_t dl = get32(b + v->data_lens_off + 4 * (size_t)k);
        ix_ref *e = &g_ref[n++];
        int del = tl == 6 && memcmp(type, "delete", 6) == 0;
        e->name = name;
        e->name_len = nl;
        e->version = get64(b + v->versions_off + 8 * (size_t)k);
        e->last_tx = v->tx_id;
        e->value = del ? NULL : data;
        e->value_len = del ? ENG_VALUE_NONE : dl;
        name += nl + 1;
        type += tl + 1;
        data += dl;
    }
    return n;
}

/* Walks the blocks of body[0..len) with the decoder: returns the first error
 * (or ENG_OK) and fills the reference entries (*nref). */
static int ix_ref_body(const uint8_t *body, size_t len, size_t *nref) {
    size_t off = 0, n = 0;
    while (off < len) {
        eng_block_view v;
        const uint8_t *b = body + off, *name, *value;
        uint32_t k, nk = 0;
        int rc = eng_block_decode(b, len - off, &v);
        if (rc != ENG_OK) return rc;
        name = b + v.names_off;
        value = b + v.values_off;
        for (k = 0; k < v.entry_count && n < IX_MAX_ENTRIES; k++) {
            uint32_t nl = (uint32_t)strlen((const char *)name);
            uint32_t vl = get32(b + v.value_lens_off + 4 * (size_t)k);
            int none = nk < v.none_count && get32(b + v.none_idx_off + 4 * (size_t)nk) == k;
            ix_ref *e = &g_ref[n++];
            if (none) nk++;
            e->name = name;
            e->name_len = nl;
            e->version = get64(b + v.versions_off + 8 * (size_t)k);
            e->last_tx = get64(b + v.last_tx_off + 8 * (size_t)k);
            e->value = none ? NULL : value;
            e->value_len = none ? ENG_VALUE_NONE : vl;
            name += nl + 1;
            value += vl;
        }
        off += v.block_len;
    }
    *nref = n;
    return ENG_OK;
}

/* Field-by-field (the struct has padding). */
static int ix_same_view(const eng_tx_view *a, const eng_tx_view *b) {
    return a->format_version == b->format_version && a->flags == b->flags &&
           a->tx_id == b->tx_id && a->epoch == b->epoch && a->ts_ns == b->ts_ns &&
           a->first_position == b->first_position && a->event_count == b->event_count &&
           a->streams_len == b->streams_len && a->types_len == b->types_len &&
           a->data_len == b->data_len && a->versions_off == b->versions_off &&
           a->prev_off == b->prev_off && a->data_lens_off == b->data_lens_off &&
           a->streams_off == b->streams_off && a->types_off == b->types_off &&
           a->data_off == b->data_off;
}

/* 1 if every slot is empty and count is 0. */
static int ix_untouched(const eng_slot *slots, uint64_t cap, uint64_t count) {
    uint64_t i;
    if (count != 0) return 0;
    for (i = 0; i < cap; i++)
        if (slots[i].hash != 0 || slots[i].name != NULL || slots[i].value != NULL ||
            slots[i].version != 0)
            return 0;
    return 1;
}

/* The index half of one fuzz iteration on copy[0..len). rc_tx is
 * eng_tx_decode's verdict on the same bytes, tv its view. */
static void ix_fuzz_one(const uint8_t *copy, size_t len, int rc_tx, const eng_tx_view *tv,
                        uint64_t cap0, int multi, uint64_t iter) {
    eng_slot *slots;
    uint64_t cap, count;
    eng_tx_view iv;
    size_t nref = 0;
    int rc, want;

    if (!multi) {
        memset(&iv, 0, sizeof iv);
        rc = ix_apply(0, copy, len, cap0, &slots, &cap, &count, &iv, iter);
        if (rc != rc_tx) {
            fprintf(stderr, "put_tx rc %d, tx_decode %d\n", rc, rc_tx);
            die("index put_tx disagrees with eng_tx_decode", iter);
        }
        if (rc == ENG_OK) {
            if (!ix_same_view(&iv, tv)) die("put_tx view differs from decode's", iter);
            nref = ix_ref_tx(copy, tv);
            ix_check(slots, cap, count, copy, len, nref, iter);
            g_ix_ok[0]++;
        } else {
            if (!ix_untouched(slots, cap, count)) die("failed put_tx changed the table", iter);
            g_ix_fail[0]++;
        }
        free(slots);
    }

    want = ix_ref_body(copy, len, &nref);
    rc = ix_apply(1, copy, len, cap0, &slots, &cap, &count, NULL, iter);
    if (rc != want) {
        fprintf(stderr, "put_body rc %d, block walk %d\n", rc, want);
        die("index put_body disagrees with the block decoder", iter);
    }
    if (rc == ENG_OK) {
        ix_check(slots, cap, count, copy, len, nref, iter);
        g_ix_ok[1]++;
        if (multi) g_ix_multi_ok++;
    } else {
        /* A failure in the first block leaves the table as it was. */
        eng_block_view bv;
        if (eng_block_decode(copy, len, &bv) != ENG_OK && !ix_untouched(slots, cap, count))
            die("put_body failing on its first block changed the table", iter);
        g_ix_fail[1]++;
    }
    free(slots);
}

/* ------------------------------------------------------------- Main --- */

#define NCODES 11 /* 0 .. -10 */

int main(int argc, char **argv) {
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
    uint64_t iters = argc > 2 ? strtoull(argv[2], NULL, 0) : 100000;
    uint64_t it, resigned = 0;
    unsigned long long tx_hist[NCODES] = {0}, bk_hist[NCODES] = {0};
    static uint8_t work[CAP];
    int c, missing = 0;

    g_rng = seed;
    for (it = 0; it < iters; it++) {
        int is_block = (int)below(2), k, nmut = 1 + (int)below(4), rc_tx, rc_bk;
        size_t len = is_block ? gen_block(work) : gen_tx(work);
        uint8_t *copy;
        eng_tx_view tv;
        eng_block_view bv;

        if (below(8) == 0) {
            /* Sometimes leave the buffer valid (or valid + trailing bytes). */
            if (below(2)) mutate_once(work, &len, is_block);
        } else {
            for (k = 0; k < nmut; k++) mutate_once(work, &len, is_block);
        }
        if (below(10) < 7) {
            resign(work, len, is_block);
            resigned++;
        }

        copy = (uint8_t *)malloc(len ? len : 1);
        if (copy == NULL) die("out of memory", it);
        if (len) memcpy(copy, work, len);

        rc_tx = eng_tx_decode(copy, len, &tv);
        rc_bk = eng_block_decode(copy, len, &bv);
        if (rc_tx > 0 || rc_tx < -10 || rc_bk > 0 || rc_bk < -10) die("unknown code", it);
        if (rc_tx != ref_tx(copy, len)) {
            fprintf(stderr, "tx rc %d, reference %d, len %zu\n", rc_tx, ref_tx(copy, len), len);
            die("tx decoder disagrees with the reference", it);
        }
        if (rc_bk != ref_block(copy, len)) {
            fprintf(stderr, "block rc %d, reference %d, len %zu\n", rc_bk,
                    ref_block(copy, len), len);
            die("block decoder disagrees with the reference", it);
        }
        if (rc_tx == ENG_OK) check_tx_view(&tv, len, it);
        {
            /* The finder on the same bytes; the name is chosen without the PRNG (so
             * the iterations are the decoders' as before): every other iteration
             * the name of one of the record's own events, else "a". */
            const uint8_t *nm = (const uint8_t *)"a";
            size_t nl = 1;
            if (rc_tx == ENG_OK && it % 2 == 0 && tv.event_count > 0) {
                uint64_t want = (it / 2) % tv.event_count, k;
                const uint8_t *p = copy + tv.streams_off;
                for (k = 0; k < want; k++) p += strlen((const char *)p) + 1;
                nm = p;
                nl = strlen((const char *)p);
            }
            find_check(copy, len, nm, nl, it % 4 == 0 ? 1 : 64, it);
        }
        if (rc_bk == ENG_OK) check_block_view(&bv, len, it);
        tx_hist[-rc_tx]++;
        bk_hist[-rc_bk]++;
        ix_fuzz_one(copy, len, rc_tx, &tv, IX_CAP0, 0, it);
        if (len <= UINT32_MAX) {
            /* eng_seg_frame on the same bytes as a one-record run: the same verdict
             * as the decoder, never a read or write outside its buffers. */
            uint32_t l32 = (uint32_t)len, bad = 7;
            uint64_t pos = rc_tx == ENG_OK ? tv.first_position - 1 : 0;
            uint8_t *fo = (uint8_t *)malloc(len + 4);
            int64_t fr;
            if (fo == NULL) die("out of memory", it);
            fr = eng_seg_frame(copy, len, &l32, 1, rc_tx == ENG_OK ? tv.tx_id : 1,
                               rc_tx == ENG_OK ? tv.epoch : 0, &pos, fo, len + 4, &bad);
            if (rc_tx != ENG_OK && (fr != rc_tx || bad != 0))
                die("seg frame accepted or misnamed a record the decoder refuses", it);
            if (rc_tx == ENG_OK && tv.first_position != 0 &&
                (fr != (int64_t)len + 4 || memcmp(fo + 4, copy, len) != 0))
                die("seg frame refused or changed a valid record", it);
            {   /* eng_seg_frame_v (one pointer per record): the very same verdict */
                const uint8_t *ptr = copy;
                uint64_t pos_v = rc_tx == ENG_OK ? tv.first_position - 1 : 0;
                uint32_t bad_v = 7;
                int64_t fv = eng_seg_frame_v(&ptr, &l32, 1, rc_tx == ENG_OK ? tv.tx_id : 1,
                                             rc_tx == ENG_OK ? tv.epoch : 0, &pos_v, fo,
                                             len + 4, &bad_v);
                if (fv != fr || bad_v != bad || pos_v != pos)
                    die("seg frame v and seg frame disagree on a record", it);
            }
            free(fo);
        }
        free(copy);
    }

    /* Multi-block bodies: 1..4 generated blocks back to back (names often repeat
     * across blocks), sometimes one mutated and re-signed; tables start at cap 4,
     * 16 or 64 so that growth happens. Uses the PRNG after the main loop, so the
     * decoder iterations above are unchanged. */
    for (it = 0; it < iters / 8; it++) {
        static const uint64_t caps[3] = {4, 16, 64};
        static uint8_t one[CAP];
        size_t len = 0;
        int nb = 1 + (int)below(4), k, victim = below(3) == 0 ? (int)below((uint32_t)nb) : -1;
        uint8_t *copy;
        for (k = 0; k < nb; k++) {
            size_t bl = gen_block(one);
            if (k == victim) {
                mutate_once(one, &bl, 1);
                resign(one, bl, 1);
            }
            if (bl > CAP - len) bl = CAP - len;
            memcpy(work + len, one, bl);
            len += bl;
        }
        copy = (uint8_t *)malloc(len ? len : 1);
        if (copy == NULL) die("out of memory", it);
        if (len) memcpy(copy, work, len);
        ix_fuzz_one(copy, len, 0, NULL, caps[below(3)], 1, iters + it);
        free(copy);
    }

    /* Records built for the reducer: 1..60 events (up to four insert batches) over
     * 1..12 stream names (so names repeat within a record), types "delete" and
     * look-alikes; sometimes one mutation, re-signed. */
    for (it = 0; it < iters / 8; it++) {
        static const char *const tys[5] = {"delete", "deleted", "delet", "Delete", "set"};
        static const uint64_t caps[3] = {4, 16, 64};
        uint64_t vers[64], prev[64];
        uint32_t dlens[64], i, n = 1 + below(60), pool = 1 + below(12);
        uint32_t sl = 0, tl = 0, dl = 0;
        uint8_t streams[512], types[512], data[2048], *copy;
        size_t len;
        int64_t r;
        int rc_tx;
        eng_tx_view tv;
        for (i = 0; i < n; i++) {
            uint32_t s = below(pool), reps = 1 + s % 4, t = below(5), c;
            for (c = 0; c < reps; c++) streams[sl++] = (uint8_t)('a' + s);
            streams[sl++] = 0;
            memcpy(types + tl, tys[t], strlen(tys[t]) + 1);
            tl += (uint32_t)strlen(tys[t]) + 1;
            vers[i] = 1 + rnd() % 100;
            prev[i] = 0;
            dlens[i] = below(3) == 0 ? 0 : below(20);
            for (c = 0; c < dlens[i]; c++) data[dl + c] = (uint8_t)rnd();
            dl += dlens[i];
        }
        r = eng_tx_encode(rnd() % 1000, 1, 2, 3, n, vers, prev, dlens, streams, sl, types, tl,
                          data, dl, NULL, 0, work, CAP);
        if (r <= 0) die("reducer record encode failed", it);
        len = (size_t)r;
        if (below(4) == 0) {
            mutate_once(work, &len, 0);
            resign(work, len, 0);
        }
        copy = (uint8_t *)malloc(len ? len : 1);
        if (copy == NULL) die("out of memory", it);
        if (len) memcpy(copy, work, len);
        rc_tx = eng_tx_decode(copy, len, &tv);
        if (rc_tx == ENG_OK) g_ix_reducer_ok++;
        ix_fuzz_one(copy, len, rc_tx, &tv, caps[below(3)], 0, 2 * iters + it);
        free(copy);
    }

    /* Records built for the finder: 1..30 events whose stream and type names come
     * from a pool of prefixes of each other, multi-byte UTF-8 and ill-formed
     * sequences; the searched name from the same pool; sometimes one mutation,
     * re-signed; caps 0..3 and 64 (so truncated hit arrays happen). */
    for (it = 0; it < iters / 8; it++) {
        static const char *const pool[14] = {
            "a", "ab", "abc", "b", "ba", "\xc3\xbc", "\xc3\xbcn", "\xf0\x9f\x98\x80",
            "account-0000042", "account-0000043", "\xed\xa0\x80", "\xc0\xaf", "\xe2\x82",
            "x\xf4\x90\x80\x80"};
        static const uint32_t caps[5] = {0, 1, 2, 3, 64};
        uint64_t vers[64], prev[64];
        uint32_t dlens[64], i, n = 1 + below(30), sl = 0, tl = 0, dl = 0, c;
        uint32_t valid_only = below(3) != 0; /* mostly well-formed names */
        uint8_t streams[1024], types[1024], data[2048], *copy;
        const char *name = pool[below(valid_only ? 10 : 14)];
        size_t len;
        int64_t r;
        for (i = 0; i < n; i++) {
            const char *sn = pool[below(valid_only ? 10 : 14)];
            const char *ty = pool[below(valid_only ? 10 : 14)];
            memcpy(streams + sl, sn, strlen(sn) + 1);
            sl += (uint32_t)strlen(sn) + 1;
            memcpy(types + tl, ty, strlen(ty) + 1);
            tl += (uint32_t)strlen(ty) + 1;
            vers[i] = 1 + rnd() % 100;
            prev[i] = rnd() % 100;
            dlens[i] = below(3) == 0 ? 0 : below(40);
            for (c = 0; c < dlens[i]; c++) data[dl + c] = (uint8_t)rnd();
            dl += dlens[i];
        }
        r = eng_tx_encode(1 + rnd() % 1000, 1, 2, 3, n, vers, prev, dlens, streams, sl, types,
                          tl, data, dl, NULL, 0, work, CAP);
        if (r <= 0) die("finder record encode failed", it);
        len = (size_t)r;
        if (below(4) == 0) {
            mutate_once(work, &len, 0);
            resign(work, len, 0);
        }
        copy = (uint8_t *)malloc(len ? len : 1);
        if (copy == NULL) die("out of memory", it);
        if (len) memcpy(copy, work, len);
        find_check(copy, len, (const uint8_t *)name, strlen(name), caps[below(5)],
                   3 * iters + it);
        free(copy);
    }

    printf("fuzz_core: seed %llu, %llu iterations (%llu re-signed)\n",
           (unsigned long long)seed, (unsigned long long)iters,
           (unsigned long long)resigned);
    printf("  index: put_tx %llu ok / %llu failed, put_body %llu ok (%llu multi-block) / "
           "%llu failed, %llu grows, %llu reducer records ok\n",
           g_ix_ok[0], g_ix_fail[0], g_ix_ok[1], g_ix_multi_ok, g_ix_fail[1], g_ix_grows,
           g_ix_reducer_ok);
    printf("  finder: %llu with hits, %llu without, %llu over cap, %llu ill-formed UTF-8, "
           "%llu refused by the decoder's checks\n",
           g_find_hits, g_find_none, g_find_over, g_find_utf8, g_find_bad);
    printf("  code     tx_decode  block_decode\n");
    for (c = 0; c < NCODES - 1; c++)
        printf("  %4d  %10llu  %12llu\n", -c, tx_hist[c], bk_hist[c]);

    if (iters >= 20000) {
        /* Every outcome a decoder can produce must have been reached. */
        static const int tx_codes[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
        static const int bk_codes[] = {0, 1, 2, 4, 5, 6, 7, 9};
        size_t i;
        for (i = 0; i < sizeof tx_codes / sizeof *tx_codes; i++)
            if (tx_hist[tx_codes[i]] == 0) {
                fprintf(stderr, "fuzz_core: tx_decode never returned %d\n", -tx_codes[i]);
                missing++;
            }
        for (i = 0; i < sizeof bk_codes / sizeof *bk_codes; i++)
            if (bk_hist[bk_codes[i]] == 0) {
                fprintf(stderr, "fuzz_core: block_decode never returned %d\n", -bk_codes[i]);
                missing++;
            }
    }
    if (iters >= 20000) {
        if (g_ix_ok[0] == 0 || g_ix_ok[1] == 0 || g_ix_multi_ok == 0 || g_ix_grows == 0 || g_ix_reducer_ok == 0 ||
            g_ix_fail[0] == 0 || g_ix_fail[1] == 0) {
            fprintf(stderr, "fuzz_core: an index outcome was never reached\n");
            missing++;
        }
    }
    if (iters >= 20000 && (g_find_hits == 0 || g_find_none == 0 || g_find_over == 0 ||
                           g_find_utf8 == 0 || g_find_bad == 0)) {
        fprintf(stderr, "fuzz_core: a stream finder outcome was never reached\n");
        missing++;
    }
    if (missing) {
        printf("fuzz_core: FAILED (%d outcomes never reached)\n", missing);
        return 1;
    }
    printf("fuzz_core: ok, 0 failures\n");
    return 0;
}
