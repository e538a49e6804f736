"""A fault-injecting filesystem for the engine's seam (engine.files), LevelDB's
``FaultInjectionTestEnv`` in small: each fault is switched on by a field and counted."""

from __future__ import annotations

import errno
import fnmatch
import os
from typing import Any

import lmdb

from engine.files import FileSystem


class FaultyFileSystem(FileSystem):
    """Fails chosen operations with a chosen errno; every other call goes to the real one.

    ``fail_fsync``: every fsync (files and directories) fails.
    ``fail_rename``: a glob; renames whose source path matches fail.
    ``fail_makedirs``: a glob; makedirs of matching paths fail.
    ``fail_lmdb_writes``: LMDB write transactions fail to begin: ``lmdb.DiskError`` (py-lmdb's
    class for ENOSPC) when ``err`` is ENOSPC, else a plain ``lmdb.Error`` naming ``err``
    (LMDB reports a short page write as EIO).
    ``fail_lmdb_sync``: flushes of the LMDB environment (``env.sync``: the commit
    journal's checkpoints) fail with a plain ``lmdb.Error`` naming ``err``.
    """

    def __init__(self, *, err: int = errno.ENOSPC, fail_fsync: bool = False,
                 fail_rename: str | None = None, fail_makedirs: str | None = None,
                 fail_lmdb_writes: bool = False, fail_lmdb_sync: bool = False) -> None:
        self.err = err
        self.fail_fsync = fail_fsync
        self.fail_rename = fail_rename
        self.fail_makedirs = fail_makedirs
        self.fail_lmdb_writes = fail_lmdb_writes
        self.fail_lmdb_sync = fail_lmdb_sync
        self.injected = 0

    def _raise(self, what: str) -> None:
        self.injected += 1
        raise OSError(self.err, f"{os.strerror(self.err)} (injected: {what})")

    def fsync(self, fd: int) -> None:
        if self.fail_fsync:
            self._raise("fsync")
        super().fsync(fd)

    def rename(self, src: str, dst: str) -> None:
        if self.fail_rename and fnmatch.fnmatch(src, self.fail_rename):
            self._raise(f"rename {src}")
        super().rename(src, dst)

    def makedirs(self, path: str) -> None:
        if self.fail_makedirs and fnmatch.fnmatch(path, self.fail_makedirs):
            self._raise(f"makedirs {path}")
        super().makedirs(path)

    def wrap_env(self, env: Any) -> Any:
        return _FaultyEnv(env, self)


class _FaultyEnv:
    """An LMDB environment whose write transactions fail while the owner says so."""

    def __init__(self, env: Any, owner: FaultyFileSystem) -> None:
        self._env = env
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def begin(self, write: bool = False, **kw: Any) -> Any:
        if write and self._owner.fail_lmdb_writes:
            self._owner.injected += 1
            err = self._owner.err
            if err == errno.ENOSPC:
                raise lmdb.DiskError(f"mdb_txn_begin: {os.strerror(err)} (injected)")
            raise lmdb.Error(f"mdb_txn_begin: {os.strerror(err)} (injected)")
        return self._env.begin(write=write, **kw)

    def sync(self, force: bool = False) -> None:
        if self._owner.fail_lmdb_sync:
            self._owner.injected += 1
            raise lmdb.Error(f"mdb_env_sync: {os.strerror(self._owner.err)} (injected)")
        self._env.sync(force)
