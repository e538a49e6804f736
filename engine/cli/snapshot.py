"""``engine-admin snapshot DIR``."""

from __future__ import annotations

from ..database import Database
from ..errors import DatabaseLockedError, EngineError
from .app import directory_argument, emit, fail, json_option, lit, main, out, require_database
from .client import live_or_fail, request


@main.command()
@directory_argument
@json_option
def snapshot(directory: str, as_json: bool) -> None:
    """Open the database, write a snapshot of its current state, close."""
    path = require_database(directory, as_json)
    try:
        try:
            with Database(path, create=False) as db:
                info = db.snapshot()
            payload = {"ok": True, "path": info.path, "epoch": info.epoch,
                       "tx_id": info.tx_id, "streams": info.streams, "bytes": info.bytes}
        except DatabaseLockedError as exc:  # a live process holds it: ask it
            live_or_fail(path, exc)
            payload = request(path, "POST", "/snapshot")
    except EngineError as exc:
        fail(as_json, exc)
    emit(as_json, payload, lambda: out.print(
        f"snapshot {lit(payload['path'])}: epoch {lit(payload['epoch'])}, tx "
        f"{lit(payload['tx_id'])}, "
        f"{lit(payload['streams'])} streams, {lit(payload['bytes'])} bytes", highlight=False))
