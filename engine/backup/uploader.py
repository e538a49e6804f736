"""Continuous log backup: ship every committed transaction to a backup target.

:class:`LogBackup` is a background service (one thread, ``engine-backup:<dir>``). It
waits on the database's commit signal, and on each round ships the records from its
checkpoint + 1 up to the last committed tx, *read from the log*, as segments
(``engine.backup.segment``) under ``<db_id>/log/<epoch>/``. A segment counts as
shipped only once it is read back from the target and matches byte for byte; only
then does the checkpoint move past it (in the target, in the log's meta, in memory,
in that order), so a checkpoint is never published beyond what is durable in the
target (tikv#19897).

Gap-free whatever the control plane does (tikv#18243, #18290):

* The uploader never trusts a notification to know *what* to ship: every round
  starts at its checkpoint and ends at the commit signal's current tx, so a missed,
  coalesced or late wake-up only delays shipping.
* Control requests (start, stop) carry ids from one process-wide monotonic
  generator (:func:`next_observation_id`). A request older than the newest one
  applied is stale: ignored and counted (``stale_requests_ignored``), never tearing
  down a live observation. ``pause``/``resume`` and ``open`` make such requests.
* Every (re)start of an observation re-derives the checkpoint from the target
  (the contiguous run of this epoch's segments), so txs committed while no backup
  ran, or shipped by a run that died before its checkpoint, are neither skipped
  nor shipped twice: segment keys are deterministic in ``(first_tx, last_tx)`` and
  written create-if-absent.

Fencing: an epoch is claimed in the target with a create-if-absent write holding
this database's writer token. A claim of a *newer* epoch, another writer's claim of
this epoch, or a segment in the target whose records differ from this log's means
the database was restored or recovered elsewhere (or this is a diverged copy): the
uploader stops in state ``fenced``, says so in ``status()`` and the log, and never
overwrites or deletes anything.

Force flush (tikv#18262): ``flush()`` asks for everything committed before the call
and waits until the checkpoint reaches it. Concurrent calls share the rounds; a call
during a running round waits for it and the next one ships what is left.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .. import formats
from ..errors import (
    BackupConflictError,
    BackupError,
    BackupFencedError,
    BackupPausedError,
    CorruptLogError,
    EngineError,
    InvalidTargetError,
    OptionsError,
    PermanentBackupError,
    TransientBackupError,
)
from ..native import FrameError, frame_records, peek_tx_header, xxh64
from ..port import ServicePort
from ..snapshot import load_snapshot_bytes, load_snapshot_from
from . import keys
from .chain import best_run, checkpoint_of, segments_of
from .segment import CorruptSegmentError, SegmentHeader, decode_segment, encode_framed
from .targets import Target, TargetOptions, open_target

log = logging.getLogger("engine.backup")

STATES = ("starting", "running", "paused", "failing", "fenced", "stopped")
# Newest committed records the log keeps in memory for the uploader while a backup runs
# (ServicePort.keep_recent_records): ~0.6 s of 100 MB/s of appends; past it, or after
# an outage, the uploader reads the rest back from LMDB.
RECENT_RECORD_BYTES = 64 * 1024 * 1024

_ids = itertools.count(1)
_ids_lock = threading.Lock()


def next_observation_id() -> int:
    """The next id of the process-wide monotonic generator of control requests."""
    with _ids_lock:
        return next(_ids)


class Control(NamedTuple):
    """A control request: ``kind`` is "start" or "stop"; ``id`` from
    :func:`next_observation_id`; ``reason`` says who asked (for the log)."""

    kind: str
    id: int
    reason: str = ""


@dataclass(frozen=True)
class BackupOptions:
    """How the log backup runs. Only ``target`` is required (a URL or TargetOptions)."""

    target: str | TargetOptions | Target
    """A URL, TargetOptions, or an open Target (a fault-injecting one in tests and drills)."""
    interval_seconds: float = 0.2
    """Shortest time between two shipping rounds under steady writes (batching)."""
    max_segment_bytes: int = 8 << 20
    """A segment holds at most this many (uncompressed) bytes of records, or one record
    if that alone is bigger."""
    max_segment_txs: int = 50_000
    """... or this many transactions."""
    flush_timeout_seconds: float = 30.0
    """``flush(timeout=None)`` waits this long before raising."""
    close_timeout_seconds: float = 10.0
    """``close()`` flushes for at most this long, then reports what stayed unshipped."""
    backoff_max_seconds: float = 5.0
    """Longest wait between two attempts while the target fails."""
    fence_check_seconds: float = 5.0
    """How often a running backup looks for a newer epoch's claim in the target."""

    def __post_init__(self) -> None:
        for name in ("interval_seconds", "flush_timeout_seconds", "close_timeout_seconds",
                     "backoff_max_seconds", "fence_check_seconds"):
            v = getattr(self, name)
            if type(v) not in (int, float) or not v >= 0 or v != v:
                raise OptionsError(f"backup option {name} must be a number >= 0, got {v!r}")
        for name in ("max_segment_bytes", "max_segment_txs"):
            v = getattr(self, name)
            if type(v) is not int or v < 1:
                raise OptionsError(f"backup option {name} must be an int >= 1, got {v!r}")

    @classmethod
    def coerce(cls, value: object) -> BackupOptions:
        """``backup=`` of ``engine.open``: a URL, TargetOptions, or BackupOptions."""
        if isinstance(value, BackupOptions):
            return value
        if isinstance(value, str | TargetOptions | Target):
            return cls(target=value)
        raise InvalidTargetError(f"backup= takes a URL (e.g. 'file:///var/backups/db' or "
                                 f"'s3://bucket/prefix'), TargetOptions or BackupOptions, not "
                                 f"{type(value).__name__}")


@dataclass(frozen=True)
class FlushResult:
    """What ``flush()`` shipped: every tx up to ``flushed_through_tx`` of ``epoch`` is
    durable in the target; ``pending_txs`` were committed since (not waited for)."""

    epoch: int
    flushed_through_tx: int
    pending_txs: int
    seconds: float

    def to_json(self) -> dict[str, object]:
        return {"epoch": self.epoch, "flushed_through_tx": self.flushed_through_tx,
                "pending_txs": self.pending_txs, "seconds": round(self.seconds, 6)}


@dataclass(frozen=True)
class BackupStatus:
    """The log backup as ``status()`` sees it (RPO figures: ``lag_txs``, ``lag_seconds``)."""

    state: str
    target: str
    epoch: int
    checkpoint_tx: int
    last_tx: int
    lag_txs: int
    lag_seconds: float
    last_error: str | None
    segments_shipped: int
    bytes_shipped: int
    flushes: int
    stale_requests_ignored: int
    observation_id: int

    def to_json(self) -> dict[str, object]:
        return {k: (round(v, 6) if isinstance(v, float) else v)
                for k, v in self.__dict__.items()}


FLUSH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)


@dataclass
class _Stats:
    segments: int = 0
    bytes: int = 0
    flushes: int = 0
    stale: int = 0
    errors: int = 0  # failed shipping rounds (each is retried)
    flush_sum: float = 0.0
    flush_counts: list[int] = field(default_factory=lambda: [0] * (len(FLUSH_BUCKETS) + 1))


class LogBackup:
    """The log-backup service of one open database (``db.backup``).

    Thread-safe. Every mutable field is guarded by ``_cv`` (a Condition), except where
    noted; the uploader thread is the only writer of the checkpoint.
    """

    def __init__(self, port: ServicePort, options: BackupOptions, target: Target) -> None:
        self._port = port
        self.options = options
        self.target = target
        self._cv = threading.Condition()
        # Set (never cleared but by the uploader) to end the uploader's wait early.
        self._wake = threading.Event()
        # ---- guarded by _cv
        self._controls: list[Control] = []
        self._observation_id = 0
        self._active = False
        self._observing = False  # the checkpoint was derived from the target
        self._state = "starting"
        self._last_error: BaseException | None = None
        self._checkpoint = port.epoch_first_tx - 1
        self._checkpoint_position = 0
        self._cap: int | None = None  # ship no further than this (a hole being filled)
        self._base_missing: str | None = None  # why the epoch's base is not in the target
        self._ck_etag: str | None = None  # ETag of checkpoint.json as this writer last saw it
        self._flush_target = 0
        self._stopping = False
        self._closed = False
        self._stats = _Stats()
        # ---- uploader thread only
        self._writer = self._writer_token()
        self._session = uuid.uuid4().hex  # this open's own id, beside the copied token
        self._abandoned = False  # guarded by _cv: close() gave up waiting for the thread
        self._thread = threading.Thread(target=self._run, name=f"engine-backup:{port.path}",
                                        daemon=True)

    @classmethod
    def start(cls, port: ServicePort, options: BackupOptions) -> LogBackup:
        """Open the target and start shipping (the first ``start`` control request)."""
        t = options.target
        target = t if isinstance(t, Target) else open_target(t)
        svc = cls(port, options, target)
        svc.submit(Control("start", next_observation_id(), "open"))
        svc._thread.start()
        port.keep_recent_records(RECENT_RECORD_BYTES)  # once running: close() turns it off
        return svc

    # ------------------------------------------------------------ control
    def submit(self, request: Control) -> None:
        """Hand a control request to the uploader (applied in arrival order; stale ids
        are ignored and counted)."""
        if request.kind not in ("start", "stop"):
            raise ValueError(f"unknown control request {request.kind!r}")
        with self._cv:
            self._controls.append(request)
            self._cv.notify_all()
        self._wake.set()

    def pause(self) -> None:
        """Stop shipping (commits go on; they ship after ``resume()``)."""
        self.submit(Control("stop", next_observation_id(), "pause"))

    def resume(self) -> None:
        """Start shipping again, from the checkpoint found in the target."""
        self.submit(Control("start", next_observation_id(), "resume"))

    def _apply_controls(self) -> None:
        """Uploader thread, under _cv: apply the queued requests in arrival order."""
        for req in self._controls:
            if req.id <= self._observation_id:
                self._stats.stale += 1
                log.info("backup of %s: ignored stale %s request %d (newest applied: %d)",
                         self._port.path, req.kind, req.id, self._observation_id)
                continue
            self._observation_id = req.id
            if req.kind == "start":
                if not self._active:
                    self._observing = False  # re-derive the checkpoint from the target
                self._active = True
                if self._state in ("paused", "stopped"):
                    self._state = "starting"
            else:
                self._active = False
                if self._state != "fenced":
                    self._state = "paused"
        self._controls.clear()
        self._cv.notify_all()

    # -------------------------------------------------------------- flush
    def flush(self, timeout: float | None = None) -> FlushResult:
        """Ship everything committed before this call; returns once it is durable in the
        target. Raises :class:`TransientBackupError` after ``timeout`` seconds (default
        ``options.flush_timeout_seconds``) with what is still pending (nothing is lost:
        it ships when the target answers), :class:`BackupFencedError` if fenced and
        :class:`BackupPausedError` if paused."""
        t0 = time.monotonic()
        limit = self.options.flush_timeout_seconds if timeout is None else timeout
        if type(limit) not in (int, float) or not limit >= 0:
            raise OptionsError(f"flush timeout must be a number of seconds >= 0, got {limit!r}")
        deadline = t0 + limit  # inf waits without a deadline
        wanted = self._port.signal.current.tx_id
        with self._cv:
            while True:
                self._apply_pending_state_checks()
                # observing: the epoch is claimed and its base (if any) is in the target
                if self._checkpoint >= wanted and (self._observing or wanted == 0):
                    ckpt = self._checkpoint
                    self._stats.flushes += 1
                    break
                self._flush_target = max(self._flush_target, wanted)
                self._wake.set()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TransientBackupError(
                        f"flush to {self.target.url} timed out after {limit:g} s: shipped "
                        f"through tx {self._checkpoint}, {wanted - self._checkpoint} committed "
                        f"tx(s) not yet shipped (last error: {self._last_error or 'none'}). "
                        "Nothing is lost: they ship when the target answers; flush again.")
                self._cv.wait(None if left == float("inf") else left)
        self._fence_check_for_flush()
        pending = max(0, self._port.signal.current.tx_id - ckpt)
        seconds = time.monotonic() - t0
        with self._cv:
            self._stats.flush_sum += seconds
            self._stats.flush_counts[bisect_left(FLUSH_BUCKETS, seconds)] += 1
        return FlushResult(self._port.epoch, ckpt, pending, seconds)

    def flush_stats(self) -> dict[str, Any]:
        """The flush duration histogram and the count of failed rounds (for metrics)."""
        with self._cv:
            s = self._stats
            return {"buckets": FLUSH_BUCKETS, "counts": list(s.flush_counts),
                    "sum": s.flush_sum, "errors": s.errors}

    def _apply_pending_state_checks(self) -> None:
        """Under _cv: refuse a flush that cannot finish."""
        if self._closed or self._stopping:
            raise BackupError(f"the log backup of {self._port.path} is closed")
        if self._state == "fenced":
            raise BackupFencedError(
                f"the log backup of {self._port.path} is fenced and ships nothing: "
                f"{self._last_error}")
        pending_start = any(c.kind == "start" and c.id > self._observation_id
                            for c in self._controls)
        if self._base_missing and self._observing:
            raise PermanentBackupError(f"the log backup of {self._port.path} ships, but "
                                       f"{self._base_missing}")
        if not self._active and not pending_start:
            raise BackupPausedError(f"the log backup of {self._port.path} is paused; call "
                                    "db.backup.resume() before flushing")

    # ------------------------------------------------------------- status
    def status(self) -> BackupStatus:
        """State, checkpoint and the RPO figures (lag in txs and in seconds)."""
        last = self._port.signal.current.tx_id
        with self._cv:
            ckpt, state = self._checkpoint, self._state
            err = self._last_error
            if err is None and self._base_missing:
                err = PermanentBackupError(self._base_missing)
            s = self._stats
            segs, nbytes, flushes, stale = s.segments, s.bytes, s.flushes, s.stale
            obs = self._observation_id
        lag = max(0, last - ckpt)
        lag_s = 0.0
        if lag:
            ts = self._port.commit_time(ckpt + 1)
            lag_s = max(0.0, time.time() - ts) if ts is not None else 0.0
        return BackupStatus(state=state, target=self.target.url, epoch=self._port.epoch,
                            checkpoint_tx=ckpt, last_tx=last, lag_txs=lag, lag_seconds=lag_s,
                            last_error=None if err is None else f"{type(err).__name__}: {err}",
                            segments_shipped=segs, bytes_shipped=nbytes, flushes=flushes,
                            stale_requests_ignored=stale, observation_id=obs)

    # -------------------------------------------------------------- close
    def close(self) -> None:
        """Flush (bounded by ``close_timeout_seconds``), then stop the uploader. What could
        not be shipped is logged; it ships when the database is next opened with backup=."""
        try:
            self._close()
        finally:  # even an interrupted close stops the log keeping records for it
            self._port.keep_recent_records(0)

    def _close(self) -> None:
        t0 = time.monotonic()
        limit = self.options.close_timeout_seconds
        with self._cv:
            if self._closed:
                return
            pending_start = any(c.kind == "start" and c.id > self._observation_id
                                for c in self._controls)
            running = (self._active or pending_start) and self._state != "fenced"
        if running:
            try:
                self.flush(limit)
            except BackupError as exc:
                log.warning("closing %s: not everything committed reached %s: %s",
                            self._port.path, self.target.url, exc)
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._wake.set()
        # Bounded: a target call that hangs must not hang Database.close. The thread is a
        # daemon; once abandoned it never touches the log again (_closed_log).
        self._thread.join(max(1.0, limit - (time.monotonic() - t0)))
        with self._cv:
            if self._thread.is_alive():
                self._abandoned = True
                log.warning("closing %s: the backup uploader is still waiting on %s; it was "
                            "left behind and will not touch the database again",
                            self._port.path, self.target.url)
            self._closed = True
            if self._state != "fenced":
                self._state = "stopped"

    # ------------------------------------------------------- the uploader
    def _run(self) -> None:
        backoff = 0.0
        next_fence_check = 0.0
        last_round = 0.0
        while True:
            self._wake.clear()
            with self._cv:
                self._apply_controls()
                if self._stopping:
                    return
                active = self._active and self._state != "fenced"
                observing = self._observing
                flush_wanted = self._flush_target > self._checkpoint
            if not active:
                self._wake.wait()
                continue
            try:
                now = time.monotonic()
                if not observing:
                    self._start_observation()
                    next_fence_check = now + self.options.fence_check_seconds
                elif now >= next_fence_check:
                    self._check_newer_epoch()
                    if self._base_missing:
                        self._ship_base()
                    next_fence_check = now + self.options.fence_check_seconds
                committed = self._port.signal.current.tx_id
                if self._checkpoint >= committed:
                    self._set_state("running")
                    backoff = 0.0
                    self._port.signal.wait_for_tx(committed + 1,
                                                  timeout=self.options.fence_check_seconds,
                                                  wake=self._wake)
                    continue
                wait = last_round + self.options.interval_seconds - time.monotonic()
                if wait > 0 and not flush_wanted:
                    self._wake.wait(wait)  # batch commits; a flush or control ends it
                    continue
                last_round = time.monotonic()
                self._ship_through(committed)
                backoff = 0.0
            except BackupFencedError as exc:
                self._fail(exc, fenced=True)
            except (EngineError, OSError) as exc:
                self._fail(exc)
                backoff = min(self.options.backoff_max_seconds, max(0.05, backoff * 2))
                self._wake.wait(backoff)
            except Exception as exc:  # a bug: keep the service alive and visible
                log.exception("backup of %s: unexpected error", self._port.path)
                self._fail(exc)
                backoff = min(self.options.backoff_max_seconds, max(0.05, backoff * 2))
                self._wake.wait(backoff)

    def _set_state(self, state: str) -> None:
        with self._cv:
            if self._active and self._state not in ("fenced",):
                if self._state != state:
                    self._state = state
                self._last_error = None if state == "running" else self._last_error
                self._cv.notify_all()

    def _fail(self, exc: BaseException, *, fenced: bool = False) -> None:
        with self._cv:
            first = self._state not in ("failing", "fenced")
            self._last_error = exc
            self._stats.errors += 1
            self._state = "fenced" if fenced else "failing"
            self._observing = False  # re-derive the checkpoint from the target on retry
            self._cv.notify_all()
        if fenced:
            log.error("backup of %s to %s is fenced and stops shipping: %s",
                      self._port.path, self.target.url, exc)
        elif first:
            log.warning("backup of %s to %s is failing (retrying with backoff): %s",
                        self._port.path, self.target.url, exc)

    # ------------------------------------------------- observation start
    def _writer_token(self) -> str:
        raw = self._port.get_meta(formats.META_BACKUP)
        if raw:
            try:
                token = json.loads(raw).get("writer")
                if isinstance(token, str) and token:
                    return token
            except (ValueError, AttributeError):
                log.warning("backup of %s: unreadable backup meta entry; a new writer "
                            "token is made", self._port.path)
        return uuid.uuid4().hex

    def _claims(self) -> dict[int, str]:
        db_id = self._port.db_id
        out = {}
        for info in self.target.list(keys.epochs_prefix(db_id)):
            e = keys.parse_claim_key(info.key, db_id)
            if e is not None:
                out[e] = info.key
        return out

    def _fence_check_for_flush(self) -> None:
        """A flush never reports success to a writer the target has superseded (the
        running check is periodic). A target that fails this one listing does not fail
        the flush: the data is shipped; the next periodic check will see the fence."""
        try:
            self._check_newer_epoch()
        except BackupFencedError as exc:
            self._fail(exc, fenced=True)
            raise
        except BackupError as exc:
            log.debug("backup of %s: fence check after a flush failed: %s", self._port.path,
                      exc)

    def _check_newer_epoch(self, claims: dict[int, str] | None = None) -> None:
        claims = self._claims() if claims is None else claims
        newer = [e for e in claims if e > self._port.epoch]
        if newer:
            raise BackupFencedError(
                f"{self.target.url} holds epoch {max(newer)} of database {self._port.db_id}, "
                f"newer than this database's epoch {self._port.epoch}: it was restored or "
                "recovered elsewhere. This process ships nothing more and never overwrites "
                "it (docs/RUNBOOK.md, 'A fenced backup').")

    def _start_observation(self) -> None:
        port, target = self._port, self.target
        claims = self._claims()
        self._check_newer_epoch(claims)
        claim = json.dumps({
            "format": 1, "db_id": port.db_id, "epoch": port.epoch,
            "first_tx": port.epoch_first_tx, "writer": self._writer,
            "history": [h.to_json() for h in port.history], "claimed": time.time(),
        }).encode()
        ckey = keys.claim_key(port.db_id, port.epoch)
        self._save_meta(None)  # the token is durable before any claim names it
        try:
            target.put(ckey, claim, create_only=True)
        except BackupConflictError:
            try:
                theirs = json.loads(target.get(ckey)).get("writer")
            except (ValueError, AttributeError):
                theirs = None
            if theirs != self._writer:
                raise BackupFencedError(
                    f"epoch {port.epoch} of database {port.db_id} in {target.url} is claimed "
                    "by another writer (a copy of this database?): two writers never ship "
                    "into one lineage, so this one stops (docs/RUNBOOK.md, 'A fenced "
                    "backup').") from None
        if port.base_tx > 0:
            self._ship_base()
        origin = port.epoch_first_tx - 1
        segs, _bases = segments_of(target, port.db_id, port.epoch)
        ck_key = keys.checkpoint_key(port.db_id, port.epoch)
        ck_info = target.head(ck_key)
        ck = checkpoint_of(target, port.db_id, port.epoch) if ck_info is not None else None
        goal = str(ck["segment"]) if ck and isinstance(ck.get("segment"), str) else None
        run = best_run(segs, origin + 1, goal=goal)
        ckpt = run[-1][1] if run else origin
        later = [f for f, _l, _k in segs if f > ckpt + 1]
        # A hole (a deleted object, a listing that lags) is filled exactly up to the next
        # segment, never around it: the chain stays free of overlaps.
        cap = min(later) - 1 if later else None
        position = self._position_after(origin)
        if run:
            position = self._check_against_log(run[-1][2], ckpt)
        with self._cv:
            self._checkpoint = ckpt
            self._checkpoint_position = position
            self._cap = cap
            self._ck_etag = None if ck_info is None else ck_info.etag
            self._observing = True
            self._cv.notify_all()
        # Not "running" yet: a retry after a failure observes again, and saying running
        # here made status() flicker between running and failing (and log the failure
        # anew) on every retry. Running is declared by progress: caught up, or a
        # segment checkpointed (_run, _ship_through).
        log.info("backup of %s to %s: observing epoch %d from tx %d%s", port.path, target.url,
                 port.epoch, ckpt + 1, f" (filling a hole up to tx {cap})" if cap else "")

    def _ship_base(self) -> None:
        """An epoch whose log starts after tx 0 (a log-loss recovery) cannot be restored
        from segments alone when the txs before it were never shipped: ship the snapshot
        nearest after its base beside the epoch's segments (once; verified). Without one,
        flush refuses until a snapshot exists (restore would fail)."""
        port = self._port
        found = port.base_snapshot()
        missing = None
        if found is None:
            missing = (f"no snapshot at or after tx {port.base_tx}, where this epoch's log "
                       "starts, to ship as the backup's base: a restore could not rebuild "
                       "the state. Take one (db.snapshot() or engine-admin snapshot DIR)")
        else:
            tx_id, path = found
            key = keys.base_key(port.db_id, port.epoch, tx_id)
            try:
                data = load_snapshot_bytes(path)
            except EngineError as exc:  # pruned meanwhile, or damaged: try the next time
                missing = f"the snapshot at tx {tx_id} could not be shipped as the base ({exc})"
            else:
                self._put_base(key, data)
        with self._cv:
            self._base_missing = missing
        if missing:
            log.warning("backup of %s: %s", port.path, missing)

    def _put_base(self, key: str, data: bytes) -> None:
        head = self.target.head(key)
        if head is not None and head.size == len(data):
            return  # shipped (and verified) by an earlier run
        try:
            self.target.put(key, data, create_only=True)
        except BackupConflictError:
            existing = self.target.get(key)
            if existing == data:
                return
            try:
                load_snapshot_from(existing, key)
            except EngineError:
                self.target.delete(key)  # ours, left half-written by an interrupted upload
                raise TransientBackupError(f"{key} in {self.target.url} was damaged; "
                                           "removed, shipping again", key=key) from None
            raise BackupFencedError(f"{self.target.url} already holds another base snapshot "
                                    f"{key}: another writer ships this epoch") from None
        if self.target.get(key) != data:
            raise TransientBackupError(f"{key} read back from {self.target.url} differs from "
                                       "what was written; it will be shipped again", key=key)

    def _position_after(self, tx_id: int) -> int:
        """The last event position of ``tx_id`` (its base when it precedes the log)."""
        if tx_id <= self._port.base_tx:
            return self._port.base_position
        rec = next(iter(self._port.records(tx_id, tx_id)), None)
        if rec is None:
            raise EngineError(f"tx {tx_id} is missing from the log of {self._port.path}")
        _tx, _e, _ts, first, n = peek_tx_header(rec[1])
        return int(first + n - 1)

    def _check_against_log(self, key: str, last_tx: int) -> int:
        """The target's last segment must hold this log's records; returns its last position."""
        data = self.target.get(key)
        try:
            h, records = decode_segment(data, f"{self.target.url}/{key}")
        except CorruptSegmentError:
            # Ours, left half-written by a crash before its checkpoint: ship it again.
            self.target.delete(key)
            raise TransientBackupError(f"{key} in {self.target.url} was damaged (an interrupted "
                                       "upload); removed, shipping again", key=key) from None
        mine = dict(self._port.records(h.first_tx, h.last_tx))
        if last_tx > self._port.signal.current.tx_id or any(
                mine.get(tx) != rec for tx, rec in records):
            raise BackupFencedError(
                f"{self.target.url} holds txs {h.first_tx}..{h.last_tx} of epoch "
                f"{self._port.epoch} that differ from (or run past) this database's log: this "
                "directory is a stale or diverged copy, or (with sync=\"none\") lost its "
                "newest txs in a power cut, in which case `engine-admin recover --new-epoch "
                "--from-backup URL DIR` continues from the backup. Nothing is overwritten "
                "(docs/RUNBOOK.md, 'A fenced backup').")
        return h.last_position

    # -------------------------------------------------------------- ship
    def _ship_through(self, committed: int) -> None:
        """Ship segments until the checkpoint reaches ``committed`` (or a pause/stop)."""
        while True:
            with self._cv:
                if (self._checkpoint >= committed or self._stopping or not self._active
                        or any(c.kind == "stop" for c in self._controls)):
                    return
                if self._cap is not None and self._checkpoint >= self._cap:
                    self._observing = False  # the hole is filled: re-read the target's run
                    return
                start, position = self._checkpoint + 1, self._checkpoint_position
                until = committed if self._cap is None else min(committed, self._cap)
            self._port.flush_before_shipping()  # sync="data": what ships is durable here
            header, payload = self._next_segment(start, until, position)
            key = keys.segment_key(self._port.db_id, header.epoch, header.first_tx,
                                   header.last_tx)
            self._put_verified(key, payload)
            if self._stopping:
                return  # closing past its deadline: the next run finds this segment
            self._publish_checkpoint(header.last_tx, header.last_position, key)
            with self._cv:
                self._checkpoint = header.last_tx
                self._checkpoint_position = header.last_position
                self._stats.segments += 1
                self._stats.bytes += len(payload)
                self._cv.notify_all()
            self._set_state("running")

    def _next_segment(self, start: int, until: int, position: int
                      ) -> tuple[SegmentHeader, memoryview]:
        """The next segment: records ``start..`` (at most to ``until``, within the size
        bounds), read in bulk and checked in C (each decodes, and they continue: tx,
        this epoch, positions from ``position``), so the uploader holds the GIL for
        little more than the C calls."""
        opts = self.options
        values = self._port.record_values(start, min(until - start + 1, opts.max_segment_txs),
                                          opts.max_segment_bytes)
        if not values:
            raise EngineError(f"the log of {self._port.path} does not hold tx {start}, which "
                              "the backup must ship next. Run `engine-admin verify`.")
        epoch = self._port.epoch
        try:
            raw, last_pos = frame_records(values, start, epoch, position)
        except FrameError as exc:
            raise CorruptLogError(f"cannot ship tx {start + exc.index} of {self._port.path}: "
                                  f"{exc}. Run `engine-admin verify {self._port.path}`.",
                                  exc.code) from exc
        first, last = peek_tx_header(values[0]), peek_tx_header(values[-1])
        return encode_framed(self._port.db_id, epoch=epoch, first_tx=start,
                             first_position=first[3], last_position=last_pos,
                             first_ts_ns=first[2], last_ts_ns=last[2], count=len(values),
                             raw=raw)

    def _put_verified(self, key: str, payload: memoryview) -> None:
        """Create ``key`` holding ``payload`` and read it back; a leftover of an earlier
        attempt with the same bytes is accepted, a damaged one replaced."""
        try:
            self.target.put(key, payload, create_only=True)
        except BackupConflictError:
            existing = self.target.get(key)
            if existing != payload:
                try:
                    decode_segment(existing, key)
                except CorruptSegmentError:
                    self.target.delete(key)  # our own interrupted upload
                    raise TransientBackupError(f"{key} in {self.target.url} was damaged; "
                                               "removed, shipping again", key=key) from None
                _h, theirs = decode_segment(existing, key)
                _h2, ours = decode_segment(payload, key)
                if theirs != ours:
                    raise BackupFencedError(
                        f"{self.target.url} already holds {key} with other transactions: "
                        "another writer ships this epoch. Nothing is overwritten.") from None
                return  # the same records (another compression): already shipped
        # Read back and compared by size and XXH64 (both in C, off the GIL): a copy or
        # a byte-by-byte compare of the whole segment here held the GIL for as long
        # as the committer's own work on it (issue 8's committer-overhead target).
        back = memoryview(self.target.get_view(key))
        if back.nbytes != payload.nbytes or xxh64(back) != xxh64(payload):
            raise TransientBackupError(
                f"{key} read back from {self.target.url} differs from what was written "
                f"({back.nbytes} bytes read, {payload.nbytes} written); it will be shipped "
                "again", key=key)

    def _publish_checkpoint(self, tx_id: int, position: int, key: str) -> None:
        """Move the checkpoint past ``key``: compare-and-swap on ``checkpoint.json`` (a
        writer whose view of it is stale is not the only writer: fenced), then the
        log's meta entry."""
        port = self._port
        body = json.dumps({"format": 1, "db_id": port.db_id, "epoch": port.epoch,
                           "tx_id": tx_id, "position": position, "segment": key,
                           "writer": self._writer, "session": self._session,
                           "updated": time.time()}).encode()
        ck = keys.checkpoint_key(port.db_id, port.epoch)
        try:
            if self._ck_etag is None:
                info = self.target.put(ck, body, create_only=True)
            else:
                info = self.target.put_if_match(ck, body, self._ck_etag)
        except BackupConflictError:
            raise BackupFencedError(
                f"{self.target.url} holds a checkpoint of epoch {port.epoch} written by "
                "another writer since this one last looked (two copies of this database "
                "ship into one lineage): this one stops and overwrites nothing "
                "(docs/RUNBOOK.md, 'A fenced backup').") from None
        self._ck_etag = info.etag
        if self._closed_log():
            return
        self._save_meta(tx_id)

    def _closed_log(self) -> bool:
        """True once the database is closing past the uploader (never touch its log then)."""
        with self._cv:
            return self._stopping and self._abandoned

    def _save_meta(self, checkpoint_tx: int | None) -> None:
        """The log's meta entry: target, writer token, and the checkpoint (if known)."""
        port = self._port
        if checkpoint_tx is None:
            raw = port.get_meta(formats.META_BACKUP)
            try:
                old = json.loads(raw) if raw else {}
                if old.get("writer") == self._writer and old.get("epoch") == port.epoch:
                    return  # already recorded
            except (ValueError, AttributeError):
                pass
        port.put_meta(formats.META_BACKUP, json.dumps({
            "target": self.target.url, "writer": self._writer, "epoch": port.epoch,
            "checkpoint_tx": checkpoint_tx, "updated": time.time()}).encode())


def attach_backup(db: Any, spec: object) -> LogBackup:
    """Start the log backup of an open database and attach it (``db.backup``)."""
    options = BackupOptions.coerce(spec)
    svc = LogBackup.start(db.service_port(), options)
    try:
        db.attach("backup", svc)
    except BaseException:
        svc.close()
        raise
    return svc
