/*
 * engine_index.c — the state index (see engine_index.h).
 *
 * Linear probing over a power-of-two table kept at most 3/4 full, keyed by a
 * seeded XXH64 of the name bytes. Each block or record is validated by the
 * format decoders of engine_core.c before any of its bytes is indexed, so the
 * offsets used here are known to lie inside the buffer (an error in a later
 * block leaves earlier ones indexed: see engine_index.h). Nothing is allocated;
 * the table and every byte it points at belong to the caller.
 */
#include <string.h>

#include "engine_format.h"
#include "engine_index.h"
#include "engine_bytes.h"

/* ---------------------------------------------------------------- helpers */

/* The slot's hash for a name: never 0, which marks an empty slot. */
static uint64_t name_hash(const uint8_t *name, uint32_t len) {
    uint64_t h = eng_xxh64(name, len, 0x9E3779B97F4A7C15ULL);
    return h ? h : 1;
}

/* Slot of name, or of the empty slot where it belongs. Requires a non-full table. */
static uint64_t probe(const eng_slot *slots, uint64_t cap, uint64_t h,
                      const uint8_t *name, uint32_t len) {
    uint64_t mask = cap - 1, i = h & mask;
    for (;;) {
        const eng_slot *s = &slots[i];
        if (s->hash == 0) return i;
        if (s->hash == h && s->name_len == len && memcmp(s->name, name, len) == 0) return i;
        i = (i + 1) & mask;
    }
}

/* ------------------------------------------------------- batched inserts
 * Slot accesses are random and the table is larger than the caches, so each one
 * would stall on memory. Entries are hashed in batches of PENDING and their slots
 * prefetched before any of them is inserted; insertion stays in input order, so a
 * later entry for the same name still wins. */
#define PENDING 16

typedef struct {
    const uint8_t *name, *value;
    uint64_t hash, version, last_tx;
    uint32_t name_len, value_len;
} pending_put;

typedef struct {
    eng_slot *slots;
    uint64_t cap, *count;
    int n;
    pending_put p[PENDING];
} put_batch;

/* Inserts the queued entries in order; returns ENG_OK or ENG_E_ARG (table full). */
static int flush(put_batch *b) {
    int i, rc = ENG_OK;
    for (i = 0; i < b->n && rc == ENG_OK; i++) {
        const pending_put *q = &b->p[i];
        uint64_t k = probe(b->slots, b->cap, q->hash, q->name, q->name_len);
        eng_slot *s = &b->slots[k];
        if (s->hash == 0) {
            if ((*b->count + 1) * 4 > b->cap * 3) { rc = ENG_E_ARG; break; }
            s->hash = q->hash;
            s->name = q->name;
            s->name_len = q->name_len;
            (*b->count)++;
        }
        s->version = q->version;
        s->last_tx = q->last_tx;
        s->value = q->value_len == ENG_VALUE_NONE ? NULL : q->value;
        s->value_len = q->value_len;
    }
    b->n = 0;
    return rc;
}

/* Queues one entry (prefetching its slot); flushes when the batch is full. */
static int queue(put_batch *b, const uint8_t *name, uint32_t len, uint64_t version,
                 uint64_t last_tx, const uint8_t *value, uint32_t value_len) {
    pending_put *q = &b->p[b->n++];
    q->name = name;
    q->name_len = len;
    q->hash = name_hash(name, len);
    q->version = version;
    q->last_tx = last_tx;
    q->value = value;
    q->value_len = value_len;
#if defined(__GNUC__)
    __builtin_prefetch(&b->slots[q->hash & (b->cap - 1)], 1, 1);
#endif
    return b->n == PENDING ? flush(b) : ENG_OK;
}

static int table_ok(const eng_slot *slots, uint64_t cap, const uint64_t *count) {
    return slots != NULL && count != NULL && cap >= 4 && (cap & (cap - 1)) == 0;
}

/* ------------------------------------------------------------------ puts */

int eng_index_put_body(eng_slot *slots, uint64_t cap, uint64_t *count,
                       const uint8_t *body, size_t len) {
    size_t off = 0;
    put_batch b;
    if (!table_ok(slots, cap, count) || (body == NULL && len != 0)) return ENG_E_ARG;
    b.slots = slots;
    b.cap = cap;
    b.count = count;
    b.n = 0;
    while (off < len) {
        eng_block_view v;
        const uint8_t *blk = body + off;
        const uint8_t *name, *value;
        uint32_t k, nk = 0;
        int rc = eng_block_decode(blk, len - off, &v);
        if (rc != ENG_OK) return rc;
        name = blk + v.names_off;
        value = blk + v.values_off;
        for (k = 0; k < v.entry_count; k++) {
            uint32_t vlen = ld32(blk + v.value_lens_off + 4 * (size_t)k);
            uint32_t nlen = (uint32_t)strlen((const char *)name);  /* NUL-checked by decode */
            int is_none = nk < v.none_count && ld32(blk + v.none_idx_off + 4 * (size_t)nk) == k;
            if (is_none) nk++;
            rc = queue(&b, name, nlen, ld64(blk + v.versions_off + 8 * (size_t)k),
                       ld64(blk + v.last_tx_off + 8 * (size_t)k), value,
                       is_none ? ENG_VALUE_NONE : vlen);
            if (rc != ENG_OK) return rc;
            name += nlen + 1;
            value += vlen;  /* a None entry has length 0 in the column */
        }
        off += v.block_len;
    }
    return flush(&b);
}

int eng_index_put_tx(eng_slot *slots, uint64_t cap, uint64_t *count,
                     const uint8_t *rec, size_t len, eng_tx_view *view) {
    const uint8_t *name, *type, *data;
    uint32_t k;
    int rc;
    put_batch b;
    if (!table_ok(slots, cap, count)) return ENG_E_ARG;
    if ((rc = eng_tx_decode(rec, len, view)) != ENG_OK) return rc;
    b.slots = slots;
    b.cap = cap;
    b.count = count;
    b.n = 0;
    name = rec + view->streams_off;
    type = rec + view->types_off;
    data = rec + view->data_off;
    for (k = 0; k < view->event_count; k++) {
        uint32_t nlen = (uint32_t)strlen((const char *)name);
        uint32_t tlen = (uint32_t)strlen((const char *)type);
        uint32_t dlen = ld32(rec + view->data_lens_off + 4 * (size_t)k);
        int is_delete = tlen == 6 && memcmp(type, "delete", 6) == 0;
        rc = queue(&b, name, nlen, ld64(rec + view->versions_off + 8 * (size_t)k),
                   view->tx_id, data, is_delete ? ENG_VALUE_NONE : dlen);
        if (rc != ENG_OK) return rc;
        name += nlen + 1;
        type += tlen + 1;
        data += dlen;
    }
    return flush(&b);
}

int eng_index_rehash(const eng_slot *old_slots, uint64_t old_cap, eng_slot *new_slots,
                     uint64_t new_cap, uint64_t *count) {
    uint64_t i, moved = 0, mask = new_cap - 1;
    if (!table_ok(old_slots, old_cap, count) || !table_ok(new_slots, new_cap, count) ||
        new_cap <= old_cap || *count * 4 > new_cap * 3)
        return ENG_E_ARG;
    for (i = 0; i < old_cap; i++) {
        uint64_t k;
        if (old_slots[i].hash == 0) continue;
        k = old_slots[i].hash & mask;     /* names are distinct: find a free slot */
        while (new_slots[k].hash != 0) k = (k + 1) & mask;
        new_slots[k] = old_slots[i];
        moved++;
    }
    return moved == *count ? ENG_OK : ENG_E_ARG;
}

/* ------------------------------------------------------------------ find */

int64_t eng_index_find(const eng_slot *slots, uint64_t cap, const uint8_t *name,
                       uint32_t len) {
    uint64_t i;
    if (slots == NULL || cap < 4 || (cap & (cap - 1)) != 0 || (name == NULL && len != 0))
        return -1;
    i = probe(slots, cap, name_hash(name, len), name, len);
    return slots[i].hash == 0 ? -1 : (int64_t)i;
}

/* ---------------------------------------------- snapshots from the index */

int64_t eng_index_mark(const eng_slot *slots, uint64_t cap, const uint8_t *names,
                       size_t len, uint8_t *bits) {
    size_t off = 0;
    int64_t marked = 0;
    if (slots == NULL || cap < 4 || (cap & (cap - 1)) != 0 || bits == NULL ||
        (names == NULL && len != 0))
        return ENG_E_ARG;
    while (off < len) {
        const uint8_t *name = names + off;
        const uint8_t *end = memchr(name, 0, len - off);
        size_t nlen;
        int64_t i;
        if (end == NULL) return ENG_E_ARG;  /* the last name is not ended */
        nlen = (size_t)(end - name);
        off += nlen + 1;
        if (nlen > UINT32_MAX) return ENG_E_ARG;
        i = eng_index_find(slots, cap, name, (uint32_t)nlen);
        if (i < 0) continue;  /* a name new since open: not in the table */
        if (!(bits[(uint64_t)i / 8] & (1u << ((uint64_t)i % 8)))) {
            bits[(uint64_t)i / 8] |= (uint8_t)(1u << ((uint64_t)i % 8));
            marked++;
        }
    }
    return marked;
}

int eng_index_columns(const eng_slot *slots, uint64_t cap, const uint8_t *bits,
                      uint64_t *pos, uint32_t max_entries, uint64_t target_bytes,
                      uint64_t *versions, uint64_t *last_tx, uint32_t *value_lens,
                      uint32_t *none_idx, uint8_t *names, size_t names_cap,
                      uint8_t *values, size_t values_cap, eng_columns *out) {
    uint64_t i;
    size_t nbytes = 0, vbytes = 0;
    uint32_t n = 0, m = 0;
    if (slots == NULL || cap < 4 || (cap & (cap - 1)) != 0 || pos == NULL || out == NULL ||
        *pos > cap || max_entries == 0 || versions == NULL || last_tx == NULL ||
        value_lens == NULL || none_idx == NULL || names == NULL || values == NULL ||
        names_cap > UINT32_MAX || values_cap > UINT32_MAX)
        return ENG_E_ARG;
    for (i = *pos; i < cap && n < max_entries; i++) {
        const eng_slot *s = &slots[i];
        int none = s->value_len == ENG_VALUE_NONE;
        size_t vlen = none ? 0 : s->value_len;
        if (s->hash == 0 || (bits != NULL && (bits[i / 8] & (1u << (i % 8))))) continue;
        if ((size_t)s->name_len + 1 > names_cap - nbytes || vlen > values_cap - vbytes) {
            if (n == 0) {  /* not even one: say what this entry needs, leave *pos */
                out->n = 0;
                out->none_count = 0;
                out->names_len = s->name_len + 1;
                out->values_len = (uint32_t)vlen;
                return ENG_E_ARG;
            }
            break;  /* the block ends here; slot i comes next */
        }
        memcpy(names + nbytes, s->name, s->name_len);
        names[nbytes + s->name_len] = 0;
        nbytes += (size_t)s->name_len + 1;
        if (vlen) memcpy(values + vbytes, s->value, vlen);
        vbytes += vlen;
        versions[n] = s->version;
        last_tx[n] = s->last_tx;
        value_lens[n] = (uint32_t)vlen;
        if (none) none_idx[m++] = n;
        n++;
        if (vbytes >= target_bytes) { i++; break; }
    }
    *pos = i;
    out->n = n;
    out->none_count = m;
    out->names_len = (uint32_t)nbytes;
    out->values_len = (uint32_t)vbytes;
    return ENG_OK;
}
