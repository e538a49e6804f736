"""What a background service may use of an open database: its service port.

A service (log-backup uploader, subscription pump, admin server) is handed a
:class:`ServicePort` by ``Database.service_port()`` and uses nothing else: the
database's identity and timeline, the commit signal to wait on, checked record
reads from the log, and the log meta entries that services own. It never reaches
into ``Database`` fields, and the port holds no reference to the ``Database``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from . import formats, layout
from .log import LogStore
from .logreader import LogReader
from .model import EpochRecord
from .native import peek_tx_header
from .notify import CommitSignal
from .snapshot import list_snapshots

# The meta entries a service may write (anything else in the log's meta is the engine's).
SERVICE_META_KEYS: Final = frozenset({formats.META_BACKUP})


@dataclass(frozen=True)
class ServicePort:
    """An open database as a background service sees it. All fields are immutable."""

    path: str
    db_id: str
    epoch: int
    base_tx: int
    base_position: int
    history: tuple[EpochRecord, ...]
    signal: CommitSignal
    reader: LogReader
    _log: LogStore

    @property
    def epoch_first_tx(self) -> int:
        """The first tx of this database's current epoch (where its own timeline starts)."""
        mine = [h.first_tx for h in self.history if h.epoch == self.epoch]
        return mine[-1] if mine else self.base_tx + 1

    def records(self, from_tx: int, to_tx: int) -> Iterator[tuple[int, bytes]]:
        """Raw ``(tx_id, record)`` pairs, in short read transactions (check them with
        ``reader``)."""
        return self._log.iter_range(from_tx, to_tx)

    def flush_before_shipping(self) -> None:
        """Under sync="data", flush the log before a service ships what it read from it:
        a shipped tx must be durable locally first, or a power cut could leave the
        backup ahead of the log (and fence it). Nothing in the other modes."""
        if self._log.sync_mode == "data":
            self._log.sync()

    def flush_log(self) -> None:
        """fsync the log (the meta flusher of sync="data": makes the last commits'
        meta page durable). Safe beside a running commit: LMDB's sync is one flush."""
        self._log.sync()

    def keep_recent_records(self, max_bytes: int) -> None:
        """Have the log keep up to ``max_bytes`` of its committed, unshipped records in
        memory for :meth:`record_values` (0: stop). For the one service that ships the
        log; it bounds what that service costs committers (LogStore.keep_recent)."""
        self._log.keep_recent(max_bytes)

    def record_values(self, from_tx: int, limit: int, max_bytes: int = 1 << 62
                      ) -> list[bytes | bytearray]:
        """Raw records from ``from_tx`` on: at most ``limit`` and, past the first,
        ``max_bytes`` (bulk; the caller checks that they are contiguous, e.g.
        ``native.frame_records``; read them, never write them). With
        keep_recent_records on, records before ``from_tx`` are dropped from memory:
        only the one service that ships the log calls this."""
        return self._log.values_from(from_tx, limit, max_bytes)

    def commit_time(self, tx_id: int) -> float | None:
        """The commit time (Unix seconds) of ``tx_id``, or None if it is not in the log."""
        rec = self._log.get(tx_id)
        if rec is None:
            return None
        return peek_tx_header(rec)[2] / 1e9

    def base_snapshot(self) -> tuple[int, str] | None:
        """``(tx_id, path)`` of the snapshot nearest after the log's base on this epoch's
        timeline: one at ``base_tx`` itself (any epoch up to this one), else the oldest of
        this epoch; None if there is none. The file is not opened here."""
        found = []
        for pos, path in list_snapshots(layout.snapshot_dir(self.path)):
            if pos.tx_id == self.base_tx and pos.epoch <= self.epoch:
                return pos.tx_id, path
            if pos.epoch == self.epoch and pos.tx_id > self.base_tx:
                found.append((pos.tx_id, path))
        return min(found) if found else None

    def get_meta(self, key: bytes) -> bytes | None:
        if key not in SERVICE_META_KEYS:
            raise ValueError(f"meta key {key!r} is not a service's")
        return self._log.get_meta(key)

    def put_meta(self, key: bytes, value: bytes) -> None:
        """Write a service's meta entry (durable unless the database runs sync="none")."""
        if key not in SERVICE_META_KEYS:
            raise ValueError(f"meta key {key!r} is not a service's")
        self._log.put_meta(key, value)
