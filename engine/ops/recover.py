"""Log-loss recovery: ``engine-admin recover --new-epoch``.

:func:`recover_new_epoch` rebuilds a log for a new epoch from the newest valid
snapshot, never deleting anything; each step is safe to repeat after a crash.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .. import formats, layout
from ..errors import CorruptSnapshotError, EngineError, RecoveryRequired, StorageError
from ..files import fs
from ..lineage import base_checksum_entry, diverged
from ..log import LogInfo, LogStore
from ..model import EpochRecord, Position
from ..snapshot import (
    LoadedSnapshot,
    SnapshotHeader,
    list_snapshots,
    load_snapshot,
    read_header,
    write_snapshot,
)
from .plan import in_history, plan_open, set_aside_dir


@dataclass
class RecoveryReport:
    """What ``recover --new-epoch`` kept, started and lost (printed or as JSON)."""

    path: str
    dry_run: bool
    snapshot: str
    snapshot_position: Position
    streams: int
    new_epoch: int
    next_tx: int
    lost: str
    log_found: str
    log_moved_to: str | None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path, "dry_run": self.dry_run, "snapshot": self.snapshot,
            "kept": {"epoch": self.snapshot_position.epoch,
                     "tx_id": self.snapshot_position.tx_id, "streams": self.streams},
            "new_epoch": self.new_epoch, "next_tx": self.next_tx, "lost": self.lost,
            "log_found": self.log_found, "log_moved_to": self.log_moved_to,
            "notes": self.notes,
        }  # fmt: skip


def _newest_known_history(path: str, info: LogInfo) -> tuple[EpochRecord, ...]:
    """The epoch history reaching the newest epoch, from the log and every snapshot
    header that still reads (a header has its own checksum: a damaged body does not
    hide the history it carries)."""
    histories = [info.history] if info.exists else []
    for _pos, spath in list_snapshots(layout.snapshot_dir(path)):
        try:
            histories.append(read_header(spath).history)
        except EngineError:
            continue
    histories = [h for h in histories if h]
    return max(histories, key=lambda h: max(r.epoch for r in h)) if histories else ()


def _newest_valid(path: str, notes: list[str], history: tuple[EpochRecord, ...],
                  info: LogInfo) -> LoadedSnapshot:
    """The newest snapshot that loads, lies on ``history``'s timeline and, where the
    remaining log holds its tx, belongs to that log (not a diverged copy's)."""
    info, store = LogStore.probe_open(layout.log_dir(path)) if info.exists else (info, None)
    try:
        for pos, spath in list_snapshots(layout.snapshot_dir(path)):
            if history and not in_history(pos, history):
                notes.append(f"skipped {os.path.basename(spath)}: epoch {pos.epoch} forked "
                             "off before it, so it holds transactions the newer timeline "
                             "never had")
                continue
            try:
                loaded = load_snapshot(spath)
            except CorruptSnapshotError as exc:
                notes.append(f"{exc} -- falling back to an older snapshot")
                continue
            div = None
            if store is not None:
                store.check_pages_from(loaded.header.tx_id)  # before LMDB walks to it
                div = diverged(loaded.header, store, info)
            if div is not None:
                notes.append(f"skipped {div.describe()} -- falling back to an older snapshot")
                continue
            return loaded
    finally:
        if store is not None:
            store.close()
    raise CorruptSnapshotError(
        f"cannot recover {path}: no valid snapshot to rebuild from. Restore from a backup.")


@dataclass(frozen=True)
class RecoveryTail:
    """Records from elsewhere (a log backup) that the new log starts with.

    The new log's base is ``(base_tx, base_position)`` and it holds ``first_tx ..
    last_tx`` (``first_tx = base_tx + 1``) with their original epochs; the new epoch
    starts at ``last_tx + 1``. ``records()`` yields batches of ``(tx_id, record)``,
    already verified. ``source`` names where they came from.
    """

    base_tx: int
    base_position: int
    last_tx: int
    last_position: int
    source: str
    records: Callable[[], Iterator[list[tuple[int, bytes]]]]
    newest_epoch_elsewhere: int = 0
    """The newest epoch the source knows of this database (the new epoch is past it)."""


# tail(snapshot kept, the newest known epoch history) -> records to start the log with
TailProvider = Callable[[SnapshotHeader, "tuple[EpochRecord, ...]"], "RecoveryTail | None"]


def recover_new_epoch(path: str, *, dry_run: bool = False, force: bool = False,
                      reason: str = "log lost: rebuilt from snapshot",
                      snapshot_first: Callable[[], object] | None = None,
                      tail: TailProvider | None = None) -> RecoveryReport:
    """Rebuild the log of ``path`` for a new epoch from its newest valid snapshot.

    The caller holds the directory lock. Steps, each safe to repeat after a crash:
    move ``DIR/log`` into ``DIR/aside/log-<time>`` (never deleted); build the new
    log in ``DIR/log.new`` (meta: epoch E+1, base = snapshot position, history);
    rename it to ``DIR/log``; write a snapshot of the new epoch at the same tx so
    the history survives a later loss. Until the rename, the directory still
    refuses to open, so a half-made epoch never opens.

    On a healthy database it refuses unless ``force``; with ``force`` it calls
    ``snapshot_first`` (which snapshots the current state) so nothing is lost.

    ``tail`` (``--from-backup``): given the snapshot kept, it may return records to
    start the new log with (history before the snapshot, and txs after it that the
    log backup holds), so the loss shrinks to what was never shipped. Then no new
    snapshot is written: the kept one stays on the new log's lineage, and the next
    open replays the tail with the application's own reducer.
    """
    notes: list[str] = []
    healthy = False
    try:
        plan_open(path, create=False)
        healthy = True
    except RecoveryRequired:
        pass
    except EngineError as exc:
        if not isinstance(exc, CorruptSnapshotError):
            raise
    if healthy and not force:
        raise EngineError(
            f"{path} is healthy: its log covers the newest snapshot, so there is nothing to "
            "recover. Pass --force to start a new epoch anyway (a snapshot of the current "
            "state is taken first, so nothing committed is lost).")
    if healthy and force and not dry_run:
        if snapshot_first is None:
            raise EngineError("recover --force on a healthy database needs a snapshot first")
        snapshot_first()
        notes.append("forced on a healthy database: a snapshot of the current state was "
                     "taken first")
    info = LogStore.probe(layout.log_dir(path))
    # Every epoch ever started here must stay used up, even one known only from a
    # damaged snapshot's header: the new epoch is past all of them.
    known = _newest_known_history(path, info)
    snap = _newest_valid(path, notes, known, info)
    h = snap.header
    epochs = [h.epoch, info.epoch] + [r.epoch for r in (*h.history, *known)]
    new_epoch = max(epochs) + 1
    if healthy:  # --force: the state at the log's last tx is (or would be) snapshotted first
        lost = f"nothing: the new epoch starts after tx {info.last_tx}, the log's last"
    elif info.exists and info.first_tx is not None and info.last_tx > h.tx_id:
        lost = (f"txs {h.tx_id + 1}..{info.last_tx} of epoch {info.epoch} (moved aside with the "
                "old log, not applied)")
    elif info.exists and info.first_tx is not None:
        lost = (f"transactions after tx {h.tx_id}, if any were committed (the log found ends "
                f"at tx {info.last_tx}: a stale copy)")
    else:
        lost = f"transactions after tx {h.tx_id}, if any were committed (no log was found)"
    extra = tail(h, known or h.history) if tail is not None else None
    if extra is not None and not extra.base_tx <= h.tx_id <= extra.last_tx:
        extra = None  # the backup neither reaches the snapshot nor continues it
    if extra is not None:
        if extra.newest_epoch_elsewhere >= new_epoch:  # an epoch started elsewhere (a fork)
            new_epoch = extra.newest_epoch_elsewhere + 1
            notes.append(f"new epoch {new_epoch}: past epoch {extra.newest_epoch_elsewhere}, "
                         f"which {extra.source} holds (a fork of this database elsewhere)")
        if not healthy:
            lost = (f"only transactions after tx {extra.last_tx} (never shipped to the "
                    "backup), if any were committed")
        notes.append(f"from the log backup {extra.source}: txs {extra.base_tx + 1}.."
                     f"{extra.last_tx} ({max(0, extra.last_tx - h.tx_id)} past the snapshot"
                     f"{', with the history before it' if extra.base_tx == 0 else ''})")
    moved: str | None = None
    logp = layout.log_dir(path)
    has_log_dir = os.path.exists(logp)
    if has_log_dir:
        moved = set_aside_dir(path, f"log-epoch{info.epoch}" if info.exists else "log")
    report = RecoveryReport(
        path=path, dry_run=dry_run, snapshot=h.path, snapshot_position=h.position,
        streams=h.stream_count, new_epoch=new_epoch,
        # forced: after the snapshot of the current state (taken unless this is a dry run)
        next_tx=max(h.tx_id, info.last_tx if healthy else 0,
                    extra.last_tx if extra else 0) + 1, lost=lost,
        log_found=info.describe(), log_moved_to=moved, notes=notes,
    )  # fmt: skip
    if dry_run:
        return report

    try:
        files = fs()
        if has_log_dir and moved is not None:
            files.makedirs(os.path.dirname(moved))
            files.move_durably(logp, moved)
        staging = layout.log_staging_dir(path)
        if os.path.exists(staging):
            shutil.rmtree(staging)  # a half-made epoch from an interrupted run
        base_tx, base_pos = h.tx_id, h.last_position
        last_tx, last_pos = h.tx_id, h.last_position
        if extra is not None:
            base_tx, base_pos = extra.base_tx, extra.base_position
            last_tx, last_pos = extra.last_tx, extra.last_position
            reason = f"{reason}; txs {base_tx + 1}..{last_tx} from {extra.source}"
        history = [r for r in (known or h.history) if r.epoch < new_epoch]
        history.append(EpochRecord(epoch=new_epoch, first_tx=last_tx + 1,
                                   first_position=last_pos + 1, time=time.time(),
                                   reason=reason.encode()[: formats.MAX_REASON_BYTES]
                                   .decode("utf-8", "ignore")))
        store = LogStore(staging, sync="commit" if extra is None else "none")
        try:
            store.initialise(h.db_id, new_epoch, base_tx, base_pos, history)
            # the new log starts after the kept snapshot's tx: it inherits its lineage proof
            entry = base_checksum_entry(h.tx_checksum) if base_tx == h.tx_id else None
            if entry is not None:
                store.put_meta(formats.META_BASE_CHECKSUM, entry)
            if extra is not None:
                for batch in extra.records():
                    store.append(list(batch))
                store.sync()
        finally:
            store.close()
        files.fsync_dir(staging)
        files.move_durably(staging, logp)
    except OSError as exc:
        raise StorageError(f"recovery of {path} failed: {exc}. Nothing was deleted; fix the "
                           "cause and run the same command again.") from exc
    if extra is None:
        write_snapshot(layout.snapshot_dir(path), db_id=h.db_id, epoch=new_epoch,
                       tx_id=h.tx_id, last_position=h.last_position, history=history,
                       state=snap.state, tx_checksum=h.tx_checksum)
    return report
