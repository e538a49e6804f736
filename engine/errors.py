"""The engine's error tree (and its one warning class).

Every error a caller can meet is an :class:`EngineError`. Foreign errors (lmdb,
OS, zstd, obstore) are translated into this tree by the module that meets them,
never leaked. Each message says what happened *and what to do*. Classes that
carry data declare it here (py-lmdb's error base does the same), so callers can
rely on the attributes without ``getattr``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

_log = logging.getLogger("engine")
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class EngineError(Exception):
    """Base of every error the engine raises."""


class EngineWarning(UserWarning):
    """Something on disk was skipped or set aside on open (the database still opened)."""


def warn_user(msg: str) -> None:
    """Log ``msg`` and issue an :class:`EngineWarning` attributed to the caller's own
    code (the first frame outside the engine package)."""
    _log.warning(msg)
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is the frame that called us
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    warnings.warn(msg, EngineWarning, stacklevel=level)


class OptionsError(EngineError, ValueError):
    """An option given to ``engine.open`` (or an options object) is invalid; nothing was opened."""


class InvalidEventError(EngineError, ValueError):
    """Bad input to append/transaction: nothing was written."""


class ReducerError(EngineError, TypeError):
    """The reducer returned something other than ``bytes`` or None: that transaction was
    not written. Fix the reducer."""


class ReentrantCallError(EngineError, RuntimeError):
    """A reducer called back into the database that is committing (``db.append``, a
    transaction, ``snapshot()`` or ``close()``), which would wait for itself: refused, and
    the transaction being committed is not written. A reducer must be a pure function of
    ``(value, event)``; append follow-up events after the commit returns."""


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


class VersionConflictError(ConcurrencyError):
    """An event's caller-chosen ``version`` is not greater than its stream's current
    version (or a tracked position not greater than the last one): nothing was
    written. ``actual`` is the current value, ``expected`` the refused one."""

    def __init__(self, stream: str, expected: int, actual: int, what: str = "version") -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        EngineError.__init__(
            self,
            f"{what} {expected} of {stream!r} is not greater than its current {what} "
            f"{actual}; nothing was written. It was already recorded (a duplicate or a "
            "concurrent writer): re-read and decide.")


class DatabaseClosedError(EngineError):
    """The database handle was closed; open it again to use it."""


class ReadOnlyError(EngineError):
    """A write was asked of a database opened with ``readonly=True``."""


class StaleReaderError(EngineError):
    """A read-only handle's log was replaced (a recovery or restore renamed a new log
    into place) after it opened: open the database again to read the new one."""


class DatabaseLockedError(EngineError):
    """Another process (or another ``open`` in this one) owns the directory.

    ``holder_pid`` is the pid written into ``DIR/LOCK`` by the holder (None if unknown).
    """

    def __init__(self, message: str, holder_pid: int | None = None) -> None:
        super().__init__(message)
        self.holder_pid = holder_pid


class DatabaseMismatchError(EngineError):
    """Log, snapshot or backup belong to a different database (db_id differs)."""


class _DecodeError(EngineError):
    """A format check failed. ``code`` is the C decoder's error code (``formats.DECODE_ERRORS``),
    or None when the check was made in Python."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class CorruptSnapshotError(_DecodeError):
    """A snapshot file failed its checks and no usable fallback exists."""


class CorruptLogError(_DecodeError):
    """A log record failed its checks."""


class RecoveryRequired(EngineError):
    """The log no longer covers the newest snapshot: an operator must recover.

    ``snapshot`` is the snapshot's ``Position``, ``log`` the ``LogInfo`` of what was
    found, ``lost`` what recovery would lose (prose). The fix is
    ``engine-admin recover --new-epoch DIR``.
    """

    def __init__(self, message: str, *, snapshot: Any = None, log: Any = None,
                 lost: str = "") -> None:
        super().__init__(message)
        self.snapshot = snapshot
        self.log = log
        self.lost = lost


class LogMissingError(RecoveryRequired):
    """Snapshots exist but the log is missing or empty."""


class LogGapError(RecoveryRequired):
    """The log does not continue the newest snapshot (gap, stale copy, older epoch)."""


class HistoryLostError(EngineError, LookupError):
    """The requested history predates the current log after a log-loss recovery."""


class StorageError(EngineError, OSError):
    """The operating system or LMDB refused an operation (disk full, permissions, ...)."""


class JournalPendingError(StorageError):
    """The log's commit journal holds commits that LMDB's file may lack (the machine
    restarted, or a flush failed, since its writer ran): a read-only open refuses until
    a writer's open (``engine.open(DIR)``) has applied them. Nothing is damaged."""


class DiskFullError(StorageError):
    """The filesystem holding the database is full (``ENOSPC``, ``EDQUOT``, or an LMDB
    write that failed while no space was left). Nothing partial was published: free
    space and retry the same call. ``directory`` is the directory whose disk is full."""

    def __init__(self, message: str, directory: str | None = None) -> None:
        super().__init__(message)
        self.directory = directory


# errnos that mean "no room": a full filesystem, or a user's quota used up. (EFBIG, a
# file past RLIMIT_FSIZE or the filesystem's file size limit, is not: space is left.)
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an OSError it was raised from) says the disk is full."""
    seen: BaseException | None = exc
    for _ in range(4):  # a short cause chain: ours -> the OSError
        if seen is None:
            return False
        if isinstance(seen, DiskFullError) or (
                isinstance(seen, OSError) and seen.errno in DISK_FULL_ERRNOS):
            return True
        seen = seen.__cause__
    return False


def disk_full(directory: str, writing: str, consequence: str,
              exc: BaseException | None = None) -> DiskFullError:
    """The error for a write that found no room: says which disk, which file, what to do.

    ``consequence`` says what the failed call left behind ("nothing was committed").
    """
    why = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else (
        "No space left on device")
    return DiskFullError(f"the disk holding {directory} is full ({why}) while writing "
                         f"{writing}: free space and retry; {consequence}", directory)


def storage_error(exc: OSError, message: str, *, directory: str, writing: str,
                  consequence: str) -> StorageError:
    """Translate an OS error met while writing: :class:`DiskFullError` when it says the
    disk is full, else a :class:`StorageError` with ``message`` (raise it ``from exc``)."""
    if is_disk_full(exc):
        return disk_full(directory, writing, consequence, exc)
    return StorageError(message)


@contextlib.contextmanager
def os_errors_translated(what: str, *, directory: str, consequence: str) -> Iterator[None]:
    """Inside the block, an ``OSError`` that is not already the engine's becomes
    :class:`DiskFullError` (a full disk) or :class:`StorageError` saying ``what`` failed,
    for procedures that write many files (restores) and must leak no raw ``OSError``."""
    try:
        yield
    except EngineError:
        raise
    except OSError as exc:
        writing = exc.filename if isinstance(exc.filename, str) else directory
        raise storage_error(exc, f"{what}: {exc}. Check free disk space and permissions; "
                            f"{consequence}", directory=directory, writing=writing,
                            consequence=consequence) from exc


# ---------------------------------------------------------------- backup targets


class BackupError(EngineError):
    """A backup target (object store) refused or failed an operation.

    ``transient`` says whether retrying the same call later may succeed (timeouts,
    5xx, throttling, connection resets) or not (403, no such bucket, bad URL).
    ``key`` is the object key involved, when there is one. Messages never hold
    credentials.
    """

    transient: bool = False

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class TransientBackupError(BackupError):
    """The target failed in a way that may pass: retry later (with backoff)."""

    transient = True


class PermanentBackupError(BackupError):
    """The target refused in a way a retry will not fix: credentials, bucket, URL, disk."""


class BackupNotFoundError(PermanentBackupError, LookupError):
    """The object (segment, manifest, file) is not in the target."""


class BackupConflictError(PermanentBackupError):
    """A create-if-absent or compare-and-swap write found the object already there or changed."""


class BackupFencedError(PermanentBackupError):
    """The target holds a newer epoch (or another writer's) of this database: this process
    stops shipping and never overwrites it. See docs/RUNBOOK.md, "A fenced backup"."""


class BackupPausedError(BackupError):
    """The log backup is paused (``db.backup.pause()``): resume it before flushing."""


class InvalidTargetError(PermanentBackupError, OptionsError):
    """The backup URL or options are malformed (unknown scheme, relative path, ...)."""


class InvalidKeyError(EngineError, ValueError):
    """An object key, list prefix or byte range handed to a backup target is malformed.

    A bug in the caller (the engine chooses every key), not a target failure, so it is
    not a :class:`BackupError`: nothing was sent to the target, and retrying cannot help.
    """


__all__ = [
    "BackupConflictError",
    "BackupError",
    "BackupFencedError",
    "BackupNotFoundError",
    "BackupPausedError",
    "ConcurrencyError",
    "CorruptLogError",
    "CorruptSnapshotError",
    "DatabaseClosedError",
    "DatabaseLockedError",
    "DatabaseMismatchError",
    "DiskFullError",
    "EngineError",
    "EngineWarning",
    "HistoryLostError",
    "InvalidEventError",
    "InvalidKeyError",
    "InvalidTargetError",
    "LogGapError",
    "LogMissingError",
    "OptionsError",
    "PermanentBackupError",
    "RecoveryRequired",
    "ReducerError",
    "ReentrantCallError",
    "StorageError",
    "TransientBackupError",
]
