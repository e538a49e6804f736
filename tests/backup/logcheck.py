"""Checks shared by the log-backup tests: what the target holds, and restore equality."""

from __future__ import annotations

import itertools
import os
from typing import Any

import engine
from engine.backup import keys
from engine.backup.chain import fetch_segments, plan_chain
from engine.backup.restore import restore
from engine.backup.targets import Target


def shipped_records(target: Target, db_id: str) -> list[tuple[int, bytes]]:
    """Every record on the newest lineage in the target, in order (the chain is checked)."""
    chain = plan_chain(target, db_id)
    out: list[tuple[int, bytes]] = []
    for _h, records in fetch_segments(target, chain):
        out.extend(records)
    return out


def assert_exactly_once(target: Target, db: engine.Database, *, through: int | None = None,
                        epoch: int | None = None) -> None:
    """The target holds every committed tx of the current lineage (up to ``through``)
    exactly once, contiguous from tx 1, and byte-equal to the local log."""
    got = shipped_records(target, db.db_id)
    txs = [t for t, _ in got]
    last = db.position.tx_id if through is None else through
    assert txs[: last] == list(range(1, last + 1)), (txs[:5], txs[-5:], last)
    assert len(txs) == len(set(txs))
    local = {t.tx_id: t for t in db.read_log(1)} if db.epoch_history[-1].first_tx == 1 or \
        db.epoch_history[0].first_tx == 1 else {}
    for tx_id, rec in got:
        if tx_id in local:
            assert rec == db._log.get(tx_id), tx_id
    # and no segment of this epoch is left over beside the chain
    ep = db.position.epoch if epoch is None else epoch
    seg_keys = [o.key for o in target.list(keys.log_prefix(db.db_id, ep))
                if o.key.endswith(".seg")]
    ranges = sorted(keys.parse_segment_key(k, db.db_id, ep) for k in seg_keys)  # type: ignore[type-var]
    for (_a, b), (c, _d) in itertools.pairwise(ranges):
        assert c == b + 1, ranges


def state_of(db: engine.Database) -> dict[str, Any]:
    return {s: (db.version(s), db.get(s)) for s in db.streams()}


def log_of(db: engine.Database, from_tx: int = 1) -> list[tuple[int, tuple[Any, ...]]]:
    return [(t.tx_id, tuple((e.stream, e.version, e.type, e.data, e.position, e.epoch)
                            for e in t.events)) for t in db.read_log(from_tx)]


def assert_restore_equals(url: Any, db_path: str, tmp: str, **kw: Any) -> engine.Database:
    """Restore ``url`` into a new directory and compare it with the (closed) source."""
    dest = os.path.join(tmp, f"restored-{len(os.listdir(tmp))}")
    restore(url, dest, **kw)
    with engine.open(db_path) as src:
        want_state, want_log = state_of(src), log_of(src)
    got = engine.open(dest)
    try:
        assert state_of(got) == want_state
        assert log_of(got) == want_log
        assert got.position.epoch > max(h.epoch for h in got.epoch_history[:-1])
    finally:
        got.close()
    return got
