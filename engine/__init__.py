"""engine: an embedded, event-sourced storage engine with a C core.

``engine.open(path)`` returns a :class:`Database`; see README.md for the tour and
docs/FORMAT.md for the on-disk formats.
"""

from __future__ import annotations

from . import native
from .database import Database, TransactionBuilder, open
from .errors import (
    ConcurrencyError,
    CorruptLogError,
    CorruptSnapshotError,
    DatabaseClosedError,
    DatabaseLockedError,
    DatabaseMismatchError,
    EngineError,
    HistoryLostError,
    InvalidEventError,
    LogGapError,
    LogMissingError,
    RecoveryRequired,
    StorageError,
)
from .model import EpochRecord, Event, Position, SnapshotInfo, Transaction, default_reducer
from .recovery import EngineWarning

__version__ = "0.1.0"

__all__ = [
    "ConcurrencyError",
    "CorruptLogError",
    "CorruptSnapshotError",
    "Database",
    "DatabaseClosedError",
    "DatabaseLockedError",
    "DatabaseMismatchError",
    "EngineError",
    "EngineWarning",
    "EpochRecord",
    "Event",
    "HistoryLostError",
    "InvalidEventError",
    "LogGapError",
    "LogMissingError",
    "Position",
    "RecoveryRequired",
    "SnapshotInfo",
    "StorageError",
    "Transaction",
    "TransactionBuilder",
    "__version__",
    "default_reducer",
    "native",
    "open",
]
