"""A log-backup restore snapshots the restored state only when its log is long (later
opens would replay all of it); a short one is left to be replayed by each open."""

from __future__ import annotations

import os

import pytest

import engine
from engine.backup import restore as restore_mod
from engine.snapshot import list_snapshots


def _backed_up(tmp_path, txs: int) -> str:
    url = (tmp_path / "target").as_uri()
    with engine.open(str(tmp_path / "src"), backup=url, sync="none") as db:
        for i in range(txs):
            db.append(f"s{i % 4}", "set", b"%d" % i)
        db.backup.flush(timeout=30)
    return url


def _snapshots(path) -> list:
    return list_snapshots(os.path.join(path, "snapshots"))


@pytest.mark.parametrize("min_txs, expect_snapshot", [(10_000, False), (5, True)])
def test_restore_snapshots_a_long_log_only(tmp_path, monkeypatch, min_txs, expect_snapshot):
    url = _backed_up(tmp_path, 20)
    monkeypatch.setattr(restore_mod, "SNAPSHOT_MIN_TXS", min_txs)
    out = str(tmp_path / "out")
    report = restore_mod.restore(url, out)
    assert report.last_tx == 20
    assert bool(_snapshots(out)) is expect_snapshot
    with engine.open(out) as db:  # either way the same database
        assert db.position.tx_id == 20
        assert [db.get(f"s{k}") for k in range(4)] == [b"16", b"17", b"18", b"19"]
        assert [t.tx_id for t in db.read_log()] == list(range(1, 21))


def test_the_byte_threshold_also_snapshots(tmp_path, monkeypatch):
    url = _backed_up(tmp_path, 3)
    monkeypatch.setattr(restore_mod, "SNAPSHOT_MIN_BYTES", 1)
    out = str(tmp_path / "out")
    restore_mod.restore(url, out)
    assert _snapshots(out)
