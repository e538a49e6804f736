"""``DIR/LOCK``: one process (and one ``open``) owns a database directory.

The lock is an exclusive, non-blocking ``flock`` on the file; the holder writes
its pid into it so a refused opener can name who holds it. ``flock`` locks belong
to the open file description, so a second ``open`` in the same process is refused
as well. The kernel drops the lock when the holder dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from . import layout
from .errors import DatabaseLockedError, StorageError


class DirLock:
    """An acquired directory lock; :meth:`release` (or process exit) frees it."""

    def __init__(self, directory: str) -> None:
        self.path = layout.lock_file(directory)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot create {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            if holder == os.getpid():
                who = f"this process (pid {holder}): close the other handle first"
            raise DatabaseLockedError(
                f"database {directory} is locked by {who}. One process owns a database; "
                "close it there, or reach it through its admin socket (engine-admin status, "
                "snapshot, backup status|flush use it when the process opened the database "
                "with admin_socket=True).", holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

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
