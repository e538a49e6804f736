"""``engine-admin repair DIR`` on really damaged logs (truncated, zeroed pages, bit flips).

A damaged ``data.mdb`` can crash a process that lets LMDB map it, so these tests
never open one in-process: the expected records are read from the intact log
before it is damaged, and only the repaired log (a fresh LMDB file) is opened here.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct

import pytest

import engine
from engine import formats
from engine.log import LogStore
from engine.native import decode_tx, encode_tx
from engine.salvage import read_salvage, scan
from tests.support.cli import run, run_json

from .helpers import state_of

Records = list[tuple[int, bytes]]


def _records(path: str) -> Records:
    """Every (tx_id, record) of an intact (or repaired) log, read through LMDB."""
    store = LogStore(os.path.join(path, "log"), readonly=True)
    try:
        return [(t, bytes(r)) for t, r in store.iter_range(1)]
    finally:
        store.close()


def _fold(records: Records, state: dict[str, tuple[int, bytes | None]] | None = None
          ) -> dict[str, tuple[int, bytes | None]]:
    """The default reducer over the records: stream -> (version, value)."""
    out = dict(state or {})
    for _t, rec in records:
        c = decode_tx(rec)
        for s, ty, v, d in zip(c.streams, c.types, c.versions, c.datas, strict=True):
            out[s] = (v, None if ty == "delete" else d)
    return out


def _build(path: str, n: int, size: int, *, snapshot_at: int | None = None) -> str:
    """A database of ``n`` one-event txs of ``size``-byte payloads; returns its db_id."""
    with engine.open(path) as db:
        for i in range(1, n + 1):
            db.append(f"s{i % 7}", "set", (b"%06d" % i) * (size // 6))
            if i == snapshot_at:
                db.snapshot()
        return db.db_id


def _data(path: str) -> str:
    return os.path.join(path, "log", "data.mdb")


def _zero(path: str, start: int, end: int) -> None:
    with open(_data(path), "r+b") as f:
        f.seek(start)
        f.write(b"\0" * (end - start))


def _zero_records(path: str, original: Records, txs: range) -> None:
    """Zero the stored bytes of these txs (LMDB reuses freed pages, so records do not
    lie in tx order: each is found and zeroed where it is)."""
    with open(_data(path), "rb") as f:
        data = f.read()
    recs = dict(original)
    for t in txs:
        at = data.find(recs[t])
        assert at > 0 and data.find(recs[t], at + 1) < 0  # one copy (overflow pages)
        _zero(path, at, at + len(recs[t]))


def _split(original: Records, data: bytes) -> tuple[Records, Records]:
    """The intact records (stored bytes still in ``data``) as the gap-free run from
    tx 1 and the rest."""
    intact = [(t, r) for t, r in original if r in data]
    run = []
    for i, (t, r) in enumerate(intact):
        if t != i + 1:
            break
        run.append((t, r))
    return run, intact[len(run):]


def _offsets(data: bytes, needle: bytes) -> list[int]:
    out, at = [], data.find(needle)
    while at >= 0:
        out.append(at)
        at = data.find(needle, at + 1)
    return out


def _dir_hash(path: str) -> str:
    """A hash of every file's name and bytes under ``path`` (LOCK left out)."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            if name == "LOCK":
                continue
            p = os.path.join(root, name)
            h.update(os.path.relpath(p, path).encode())
            with open(p, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def _repair(path: str, *args: str) -> dict[str, object]:
    code, rep = run_json("repair", path, *args)
    assert code == 0, rep
    return rep


def _salvaged(rep: dict[str, object]) -> Records:
    p = rep["salvage_file"]
    if p is None:
        return []
    assert isinstance(p, str) and os.path.isfile(p)
    return [(decode_tx(r).tx_id, r) for r in read_salvage(p)]


def _check_opens(path: str, rep: dict[str, object], expected_state: dict) -> None:
    """The repaired directory opens at the reported point, verifies, and takes writes
    in the new epoch."""
    code, ver = run_json("verify", path)
    assert code == 0 and ver["ok"], ver
    with engine.open(path) as db:
        assert db.position.tx_id == rep["state_tx"]
        assert db.position.epoch == rep["new_epoch"]
        assert state_of(db) == expected_state
        assert db.append("after-repair", "set", b"x") == rep["next_tx"]
        (t,) = list(db.read_log(rep["next_tx"]))
        assert t.epoch == rep["new_epoch"]


def _aside_log(rep: dict[str, object], size: int) -> None:
    moved = rep["moved_to"]
    assert isinstance(moved, str) and os.path.isdir(moved)
    assert os.path.getsize(os.path.join(moved, "data.mdb")) == size  # never deleted
    assert os.path.isfile(os.path.join(moved, "repair-report.json"))


# ------------------------------------------------------------------ truncated


def test_truncated_log_keeps_every_record_before_the_cut(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 300, 3000)
    original = _records(path)
    # two fifths of the file (where its pages lie depends on LMDB's page reuse, which
    # the commit journal's checkpoints pace)
    cut = os.path.getsize(_data(path)) * 2 // 5
    os.truncate(_data(path), cut)
    with open(_data(path), "rb") as f:
        damaged = f.read()
    run, rest = _split(original, damaged)
    assert 100 < len(run) < len(original)
    rep = _repair(path)
    assert not str(rep["lmdb"]).startswith("LMDB reads it whole")
    assert _records(path) == run
    assert _salvaged(rep) == rest
    assert rep["kept"]["first_tx"] == 1 and rep["kept"]["last_tx"] == len(run)
    assert rep["kept"]["events"] == len(run)
    assert rep["new_epoch"] == 2 and rep["next_tx"] == len(run) + 1
    assert "unknown" in rep["lost_after"]
    _aside_log(rep, cut)
    _check_opens(path, rep, _fold(run))


# ------------------------------------------------------------------ zeroed pages


def test_zeroed_pages_in_the_middle_keep_the_run_and_salvage_the_rest(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 200, 3000)
    original = _records(path)
    _zero_records(path, original, range(90, 96))
    rep = _repair(path)
    kept = _records(path)
    assert kept == original[:89]
    # LMDB's tree is whole here (only record bytes were zeroed): the child reads it
    assert rep["lost"] == [{"first_tx": 90, "last_tx": 95, "count": 6, "known": "LMDB still "
                            "holds a record under these keys, but it fails its checks"}]
    assert "with 6 problem(s)" in rep["lmdb"]
    assert "nothing after tx 200" in rep["lost_after"]
    assert rep["outside"] == [{"first_tx": 96, "last_tx": 200, "count": 105,
                               "why": "after a gap at tx 90: they cannot be replayed onto "
                                      "the state"}]
    assert _salvaged(rep) == original[95:]  # intact, byte for byte
    assert os.path.dirname(str(rep["salvage_file"])) == rep["moved_to"]
    _check_opens(path, rep, _fold(original[:89]))


def _leaf_pages(data: bytes, psize: int = 4096) -> list[int]:
    return [p for p in range(2, len(data) // psize)
            if struct.unpack_from("<H", data, p * psize + 10)[0] & 0x02]


def test_zeroed_leaf_page_loses_no_record_held_in_overflow_pages(tmp_path):
    path = str(tmp_path / "db")
    db_id = _build(path, 120, 3000, snapshot_at=60)
    original = _records(path)
    with open(_data(path), "rb") as f:
        before = f.read()
    leaves = _leaf_pages(before)
    assert leaves
    for p in leaves:  # LMDB's tree and the meta are gone; the records' own pages are not
        _zero(path, p * 4096, (p + 1) * 4096)
    rep = _repair(path)
    assert rep["db_id"] == db_id and rep["db_id_from"] == "snapshot 1-60.snap"
    assert rep["log_before"]["base_tx"] is None  # the meta page was zeroed too
    assert _records(path) == original
    assert rep["lost"] == [] and rep["outside"] == []
    _check_opens(path, rep, _fold(original))


# ------------------------------------------------------------------ bit flips


def _mixed(path: str, seed: int) -> str:
    """Small (inline) and large (overflow) records, several events per tx."""
    rnd = random.Random(seed)
    with engine.open(path) as db:
        for i in range(150):
            with db.transaction() as tx:
                for j in range(rnd.randint(1, 3)):
                    tx.append(f"s{rnd.randint(0, 9)}", "set",
                              bytes([i % 256, j]) * rnd.choice([5, 40, 900, 2500]))
        return db.db_id


@pytest.mark.parametrize("seed", range(8))
def test_random_bit_flips_keep_every_record_whose_checksum_holds(tmp_path, seed):
    path = str(tmp_path / "db")
    db_id = _mixed(path, seed)
    original = _records(path)
    rnd = random.Random(1000 + seed)
    with open(_data(path), "r+b") as f:
        data = bytearray(f.read())
        for _ in range(rnd.randint(1, 40)):
            bit = rnd.randrange(len(data) * 8)
            data[bit // 8] ^= 1 << (bit % 8)
        f.seek(0)
        f.write(data)
    # Intact = its stored bytes are still somewhere in the file: its checksum holds.
    intact = {t: r for t, r in original if r in data}
    code, rep = run_json("repair", path, "--force")
    if code != 0 and "--db-id" in rep["message"]:  # every copy of the db_id was hit
        code, rep = run_json("repair", path, "--force", "--db-id", db_id)
    assert code == 0, rep
    kept = _records(path)
    found = {t: r for t, r in kept + _salvaged(rep)}
    for t, r in intact.items():
        assert found.get(t) == r, f"intact tx {t} was not kept"
    assert [t for t, _ in kept] == list(range(1, len(kept) + 1))  # gap-free from tx 1
    _check_opens(path, rep, _fold(kept))


# ------------------------------------------------------------------ copy-on-write


def test_stale_copies_count_once_and_stand_in_for_a_zeroed_live_page(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 400, 30)  # small inline records: every commit rewrites the last leaf
    original = _records(path)
    with open(_data(path), "rb") as f:
        data = f.read()
    assert any(len(_offsets(data, r)) >= 2 for _t, r in original), "no stale copies?"
    code, dry = run_json("repair", path, "--dry-run", "--force")
    assert code == 0, dry
    assert dry["found"]["duplicates"] > 0
    assert dry["found"]["records"] == len(original)
    assert dry["conflicts"] == []
    # A record whose every copy in a leaf node (the live one among them) is zeroed
    # survives from a stale copy in a page LMDB has since reused for something else.
    by_tx: dict[int, list] = {}
    for r in scan(bytearray(data), "x").records:
        by_tx.setdefault(r.tx_id, []).append(r)
    t = next(t for t, rs in sorted(by_tx.items()) if any(r.anchored for r in rs)
             and any(not r.anchored for r in rs))
    for r in by_tx[t]:
        if r.anchored:
            _zero(path, r.offset - r.offset % 4096, r.offset - r.offset % 4096 + 4096)
    with open(_data(path), "rb") as f:
        data = f.read()
    intact = {tt: r for tt, r in original if r in data}
    assert t in intact
    rep = _repair(path, "--force")
    found = dict(_records(path) + _salvaged(rep))
    assert all(found.get(tt) == r for tt, r in intact.items())
    assert found[t] == dict(original)[t]
    assert rep["found"]["outside_lmdb_structure"] >= 1


def test_a_conflicting_copy_outside_lmdb_structure_is_reported_not_used(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 20, 100)
    original = _records(path)
    c = decode_tx(dict(original)[5])
    forged = bytes(encode_tx(5, c.epoch, c.ts_ns + 10**9, c.first_position, c.versions,
                             c.prev_tx, b"s5\0", b"set\0", [b"forged"]))
    with open(_data(path), "ab") as f:  # past LMDB's last page: bytes LMDB never reads
        f.write(b"\0" * 100 + forged)
    rep = _repair(path, "--force")
    assert [cf["tx_id"] for cf in rep["conflicts"]] == [5]
    assert rep["conflicts"][0]["kept"]["why"] == "the copy LMDB's tree holds"
    assert _records(path) == original  # the copy inside LMDB's structure won
    assert (5, forged) in _salvaged(rep)
    assert rep["forced"] is True


def _flip_inside(path: str, rec: bytes) -> None:
    """Flip one bit in the middle of the stored bytes of ``rec`` (its checksum fails)."""
    with open(_data(path), "r+b") as f:
        data = f.read()
        at = data.find(rec) + len(rec) // 2
        f.seek(at)
        f.write(bytes([data[at] ^ 0x10]))


def test_intact_records_past_the_end_lmdb_reads_are_salvaged_not_replayed(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 30, 3000)
    original = _records(path)
    last = decode_tx(original[-1][1])
    extra = []  # what an aborted write could leave past the committed log
    for i in range(5):
        t = 31 + i
        extra.append((t, bytes(encode_tx(t, last.epoch, last.ts_ns + i, last.first_position
                                         + 1 + i, [99], [0], b"ghost\0", b"set\0",
                                         [b"never committed"]))))
    with open(_data(path), "ab") as f:
        f.write(b"".join(r for _, r in extra))
    _flip_inside(path, original[9][1])  # tx 10 damaged: LMDB still reads the tree
    rep = _repair(path)
    assert "with 1 problem(s)" in rep["lmdb"]
    assert _records(path) == original[:9]
    assert _salvaged(rep) == original[10:] + extra
    whys = {(o["first_tx"], o["last_tx"]): o["why"] for o in rep["outside"]}
    assert whys[(11, 30)].startswith("after a gap at tx 10")
    assert whys[(31, 35)].startswith("past tx 30, where the log LMDB reads ends")
    _check_opens(path, rep, _fold(original[:9]))


def test_a_failed_repair_changes_nothing_and_can_run_again(tmp_path):
    from engine.files import FileSystem, installed

    class FailingWrites(FileSystem):
        def write_atomic(self, final, tmp, chunks):
            raise engine.StorageError(f"cannot write {final}: injected")

    path = str(tmp_path / "db")
    _build(path, 50, 3000)
    original = _records(path)
    _flip_inside(path, original[20][1])
    before = _dir_hash(path)
    with installed(FailingWrites()):
        code, rep = run_json("repair", path)
    assert code == 1 and "injected" in rep["message"]
    assert "nothing was changed" in rep["message"]
    assert _dir_hash(path) == before  # the damaged log untouched, no log.new left over
    assert sorted(os.listdir(path)) == ["LOCK", "log"]
    os.makedirs(os.path.join(path, "log.new"))  # as a crash would leave one
    rep = _repair(path)
    assert _records(path) == original[:20]
    assert not os.path.exists(os.path.join(path, "log.new"))


# ------------------------------------------------------------------ snapshots


def test_gap_below_a_snapshot_keeps_the_state_and_the_run_after_it(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 200, 3000, snapshot_at=150)
    original = _records(path)
    with engine.open(path) as db:
        final = state_of(db)
    _zero_records(path, original, range(60, 71))
    rep = _repair(path)
    assert rep["snapshot"].endswith("1-150.snap")
    assert rep["state_tx"] == 200
    assert _records(path) == original[70:]  # txs 71..200: the run through the snapshot
    assert rep["kept"]["base_tx"] == 70
    assert rep["lost"][0]["first_tx"] == 60 and rep["lost"][0]["last_tx"] == 70
    assert "their effect is in the state" in rep["lost"][0]["known"]
    assert _salvaged(rep) == original[:59]  # txs 1..59, history only
    assert rep["outside"][0]["why"].startswith("before the kept log starts")
    _check_opens(path, rep, final)
    with engine.open(path) as db, pytest.raises(engine.HistoryLostError):
        list(db.read_log(1))


def test_gap_above_a_snapshot_starts_from_the_snapshot_when_it_reaches_further(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 200, 3000, snapshot_at=150)
    original = _records(path)
    _zero_records(path, original, range(100, 161))  # 161.. lie after the gap
    rep = _repair(path)
    # From tx 0 the run reaches tx 99; from the snapshot, tx 150 (161.. need 151..160).
    assert rep["state_tx"] == 150 and rep["snapshot"].endswith("1-150.snap")
    assert _records(path) == []
    assert rep["kept"]["base_tx"] == 150
    salvaged = dict(_salvaged(rep))
    assert set(salvaged) == set(range(1, 100)) | set(range(161, 201))
    with engine.open(path) as db:
        assert db.position.tx_id == 150
    _check_opens(path, rep, _fold(original[:150]))


# ------------------------------------------------------------------ dry run, JSON


def test_dry_run_changes_nothing_and_reports_the_same(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 100, 3000)
    os.truncate(_data(path), 200_000)
    before = _dir_hash(path)
    code, dry = run_json("repair", path, "--dry-run")
    assert code == 0 and dry["ok"] and dry["dry_run"]
    assert _dir_hash(path) == before
    assert sorted(os.listdir(path)) == ["LOCK", "log"]
    code, text = run("repair", path, "--dry-run")
    assert code == 0 and "would repair" in text and "would move aside" in text
    assert _dir_hash(path) == before
    rep = _repair(path)
    for key in ("kept", "outside", "lost", "new_epoch", "next_tx", "state_tx", "db_id"):
        assert rep[key] == dry[key], key
    assert set(rep) >= {"ok", "path", "dry_run", "db_id", "db_id_from", "data_file",
                        "file_bytes", "lmdb", "found", "log_before", "snapshot", "state_tx",
                        "kept", "outside", "salvage_file", "lost", "lost_after", "conflicts",
                        "new_epoch", "next_tx", "moved_to", "notes"}
    assert set(rep["found"]) == {"candidates", "intact_copies", "records", "duplicates",
                                 "conflicts", "damaged_copies", "outside_lmdb_structure"}


# ------------------------------------------------------------------ refusals


def test_no_database_is_refused_and_creates_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, rep = run_json("repair", str(empty))
    assert code == 1 and rep["ok"] is False and "nothing to repair" in rep["message"]
    assert os.listdir(empty) == []
    code, text = run("repair", str(tmp_path / "absent"))
    assert code == 1 and "not a directory" in text
    assert not (tmp_path / "absent").exists()


def test_locked_directory_is_refused(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 5, 10)
    with engine.open(path):
        code, rep = run_json("repair", path)
    assert code == 1 and rep["error"] == "DatabaseLockedError"
    assert not os.path.exists(os.path.join(path, "aside"))


def test_healthy_log_is_refused_unless_forced(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 30, 100)
    original = _records(path)
    before = _dir_hash(path)
    code, rep = run_json("repair", path)
    assert code == 1 and "intact" in rep["message"] and "nothing to repair" in rep["message"]
    assert _dir_hash(path) == before
    rep = _repair(path, "--force")
    assert rep["forced"] and rep["lost"] == [] and rep["outside"] == []
    assert _records(path) == original
    _check_opens(path, rep, _fold(original))


def test_unrecoverable_db_id_is_refused_until_given(tmp_path):
    path = str(tmp_path / "db")
    db_id = _build(path, 40, 3000)
    original = _records(path)
    with open(_data(path), "r+b") as f:
        data = bytearray(f.read())
        at = data.find(db_id.encode())
        while at >= 0:  # every copy of the db_id entry's value
            data[at : at + 36] = b"x" * 36
            at = data.find(db_id.encode())
        f.seek(0)
        f.write(data)
    before = _dir_hash(path)
    code, rep = run_json("repair", path)
    assert code == 1 and "database id" in rep["message"] and "--db-id" in rep["message"]
    assert _dir_hash(path) == before
    code, rep = run_json("repair", path, "--db-id", "not-a-uuid")
    assert code == 1 and "UUID" in rep["message"]
    rep = _repair(path, "--db-id", db_id)
    assert rep["db_id"] == db_id and rep["db_id_from"] == "--db-id"
    assert _records(path) == original
    with engine.open(path) as db:
        assert db.db_id == db_id


def test_db_id_from_a_snapshot_when_the_meta_is_gone(tmp_path):
    path = str(tmp_path / "db")
    db_id = _build(path, 40, 3000, snapshot_at=40)
    with open(_data(path), "r+b") as f:
        data = bytearray(f.read())
        at = data.find(formats.META_DB_ID)
        while at >= 0:
            data[at : at + len(formats.META_DB_ID)] = b"\xff" * len(formats.META_DB_ID)
            at = data.find(formats.META_DB_ID)
        f.seek(0)
        f.write(data)
    rep = _repair(path)
    assert rep["db_id"] == db_id and rep["db_id_from"] == "snapshot 1-40.snap"


def test_a_log_of_a_later_epoch_keeps_its_base_and_history(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 40, 3000, snapshot_at=40)
    os.rename(os.path.join(path, "log"), str(tmp_path / "lost-log"))
    code, rec = run_json("recover", "--new-epoch", path)
    assert code == 0, rec
    with engine.open(path) as db:  # epoch 2 from tx 41
        for i in range(41, 101):
            db.append(f"s{i % 7}", "set", (b"%06d" % i) * 500)
    original = _records(path)
    assert original[0][0] == 41
    _zero_records(path, original, range(80, 83))
    rep = _repair(path)
    assert rep["log_before"]["epoch"] == 2 and rep["log_before"]["base_tx"] == 40
    assert rep["new_epoch"] == 3 and rep["state_tx"] == 79
    assert rep["kept"]["base_tx"] == 40 and _records(path) == original[:39]
    with engine.open(path) as db:
        assert [h.epoch for h in db.epoch_history] == [1, 2, 3]
        assert db.epoch_history[-1].first_tx == 80
        assert {t.epoch for t in db.read_log(41)} == {2}  # their true epoch
        assert "repair" in db.epoch_history[-1].reason


def test_zeroed_lmdb_meta_pages_lose_nothing(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 60, 3000)
    original = _records(path)
    _zero(path, 0, 2 * 4096)  # both of LMDB's meta pages: LMDB cannot open it
    rep = _repair(path)
    assert "LMDB could not read it" in rep["lmdb"] or "crashed" in rep["lmdb"]
    assert _records(path) == original and rep["lost"] == []
    _check_opens(path, rep, _fold(original))


def test_an_emptied_data_file_with_a_snapshot_rebuilds_from_the_snapshot(tmp_path):
    path = str(tmp_path / "db")
    db_id = _build(path, 60, 3000, snapshot_at=50)
    original = _records(path)
    os.truncate(_data(path), 0)
    rep = _repair(path)
    assert rep["db_id"] == db_id and rep["db_id_from"] == "snapshot 1-50.snap"
    assert rep["state_tx"] == 50 and rep["kept"]["count"] == 0
    assert "unknown" in rep["lost_after"]
    _check_opens(path, rep, _fold(original[:50]))


@pytest.mark.parametrize("seed", range(6))
def test_mixed_damage_never_loses_an_intact_record(tmp_path, seed):
    """Bit flips, zeroed pages and a cut together, with a snapshot or without."""
    path = str(tmp_path / "db")
    rnd = random.Random(seed)
    db_id = _mixed(path, seed)
    if seed % 2:
        with engine.open(path) as db:
            db.snapshot()
            for _ in range(30):
                db.append("z", "set", os.urandom(rnd.choice([10, 3000])))
    original = _records(path)
    with open(_data(path), "rb") as f:
        data = bytearray(f.read())
    for _ in range(rnd.randint(1, 300)):
        bit = rnd.randrange(len(data) * 8)
        data[bit // 8] ^= 1 << (bit % 8)
    for _ in range(rnd.randint(1, 6)):
        page = rnd.randrange(len(data) // 4096)
        data[page * 4096 : (page + 1) * 4096] = bytes(4096)
    data = data[: rnd.randrange(len(data) // 2, len(data))]
    with open(_data(path), "wb") as f:
        f.write(data)
    intact = {t: r for t, r in original if r in data}
    code, rep = run_json("repair", path, "--force")
    if code != 0:
        assert "--db-id" in rep["message"] and db_id.encode() not in data, rep
        return
    found = dict(_records(path) + _salvaged(rep))
    assert [t for t, r in intact.items() if found.get(t) != r] == []
    code, ver = run_json("verify", path)
    assert code == 0, ver
    with engine.open(path) as db:
        assert db.position == engine.Position(rep["new_epoch"], rep["state_tx"])
