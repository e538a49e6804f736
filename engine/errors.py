"""The engine's error tree.

Every error a caller can meet is an :class:`EngineError`. Foreign errors (lmdb,
OS, zstd) are translated into this tree by the module that meets them, never
leaked. Each message says what happened *and what to do*.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises."""


class InvalidEventError(EngineError, ValueError):
    """Bad input to append/transaction: nothing was written."""


class ConcurrencyError(EngineError):
    """``expected_version`` did not match the stream's version: nothing was written."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream!r} is at version {actual}, expected {expected}; "
            "nothing was written. Re-read the stream and retry the command."
        )


class DatabaseClosedError(EngineError):
    """The database handle was closed; open it again to use it."""


class DatabaseLockedError(EngineError):
    """Another process (or another ``open`` in this one) owns the directory."""


class DatabaseMismatchError(EngineError):
    """Log, snapshot or backup belong to a different database (db_id differs)."""


class CorruptSnapshotError(EngineError):
    """A snapshot file failed its checks and no usable fallback exists."""


class CorruptLogError(EngineError):
    """A log record failed its checks."""


class RecoveryRequired(EngineError):
    """The log no longer covers the newest snapshot: an operator must recover.

    Subclasses carry ``snapshot`` (the snapshot's ``Position``) and ``log`` (a
    description of what was found). The fix is ``engine-admin recover --new-epoch DIR``.
    """


class LogMissingError(RecoveryRequired):
    """Snapshots exist but the log is missing or empty."""


class LogGapError(RecoveryRequired):
    """The log does not continue the newest snapshot (gap, stale copy, older epoch)."""


class HistoryLostError(EngineError, LookupError):
    """The requested history predates the current log after a log-loss recovery."""


class StorageError(EngineError, OSError):
    """The operating system or LMDB refused an operation (disk full, permissions, ...)."""


__all__ = [
    "ConcurrencyError",
    "CorruptLogError",
    "CorruptSnapshotError",
    "DatabaseClosedError",
    "DatabaseLockedError",
    "DatabaseMismatchError",
    "EngineError",
    "HistoryLostError",
    "InvalidEventError",
    "LogGapError",
    "LogMissingError",
    "RecoveryRequired",
    "StorageError",
]
