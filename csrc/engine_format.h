/*
 * engine_format.h — the on-disk formats shared by the C core and Python.
 *
 * This header is the C mirror of engine/formats.py; docs/FORMAT.md is the
 * prose specification. A change here changes all three, and bumps a format
 * version. All integers are little-endian unless stated otherwise. Every
 * decoder bounds-checks before it reads: hostile input yields an error code,
 * never an out-of-bounds access.
 */
#ifndef ENGINE_FORMAT_H
#define ENGINE_FORMAT_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- errors */
/* Decoders return 0 on success or one of these (negative) codes. */
#define ENG_OK              0
#define ENG_E_TRUNCATED    -1  /* buffer shorter than the fixed header+trailer */
#define ENG_E_BAD_MAGIC    -2  /* first 4 bytes are not the format's magic */
#define ENG_E_VERSION      -3  /* format version this build cannot read */
#define ENG_E_CHECKSUM     -4  /* trailing xxh64 does not match the bytes */
#define ENG_E_OVERRUN      -5  /* declared lengths run past the buffer end */
#define ENG_E_NAMES        -6  /* name column: wrong NUL count or empty name */
#define ENG_E_LENGTHS      -7  /* length column does not sum to its region */
#define ENG_E_TRAILING     -8  /* bytes left over between columns and checksum */
#define ENG_E_FIELD        -9  /* a header field is out of range (e.g. count 0) */
#define ENG_E_ARG         -10  /* encoder: caller passed inconsistent arguments */

/* ------------------------------------------------------- transaction record
 * One LMDB value per transaction (key: 8-byte big-endian tx_id).
 *
 *  off  size  field
 *    0     4  magic "ETXR"
 *    4     2  format version (ENG_TX_VERSION, or ENG_TX_VERSION_TRACKING)
 *    6     2  flags (version 2: bit 0 = ENG_TX_FLAG_TRACKING; version 1: 0, ignored)
 *    8     8  tx_id
 *   16     8  epoch
 *   24     8  ts_ns (commit time, ns since the Unix epoch)
 *   32     8  first_position (global position of the first event)
 *   40     4  event_count n (>= 1; version 2 with tracking: >= 0)
 *   44     4  streams_len (bytes of the stream-name column)
 *   48     4  types_len   (bytes of the type-name column)
 *   52     4  data_len    (bytes of the data column)
 *   56   8*n  version[i]  (per-stream version of event i, >= 1)
 *    .   8*n  prev_tx[i]  (tx holding version[i]-1 of the same stream; 0 if version 1)
 *    .   4*n  data_lens[i]
 *    .   streams_len  n UTF-8 names, each terminated by one NUL byte
 *    .   types_len    n UTF-8 names, each terminated by one NUL byte
 *    .   data_len     the n payloads back to back
 *    .   tracking     only with ENG_TX_FLAG_TRACKING: u32 count (>= 1), then count
 *                     entries of u64 position (>= 1), u32 name_len (1..ENG_MAX_NAME),
 *                     name_len bytes of UTF-8 name without NUL
 *  end-8   8  xxh64(all bytes before it, seed 0)
 *
 * A record is written as version 1 unless it carries tracking entries; a build
 * that reads only version 1 then refuses it with ENG_E_VERSION (not as corrupt).
 */
#define ENG_TX_MAGIC        "ETXR"
#define ENG_TX_VERSION      1
#define ENG_TX_VERSION_TRACKING 2
#define ENG_TX_FLAG_TRACKING 1
#define ENG_MAX_NAME        1024  /* bytes of a tracking name (as of a stream name) */
#define ENG_TX_HEADER_SIZE  56
#define ENG_TX_TRAILER_SIZE 8

/* Where the columns of a decoded record start, as offsets into the buffer
 * the caller passed. The view borrows nothing: it holds only integers. */
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
    uint32_t tracking_count;  /* 0 unless the record carries tracking entries */
    size_t tracking_off;      /* first entry (after the u32 count); 0 if none */
    size_t tracking_len;      /* bytes of the entries (without the count) */
} eng_tx_view;

/* Bytes an encoded record takes; 0 if the sizes overflow size_t. */
size_t eng_tx_encoded_size(uint32_t n, uint32_t streams_len,
                           uint32_t types_len, uint32_t data_len,
                           uint32_t tracking_len);

/* Encodes one record into out[0..out_cap). Column arrays hold n entries each
 * (host-order integers; written little-endian). The caller owns every buffer.
 * tracking[0..tracking_len) is the whole tracking section (count and entries)
 * or empty; with one the record is version 2 with ENG_TX_FLAG_TRACKING, and n
 * may be 0. Returns the bytes written (> 0) or ENG_E_ARG if out_cap is too
 * small, n is 0 without tracking, or the data_lens do not sum to data_len.
 * Names and the tracking section are copied as given: the caller guarantees
 * their layout (the decoder checks it). */
int64_t eng_tx_encode(uint64_t tx_id, uint64_t epoch, uint64_t ts_ns,
                      uint64_t first_position, uint32_t n,
                      const uint64_t *versions, const uint64_t *prev_tx,
                      const uint32_t *data_lens,
                      const uint8_t *streams, uint32_t streams_len,
                      const uint8_t *types, uint32_t types_len,
                      const uint8_t *data, uint32_t data_len,
                      const uint8_t *tracking, uint32_t tracking_len,
                      uint8_t *out, size_t out_cap);

/* Validates buf[0..len) as a record and fills *view. Checks, in order:
 * size >= header+trailer (TRUNCATED), magic, version (1 or 2), checksum, header
 * fields (event_count >= 1, or >= 0 with tracking; unknown version-2 flags),
 * column sizes (OVERRUN / TRAILING), NUL counts and non-empty names in both name
 * columns (NAMES), data_lens sum (LENGTHS), version[i] >= 1 (FIELD), then the
 * tracking section: count >= 1, each entry inside the record with a name of
 * 1..ENG_MAX_NAME bytes and no NUL (NAMES), position >= 1 (FIELD), ending exactly
 * at the trailer (OVERRUN / TRAILING). Returns ENG_OK or a negative ENG_E_* code. */
int eng_tx_decode(const uint8_t *buf, size_t len, eng_tx_view *view);

/* One event of the stream eng_tx_find_stream looks for, as offsets into the
 * record it was found in. Every field is a u64, so an array of hits can also be
 * read as plain u64s, 7 per hit (engine/native.py does). */
typedef struct {
    uint64_t index;     /* the event's index in the record (0-based) */
    uint64_t version;   /* version[index] */
    uint64_t prev_tx;   /* prev_tx[index] */
    uint64_t type_off;  /* its type name is buf[type_off, type_off + type_len), no NUL */
    uint64_t type_len;
    uint64_t data_off;  /* its payload is buf[data_off, data_off + data_len) */
    uint64_t data_len;
} eng_stream_hit;

/* Validates buf[0..len) with every check of eng_tx_decode, in its order and with
 * its codes, then that both name columns are valid UTF-8 (as Python's strict
 * decoder reads them; NAMES otherwise), and finds the events whose stream name is
 * exactly name[0..name_len) (bytewise; a name holding a NUL matches nothing).
 * Fills *view as eng_tx_decode does and hits[0..min(count, cap)) in index order.
 * Returns count, the number of such events (>= 0; when it exceeds cap only the
 * first cap were written: call again with a larger array), or a negative ENG_E_*
 * code, leaving *view unchanged and hits unspecified. ENG_E_ARG: view NULL, buf
 * NULL with len > 0, name NULL with name_len > 0, hits NULL with cap > 0. Nothing
 * is allocated; the caller owns every buffer. */
int64_t eng_tx_find_stream(const uint8_t *buf, size_t len, const uint8_t *name,
                           size_t name_len, eng_tx_view *view, eng_stream_hit *hits,
                           uint32_t cap);

/* Frames a run of records as a log-backup segment body (docs/FORMAT.md section 8):
 * recs[0..recs_len) holds n records back to back, record i being lens[i] bytes;
 * out[0..out_cap) receives [u32 LE lens[i]][record i] for each. Every record must
 * decode (eng_tx_decode) and they must be txs first_tx, first_tx + 1, ... of
 * `epoch` whose first positions continue from *position (the last event position
 * before the run); *position is advanced to the run's last event position.
 * Returns the bytes written (recs_len + 4n), or a negative ENG_E_* code with *bad
 * the index of the failing record: its decode error, or ENG_E_FIELD for a tx,
 * epoch or position that does not continue. ENG_E_ARG (with *bad = n): NULL
 * pointers, n = 0, lens not summing to recs_len, or out_cap too small. Nothing is
 * allocated; the caller owns every buffer; out is unspecified on an error. */
int64_t eng_seg_frame(const uint8_t *recs, size_t recs_len, const uint32_t *lens,
                      uint32_t n, uint64_t first_tx, uint64_t epoch,
                      uint64_t *position, uint8_t *out, size_t out_cap, uint32_t *bad);

/* eng_seg_frame for records that are not back to back: record i is
 * recs[i][0..lens[i]) (a NULL recs[i] is ENG_E_ARG with *bad = i). The same checks,
 * output and errors; the caller skips joining the records first, which for a run
 * of large records is the costliest step left to it (the log-backup uploader). */
int64_t eng_seg_frame_v(const uint8_t *const *recs, const uint32_t *lens, uint32_t n,
                        uint64_t first_tx, uint64_t epoch, uint64_t *position,
                        uint8_t *out, size_t out_cap, uint32_t *bad);

/* The segment footer: u64 LE XXH64 of every byte before it, then this magic. */
#define ENG_SEG_FOOTER_SIZE    16
#define ENG_SEG_END_MAGIC      "ENGSEND1"

/* Assembles a whole segment in out[0..out_cap): head[0..head_len) (the header and
 * its checksum, built by the caller), body[0..body_len) (the compressed body), then
 * the footer. Returns head_len + body_len + 16, or ENG_E_ARG (a NULL pointer, out
 * too small, a size overflow). The caller owns every buffer; none may overlap out.
 * Doing it here keeps two copies of the whole segment off the Python side. */
int64_t eng_seg_seal(const uint8_t *head, size_t head_len, const uint8_t *body,
                     size_t body_len, uint8_t *out, size_t out_cap);

/* -------------------------------------------------------- snapshot block
 * The decompressed snapshot body is a sequence of blocks, each:
 *
 *  off  size  field
 *    0     4  magic "SBLK"
 *    4     4  entry_count n (>= 1)
 *    8     4  none_count m (entries whose value is None; m <= n)
 *   12     4  names_len (bytes of the name column)
 *   16     4  values_len (bytes of the value column)
 *   20     4  reserved (0)
 *   24   8*n  version[i]   (>= 1)
 *    .   8*n  last_tx[i]   (tx holding version[i]; >= 1)
 *    .   4*n  value_lens[i] (0 for a None value)
 *    .   4*m  none_idx[j]  (strictly increasing entry indexes < n whose value is None)
 *    .   names_len   n UTF-8 names, each terminated by one NUL byte
 *    .   values_len  the values back to back
 *  end-8   8  xxh64(all bytes of the block before it, seed 0)
 */
#define ENG_BLOCK_MAGIC        "SBLK"
#define ENG_BLOCK_HEADER_SIZE  24
#define ENG_BLOCK_TRAILER_SIZE 8

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
    size_t block_len;   /* total bytes of this block, trailer included */
} eng_block_view;

/* Bytes an encoded block takes; 0 if the sizes overflow size_t. */
size_t eng_block_encoded_size(uint32_t n, uint32_t m, uint32_t names_len,
                              uint32_t values_len);

/* Encodes one block into out[0..out_cap). Returns bytes written or ENG_E_ARG
 * (n == 0, m > n, out_cap too small, value_lens do not sum to values_len,
 * a none_idx out of order/range or pointing at a non-zero length). */
int64_t eng_block_encode(uint32_t n, const uint64_t *versions,
                         const uint64_t *last_tx, const uint32_t *value_lens,
                         uint32_t m, const uint32_t *none_idx,
                         const uint8_t *names, uint32_t names_len,
                         const uint8_t *values, uint32_t values_len,
                         uint8_t *out, size_t out_cap);

/* Validates the block that starts at buf[0] (buf holds len bytes; the block
 * may be followed by others) and fills *view, including view->block_len so
 * the caller can step to the next block. Checks, in order: TRUNCATED,
 * BAD_MAGIC, FIELD (n == 0, m > n, reserved != 0), OVERRUN, CHECKSUM, FIELD
 * (version or last_tx 0, none_idx out of order or range or its length
 * non-zero), NAMES, LENGTHS. */
int eng_block_decode(const uint8_t *buf, size_t len, eng_block_view *view);

/* ---------------------------------------------------------------- xxh64 */
/* XXH64 of p[0..n), equal to the reference xxHash implementation. */
uint64_t eng_xxh64(const void *p, size_t n, uint64_t seed);

/* XXH64 of parts[0][0..lens[0]), parts[1][0..lens[1]), ... taken as one input (a
 * snapshot file's header and compressed chunks, hashed without joining them). A
 * part may be NULL when its length is 0; parts and lens may be NULL when n == 0. */
uint64_t eng_xxh64_v(const uint8_t *const *parts, const size_t *lens, size_t n,
                     uint64_t seed);

#endif /* ENGINE_FORMAT_H */
