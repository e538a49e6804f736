"""``inspect``: one transaction or one stream of a database, as plain data.

It opens the database like any application (``Database(path, create=False)``): the
log's header is checked before LMDB maps it, the tree pages open walks are checked
before LMDB walks them, and every record read is checked (checksum, key, epoch,
gap-free); a garbled leaf node deeper in the tree is for ``verify``."""

from __future__ import annotations

import base64
from typing import Any

from ..database import Database
from ..errors import EngineError


def value_repr(data: bytes | None) -> Any:
    """Stored bytes as JSON-able data: printable UTF-8 as text, anything else base64."""
    if data is None:
        return None
    try:
        text = data.decode("utf-8")
        if text.isprintable():
            return text
    except UnicodeDecodeError:
        pass
    return {"base64": base64.b64encode(data).decode()}


def inspect_tx(db: Database, tx_id: int) -> dict[str, Any]:
    """One transaction's events; :class:`EngineError` if there is no such tx."""
    txs = list(db.read_log(tx_id, tx_id))
    if not txs:
        raise EngineError(f"no tx {tx_id} in {db.path} (last committed: {db.position.tx_id})")
    t = txs[0]
    return {"ok": True, "tx_id": t.tx_id, "epoch": t.epoch, "ts": t.ts,
            "tracking": [{"name": n, "position": p} for n, p in t.tracking],
            "events": [{"stream": e.stream, "version": e.version, "type": e.type,
                        "position": e.position, "data": value_repr(e.data)}
                       for e in t.events]}


def inspect_stream(db: Database, stream: str) -> dict[str, Any]:
    """One stream's state and events."""
    return {"ok": True, "stream": stream, "version": db.version(stream),
            "value": value_repr(db.get(stream)),
            "events": [{"version": e.version, "type": e.type, "tx_id": e.tx_id,
                        "position": e.position, "data": value_repr(e.data)}
                       for e in db.read_stream(stream)]}
