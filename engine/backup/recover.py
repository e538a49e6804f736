"""``recover --new-epoch --from-backup URL``: the log backup as the tail of a recovery.

:func:`backup_tail` plans the backup's chain for the database and hands
``ops.recover.recover_new_epoch`` the records it can use: from tx 1 when the backup
holds the whole history (so ``read_log``/``read_stream`` keep answering), else from
the snapshot on, up to the last tx the backup holds. Every segment is downloaded
and verified before the new log receives a record.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator

from ..errors import BackupNotFoundError
from ..model import EpochRecord
from ..ops.plan import in_history
from ..ops.recover import RecoveryTail, TailProvider
from ..snapshot import SnapshotHeader
from .chain import claimed_epochs, plan_chain
from .restore import last_position, spool_chain, spooled
from .targets import Target, TargetOptions, open_target

BATCH = 256


def backup_tail(url: str | TargetOptions | Target) -> TailProvider:
    """A tail provider reading the log backup at ``url`` (see module doc)."""
    target = url if isinstance(url, Target) else open_target(url)

    def provide(h: SnapshotHeader, history: tuple[EpochRecord, ...]) -> RecoveryTail | None:
        # Follow this database's own timeline, not the target's newest epoch: that may be
        # another host's restore (a fork) whose records do not belong on this lineage.
        mine = max((r.epoch for r in history), default=h.epoch)
        try:
            claims = claimed_epochs(target, h.db_id)
            chain = plan_chain(target, h.db_id, epoch=mine)
        except BackupNotFoundError:
            return None
        if not in_history(h.position, chain.history):
            return None  # the kept snapshot is not on the backup's lineage
        if not chain.links or chain.last_tx < h.tx_id:
            return None
        records_from = chain.links[0].first_tx  # after a base snapshot, or tx 1
        if records_from == 1:
            base_tx, base_pos = 0, 0
        elif records_from <= h.tx_id + 1:
            base_tx, base_pos = h.tx_id, h.last_position
        else:
            return None
        last_tx = chain.last_tx
        last_pos = last_position(target, chain)

        def records() -> Iterator[list[tuple[int, bytes]]]:
            work = tempfile.mkdtemp(prefix="engine-recover-")
            try:
                paths, _ = spool_chain(target, chain, stop=last_tx, directory=work)
                batch: list[tuple[int, bytes]] = []
                for p in paths:
                    for tx_id, rec in spooled(p):
                        if tx_id <= base_tx:
                            continue
                        batch.append((tx_id, rec))
                        if len(batch) >= BATCH:
                            yield batch
                            batch = []
                if batch:
                    yield batch
            finally:
                with contextlib.suppress(OSError):
                    shutil.rmtree(work)

        return RecoveryTail(base_tx=base_tx, base_position=base_pos, last_tx=last_tx,
                            last_position=last_pos, source=target.url, records=records,
                            newest_epoch_elsewhere=max(claims, default=0))

    return provide
