"""Retrying target calls of full backups and restores: exponential backoff with full
jitter, bounded attempts and a bounded time per call, built on tenacity (the library
stamina wraps; tenacity's ``wait_random_exponential`` is full jitter, which stamina's
additive jitter is not).

Only :class:`TransientBackupError` is retried (timeouts, 5xx, connection resets,
throttling, a torn write caught by verification). Anything else (a permanent target
error, a local ``StorageError`` such as a full disk) propagates at once.

Every retry is logged (logger ``engine.backup``: what, part, attempt, error, delay)
and counted twice: in the caller's :class:`RetryStats` (``retry_attempts`` of one
backup or restore) and in the process-wide :data:`RETRY_ATTEMPTS` per phase
(``backup``/``restore``), which the admin endpoint's collector serves as the
Prometheus counter ``backup_retry_attempts{phase=...}``. The counters are plain
integers under a lock: a process may run several backups at once, and the
collector reads them at scrape time.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from ..errors import OptionsError, TransientBackupError
from .targets import DEFAULT_PART_SIZE, Buffer, ObjectInfo, Source, Target

log = logging.getLogger("engine.backup")
T = TypeVar("T")

PHASES = ("backup", "restore")
_lock = threading.Lock()
RETRY_ATTEMPTS: dict[str, int] = dict.fromkeys(PHASES, 0)


def retry_attempts() -> dict[str, int]:
    """A copy of the process-wide retry counts per phase."""
    with _lock:
        return dict(RETRY_ATTEMPTS)


@dataclass(frozen=True)
class RetryPolicy:
    """How one target call (a file, a part) is retried.

    ``attempts``: calls in all (1 = no retry). ``backoff_initial``: the first delay's
    upper bound, doubling per attempt up to ``backoff_max`` (each delay is drawn
    uniformly from 0 to that bound: full jitter). ``timeout``: no new attempt starts
    once this many seconds have passed since the first one.
    """

    attempts: int = 8
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    timeout: float = 120.0

    def __post_init__(self) -> None:
        if type(self.attempts) is not int or self.attempts < 1:
            raise OptionsError(f"retries: attempts must be an int >= 1, got {self.attempts!r}")
        for name in ("backoff_initial", "backoff_max", "timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise OptionsError(f"{name} must be a number >= 0, got {value!r}")

    @classmethod
    def of(cls, retries: int | None = None, backoff_max: float | None = None,
           timeout: float | None = None) -> RetryPolicy:
        """The policy for ``--retries N`` (N retries after the first call) and
        ``--backoff-max S``; None keeps the default."""
        d = cls()
        return cls(attempts=d.attempts if retries is None else retries + 1,
                   backoff_initial=d.backoff_initial if backoff_max is None
                   else min(d.backoff_initial, backoff_max),
                   backoff_max=d.backoff_max if backoff_max is None else backoff_max,
                   timeout=d.timeout if timeout is None else timeout)

    def to_json(self) -> dict[str, float]:
        return {"attempts": self.attempts, "backoff_initial": self.backoff_initial,
                "backoff_max": self.backoff_max, "timeout": self.timeout}


class RetryStats:
    """The retries of one backup or restore (thread-safe: parts go up in parallel)."""

    def __init__(self, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        self.phase = phase
        self.attempts = 0
        self._lock = threading.Lock()

    def count(self) -> None:
        with self._lock:
            self.attempts += 1
        with _lock:
            RETRY_ATTEMPTS[self.phase] += 1


def call(policy: RetryPolicy, stats: RetryStats, what: str, fn: Callable[[], T], *,
         part: int | None = None, sleep: Callable[[float], None] | None = None) -> T:
    """``fn()``, retried on :class:`TransientBackupError` per ``policy``; the last
    error propagates when attempts or time run out."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        stats.count()
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s: retrying %s%s after attempt %d of %d failed: %s; sleeping %.3f s",
                    stats.phase, what, "" if part is None else f" part {part}",
                    state.attempt_number, policy.attempts, exc, delay)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientBackupError),
        stop=(tenacity.stop_after_attempt(policy.attempts)
              | tenacity.stop_after_delay(policy.timeout)),
        wait=tenacity.wait_random_exponential(multiplier=policy.backoff_initial,
                                              max=policy.backoff_max),
        before_sleep=before_sleep, reraise=True, sleep=sleep or time.sleep)
    t0 = time.monotonic()
    try:
        return retrying(fn)
    except TransientBackupError as exc:
        n = retrying.statistics.get("attempt_number", 1)
        raise TransientBackupError(
            f"{exc} (gave up on {what}{'' if part is None else f' part {part}'} after {n} "
            f"attempt(s) in {time.monotonic() - t0:.1f} s; raise --retries or "
            "--backoff-max, or check the target)", key=exc.key) from exc


class RetryingTarget(Target):
    """``inner`` with every read call retried per ``policy`` (writes are not: a full
    backup retries each write together with its verification, see ``backup.full``).
    Used by restore so that the log-backup chain (``backup.chain``) is read with the
    same retries as the full backup's files."""

    def __init__(self, inner: Target, policy: RetryPolicy, stats: RetryStats) -> None:
        self.inner = inner
        self.policy = policy
        self.stats = stats

    @property
    def url(self) -> str:
        return self.inner.url

    def describe(self) -> str:
        return self.inner.describe()

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return call(self.policy, self.stats, what, fn)

    def put(self, key: str, data: Buffer, *, create_only: bool = False) -> ObjectInfo:
        return self.inner.put(key, data, create_only=create_only)

    def put_if_match(self, key: str, data: Buffer, etag: str) -> ObjectInfo:
        return self.inner.put_if_match(key, data, etag)

    def put_file(self, key: str, source: Source, *, part_size: int = DEFAULT_PART_SIZE,
                 max_concurrency: int = 4) -> ObjectInfo:
        return self.inner.put_file(key, source, part_size=part_size,
                                   max_concurrency=max_concurrency)

    def get(self, key: str) -> bytes:
        return self._call(key, lambda: self.inner.get(key))

    def get_range(self, key: str, start: int, end: int) -> bytes:
        return self._call(key, lambda: self.inner.get_range(key, start, end))

    def get_file(self, key: str, dest: Source, *,
                 part_size: int = DEFAULT_PART_SIZE) -> ObjectInfo:
        return self._call(key, lambda: self.inner.get_file(key, dest, part_size=part_size))

    def head(self, key: str) -> ObjectInfo | None:
        return self._call(key, lambda: self.inner.head(key))

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        return self._call(f"list {prefix!r}", lambda: self.inner.list(prefix))

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", lambda: self.inner.delete(key))

    def check(self) -> None:
        self._call("check", self.inner.check)


__all__ = ["PHASES", "RETRY_ATTEMPTS", "RetryPolicy", "RetryStats", "RetryingTarget", "call",
           "retry_attempts"]
