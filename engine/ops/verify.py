"""``verify``: check every snapshot and every log record of a closed database."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import layout
from ..errors import EngineError
from ..lineage import RUNBOOK as DIVERGED_RUNBOOK
from ..lineage import diverged
from ..log import LogInfo, LogStore
from ..logreader import LogReader, ProblemList
from ..snapshot import list_snapshots, load_snapshot

# progress(done, total): called every PROGRESS_EVERY records and at the end.
Progress = Callable[[int, int], None]
PROGRESS_EVERY = 512


@dataclass
class VerifyReport:
    """What verify checked and every problem it found (``ok`` when there are none)."""

    path: str
    snapshots_ok: int = 0
    log_records: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {"ok": self.ok, "path": self.path, "snapshots_ok": self.snapshots_ok,
                "log_records": self.log_records, "problems": list(self.problems)}


def verify_directory(path: str, progress: Progress | None = None) -> VerifyReport:
    """Check every snapshot and every log record of ``path`` (which the caller has locked).

    Each snapshot must load and, when it records the checksum of its tx's record and
    the log holds that tx, agree with the log (:mod:`engine.lineage`): one that does not
    belongs to a diverged copy. Snapshots set aside in ``DIR/snapshots/diverged`` are
    reported until an operator moves them out. Records are checked by
    :class:`~engine.logreader.LogReader` (checksum, key, epoch, gap-free continuation
    from the log's base); every problem is collected.
    """
    report = VerifyReport(path=path)
    info = LogStore.probe(layout.log_dir(path))
    store = LogStore(layout.log_dir(path), readonly=True) if info.exists else None
    try:
        _verify_snapshots(path, report, store, info)
        if store is not None:
            _verify_log(path, report, store, info, progress)
    finally:
        if store is not None:
            store.close()
    return report


def _verify_snapshots(path: str, report: VerifyReport, store: LogStore | None,
                      info: LogInfo) -> None:
    for _pos, spath in list_snapshots(layout.snapshot_dir(path)):
        try:
            loaded = load_snapshot(spath)
        except EngineError as exc:
            report.problems.append(str(exc))
            continue
        div = diverged(loaded.header, store, info) if store is not None else None
        if div is not None:
            report.problems.append(f"{div.describe()}. Opening sets it aside into "
                                   f"{layout.diverged_dir(path)} (runbook: {DIVERGED_RUNBOOK})")
            continue
        report.snapshots_ok += 1
    where = layout.diverged_dir(path)
    try:
        set_aside = sorted(os.listdir(where))
    except FileNotFoundError:
        set_aside = []
    except OSError as exc:
        report.problems.append(f"cannot list {where}: {exc}")
        set_aside = []
    for name in set_aside:
        report.problems.append(
            f"{os.path.join(where, name)} was set aside on open: it belongs to a diverged "
            "copy of this database (same db_id, other transactions). Find out which copy is "
            "the live one, then move the file out of the database directory (runbook: "
            f"{DIVERGED_RUNBOOK})")


def _verify_log(path: str, report: VerifyReport, store: LogStore, info: LogInfo,
                progress: Progress | None) -> None:
    total = store.count()
    reader = LogReader(store, epoch=info.epoch, base_tx=info.base_tx,
                       base_position=info.base_position, where=path, history=info.history)
    problems = ProblemList()

    def seen(_tx_id: int) -> None:
        report.log_records += 1
        if progress is not None and report.log_records % PROGRESS_EVERY == 0:
            progress(report.log_records, total)

    for _cols in reader.scan(1, cont=reader.start(), report=problems, on_record=seen):
        pass
    report.problems.extend(problems)
    if progress is not None:
        progress(total, total)
