"""Building a transaction: input checks and :class:`TransactionBuilder`.

Every event that enters the engine passes :func:`check_event` here, whether through
``db.append``, ``tx.append`` or ``tx.extend``: one fast path (plain ASCII names and
``bytes`` data within the limits, tested with C-level operations only) and one slow
path that names what is wrong. Nothing is written until the builder hands a whole
:class:`~engine.commit.Intent` to the commit pipeline.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from types import TracebackType
from typing import Any

from . import formats
from .commit import Intent
from .errors import InvalidEventError
from .state import TRACK_PREFIX

_ASCII_NAME_MAX = formats.MAX_NAME_BYTES  # an ASCII name's bytes == its length
_ASCII_TYPE_MAX = formats.MAX_TYPE_BYTES
_MAX_DATA = formats.MAX_EVENT_BYTES
_str, _bytes, _type = builtins.str, builtins.bytes, builtins.type
_SEQUENCES = frozenset((tuple, list))  # what an event triple may be
_TRIPLE = {3}
_first, _second, _third = itemgetter(0), itemgetter(1), itemgetter(2)
Event3 = tuple[str, str, bytes]


def _check_name(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidEventError(f"{what} must be a str, got {type(value).__name__}")
    if not value:
        raise InvalidEventError(f"{what} must not be empty")
    if "\0" in value:
        raise InvalidEventError(f"{what} {value[:40]!r} contains a NUL character")
    if what == "stream" and TRACK_PREFIX in value:
        raise InvalidEventError(f"stream {value[:40]!r} contains U+0001, which the engine "
                                "reserves (tracking entries)")
    try:
        n = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidEventError(f"{what} {value[:40]!r} is not encodable as UTF-8 "
                                f"({exc.reason})") from None
    if n > limit:
        raise InvalidEventError(f"{what} is {n} bytes of UTF-8; the limit is {limit}")
    return str(value)


def _check_event_slow(stream: object, etype: object, data: object) -> Event3:
    """Full validation of one event; returns normalised values or raises naming the fault."""
    s = _check_name(stream, "stream", formats.MAX_NAME_BYTES)
    t = _check_name(etype, "type", formats.MAX_TYPE_BYTES)
    if not isinstance(data, bytes):
        raise InvalidEventError(f"data must be bytes, got {type(data).__name__} "
                                f"(stream {s!r}); encode it first")
    if len(data) > formats.MAX_EVENT_BYTES:
        raise InvalidEventError(f"event data is {len(data)} bytes; the limit is "
                                f"{formats.MAX_EVENT_BYTES} (stream {s!r})")
    return s, t, bytes(data)


def check_event(stream: Any, etype: Any, data: Any) -> Event3:
    """One event's ``(stream, type, data)``, checked: the fast path (plain ASCII names
    and ``bytes`` data within the limits, returned unchanged) or the full check.
    ``TransactionBuilder.append`` holds an inlined copy of the fast predicate (its
    per-event hot path); tests/database/test_fast_path.py keeps the two the same."""
    if (
        type(stream) is _str and type(etype) is _str and type(data) is _bytes
        and 0 < len(stream) <= _ASCII_NAME_MAX and 0 < len(etype) <= _ASCII_TYPE_MAX
        and stream.isascii() and etype.isascii() and "\0" not in stream
        and "\1" not in stream and "\0" not in etype and len(data) <= _MAX_DATA
    ):
        return stream, etype, data
    return _check_event_slow(stream, etype, data)


def check_expected(expected: object) -> int:
    """An ``expected_version`` argument, checked (an int in 0..2**64-1: versions are u64)."""
    if type(expected) is not int or not 0 <= expected <= formats.U64_MAX:
        raise InvalidEventError(f"expected_version must be an int in 0..2**64-1, got "
                                f"{expected!r}")
    return expected


def check_version(version: object) -> int:
    """A caller-chosen event ``version``, checked (an int in 1..2**64-1)."""
    if type(version) is not int or not 1 <= version <= formats.U64_MAX:
        raise InvalidEventError(f"version must be an int in 1..2**64-1, got {version!r}")
    return version


def check_tracking(name: object, position: object) -> tuple[str, int]:
    """A tracking entry ``(name, position)``, checked: a name as a stream's (non-empty
    UTF-8 without NUL, at most MAX_NAME_BYTES), a position in 1..2**64-1."""
    n = _check_name(name, "tracking name", formats.MAX_NAME_BYTES)
    if type(position) is not int or not 1 <= position <= formats.U64_MAX:
        raise InvalidEventError(f"tracked position must be an int in 1..2**64-1, got "
                                f"{position!r}")
    return n, position


def _names_ok(names: Sequence[object], limit: int, streams: bool) -> bool:
    """True if every name is a non-empty ASCII str without NUL (stream names: nor
    U+0001) of at most ``limit`` chars.

    C-level passes only: one join (which also rejects non-str), an O(1) isascii, a
    NUL search (and a U+0001 one), an empty-name search and one length pass.
    """
    try:
        joined = "".join(names)  # type: ignore[arg-type]
    except TypeError:  # not all str: let the slow path name the culprit
        return False
    return (joined.isascii() and "\0" not in joined and not (streams and "\1" in joined)
            and "" not in names and max(map(len, names)) <= limit)  # type: ignore[arg-type]


def check_events(events: Iterable[Event3]) -> tuple[list[str], list[str], list[bytes],
                                                    int]:
    """Bulk check of ``(stream, type, data)`` triples: ``(streams, types, datas, bytes)``.

    All or nothing: the first bad triple raises and nothing is returned. The fast path
    makes C-level passes over the columns; the per-event path runs only when one fails.
    """
    if not isinstance(events, list | tuple):
        try:
            events = list(events)  # once: a generator cannot be walked twice
        except TypeError as exc:
            raise InvalidEventError(f"events must be an iterable of (stream, type, data) "
                                    f"triples: {exc}") from None
    # Columns by C-level passes that allocate no tracked objects per event: a
    # transpose with zip(*events) makes one iterator per event, and at a million
    # streams the collections that churn triggers cost more than the transpose saves
    # (issue 12: tx.extend was 1.8x slower than a loop of tx.append there).
    if not (set(map(_type, events)) <= _SEQUENCES and set(map(len, events)) == _TRIPLE):
        if not events:
            return [], [], [], 0
        for i, ev in enumerate(events):  # name the first that is not a triple
            if not isinstance(ev, tuple | list) or len(ev) != 3:
                raise InvalidEventError(
                    f"events[{i}] must be a (stream, type, data) triple, got {ev!r:.60}")
        # else: triples of subclasses of tuple or list (named tuples): the same columns
    streams = list(map(_first, events))
    types = list(map(_second, events))
    datas = list(map(_third, events))
    size = 0
    if not (_names_ok(streams, _ASCII_NAME_MAX, True)
            and _names_ok(types, _ASCII_TYPE_MAX, False)
            and set(map(type, datas)) == {bytes}
            and ((size := sum(map(len, datas))) <= _MAX_DATA
                 or max(map(len, datas)) <= _MAX_DATA)):
        checked = [_check_event_slow(s, t, d) for s, t, d in zip(streams, types, datas,
                                                                  strict=True)]
        streams = list(map(_first, checked))
        types = list(map(_second, checked))
        datas = list(map(_third, checked))
        size = sum(map(len, datas))
    return streams, types, datas, size


def check_tx_size(events: int, data_bytes: int) -> None:
    """Refuse a transaction whose record would pass the format's limits (nothing written)."""
    if events > formats.MAX_TX_EVENTS:
        raise InvalidEventError(f"transaction has {events} events; the limit is "
                                f"{formats.MAX_TX_EVENTS}. Split it.")
    if data_bytes > formats.MAX_TX_BYTES - formats.TX_EVENT_BUDGET_BYTES * events:
        raise InvalidEventError(f"transaction holds {data_bytes} bytes of data; the limit "
                                f"is about {formats.MAX_TX_BYTES}. Split it.")


class TransactionBuilder:
    """``with db.transaction() as tx``: events appended here commit atomically at exit.

    Raising inside the block (or a failed commit) leaves no trace in log or state.
    After the block, ``tx.tx_id`` is the committed tx id (None if nothing was appended).
    Not thread-safe: one thread builds one transaction.
    """

    __slots__ = ("_bytes", "_commit", "_datas", "_done", "_expects", "_fixed", "_streams",
                 "_tracking", "_types", "positions", "tx_id")

    def __init__(self, commit: Callable[[Intent], int]) -> None:
        self._commit = commit  # the database's commit entry point
        self._streams: list[str] = []
        self._types: list[str] = []
        self._datas: list[bytes] = []
        self._expects: list[tuple[int, int]] = []
        self._fixed: list[tuple[int, int]] = []
        self._tracking: list[tuple[str, int]] = []
        self._bytes = 0
        self._done = False
        self.tx_id: int | None = None
        # After the block: the global positions of its events, in append order.
        self.positions: range = range(0)

    def append(self, stream: str, type: str, data: bytes,
               expected_version: int | None = None, *, version: int | None = None) -> None:
        """Add one event; ``expected_version`` is the stream's version before it;
        ``version`` chooses the event's version (it must exceed the stream's version
        before it, else VersionConflictError at commit: see README, "Versions")."""
        if self._done:
            raise InvalidEventError("this transaction has already finished")
        # Everything is checked before anything is added: a refused event leaves no
        # version or expectation behind for the next one.
        fixed = None if version is None else check_version(version)
        # check_event's fast path, inlined: this is the per-event hot path of a batch,
        # and the call alone cost ~25% of it (bench/test_bench_core.py). The predicate
        # must stay identical to check_event's (tests/database/test_fast_path.py).
        if not (
            _type(stream) is _str and _type(type) is _str and _type(data) is _bytes
            and 0 < len(stream) <= _ASCII_NAME_MAX and 0 < len(type) <= _ASCII_TYPE_MAX
            and stream.isascii() and type.isascii() and "\0" not in stream
            and "\1" not in stream and "\0" not in type and len(data) <= _MAX_DATA
        ):
            stream, type, data = _check_event_slow(stream, type, data)
        if expected_version is not None:
            self._expects.append((len(self._streams), check_expected(expected_version)))
        if fixed is not None:
            self._fixed.append((len(self._streams), fixed))
        self._streams.append(stream)
        self._types.append(type)
        self._datas.append(data)
        self._bytes += len(data)

    def extend(self, events: Iterable[Event3]) -> None:
        """Bulk add of ``(stream, type, data)`` triples (the fast path).

        All or nothing: if one triple is invalid, none of this call's are added.
        """
        if self._done:
            raise InvalidEventError("this transaction has already finished")
        streams, types, datas, size = check_events(events)
        self._streams.extend(streams)
        self._types.extend(types)
        self._datas.extend(datas)
        self._bytes += size

    def track(self, name: str, position: int) -> None:
        """Record, atomically with this transaction's events, that the consumer
        ``name`` has processed everything up to ``position`` of its source (an
        eventsourcing tracking record, a projection's checkpoint). Takes no event
        position; ``db.tracked(name)`` answers it. ``position`` must exceed the name's
        last tracked one (else VersionConflictError at commit)."""
        if self._done:
            raise InvalidEventError("this transaction has already finished")
        self._tracking.append(check_tracking(name, position))

    def __enter__(self) -> TransactionBuilder:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._done = True
        if et is not None or not (self._streams or self._tracking):
            return  # rolled back: nothing was written anywhere
        check_tx_size(len(self._streams), self._bytes)
        w = Intent(self._streams, self._types, self._datas, self._expects, self._bytes,
                   self._fixed, self._tracking)
        self.tx_id = self._commit(w)
        self.positions = range(w.first_position, w.first_position + len(self._streams))
