"""The chain of log-backup segments a restore replays, planned and checked before use.

:func:`plan_chain` reads a database's epoch claims from the target, takes the newest
epoch (litestream#631: never an older timeline by default) and follows its epoch
history back: epoch ``e`` contributes its segments for txs ``first_tx(e) ..
first_tx(e+1) - 1`` (what an older epoch shipped past the fork is not on the
lineage and is left out). Contiguity of the whole chain is checked from the names
before anything is downloaded (litestream#627); each segment is checked in full
(checksums, records) when :func:`fetch_segments` downloads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import BackupError, BackupNotFoundError, DatabaseMismatchError, EngineError
from ..model import EpochRecord
from . import keys
from .segment import SegmentHeader, decode_segment
from .targets import Target


class BackupChainError(BackupError):
    """The backup's segments do not form a whole chain (a gap, a missing or foreign
    segment); the message names what is missing."""


@dataclass(frozen=True)
class ChainLink:
    """One segment of the chain and the part of it on the lineage (``use_to``)."""

    key: str
    epoch: int
    first_tx: int
    last_tx: int
    use_to: int  # last tx of this segment that is on the lineage (<= last_tx)
    use_from: int = 0  # first tx used (> first_tx only right after a base snapshot)


@dataclass(frozen=True)
class ChainBase:
    """A base snapshot the chain starts from (the state at ``tx_id``), when the backup
    does not hold every tx before it."""

    key: str
    epoch: int
    tx_id: int


@dataclass(frozen=True)
class Chain:
    """The segments to replay, in order, the lineage's epoch history, and the base
    snapshot they start from (None: they start at tx 1)."""

    db_id: str
    newest_epoch: int
    history: tuple[EpochRecord, ...]
    links: tuple[ChainLink, ...]
    gap: str | None = None
    """Why the chain ends where it does when the backup holds more after a hole (the
    links stop before it; restoring past ``last_tx`` is impossible)."""
    base: ChainBase | None = None

    @property
    def first_tx(self) -> int:
        """The first tx the chain can restore to (its base, or the first segment's)."""
        if self.base is not None:
            return self.base.tx_id
        return self.links[0].first_tx if self.links else 0

    @property
    def last_tx(self) -> int:
        if self.links:
            return self.links[-1].use_to
        return self.base.tx_id if self.base is not None else 0


def databases(target: Target) -> list[str]:
    """The db_ids that have claimed an epoch in ``target``."""
    found = set()
    for info in target.list(""):
        head, _, rest = info.key.partition("/")
        if keys.is_db_id(head) and rest.startswith("epochs/"):
            found.add(head)
    return sorted(found)


def choose_database(target: Target, db_id: str | None) -> str:
    """``db_id`` checked against the target, or the only database in it."""
    found = databases(target)
    if db_id is not None:
        if db_id not in found:
            raise DatabaseMismatchError(
                f"{target.url} holds no backup of database {db_id}; it holds: "
                f"{', '.join(found) or 'nothing'}")
        return db_id
    if not found:
        raise BackupNotFoundError(f"{target.url} holds no log backup of any database")
    if len(found) > 1:
        raise DatabaseMismatchError(
            f"{target.url} holds backups of {len(found)} databases: {', '.join(found)}. "
            "Choose one with --db-id ID.")
    return found[0]


def claimed_epochs(target: Target, db_id: str) -> list[int]:
    """The epochs of ``db_id`` claimed in ``target`` (names only)."""
    return sorted(e for info in target.list(keys.epochs_prefix(db_id))
                  if (e := keys.parse_claim_key(info.key, db_id)) is not None)


def _claims(target: Target, db_id: str) -> dict[int, dict[str, object]]:
    out: dict[int, dict[str, object]] = {}
    for info in target.list(keys.epochs_prefix(db_id)):
        e = keys.parse_claim_key(info.key, db_id)
        if e is None:
            continue
        try:
            body = json.loads(target.get(info.key))
            if not isinstance(body, dict) or body.get("epoch") != e:
                raise ValueError("not a claim of this epoch")
        except ValueError as exc:
            raise BackupChainError(f"epoch claim {info.key} in {target.url} is unreadable "
                                   f"({exc})", key=info.key) from None
        out[e] = body
    return out


Segment = tuple[int, int, str]  # (first_tx, last_tx, key)


def segments_of(target: Target, db_id: str, epoch: int) -> tuple[list[Segment],
                                                               list[tuple[int, str]]]:
    """The segments and base snapshots (``(tx, key)``) of one epoch, from one listing."""
    segs: list[Segment] = []
    bases: list[tuple[int, str]] = []
    for info in target.list(keys.log_prefix(db_id, epoch)):
        r = keys.parse_segment_key(info.key, db_id, epoch)
        if r is not None:
            segs.append((r[0], r[1], info.key))
        b = keys.parse_base_key(info.key, db_id, epoch)
        if b is not None:
            bases.append((b, info.key))
    return sorted(segs), sorted(bases)


def checkpoint_of(target: Target, db_id: str, epoch: int) -> dict[str, object] | None:
    """The epoch's ``checkpoint.json`` (None if absent or unreadable: a hint only)."""
    try:
        body = json.loads(target.get(keys.checkpoint_key(db_id, epoch)))
    except (BackupNotFoundError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def best_run(segs: list[Segment], start: int, *, end: int | None = None,
             goal: str | None = None, mid: bool = False) -> list[Segment]:
    """The run of contiguous segments from tx ``start`` that reaches ``goal`` (the key a
    checkpoint names) if one does, else the one that reaches furthest (up to ``end``).

    Segments that overlap the run but are not on it (orphans a fenced writer left
    before it stopped) are passed over, never used. ``mid``: the first segment may
    start before ``start`` (the run continues a base snapshot).
    """
    by_first: dict[int, list[tuple[int, str]]] = {}
    for f, last, k in segs:
        by_first.setdefault(f, []).append((last, k))
    # best[f] = (reaches goal, reach tx, chosen (last, key)) for a run starting at f
    best: dict[int, tuple[bool, int, tuple[int, str]]] = {}

    def value(last: int, k: str) -> tuple[bool, int]:
        if end is not None and last >= end:
            return k == goal, end
        nxt = best.get(last + 1)
        if nxt is None:
            return k == goal, last
        return k == goal or nxt[0], nxt[1]

    for f in sorted(by_first, reverse=True):
        best[f] = max(((*value(last, k), (last, k)) for last, k in by_first[f]),
                      key=lambda v: (v[0], v[1]))
    run: list[Segment] = []
    if mid:
        starts = [(f, last, k) for f, last, k in segs if f <= start <= last]
        if not starts:
            return run if start not in best else best_run(segs, start, end=end, goal=goal)
        f, last, k = max(starts, key=lambda c: value(c[1], c[2]))
        run.append((f, last, k))
        tx = last + 1
    else:
        tx = start
    while tx in best and (end is None or tx <= end):
        _g, _r, (last, k) = best[tx]
        run.append((tx, last, k))
        tx = last + 1
    return run


def plan_chain(target: Target, db_id: str, *, epoch: int | None = None) -> Chain:
    """The checked chain of ``db_id``'s newest epoch (or ``epoch``) in ``target``."""
    claims = _claims(target, db_id)
    if not claims:
        raise BackupNotFoundError(f"{target.url} holds no epoch of database {db_id}")
    newest = max(claims) if epoch is None else epoch
    if newest not in claims:
        raise BackupNotFoundError(f"{target.url} holds no epoch {newest} of {db_id}; it holds "
                                  f"epochs {', '.join(map(str, sorted(claims)))}")
    try:
        raw = claims[newest]["history"]
        if not isinstance(raw, list):
            raise TypeError("history is not a list")
        history = tuple(sorted((EpochRecord.from_json(d) for d in raw),
                               key=lambda r: r.first_tx))
    except (KeyError, TypeError, ValueError) as exc:
        raise BackupChainError(f"the claim of epoch {newest} in {target.url} has no readable "
                               f"epoch history ({exc})") from None
    lineage = [h for h in history if h.epoch <= newest]
    links: list[ChainLink] = []
    gap: str | None = None
    base: ChainBase | None = None
    expect = 1
    for i, h in enumerate(lineage):
        end = lineage[i + 1].first_tx - 1 if i + 1 < len(lineage) else None
        segs, bases = segments_of(target, db_id, h.epoch)
        ck = checkpoint_of(target, db_id, h.epoch)
        goal = str(ck["segment"]) if ck and isinstance(ck.get("segment"), str) else None
        healed = False
        for b, key in reversed(bases):
            # A base heals a chain that does not reach it (a gap, or txs never shipped);
            # a chain that does reach it is kept whole (it carries the history).
            if gap is not None or expect <= b:
                links, gap, expect, healed = [], None, b + 1, True
                base = ChainBase(key, h.epoch, b)
            break
        if gap is not None:
            continue  # a later epoch's base may still heal it
        for first, last, key in best_run(segs, expect, end=end, goal=goal, mid=healed):
            use_to = last if end is None else min(last, end)
            links.append(ChainLink(key, h.epoch, first, last, use_to, max(first, expect)))
            expect = use_to + 1
        later = [f for f, _l, _k in segs if f > expect and (end is None or f <= end)]
        raw_tx = ck.get("tx_id") if ck else None
        shipped_to = raw_tx if isinstance(raw_tx, int) else 0
        if end is None and shipped_to >= expect and not later:
            later = [shipped_to + 1]  # the checkpoint says more was shipped: a lost tail
        if later:
            nxt = min(later)
            gap = (f"the log backup of {db_id} in {target.url} has a gap: txs "
                   f"{expect}..{nxt - 1} (epoch {h.epoch}) are missing"
                   + (f" (after {links[-1].key}); it can be restored up to tx "
                      f"{expect - 1} (--to-tx {expect - 1})" if links else
                      ": they were never shipped, so the state cannot be rebuilt from "
                      "the log backup alone"))
            continue
        if end is not None and expect <= end:
            # the older epoch did not ship up to its fork: the lineage is broken here
            gap = (f"epoch {h.epoch} of {db_id} in {target.url} was shipped only up to tx "
                   f"{expect - 1}, but epoch {lineage[i + 1].epoch} forked from it at tx "
                   f"{end + 1}: txs {expect}..{end} are not in the backup")
    return Chain(db_id=db_id, newest_epoch=newest, history=tuple(lineage), links=tuple(links),
                 gap=gap, base=base)


def fetch_segments(target: Target, chain: Chain, *, to_tx: int | None = None,
                   on_segment: Callable[[int], None] | None = None
                   ) -> Iterator[tuple[SegmentHeader, list[tuple[int, bytes]]]]:
    """Download, verify and yield each segment's header and its records on the lineage
    (cut at ``to_tx``). Fails fast naming the first missing or corrupt segment."""
    for i, link in enumerate(chain.links):
        if to_tx is not None and link.first_tx > to_tx:
            return
        try:
            data = target.get(link.key)
        except BackupNotFoundError:
            raise BackupChainError(f"segment {link.key} disappeared from {target.url} while "
                                   "restoring", key=link.key) from None
        try:
            h, records = decode_segment(data, f"{target.url}/{link.key}")
        except EngineError as exc:
            raise BackupChainError(str(exc), key=link.key) from None
        if (h.db_id, h.epoch, h.first_tx, h.last_tx) != (chain.db_id, link.epoch,
                                                         link.first_tx, link.last_tx):
            raise BackupChainError(f"segment {link.key} holds txs {h.first_tx}..{h.last_tx} of "
                                   f"epoch {h.epoch} of {h.db_id}: not what its name says",
                                   key=link.key)
        stop = link.use_to if to_tx is None else min(link.use_to, to_tx)
        if on_segment is not None:
            on_segment(i)
        yield h, [(t, r) for t, r in records if link.use_from <= t <= stop]
