"""engine: an embedded, event-sourced storage engine with a C core.

``engine.open(path)`` returns a :class:`Database`; see README.md for the tour and
docs/FORMAT.md for the on-disk formats.
"""

from __future__ import annotations

from . import native
from .api import open
from .database import Database
from .errors import (
    BackupConflictError,
    BackupError,
    BackupFencedError,
    BackupNotFoundError,
    BackupPausedError,
    ConcurrencyError,
    CorruptLogError,
    CorruptSnapshotError,
    DatabaseClosedError,
    DatabaseLockedError,
    DatabaseMismatchError,
    DiskFullError,
    EngineError,
    EngineWarning,
    HistoryLostError,
    InvalidEventError,
    InvalidTargetError,
    JournalPendingError,
    LogGapError,
    LogMissingError,
    OptionsError,
    PermanentBackupError,
    ReadOnlyError,
    RecoveryRequired,
    ReducerError,
    ReentrantCallError,
    StaleReaderError,
    StorageError,
    TransientBackupError,
    VersionConflictError,
)
from .model import EpochRecord, Event, Position, SnapshotInfo, Transaction, default_reducer
from .notify import CommitPoint, CommitSignal
from .options import Options
from .reader import Reader
from .subscription import Subscription
from .transaction import TransactionBuilder

__version__ = "0.1.0"

__all__ = [
    "BackupConflictError",
    "BackupError",
    "BackupFencedError",
    "BackupNotFoundError",
    "BackupPausedError",
    "CommitPoint",
    "CommitSignal",
    "ConcurrencyError",
    "CorruptLogError",
    "CorruptSnapshotError",
    "Database",
    "DatabaseClosedError",
    "DatabaseLockedError",
    "DatabaseMismatchError",
    "DiskFullError",
    "EngineError",
    "EngineWarning",
    "EpochRecord",
    "Event",
    "HistoryLostError",
    "InvalidEventError",
    "InvalidTargetError",
    "JournalPendingError",
    "LogGapError",
    "LogMissingError",
    "Options",
    "OptionsError",
    "PermanentBackupError",
    "Position",
    "ReadOnlyError",
    "Reader",
    "RecoveryRequired",
    "ReducerError",
    "ReentrantCallError",
    "SnapshotInfo",
    "StaleReaderError",
    "StorageError",
    "Subscription",
    "Transaction",
    "TransactionBuilder",
    "TransientBackupError",
    "VersionConflictError",
    "__version__",
    "default_reducer",
    "native",
    "open",
]
