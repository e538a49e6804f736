"""Every path under a database directory, named by one function each.

LevelDB's ``db/filename.h`` does the same: no other module joins a name under
``DIR`` itself, so the on-disk layout (ENGINE.md, "On disk") is readable here in
one screen and changes in one place::

    DIR/
      LOCK              lock_file()        flock held while open
      log/              log_dir()          LMDB environment (data.mdb, lock.mdb)
      log.new/          log_staging_dir()  a new epoch's log while it is built
      snapshots/        snapshot_dir()     <epoch>-<tx_id>.snap (+ .snap.tmp while written)
        diverged/       diverged_dir()     snapshots of a diverged copy, set aside on open
      aside/            aside_dir()        files moved out of the way, never deleted
      admin.sock        admin_socket()     only with admin_socket=True (mode 0600)
"""

from __future__ import annotations

import os
import re
from typing import Final

LOCK_FILE: Final = "LOCK"
LOG_SUBDIR: Final = "log"
LOG_STAGING_SUBDIR: Final = "log.new"
SNAP_SUBDIR: Final = "snapshots"
DIVERGED_SUBDIR: Final = "diverged"
ASIDE_SUBDIR: Final = "aside"
ADMIN_SOCKET: Final = "admin.sock"
LMDB_DATA_FILE: Final = "data.mdb"
JOURNAL_FILE: Final = "journal"  # the commit journal beside data.mdb (FORMAT.md)
JOURNAL_REPLAY_MARK: Final = "journal.replay"  # after a failed LMDB flush: replay on open
SNAP_SUFFIX: Final = ".snap"
SNAP_TMP_SUFFIX: Final = ".snap.tmp"

_SNAP_NAME = re.compile(r"^(\d+)-(\d+)\.snap$")


def lock_file(path: str) -> str:
    """``DIR/LOCK``: the lock file of the database in ``path``."""
    return os.path.join(path, LOCK_FILE)


def log_dir(path: str) -> str:
    """``DIR/log``: the LMDB environment holding the transaction log."""
    return os.path.join(path, LOG_SUBDIR)


def log_data_file(log_path: str) -> str:
    """``DIR/log/data.mdb``: LMDB's data file inside a log directory."""
    return os.path.join(log_path, LMDB_DATA_FILE)


def log_journal_file(log_path: str) -> str:
    """``DIR/log/journal``: the commit journal of a log directory (sync "commit"/"group")."""
    return os.path.join(log_path, JOURNAL_FILE)


def log_journal_replay_mark(log_path: str) -> str:
    """``DIR/log/journal.replay``: present after a failed flush of LMDB's file under the
    journal; the next writer's open replays the journal even on the same boot."""
    return os.path.join(log_path, JOURNAL_REPLAY_MARK)


def log_journal_metas_before(log_path: str) -> str:
    """``DIR/log/journal.meta-before``: only while the journal's recovery runs, LMDB's
    two meta pages as they were before it wrote the checkpoint's back."""
    return os.path.join(log_path, "journal.meta-before")


def log_staging_dir(path: str) -> str:
    """``DIR/log.new``: where recovery builds a new epoch's log before renaming it."""
    return os.path.join(path, LOG_STAGING_SUBDIR)


def snapshot_dir(path: str) -> str:
    """``DIR/snapshots``: the snapshot files."""
    return os.path.join(path, SNAP_SUBDIR)


def diverged_dir(path: str) -> str:
    """``DIR/snapshots/diverged``: snapshots that belong to a diverged copy of the
    database (same db_id, another log), moved there on open; never deleted."""
    return os.path.join(path, SNAP_SUBDIR, DIVERGED_SUBDIR)


def snapshot_name(epoch: int, tx_id: int) -> str:
    """The file name of the snapshot at ``(epoch, tx_id)``: ``<epoch>-<tx_id>.snap``."""
    return f"{epoch}-{tx_id}{SNAP_SUFFIX}"


def parse_snapshot_name(name: str) -> tuple[int, int] | None:
    """``(epoch, tx_id)`` from a snapshot file name, or None if it is not one."""
    m = _SNAP_NAME.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def snapshot_tmp(final: str) -> str:
    """The temporary name a snapshot is written under before its rename."""
    return final[: -len(SNAP_SUFFIX)] + SNAP_TMP_SUFFIX


def aside_dir(path: str) -> str:
    """``DIR/aside``: files the engine moved out of the way (it never deletes them)."""
    return os.path.join(path, ASIDE_SUBDIR)


def holds_database(path: str) -> bool:
    """Whether ``path`` holds an engine database (or what is left of one): a log,
    a log being built, or a snapshots directory. Tools that only read a database
    check this first so they never create files in a directory that holds none."""
    return (os.path.exists(log_data_file(log_dir(path)))
            or os.path.isdir(log_staging_dir(path)) or os.path.isdir(snapshot_dir(path)))


def admin_socket(path: str) -> str:
    """``DIR/admin.sock``: the admin endpoint's Unix socket."""
    return os.path.join(path, ADMIN_SOCKET)
