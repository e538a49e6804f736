"""``DIR/LOCK``: one process (and one ``open``) owns a database directory.

The lock is an exclusive, non-blocking ``flock`` on the file; the holder writes
its pid into it so a refused opener can name who holds it. ``flock`` locks belong
to the open file description, so a second ``open`` in the same process is refused
as well. The kernel drops the lock when the holder dies, even by SIGKILL.

The pid is a courtesy, not the lock: when it cannot be written (a full disk) the
lock is still held and the database still opens (so ``engine-admin status`` and
``verify`` work on a full disk); a refused opener then says "another process".
Any failure after the file was opened closes it, so a failed lock never leaks
its descriptor (which would hold the flock until the process exits).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os

from . import layout
from .errors import DatabaseLockedError, StorageError, storage_error

log = logging.getLogger("engine")


class DirLock:
    """An acquired directory lock; :meth:`release` (or process exit) frees it."""

    def __init__(self, directory: str) -> None:
        self.path = layout.lock_file(directory)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise storage_error(exc, f"cannot create {self.path}: {exc}", directory=directory,
                                writing=self.path, consequence="nothing was opened") from exc
        try:
            self._take(fd, directory)
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd

    def _take(self, fd: int, directory: str) -> None:
        """flock ``fd`` and write our pid into it (the caller closes ``fd`` on failure)."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            who = f"process {holder}" if holder else "another process"
            if holder == os.getpid():
                who = f"this process (pid {holder}): close the other handle first"
            raise DatabaseLockedError(
                f"database {directory} is locked by {who}. One process owns a database; "
                "close it there, or reach it through its admin socket (engine-admin status, "
                "snapshot, backup status|flush use it when the process opened the database "
                "with admin_socket=True).", holder) from None
        except OSError as exc:  # ENOLCK, EINTR, ...: not locked, nothing held
            raise StorageError(f"cannot lock {self.path}: {exc}. Check that the filesystem "
                               "supports flock (a local disk does; some network mounts do "
                               "not).") from exc
        # Overwrite in place, then cut: the file's block (from an earlier run) is reused,
        # so this works on a full disk more often than truncate-then-write would.
        pid = f"{os.getpid()}\n".encode()
        try:
            os.pwrite(fd, pid, 0)
            os.ftruncate(fd, len(pid))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # never leave another process's pid behind
            log.warning("locked %s but could not write this process's pid into it (%s); "
                        "a refused opener will say 'another process'", self.path, exc)

    def release(self) -> None:
        """Free the lock; idempotent. ``_fd`` is cleared only right before the close, so
        an interrupt landing earlier leaves it for the next call to release."""
        fd = self._fd
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            self._fd = None
            os.close(fd)  # closing the description drops the flock


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).strip()
        return int(raw) if raw else None
    except (OSError, ValueError):
        return None
