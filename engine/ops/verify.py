"""``verify``: check every snapshot and every log record of a closed database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .. import layout
from ..errors import EngineError
from ..log import LogStore
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

    Records are checked by :class:`~engine.logreader.LogReader` (checksum, key, epoch,
    gap-free continuation from the log's base); every problem is collected.
    """
    report = VerifyReport(path=path)
    for _pos, spath in list_snapshots(layout.snapshot_dir(path)):
        try:
            load_snapshot(spath)
            report.snapshots_ok += 1
        except EngineError as exc:
            report.problems.append(str(exc))
    info = LogStore.probe(layout.log_dir(path))
    if not info.exists:
        return report
    store = LogStore(layout.log_dir(path), readonly=True)
    try:
        total = store.count()
        reader = LogReader(store, epoch=info.epoch, base_tx=info.base_tx,
                           base_position=info.base_position, where=path,
                           history=info.history)
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
    finally:
        store.close()
    return report
