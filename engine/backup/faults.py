"""A fault-injecting :class:`Target` wrapper, for tests and operator drills.

``FaultyTarget(inner, ...)`` forwards every call to ``inner`` and, on the calls it
chooses, fails instead the way a real object store does:

- ``fail_rate``: a seeded fraction of calls fail (``random.Random(seed)``, so a run is
  reproducible as long as the calls come in the same order);
- ``fail_keys``: every call on a matching key fails (a pattern with ``*?[`` is a glob,
  anything else a substring; ``list`` matches on its prefix);
- ``fail_after_partial_write``: a chosen *write* first stores a truncated object (the
  first half of the data, with the same create-only / compare-and-swap condition), then
  fails transiently: what a torn upload looks like to whoever verifies afterwards;
- ``latency_seconds``: every call on the chosen ops sleeps first;
- ``transient``: injected failures are ``TransientBackupError`` (default) or
  ``PermanentBackupError``;
- ``ops``: the operations subject to all of the above (default: every one);
- ``outage()`` / ``restore_service()``: while out, every call fails transiently,
  whatever ``ops`` says (``with target.outage(): ...`` restores on exit).

``injected`` counts injected failures (``injected_by_op`` per operation); ``calls``
counts every call per operation. Keys are validated before anything is injected, so a
bad key is still an ``InvalidKeyError``.
"""

from __future__ import annotations

import builtins
import fnmatch
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable
from types import TracebackType
from typing import Final

from ..errors import BackupError, PermanentBackupError, TransientBackupError
from .targets import (
    DEFAULT_PART_SIZE,
    Buffer,
    ObjectInfo,
    Source,
    Target,
    _check_part_size,
    _open_source,
    validate_key,
    validate_prefix,
)

#: Every operation a Target has.
ALL_OPS: Final = frozenset({
    "put", "put_if_match", "put_file", "get", "get_range", "get_file", "head", "list",
    "delete", "check",
})
_WRITES: Final = frozenset({"put", "put_if_match", "put_file"})


class FaultyTarget(Target):
    """Wraps ``inner`` and injects failures (see the module docstring)."""

    def __init__(self, inner: Target, *, fail_rate: float = 0.0, seed: int = 0,
                 fail_keys: Iterable[str] = (), fail_after_partial_write: bool = False,
                 latency_seconds: float = 0.0, transient: bool = True,
                 ops: Iterable[str] = ALL_OPS) -> None:
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError(f"fail_rate={fail_rate!r} must be between 0 and 1")
        if latency_seconds < 0:
            raise ValueError(f"latency_seconds={latency_seconds!r} must be >= 0")
        self.ops = frozenset(ops)
        unknown = self.ops - ALL_OPS
        if unknown:
            raise ValueError(f"unknown ops {sorted(unknown)}; choose from {sorted(ALL_OPS)}")
        self.inner = inner
        self.fail_rate = fail_rate
        self.fail_keys = tuple(fail_keys)
        self.fail_after_partial_write = fail_after_partial_write
        self.latency_seconds = latency_seconds
        self.transient = transient
        self.injected_by_op: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._out = False

    # -- control

    @property
    def injected(self) -> int:
        """How many failures were injected so far (outages included)."""
        with self._lock:
            return sum(self.injected_by_op.values())

    @property
    def is_out(self) -> bool:
        return self._out

    def outage(self) -> _Outage:
        """Start an outage: every call fails transiently until :meth:`restore_service`."""
        self._out = True
        return _Outage(self)

    def restore_service(self) -> None:
        """End an outage."""
        self._out = False

    @property
    def url(self) -> str:
        return self.inner.url

    def describe(self) -> str:
        return f"{self.inner.describe()} [fault injection]"

    def __repr__(self) -> str:
        return f"FaultyTarget({self.inner!r}, fail_rate={self.fail_rate})"

    # -- the decision

    def _matches(self, key: str | None) -> bool:
        if key is None:
            return False
        for pattern in self.fail_keys:
            if any(c in pattern for c in "*?["):
                if fnmatch.fnmatchcase(key, pattern):
                    return True
            elif pattern in key:
                return True
        return False

    def _fault(self, op: str, key: str | None) -> BackupError | None:
        """Count the call, sleep if asked, and return the failure to inject, if any."""
        with self._lock:
            self.calls[op] += 1
            chosen = op in self.ops
            if self._out:
                self.injected_by_op[op] += 1
                return TransientBackupError(
                    f"backup target {self.url}: {op} {key!r} failed: injected outage "
                    "(FaultyTarget.outage); retry later", key=key)
            fail = chosen and (self._matches(key) or (
                self.fail_rate > 0 and self._rng.random() < self.fail_rate))
            if fail:
                self.injected_by_op[op] += 1
        if chosen and self.latency_seconds:
            time.sleep(self.latency_seconds)
        if not fail:
            return None
        cls = TransientBackupError if self.transient else PermanentBackupError
        return cls(f"backup target {self.url}: {op} {key!r} failed: injected fault "
                   "(FaultyTarget)", key=key)

    def _partial(self, op: str, key: str, err: BackupError) -> BackupError:
        """The error to raise after a torn write (always transient: the call may be retried)."""
        if isinstance(err, TransientBackupError):
            return err
        return TransientBackupError(str(err) + " after a partial write", key=key)

    # -- the Target interface

    def put(self, key: str, data: Buffer, *, create_only: bool = False) -> ObjectInfo:
        validate_key(key)
        err = self._fault("put", key)
        if err is None:
            return self.inner.put(key, data, create_only=create_only)
        if self.fail_after_partial_write:
            self.inner.put(key, _half(data), create_only=create_only)
            raise self._partial("put", key, err)
        raise err

    def put_if_match(self, key: str, data: Buffer, etag: str) -> ObjectInfo:
        validate_key(key)
        err = self._fault("put_if_match", key)
        if err is None:
            return self.inner.put_if_match(key, data, etag)
        if self.fail_after_partial_write:
            self.inner.put_if_match(key, _half(data), etag)
            raise self._partial("put_if_match", key, err)
        raise err

    def put_file(self, key: str, source: Source, *, part_size: int = DEFAULT_PART_SIZE,
                 max_concurrency: int = 4) -> ObjectInfo:
        validate_key(key)
        _check_part_size(part_size, max_concurrency)
        err = self._fault("put_file", key)
        if err is None:
            return self.inner.put_file(key, source, part_size=part_size,
                                       max_concurrency=max_concurrency)
        if self.fail_after_partial_write:
            with _open_source(source) as f:
                head = f.read(part_size)
            self.inner.put(key, _half(head))
            raise self._partial("put_file", key, err)
        raise err

    def get(self, key: str) -> bytes:
        validate_key(key)
        self._raise_if_chosen("get", key)
        return self.inner.get(key)

    def get_view(self, key: str) -> Buffer:
        validate_key(key)
        self._raise_if_chosen("get", key)
        return self.inner.get_view(key)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        validate_key(key)
        self._raise_if_chosen("get_range", key)
        return self.inner.get_range(key, start, end)

    def get_file(self, key: str, dest: Source, *,
                 part_size: int = DEFAULT_PART_SIZE) -> ObjectInfo:
        validate_key(key)
        self._raise_if_chosen("get_file", key)
        return self.inner.get_file(key, dest, part_size=part_size)

    def head(self, key: str) -> ObjectInfo | None:
        validate_key(key)
        self._raise_if_chosen("head", key)
        return self.inner.head(key)

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        validate_prefix(prefix)
        self._raise_if_chosen("list", prefix)
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        validate_key(key)
        self._raise_if_chosen("delete", key)
        self.inner.delete(key)

    def check(self) -> None:
        self._raise_if_chosen("check", None)
        self.inner.check()

    def _raise_if_chosen(self, op: str, key: str | None) -> None:
        err = self._fault(op, key)
        if err is not None:
            raise err


class _Outage:
    """Returned by :meth:`FaultyTarget.outage`; as a context manager, restores on exit."""

    def __init__(self, target: FaultyTarget) -> None:
        self._target = target

    def __enter__(self) -> FaultyTarget:
        return self._target

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._target.restore_service()


def _half(data: Buffer) -> bytes:
    raw = bytes(data)
    return raw[: len(raw) // 2]


__all__ = ["ALL_OPS", "FaultyTarget"]
