"""On-disk format constants: the Python mirror of ``csrc/engine_format.h``.

``docs/FORMAT.md`` is the prose specification. A change here changes the header
and the doc too, and bumps a format version.
"""

from __future__ import annotations

import struct
from typing import Final

# ---- decoder error codes (engine_format.h ENG_E_*) -----------------------
ENG_OK: Final = 0
DECODE_ERRORS: Final[dict[int, str]] = {
    -1: "truncated",
    -2: "bad magic",
    -3: "unknown format version",
    -4: "checksum mismatch",
    -5: "declared lengths overrun the buffer",
    -6: "malformed name column",
    -7: "length column does not match its region",
    -8: "trailing bytes after the columns",
    -9: "header field out of range",
    -10: "inconsistent encoder arguments",
}

# ---- transaction record (one LMDB value per tx) ---------------------------
TX_MAGIC: Final = b"ETXR"
TX_VERSION: Final = 1
TX_VERSION_TRACKING: Final = 2            # a record carrying a tracking section
TX_FLAG_TRACKING: Final = 1               # its flags bit 0
TX_HEADER_SIZE: Final = 56
TX_TRAILER_SIZE: Final = 8

# ---- snapshot file --------------------------------------------------------
SNAP_MAGIC: Final = b"ENGSNAP1"       # file header magic
SNAP_END_MAGIC: Final = b"ENGSEND1"   # last 8 bytes of the file
SNAP_VERSION: Final = 2               # written; versions 1 and 2 are read
SNAP_VERSIONS_READ: Final = (1, 2)
# The fixed header of version 2 (136 bytes): magic, version, flags, header_len, db_id (36),
# reserved, epoch, tx_id, last_position, stream_count, block_count, body_raw_len,
# body_compressed_len, created_ns, history_len, reserved, tx_checksum. The epoch-history
# JSON and the header checksum (u64) follow it; header_len counts all three.
SNAP_HEADER: Final = struct.Struct("<8sHHI36sIQQQQQQQQIIQ")
# Version 1 (128 bytes): the same without tx_checksum (no lineage proof; still read).
SNAP_HEADER_V1: Final = struct.Struct("<8sHHI36sIQQQQQQQQII")
# flags bit 0: tx_checksum holds the xxh64 of the record of tx tx_id (its trailing 8
# bytes), proving which log the snapshot belongs to. Clear: unknown (tx_checksum is 0).
SNAP_FLAG_TX_CHECKSUM: Final = 1
SNAP_HEADER_LEN_OFFSET: Final = 12        # u32 header_len
SNAP_FOOTER_SIZE: Final = 16              # u64 file checksum + SNAP_END_MAGIC
BLOCK_MAGIC: Final = b"SBLK"
BLOCK_HEADER_SIZE: Final = 24
BLOCK_TRAILER_SIZE: Final = 8
BLOCK_MAX_ENTRIES: Final = 16384          # entries per snapshot block
BLOCK_TARGET_BYTES: Final = 4 << 20       # a block is cut once its values pass this

# ---- LMDB log keys ----------------------------------------------------------
# One unnamed LMDB database holds everything (a named sub-database would cost an
# extra page write per commit). Transaction keys are the 8-byte big-endian tx_id
# (tx ids start at 1); meta keys are 8 zero bytes followed by an ASCII name, so
# they sort before every transaction key and MDB_APPEND still applies to txs.
META_PREFIX: Final = b"\0" * 8
META_DB_ID: Final = META_PREFIX + b"db_id"              # 36-byte ASCII UUID
META_FORMAT: Final = META_PREFIX + b"format"            # u16 LE: LOG_FORMAT
META_EPOCH: Final = META_PREFIX + b"epoch"              # u64 LE: the log's epoch
META_BASE_TX: Final = META_PREFIX + b"base_tx"          # u64 LE: tx before the first record
META_BASE_POSITION: Final = META_PREFIX + b"base_position"  # u64 LE: event position before it
META_HISTORY: Final = META_PREFIX + b"epoch_history"    # JSON list of EpochRecord dicts
META_BACKUP: Final = META_PREFIX + b"backup"            # JSON: the log backup's checkpoint
META_BASE_CHECKSUM: Final = META_PREFIX + b"base_checksum"  # u64 LE: xxh64 of tx base_tx's record
LOG_FORMAT: Final = 1

# ---- commit journal (DIR/log/journal; FORMAT.md section 3, "Commit journal") -----
# Two checkpoint slots, then frames. A slot: magic, version, reserved, seq, the LMDB
# txnid and the engine's last tx id it covers, the page size, the length of each
# saved meta copy, the boot id (16 bytes), the log's db_id (36 ASCII bytes, zeros if
# none yet), the xxh64 trailer of tx last_tx's record (0 if none), the log's epoch,
# then the two meta copies and the u64 xxh64 of every byte before it. A frame: magic, reserved, lap
# (the seq of the slot it follows), tx_id, record length, then the record and the
# u64 xxh64 of the header and the record's own last 8 bytes (its xxh64 trailer).
JOURNAL_SLOT_MAGIC: Final = b"EJSL"
JOURNAL_FRAME_MAGIC: Final = b"EJFR"
JOURNAL_VERSION: Final = 1
JOURNAL_SLOT_HEAD: Final = struct.Struct("<4sHHQQQII16s36sQQ")  # 108 bytes
JOURNAL_SLOT_BYTES: Final = 4096          # each slot's room; slot i at i * this
JOURNAL_META_BYTES: Final = 152           # the part of an LMDB meta page saved (lmdbfile)
JOURNAL_FRAMES_OFFSET: Final = 2 * JOURNAL_SLOT_BYTES
JOURNAL_FRAME_HEAD: Final = struct.Struct("<4sIQQQ")       # 32 bytes
JOURNAL_FRAME_TRAILER: Final = 8          # u64 xxh64 of header + record

# ---- log-backup segment (an object in the backup target) -------------------
# Header: magic, version, flags, header_len, db_id (36), reserved, epoch, first_tx,
# last_tx, first_position, last_position, first_ts_ns, last_ts_ns, record_count,
# reserved, body_raw_len, body_len; then the u64 header checksum. The body is one
# zstd frame of [u32 LE record length][tx record] repeated; the footer is the u64
# checksum of every byte before it and SEG_END_MAGIC.
SEG_MAGIC: Final = b"ENGSEG01"
SEG_END_MAGIC: Final = b"ENGSEND1"
SEG_VERSION: Final = 1
SEG_FLAG_ZSTD: Final = 1
SEG_HEADER: Final = struct.Struct("<8sHHI36sIQQQQQQQIIQQ")
SEG_HEADER_SIZE: Final = 144              # SEG_HEADER + u64 checksum
SEG_FOOTER_SIZE: Final = 16
SEG_SUFFIX: Final = ".seg"

# ---- input limits (documented in README/FORMAT) ---------------------------
MAX_NAME_BYTES: Final = 1024              # stream name, UTF-8
MAX_TYPE_BYTES: Final = 256               # event type, UTF-8
MAX_EVENT_BYTES: Final = 16 << 20         # one event's data
MAX_TX_EVENTS: Final = 1_000_000          # events in one transaction
MAX_TX_BYTES: Final = 256 << 20           # one encoded transaction record
MAX_REASON_BYTES: Final = 512             # epoch-history reason text

U64_LE: Final = struct.Struct("<Q")
U32_LE: Final = struct.Struct("<I")
U16_LE: Final = struct.Struct("<H")

# Largest u64: the range of XXH64 seeds and of the record's integer fields.
U64_MAX: Final = (1 << 64) - 1

# ---- transaction record sizing (see FORMAT.md, "Transaction record") -------
TX_ID_OFFSET: Final = 8                   # u64 LE tx_id in the record header
TX_FIRST_POSITION_OFFSET: Final = 32      # u64 LE first_position in the record header
TX_EVENT_COUNT_OFFSET: Final = 40         # u32 LE event_count in the record header
# Upper bound a builder reserves per event for its fixed columns and short names
# before encoding (version 8 + prev_tx 8 + data length 4 + names); the encoder's
# exact size check (eng_tx_encoded_size) is final.
TX_EVENT_BUDGET_BYTES: Final = 64
