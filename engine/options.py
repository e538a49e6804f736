"""Options of an open database: one frozen object, checked once.

``engine.open(path, **kwargs)`` keeps keyword arguments as the public API and turns
them into an :class:`Options` here; every other module reads the checked object.
A bad value raises :class:`~engine.errors.OptionsError` (an ``EngineError`` and a
``ValueError``) naming the option, what it got and what it takes; nothing is
opened or created.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .errors import OptionsError
from .model import Reducer

SYNC_MODES: Final = ("commit", "group", "data", "none")

# A commit group (sync="group") stops growing at this many transactions or bytes of
# event data, so one small commit never waits behind a huge group (LevelDB's
# BuildBatchGroup): a leader whose own transaction is small takes at most
# SMALL_LEADER_EXTRA_BYTES more than it.
GROUP_MAX_TXS: Final = 1024
GROUP_MAX_BYTES: Final = 1 << 20
SMALL_LEADER_BYTES: Final = 128 << 10
SMALL_LEADER_EXTRA_BYTES: Final = 128 << 10


@dataclass(frozen=True, slots=True)
class Options:
    """How a database is opened. Every field has a default; see each field's comment."""

    create: bool = True
    """Create the directory and a new database when none is there."""
    sync: str = "commit"
    """``"commit"``: fsync every commit; ``"group"``: concurrent committers share one
    fsync (each still durable on return); ``"data"`` (opt-in): one flush per commit
    instead of two, and a power loss may undo the last commit (of the final ~10 ms)
    (never a process crash; docs/FORMAT.md section 3); ``"none"``: leave flushing to
    the OS."""
    reducer: Reducer | None = None
    """``reducer(value, event) -> bytes | None``; None is the default reducer."""
    snapshot_every: int | None = None
    """Take a snapshot in the background every this many transactions (None: never)."""
    keep_snapshots: int = 3
    """Snapshot files kept after a new one is durable (at least 1)."""
    map_size: int | None = None
    """Initial LMDB map size in bytes (None: 256 MiB, or twice the file); it grows."""
    group_max_txs: int = GROUP_MAX_TXS
    """sync="group": most transactions one leader writes in one LMDB commit."""
    group_max_bytes: int = GROUP_MAX_BYTES
    """sync="group": most event-data bytes in one commit group (the leader's own
    transaction always goes, however large)."""
    backup: Any = None
    """Continuous log backup: a target URL (``file:///abs``, ``s3://bucket/prefix``,
    ``memory://name``), ``TargetOptions`` or ``BackupOptions`` (engine.backup); checked
    and started by ``engine.open``."""
    admin_socket: bool = False
    """Serve the admin endpoint (HTTP over ``DIR/admin.sock``, mode 0600; started by
    ``engine.open``)."""
    readonly: bool = False
    """Open as a reader beside a writer process (not built yet: must be False)."""

    def __post_init__(self) -> None:
        _check_bool("create", self.create)
        if self.sync not in SYNC_MODES:
            raise OptionsError(f"sync must be one of {', '.join(SYNC_MODES)}; got {self.sync!r}")
        if self.reducer is not None and not callable(self.reducer):
            raise OptionsError("reducer must be callable: reducer(value, event) -> bytes | None")
        se = self.snapshot_every
        if se is not None and (type(se) is not int or se < 1):
            raise OptionsError(f"snapshot_every must be a positive int or None, got {se!r}")
        _check_int("keep_snapshots", self.keep_snapshots, 1)
        if self.map_size is not None:
            _check_int("map_size", self.map_size, 1 << 16)
        _check_int("group_max_txs", self.group_max_txs, 1)
        _check_int("group_max_bytes", self.group_max_bytes, 1)
        _check_bool("admin_socket", self.admin_socket)
        _check_bool("readonly", self.readonly)
        for name, value, off in (("readonly", self.readonly, False),):
            if value != off:
                raise OptionsError(f"{name}= is not available in this version of the engine "
                                   f"(got {value!r}); open without it")

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> Options:
        """Options from ``engine.open``'s keyword arguments; an unknown name is an
        :class:`OptionsError` listing the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise OptionsError(f"unknown option(s) {', '.join(unknown)}; known: "
                               f"{', '.join(sorted(known))}")
        return cls(**kwargs)

    def to_json(self) -> dict[str, object]:
        """The options as plain data (for status output); the reducer by name only."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = (getattr(v, "__qualname__", repr(v)) if f.name == "reducer" and v
                           else v)
        return out


def _check_int(name: str, value: object, minimum: int) -> None:
    if type(value) is not int or value < minimum:
        raise OptionsError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_bool(name: str, value: object) -> None:
    if type(value) is not bool:
        raise OptionsError(f"{name} must be True or False, got {value!r}")
