"""Building blocks for the recovery tests: databases in known shapes, and faults."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys

import lmdb

import engine
from engine.log import LogStore, tx_key

ADMIN = [sys.executable, "-c", "from engine.cli import main; main()"]


def write_txs(db: engine.Database, n: int, tag: str = "e") -> None:
    """n transactions of two events each, over a handful of streams."""
    for _ in range(n):
        t = db.position.tx_id + 1
        with db.transaction() as tx:
            tx.append(f"s{t % 5}", "set", f"{tag}{t}".encode())
            tx.append(f"k{t % 3}", "set", f"{tag}{t}k".encode())


def state_of(db: engine.Database) -> dict[str, tuple[int, bytes | None]]:
    return {s: (db.version(s), db.get(s)) for s in db.streams()}


def log_dir(path: str) -> str:
    return os.path.join(path, "log")


def delete_log(path: str) -> None:
    shutil.rmtree(log_dir(path))


def empty_log(path: str, db_id: str) -> None:
    """Replace the log with one that has meta but no transactions."""
    delete_log(path)
    store = LogStore(log_dir(path))
    store.initialise(db_id, 1, 0, 0, [engine.EpochRecord(1, 1, 1, 0.0, "created")])
    store.close()


def drop_first_records(path: str, upto: int) -> None:
    """Delete records 1..upto from the log (a log that starts too late)."""
    env = lmdb.open(log_dir(path), max_dbs=4)
    txdb = env.open_db()
    with env.begin(write=True) as txn:
        for t in range(1, upto + 1):
            txn.delete(tx_key(t), db=txdb)
    env.close()


def log_meta_epoch(path: str) -> int:
    env = lmdb.open(log_dir(path), max_dbs=4, readonly=True, lock=False)
    from engine import formats

    with env.begin() as txn:
        (e,) = struct.unpack("<Q", txn.get(formats.META_EPOCH))
    env.close()
    return int(e)


def tree(path: str) -> dict[str, int]:
    """Relative path -> size of every file (LOCK excluded), and -1 for every directory."""
    out = {}
    for root, dirs, files in os.walk(path):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), path)] = -1
        for f in files:
            p = os.path.join(root, f)
            if f != "LOCK":
                out[os.path.relpath(p, path)] = os.path.getsize(p)
    return out


def admin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ADMIN, *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def admin_json(*args: str) -> tuple[int, dict[str, object]]:
    p = admin(*args, "--json")
    return p.returncode, json.loads(p.stdout)
