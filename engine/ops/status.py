"""``status``: health, positions, epoch history and files of a closed database.

Status is cheap: it reads snapshot headers and probes the log in this process. The
log's LMDB header is checked before LMDB maps the file (``engine.lmdbfile``), so a
truncated or garbled ``data.mdb`` or a damaged meta entry is a
:class:`~engine.errors.CorruptLogError`, never a crash, and so is a zeroed first
leaf (the probe checks the pages it walks); damage deeper in the tree is found by
``verify``, which reads every record in a child process."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import layout
from ..errors import EngineError, JournalPendingError, RecoveryRequired
from ..log import LogInfo, LogStore
from ..snapshot import list_snapshots, read_header
from .plan import plan_open

VERDICTS = ("ok", "degraded", "recovery required", "error")


@dataclass
class StatusReport:
    """The status of one directory. ``verdict`` is one of :data:`VERDICTS`; ``problem``
    says why when it is not "ok"; ``snapshots`` lists every snapshot file's header."""

    path: str
    verdict: str
    problem: str | None
    log: LogInfo
    snapshots: list[dict[str, object]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    @property
    def usable(self) -> bool:
        """The database opens (perhaps with warnings)."""
        return self.verdict in ("ok", "degraded")

    def to_json(self) -> dict[str, object]:
        info = self.log
        return {
            "ok": self.ok, "path": self.path, "verdict": self.verdict, "problem": self.problem,
            "db_id": info.db_id, "epoch": info.epoch if info.exists else None,
            "log": {"exists": info.exists, "first_tx": info.first_tx, "last_tx": info.last_tx,
                    "base_tx": info.base_tx, "last_position": info.last_position},
            "snapshots": self.snapshots,
            "epoch_history": [h.to_json() for h in info.history],
        }  # fmt: skip


def snapshot_files(path: str) -> list[dict[str, object]]:
    """Every snapshot file's header (cheap: headers only), newest first."""
    snaps: list[dict[str, object]] = []
    for pos, spath in list_snapshots(layout.snapshot_dir(path)):
        try:
            h = read_header(spath)
            snaps.append({"file": os.path.basename(spath), "epoch": pos.epoch,
                          "tx_id": pos.tx_id, "streams": h.stream_count,
                          "bytes": h.file_bytes, "ok": True, "version": h.version,
                          # the lineage proof (hex), None when unproven (engine.lineage)
                          "tx_checksum": None if h.tx_checksum is None
                          else f"{h.tx_checksum:016x}"})
        except EngineError as exc:
            snaps.append({"file": os.path.basename(spath), "epoch": pos.epoch,
                          "tx_id": pos.tx_id, "ok": False, "error": str(exc)})
    return snaps


def directory_status(path: str) -> StatusReport:
    """The status of ``path`` (which the caller has locked): the decision table's verdict."""
    try:
        info = LogStore.probe(layout.log_dir(path))
    except JournalPendingError as exc:  # after a power cut: a state, not an error
        return StatusReport(path=path, verdict="journal to apply", problem=str(exc),
                            log=LogInfo(path=layout.log_dir(path), exists=True),
                            snapshots=snapshot_files(path))
    snaps = snapshot_files(path)
    verdict, problem = "ok", None
    try:
        plan = plan_open(path, create=False)
        if plan.warnings:
            verdict, problem = "degraded", "; ".join(plan.warnings)
    except RecoveryRequired as exc:
        verdict, problem = "recovery required", str(exc)
    except EngineError as exc:
        verdict, problem = "error", str(exc)
    return StatusReport(path=path, verdict=verdict, problem=problem, log=info, snapshots=snaps)
