"""Which log a snapshot belongs to: the checksum of the record it covers.

Two copies of one database directory share a db_id, an epoch and tx ids; once each
commits its own transactions they are different timelines that ``db_id`` and the
epoch history cannot tell apart. A snapshot therefore records the xxh64 of the log
record of the tx it covers (``tx_checksum``: the record's trailing 8 bytes, FORMAT.md
sections 2 and 4), and a log that holds that tx proves or disproves the snapshot in
one point read: equal checksums mean the same record, hence (records are checksummed
and each continues the one before) the same transaction at that tx id.

Where the log does not hold the record:

* the log starts right after the snapshot (``tx_id == base_tx``: a log rebuilt from
  that snapshot by ``recover --new-epoch`` or a restore): the log's ``base_checksum``
  meta entry, copied from the snapshot it was built from, stands in for the record;
  a log without it (built before this field existed) proves nothing;
* the snapshot is past the log's end, or before its base: the decision table refuses
  (a stale log, a gap) before lineage matters;
* the snapshot is of a newer epoch than the log: the log is the older timeline and is
  refused (never replayed onto the newer one); the snapshot is not suspected.

A snapshot without ``tx_checksum`` (format version 1, tx 0, or a writer that did not
know it) is *unproven* and accepted as before. The log is the truth: a mismatch sets
the snapshot aside (``engine.ops.plan``), never the log.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from . import formats
from .log import LogInfo, LogStore
from .native import xxh64
from .snapshot import SnapshotHeader, record_checksum

RUNBOOK = "docs/RUNBOOK.md, 'A diverged copy'"


def log_checksum(log: LogStore, tx_id: int, *, base_tx: int) -> int | None:
    """The xxh64 of the record of ``tx_id`` as this log knows it (the record's own
    trailing checksum, or ``base_checksum`` for ``tx_id == base_tx``); None if the log
    cannot tell (tx 0, outside the log, a base recorded without it, or a record whose
    own checksum fails)."""
    if tx_id < 1:
        return None
    if tx_id <= base_tx:
        if tx_id != base_tx:
            return None
        raw = log.get_meta(formats.META_BASE_CHECKSUM)
        return None if raw is None or len(raw) != 8 else int(formats.U64_LE.unpack(raw)[0])
    rec = log.get(tx_id)
    if rec is None or len(rec) < formats.TX_TRAILER_SIZE:
        return None
    stored = record_checksum(rec)
    # A damaged record proves nothing (and must not make a good snapshot look foreign):
    # its own checksum decides; replay and verify report the damage.
    return stored if xxh64(memoryview(rec)[: -formats.TX_TRAILER_SIZE]) == stored else None


def checksum_source(log: LogStore, base_tx: int) -> Callable[[int], int | None]:
    """``tx_id -> checksum | None`` for the snapshot writer of an open log."""
    return partial(log_checksum, log, base_tx=base_tx)


def base_checksum_entry(tx_checksum: int | None) -> bytes | None:
    """The ``base_checksum`` meta value for a log built from a snapshot with this
    ``tx_checksum`` (None: the snapshot proves nothing, write no entry)."""
    return None if tx_checksum is None else formats.U64_LE.pack(tx_checksum)


@dataclass(frozen=True)
class Divergence:
    """A snapshot whose tx is in this log with another record: a diverged copy's."""

    path: str
    epoch: int
    tx_id: int
    snapshot_checksum: int
    log_checksum: int

    def describe(self) -> str:
        return (f"snapshot {os.path.basename(self.path)} (epoch {self.epoch}, tx "
                f"{self.tx_id}) does not belong to this log: it was taken after a record "
                f"of tx {self.tx_id} with checksum {self.snapshot_checksum:#018x}, but the "
                f"log's tx {self.tx_id} has checksum {self.log_checksum:#018x}. It comes "
                "from a copy of this database that diverged (same db_id, other "
                "transactions)")


def diverged(header: SnapshotHeader, log: LogStore, info: LogInfo) -> Divergence | None:
    """The divergence of ``header`` from the open ``log`` (described by ``info``), or
    None when the log proves the snapshot or cannot tell (see the module doc)."""
    if header.tx_checksum is None or header.epoch > info.epoch:
        return None
    ours = log_checksum(log, header.tx_id, base_tx=info.base_tx)
    if ours is None or ours == header.tx_checksum:
        return None
    return Divergence(path=header.path, epoch=header.epoch, tx_id=header.tx_id,
                      snapshot_checksum=header.tx_checksum, log_checksum=ours)
