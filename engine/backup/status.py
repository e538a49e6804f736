"""``engine-admin backup status DIR`` on a closed database: the checkpoint recorded in
the log's meta, what the target holds for the database's epoch, and the lag between
the two and the log's last tx (the RPO of a crash now)."""

from __future__ import annotations

import json
import time
from typing import Any

from .. import formats, layout
from ..errors import BackupError, EngineError
from ..log import LogStore
from ..native import peek_tx_header
from .chain import best_run, checkpoint_of, claimed_epochs, segments_of
from .targets import TargetOptions, open_target


def recorded_target(path: str) -> tuple[str | None, dict[str, Any]]:
    """The target URL and checkpoint the log's meta records (None if no backup ran)."""
    store = LogStore(layout.log_dir(path), readonly=True)
    try:
        raw = store.get_meta(formats.META_BACKUP)
    finally:
        store.close()
    if not raw:
        return None, {}
    try:
        meta = json.loads(raw)
        if not isinstance(meta, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        raise EngineError(f"the backup meta entry of {path} is unreadable ({exc}); give the "
                          "target with --target URL") from None
    url = meta.get("target")
    return (url if isinstance(url, str) else None), meta


def closed_status(path: str, target: str | TargetOptions | None = None) -> dict[str, Any]:
    """Backup status of the closed database at ``path`` (which the caller has locked)."""
    info = LogStore.probe(layout.log_dir(path))
    if not info.exists or info.db_id is None:
        raise EngineError(f"no database at {path}")
    url, meta = recorded_target(path)
    spec = target if target is not None else url
    if spec is None:
        raise EngineError(f"{path} has never been backed up (no target recorded in its log); "
                          "give one with --target URL")
    tgt = open_target(spec)
    out: dict[str, Any] = {
        "ok": True, "path": path, "target": tgt.url, "db_id": info.db_id, "epoch": info.epoch,
        "last_tx": info.last_tx, "local_checkpoint_tx": meta.get("checkpoint_tx")
        if meta.get("epoch") == info.epoch else None, "state": "closed"}
    try:
        segs, _bases = segments_of(tgt, info.db_id, info.epoch)
        ck = checkpoint_of(tgt, info.db_id, info.epoch)
        claims = claimed_epochs(tgt, info.db_id)
    except BackupError as exc:
        out.update(ok=False, state="unreachable", last_error=str(exc))
        return out
    mine = [h.first_tx for h in info.history if h.epoch == info.epoch]
    origin = (mine[-1] if mine else info.base_tx + 1) - 1
    goal = ck.get("segment") if ck else None
    # the same run the uploader and restore follow (orphans of a fenced writer passed over)
    run = best_run(segs, origin + 1, goal=goal if isinstance(goal, str) else None)
    ckpt = run[-1][1] if run else origin
    newer = [e for e in claims if e > info.epoch]
    out["checkpoint_tx"] = ckpt
    out["segments"] = len(segs)
    out["lag_txs"] = max(0, info.last_tx - ckpt)
    out["lag_seconds"] = 0.0
    if out["lag_txs"]:
        store = LogStore(layout.log_dir(path), readonly=True)
        try:
            rec = store.get(ckpt + 1)
        finally:
            store.close()
        if rec is not None:
            out["lag_seconds"] = round(max(0.0, time.time() - peek_tx_header(rec)[2] / 1e9), 3)
    if newer:
        out["state"] = "fenced"
        out["ok"] = False
        out["last_error"] = (f"the target holds epoch {max(newer)}, newer than this database's "
                             f"epoch {info.epoch}: it was restored or recovered elsewhere")
    return out
