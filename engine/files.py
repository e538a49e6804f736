"""The filesystem seam: every durable file operation the engine makes goes through here.

Durable means fsynced in the right order: write a temporary file, fsync it, rename
it over the final name, fsync the directory. :class:`FileSystem` does exactly that
for the engine's own files (snapshots, set-aside moves, a new epoch's log). Tests
and drills swap it for a fault-injecting one with :func:`installed` (LevelDB's
``FaultInjectionTestEnv : public EnvWrapper``) instead of patching module internals.

The seam also sees the LMDB environment on its way out of ``lmdb.open``
(:meth:`FileSystem.wrap_env`): LMDB does its own I/O in C, so the only place a
fault layer can stand for the log is around the environment object.

Threads: the installed instance is read on every call (one global, swapped only by
tests); a :class:`FileSystem` holds no state of its own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .errors import storage_error


class FileSystem:
    """The real filesystem. Subclass and override to inject faults (see tests/faults)."""

    # ------------------------------------------------------------- primitives
    def write(self, f: Any, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` to the open binary file ``f``."""
        f.write(data)

    def fsync(self, fd: int) -> None:
        """fsync one file descriptor."""
        os.fsync(fd)

    def fsync_dir(self, path: str) -> None:
        """fsync a directory so a rename, create or unlink inside it is durable."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self.fsync(fd)
        finally:
            os.close(fd)

    def pwritev(self, fd: int, buffers: Sequence[bytes | bytearray | memoryview],
                offset: int) -> int:
        """Write ``buffers`` at ``offset`` (one ``pwritev``); returns the bytes written."""
        return os.pwritev(fd, buffers, offset)

    def fdatasync(self, fd: int) -> None:
        """fdatasync one file descriptor (the commit journal's one flush per commit)."""
        os.fdatasync(fd)

    def boot_id(self) -> bytes:
        """16 bytes naming this boot of the machine (Linux's ``boot_id``), or 16 zero
        bytes where the system does not say. The commit journal compares it to tell a
        crashed process (the page cache kept every write) from a power cut or reboot
        (only flushed writes survived); tests swap it to simulate the reboot."""
        try:
            with open("/proc/sys/kernel/random/boot_id", "rb") as f:
                text = f.read(64).strip()
            return bytes.fromhex(text.replace(b"-", b"").decode("ascii"))[:16].ljust(16, b"\0")
        except (OSError, ValueError):
            return bytes(16)

    def rename(self, src: str, dst: str) -> None:
        """Atomically replace ``dst`` by ``src`` (``os.replace``); not yet durable."""
        os.replace(src, dst)

    def makedirs(self, path: str) -> None:
        """Create ``path`` and its parents if missing."""
        os.makedirs(path, exist_ok=True)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def wrap_env(self, env: Any) -> Any:
        """The LMDB environment the log will use (the real one: returned unchanged)."""
        return env

    # ------------------------------------------------------------ compounds
    def write_atomic(self, final: str, tmp: str,
                     chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        """Make ``final`` hold ``chunks`` durably or not at all.

        temp file, write, fsync, rename, fsync the directory. On failure the temp file
        is removed and :class:`StorageError` is raised (:class:`DiskFullError` when the
        disk is full); ``final`` is untouched.
        """
        try:
            with open(tmp, "wb") as f:
                for chunk in chunks:
                    self.write(f, chunk)
                f.flush()
                self.fsync(f.fileno())
            self.rename(tmp, final)
            self.fsync_dir(os.path.dirname(final) or ".")
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise storage_error(
                exc, f"cannot write {final}: {exc}. Check free disk space and permissions.",
                directory=os.path.dirname(final) or ".", writing=tmp,
                consequence=f"nothing was written ({os.path.basename(final)} is unchanged)",
            ) from exc

    def remove_durably(self, path: str) -> bool:
        """Delete ``path`` if it exists and fsync its directory (so a power cut cannot
        bring it back); False if there was nothing to delete."""
        try:
            self.unlink(path)
        except FileNotFoundError:
            return False
        self.fsync_dir(os.path.dirname(path) or ".")
        return True

    def move_durably(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst`` and fsync both parent directories."""
        self.rename(src, dst)
        self.fsync_dir(os.path.dirname(dst) or ".")
        src_parent = os.path.dirname(src) or "."
        if os.path.abspath(src_parent) != os.path.abspath(os.path.dirname(dst) or "."):
            self.fsync_dir(src_parent)


_current: FileSystem = FileSystem()


def fs() -> FileSystem:
    """The filesystem in use (the real one unless a test installed another)."""
    return _current


@contextlib.contextmanager
def installed(replacement: FileSystem) -> Iterator[FileSystem]:
    """Use ``replacement`` for every engine file operation inside the block."""
    global _current
    previous, _current = _current, replacement
    try:
        yield replacement
    finally:
        _current = previous
