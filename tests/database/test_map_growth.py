"""The LMDB map grows by itself (and only with no read transaction open)."""

from __future__ import annotations

import threading

from engine.database import Database


def _payload(i: int, size: int) -> bytes:
    return (b"%08d" % i) * (size // 8)


def test_log_map_grows_past_its_initial_size(db_path):
    db = Database(db_path, map_size=1 << 20, sync="none")
    stop = threading.Event()
    reader_errors: list[BaseException] = []
    reads = [0]

    def reader() -> None:
        try:
            while not stop.is_set():
                for t in db.read_log():
                    assert t.events[0].data[:8] == b"%08d" % t.tx_id
                    reads[0] += 1
        except BaseException as exc:  # surfaced below
            reader_errors.append(exc)

    th = threading.Thread(target=reader)
    th.start()
    try:
        written = 0
        i = 0
        while written <= 5 << 20:
            i += 1
            if i % 4:
                assert db.append(f"s{i % 7}", "e", _payload(i, 64 << 10)) == i
            else:
                with db.transaction() as tx:
                    tx.append(f"s{i % 7}", "e", _payload(i, 64 << 10))
                    tx.append("multi", "e", _payload(i, 32 << 10))
                assert tx.tx_id == i
                written += 32 << 10
            written += 64 << 10
        grown = db._log._env.info()["map_size"]
    finally:
        stop.set()
        th.join()
        db.close()
    assert not reader_errors
    assert grown > 5 << 20  # the map really grew (from 1 MiB)
    n = i

    db = Database(db_path)
    try:
        txs = list(db.read_log())
        assert [t.tx_id for t in txs] == list(range(1, n + 1))
        for t in txs:
            assert t.events[0].data == _payload(t.tx_id, 64 << 10)
            if t.tx_id % 4 == 0:
                assert t.events[1].data == _payload(t.tx_id, 32 << 10)
            else:
                assert len(t.events) == 1
        fold: dict[str, list[bytes]] = {}
        for t in txs:
            for e in t.events:
                fold.setdefault(e.stream, []).append(e.data)
        assert len(fold) == 8
        for s, datas in fold.items():
            assert (db.get(s), db.version(s)) == (datas[-1], len(datas))
        assert db.version("multi") == n // 4
        # still writable after reopening a grown log
        assert db.append("after", "e", _payload(n + 1, 64 << 10)) == n + 1
    finally:
        db.close()
