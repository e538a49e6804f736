"""Every object key the engine writes into a backup target, named by one function each
(the bucket's ``engine.layout``)::

    <db_id>/epochs/<epoch>.json                     claim of an epoch (create-if-absent)
    <db_id>/log/<epoch>/<first_tx>-<last_tx>.seg    a log-backup segment (tx ids 20 digits)
    <db_id>/log/<epoch>/checkpoint.json             the last verified segment of the epoch
    <db_id>/log/<epoch>/base-<tx_id>.snap           the snapshot an epoch's log starts from
                                                    (when it starts after tx 0; 20 digits)

``<epoch>`` is unpadded decimal; listings are parsed, never sorted as text.
"""

from __future__ import annotations

import re

from .segment import parse_segment_name, segment_name

_DB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_CLAIM = re.compile(r"^(\d+)\.json$")
_BASE = re.compile(r"^base-(\d{20})\.snap$")


def is_db_id(text: str) -> bool:
    return bool(_DB_ID.match(text))


def epochs_prefix(db_id: str) -> str:
    return f"{db_id}/epochs/"


def claim_key(db_id: str, epoch: int) -> str:
    return f"{db_id}/epochs/{epoch}.json"


def parse_claim_key(key: str, db_id: str) -> int | None:
    """The epoch a claim key names, or None if ``key`` is not a claim of ``db_id``."""
    prefix = epochs_prefix(db_id)
    if not key.startswith(prefix):
        return None
    m = _CLAIM.match(key[len(prefix):])
    return int(m.group(1)) if m else None


def log_prefix(db_id: str, epoch: int) -> str:
    return f"{db_id}/log/{epoch}/"


def segment_key(db_id: str, epoch: int, first_tx: int, last_tx: int) -> str:
    return log_prefix(db_id, epoch) + segment_name(first_tx, last_tx)


def parse_segment_key(key: str, db_id: str, epoch: int) -> tuple[int, int] | None:
    """``(first_tx, last_tx)`` if ``key`` is a segment of that epoch, else None."""
    prefix = log_prefix(db_id, epoch)
    if not key.startswith(prefix) or "/" in key[len(prefix):]:
        return None
    return parse_segment_name(key[len(prefix):])


def checkpoint_key(db_id: str, epoch: int) -> str:
    return log_prefix(db_id, epoch) + "checkpoint.json"


def base_key(db_id: str, epoch: int, tx_id: int) -> str:
    return f"{log_prefix(db_id, epoch)}base-{tx_id:020d}.snap"


def parse_base_key(key: str, db_id: str, epoch: int) -> int | None:
    """The tx a base snapshot key names, or None."""
    prefix = log_prefix(db_id, epoch)
    if not key.startswith(prefix):
        return None
    m = _BASE.match(key[len(prefix):])
    return int(m.group(1)) if m else None
