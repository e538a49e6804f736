"""``engine-admin snapshot DIR``."""

from __future__ import annotations

from ..database import Database
from ..errors import EngineError
from .app import directory_argument, emit, fail, json_option, main, out, require_dir


@main.command()
@directory_argument
@json_option
def snapshot(directory: str, as_json: bool) -> None:
    """Open the database, write a snapshot of its current state, close."""
    path = require_dir(directory, as_json)
    try:
        with Database(path, create=False) as db:
            info = db.snapshot()
    except EngineError as exc:
        fail(as_json, exc)
    payload = {"ok": True, "path": info.path, "epoch": info.epoch, "tx_id": info.tx_id,
               "streams": info.streams, "bytes": info.bytes}
    emit(as_json, payload, lambda: out.print(
        f"snapshot {info.path}: epoch {info.epoch}, tx {info.tx_id}, {info.streams} streams, "
        f"{info.bytes} bytes"))
