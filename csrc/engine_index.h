/*
 * engine_index.h — the state index: stream name -> (version, last_tx, value).
 *
 * Not an on-disk format: an in-memory open-addressing hash table that lets a
 * database open without building one Python object per stream. Entries BORROW
 * their name and value bytes from buffers the caller keeps alive for as long as
 * the table is used (the decompressed snapshot body, the log records); the C
 * side allocates nothing. The table is filled once at open and then only read.
 *
 * Semantics are the default reducer's: an event of type "delete" sets the value
 * to None, any other type sets it to the event's data.
 */
#ifndef ENGINE_INDEX_H
#define ENGINE_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "engine_format.h"  /* eng_tx_view */

/* value_len of an entry whose value is None. Real values are shorter: an event's
 * data is at most 16 MiB, and a custom reducer's folded value (indexed when the
 * database is reopened with the default reducer) must stay under 4 GiB, as a
 * snapshot block's u32 lengths require. */
#define ENG_VALUE_NONE 0xFFFFFFFFu

typedef struct {
    uint64_t hash;          /* 0: empty slot; else xxh64(name, seed 0x9E3779B97F4A7C15), 0 -> 1 */
    const uint8_t *name;    /* borrowed; name_len bytes, no terminator */
    const uint8_t *value;   /* borrowed; NULL when value_len == ENG_VALUE_NONE */
    uint64_t version;
    uint64_t last_tx;
    uint32_t name_len;
    uint32_t value_len;     /* ENG_VALUE_NONE for None */
} eng_slot;

/* Inserts or overwrites one entry per state entry of every block in body[0..len)
 * (a decompressed snapshot body). slots holds cap zeroed-or-filled slots, cap a
 * power of two; *count is the number of used slots, updated. Returns ENG_OK, a
 * block decoder error (the body is checked as eng_block_decode checks it), or
 * ENG_E_ARG when the table would pass 3/4 full. Each block is validated before it
 * is indexed, but on an error in a later block (or a full table) the entries of
 * earlier blocks, and part of the failing batch, are already in: a caller treats
 * the table as unusable after any error other than ENG_E_ARG. */
int eng_index_put_body(eng_slot *slots, uint64_t cap, uint64_t *count,
                       const uint8_t *body, size_t len);

/* Applies one transaction record (checked as eng_tx_decode checks it, whose view
 * is written to *view) with the default reducer's semantics. Same returns. */
int eng_index_put_tx(eng_slot *slots, uint64_t cap, uint64_t *count,
                     const uint8_t *rec, size_t len, eng_tx_view *view);

/* Moves every entry of old_slots[0..old_cap) into new_slots[0..new_cap) (zeroed,
 * new_cap a power of two larger than old_cap). Returns ENG_OK or ENG_E_ARG. After
 * ENG_E_ARG from a put, grow and repeat the same put: re-applying a block or a
 * record gives the same entries, so a partly applied one is harmless. */
int eng_index_rehash(const eng_slot *old_slots, uint64_t old_cap, eng_slot *new_slots,
                     uint64_t new_cap, uint64_t *count);

/* Index of the slot holding name[0..len), or -1 if absent. */
int64_t eng_index_find(const eng_slot *slots, uint64_t cap,
                       const uint8_t *name, uint32_t len);

/* ------------------------------------------------ snapshots from the index
 * A snapshot of a state whose base is this table (an indexed open) is written
 * from the table itself, without a Python object per entry: the entries that
 * changed since open (a dict on the Python side) are marked in a bitmap, and the
 * unmarked ones are cut into snapshot blocks by eng_index_columns. The table is
 * only read, so this may run (with the GIL released) beside readers. */

/* Sets bit i (bits[i / 8] & (1 << i % 8)) of bits, which holds cap bits, for the
 * slot i of every name of names[0..len): names one after the other, each ended
 * by a NUL. A name the table lacks is skipped. Returns how many bits it set that
 * were clear (so a repeated name counts once), or ENG_E_ARG (bad arguments, or
 * the last name is not ended by a NUL within len). */
int64_t eng_index_mark(const eng_slot *slots, uint64_t cap, const uint8_t *names,
                       size_t len, uint8_t *bits);

/* Sizes of the columns eng_index_columns wrote (the arguments of eng_block_encode). */
typedef struct {
    uint32_t n;             /* entries */
    uint32_t none_count;    /* of which None: their indexes in none_idx */
    uint32_t names_len;     /* bytes of names: each name and its NUL */
    uint32_t values_len;    /* bytes of values: the non-None values, in order */
} eng_columns;

/* The columns of the next snapshot block: the used, unmarked slots from *pos on
 * (bits may be NULL: none marked), in slot order, until max_entries entries (at
 * most the capacity of versions, last_tx, value_lens and none_idx), or the
 * values reach target_bytes (that entry included), or the next entry would not
 * fit names_cap or values_cap. *pos is advanced past the slots taken; out->n == 0
 * with *pos == cap means there are none left. Returns ENG_OK, or ENG_E_ARG: bad
 * arguments (out untouched), or not even one entry fits the buffers, when out
 * holds n = 0 and the names_len and values_len that entry needs (*pos unchanged:
 * call again with buffers that large). */
int eng_index_columns(const eng_slot *slots, uint64_t cap, const uint8_t *bits,
                      uint64_t *pos, uint32_t max_entries, uint64_t target_bytes,
                      uint64_t *versions, uint64_t *last_tx, uint32_t *value_lens,
                      uint32_t *none_idx, uint8_t *names, size_t names_cap,
                      uint8_t *values, size_t values_cap, eng_columns *out);

#endif /* ENGINE_INDEX_H */
