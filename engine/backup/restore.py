"""``engine-admin restore``: rebuild a database from what a log backup holds.

Follows the newest epoch (``chain.plan_chain``), checks the whole chain's contiguity
from the names, then downloads and verifies every segment it needs *before* building
anything (a broken backup fails fast, naming the segment). The database is built in
a temporary directory beside ``DIR`` and renamed into place only when whole; the
target is only read. The restored log holds the records of every epoch on the
lineage with their true epochs; the restored database is a fork: it opens a new
epoch whose first tx follows the last one restored.

Point in time: ``to_tx`` stops after that tx; ``to_time`` after the last tx
committed at or before that time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .. import formats, layout
from ..database import Database
from ..errors import EngineError, HistoryLostError, InvalidEventError, os_errors_translated
from ..files import fs
from ..lineage import base_checksum_entry
from ..log import LogStore
from ..model import EpochRecord
from ..native import peek_tx_header
from ..snapshot import load_snapshot
from .chain import BackupChainError, Chain, choose_database, fetch_segments, plan_chain
from .segment import decode_segment, read_segment_header
from .targets import Target, TargetOptions, open_target

# progress(done, total, what)
Progress = Callable[[int, int, str], None]
APPEND_BATCH = 256
_SPOOL = struct.Struct("<QI")  # spool file entry: tx_id, record length


@dataclass
class RestoreReport:
    """What a restore rebuilt, from where, and the new epoch it opened."""

    path: str
    target: str
    db_id: str
    restored_epoch: int
    epochs: list[int]
    first_tx: int
    last_tx: int
    last_position: int
    last_time: float | None
    new_epoch: int
    segments: int
    seconds: float
    to_tx: int | None = None
    to_time: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"ok": True, "path": self.path, "from": self.target, "db_id": self.db_id,
                "restored_epoch": self.restored_epoch, "epochs": self.epochs,
                "first_tx": self.first_tx, "last_tx": self.last_tx,
                "last_position": self.last_position, "last_time": self.last_time,
                "new_epoch": self.new_epoch, "segments": self.segments,
                "seconds": round(self.seconds, 3), "to_tx": self.to_tx,
                "to_time": self.to_time, "notes": self.notes}


def check_point(to_tx: int | None, to_time: float | None) -> None:
    """Refuse a malformed point in time (both given, or a tx id below 1)."""
    if to_tx is not None and to_time is not None:
        raise InvalidEventError("give --to-tx or --to-time, not both")
    if to_tx is not None and (type(to_tx) is not int or to_tx < 1):
        raise InvalidEventError(f"--to-tx must be a tx id >= 1, got {to_tx!r}")


def _check_destination(path: str) -> None:
    if os.path.lexists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise EngineError(f"{path} exists and is not an empty directory; restore builds a new "
                          "database and never writes into an existing one. Give a new path.")


def _cut_at_time(target: Target, chain: Chain, to_time: float) -> int:
    """The last tx committed at or before ``to_time`` (0 if none): from segment headers,
    then the records of the one segment the time falls in."""
    best = 0
    for link in chain.links:
        head = target.get_range(link.key, 0, formats.SEG_HEADER_SIZE)
        h = read_segment_header(head, link.key)
        if h.first_ts_ns / 1e9 > to_time:
            break
        if h.last_ts_ns / 1e9 <= to_time:
            best = link.use_to
            continue
        _h, records = decode_segment(target.get(link.key), link.key)
        for tx_id, rec in records:
            if tx_id < link.use_from:
                continue
            if tx_id > link.use_to or peek_tx_header(rec)[2] / 1e9 > to_time:
                break
            best = tx_id
        break
    return best


def cut_at_time(target: Target, chain: Chain, to_time: float) -> int:
    """The last tx of ``chain`` committed at or before ``to_time`` (0 if none)."""
    return _cut_at_time(target, chain, to_time)


def spool_chain(target: Target, chain: Chain, *, stop: int, directory: str,
                progress: Progress | None = None, total: int = 0) -> tuple[list[str], int]:
    """Download and verify every segment of ``chain`` up to ``stop`` into files in
    ``directory`` (one per segment: ``[u64 tx][u32 len][record]`` repeated); returns
    the files and the last event position. Nothing is used before all are verified."""
    paths: list[str] = []
    last_pos = 0
    needed = Chain(chain.db_id, chain.newest_epoch, chain.history,
                   tuple(link for link in chain.links if link.first_tx <= stop))
    for i, (_h, records) in enumerate(fetch_segments(target, needed, to_tx=stop)):
        p = os.path.join(directory, f"{i:08d}")
        with open(p, "wb") as f:
            for tx_id, rec in records:
                f.write(_SPOOL.pack(tx_id, len(rec)))
                f.write(rec)
        if records:
            _t, _e, _ts, first, n = peek_tx_header(records[-1][1])
            last_pos = int(first + n - 1)
        paths.append(p)
        if progress:
            progress(i + 1, total or len(needed.links), "download and verify")
    return paths, last_pos


def spooled(path: str) -> Iterator[tuple[int, bytes]]:
    """The ``(tx_id, record)`` pairs of one spool file."""
    with open(path, "rb") as f:
        while head := f.read(_SPOOL.size):
            tx_id, n = _SPOOL.unpack(head)
            yield tx_id, f.read(n)


def last_position(target: Target, chain: Chain) -> int:
    """The last event position of the chain (from the last segment's header)."""
    link = chain.links[-1]
    h = read_segment_header(target.get_range(link.key, 0, formats.SEG_HEADER_SIZE), link.key)
    if link.use_to != h.last_tx:
        _h, records = decode_segment(target.get(link.key), link.key)
        rec = dict(records)[link.use_to]
        _t, _e, _ts, first, n = peek_tx_header(rec)
        return int(first + n - 1)
    return h.last_position


# A restore whose log holds at least this many txs or spooled bytes is snapshotted
# before it is published, so later opens load the snapshot instead of replaying it all
# (250k events in 50k txs replay in 0.33-0.47 s per open; 100 txs of 1000 events in
# ~0.04 s).
SNAPSHOT_MIN_TXS = 10_000
SNAPSHOT_MIN_BYTES = 32 << 20


def restore(url: str | TargetOptions | Target, path: str, *, to_tx: int | None = None,
            to_time: float | None = None, db_id: str | None = None,
            progress: Progress | None = None) -> RestoreReport:
    """Restore the database backed up in ``url`` into the new directory ``path``.

    Raises :class:`InvalidEventError` for a bad ``to_tx``/``to_time`` (outside the
    backup), :class:`EngineError` for a non-empty ``path``, ``BackupChainError`` naming
    a missing or corrupt segment, ``DatabaseMismatchError`` when the target holds
    several databases and ``db_id`` does not choose one. Nothing is left behind on
    failure, and the target is only read.
    """
    t0 = time.monotonic()
    path = os.path.abspath(path)
    check_point(to_tx, to_time)
    _check_destination(path)
    target = url if isinstance(url, Target) else open_target(url)
    db = choose_database(target, db_id)
    chain = plan_chain(target, db)
    if not chain.links and chain.base is None:
        raise BackupChainError(chain.gap) if chain.gap else EngineError(
            f"{target.url} holds no transactions of database {db}")
    if to_time is not None:
        to_tx = _cut_at_time(target, chain, to_time)  # within the run before any gap
        if chain.gap is not None and to_tx == chain.last_tx:
            raise BackupChainError(f"{chain.gap}; --to-time {_iso(to_time)} may lie past it")
        if to_tx == 0:
            raise InvalidEventError(
                f"--to-time {_iso(to_time)} is before the first transaction in the backup "
                f"of {db}")
    if chain.gap is not None and (to_tx is None or to_tx > chain.last_tx):
        raise BackupChainError(chain.gap)
    if to_tx is not None and not chain.first_tx <= to_tx <= chain.last_tx:
        raise InvalidEventError(f"--to-tx {to_tx} is outside the backup, which holds txs "
                                f"{chain.first_tx}..{chain.last_tx} of database {db}")
    stop = chain.last_tx if to_tx is None else to_tx
    needed = [link for link in chain.links if link.first_tx <= stop]
    if chain.base is not None and stop < chain.base.tx_id:
        raise InvalidEventError(f"--to-tx {stop} is before tx {chain.base.tx_id}, where the "
                                f"backup of {db} starts (from a snapshot)")

    with os_errors_translated(f"cannot restore into {path}", directory=os.path.dirname(path),
                              consequence="nothing was restored (the staging directory "
                              "is removed)"):
        parent = os.path.dirname(path) or "."
        os.makedirs(parent, exist_ok=True)
        stage = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.restore-", dir=parent)
        try:
            spool = os.path.join(stage, "segments")
            os.mkdir(spool)
            # 1. download and verify everything needed before building anything
            base_tx = base_pos = 0
            last_epoch = needed[-1].epoch if needed else 0
            base_checksum: int | None = None
            if chain.base is not None:
                base_tx, base_pos, base_checksum = _fetch_base(target, chain, db, stage)
                last_epoch = max(last_epoch, chain.base.epoch)
            paths, last_pos = spool_chain(target, chain, stop=stop, directory=spool,
                                          progress=progress, total=2 * len(needed))
            if not paths:
                last_pos = base_pos
            # 2. build the log: every record with its true epoch; then the fork's new epoch
            new_epoch = chain.newest_epoch + 1
            history = [h for h in chain.history if h.epoch <= last_epoch]
            history.append(EpochRecord(new_epoch, stop + 1, last_pos + 1, time.time(),
                                       f"restored from {target.url} at tx {stop}"))
            # a long restored log is snapshotted, or every open would replay all of it
            long_log = (stop - base_tx >= SNAPSHOT_MIN_TXS
                        or sum(map(os.path.getsize, paths)) >= SNAPSHOT_MIN_BYTES)
            build_log(stage, db_id=db, new_epoch=new_epoch, base_tx=base_tx, base_pos=base_pos,
                      history=history, paths=paths, progress=progress, done=len(needed),
                      total=2 * len(needed), base_checksum=base_checksum)
            shutil.rmtree(spool)
            # 3. open it (replays and checks every record), snapshot the state if the
            # log is long, close. A short log is left to be replayed by each open (at
            # most ~0.1 s): its snapshot would cost a restore more than that (~35% of
            # one at 100k events in 100 txs).
            last_time = open_and_check(stage, stop, snapshot=long_log)
            # 4. publish: rename the whole directory into place
            publish(stage, path)
        except BaseException:
            with contextlib.suppress(OSError):
                shutil.rmtree(stage)
            raise
        return RestoreReport(
            path=path, target=target.url, db_id=db, restored_epoch=chain.newest_epoch,
            epochs=sorted({link.epoch for link in needed}), first_tx=chain.first_tx, last_tx=stop,
            last_position=last_pos, last_time=last_time, new_epoch=new_epoch,
            segments=len(needed), seconds=time.monotonic() - t0, to_tx=to_tx, to_time=to_time)


def build_log(stage: str, *, db_id: str, new_epoch: int, base_tx: int, base_pos: int,
              history: list[EpochRecord], paths: list[str], progress: Progress | None = None,
              done: int = 0, total: int = 0, base_checksum: int | None = None) -> None:
    """Create ``stage``'s log for ``new_epoch`` starting after ``base_tx`` (a snapshot in
    ``stage``'s snapshots/, or 0) and append the spooled records of ``paths``.
    ``base_checksum`` is that snapshot's ``tx_checksum`` (its lineage proof, kept in the
    log's meta: docs/FORMAT.md section 3)."""
    store = LogStore(layout.log_dir(stage), sync="none")
    try:
        store.initialise(db_id, new_epoch, base_tx, base_pos, history, durable=False)
        entry = base_checksum_entry(base_checksum) if base_tx else None
        if entry is not None:
            store.put_meta(formats.META_BASE_CHECKSUM, entry)
        for i, p in enumerate(paths):
            for batch in _batches(spooled(p)):
                store.append(batch)
            if progress:
                progress(done + i + 1, total, "replay")
        store.sync()
    finally:
        store.close()


def open_and_check(stage: str, stop: int, *, snapshot: bool = True) -> float | None:
    """Open the database built in ``stage`` (replays and checks every record), check it
    ends at ``stop``, snapshot the state (unless ``snapshot`` is false), close; returns
    the commit time of ``stop`` (None when only the snapshot holds it)."""
    with Database(stage, create=False) as restored:
        if restored.position.tx_id != stop:
            raise EngineError(f"the restored log ends at tx {restored.position.tx_id}, "
                              f"expected {stop}")
        last_time = _commit_time(restored, stop)
        if snapshot:
            restored.snapshot()
    return last_time


def publish(stage: str, path: str) -> None:
    """Rename the whole ``stage`` directory durably to ``path`` (absent or empty)."""
    files = fs()
    files.fsync_dir(stage)
    if os.path.isdir(path):
        os.rmdir(path)  # checked empty before
    files.move_durably(stage, path)


def check_destination(path: str) -> None:
    """Refuse a ``path`` that exists and is not an empty directory."""
    _check_destination(path)


def _fetch_base(target: Target, chain: Chain, db_id: str,
                stage: str) -> tuple[int, int, int | None]:
    """Download and verify the chain's base snapshot into ``stage``'s snapshots/;
    returns its (tx_id, last_position, tx_checksum)."""
    assert chain.base is not None
    snaps = layout.snapshot_dir(stage)
    os.makedirs(snaps, exist_ok=True)
    tmp = os.path.join(snaps, "base.download")
    with open(tmp, "wb") as f:
        f.write(target.get(chain.base.key))
    try:
        h = load_snapshot(tmp).header
    except EngineError as exc:
        raise BackupChainError(f"base snapshot {chain.base.key} in {target.url} is unusable: "
                               f"{exc}", key=chain.base.key) from None
    if h.db_id != db_id or h.tx_id != chain.base.tx_id:
        raise BackupChainError(f"base snapshot {chain.base.key} holds tx {h.tx_id} of "
                               f"{h.db_id}: not what its name says", key=chain.base.key)
    os.replace(tmp, os.path.join(snaps, layout.snapshot_name(h.epoch, h.tx_id)))
    return h.tx_id, h.last_position, h.tx_checksum


def _batches(pairs: Iterator[tuple[int, bytes]]) -> Iterator[list[tuple[int, bytes | bytearray]]]:
    batch: list[tuple[int, bytes | bytearray]] = []
    for pair in pairs:
        batch.append(pair)
        if len(batch) >= APPEND_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _commit_time(db: Database, tx_id: int) -> float | None:
    try:
        for t in db.read_log(tx_id, tx_id):
            return t.ts
    except HistoryLostError:  # restored to the base snapshot itself: no record of it
        pass
    return None


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
