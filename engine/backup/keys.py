"""Every object key the engine writes into a backup target, named by one function each
(the bucket's ``engine.layout``)::

    <db_id>/epochs/<epoch>.json                     claim of an epoch (create-if-absent)
    <db_id>/log/<epoch>/<first_tx>-<last_tx>.seg    a log-backup segment (tx ids 20 digits)
    <db_id>/log/<epoch>/checkpoint.json             the last verified segment of the epoch
    <db_id>/log/<epoch>/base-<tx_id>.snap           the snapshot an epoch's log starts from
                                                    (when it starts after tx 0; 20 digits)
    <db_id>/full/<backup_id>/intent.json            a full backup started (create-if-absent)
    <db_id>/full/<backup_id>/files/<name>           a file of a full backup (one part)
    <db_id>/full/<backup_id>/files/<name>.part-NNNNNN   a part of a larger file
    <db_id>/full/<backup_id>/manifest.json          written last: the backup is complete

``<backup_id>`` is ``YYYYMMDDTHHMMSSZ-<6 hex>`` (UTC start time, sortable).

``<epoch>`` is unpadded decimal; listings are parsed, never sorted as text.
"""

from __future__ import annotations

import re

from .segment import parse_segment_name, segment_name

_DB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_CLAIM = re.compile(r"^(\d+)\.json$")
_BASE = re.compile(r"^base-(\d{20})\.snap$")
_BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


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


# ------------------------------------------------------------------ full backups


def is_backup_id(text: str) -> bool:
    return bool(_BACKUP_ID.match(text))


def is_safe_file_name(name: object) -> bool:
    """A plain file name a manifest may hold: no separator, no ``..``, not hidden."""
    return (isinstance(name, str) and bool(_FILE_NAME.match(name)) and ".." not in name
            and ".part-" not in name)


def full_prefix(db_id: str) -> str:
    return f"{db_id}/full/"


def backup_prefix(db_id: str, backup_id: str) -> str:
    return f"{db_id}/full/{backup_id}/"


def parse_backup_key(key: str, db_id: str) -> tuple[str, str] | None:
    """``(backup_id, rest)`` of a key under ``<db_id>/full/``, or None."""
    prefix = full_prefix(db_id)
    if not key.startswith(prefix):
        return None
    backup_id, _, rest = key[len(prefix):].partition("/")
    return (backup_id, rest) if is_backup_id(backup_id) and rest else None


def manifest_key(db_id: str, backup_id: str) -> str:
    return backup_prefix(db_id, backup_id) + "manifest.json"


def intent_key(db_id: str, backup_id: str) -> str:
    return backup_prefix(db_id, backup_id) + "intent.json"


def part_name(name: str, index: int, parts: int) -> str:
    """The object name (below the backup's prefix) of part ``index`` of file ``name``:
    ``files/<name>`` when the file is one part, ``files/<name>.part-NNNNNN`` otherwise."""
    return f"files/{name}" if parts == 1 else f"files/{name}.part-{index:06d}"


def full_databases_of(key: str) -> str | None:
    """The db_id of a key ``<db_id>/full/...``, or None."""
    head, _, rest = key.partition("/")
    return head if is_db_id(head) and rest.startswith("full/") else None
