"""Full backups: take, list, verify, prune, and restore (with point in time).

A full backup is one snapshot file at a known ``(epoch, tx_id)`` (a fresh
``db.snapshot()``; a closed database is opened for it, which checks that its log
covers the newest snapshot) plus its manifest. The snapshot holds the whole state,
the db_id and the epoch history, so it is all a restore needs; a point-in-time
restore past the backup's tx replays the log-backup segments (``backup.chain``)
from ``tx_id + 1``. The log's ``data.mdb`` is not uploaded (the snapshot makes it
redundant for a restore to the backup point).

Layout in the target (names in ``backup.keys``)::

    <db_id>/full/<backup_id>/intent.json                 written first (create-if-absent)
    <db_id>/full/<backup_id>/files/<name>                a file of one part, or
    <db_id>/full/<backup_id>/files/<name>.part-NNNNNN    its parts (``part_size`` each)
    <db_id>/full/<backup_id>/manifest.json               written last (create-if-absent)

Parts are our own objects, not an S3 multipart upload: each part is put, read back
and checked (size and xxh64) as one retried unit, so a torn or retried part never
ends up in a manifest with a wrong checksum (vitess#18708, #19338), one failing part
is retried on its own (vitess#17259), and a re-run of a failed backup finds the
parts already verified (resume). Restore reassembles each file from its parts.

A backup without a manifest is incomplete: listed as such, never restored.
"""

from __future__ import annotations

import calendar
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import xxhash

from .. import layout
from ..database import Database, install_full_backup
from ..errors import (
    BackupConflictError,
    BackupError,
    BackupNotFoundError,
    DatabaseMismatchError,
    EngineError,
    InvalidEventError,
    OptionsError,
    PermanentBackupError,
    StorageError,
    TransientBackupError,
    os_errors_translated,
)
from ..model import EpochRecord
from ..snapshot import load_snapshot, read_header
from . import keys
from .chain import BackupChainError, Chain, claimed_epochs, plan_chain
from .faults import FaultyTarget
from .restore import (
    Progress,
    build_log,
    check_destination,
    check_point,
    cut_at_time,
    open_and_check,
    publish,
    spool_chain,
)
from .retry import RetryingTarget, RetryPolicy, RetryStats, call
from .targets import Target, TargetOptions, open_target

log = logging.getLogger("engine.backup")

MANIFEST_FORMAT = "engine-full-backup"
MANIFEST_VERSION = 1
DEFAULT_PART_SIZE = 8 << 20
MIN_PART_SIZE = 64 << 10
DEFAULT_CONCURRENCY = 4


_DONE: Future[bytes] = Future()


class BackupIntegrityError(BackupError):
    """A full backup is incomplete, unsafe or does not match its manifest; ``key`` names
    the broken object. Never retried: the bytes in the target are wrong."""


def _engine_version() -> str:
    try:
        return metadata.version("engine")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a tree
        return "unknown"


def _hex(n: int) -> str:
    return f"{n:016x}"


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def new_backup_id(now: float | None = None) -> str:
    """``YYYYMMDDTHHMMSSZ-<6 hex>``: sortable by start time, unique."""
    t = time.time() if now is None else now
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t)) + "-" + secrets.token_hex(3)


def with_faults(target: Target, fault_rate: float | None, fault_seed: int | None) -> Target:
    """``target`` wrapped in a :class:`FaultyTarget` failing ``fault_rate`` of calls
    transiently (a drill), or ``target`` itself when no rate is given."""
    if not fault_rate:
        return target
    if isinstance(fault_rate, bool) or not 0.0 <= fault_rate <= 1.0:
        raise OptionsError(f"--fault-rate must be between 0 and 1, got {fault_rate!r}")
    return FaultyTarget(target, fail_rate=fault_rate, seed=fault_seed or 0)


def _target(url: str | TargetOptions | Target, fault_rate: float | None,
            fault_seed: int | None) -> Target:
    t = url if isinstance(url, Target) else open_target(url)
    return with_faults(t, fault_rate, fault_seed)


# ---------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Part:
    key: str  # below the backup's prefix: files/<name>[.part-NNNNNN]
    offset: int
    size: int
    xxh64: str


@dataclass(frozen=True)
class FileEntry:
    name: str
    kind: str
    size: int
    xxh64: str
    parts: tuple[Part, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": "file", "kind": self.kind, "size": self.size,
                "xxh64": self.xxh64,
                "parts": [dataclasses.asdict(p) for p in self.parts]}


@dataclass(frozen=True)
class Manifest:
    backup_id: str
    db_id: str
    epoch: int
    tx_id: int
    last_position: int
    history: tuple[EpochRecord, ...]
    engine_version: str
    started: float
    finished: float
    files: tuple[FileEntry, ...]
    part_size: int

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def body(self) -> dict[str, Any]:
        return {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
                "backup_id": self.backup_id, "db_id": self.db_id, "epoch": self.epoch,
                "tx_id": self.tx_id, "last_position": self.last_position,
                "history": [h.to_json() for h in self.history],
                "engine_version": self.engine_version, "started": self.started,
                "finished": self.finished, "part_size": self.part_size,
                "bytes": self.total_bytes, "files": [f.to_json() for f in self.files]}

    def encode(self) -> bytes:
        body = self.body()
        body["checksum"] = _hex(xxhash.xxh64_intdigest(_canonical(body)))
        return json.dumps(body, indent=1, sort_keys=True).encode() + b"\n"


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in body.items() if k != "checksum"}, sort_keys=True,
                      separators=(",", ":")).encode()


def _is_hex16(v: object) -> bool:
    return isinstance(v, str) and len(v) == 16 and all(c in "0123456789abcdef" for c in v)


def _nat(v: object) -> bool:
    return type(v) is int and v >= 0


def parse_manifest(data: bytes, *, where: str, db_id: str, backup_id: str) -> Manifest:
    """The checked manifest, or :class:`BackupIntegrityError` saying what is wrong. Every
    file name must be a plain name (no ``/``, ``..``, absolute path), unique, of type
    ``file`` (a link is refused), and its parts must be the names this module gives."""

    def bad(why: str) -> BackupIntegrityError:
        return BackupIntegrityError(f"manifest {where} is unusable: {why}", key=where)

    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(f"not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise bad("not a JSON object")
    if body.get("format") != MANIFEST_FORMAT or body.get("version") != MANIFEST_VERSION:
        raise bad(f"format {body.get('format')!r} version {body.get('version')!r}; this "
                  f"engine reads {MANIFEST_FORMAT} version {MANIFEST_VERSION}")
    if body.get("checksum") != _hex(xxhash.xxh64_intdigest(_canonical(body))):
        raise bad("its checksum does not match its contents")
    if body.get("backup_id") != backup_id or body.get("db_id") != db_id:
        raise bad(f"it names backup {body.get('backup_id')!r} of {body.get('db_id')!r}")
    for k in ("epoch", "tx_id", "last_position", "part_size"):
        if not _nat(body.get(k)):
            raise bad(f"{k} is not a count")
    try:
        history = tuple(EpochRecord.from_json(d) for d in body["history"])
        started, finished = float(body["started"]), float(body["finished"])
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(f"history or times unreadable ({exc})") from None
    raw_files = body.get("files")
    if not isinstance(raw_files, list) or not raw_files:
        raise bad("it lists no files")
    files: list[FileEntry] = []
    seen: set[str] = set()
    for f in raw_files:
        if not isinstance(f, dict):
            raise bad("a file entry is not an object")
        name = f.get("name")
        if f.get("type") != "file":
            raise bad(f"entry {name!r} is a {f.get('type')!r}, not a plain file (links are "
                      "never restored)")
        if not keys.is_safe_file_name(name):
            raise bad(f"file name {name!r} is not a plain file name (a path, '..' or "
                      "a hidden name would leave the restore directory)")
        assert isinstance(name, str)
        if name in seen:
            raise bad(f"file name {name!r} appears twice")
        seen.add(name)
        size, digest, raw_parts = f.get("size"), f.get("xxh64"), f.get("parts")
        if not _nat(size) or not _is_hex16(digest) or not isinstance(raw_parts, list) \
                or not raw_parts:
            raise bad(f"file {name!r} has no valid size, checksum or parts")
        assert isinstance(size, int) and isinstance(digest, str)
        parts: list[Part] = []
        offset = 0
        for i, p in enumerate(raw_parts):
            if not isinstance(p, dict) or p.get("key") != keys.part_name(name, i,
                                                                          len(raw_parts)):
                raise bad(f"part {i} of {name!r} is not named "
                          f"{keys.part_name(name, i, len(raw_parts))!r}")
            if p.get("offset") != offset or not _nat(p.get("size")) \
                    or not _is_hex16(p.get("xxh64")):
                raise bad(f"part {i} of {name!r} has a bad offset, size or checksum")
            parts.append(Part(p["key"], offset, p["size"], p["xxh64"]))
            offset += p["size"]
        if offset != size:
            raise bad(f"the parts of {name!r} add up to {offset} bytes, not {size}")
        files.append(FileEntry(name, str(f.get("kind", "")), size, digest, tuple(parts)))
    snaps = [f for f in files if f.kind == "snapshot"]
    if len(snaps) != 1 or layout.parse_snapshot_name(snaps[0].name) != (body["epoch"],
                                                                        body["tx_id"]):
        raise bad("it does not hold exactly one snapshot named for its (epoch, tx)")
    return Manifest(backup_id, db_id, body["epoch"], body["tx_id"], body["last_position"],
                    history, str(body.get("engine_version", "")), started, finished,
                    tuple(files), body["part_size"])


# ------------------------------------------------------------------ taking one


@dataclass
class BackupInfo:
    """What ``backup_full`` uploaded."""

    id: str
    db_id: str
    epoch: int
    tx_id: int
    bytes: int
    files: int
    parts: int
    seconds: float
    retry_attempts: int
    target: str
    key: str
    started: float
    finished: float
    resumed_parts: int = 0
    upload_seconds: float = 0.0  # from the first part read to the manifest written

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "id": self.id, "db_id": self.db_id, "epoch": self.epoch,
                "tx_id": self.tx_id, "bytes": self.bytes, "files": self.files,
                "parts": self.parts, "seconds": round(self.seconds, 3),
                "retry_attempts": self.retry_attempts, "target": self.target,
                "manifest": self.key, "started": _iso(self.started),
                "finished": _iso(self.finished), "resumed_parts": self.resumed_parts,
                "upload_seconds": round(self.upload_seconds, 3)}


def _check_sizes(part_size: int, concurrency: int) -> None:
    if type(part_size) is not int or part_size < MIN_PART_SIZE:
        raise OptionsError(f"part_size must be an int >= {MIN_PART_SIZE}, got {part_size!r}")
    if type(concurrency) is not int or not 1 <= concurrency <= 64:
        raise OptionsError(f"concurrency must be an int in 1..64, got {concurrency!r}")


def _holds(target: Target, key: str, size: int, digest: str) -> str | None:
    """Read ``key`` back: None if it holds ``size`` bytes with xxh64 ``digest``, else
    what it holds (target errors propagate)."""
    data = target.get(key)
    got = _hex(xxhash.xxh64_intdigest(data))
    if len(data) == size and got == digest:
        return None
    return f"{len(data)} bytes with xxh64 {got}"


def _etag_is_md5_of(etag: str | None, data: bytes) -> bool:
    """Whether ``etag`` is the MD5 of ``data`` (only computed for an MD5-shaped etag)."""
    tag = (etag or "").strip('"').lower()
    if len(tag) != 32 or any(c not in "0123456789abcdef" for c in tag):
        return False  # file:// and memory:// etags are not digests
    return hashlib.md5(data, usedforsecurity=False).hexdigest() == tag


def _put_verified(target: Target, key: str, data: bytes, part: Part,
                  verify_by_read: bool) -> None:
    """Put one part and check what the target holds: by the etag of the put when the
    target answers with the MD5 of the bytes it stored (S3 single-request puts), else
    (or with ``verify_by_read``) by reading it back (size and xxh64). A mismatch is
    transient: the caller's retry puts the part again."""
    info = target.put(key, data)
    if not verify_by_read and info.size == part.size and _etag_is_md5_of(info.etag, data):
        return
    wrong = _holds(target, key, part.size, part.xxh64)
    if wrong is not None:
        raise TransientBackupError(
            f"{key} in {target.url} holds {wrong} after upload, expected {part.size} bytes "
            f"with {part.xxh64}: uploading it again", key=key)


def _put_create_once(target: Target, key: str, data: bytes, policy: RetryPolicy,
                     stats: RetryStats, valid: Callable[[bytes], bool]) -> None:
    """Create ``key`` with ``data`` (retried) and read it back. An object already there
    is accepted only if it holds exactly ``data`` (a retried create whose first try
    landed); one that is not ``valid`` (a torn write of ours) is replaced by
    compare-and-swap on its etag; a valid different one is never overwritten."""
    def once() -> None:
        try:
            target.put(key, data, create_only=True)
        except BackupConflictError:
            info = target.head(key)
            existing = target.get(key)
            if existing == data:
                return
            if valid(existing) or info is None or info.etag is None:
                raise
            log.warning("replacing a torn %s (%d bytes) by compare-and-swap", key,
                        len(existing))
            target.put_if_match(key, data, info.etag)
        if target.get(key) != data:
            raise TransientBackupError(f"{key} in {target.url} does not hold what was "
                                       "written: writing it again", key=key)
    call(policy, stats, key, once)


def _check_still_whole(target: Target, mkey: str, prefix: str, entry: FileEntry,
                       policy: RetryPolicy, stats: RetryStats) -> None:
    """After publishing: every part the manifest names is still in the target (a prune
    running beside this backup could have removed them). If not, the manifest is
    withdrawn (a backup is never left complete with files missing) and this fails.
    Both calls are retried like every other."""
    listing = call(policy, stats, prefix, lambda: target.list(prefix))
    present = {i.key: i.size for i in listing}
    missing = [p.key for p in entry.parts if present.get(prefix + p.key) != p.size]
    if missing:
        call(policy, stats, mkey, lambda: target.delete(mkey))
        raise PermanentBackupError(
            f"{len(missing)} part(s) of this backup vanished from {target.url} while it "
            f"ran (first: {missing[0]}; a prune running beside it?): the manifest was "
            "withdrawn, the backup is incomplete. Run it again.", key=mkey)


def _is_json(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def _intent_body(db_id: str, backup_id: str, epoch: int, tx_id: int, name: str,
                 size: int, digest: str, part_size: int, started: float) -> bytes:
    return json.dumps({"format": MANIFEST_FORMAT + "-intent", "version": MANIFEST_VERSION,
                       "backup_id": backup_id, "db_id": db_id, "epoch": epoch,
                       "tx_id": tx_id, "started": started, "part_size": part_size,
                       "files": [{"name": name, "size": size, "xxh64": digest}]},
                      sort_keys=True).encode()


def _file_digest(fd: int, size: int) -> str:
    h = xxhash.xxh64()
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(8 << 20, size - offset), offset)
        if not chunk:
            break
        h.update(chunk)
        offset += len(chunk)
    return _hex(h.intdigest())


def _resumable(target: Target, db_id: str, snap_dir: str) -> tuple[str, dict[str, Any],
                                                                    str] | None:
    """The newest incomplete backup newer than every complete one whose snapshot is still
    on disk unchanged: ``(backup_id, intent, local path)``, or None."""
    entries = list_backups(target, db_id=db_id)
    newest_complete = max((e.started for e in entries if e.complete), default=-1.0)
    for e in sorted(entries, key=lambda e: e.started, reverse=True):
        if e.complete or e.started <= newest_complete:
            break
        if target.head(keys.manifest_key(db_id, e.id)) is not None:
            # a manifest that does not read (damaged, another version): never resumed
            # into (its create would conflict forever); a fresh backup is taken instead
            log.warning("full backup %s has an unreadable manifest (%s); not resuming it",
                        e.id, e.problem)
            continue
        try:
            intent = json.loads(target.get(keys.intent_key(db_id, e.id)))
            f = intent["files"][0]
            name, size, digest = f["name"], int(f["size"]), str(f["xxh64"])
        except (BackupError, ValueError, KeyError, TypeError, IndexError):
            continue
        if not keys.is_safe_file_name(name):
            continue
        local = os.path.join(snap_dir, name)
        try:
            fd = os.open(local, os.O_RDONLY)
        except OSError:
            continue
        try:
            if os.fstat(fd).st_size == size and _file_digest(fd, size) == digest:
                return e.id, intent, local
        finally:
            os.close(fd)
    return None


def backup_full(source: Database | str, url: str | TargetOptions | Target, *,
                retries: int | None = None, backoff_max: float | None = None,
                timeout: float | None = None, policy: RetryPolicy | None = None,
                part_size: int = DEFAULT_PART_SIZE, concurrency: int = DEFAULT_CONCURRENCY,
                resume: bool = True, progress: Progress | None = None,
                fault_rate: float | None = None, fault_seed: int | None = None,
                verify_by_read: bool = False) -> BackupInfo:
    """Take a full backup of ``source`` (an open :class:`Database`, or the directory of a
    closed one, which is opened for it) into ``url``; returns once the manifest is
    written. Raises a :class:`BackupError` (the manifest is then not written: the
    backup stays incomplete, and a re-run resumes it) or :class:`StorageError`.

    ``retries``/``backoff_max``/``timeout`` (or a whole ``policy``) bound the retries of
    each file part; ``fault_rate``/``fault_seed`` wrap the target in a
    :class:`FaultyTarget` (a drill). Each part is checked in the target after its
    put: by the put's etag where the target returns the MD5 of what it stored (S3),
    else (or with ``verify_by_read``) by reading it back.
    """
    _check_sizes(part_size, concurrency)
    pol = policy or RetryPolicy.of(retries, backoff_max, timeout)
    if isinstance(source, Database):
        return _backup_of(source, url, pol, part_size, concurrency, resume, progress,
                          fault_rate, fault_seed, verify_by_read)
    with Database(source, create=False) as db:
        return _backup_of(db, url, pol, part_size, concurrency, resume, progress,
                          fault_rate, fault_seed, verify_by_read)


def _backup_of(db: Database, url: str | TargetOptions | Target, policy: RetryPolicy,
               part_size: int, concurrency: int, resume: bool, progress: Progress | None,
               fault_rate: float | None, fault_seed: int | None,
               verify_by_read: bool) -> BackupInfo:
    t0 = time.monotonic()
    target = _target(url, fault_rate, fault_seed)
    stats = RetryStats("backup")
    db_id = db.db_id
    snap_dir = layout.snapshot_dir(db.path)
    found = _resumable(RetryingTarget(target, policy, stats), db_id, snap_dir) \
        if resume else None
    if found is not None:
        backup_id, intent, path = found
        started = float(intent["started"])
        part_size = int(intent["part_size"])
        log.info("resuming full backup %s of %s", backup_id, db_id)
    else:
        backup_id, started = new_backup_id(), time.time()
        if progress:
            progress(0, 0, "snapshot")  # the phase a large state spends most time in
        path = db.snapshot().path
    # The descriptor keeps the file readable even if the snapshotter prunes it meanwhile.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise StorageError(f"cannot read snapshot {path}: {exc}") from None
    try:
        header = read_header(path)
        name = os.path.basename(path)
        size = os.fstat(fd).st_size
        prefix = keys.backup_prefix(db_id, backup_id)
        t_upload = time.monotonic()
        if found is None:
            digest = _file_digest(fd, size)
            _put_create_once(target, keys.intent_key(db_id, backup_id),
                             _intent_body(db_id, backup_id, header.epoch, header.tx_id, name,
                                          size, digest, part_size, started), policy, stats,
                             _is_json)
        entry, resumed = _upload_file(target, fd, size, name, prefix, part_size, concurrency,
                                      policy, stats, progress, resume=found is not None,
                                      verify_by_read=verify_by_read)
        if found is not None and entry.xxh64 != found[1]["files"][0]["xxh64"]:
            raise StorageError(f"snapshot {path} changed while it was backed up")
    finally:
        os.close(fd)
    manifest = Manifest(backup_id, db_id, header.epoch, header.tx_id, header.last_position,
                        header.history, _engine_version(), started, time.time(), (entry,),
                        part_size)
    mkey = keys.manifest_key(db_id, backup_id)
    _put_create_once(target, mkey, manifest.encode(), policy, stats, _is_json)
    _check_still_whole(target, mkey, prefix, entry, policy, stats)
    if progress:
        progress(size, size, "manifest written")
    log.info("full backup %s of %s at epoch %d tx %d: %d bytes, %d retries", backup_id,
             db_id, header.epoch, header.tx_id, size, stats.attempts)
    return BackupInfo(id=backup_id, db_id=db_id, epoch=header.epoch, tx_id=header.tx_id,
                      bytes=size, files=1, parts=len(entry.parts),
                      seconds=time.monotonic() - t0, retry_attempts=stats.attempts,
                      target=target.url, key=mkey, started=started,
                      finished=manifest.finished, resumed_parts=resumed,
                      upload_seconds=time.monotonic() - t_upload)


def _upload_file(target: Target, fd: int, size: int, name: str, prefix: str, part_size: int,
                 concurrency: int, policy: RetryPolicy, stats: RetryStats,
                 progress: Progress | None, *, resume: bool,
                 verify_by_read: bool) -> tuple[FileEntry, int]:
    """Read the file once (hashing it whole and per part), upload and verify its parts
    ``concurrency`` at a time; returns its manifest entry and the parts reused."""
    n = max(1, -(-size // part_size))
    whole = xxhash.xxh64()
    parts: list[Part] = []
    slots = threading.BoundedSemaphore(concurrency)
    done_bytes = [0]
    done_lock = threading.Lock()
    resumed = [0]

    def send(index: int, part: Part, data: bytes) -> None:
        key = prefix + part.key
        try:
            if resume:
                def present() -> bool:
                    info = target.head(key)
                    if info is None or info.size != part.size:
                        return False
                    return _holds(target, key, part.size, part.xxh64) is None
                if call(policy, stats, name, present, part=index):
                    with done_lock:
                        resumed[0] += 1
                    return

            call(policy, stats, name,
                 lambda: _put_verified(target, key, data, part, verify_by_read), part=index)
        finally:
            slots.release()
            with done_lock:
                done_bytes[0] += part.size
                if progress:
                    progress(done_bytes[0], size, f"upload {name}")

    futures: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=concurrency,
                            thread_name_prefix="engine-full-backup") as pool:
        try:
            for i in range(n):
                offset = i * part_size
                data = os.pread(fd, min(part_size, size - offset), offset) if size else b""
                whole.update(data)
                part = Part(keys.part_name(name, i, n), offset, len(data),
                            _hex(xxhash.xxh64_intdigest(data)))
                parts.append(part)
                slots.acquire()
                if any(f.done() and f.exception() for f in futures):
                    slots.release()
                    break  # fail fast: do not read or send more
                futures.append(pool.submit(send, i, part, data))
        finally:
            for f in futures:
                with contextlib.suppress(BaseException):
                    f.result()
    for f in futures:
        exc = f.exception()
        if exc is not None:
            raise exc
    if sum(p.size for p in parts) != size:
        raise StorageError(f"snapshot {name} changed size while it was backed up")
    return FileEntry(name, "snapshot", size, _hex(whole.intdigest()), tuple(parts)), resumed[0]


# ------------------------------------------------------------------------ listing


@dataclass
class BackupEntry:
    """One full backup in a target, complete (a valid manifest) or not."""

    id: str
    db_id: str
    complete: bool
    epoch: int | None
    tx_id: int | None
    bytes: int
    files: int
    started: float
    finished: float | None
    problem: str | None = None
    manifest: Manifest | None = None

    @property
    def created(self) -> float:
        return self.finished if self.finished is not None else self.started

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "db_id": self.db_id, "epoch": self.epoch,
                "tx_id": self.tx_id, "bytes": self.bytes, "complete": self.complete,
                "created": _iso(self.created),
                "age_seconds": round(max(0.0, time.time() - self.created), 1),
                "files": self.files, "problem": self.problem}


def full_databases(target: Target) -> list[str]:
    """The db_ids with full backups in ``target``."""
    return sorted({d for info in target.list("") if (d := keys.full_databases_of(info.key))})


def _choose_db(target: Target, db_id: str | None) -> str:
    found = full_databases(target)
    if db_id is not None:
        if db_id not in found:
            raise DatabaseMismatchError(f"{target.url} holds no full backup of database "
                                        f"{db_id}; it holds: {', '.join(found) or 'none'}")
        return db_id
    if not found:
        raise BackupNotFoundError(f"{target.url} holds no full backup of any database")
    if len(found) > 1:
        raise DatabaseMismatchError(f"{target.url} holds full backups of {len(found)} "
                                    f"databases: {', '.join(found)}. Choose one with --db-id.")
    return found[0]


def list_backups(url: str | TargetOptions | Target, *, db_id: str | None = None
                 ) -> list[BackupEntry]:
    """Every full backup in ``url`` (of ``db_id``, or of every database), oldest first."""
    target = url if isinstance(url, Target) else open_target(url)
    dbs = [db_id] if db_id is not None else full_databases(target)
    out: list[BackupEntry] = []
    for db in dbs:
        objects: dict[str, dict[str, int]] = {}
        for info in target.list(keys.full_prefix(db)):
            parsed = keys.parse_backup_key(info.key, db)
            if parsed is not None:
                objects.setdefault(parsed[0], {})[parsed[1]] = info.size
        for bid, objs in objects.items():
            out.append(_entry(target, db, bid, objs))
    out.sort(key=lambda e: (e.started, e.id))
    return out


def _entry(target: Target, db: str, bid: str, objs: dict[str, int]) -> BackupEntry:
    stored = sum(s for k, s in objs.items() if k.startswith("files/"))
    started = _started_of(bid)
    if "manifest.json" in objs:
        try:
            m = parse_manifest(target.get(keys.manifest_key(db, bid)),
                               where=keys.manifest_key(db, bid), db_id=db, backup_id=bid)
        except BackupIntegrityError as exc:
            return BackupEntry(bid, db, False, None, None, stored, 0, started, None,
                               problem=str(exc))
        except BackupNotFoundError:
            pass
        else:
            return BackupEntry(bid, db, True, m.epoch, m.tx_id, m.total_bytes, len(m.files),
                               m.started, m.finished, manifest=m)
    epoch = tx = None
    try:
        intent = json.loads(target.get(keys.intent_key(db, bid)))
        epoch, tx, started = int(intent["epoch"]), int(intent["tx_id"]), float(
            intent["started"])
    except (BackupError, ValueError, KeyError, TypeError):
        pass
    return BackupEntry(bid, db, False, epoch, tx, stored,
                       sum(1 for k in objs if k.startswith("files/")), started, None,
                       problem="no manifest: the backup did not finish (incomplete)")


def _started_of(backup_id: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ")))
    except ValueError:
        return 0.0


# ---------------------------------------------------------------------- verifying


@dataclass
class VerifyReport:
    id: str
    db_id: str
    ok: bool
    files: int
    parts: int
    bytes: int
    problems: list[str]
    seconds: float
    retry_attempts: int

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "id": self.id, "db_id": self.db_id, "files": self.files,
                "parts": self.parts, "bytes": self.bytes, "problems": self.problems,
                "seconds": round(self.seconds, 3), "retry_attempts": self.retry_attempts}


def _read_part(target: Target, db: str, bid: str, f: FileEntry, i: int,
               policy: RetryPolicy, stats: RetryStats) -> bytes:
    """Part ``i`` of ``f``, read with retries and checked; BackupIntegrityError names it."""
    part = f.parts[i]
    key = keys.backup_prefix(db, bid) + part.key
    try:
        data = call(policy, stats, f.name, lambda: target.get(key), part=i)
    except BackupNotFoundError:
        raise BackupIntegrityError(f"backup {bid}: {key} (part {i} of {f.name}) is missing "
                                   f"from {target.url}", key=key) from None
    if len(data) != part.size or _hex(xxhash.xxh64_intdigest(data)) != part.xxh64:
        raise BackupIntegrityError(
            f"backup {bid}: {key} (part {i} of {f.name}) holds {len(data)} bytes with xxh64 "
            f"{_hex(xxhash.xxh64_intdigest(data))}; the manifest says {part.size} bytes with "
            f"{part.xxh64}", key=key)
    return data


def verify_backup(url: str | TargetOptions | Target, backup_id: str, *,
                  db_id: str | None = None, retries: int | None = None,
                  backoff_max: float | None = None,
                  progress: Progress | None = None) -> VerifyReport:
    """Re-read every file of a complete backup and check sizes and checksums."""
    t0 = time.monotonic()
    target = url if isinstance(url, Target) else open_target(url)
    policy, stats = RetryPolicy.of(retries, backoff_max), RetryStats("restore")
    db = _choose_db(target, db_id)
    entry = _find(target, db, backup_id)
    problems: list[str] = []
    parts = 0
    m = entry.manifest
    if m is None:
        problems.append(f"backup {entry.id} is incomplete: {entry.problem}")
    else:
        total = m.total_bytes
        done = 0
        for f in m.files:
            whole = xxhash.xxh64()
            try:
                for i in range(len(f.parts)):
                    data = _read_part(target, db, entry.id, f, i, policy, stats)
                    whole.update(data)
                    parts += 1
                    done += len(data)
                    if progress:
                        progress(done, total, f"verify {f.name}")
                if _hex(whole.intdigest()) != f.xxh64:
                    problems.append(f"{f.name}: its parts join to xxh64 "
                                    f"{_hex(whole.intdigest())}, the manifest says {f.xxh64}")
            except BackupIntegrityError as exc:
                problems.append(str(exc))
    return VerifyReport(entry.id, db, not problems, len(m.files) if m else 0, parts,
                        m.total_bytes if m else entry.bytes, problems, time.monotonic() - t0,
                        stats.attempts)


def _find(target: Target, db: str, backup_id: str) -> BackupEntry:
    entries = list_backups(target, db_id=db)
    if backup_id == "latest":
        complete = [e for e in entries if e.complete]
        if not complete:
            raise BackupNotFoundError(f"{target.url} holds no complete full backup of {db}")
        return complete[-1]
    for e in entries:
        if e.id == backup_id:
            return e
    raise BackupNotFoundError(f"{target.url} holds no full backup {backup_id!r} of {db}; it "
                              f"holds: {', '.join(e.id for e in entries) or 'none'}")


# ------------------------------------------------------------------------ pruning


@dataclass
class PruneReport:
    kept: list[str]
    deleted: list[str]
    objects: int
    bytes: int
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "kept": self.kept, "deleted": self.deleted,
                "objects": self.objects, "bytes": self.bytes, "dry_run": self.dry_run}


PRUNE_MIN_AGE_SECONDS = 6 * 3600.0


def prune_backups(url: str | TargetOptions | Target, keep: int, *, db_id: str | None = None,
                  dry_run: bool = False,
                  min_age_seconds: float = PRUNE_MIN_AGE_SECONDS) -> PruneReport:
    """Delete all but the ``keep`` newest complete backups (``keep >= 1``: never the
    newest complete one) and the incomplete ones older than the newest complete one
    whose newest object is older than ``min_age_seconds`` (an incomplete backup may
    still be running beside a later one that finished, or be resumable: it is left
    alone until it has been quiet that long). The manifest goes first, so
    a backup half deleted is incomplete, never a complete one missing files. Backups
    share no file, and log-backup segments are never deleted (every kept backup's
    point-in-time restore keeps what it needs)."""
    if type(keep) is not int or keep < 1:
        raise OptionsError(f"--keep must be >= 1 (the newest complete backup is never "
                           f"pruned), got {keep!r}")
    target = url if isinstance(url, Target) else open_target(url)
    db = _choose_db(target, db_id)
    entries = list_backups(target, db_id=db)
    complete = [e for e in entries if e.complete]
    kept_complete = complete[-keep:]
    newest = max((e.started for e in complete), default=None)
    now = time.time()

    def quiet(e: BackupEntry) -> bool:
        stamps = [i.last_modified.timestamp() for i in target.list(keys.backup_prefix(db, e.id))
                  if i.last_modified is not None]
        return now - max(stamps, default=e.started) >= min_age_seconds

    doomed = [e for e in entries if e not in kept_complete
              and (e.complete or (newest is not None and e.started < newest and quiet(e)))]
    objects = size = 0
    for e in doomed:
        prefix = keys.backup_prefix(db, e.id)
        infos = target.list(prefix)
        infos.sort(key=lambda i: i.key != prefix + "manifest.json")  # manifest first
        for info in infos:
            objects += 1
            size += info.size
            if not dry_run:
                target.delete(info.key)
    return PruneReport([e.id for e in entries if e not in doomed], [e.id for e in doomed],
                       objects, size, dry_run)


# ---------------------------------------------------------------------- restoring


@dataclass
class FullRestoreReport:
    path: str
    target: str
    db_id: str
    backup_id: str
    backup_epoch: int
    backup_tx: int
    last_tx: int
    new_epoch: int
    bytes: int
    files: int
    segments: int
    seconds: float
    retry_attempts: int
    to_tx: int | None = None
    to_time: float | None = None
    last_time: float | None = None
    download_seconds: float = 0.0  # downloading the parts, checking sizes and xxh64s
    fell_back_from: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "path": self.path, "from": self.target, "db_id": self.db_id,
                "backup": self.backup_id, "backup_epoch": self.backup_epoch,
                "backup_tx": self.backup_tx, "last_tx": self.last_tx,
                "new_epoch": self.new_epoch, "bytes": self.bytes, "files": self.files,
                "segments": self.segments, "seconds": round(self.seconds, 3),
                "retry_attempts": self.retry_attempts, "to_tx": self.to_tx,
                "to_time": self.to_time, "last_time": self.last_time,
                "download_seconds": round(self.download_seconds, 3),
                "fell_back_from": self.fell_back_from, "notes": self.notes}


def restore_full(url: str | TargetOptions | Target, path: str, *, backup: str = "latest",
                 to_tx: int | None = None, to_time: float | None = None,
                 db_id: str | None = None, fallback: bool = False,
                 retries: int | None = None, backoff_max: float | None = None,
                 timeout: float | None = None, progress: Progress | None = None,
                 fault_rate: float | None = None, fault_seed: int | None = None,
                 concurrency: int = DEFAULT_CONCURRENCY) -> FullRestoreReport:
    """Restore full backup ``backup`` (an id, or ``latest``: the newest complete one, or
    with ``to_tx``/``to_time`` the newest at or before that point) into the new
    directory ``path``; ``to_tx``/``to_time`` past the backup replay the log backup.
    Everything is downloaded and verified before anything is built; a broken backup
    fails naming the file, or with ``fallback`` the next earlier complete one is used
    (the report says so). The result opens a new epoch. The target is only read."""
    t0 = time.monotonic()
    path = os.path.abspath(path)
    check_point(to_tx, to_time)
    check_destination(path)
    _check_sizes(MIN_PART_SIZE, concurrency)
    policy, stats = RetryPolicy.of(retries, backoff_max, timeout), RetryStats("restore")
    raw = _target(url, fault_rate, fault_seed)
    target = RetryingTarget(raw, policy, stats)
    db = _choose_db(target, db_id)
    entries = list_backups(target, db_id=db)
    lineage = _newest_lineage(target, db, entries)
    # Only backups on the newest timeline are candidates: one taken on an epoch that a
    # later restore forked away from holds state that timeline never had.
    complete = [e for e in entries if e.complete and _on_lineage(e, lineage)]

    def fits(e: BackupEntry) -> bool:
        if to_tx is not None:
            return (e.tx_id or 0) <= to_tx
        return to_time is None or e.created <= to_time

    if backup == "latest":
        candidates = [e for e in complete if fits(e)]
        if not candidates:
            raise BackupNotFoundError(
                f"{target.url} holds no complete full backup of {db}"
                + ("" if to_tx is None and to_time is None else " at or before that point"))
        first = candidates[-1]
    else:
        first = _find(target, db, backup)
        if first.complete and not fits(first):
            raise InvalidEventError(f"backup {first.id} is at tx {first.tx_id}, after the "
                                    "point asked for; choose an earlier backup or 'latest'")
    order = [first] + [e for e in reversed(complete) if e.started < first.started and fits(e)]
    fell_back: list[str] = []
    notes: list[str] = []
    for attempt in order:
        try:
            with os_errors_translated(f"cannot restore into {path}",
                                      directory=os.path.dirname(path),
                                      consequence="nothing was restored (the staging "
                                      "directory is removed)"):
                report = _restore_one(raw, target, db, attempt, path, to_tx, to_time, stats,
                                      progress, concurrency)
        except BackupIntegrityError as exc:
            if not fallback:
                raise
            nxt = order[len(fell_back) + 1] if len(order) > len(fell_back) + 1 else None
            fell_back.append(attempt.id)
            msg = (f"backup {attempt.id} is unusable ({exc}); "
                   + (f"falling back to {nxt.id}" if nxt else "no earlier complete backup"))
            log.warning("%s", msg)
            notes.append(msg)
            continue
        report.fell_back_from, report.notes = fell_back, notes + report.notes
        report.seconds, report.retry_attempts = time.monotonic() - t0, stats.attempts
        return report
    raise BackupIntegrityError(f"no usable full backup of {db} in {target.url}: "
                               + "; ".join(notes))


def _restore_one(raw: Target, target: RetryingTarget, db: str, e: BackupEntry, path: str,
                 to_tx: int | None, to_time: float | None, stats: RetryStats,
                 progress: Progress | None, concurrency: int) -> FullRestoreReport:
    if e.manifest is None:
        raise BackupIntegrityError(f"backup {e.id} of {db} in {target.url} is incomplete "
                                   f"({e.problem}); an incomplete backup is never restored",
                                   key=keys.manifest_key(db, e.id))
    m = e.manifest
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.restore-", dir=parent)
    try:
        snaps = layout.snapshot_dir(stage)
        os.makedirs(snaps)
        # 1. download and verify every file before using anything
        t_download = time.monotonic()
        total = m.total_bytes
        done = 0
        for f in m.files:
            dest = os.path.join(snaps, f.name)
            if os.path.dirname(os.path.abspath(dest)) != os.path.abspath(snaps):
                raise BackupIntegrityError(f"file name {f.name!r} leaves the restore "
                                           "directory", key=keys.manifest_key(db, e.id))
            try:
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o644)
            except OSError as exc:
                raise StorageError(f"cannot create {dest}: {exc}") from None
            whole = xxhash.xxh64()
            try:
                # parts are fetched (and checked) ``concurrency`` at a time, joined in order
                with ThreadPoolExecutor(max_workers=concurrency,
                                        thread_name_prefix="engine-full-restore") as pool:
                    ahead: list[Future[bytes]] = []
                    nxt = 0
                    try:
                        for i in range(len(f.parts)):
                            while nxt < len(f.parts) and nxt < i + concurrency:
                                ahead.append(pool.submit(_read_part, raw, db, e.id, f, nxt,
                                                         target.policy, stats))
                                nxt += 1
                            data = ahead[i].result()
                            ahead[i] = _DONE
                            whole.update(data)
                            try:
                                os.pwrite(fd, data, f.parts[i].offset)
                            except OSError as exc:
                                raise StorageError(f"cannot write {dest}: {exc}") from None
                            done += len(data)
                            if progress:
                                progress(done, total, f"download {f.name}")
                    finally:
                        for fut in ahead:
                            fut.cancel()
                os.fsync(fd)
            finally:
                os.close(fd)
            if _hex(whole.intdigest()) != f.xxh64:
                raise BackupIntegrityError(f"backup {e.id}: {f.name} joins to xxh64 "
                                           f"{_hex(whole.intdigest())}, the manifest says "
                                           f"{f.xxh64}", key=keys.manifest_key(db, e.id))
        download_seconds = time.monotonic() - t_download
        snap = os.path.join(snaps, layout.snapshot_name(m.epoch, m.tx_id))
        try:
            h = load_snapshot(snap).header
        except EngineError as exc:
            raise BackupIntegrityError(f"backup {e.id}: its snapshot is unusable: {exc}",
                                       key=keys.manifest_key(db, e.id)) from None
        if (h.db_id, h.epoch, h.tx_id) != (db, m.epoch, m.tx_id):
            raise BackupIntegrityError(f"backup {e.id}: its snapshot holds tx {h.tx_id} of "
                                       f"epoch {h.epoch} of {h.db_id}, not what the manifest "
                                       "says", key=keys.manifest_key(db, e.id))
        # 2. the log backup past the snapshot, for a point in time after it
        stop, paths, last_pos, history, newest, segments = _tail(
            target, db, m, stage, to_tx, to_time, progress)
        epochs = set(claimed_epochs(target, db)) | {m.epoch, newest}
        new_epoch = max(epochs) + 1
        history.append(EpochRecord(new_epoch, stop + 1, last_pos + 1, time.time(),
                                   f"restored from full backup {e.id} in {target.url} at tx "
                                   f"{stop}"))
        build_log(stage, db_id=db, new_epoch=new_epoch, base_tx=m.tx_id,
                  base_pos=m.last_position, history=history, paths=paths,
                  base_checksum=h.tx_checksum)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(os.path.join(stage, "segments"))
        last_time = open_and_check(stage, stop, snapshot=bool(paths))
        publish(stage, path)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(stage)
        raise
    return FullRestoreReport(
        path=path, target=target.url, db_id=db, backup_id=e.id, backup_epoch=m.epoch,
        backup_tx=m.tx_id, last_tx=stop, new_epoch=new_epoch, bytes=m.total_bytes,
        files=len(m.files), segments=segments, seconds=0.0, retry_attempts=0,
        to_tx=to_tx, to_time=to_time, last_time=last_time, download_seconds=download_seconds)


def _newest_lineage(target: Target, db: str,
                    entries: list[BackupEntry]) -> list[EpochRecord] | None:
    """The epoch history of the newest timeline the target knows of this database: the
    log backup's newest claim, or the newest complete backup's, whichever is newer."""
    histories: list[list[EpochRecord]] = []
    with contextlib.suppress(BackupNotFoundError, BackupChainError):  # no log backup
        histories.append(list(plan_chain(target, db).history))
    histories += [list(e.manifest.history) for e in entries if e.complete and e.manifest]
    histories = [h for h in histories if h]
    if not histories:
        return None
    return sorted(max(histories, key=lambda h: max(r.epoch for r in h)),
                  key=lambda r: r.first_tx)


def _on_lineage(e: BackupEntry, lineage: list[EpochRecord] | None) -> bool:
    """Whether the backup's ``(epoch, tx)`` lies on ``lineage`` (True when unknown)."""
    if lineage is None or e.epoch is None or e.tx_id is None:
        return True
    on = [h for h in lineage if h.first_tx <= e.tx_id]
    return bool(on) and on[-1].epoch == e.epoch


def _tail(target: Target, db: str, m: Manifest, stage: str, to_tx: int | None,
          to_time: float | None, progress: Progress | None
          ) -> tuple[int, list[str], int, list[EpochRecord], int, int]:
    """``(stop, spooled segment files, last position, history, newest epoch, segments)``
    for the txs after the backup up to the point asked for (none without one)."""
    history = list(m.history)
    if to_tx is None and to_time is None:
        return m.tx_id, [], m.last_position, history, m.epoch, 0
    if to_tx is not None and to_tx == m.tx_id:
        return m.tx_id, [], m.last_position, history, m.epoch, 0
    try:
        chain = plan_chain(target, db)
    except BackupNotFoundError:
        if to_time is not None:  # no log backup: the backup itself is the newest point
            return m.tx_id, [], m.last_position, history, m.epoch, 0
        raise BackupChainError(f"--to-tx {to_tx} is past backup tx {m.tx_id}, and "
                               f"{target.url} holds no log backup of {db} to replay") from None
    # the backup's point must be on the chain's lineage
    on = [h for h in chain.history if h.first_tx <= m.tx_id]
    if not on or on[-1].epoch != m.epoch:
        raise BackupChainError(f"the log backup's newest timeline (epoch "
                               f"{chain.newest_epoch}) does not pass through tx {m.tx_id} of "
                               f"epoch {m.epoch}, where backup {m.backup_id} was taken")
    stop = to_tx if to_tx is not None else max(m.tx_id, cut_at_time(target, chain,
                                                                     to_time or 0.0))
    if stop > chain.last_tx or (chain.gap is not None and stop > chain.last_tx):
        raise BackupChainError(((chain.gap + "; ") if chain.gap else "")
                               + f"the log backup of {db} reaches tx {chain.last_tx}; "
                               f"--to-tx {stop} is past it")
    links = tuple(dataclasses.replace(link, use_from=max(link.use_from, m.tx_id + 1))
                  for link in chain.links if link.use_to > m.tx_id and link.first_tx <= stop)
    if stop > m.tx_id and (not links or links[0].first_tx > m.tx_id + 1):
        raise BackupChainError(f"the log backup of {db} does not hold tx {m.tx_id + 1}, the "
                               f"first after backup {m.backup_id}")
    spool = os.path.join(stage, "segments")
    os.mkdir(spool)
    cut = Chain(chain.db_id, chain.newest_epoch, chain.history, links)
    paths, last_pos = spool_chain(target, cut, stop=stop, directory=spool, progress=progress)
    if not paths:
        last_pos = m.last_position
    last_epoch = links[-1].epoch if links else m.epoch
    history = [h for h in chain.history if h.epoch <= last_epoch]
    return stop, paths, last_pos, history, chain.newest_epoch, len(paths)


install_full_backup(backup_full)

__all__ = [
    "DEFAULT_PART_SIZE",
    "BackupEntry",
    "BackupInfo",
    "BackupIntegrityError",
    "FullRestoreReport",
    "Manifest",
    "PruneReport",
    "VerifyReport",
    "backup_full",
    "list_backups",
    "parse_manifest",
    "prune_backups",
    "restore_full",
    "verify_backup",
    "with_faults",
]
