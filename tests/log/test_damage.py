"""A damaged or foreign data.mdb never crashes open, verify or status: every path of the
checks before LMDB maps the file, every damaged meta entry, and the verify child."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys

import lmdb
import pytest

import engine
from engine import formats, layout, lmdbfile
from engine.errors import CorruptLogError
from engine.ops import verify as verify_mod
from engine.ops.status import directory_status
from engine.ops.verify import verify_directory
from tests.log.lmdb_damage import data_file, in_child, live_pages, write_at, zero_page
from tests.support.cli import run

RUNBOOK = "see 'A damaged log' in docs/RUNBOOK.md"
# Offsets inside a meta page (64-bit LMDB 0.9): see engine/lmdbfile.py.
MAGIC_AT, VERSION_AT, PSIZE_AT, MAIN_FLAGS_AT, MAIN_ROOT_AT = 16, 20, 40, 92, 128
LAST_PG_AT, TXNID_AT = 136, 144


Log = list[tuple[int, list[tuple[str, str, bytes]]]]


def _build(path: str, txs: int = 40, size: int = 100) -> Log:
    """A closed database of ``txs`` appends; returns what read_log gives."""
    with engine.open(path) as db:
        for i in range(txs):
            db.append(f"s{i % 5}", "set", bytes([i % 251]) * size)
        return _log_of(db)


def _log_of(db: engine.Database) -> Log:
    return [(t.tx_id, [(e.stream, e.type, e.data) for e in t.events]) for t in db.read_log()]


def _newest_index(path: str) -> int:
    header = lmdbfile.read_header(data_file(path))
    assert header is not None
    return header.newest.index


def _meta_field(path: str, index: int, at: int, fmt: str, value: int) -> None:
    write_at(data_file(path), index * 4096 + at, struct.pack(fmt, value))


def _digest(path: str) -> str:
    with open(data_file(path), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _refused(path: str, *needles: str) -> CorruptLogError:
    with pytest.raises(CorruptLogError) as info:
        engine.open(path)
    msg = str(info.value)
    for needle in (*needles, RUNBOOK):
        assert needle in msg, msg
    return info.value


def _cli_one_error(*args: str) -> str:
    """engine-admin ARGS fails with exit 1 and the engine's message, no traceback."""
    code, out = run(*args)
    assert code == 1, out
    assert "Traceback" not in out
    return out


@pytest.fixture
def db_path(tmp_path: pytest.TempPathFactory) -> str:
    path = str(tmp_path / "db")  # type: ignore[operator]
    _build(path)
    return path


# ------------------------------------------------------------ the parser vs LMDB


@pytest.mark.parametrize("txs", [0, 1, 2, 7, 300])
def test_header_matches_what_lmdb_reports(tmp_path, txs):
    path = str(tmp_path / "db")
    _build(path, txs, size=3000)
    header = lmdbfile.read_header(data_file(path))
    assert header is not None
    env = lmdb.open(layout.log_dir(path), readonly=True, lock=False)
    try:
        info, stat = env.info(), env.stat()
    finally:
        env.close()
    newest = header.newest
    assert newest.last_pg == info["last_pgno"]
    assert newest.txnid == info["last_txnid"]
    assert header.page_size == stat["psize"] == 4096
    main = newest.main
    assert (main.depth, main.branch_pages, main.leaf_pages, main.overflow_pages,
            main.entries) == (stat["depth"], stat["branch_pages"], stat["leaf_pages"],
                              stat["overflow_pages"], stat["entries"])
    assert header.file_bytes >= (newest.last_pg + 1) * 4096
    other = header.metas[1 - newest.index]
    assert other.txnid == newest.txnid - 1  # consecutive, of their own parity


def test_header_of_an_lmdb_compacting_copy(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 30)
    copy = tmp_path / "copy"
    copy.mkdir()
    env = lmdb.open(layout.log_dir(path), readonly=True, lock=False)
    env.copy(str(copy), compact=True)
    env.close()
    header = lmdbfile.read_header(str(copy / "data.mdb"))
    assert header is not None and header.newest.index == 1 and header.newest.txnid == 1


def test_unreadable_file_is_a_storage_error(tmp_path):
    os.makedirs(tmp_path / "db" / "log" / "data.mdb")  # a directory where the file goes
    with pytest.raises(engine.StorageError, match="cannot read the log file"):
        engine.open(str(tmp_path / "db"))
    code, out = run("status", str(tmp_path / "db"))  # no log file: "no log", verdict error
    assert code == 1 and "no log" in out and "Traceback" not in out


def test_missing_or_empty_file_is_no_header(tmp_path):
    assert lmdbfile.read_header(str(tmp_path / "nothing.mdb")) is None
    (tmp_path / "empty.mdb").write_bytes(b"")
    assert lmdbfile.read_header(str(tmp_path / "empty.mdb")) is None


# ------------------------------------------------------------ truncation


def test_truncated_file_is_refused_naming_the_sizes(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 300, size=3000)
    os.truncate(data_file(path), 500000)
    exc = _refused(path, data_file(path), "is 500000 bytes but its meta page says the "
                   "database needs", "the file was truncated")
    assert "pages)" in str(exc)
    out = _cli_one_error("verify", path)
    assert "the file was truncated" in out
    out = _cli_one_error("status", path)
    assert "CorruptLogError" in out and "the file was truncated" in out
    out = _cli_one_error("inspect", path, "--tx", "1")
    assert "the file was truncated" in out


def test_truncated_file_in_a_real_process_exits_1_not_sigbus(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 300, size=3000)
    os.truncate(data_file(path), 500000)
    for cmd in (["-c", f"import engine; engine.open({path!r})"],
                ["-m", "engine.cli", "verify", path], ["-m", "engine.cli", "status", path]):
        p = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, timeout=120)
        assert p.returncode == 1, (cmd, p.returncode, p.stderr)
        assert "the file was truncated" in p.stdout + p.stderr


@pytest.mark.parametrize("size", [100, 4096, 4096 + 100])
def test_file_shorter_than_the_meta_pages(db_path, size):
    os.truncate(data_file(db_path), size)
    _refused(db_path, "the file was truncated")


# ------------------------------------------------------------ meta pages


@pytest.mark.parametrize("which", ["newest", "older", "both"])
def test_wrong_magic_is_refused(db_path, which):
    # LMDB itself refuses an environment with either meta page's magic wrong
    # (mdb_env_read_header reads both); the engine says so before LMDB is asked.
    newest = _newest_index(db_path)
    pages = {"newest": [newest], "older": [1 - newest], "both": [0, 1]}[which]
    for i in pages:
        _meta_field(db_path, i, MAGIC_AT, "<I", 0xDEADBEEF)
    _refused(db_path, f"meta page {min(pages)} has magic 0xdeadbeef")
    _cli_one_error("verify", db_path)
    _cli_one_error("status", db_path)


def test_lmdb_itself_refuses_either_meta_page_with_a_wrong_magic(db_path):
    # Why refusing is the truthful answer for one bad meta page: LMDB 0.9 reads both
    # in mdb_env_read_header and fails with MDB_INVALID, it never falls back.
    _meta_field(db_path, 1 - _newest_index(db_path), MAGIC_AT, "<I", 0)
    with pytest.raises(lmdb.InvalidError):
        lmdb.open(layout.log_dir(db_path), readonly=True, lock=False)


def test_a_page_that_is_not_a_meta_page(db_path):
    write_at(data_file(db_path), 4096, b"\0" * 4096)  # meta page 1 zeroed
    _refused(db_path, "meta page 1 is not an LMDB meta page")


def test_wrong_data_version(db_path):
    _meta_field(db_path, 0, VERSION_AT, "<I", 2)
    _refused(db_path, "LMDB data version 2")


@pytest.mark.parametrize("psize", [0, 3000, 1 << 20])
def test_impossible_page_size(db_path, psize):
    # A page size of 0 made LMDB divide by zero (SIGFPE) in mdb_env_open2.
    _meta_field(db_path, 0, PSIZE_AT, "<I", psize)
    _refused(db_path, f"gives the page size {psize}")


def test_meta_pages_disagree_on_the_page_size(db_path):
    _meta_field(db_path, 1, PSIZE_AT, "<I", 8192)
    _refused(db_path, "disagree on the page size (4096 and 8192)")


@pytest.mark.parametrize("bit", [0, 1, 5, 40])
def test_damaged_txnid_is_refused(db_path, bit):
    newest = _newest_index(db_path)
    header = lmdbfile.read_header(data_file(db_path))
    assert header is not None
    txnid = header.newest.txnid
    _meta_field(db_path, newest, TXNID_AT, "<Q", txnid ^ (1 << bit))
    _refused(db_path, "transaction ids", "one of them is damaged")


def test_older_meta_page_claiming_the_next_txnid_serves_the_previous_commit(db_path):
    # The one txnid damage no check can see: the older page's txnid becomes newest+1,
    # which is exactly what the next commit would write. LMDB then serves the tree of
    # the previous commit, which LMDB keeps intact: the database opens one
    # transaction behind, consistent with its own records (docs/FORMAT.md lists it).
    with engine.open(db_path) as db:
        before = _log_of(db)
    newest = _newest_index(db_path)
    header = lmdbfile.read_header(data_file(db_path))
    assert header is not None
    _meta_field(db_path, 1 - newest, TXNID_AT, "<Q", header.newest.txnid + 1)
    with engine.open(db_path) as db:
        assert db.position.tx_id == before[-1][0] - 1
        assert _log_of(db) == before[:-1]
    assert verify_directory(db_path).ok


def test_root_past_the_last_page(db_path):
    newest = _newest_index(db_path)
    _meta_field(db_path, newest, MAIN_ROOT_AT, "<Q", 10**9)
    _refused(db_path, "main tree's root at page 1000000000")


def test_last_page_past_the_file(db_path):
    newest = _newest_index(db_path)
    _meta_field(db_path, newest, LAST_PG_AT, "<Q", 10**6)
    _refused(db_path, "the file was truncated")


def test_main_database_flags_mean_not_an_engine_log(db_path):
    for i in (0, 1):
        _meta_field(db_path, i, MAIN_FLAGS_AT, "<H", 0x04)  # MDB_DUPSORT
    _refused(db_path, "is not an engine log", "LMDB flags 0x4")


# ------------------------------------------------------------ a foreign LMDB database


def test_foreign_lmdb_database_is_refused_without_writing(tmp_path):
    path = str(tmp_path / "db")
    os.makedirs(layout.log_dir(path))
    env = lmdb.open(layout.log_dir(path))
    with env.begin(write=True) as txn:
        txn.put(b"user:1", b"alice")
        txn.put(b"user:2", b"bob")
    env.close()
    before = _digest(path)
    _refused(path, "is not an engine log", "holds keys but no engine db_id entry",
             "Nothing was written")
    out = _cli_one_error("status", path)
    assert "not an engine log" in out
    code, out = run("verify", path)
    assert code == 1 and "not an engine log" in out
    assert _digest(path) == before
    env = lmdb.open(layout.log_dir(path), readonly=True, lock=False)
    with env.begin() as txn:
        assert [bytes(k) for k, _ in txn.cursor()] == [b"user:1", b"user:2"]
    env.close()


def test_log_store_never_initialises_an_environment_with_keys(tmp_path):
    from engine.log import LogStore

    log = str(tmp_path / "log")
    os.makedirs(log)
    env = lmdb.open(log)
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    env.close()
    store = LogStore(log)
    try:
        with pytest.raises(CorruptLogError, match="not an engine log"):
            store.initialise("00000000-0000-0000-0000-000000000001", 1, 0, 0, [])
        assert store.get_meta(formats.META_DB_ID) is None
    finally:
        store.close()


# ------------------------------------------------------------ damaged meta entries


def _put_meta(path: str, key: bytes, value: bytes | None) -> None:
    env = lmdb.open(layout.log_dir(path))
    with env.begin(write=True) as txn:
        if value is None:
            txn.delete(key)
        else:
            txn.put(key, value)
    env.close()


META_DAMAGE = [
    (formats.META_DB_ID, b"\xff" * 36, "'db_id'", "not an ASCII UUID"),
    (formats.META_DB_ID, b"not-a-uuid", "'db_id'", "not an ASCII UUID"),
    (formats.META_FORMAT, b"\x01\x00\x00", "'format'", "3 bytes, expected 2"),
    (formats.META_FORMAT, None, "'format'", "it is missing"),
    (formats.META_EPOCH, b"\x01" * 5, "'epoch'", "5 bytes, expected 8"),
    (formats.META_BASE_TX, b"", "'base_tx'", "0 bytes, expected 8"),
    (formats.META_BASE_POSITION, b"\0" * 9, "'base_position'", "9 bytes, expected 8"),
    (formats.META_HISTORY, b"[{\"epoch\": 1", "'epoch_history'", "JSONDecodeError"),
    (formats.META_HISTORY, b"[\"\xff\xc3\"]", "'epoch_history'", "UnicodeDecodeError"),
    (formats.META_HISTORY, b"[1, 2]", "'epoch_history'", "not a JSON list"),
    (formats.META_HISTORY, b"[{\"epoch\": 1}]", "'epoch_history'", "KeyError"),
    (formats.META_HISTORY, b"{}", "'epoch_history'", "not a JSON list"),
    (formats.META_HISTORY, None, "'epoch_history'", "it is missing"),
]


@pytest.mark.parametrize(("key", "value", "name", "what"), META_DAMAGE,
                         ids=[f"{k[8:].decode()}-{i}" for i, (k, *_r) in enumerate(META_DAMAGE)])
def test_damaged_meta_entry(db_path, key, value, name, what):
    _put_meta(db_path, key, value)
    _refused(db_path, f"the log's meta entry {name} in {data_file(db_path)} is damaged", what)
    for cmd in (["status"], ["verify"], ["inspect", "--stream", "s1"]):
        out = _cli_one_error(*cmd, db_path)
        assert f"meta entry {name}" in out
    code, out = run("status", db_path, "--json")
    assert code == 1 and json.loads(out)["error"] == "CorruptLogError"


def test_wrong_log_format_value(db_path):
    _put_meta(db_path, formats.META_FORMAT, struct.pack("<H", 7))
    with pytest.raises(CorruptLogError, match="has format 7; this build reads format 1"):
        engine.open(db_path)


def test_damaged_backup_meta_entry_does_not_stop_open(db_path):
    # `backup` is a cache of what the target holds: the uploader makes a new writer
    # token when it cannot read it, and open never decodes it.
    _put_meta(db_path, formats.META_BACKUP, b"\xff{not json")
    with engine.open(db_path) as db:
        assert db.position.tx_id == 40
    code, out = run("backup", "status", db_path)
    assert code != 0 and "Traceback" not in out and "unreadable" in out


# ------------------------------------------------------------ interior pages: verify's child


def _zeroed_middle_leaf(tmp_path) -> tuple[str, int]:
    path = str(tmp_path / "db")
    _build(path, 2000)
    leaves = live_pages(path).leaf
    assert len(leaves) > 3
    page = leaves[len(leaves) // 2]
    zero_page(path, page)
    return path, page


def test_zeroed_leaf_page_is_refused_by_open_before_lmdb_reads_it(tmp_path):
    # LMDB itself aborts on it (IS_LEAF in mdb_cursor_next, shown below); the pages of
    # the tail are checked with plain reads first.
    path, page = _zeroed_middle_leaf(tmp_path)
    opened = in_child(lambda: engine.open(path).position.tx_id)
    assert opened.answer is not None and opened.answer["error"] == "CorruptLogError", opened
    msg = opened.answer["message"]
    assert f"page {page} of its main tree is damaged: it should be a leaf page" in msg
    assert RUNBOOK in msg
    report = verify_directory(path)
    assert [p for p in report.problems if f"page {page} of its main tree" in p]
    code, out = run("verify", path)
    assert code == 1 and f"page {page} of its main tree" in out and "Traceback" not in out
    code, out = run("verify", path, "--json")
    assert code == 1 and json.loads(out)["ok"] is False


def test_open_with_a_snapshot_past_the_damaged_leaf_checks_only_the_tail(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 2000)
    with engine.open(path) as db:
        db.snapshot()
    leaves = live_pages(path).leaf
    zero_page(path, leaves[len(leaves) // 2])
    with engine.open(path) as db:  # the tail is empty: the damaged page is never read
        assert db.position.tx_id == 2000
    assert not verify_directory(path).ok


def test_lmdb_abort_in_the_checker_is_a_verdict(tmp_path, monkeypatch):
    # The real thing: a child iterating the damaged tree with py-lmdb dies of LMDB's
    # assertion; verify reports it with the assertion text.
    path, _page = _zeroed_middle_leaf(tmp_path)
    script = ("import lmdb, sys; env = lmdb.open(sys.argv[1], readonly=True, lock=False)\n"
              "with env.begin() as txn:\n    for _ in txn.cursor(): pass")
    monkeypatch.setattr(verify_mod, "child_command", lambda p: [
        sys.executable, "-c", script, layout.log_dir(p)])
    [problem] = verify_directory(path).problems
    assert "the checker process was killed by SIGABRT while reading it" in problem
    assert "LMDB assertion" in problem and "IS_LEAF" in problem and RUNBOOK in problem
    raw = in_child(lambda: sum(1 for _ in lmdb.open(layout.log_dir(path), readonly=True,
                                                     lock=False).begin().cursor()))
    assert raw.signal == signal.SIGABRT


def test_zeroed_first_leaf_page_is_reported_by_lmdb_itself(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 2000)
    zero_page(path, live_pages(path).leaf[-1])  # found by a page search: MDB_CORRUPTED
    _refused(path, "the LMDB environment is damaged")
    report = verify_directory(path)
    assert not report.ok and "damaged" in report.problems[0]


def test_verify_child_killed_by_a_signal(db_path, monkeypatch):
    monkeypatch.setattr(verify_mod, "child_command", lambda path: [
        sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"])
    [problem] = verify_directory(db_path).problems
    assert "killed by SIGSEGV while reading it" in problem and RUNBOOK in problem


def test_verify_child_that_hangs_is_killed(db_path, monkeypatch):
    monkeypatch.setattr(verify_mod, "STALL_SECONDS", 0.5)
    monkeypatch.setattr(verify_mod, "child_command", lambda path: [
        sys.executable, "-c", "import time; time.sleep(120)"])
    [problem] = verify_directory(db_path).problems
    assert "the checker process stopped making progress" in problem
    assert "and was killed" in problem and RUNBOOK in problem


def test_verify_child_that_exits_without_a_result(db_path, monkeypatch):
    monkeypatch.setattr(verify_mod, "child_command", lambda path: [
        sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(2)"])
    [problem] = verify_directory(db_path).problems
    assert "exited with status 2 (boom)" in problem


def test_verify_of_an_intact_database_still_counts_every_record(db_path):
    seen: list[tuple[int, int]] = []
    report = verify_directory(db_path, lambda done, total: seen.append((done, total)))
    assert report.ok and report.log_records == 40 and seen[-1] == (40, 40)


def test_status_of_a_zeroed_root_page(tmp_path):
    # status probes the log in-process: the checks before mapping do not see interior
    # pages, but a page search (bounds) reports MDB_CORRUPTED, never a crash.
    path = str(tmp_path / "db")
    _build(path, 2000)
    zero_page(path, live_pages(path).branch[0])
    result = in_child(lambda: directory_status(path).verdict)
    assert not result.crashed, result
    assert result.answer["error"] == "CorruptLogError", result


# ------------------------------------------------------------ the pages of the tail


def test_range_check_visits_every_leaf_from_the_key_on(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 2000)
    leaves = live_pages(path).leaf
    assert lmdbfile.check_range_pages(data_file(path), (1).to_bytes(8, "big")) == len(leaves)
    tail = lmdbfile.check_range_pages(data_file(path), (1990).to_bytes(8, "big"))
    assert 1 <= tail <= 2


def test_range_check_finds_a_branch_pointing_outside_the_file(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 2000)
    branch = live_pages(path).branch[0]
    page = branch * 4096
    with open(data_file(path), "rb") as f:
        f.seek(page + 16)
        first_node = struct.unpack("<H", f.read(2))[0]
    write_at(data_file(path), page + first_node, struct.pack("<HHH", 0xFFFF, 0xFFFF, 0x7))
    with pytest.raises(CorruptLogError, match=f"page {branch} of its main tree is damaged: "
                                              "node 0 points at page"):
        lmdbfile.check_range_pages(data_file(path), (1).to_bytes(8, "big"))


def test_range_check_finds_impossible_free_space_bounds(tmp_path):
    path = str(tmp_path / "db")
    _build(path, 2000)
    leaf = live_pages(path).leaf[-1]
    write_at(data_file(path), leaf * 4096 + 12, struct.pack("<HH", 5000, 100))
    with pytest.raises(CorruptLogError, match=f"page {leaf} of its main tree is damaged: its "
                                              "free-space bounds 5000..100 are impossible"):
        lmdbfile.check_range_pages(data_file(path), (1990).to_bytes(8, "big"))


# ------------------------------------------------------------ damage LMDB reads without noticing


def test_a_key_of_the_wrong_length_is_corrupt_log(db_path):
    _put_meta(db_path, (41).to_bytes(8, "big") + b"x", b"stray")  # sorts among tx keys
    _refused(db_path, "holds a key of 9 bytes where tx keys are 8")
    [problem] = verify_directory(db_path).problems
    assert "holds a key of 9 bytes" in problem


def test_a_damaged_event_count_never_sizes_the_index(db_path):
    from engine.native import event_count_hint

    env = lmdb.open(layout.log_dir(db_path))
    with env.begin() as txn:
        rec = bytearray(txn.get((30).to_bytes(8, "big")))
    env.close()
    rec[formats.TX_EVENT_COUNT_OFFSET:formats.TX_EVENT_COUNT_OFFSET + 4] = b"\xff" * 4
    assert event_count_hint(bytes(rec)) == len(rec) // 20  # not 2**32 - 1
    _put_meta(db_path, (30).to_bytes(8, "big"), bytes(rec))
    with pytest.raises(CorruptLogError, match=r"log record for tx 30 .* checksum mismatch"):
        engine.open(db_path)


def test_zeroed_first_leaf_is_named_by_the_probe(tmp_path):
    # The probe reads the meta entries with a cursor over the first leaves: checked first.
    path = str(tmp_path / "db")
    _build(path, 2000)
    first = live_pages(path).leaf[0]
    zero_page(path, first)
    _refused(path, f"page {first} of its main tree is damaged: it should be a leaf page")
    out = _cli_one_error("status", path)
    assert f"page {first} of its main tree" in out


def _one_node_branch_on_the_way_to(path: str, tx: int) -> None:
    """Make the level-2 branch page on the path to ``tx`` hold a single node (lower =
    18): LMDB asserts NUMKEYS > 1 on every branch page it searches (review finding)."""
    from tests.log.lmdb_damage import P_BRANCH, PAGE

    hdr = lmdbfile.read_header(data_file(path))
    assert hdr is not None
    ps = hdr.page_size
    with open(data_file(path), "rb") as f:
        raw = f.read()

    def kids(p: int) -> tuple[int, list[tuple[bytes, int]]]:
        pg = raw[p * ps:(p + 1) * ps]
        _n, _pad, fl, lower, _u = PAGE.unpack_from(pg, 0)
        out = []
        for off in struct.unpack_from(f"<{(lower - 16) // 2}H", pg, 16):
            lo, hi, f2, ks = struct.unpack_from("<HHHH", pg, off)
            out.append((pg[off + 8:off + 8 + ks], lo | hi << 16 | f2 << 32))
        return fl, out

    assert hdr.newest.main.depth >= 3
    _fl, children = kids(hdr.newest.main.root)
    key = struct.pack(">Q", tx)
    idx = max(i for i, (k, _) in enumerate(children) if i == 0 or k <= key)
    target = children[idx][1]
    assert kids(target)[0] & P_BRANCH
    write_at(data_file(path), target * ps + 12, struct.pack("<H", 18))


def test_a_single_node_branch_page_is_refused_and_verify_still_answers(tmp_path):
    """The lineage check reads the snapshot's tx in the parent: the pages on its way are
    checked first, so verify gives a verdict and open refuses, never an LMDB abort."""
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        for i in range(1500):
            db.append(f"s{i % 7}", "T", b"x" * 1200)
        db.snapshot()
        for i in range(1500):
            db.append(f"s{i % 7}", "T", b"x" * 1200)
    _one_node_branch_on_the_way_to(path, 1500)
    got = in_child(lambda: _verify_summary(path))
    assert not got.crashed and not got.hung, got
    ok, problems = got.answer["ok"]
    assert not ok and any("damaged" in p for p in problems), problems
    opened = in_child(lambda: _open_error(path))
    assert not opened.crashed and not opened.hung, opened
    assert "single node" in opened.answer["ok"], opened.answer


def _verify_summary(path: str) -> tuple[bool, list[str]]:
    from engine.ops.verify import verify_directory

    r = verify_directory(path)
    return r.ok, r.problems


def _open_error(path: str) -> str:
    try:
        engine.open(path).close()
    except engine.CorruptLogError as exc:
        return str(exc)
    return "opened"
