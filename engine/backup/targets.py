"""Backup targets: the one object-store layer (the only module that imports obstore).

A :class:`Target` is a flat namespace of objects under one URL, with synchronous
``put`` / ``put_if_match`` / ``put_file`` / ``get`` / ``get_range`` / ``get_file`` /
``head`` / ``list`` / ``delete`` / ``check``. Everything above it (log-backup
uploader, full backups, restore) is written once against this interface, the way
Litestream writes restore once over ``ReplicaClient``.

URLs (``open_target``)
    ``file:///abs/dir``      a local directory (created, with its parents, when opened).
    ``s3://bucket/prefix``   S3 or an S3-compatible server; endpoint, region and
                             credentials come from :class:`TargetOptions` or the usual
                             ``AWS_*`` variables (see ``TargetOptions.with_environment``).
    ``memory://name[/prefix]`` a process-global in-memory store shared by every target
                             opened with the same name, so a database reopened in the
                             same process sees what it wrote before. ``memory://`` with
                             no name is a fresh, private, empty store on every call.

Keys
    Relative to the target's prefix, ``/``-separated segments of letters, digits and
    ``. _ - =`` (no empty, ``.`` or ``..`` segments, at most 1024 characters, 200 per
    segment). The engine chooses every key, so a bad one is a bug: ``InvalidKeyError``
    (a ``ValueError``), raised before anything is sent.

Errors
    Every failure leaves as an ``engine.errors.BackupError``, translated in one place
    (``_translate``): ``TransientBackupError`` for what a later retry may fix (timeouts,
    connection refused/reset, HTTP 408/409/429/5xx except 501/505, S3 ``SlowDown``,
    ``RequestTimeout``, ``InternalError``), ``PermanentBackupError`` for what it will not
    (401/403, no such bucket, a rejected TLS certificate, ENOSPC, EACCES, EROFS, EIO...),
    ``BackupNotFoundError`` for a missing object and ``BackupConflictError`` for a failed
    create-if-absent or compare-and-swap. Malformed URLs and options are
    ``InvalidTargetError`` from ``open_target``, before anything is contacted.

    obstore exposes little structure: its exception *class* says not-found /
    already-exists / precondition / permission; for the rest (``GenericError``) we read
    its message, which holds the HTTP status (``status code: 503``), the S3 error XML
    (``<Code>SlowDown</Code>``), reqwest's error kind (``HttpError { kind: Timeout``)
    and, for local files, the OS error (``Os { code: 28``). Those patterns and a few
    fixed phrases ("builder error", ``InvalidCertificate(``, the three spellings of a
    range past the end) are all this module relies on. Each holds a space, ``<`` or
    ``{``, which keys, buckets and prefixes cannot, so a key echoed in a URL inside the
    message never matches. An error matching none of them is treated as transient (the
    caller's attempts are bounded).

    Messages name the target URL and the key, and never hold credentials: URLs with
    user info are refused, secrets reach obstore through a credential provider (so they
    are not in ``store.config``), and every message is scrubbed of the secret values
    before it is raised or logged (at DEBUG, logger ``engine.backup.targets``).

Retries and timeouts
    obstore's own retries are off by default (``TargetOptions.request_retries = 0``):
    the engine retries at a higher level (stamina) and counts every attempt in
    ``backup_retry_attempts``, which it could not do for retries hidden inside obstore.
    The catch: obstore offers no per-part retry hook, so a multipart ``put_file`` whose
    part fails fails as a whole and is retried as a whole by the caller. Operators with
    huge files on a flaky link can set ``request_retries`` > 0 to let obstore retry each
    request (each part) itself; those retries are invisible to the engine's counter.
    ``timeout_seconds`` bounds one HTTP request (including its body), so big objects go
    through ``put_file`` / ``get_file``, which move ``part_size`` bytes per request.

Durability
    A put returns only once the object is durable in the target; a checkpoint is never
    published beyond that. S3 acknowledges a PUT once it is stored. obstore's
    ``LocalStore`` does not fsync (checked with strace on obstore 0.12.1 / object_store
    0.14.2: a staging file, a rename, no fsync at all), so ``file://`` writes are done
    here: a temp file named ``<name>#<digits>`` (obstore's staging pattern, which its
    listing skips) is written and fsynced, then renamed over the key (or hard-linked for
    create-if-absent, which fails atomically if the key exists), then the directory is
    fsynced; newly made directories are fsynced into their parents too. Reads and
    listings still go through obstore. Memory targets are, of course, not durable.

Conditional writes
    ``put(..., create_only=True)`` works on every backend (the engine fences with it).
    ``put_if_match`` (compare-and-swap on the ETag) is native on S3 and memory; obstore's
    ``LocalStore`` refuses ``PutMode::Update`` (NotImplementedError), so for ``file://``
    it is done here under an exclusive ``flock`` on the target directory, which every
    write through this module takes around its final rename or link. The file ETag is
    obstore's (inode, mtime in microseconds, size). Caveat for S3-compatible servers: one
    that ignores ``If-None-Match: *`` / ``If-Match`` overwrites silently; AWS S3 and
    SeaweedFS honour both.
"""

from __future__ import annotations

import abc
import builtins
import contextlib
import dataclasses
import errno
import fcntl
import itertools
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Final, Literal, TypeAlias
from urllib.parse import quote, unquote, urlsplit

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    InvalidPathError,
    NotSupportedError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
    UnknownConfigurationKeyError,
)
from obstore.exceptions import BaseError as ObstoreError
from obstore.store import LocalStore, MemoryStore, S3Store

from ..errors import (
    BackupConflictError,
    BackupError,
    BackupNotFoundError,
    EngineError,
    InvalidKeyError,
    InvalidTargetError,
    OptionsError,
    PermanentBackupError,
    StorageError,
    TransientBackupError,
)
from ..files import fs

if TYPE_CHECKING:
    from obstore import GetOptions, ObjectMeta, PutMode, PutResult
    from obstore.store import ClientConfig, ObjectStore, RetryConfig, S3Config, S3Credential

_log = logging.getLogger(__name__)

#: Default bytes per request for ``put_file`` / ``get_file``.
DEFAULT_PART_SIZE: Final = 8 * 1024 * 1024
#: S3's smallest part (every part of a multipart upload but the last).
MIN_PART_SIZE: Final = 5 * 1024 * 1024
#: S3's largest part.
MAX_PART_SIZE: Final = 5 * 1024 * 1024 * 1024

MAX_KEY_CHARS: Final = 1024
MAX_SEGMENT_CHARS: Final = 200  # leaves room for a "#<digits>" staging suffix in 255 bytes

_SEGMENT_RE: Final = re.compile(r"[A-Za-z0-9._=-]+")


def staging_name(final: str) -> str:
    """The temporary name a file target writes ``final`` under before renaming it:
    ``final#<digits>``. obstore's LocalStore leaves exactly such names (a ``#`` and
    only digits after it) out of every listing, so a write in progress, or a leftover
    of a killed one, is never listed (nor pruned as a key, which '#' could not be)."""
    return f"{final}#{int.from_bytes(os.urandom(5), 'big')}"
_KEY_RULES: Final = (
    "keys are '/'-separated segments of letters, digits and '. _ - =' "
    "(e.g. 'DB_ID/log/1/1-100.seg')"
)

#: What ``put`` accepts.
Buffer: TypeAlias = bytes | bytearray | memoryview
#: A local file for ``put_file`` / ``get_file``: a path or a binary file object.
Source: TypeAlias = str | os.PathLike[str] | IO[bytes]


# ---------------------------------------------------------------- keys


def validate_key(key: str, *, what: str = "object key") -> str:
    """Return ``key`` if it is a valid object key, else raise ``InvalidKeyError``."""
    problem = _key_problem(key)
    if problem:
        raise InvalidKeyError(f"backup {what} {key!r} {problem}; {_KEY_RULES}")
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if ``list`` accepts it: '' or a key, optionally ending in '/'."""
    if prefix == "":
        return prefix
    core = prefix[:-1] if prefix.endswith("/") else prefix
    validate_key(core, what="list prefix")
    return prefix


def _key_problem(key: object) -> str | None:
    if not isinstance(key, str):
        return f"is a {type(key).__name__}, not a str"
    if key == "":
        return "is empty"
    if "\x00" in key:
        return "contains a NUL character"
    if key.startswith("/"):
        return "starts with '/' (keys are relative to the target's prefix)"
    if len(key) > MAX_KEY_CHARS:
        return f"is longer than {MAX_KEY_CHARS} characters"
    for seg in key.split("/"):
        if seg == "":
            return "has an empty segment ('//' or a trailing '/')"
        if seg in (".", ".."):
            return f"has a {seg!r} segment"
        if len(seg) > MAX_SEGMENT_CHARS:
            return f"has a segment longer than {MAX_SEGMENT_CHARS} characters"
        if not _SEGMENT_RE.fullmatch(seg):
            bad = next(c for c in seg if not _SEGMENT_RE.fullmatch(c))
            return f"contains {bad!r}"
    return None


def _check_range(key: str, start: int, end: int) -> None:
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end))
    if not ok or start < 0 or end <= start:
        raise InvalidKeyError(
            f"byte range [{start!r}, {end!r}) of {key!r} is invalid: "
            "need integers with 0 <= start < end (end is exclusive)")


def _check_part_size(part_size: int, max_concurrency: int = 1) -> None:
    if not isinstance(part_size, int) or not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise OptionsError(
            f"part_size={part_size!r} is out of range: S3 needs {MIN_PART_SIZE} "
            f"(5 MiB) <= part_size <= {MAX_PART_SIZE} (5 GiB); the default is "
            f"{DEFAULT_PART_SIZE}")
    if not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise OptionsError(f"max_concurrency={max_concurrency!r} must be an int >= 1")


# ---------------------------------------------------------------- options


_ENV_ENDPOINT: Final = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")
_ENV_REGION: Final = ("AWS_REGION", "AWS_DEFAULT_REGION")
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_REDACTED: Final = "<redacted>"


@dataclass(frozen=True, repr=False)
class TargetOptions:
    """Where a backup target is and how to talk to it (``open_target`` takes these or a URL).

    Only ``url`` is required. The S3 fields left ``None`` fall back to the environment
    when the target is opened (:meth:`with_environment`). ``repr``/``str`` never show
    credentials. ``timeout_seconds`` bounds one HTTP request; ``connect_timeout_seconds``
    its connect phase; ``request_retries`` is how often obstore itself retries one
    request (0: every failure reaches the caller, who retries and counts).
    """

    url: str
    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    allow_http: bool | None = None
    virtual_hosted_style: bool | None = None
    timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 5.0
    request_retries: int = 0

    def with_environment(self, environ: Mapping[str, str] | None = None) -> TargetOptions:
        """These options with unset S3 fields filled from ``environ`` (default ``os.environ``).

        ``endpoint``: ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT``;
        ``region``: ``AWS_REGION``, ``AWS_DEFAULT_REGION``; ``allow_http``:
        ``AWS_ALLOW_HTTP``; ``virtual_hosted_style``: ``AWS_VIRTUAL_HOSTED_STYLE_REQUEST``.
        Credentials are taken as a set: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``
        and ``AWS_SESSION_TOKEN`` are read only when the options give no access key, so an
        explicit key is never paired with someone else's session token. Non-S3 URLs are
        returned unchanged.
        """
        if not _is_s3(self.url):
            return self
        env = os.environ if environ is None else environ

        def first(current: str | None, names: tuple[str, ...]) -> str | None:
            if current is not None:
                return current
            return next((env[n] for n in names if env.get(n)), None)

        key, secret, token = self.access_key_id, self.secret_access_key, self.session_token
        if key is None:
            key = env.get("AWS_ACCESS_KEY_ID") or None
            secret = secret if secret is not None else (env.get("AWS_SECRET_ACCESS_KEY") or None)
            token = token if token is not None else (env.get("AWS_SESSION_TOKEN") or None)
        return dataclasses.replace(
            self,
            endpoint=first(self.endpoint, _ENV_ENDPOINT),
            region=first(self.region, _ENV_REGION),
            access_key_id=key,
            secret_access_key=secret,
            session_token=token,
            allow_http=_env_bool(env, "AWS_ALLOW_HTTP", self.allow_http),
            virtual_hosted_style=_env_bool(
                env, "AWS_VIRTUAL_HOSTED_STYLE_REQUEST", self.virtual_hosted_style),
        )

    def describe(self) -> str:
        """A one-line, credential-free description (the fields as given, not resolved)."""
        parts = []
        if self.endpoint:
            parts.append(f"endpoint {_safe_url(self.endpoint)}")
        if self.region:
            parts.append(f"region {self.region}")
        if _is_s3(self.url):
            if self.access_key_id or self.secret_access_key:
                parts.append("credentials set" + (" with session token"
                                                   if self.session_token else ""))
            else:
                parts.append("no credentials given (AWS_* variables or obstore's default "
                             "chain)")
        if self.allow_http is not None:
            parts.append(f"allow_http={self.allow_http}")
        if self.virtual_hosted_style is not None:
            parts.append(f"virtual_hosted_style={self.virtual_hosted_style}")
        parts.append(f"timeout {self.timeout_seconds:g}s")
        return f"{_safe_url(self.url)} ({', '.join(parts)})"

    def __repr__(self) -> str:
        fields = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value is not None:
                fields.append(f"{f.name}={_REDACTED!r}")
            elif f.name == "url":
                fields.append(f"url={_safe_url(value)!r}")
            elif f.name == "endpoint" and value is not None:
                fields.append(f"endpoint={_safe_url(value)!r}")
            else:
                fields.append(f"{f.name}={value!r}")
        return f"TargetOptions({', '.join(fields)})"

    __str__ = describe

    def _secrets(self) -> tuple[str, ...]:
        return tuple(v for v in (self.access_key_id, self.secret_access_key,
                                 self.session_token) if v)


_SECRET_FIELDS: Final = frozenset({"access_key_id", "secret_access_key", "session_token"})


def _env_bool(env: Mapping[str, str], name: str, current: bool | None) -> bool | None:
    if current is not None or not env.get(name):
        return current
    raw = env[name].strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise InvalidTargetError(
        f"environment variable {name}={env[name]!r} is not a boolean: use true or false")


def _is_s3(url: str) -> bool:
    return url[:5].lower() == "s3://"


def _safe_url(url: str) -> str:
    """``url`` without user info, query or fragment (for messages about a rejected URL)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else parts.path


# ---------------------------------------------------------------- objects


@dataclass(frozen=True)
class ObjectInfo:
    """One object: its key (relative to the target), size, ETag and modification time.

    ``last_modified`` is ``None`` where the call that produced the info does not learn it
    (puts to S3 and memory return only the ETag).
    """

    key: str
    size: int
    etag: str | None
    last_modified: datetime | None


# ---------------------------------------------------------------- the interface


class Target(abc.ABC):
    """A backup target: objects under one URL. All methods are synchronous and thread-safe.

    Every method raises ``InvalidKeyError`` for a malformed key before touching the
    target, and otherwise only ``BackupError`` subclasses (``TransientBackupError``,
    ``PermanentBackupError``, ``BackupNotFoundError``, ``BackupConflictError``), except
    ``put_file`` / ``get_file``, which raise ``StorageError`` when the *local* file fails.
    """

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """The target's URL, safe to print (never credentials)."""

    def describe(self) -> str:
        """A one-line, credential-free description (URL and the settings in effect)."""
        return self.url

    @abc.abstractmethod
    def put(self, key: str, data: Buffer, *, create_only: bool = False) -> ObjectInfo:
        """Store ``data`` at ``key`` (replacing it), durable on return.

        ``create_only=True``: only if ``key`` does not exist yet, else
        ``BackupConflictError`` and nothing changes (the engine's fence).
        """

    @abc.abstractmethod
    def put_if_match(self, key: str, data: Buffer, etag: str) -> ObjectInfo:
        """Replace ``key`` only if its ETag is still ``etag`` (compare-and-swap).

        ``BackupConflictError`` if it changed or is gone; nothing is written then.
        """

    @abc.abstractmethod
    def put_file(self, key: str, source: Source, *, part_size: int = DEFAULT_PART_SIZE,
                 max_concurrency: int = 4) -> ObjectInfo:
        """Upload a local file (a path, or a binary file object read to its end).

        Files larger than ``part_size`` go as a multipart upload of ``part_size`` parts,
        up to ``max_concurrency`` in flight; the object appears whole or not at all.
        A failed part fails the whole call (see the module docstring on retries); pass a
        path, not a file object, if the caller will retry.
        """

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The whole object (``BackupNotFoundError`` if missing). Big objects: ``get_file``."""

    def get_view(self, key: str) -> Buffer:
        """The whole object as a buffer: :meth:`get` without its copy into ``bytes``
        where the store can hand over its own memory (the uploader's read-back check
        of every segment; a copy there would hold the GIL committers need)."""
        return self.get(key)

    @abc.abstractmethod
    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the object, like ``data[start:end]``.

        Shorter than asked if the object ends first; empty if it ends before ``start``.
        """

    @abc.abstractmethod
    def get_file(self, key: str, dest: Source, *,
                 part_size: int = DEFAULT_PART_SIZE) -> ObjectInfo:
        """Download the object into ``dest`` (a path, created or truncated, or a binary
        file object), ``part_size`` bytes per request, all parts of one version
        (``BackupConflictError`` if the object changes meanwhile). Returns its info."""

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """The object's info, or ``None`` if it does not exist.

        S3 answers a HEAD in a missing bucket with a bare 404, so this says ``None``
        there too: call :meth:`check` to tell a missing bucket from a missing key.
        """

    @abc.abstractmethod
    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a plain string prefix, as in
        S3: ``'log/1'`` matches ``log/1/...`` and ``log/10/...``; ``'log/1/'`` only the
        former), at any depth, sorted by key."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""

    @abc.abstractmethod
    def check(self) -> None:
        """One cheap request proving the target answers and exists (bucket, directory).

        Raises ``PermanentBackupError`` for a missing bucket or bad credentials,
        ``TransientBackupError`` if it cannot be reached.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


# ---------------------------------------------------------------- obstore-backed targets


@dataclass(frozen=True)
class _Ctx:
    """What an error message needs to know about the target (all safe to print)."""

    url: str
    endpoint: str | None
    bucket: str | None
    secrets: tuple[str, ...]


class _StoreTarget(Target):
    """A target over an obstore store; keys live under ``prefix`` inside the store."""

    def __init__(self, store: ObjectStore, *, url: str, prefix: str, ctx: _Ctx,
                 description: str) -> None:
        self._store = store
        self._url = url
        self._prefix = prefix
        self._ctx = ctx
        self._description = description

    @property
    def url(self) -> str:
        return self._url

    def describe(self) -> str:
        return self._description

    # -- paths

    def _path(self, key: str) -> str:
        return f"{self._prefix}/{key}" if self._prefix else key

    def _key_of(self, path: str) -> str | None:
        if not self._prefix:
            return path
        head = self._prefix + "/"
        return path[len(head):] if path.startswith(head) else None

    def _info(self, meta: ObjectMeta, key: str) -> ObjectInfo:
        return ObjectInfo(key=key, size=meta["size"], etag=meta.get("e_tag"),
                          last_modified=meta.get("last_modified"))

    def _failures(self, op: str, key: str | None) -> contextlib.AbstractContextManager[None]:
        return _translating(self._ctx, op, key)

    # -- writes (overridden for file://)

    def put(self, key: str, data: Buffer, *, create_only: bool = False) -> ObjectInfo:
        validate_key(key)
        mode: PutMode = "create" if create_only else "overwrite"
        with self._failures("create" if create_only else "put", key):
            res = obstore.put(self._store, self._path(key), data, mode=mode,
                              use_multipart=False)
        return self._put_info(key, memoryview(data).nbytes, res)

    def put_if_match(self, key: str, data: Buffer, etag: str) -> ObjectInfo:
        validate_key(key)
        with self._failures("compare-and-swap put", key):
            res = obstore.put(self._store, self._path(key), data, mode={"e_tag": etag},
                              use_multipart=False)
        return self._put_info(key, memoryview(data).nbytes, res)

    def put_file(self, key: str, source: Source, *, part_size: int = DEFAULT_PART_SIZE,
                 max_concurrency: int = 4) -> ObjectInfo:
        validate_key(key)
        _check_part_size(part_size, max_concurrency)
        with _open_source(source) as f:
            chunks = _read_chunks(f, part_size)
            first = next(chunks, b"")
            second = next(chunks, None)
            if second is None:  # one part: a plain, single-request put
                return self.put(key, first)
            return self._put_stream(key, itertools.chain((first, second), chunks),
                                    part_size, max_concurrency)

    def _put_stream(self, key: str, chunks: Iterator[bytes], part_size: int,
                    max_concurrency: int) -> ObjectInfo:
        counted = _Counted(chunks)
        with self._failures("multipart put", key):
            res = obstore.put(self._store, self._path(key), counted, chunk_size=part_size,
                              max_concurrency=max_concurrency, use_multipart=True)
        return self._put_info(key, counted.total, res)

    def _put_info(self, key: str, size: int, res: PutResult) -> ObjectInfo:
        return ObjectInfo(key=key, size=size, etag=res.get("e_tag"), last_modified=None)

    def delete(self, key: str) -> None:
        validate_key(key)
        with contextlib.suppress(BackupNotFoundError), self._failures("delete", key):
            obstore.delete(self._store, self._path(key))

    # -- reads

    def get(self, key: str) -> bytes:
        validate_key(key)
        with self._failures("get", key):
            return bytes(obstore.get(self._store, self._path(key)).bytes())

    def get_view(self, key: str) -> Buffer:
        validate_key(key)
        with self._failures("get", key):
            return memoryview(obstore.get(self._store, self._path(key)).bytes())  # no copy

    def get_range(self, key: str, start: int, end: int) -> bytes:
        validate_key(key)
        _check_range(key, start, end)
        try:
            with self._failures("range get", key):
                return bytes(obstore.get_range(self._store, self._path(key), start=start,
                                               end=end))
        except BackupError as exc:
            if _is_range_past_end(exc):
                return b""  # data[start:end] with start >= len(data)
            raise

    def get_file(self, key: str, dest: Source, *,
                 part_size: int = DEFAULT_PART_SIZE) -> ObjectInfo:
        validate_key(key)
        _check_part_size(part_size)
        info = self.head(key)
        if info is None:
            raise BackupNotFoundError(
                f"backup target {self.url}: get {key!r} failed: no such object", key=key)
        with _open_dest(dest) as out:
            for start in range(0, info.size, part_size):
                end = min(start + part_size, info.size)
                opts: GetOptions = {"range": (start, end)}
                if info.etag:
                    opts["if_match"] = info.etag
                with self._failures("ranged get", key):
                    chunk = obstore.get(self._store, self._path(key), options=opts).bytes()
                _write_local(out, memoryview(chunk), dest)
        return info

    def head(self, key: str) -> ObjectInfo | None:
        validate_key(key)
        try:
            with self._failures("head", key):
                meta = obstore.head(self._store, self._path(key))
        except BackupNotFoundError:
            return None
        return self._info(meta, key)

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        validate_prefix(prefix)
        # obstore lists whole "directories"; list the one holding the prefix, then filter.
        directory = prefix.rpartition("/")[0]
        store_prefix = self._path(directory) if directory else self._prefix
        with self._failures("list", prefix or None):
            metas = obstore.list(self._store, store_prefix or None).collect()
        out = []
        for meta in metas:
            key = self._key_of(meta["path"])
            if key is not None and key.startswith(prefix):
                out.append(self._info(meta, key))
        out.sort(key=lambda i: i.key)
        return out

    def check(self) -> None:
        with self._failures("check (list)", None):
            stream = obstore.list(self._store, self._prefix or None, chunk_size=1)
            next(iter(stream), None)


class _LocalTarget(_StoreTarget):
    """``file://``: reads through obstore's LocalStore, durable writes done here."""

    def __init__(self, root: str, ctx: _Ctx) -> None:
        self._root = root
        with _translating(ctx, "create the target directory"):
            _mkdirs_durable(root)
        with _translating(ctx, "open"):
            store = LocalStore(root)
        super().__init__(store, url=ctx.url, prefix="", ctx=ctx, description=ctx.url)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive flock on the target directory (every process, every thread)."""
        fd = os.open(self._root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    def _write(self, op: str, key: str, chunks: Iterable[Buffer],
               mode: Literal["overwrite", "create"] | tuple[Literal["match"], str]
               ) -> ObjectInfo:
        final = os.path.join(self._root, key)
        parent = os.path.dirname(final)
        tmp = staging_name(final)
        with self._failures(op, key):
            _mkdirs_durable(parent, below=self._root)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                try:
                    for chunk in chunks:
                        view = memoryview(chunk).cast("B")
                        while view:
                            view = view[os.write(fd, view):]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                with self._locked():
                    if mode == "create":
                        try:
                            os.link(tmp, final)  # atomic: fails if the key exists
                        except FileExistsError:
                            raise _conflict(self._ctx, op, key,
                                            "the object already exists") from None
                    else:
                        if isinstance(mode, tuple):
                            current = self._etag_now(key)
                            if current != mode[1]:
                                raise _conflict(
                                    self._ctx, op, key,
                                    "the object is gone" if current is None else
                                    f"its ETag is {current}, not {mode[1]}")
                        os.replace(tmp, final)
                    fs().fsync_dir(parent)
                    meta = obstore.head(self._store, key)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        return self._info(meta, key)

    def _etag_now(self, key: str) -> str | None:
        try:
            return obstore.head(self._store, key).get("e_tag")
        except FileNotFoundError:
            return None

    def put(self, key: str, data: Buffer, *, create_only: bool = False) -> ObjectInfo:
        validate_key(key)
        if create_only:
            return self._write("create", key, (data,), "create")
        return self._write("put", key, (data,), "overwrite")

    def put_if_match(self, key: str, data: Buffer, etag: str) -> ObjectInfo:
        validate_key(key)
        return self._write("compare-and-swap put", key, (data,), ("match", etag))

    def _put_stream(self, key: str, chunks: Iterator[bytes], part_size: int,
                    max_concurrency: int) -> ObjectInfo:
        return self._write("multipart put", key, chunks, "overwrite")

    def delete(self, key: str) -> None:
        validate_key(key)
        final = os.path.join(self._root, key)
        with self._failures("delete", key), self._locked():
            try:
                os.unlink(final)
            except FileNotFoundError:
                return
            fs().fsync_dir(os.path.dirname(final))

    def check(self) -> None:
        with self._failures("check", None):
            if not os.path.isdir(self._root):
                raise PermanentBackupError(
                    f"backup target {self.url}: the directory is gone; recreate it or "
                    "point the backup elsewhere")
        super().check()


def _mkdirs_durable(path: str, *, below: str | None = None) -> None:
    """``mkdir -p path``, fsyncing each parent that gained an entry.

    With ``below``, only directories strictly under it are made: a vanished target
    directory (an unmounted volume, say) is reported, never silently recreated.
    """
    missing = []
    cur = path
    while not os.path.isdir(cur):
        if cur == below:
            raise FileNotFoundError(errno.ENOENT, "the target directory is gone", below)
        missing.append(cur)
        parent = os.path.dirname(cur)
        if parent == cur:
            break
        cur = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o755)
        except FileExistsError:
            continue
        fs().fsync_dir(os.path.dirname(d))


def _conflict(ctx: _Ctx, op: str, key: str, why: str) -> BackupConflictError:
    return BackupConflictError(f"backup target {ctx.url}: {op} {key!r} failed: {why}",
                               key=key)


@contextlib.contextmanager
def _translating(ctx: _Ctx, op: str, key: str | None = None) -> Iterator[None]:
    """Turn whatever obstore or the OS raises inside into the engine's tree (and log it)."""
    try:
        yield
    except EngineError:
        raise
    except (ObstoreError, OSError, NotImplementedError) as exc:
        err = _translate(exc, ctx, op, key)
        _log.debug("backup target error: %s", err)
        raise err from exc


# ---------------------------------------------------------------- local files (put/get_file)


class _Counted:
    """An iterator of chunks that counts the bytes it hands out."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self.total = 0

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> bytes:
        chunk = next(self._chunks)
        self.total += len(chunk)
        return chunk


@contextlib.contextmanager
def _open_source(source: Source) -> Iterator[IO[bytes]]:
    if isinstance(source, (str, os.PathLike)):
        try:
            f = open(source, "rb")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise StorageError(f"cannot open the file to upload {os.fspath(source)!r}: "
                               f"{exc.strerror or exc}") from exc
        with f:
            yield f
    else:
        yield source


def _read_chunks(f: IO[bytes], size: int) -> Iterator[bytes]:
    """``size``-byte chunks of ``f`` (the last one shorter); read errors are StorageError."""
    while True:
        parts: builtins.list[bytes] = []
        need = size
        while need:
            try:
                got = f.read(need)
            except OSError as exc:
                name = getattr(f, "name", "<file object>")
                raise StorageError(f"reading the file to upload {name!r} failed: "
                                   f"{exc.strerror or exc}") from exc
            if not got:
                break
            parts.append(got)
            need -= len(got)
        if not parts:
            return
        yield parts[0] if len(parts) == 1 else b"".join(parts)
        if need:
            return


@contextlib.contextmanager
def _open_dest(dest: Source) -> Iterator[IO[bytes]]:
    if isinstance(dest, (str, os.PathLike)):
        try:
            f = open(dest, "wb")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise StorageError(f"cannot create the download file {os.fspath(dest)!r}: "
                               f"{exc.strerror or exc}") from exc
        with f:
            yield f
    else:
        yield dest


def _write_local(out: IO[bytes], chunk: Buffer, dest: Source) -> None:
    try:
        out.write(chunk)
    except OSError as exc:
        name = os.fspath(dest) if isinstance(dest, (str, os.PathLike)) else "<file object>"
        raise StorageError(f"writing the download file {name!r} failed: "
                           f"{exc.strerror or exc}") from exc


# ---------------------------------------------------------------- error translation


_STATUS_RE: Final = re.compile(r"status code: (\d{3})|\bstatus: (\d{3})\b")
_S3_CODE_RE: Final = re.compile(r"<Code>([A-Za-z0-9.]+)</Code>")
_S3_MESSAGE_RE: Final = re.compile(r"<Message>([^<]{1,300})</Message>")
_HTTP_KIND_RE: Final = re.compile(r"HttpError \{\s*kind: (\w+)")
_OS_CODE_RE: Final = re.compile(r"Os \{\s*code: (\d+)")
_OS_MESSAGE_RE: Final = re.compile(r'message: "([^"]{1,200})"')
# the informative bits of a reqwest/hyper error chain, in the order they are joined
_NET_DETAIL_RES: Final = (
    re.compile(r'ConnectError\(\s*"([^"]{1,100})"'),           # "tcp connect error", "dns error"
    re.compile(r'(?:message|error): "([^"]{1,200})"'),          # OS / resolver text
    re.compile(r'hyper::Error\(\s*(\w+)'),                      # IncompleteMessage, Canceled
    re.compile(r'hyper::Error\(\s*\w+,\s*"([^"]{1,100})"'),    # "connection was not ready"
)
# S3, LocalStore and MemoryStore spellings of "the range starts past the end"
_RANGE_RE: Final = re.compile(r"status code: 416|Requested range was invalid|Invalid range: ")
_TLS_RE: Final = re.compile(r"InvalidCertificate\(|invalid peer certificate")
_WORD_RE: Final = re.compile(r"\b([A-Z][A-Za-z]+)\b")

_TRANSIENT_S3_CODES: Final = frozenset({
    "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling",
    "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "OperationAborted",
    "ConditionalRequestConflict",
})
_CREDENTIAL_S3_CODES: Final = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "AccessDenied", "AllAccessDisabled", "AuthorizationHeaderMalformed",
})
_TRANSIENT_ERRNOS: Final = frozenset({
    errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT, errno.EBUSY, errno.ECONNRESET,
    errno.ECONNREFUSED, errno.ECONNABORTED, errno.EHOSTUNREACH, errno.ENETUNREACH,
    errno.ENETDOWN, errno.ESTALE, errno.ENOLCK,
})
_ERRNO_HINTS: Final = {
    errno.ENOSPC: "the target's file system is full: free space or point the backup elsewhere",
    errno.EDQUOT: "the disk quota is exhausted: raise it or point the backup elsewhere",
    errno.EACCES: "permission denied: check the directory's owner and mode",
    errno.EPERM: "operation not permitted: check the directory's owner, mode and mount",
    errno.EROFS: "the file system is read-only: remount it read-write or use another target",
    errno.ENOTDIR: "a path component is a file: the directory holds something else",
    errno.EISDIR: "the key names a directory: the directory holds something else",
    errno.ENOENT: "the directory (or a part of it) vanished: recreate it or fix the URL",
    errno.EIO: "an I/O error: check the disk and the kernel log",
}


def _translate(exc: BaseException, ctx: _Ctx, op: str, key: str | None) -> BackupError:
    """The one mapping from obstore / OS exceptions to the engine's BackupError tree."""
    text = str(exc)
    summary = text.split("\n\nDebug source:")[0].split("\n")[0]
    status = _status(text)
    s3_code = _first(_S3_CODE_RE, text)
    s3_msg = _first(_S3_MESSAGE_RE, text)
    http = f"HTTP {status}" + (f" {s3_code}" if s3_code else "") + (
        f": {s3_msg}" if s3_msg else "") if status else None

    cls: type[BackupError]
    hint = ""
    if s3_code in _TRANSIENT_S3_CODES and status is not None:
        # first: object_store reports any 409 on a PUT as AlreadyExists, but S3's 409
        # ConditionalRequestConflict / OperationAborted mean "busy, retry"
        cls, cause, hint = _from_status(status, s3_code, http or summary, ctx)
    elif isinstance(exc, AlreadyExistsError):
        cls, cause = BackupConflictError, "the object already exists"
    elif isinstance(exc, PreconditionError):
        cls, cause = BackupConflictError, "the object changed or is gone (ETag mismatch)"
    elif isinstance(exc, FileNotFoundError) and exc.errno is None:  # obstore's not-found
        if s3_code == "NoSuchBucket":
            cls, cause = PermanentBackupError, http or "no such bucket"
            hint = _bucket_hint(ctx)
        else:
            cls, cause = BackupNotFoundError, "no such object"
    elif isinstance(exc, (PermissionDeniedError, UnauthenticatedError)):
        cls, cause = PermanentBackupError, http or summary
        hint = ("this machine's clock is off: fix it (NTP)" if s3_code == "RequestTimeTooSkewed"
                else _credentials_hint(ctx, s3_code))
    elif isinstance(exc, (NotSupportedError, NotImplementedError)):
        cls, cause = PermanentBackupError, summary
        hint = "this target does not support the operation"
    elif isinstance(exc, UnknownConfigurationKeyError):
        cls, cause = InvalidTargetError, summary
        hint = "fix the target options"
    elif isinstance(exc, InvalidPathError):
        cls, cause = PermanentBackupError, summary
        hint = "the store refused the object path"
    elif isinstance(exc, OSError) and exc.errno is not None:
        cls, cause, hint = _from_errno(exc.errno, exc.strerror or text)
    elif status is not None:
        cls, cause, hint = _from_status(status, s3_code, http or summary, ctx)
    else:
        cls, cause, hint = _from_text(text, summary, ctx)

    where = f"{op} {key!r}" if key is not None else op
    message = f"backup target {ctx.url}: {where} failed: {cause}"
    if hint:
        message += f". {hint}"
    return cls(_scrub(message, ctx.secrets), key=key)


def _from_status(status: int, s3_code: str | None, cause: str,
                 ctx: _Ctx) -> tuple[type[BackupError], str, str]:
    if s3_code in _TRANSIENT_S3_CODES or status in (408, 409, 429) or (
            status >= 500 and status not in (501, 505)):
        return TransientBackupError, cause, "the server is busy or failing: retry later"
    if s3_code == "NoSuchBucket":
        return PermanentBackupError, cause, _bucket_hint(ctx)
    if s3_code == "RequestTimeTooSkewed":
        return PermanentBackupError, cause, "this machine's clock is off: fix it (NTP)"
    if status in (401, 403):
        return PermanentBackupError, cause, _credentials_hint(ctx, s3_code)
    if status == 404:
        return BackupNotFoundError, cause, ""
    if status == 412:
        return BackupConflictError, cause, ""
    return PermanentBackupError, cause, "the target refused the request"


def _from_text(text: str, summary: str, ctx: _Ctx) -> tuple[type[BackupError], str, str]:
    kind = _first(_HTTP_KIND_RE, text)
    os_code = _first(_OS_CODE_RE, text)
    if os_code is not None and kind is None:  # a local file error (LocalStore)
        return _from_errno(int(os_code), _first(_OS_MESSAGE_RE, text) or summary)
    found = [m.group(1) for r in _NET_DETAIL_RES for m in [r.search(text)] if m]
    detail = ": ".join(dict.fromkeys(found)) or None
    where = f" {ctx.endpoint}" if ctx.endpoint else ""
    tls = _TLS_RE.search(text)
    if tls:
        # rustls names the reason innermost: InvalidCertificate(Other(OtherError(Reason)))
        words = _WORD_RE.findall(text[tls.end():].split("}")[0])
        why = words[-1] if words else "invalid certificate"
        return (PermanentBackupError, f"TLS certificate rejected ({why})",
                "check the endpoint's certificate; note that obstore does not read "
                "AWS_CA_BUNDLE")
    if "builder error" in text:
        return (PermanentBackupError, "the HTTP client refused to build the request",
                "for an http:// endpoint set allow_http=True (or AWS_ALLOW_HTTP=true)")
    if kind == "Timeout":
        return (TransientBackupError, "the request timed out",
                f"check that the endpoint{where} is reachable; raise timeout_seconds "
                "for slow links")
    if kind is not None:  # Connect, Request, Interrupted, Decode, and Unknown (a pooled
        # connection closed under us shows up as kind Unknown, "connection was not ready")
        what = "cannot connect" if kind == "Connect" else "the connection failed"
        return (TransientBackupError, f"{what} ({detail or summary})",
                f"check that the endpoint{where} is up and reachable if this persists")
    return TransientBackupError, summary, ""


def _from_errno(code: int, detail: str) -> tuple[type[BackupError], str, str]:
    name = errno.errorcode.get(code, str(code))
    cause = f"{detail} ({name})"
    if code in _TRANSIENT_ERRNOS:
        return TransientBackupError, cause, "retry later"
    return PermanentBackupError, cause, _ERRNO_HINTS.get(code, "check the target directory")


def _bucket_hint(ctx: _Ctx) -> str:
    return (f"the bucket {ctx.bucket!r} does not exist: create it, or fix the bucket in "
            "the URL (and the endpoint/region)")


def _credentials_hint(ctx: _Ctx, s3_code: str | None) -> str:
    what = {"InvalidAccessKeyId": "the access key is unknown",
            "SignatureDoesNotMatch": "the secret key is wrong",
            "ExpiredToken": "the session token expired",
            "InvalidToken": "the session token is invalid"}.get(s3_code or "", "access denied")
    return (f"{what}: check access_key_id / secret_access_key / session_token (or "
            f"AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), the bucket "
            f"{ctx.bucket!r} and its policy")


def _status(text: str) -> int | None:
    m = _STATUS_RE.search(text)
    if not m:
        return None
    return int(m.group(1) or m.group(2))


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    m = pattern.search(text)
    return m.group(1) if m else None


def _is_range_past_end(exc: BackupError) -> bool:
    cause = exc.__cause__
    return (cause is not None and not isinstance(exc, BackupNotFoundError)
            and bool(_RANGE_RE.search(str(cause))))


def _scrub(message: str, secret_values: tuple[str, ...]) -> str:
    for value in secret_values:
        if len(value) >= 4:
            message = message.replace(value, _REDACTED)
    return message


# ---------------------------------------------------------------- opening


_MEMORY_STORES: dict[str, MemoryStore] = {}
_MEMORY_LOCK = threading.Lock()
_BUCKET_RE: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_MEMORY_NAME_RE: Final = re.compile(r"[A-Za-z0-9._-]+")


def forget_memory_targets(*names: str) -> None:
    """Drop the named process-global ``memory://`` stores (all of them if none is named)."""
    with _MEMORY_LOCK:
        if not names:
            _MEMORY_STORES.clear()
        for name in names:
            _MEMORY_STORES.pop(name, None)


def open_target(spec: str | TargetOptions) -> Target:
    """Open the target a URL or :class:`TargetOptions` names (see the module docstring).

    Raises ``InvalidTargetError`` for a malformed URL or options (nothing is contacted),
    and for ``file://`` a ``BackupError`` if the directory cannot be created.
    """
    options = TargetOptions(url=spec) if isinstance(spec, str) else spec
    if not isinstance(options, TargetOptions):
        raise InvalidTargetError(
            f"a backup target is a URL string or TargetOptions, not {type(spec).__name__}")
    url = options.url
    if not isinstance(url, str) or not url:
        raise InvalidTargetError("the backup target URL is empty; e.g. 'file:///var/backups/db'"
                                 " or 's3://bucket/prefix'")
    if any(c.isspace() or c == "\x00" for c in url):
        raise InvalidTargetError(
            f"backup target URL {_safe_url(url)!r} contains whitespace or NUL; "
            "percent-encode it (e.g. %20)")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidTargetError(f"backup target URL {_safe_url(url)!r} is malformed: "
                                 f"{exc}") from None
    scheme = parts.scheme.lower()
    if "@" in parts.netloc:
        raise InvalidTargetError(
            f"backup target URL {_safe_url(url)!r} holds user info: pass credentials as "
            "access_key_id / secret_access_key (or AWS_* variables), never in the URL")
    if parts.query or parts.fragment:
        raise InvalidTargetError(
            f"backup target URL {_safe_url(url)!r} has a query or fragment; options go in "
            "TargetOptions (endpoint=..., region=...)")
    if scheme not in ("file", "memory", "s3"):
        raise InvalidTargetError(
            f"backup target URL {_safe_url(url)!r} has an unknown scheme "
            f"{parts.scheme + ':' if parts.scheme else '(none)'}; use file:///abs/dir, "
            "s3://bucket/prefix or memory://name")
    if scheme == "s3":
        return _open_s3(options.with_environment(), parts.netloc, parts.path)
    _refuse_s3_options(options, scheme)
    if scheme == "file":
        return _open_file(parts.netloc, parts.path, url)
    return _open_memory(parts.netloc, parts.path)


def _refuse_s3_options(options: TargetOptions, scheme: str) -> None:
    given = [f.name for f in dataclasses.fields(options)
             if f.name not in ("url", "timeout_seconds", "connect_timeout_seconds",
                               "request_retries") and getattr(options, f.name) is not None]
    if given:
        raise InvalidTargetError(
            f"{', '.join(given)} only apply to s3:// targets, not {scheme}://; "
            "drop them or use an s3:// URL")


def _open_file(netloc: str, path: str, url: str) -> Target:
    example = "e.g. file:///var/backups/db"
    if netloc not in ("", "localhost"):
        raise InvalidTargetError(
            f"file target {_safe_url(url)!r} is not an absolute path (the part after "
            f"file:// names a host, {netloc!r}): write three slashes, {example}")
    local = unquote(path)
    if not local.startswith("/"):
        raise InvalidTargetError(
            f"file target {_safe_url(url)!r} needs an absolute path; {example}")
    root = os.path.normpath(local)
    if "\x00" in root:
        raise InvalidTargetError(f"file target {_safe_url(url)!r} contains NUL")
    safe = "file://" + quote(root)
    ctx = _Ctx(url=safe, endpoint=None, bucket=None, secrets=())
    target = _LocalTarget(root, ctx)
    _log.debug("opened backup target %s", safe)
    return target


def _open_memory(name: str, path: str) -> Target:
    if name and not _MEMORY_NAME_RE.fullmatch(name):
        raise InvalidTargetError(
            f"memory target name {name!r} may hold only letters, digits and '. _ -'; "
            "e.g. memory://tests-1")
    prefix = _url_prefix(path, f"memory://{name}")
    if name:
        with _MEMORY_LOCK:
            store = _MEMORY_STORES.setdefault(name, MemoryStore())
    else:
        store = MemoryStore()
    url = f"memory://{name}" + (f"/{prefix}" if prefix else "")
    ctx = _Ctx(url=url, endpoint=None, bucket=None, secrets=())
    return _StoreTarget(store, url=url, prefix=prefix, ctx=ctx,
                        description=url + ("" if name else " (private, not shared)"))


def _url_prefix(path: str, base: str) -> str:
    """The target prefix in a URL's path ('' for none), validated like a key."""
    prefix = unquote(path).strip("/")
    if prefix:
        problem = _key_problem(prefix)
        if problem:
            raise InvalidTargetError(
                f"the prefix {prefix!r} of backup target {base}/... {problem}; "
                f"prefixes follow the key rules: {_KEY_RULES}")
    return prefix


def _open_s3(options: TargetOptions, bucket: str, path: str) -> Target:
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise InvalidTargetError(
            f"S3 bucket name {bucket!r} is invalid: 3 to 63 characters of lowercase letters,"
            " digits, '.' and '-', starting and ending with a letter or digit; "
            "e.g. s3://my-backups/db1")
    prefix = _url_prefix(path, f"s3://{bucket}")
    url = f"s3://{bucket}" + (f"/{prefix}" if prefix else "")
    for name in ("timeout_seconds", "connect_timeout_seconds"):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise InvalidTargetError(f"{name}={value!r} must be a number of seconds > 0")
    retries = options.request_retries
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidTargetError(f"request_retries={retries!r} must be an int >= 0")
    endpoint = options.endpoint
    allow_http = options.allow_http
    if endpoint is not None:
        ep = urlsplit(endpoint)
        if ep.scheme not in ("http", "https") or not ep.netloc:
            raise InvalidTargetError(
                f"endpoint {_safe_url(endpoint)!r} must be an http:// or https:// URL, "
                "e.g. http://127.0.0.1:8333")
        if "@" in ep.netloc or ep.query or ep.fragment:
            raise InvalidTargetError(
                f"endpoint {_safe_url(endpoint)!r} may not hold user info, a query or a "
                "fragment; pass credentials as access_key_id / secret_access_key")
        if ep.scheme == "http":
            if allow_http is False:
                raise InvalidTargetError(
                    f"endpoint {_safe_url(endpoint)} is plain http but allow_http is "
                    "False (or AWS_ALLOW_HTTP=false); use https or allow http")
            allow_http = True  # an explicit http:// endpoint is the operator's choice
    if (options.access_key_id is None) != (options.secret_access_key is None):
        raise InvalidTargetError(
            "give both access_key_id and secret_access_key (or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY), or neither")

    client: ClientConfig = {
        "timeout": timedelta(seconds=options.timeout_seconds),
        "connect_timeout": timedelta(seconds=options.connect_timeout_seconds),
    }
    if allow_http is not None:
        client["allow_http"] = allow_http
    retry: RetryConfig = {"max_retries": retries}
    config: S3Config = {}
    if endpoint is not None:
        config["endpoint"] = endpoint.rstrip("/")
    if options.region is not None:
        config["region"] = options.region
    if options.virtual_hosted_style is not None:
        config["virtual_hosted_style_request"] = options.virtual_hosted_style
    provider = None
    if options.access_key_id is not None and options.secret_access_key is not None:
        provider = _StaticCredentials(options.access_key_id, options.secret_access_key,
                                      options.session_token)
    ctx = _Ctx(url=url, endpoint=_safe_url(endpoint) if endpoint else None,
               bucket=bucket, secrets=options._secrets())
    with _translating(ctx, "open"):
        store = S3Store(bucket, config=config, client_options=client, retry_config=retry,
                        credential_provider=provider)
    description = dataclasses.replace(options, allow_http=allow_http).describe()
    target = _StoreTarget(store, url=url, prefix=prefix, ctx=ctx, description=description)
    _log.debug("opened backup target %s", description)
    return target


class _StaticCredentials:
    """obstore credential provider for fixed keys (keeps them out of ``store.config``)."""

    __slots__ = ("_key", "_secret", "_token")

    def __init__(self, key: str, secret: str, token: str | None) -> None:
        self._key, self._secret, self._token = key, secret, token

    def __call__(self) -> S3Credential:
        return {"access_key_id": self._key, "secret_access_key": self._secret,
                "token": self._token, "expires_at": None}

    def __repr__(self) -> str:
        return "_StaticCredentials(<redacted>)"


__all__ = [
    "DEFAULT_PART_SIZE",
    "MIN_PART_SIZE",
    "ObjectInfo",
    "Target",
    "TargetOptions",
    "forget_memory_targets",
    "open_target",
    "validate_key",
    "validate_prefix",
]
