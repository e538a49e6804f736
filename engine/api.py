"""``engine.open``: the public entry point (keyword arguments -> :class:`Options`)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal, overload

from .database import Database, database_directory, install_full_backup
from .errors import OptionsError
from .model import Reducer
from .options import GROUP_MAX_BYTES, GROUP_MAX_TXS, Options
from .reader import Reader


@overload
def open(path: str | os.PathLike[str], *, create: bool = True, sync: str = "commit",
         reducer: Reducer | None = None, snapshot_every: int | None = None,
         keep_snapshots: int = 3, map_size: int | None = None,
         group_max_txs: int = GROUP_MAX_TXS, group_max_bytes: int = GROUP_MAX_BYTES,
         backup: Any = None, admin_socket: bool = False,
         readonly: Literal[False] = False) -> Database: ...
@overload
def open(path: str | os.PathLike[str], *, create: bool = True, sync: str = "commit",
         reducer: Reducer | None = None, snapshot_every: int | None = None,
         keep_snapshots: int = 3, map_size: int | None = None,
         group_max_txs: int = GROUP_MAX_TXS, group_max_bytes: int = GROUP_MAX_BYTES,
         backup: Any = None, admin_socket: bool = False,
         readonly: Literal[True]) -> Reader: ...
def open(path: str | os.PathLike[str], *, create: bool = True, sync: str = "commit",
         reducer: Reducer | None = None, snapshot_every: int | None = None,
         keep_snapshots: int = 3, map_size: int | None = None,
         group_max_txs: int = GROUP_MAX_TXS, group_max_bytes: int = GROUP_MAX_BYTES,
         backup: Any = None, admin_socket: bool = False,
         readonly: bool = False) -> Database | Reader:
    """Open (or create) the database in directory ``path``. See the README's API tour;
    every option is documented on :class:`~engine.options.Options`.

    ``readonly=True`` opens an existing database beside its writer (which may be
    another process) as a :class:`~engine.reader.Reader`: it takes no lock, writes
    nothing and refuses writes; ``reducer`` and ``map_size`` apply, the writer's
    options (``sync``, ``snapshot_every``, ``backup``, ``admin_socket``, ...) do not.

    ``admin_socket=True`` serves the admin endpoint on ``DIR/admin.sock`` (HTTP, JSON,
    ``/metrics``; see engine.admin.server), which ``engine-admin`` uses to reach a
    live process.

    ``backup=`` (a target URL, ``TargetOptions`` or ``BackupOptions``) starts the
    continuous log backup, controlled through ``db.backup``. A target that cannot be
    reached does not stop the open: the backup retries and ``db.backup.status()`` says
    it is failing; a malformed target is refused before anything is opened.

    Raises :class:`~engine.errors.OptionsError` for a bad option (nothing is created),
    :class:`~engine.errors.DatabaseLockedError` if another handle owns the directory,
    and the :class:`~engine.errors.RecoveryRequired` family when the log does not
    cover the newest snapshot.
    """
    if type(readonly) is not bool:
        raise OptionsError(f"readonly must be True or False, got {readonly!r}")
    if readonly:
        writer_only = {"backup": backup is not None, "admin_socket": admin_socket,
                       "snapshot_every": snapshot_every is not None}
        asked = [k for k, v in writer_only.items() if v]
        if asked:
            raise OptionsError(f"{', '.join(asked)} belong(s) to the writer; a readonly=True "
                               "handle takes none of them")
        Options(reducer=reducer, map_size=map_size)  # checks them
        return Reader(database_directory(path, False), reducer=reducer, map_size=map_size)
    options = Options(create=create, sync=sync, reducer=reducer, snapshot_every=snapshot_every,
                      keep_snapshots=keep_snapshots, map_size=map_size,
                      group_max_txs=group_max_txs, group_max_bytes=group_max_bytes,
                      backup=backup, admin_socket=admin_socket)
    # The services are imported only when asked for: `import engine` stays light
    # (no obstore, prometheus-client or http.server for a database without them).
    backup_options = None
    if backup is not None:  # a bad target is refused before anything is opened
        from .backup.targets import Target, open_target
        from .backup.uploader import BackupOptions

        backup_options = BackupOptions.coerce(backup)
        if not isinstance(backup_options.target, Target):
            backup_options = dataclasses.replace(
                backup_options, target=open_target(backup_options.target))
    db = Database(path, options, _services=True)
    try:
        if backup_options is not None:
            from .backup.uploader import attach_backup

            attach_backup(db, backup_options)
        if sync == "data":  # bounds how long the last commits' meta page stays unflushed
            from .metaflush import MetaFlusher

            db.attach("metaflush", MetaFlusher.start(db.service_port()))
        if admin_socket:
            from .admin.server import AdminServer

            db.attach("admin", AdminServer(db))  # closed first: attached last
    except BaseException:
        db.close()
        raise
    return db


def _backup_full(db: Database, url: Any, **kwargs: Any) -> Any:
    """``db.backup_full``: engine.backup.full, imported when first used (``import engine``
    stays free of the backup stack for applications that never back up)."""
    from .backup.full import backup_full

    return backup_full(db, url, **kwargs)


install_full_backup(_backup_full)
