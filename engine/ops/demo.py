"""``demo``: the main job end to end (write events, snapshot, reopen, read the state)."""

from __future__ import annotations

import os
import time
from typing import Any

from ..database import Database
from ..errors import EngineError
from .inspect import value_repr

SAMPLE = ("account-0", "account-1", "account-2")


def run_demo(path: str, events: int, *, force: bool = False) -> dict[str, Any]:
    """Write ``events`` sample events into a new database at ``path`` and read them back.

    Refuses a non-empty directory unless ``force`` (it would add sample events to
    whatever database is there).
    """
    if type(events) is not int or events < 0:
        raise EngineError(f"--events must be a whole number >= 0, got {events!r}")
    if os.path.isdir(path) and os.listdir(path) and not force:
        raise EngineError(
            f"{path} is not empty; the demo writes sample events and would add them to "
            "whatever database is there. Give a new directory (or --force).")
    t0 = time.perf_counter()
    with Database(path, sync="group") as db:
        start = db.position.tx_id
        accounts = [f"account-{i}" for i in range(100)]
        per_tx = 100
        for base in range(0, events, per_tx):
            with db.transaction() as tx:
                tx.extend((accounts[(base + i) % 100], "deposited", str(base + i).encode())
                          for i in range(min(per_tx, events - base)))
        db.append("account-0", "closed", b"closed")
        db.append("account-1", "delete", b"")
        written = db.position.tx_id - start
        snap = db.snapshot()
        db.append("account-2", "renamed", b"tail event after the snapshot")
    t_write = time.perf_counter() - t0
    t1 = time.perf_counter()
    with Database(path, create=False) as db:
        t_open = time.perf_counter() - t1
        sample = {s: value_repr(db.get(s)) for s in SAMPLE}
        versions = {s: db.version(s) for s in SAMPLE}
        pos = db.position
        n_streams = sum(1 for _ in db.streams())
    return {"ok": True, "path": path, "transactions_written": written + 1,
            "events_written": events + 3, "snapshot": snap.path,
            "snapshot_tx": snap.tx_id, "position": {"epoch": pos.epoch, "tx_id": pos.tx_id},
            "streams": n_streams, "sample_state": sample, "sample_versions": versions,
            "write_seconds": round(t_write, 3), "reopen_seconds": round(t_open, 4)}
