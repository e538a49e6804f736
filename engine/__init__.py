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
    EngineError,
    EngineWarning,
    HistoryLostError,
    InvalidEventError,
    InvalidTargetError,
    LogGapError,
    LogMissingError,
    OptionsError,
    PermanentBackupError,
    RecoveryRequired,
    ReducerError,
    ReentrantCallError,
    StorageError,
    TransientBackupError,
)
from .model import EpochRecord, Event, Position, SnapshotInfo, Transaction, default_reducer
from .notify import CommitPoint, CommitSignal
from .options import Options
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
    "EngineError",
    "EngineWarning",
    "EpochRecord",
    "Event",
    "HistoryLostError",
    "InvalidEventError",
    "InvalidTargetError",
    "LogGapError",
    "LogMissingError",
    "Options",
    "OptionsError",
    "PermanentBackupError",
    "Position",
    "RecoveryRequired",
    "ReducerError",
    "ReentrantCallError",
    "SnapshotInfo",
    "StorageError",
    "Transaction",
    "TransactionBuilder",
    "TransientBackupError",
    "__version__",
    "default_reducer",
    "native",
    "open",
]
