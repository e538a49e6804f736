"""What ``open`` does with what it finds on disk: the recovery decision table.

:func:`plan_open` implements the table of ENGINE.md ("Opening"): it reads the
snapshots and probes the log (changing nothing), and either returns an
:class:`OpenPlan` or raises the error an operator must act on. Every refusal
names the snapshot position, what was found in the log, what recovery would
lose, and the command that fixes it. :func:`apply_set_aside` carries out the one
change a plan may ask for: moving snapshots off the log's lineage into ``DIR/aside``,
and snapshots of a diverged copy (:mod:`engine.lineage`) into ``DIR/snapshots/diverged``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from .. import layout
from ..errors import (
    CorruptSnapshotError,
    DatabaseMismatchError,
    EngineError,
    LogGapError,
    LogMissingError,
    RecoveryRequired,
    StorageError,
    storage_error,
    warn_user,
)
from ..files import fs
from ..lineage import RUNBOOK as DIVERGED_RUNBOOK
from ..lineage import diverged
from ..log import LogInfo, LogStore
from ..model import EpochRecord, Position
from ..snapshot import LoadedSnapshot, list_snapshots, load_snapshot

RUNBOOK = "docs/RUNBOOK.md, 'The log is gone'"


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
    # snapshots of a diverged copy: (path, where apply_set_aside moves it)
    diverged: list[tuple[str, str]] = field(default_factory=list)
    # the lowest tx from which the log's tree pages were checked to its end (the
    # lineage read's check), so the loader need not read them again; None if none
    pages_checked_from: int | None = None

    @property
    def replay_from(self) -> int:
        return (self.snapshot.header.tx_id if self.snapshot else 0) + 1


def fork_after(history: tuple[EpochRecord, ...], epoch: int) -> int | None:
    """first_tx of the first epoch after ``epoch`` in ``history`` (None if none)."""
    later = [h for h in history if h.epoch > epoch]
    return min(later, key=lambda h: h.epoch).first_tx if later else None


def _on_lineage(snap: LoadedSnapshot, info: LogInfo) -> bool:
    """Is a snapshot of an older epoch than the log part of the log's history?"""
    return in_history(snap.header.position, info.history)


def in_history(pos: Position, history: tuple[EpochRecord, ...]) -> bool:
    """Is ``pos`` on the timeline ``history`` describes?

    It is when its epoch is in the history and it lies before the next epoch forked
    (its tx_id < that epoch's first_tx): it holds no tx the timeline never had.
    """
    if not any(r.epoch == pos.epoch for r in history):
        return False
    fork = fork_after(history, pos.epoch)
    return fork is None or pos.tx_id < fork


def _advice(path: str) -> str:
    return (f"To open the database from the snapshot in a new epoch, run:\n"
            f"    engine-admin recover --new-epoch {path}\n"
            f"(runbook: {RUNBOOK}).")


def _refusal(cls: type[RecoveryRequired], path: str, snap: LoadedSnapshot, info: LogInfo,
             what: str, lost: str) -> RecoveryRequired:
    h = snap.header
    return cls(
        f"cannot open {path}: the newest snapshot is at epoch {h.epoch}, tx {h.tx_id} "
        f"({os.path.basename(h.path)}), but {what}.\n"
        f"Log found: {info.describe()}.\n"
        f"Recovering keeps the state at epoch {h.epoch}, tx {h.tx_id}; lost: {lost}.\n"
        + _advice(path),
        snapshot=h.position, log=info, lost=lost,
    )


def plan_open(path: str, *, create: bool = True, shared: bool = False,
              indexed: bool = False) -> OpenPlan:
    """Apply the decision table to ``path`` (which the caller has locked, or, with
    ``shared``, which a writer may hold while this reader plans beside it). With
    ``indexed`` (an open with the default reducer) the chosen snapshot's entries are
    put into a C index while it is loaded (``load_snapshot(..., indexed=True)``)."""
    info, store = LogStore.probe_open(layout.log_dir(path), shared=shared)  # kept for lineage
    plan = OpenPlan(path=path, log=info, snapshot=None)
    try:
        _choose_snapshot(plan, info, store, indexed)
    finally:
        if store is not None:
            store.close()
    return _decide(plan, path, info, create)


def _choose_snapshot(plan: OpenPlan, info: LogInfo, log: LogStore | None,
                     indexed: bool = False) -> None:
    """The newest snapshot that loads, belongs to this database and lies on the log's
    lineage; the others are recorded in ``plan`` (corrupt, off the timeline, diverged)."""
    path = plan.path
    db_id = info.db_id
    taken: set[str] = set()
    for _pos, spath in list_snapshots(layout.snapshot_dir(path)):  # newest first
        try:
            loaded = load_snapshot(spath, indexed=indexed)
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
        if log is not None and info.exists and h.tx_checksum is not None:
            # The lineage read walks the tree to tx_id: its pages are checked first
            # (nothing writes the log now; a shared store skips it), as the loader's
            # tail check does, so a damaged page is an error, never an LMDB abort.
            if plan.pages_checked_from is None or h.tx_id < plan.pages_checked_from:
                log.check_pages_from(h.tx_id)
                plan.pages_checked_from = h.tx_id
            div = diverged(h, log, info)
            if div is not None:
                dest = diverged_destination(path, spath, taken)
                taken.add(dest)
                plan.diverged.append((spath, dest))
                plan.warnings.append(
                    f"{div.describe()}. Set aside as {os.path.relpath(dest, path)} (not "
                    "deleted); the state is rebuilt from this log instead. Find out which "
                    f"copy is the live one before using that file (runbook: "
                    f"{DIVERGED_RUNBOOK})")
                continue
        plan.snapshot = loaded
        break


def diverged_destination(path: str, spath: str, taken: set[str]) -> str:
    """Where a diverged snapshot is moved: ``DIR/snapshots/diverged/<name>`` (with a
    ``.N`` suffix if that name is taken: an earlier one is never replaced)."""
    base = os.path.join(layout.diverged_dir(path), os.path.basename(spath))
    for n in range(1000):
        dest = base + (f".{n}" if n else "")
        if dest not in taken and not os.path.exists(dest):
            return dest
    raise StorageError(f"cannot find a free name for {base}: move old files out of "
                       f"{layout.diverged_dir(path)}")


def _decide(plan: OpenPlan, path: str, info: LogInfo, create: bool) -> OpenPlan:
    """The rest of the decision table, once the snapshot is chosen."""
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
                   if plan.corrupt else "")
                + (f" (of a diverged copy: "
                   f"{', '.join(os.path.basename(p) for p, _ in plan.diverged)})"
                   if plan.diverged else "") +
                ". Restore the snapshot files from a backup; the log alone cannot rebuild "
                "the state.")
        if plan.corrupt or plan.diverged:
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
    base = layout.aside_dir(path)
    for n in range(1000):
        d = os.path.join(base, f"{what}-{stamp}" + (f"-{n}" if n else ""))
        if not os.path.exists(d):
            return d
    raise StorageError(f"cannot find a free name under {base}")


def apply_set_aside(plan: OpenPlan) -> None:
    """Move the snapshots the plan set aside into ``DIR/aside/`` and those of a diverged
    copy into ``DIR/snapshots/diverged/`` (never delete; each move is durable), then
    issue the plan's warnings (after the moves they describe)."""
    files = fs()
    if plan.diverged:
        where = layout.diverged_dir(plan.path)
        try:
            files.makedirs(where)
            for src, dest in plan.diverged:
                files.move_durably(src, dest)
        except OSError as exc:
            raise storage_error(exc, f"cannot move a diverged snapshot into {where}: {exc}. "
                                "Check free disk space and permissions.",
                                directory=plan.path, writing=where,
                                consequence="nothing was opened; the snapshot stays where "
                                "it was") from exc
    if plan.set_aside:
        dest = set_aside_dir(plan.path, "snapshots")
        try:
            files.makedirs(dest)
            for p in plan.set_aside:
                files.move_durably(p, os.path.join(dest, os.path.basename(p)))
        except OSError as exc:
            raise storage_error(exc, f"cannot move snapshots off the log's timeline into "
                                f"{dest}: {exc}. Check free disk space and permissions.",
                                directory=plan.path, writing=dest,
                                consequence="nothing was opened") from exc
    for w in plan.warnings:
        warn_user(f"{plan.path}: {w}")
