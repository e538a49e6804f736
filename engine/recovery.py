"""What ``open`` does with what it finds on disk, and log-loss recovery.

:func:`plan_open` implements the recovery decision table of ENGINE.md: it reads
the snapshots and probes the log (changing nothing), and either returns an
:class:`OpenPlan` or raises the error an operator must act on. Every refusal
names the snapshot position, what was found in the log, what recovery would
lose, and the command that fixes it.

:func:`recover_new_epoch` is ``engine-admin recover --new-epoch``: it rebuilds a
log for a new epoch from the newest valid snapshot, never deleting anything.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from . import formats
from .errors import (
    CorruptSnapshotError,
    DatabaseMismatchError,
    EngineError,
    LogGapError,
    LogMissingError,
    RecoveryRequired,
    StorageError,
)
from .log import LogInfo, LogStore
from .model import EpochRecord, Position
from .snapshot import LoadedSnapshot, fsync_dir, list_snapshots, load_snapshot, read_header

log = logging.getLogger("engine")

RUNBOOK = "docs/RUNBOOK.md, 'The log is gone'"


class EngineWarning(UserWarning):
    """Something was wrong on disk and the engine worked around it (see the message)."""


def _warn(msg: str) -> None:
    """Log ``msg`` and issue an EngineWarning attributed to the caller's own code."""
    log.warning(msg)
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is the frame that called us
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    warnings.warn(msg, EngineWarning, stacklevel=level)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def log_dir(path: str) -> str:
    return os.path.join(path, formats.LOG_SUBDIR)


def snap_dir(path: str) -> str:
    return os.path.join(path, formats.SNAP_SUBDIR)


@dataclass
class OpenPlan:
    """The outcome of the decision table for one directory."""

    path: str
    log: LogInfo
    snapshot: LoadedSnapshot | None
    create: bool = False
    warnings: list[str] = field(default_factory=list)
    set_aside: list[str] = field(default_factory=list)  # snapshots off the log's lineage
    corrupt: list[tuple[str, str]] = field(default_factory=list)

    @property
    def replay_from(self) -> int:
        return (self.snapshot.header.tx_id if self.snapshot else 0) + 1


def _fork_after(history: tuple[EpochRecord, ...], epoch: int) -> int | None:
    """first_tx of the first epoch after ``epoch`` in ``history`` (None if none)."""
    later = [h for h in history if h.epoch > epoch]
    return min(later, key=lambda h: h.epoch).first_tx if later else None


def _on_lineage(snap: LoadedSnapshot, info: LogInfo) -> bool:
    """Is a snapshot of an older epoch than the log part of the log's history?"""
    return _in_history(snap.header.position, info.history)


def _in_history(pos: Position, history: tuple[EpochRecord, ...]) -> bool:
    """Is ``pos`` on the timeline ``history`` describes?

    It is when its epoch is in the history and it lies before the next epoch forked
    (its tx_id < that epoch's first_tx): it holds no tx the timeline never had.
    """
    if not any(r.epoch == pos.epoch for r in history):
        return False
    fork = _fork_after(history, pos.epoch)
    return fork is None or pos.tx_id < fork


def _advice(path: str) -> str:
    return (f"To open the database from the snapshot in a new epoch, run:\n"
            f"    engine-admin recover --new-epoch {path}\n"
            f"(runbook: {RUNBOOK}).")


def _refusal(cls: type[RecoveryRequired], path: str, snap: LoadedSnapshot, info: LogInfo,
             what: str, lost: str) -> RecoveryRequired:
    h = snap.header
    err = cls(
        f"cannot open {path}: the newest snapshot is at epoch {h.epoch}, tx {h.tx_id} "
        f"({os.path.basename(h.path)}), but {what}.\n"
        f"Log found: {info.describe()}.\n"
        f"Recovering keeps the state at epoch {h.epoch}, tx {h.tx_id}; lost: {lost}.\n"
        + _advice(path)
    )
    err.snapshot = h.position  # type: ignore[attr-defined]
    err.log = info  # type: ignore[attr-defined]
    err.lost = lost  # type: ignore[attr-defined]
    return err


def plan_open(path: str, *, create: bool = True) -> OpenPlan:
    """Apply the decision table to ``path`` (which the caller has locked)."""
    info = LogStore.probe(log_dir(path))
    plan = OpenPlan(path=path, log=info, snapshot=None)
    db_id = info.db_id
    for _pos, spath in list_snapshots(snap_dir(path)):  # newest first
        try:
            loaded = load_snapshot(spath)
        except CorruptSnapshotError as exc:
            plan.corrupt.append((spath, str(exc)))
            continue
        h = loaded.header
        if db_id is None:
            db_id = h.db_id
        elif h.db_id != db_id:
            what = "the log" if info.exists else "the newer snapshots"
            raise DatabaseMismatchError(
                f"snapshot {spath} belongs to database {h.db_id}, but {what} in {path} "
                f"belong(s) to {db_id}. Files of two databases were mixed: move the foreign "
                "files out of the directory (nothing was changed)."
            )
        if info.exists and h.epoch < info.epoch and not _on_lineage(loaded, info):
            plan.set_aside.append(spath)
            plan.warnings.append(
                f"snapshot {os.path.basename(spath)} (epoch {h.epoch}, tx {h.tx_id}) is not on "
                f"the log's timeline (epoch {info.epoch} forked before it): set aside")
            continue
        plan.snapshot = loaded
        break
    for _spath, why in plan.corrupt:
        plan.warnings.append(f"{why}; skipped")

    snap = plan.snapshot
    if snap is None:
        if not info.exists or info.empty:
            if plan.corrupt:
                raise CorruptSnapshotError(
                    f"cannot open {path}: every snapshot is corrupt and there is no log to "
                    f"rebuild from ({'; '.join(w for _, w in plan.corrupt)}). Restore from a "
                    "backup; `engine-admin verify DIR` shows the damage.")
            if not create:
                raise EngineError(f"no database at {path} (create=False). Pass create=True "
                                  "to create one.")
            plan.create = not info.exists
            return plan
        if info.base_tx > 0 or (info.first_tx or 1) > 1:
            raise LogGapError(
                f"cannot open {path}: the log (epoch {info.epoch}) starts after tx "
                f"{max(info.base_tx, (info.first_tx or 1) - 1)} but no valid snapshot covers "
                f"the txs before it"
                + (f" (corrupt: {', '.join(os.path.basename(p) for p, _ in plan.corrupt)})"
                   if plan.corrupt else "") +
                ". Restore the snapshot files from a backup; the log alone cannot rebuild "
                "the state.")
        if plan.corrupt:
            plan.warnings.append("no valid snapshot: replaying the whole log from tx 1")
        return plan

    h = snap.header
    if not info.exists or info.empty:
        if h.tx_id == 0:  # a snapshot of an empty database: nothing can be lost
            plan.create = not info.exists
            return plan
        raise _refusal(LogMissingError, path, snap, info,
                       "no log was found" if not info.exists else "the log holds no transactions",
                       f"transactions after tx {h.tx_id}, if any were committed")
    if info.db_id != h.db_id:  # pragma: no cover - caught in the loop above
        raise DatabaseMismatchError(f"log and snapshot of {path} belong to different databases")
    if info.epoch < h.epoch:
        raise _refusal(LogGapError, path, snap, info,
                       f"the log's epoch {info.epoch} is older than the snapshot's epoch {h.epoch} "
                       "(an older timeline is never replayed onto a newer one)",
                       f"transactions after tx {h.tx_id} of epoch {h.epoch}, if any were "
                       f"committed (the epoch-{info.epoch} log is moved aside, not deleted)")
    first = info.first_tx if info.first_tx is not None else info.base_tx + 1
    if first > h.tx_id + 1:
        raise _refusal(LogGapError, path, snap, info,
                       f"the log starts at tx {first}, so txs {h.tx_id + 1}..{first - 1} "
                       "are missing",
                       f"txs {h.tx_id + 1}..{info.last_tx} ({h.tx_id + 1}..{first - 1} are "
                       f"missing; {first}..{info.last_tx} cannot be applied without them and "
                       "are moved aside)")
    if info.last_tx < h.tx_id:
        raise _refusal(LogGapError, path, snap, info,
                       f"the log ends at tx {info.last_tx}, before the snapshot: it is a "
                       "stale copy",
                       f"transactions after tx {h.tx_id}, if any were committed (the stale log "
                       "is moved aside, not deleted)")
    return plan


def set_aside_dir(path: str, what: str) -> str:
    """The name of a new dated directory under ``DIR/aside`` for files moved out of
    the way. Creates nothing (a dry run calls it too); the mover makes it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = os.path.join(path, formats.ASIDE_SUBDIR)
    for n in range(1000):
        d = os.path.join(base, f"{what}-{stamp}" + (f"-{n}" if n else ""))
        if not os.path.exists(d):
            return d
    raise StorageError(f"cannot find a free name under {base}")


def apply_set_aside(plan: OpenPlan) -> None:
    """Move the snapshots the plan set aside into ``DIR/aside/`` (never delete)."""
    for w in plan.warnings:
        _warn(f"{plan.path}: {w}")
    if not plan.set_aside:
        return
    dest = set_aside_dir(plan.path, "snapshots")
    os.makedirs(dest)
    for p in plan.set_aside:
        os.replace(p, os.path.join(dest, os.path.basename(p)))
    fsync_dir(dest)
    fsync_dir(snap_dir(plan.path))


# --------------------------------------------------------------- recovery


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
    for _pos, spath in list_snapshots(snap_dir(path)):
        try:
            histories.append(read_header(spath).history)
        except EngineError:
            continue
    histories = [h for h in histories if h]
    return max(histories, key=lambda h: max(r.epoch for r in h)) if histories else ()


def _newest_valid(path: str, notes: list[str],
                  history: tuple[EpochRecord, ...]) -> LoadedSnapshot:
    """The newest snapshot that loads and lies on ``history``'s timeline."""
    for pos, spath in list_snapshots(snap_dir(path)):
        if history and not _in_history(pos, history):
            notes.append(f"skipped {os.path.basename(spath)}: epoch {pos.epoch} forked off "
                         "before it, so it holds transactions the newer timeline never had")
            continue
        try:
            return load_snapshot(spath)
        except CorruptSnapshotError as exc:
            notes.append(f"{exc} -- falling back to an older snapshot")
    raise CorruptSnapshotError(
        f"cannot recover {path}: no valid snapshot to rebuild from. Restore from a backup.")


def recover_new_epoch(path: str, *, dry_run: bool = False, force: bool = False,
                      reason: str = "log lost: rebuilt from snapshot",
                      snapshot_first: Callable[[], object] | None = None) -> RecoveryReport:
    """Rebuild the log of ``path`` for a new epoch from its newest valid snapshot.

    The caller holds the directory lock. Steps, each safe to repeat after a crash:
    move ``DIR/log`` into ``DIR/aside/log-<time>`` (never deleted); build the new
    log in ``DIR/log.new`` (meta: epoch E+1, base = snapshot position, history);
    rename it to ``DIR/log``; write a snapshot of the new epoch at the same tx so
    the history survives a later loss. Until the rename, the directory still
    refuses to open, so a half-made epoch never opens.

    On a healthy database it refuses unless ``force``; with ``force`` it calls
    ``snapshot_first`` (which snapshots the current state) so nothing is lost.
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
    info = LogStore.probe(log_dir(path))
    # Every epoch ever started here must stay used up, even one known only from a
    # damaged snapshot's header: the new epoch is past all of them.
    known = _newest_known_history(path, info)
    snap = _newest_valid(path, notes, known)
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
    moved: str | None = None
    logp = log_dir(path)
    has_log_dir = os.path.exists(logp)
    if has_log_dir:
        moved = set_aside_dir(path, f"log-epoch{info.epoch}" if info.exists else "log")
    report = RecoveryReport(
        path=path, dry_run=dry_run, snapshot=h.path, snapshot_position=h.position,
        streams=h.stream_count, new_epoch=new_epoch,
        # forced: after the snapshot of the current state (taken unless this is a dry run)
        next_tx=max(h.tx_id, info.last_tx if healthy else 0) + 1, lost=lost,
        log_found=info.describe(), log_moved_to=moved, notes=notes,
    )  # fmt: skip
    if dry_run:
        return report

    try:
        if has_log_dir and moved is not None:
            os.makedirs(os.path.dirname(moved), exist_ok=True)
            os.replace(logp, moved)
            fsync_dir(os.path.dirname(moved))
            fsync_dir(path)
        staging = logp + ".new"
        if os.path.exists(staging):
            shutil.rmtree(staging)  # a half-made epoch from an interrupted run
        history = [r for r in (known or h.history) if r.epoch < new_epoch]
        history.append(EpochRecord(epoch=new_epoch, first_tx=h.tx_id + 1,
                                   first_position=h.last_position + 1, time=time.time(),
                                   reason=reason.encode()[: formats.MAX_REASON_BYTES]
                                   .decode("utf-8", "ignore")))
        store = LogStore(staging, sync="commit")
        try:
            store.initialise(h.db_id, new_epoch, h.tx_id, h.last_position, history)
        finally:
            store.close()
        fsync_dir(staging)
        os.replace(staging, logp)
        fsync_dir(path)
    except OSError as exc:
        raise StorageError(f"recovery of {path} failed: {exc}. Nothing was deleted; fix the "
                           "cause and run the same command again.") from exc
    from .snapshot import write_snapshot

    write_snapshot(snap_dir(path), db_id=h.db_id, epoch=new_epoch, tx_id=h.tx_id,
                   last_position=h.last_position, history=history, state=snap.state)
    return report
