"""The commit journal (engine.journal; FORMAT.md section 3, "Commit journal"): its
bytes, every way a read of it ends or refuses, recovery after a reboot (LMDB's meta
page ahead of its pages, as a power cut can leave it), and the writer's checkpoints.
The power-cut model over whole runs is tests/faults/test_power_cut.py."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

import engine
from engine import formats, journal, layout, lmdbfile
from engine import log as logmod
from engine.files import FileSystem, installed
from engine.log import LogStore
from engine.native import encode_tx


class Rebooted(FileSystem):
    """Another boot: what was not flushed is gone, so the journal replays."""

    def boot_id(self) -> bytes:
        return b"another-boot-id!"


def record(tx_id: int, data: bytes = b"d") -> bytes:
    return bytes(encode_tx(tx_id, 1, 1, tx_id, [1], [0], b"s\0", b"t\0", [data], b""))


def write_journal(log_path: Path, slot: journal.Slot | None,
                  frames: list[tuple[int, bytes]], lap: int | None = None) -> bytes:
    """A journal file with ``slot`` in its room and ``frames`` of ``lap`` after it."""
    log_path.mkdir(parents=True, exist_ok=True)
    raw = bytearray(formats.JOURNAL_FRAMES_OFFSET)
    if slot is not None:
        at = (slot.seq % 2) * formats.JOURNAL_SLOT_BYTES
        s = journal.encode_slot(slot)
        raw[at:at + len(s)] = s
    for tx_id, rec in frames:
        head = formats.JOURNAL_FRAME_HEAD.pack(formats.JOURNAL_FRAME_MAGIC, 0,
                                               slot.seq if lap is None and slot else lap or 0,
                                               tx_id, len(rec))
        raw += head + rec + formats.U64_LE.pack(journal._frame_sum(head, rec[-8:]))
    (log_path / "journal").write_bytes(bytes(raw))
    return bytes(raw)


def a_slot(seq: int = 1, last_tx: int = 0) -> journal.Slot:
    meta = bytes(formats.JOURNAL_META_BYTES)
    return journal.Slot(seq, 7, last_tx, 4096, b"boot-id-16-bytes", meta, meta)


# ------------------------------------------------------------------ the bytes
def test_a_slot_round_trips_and_any_damaged_byte_voids_it():
    slot = a_slot(3, 41)
    raw = journal.encode_slot(slot)
    assert journal.decode_slot(raw + bytes(100)) == slot
    for i in range(0, len(raw), 7):
        bad = bytearray(raw)
        bad[i] ^= 0x40
        assert journal.decode_slot(bytes(bad)) is None, i
    assert journal.decode_slot(raw[:-1]) is None  # cut short (torn)


def test_frames_are_read_up_to_the_first_that_is_not_whole(tmp_path):
    frames = [(11, record(11)), (12, record(12)), (13, record(13))]
    raw = write_journal(tmp_path, a_slot(2, 10), frames)
    assert journal.read(str(tmp_path)).frames == tuple(frames)
    for cut in (len(raw) - 1, len(raw) - 8, len(raw) - 20):  # the last frame torn
        (tmp_path / "journal").write_bytes(raw[:cut])
        assert [t for t, _ in journal.read(str(tmp_path)).frames] == [11, 12]


def test_frames_of_an_older_lap_or_out_of_tx_order_end_the_journal(tmp_path):
    write_journal(tmp_path, a_slot(5, 10), [(11, record(11))], lap=4)  # an older lap
    assert journal.read(str(tmp_path)).frames == ()
    write_journal(tmp_path, a_slot(5, 10), [(12, record(12))])  # not the slot's next tx
    assert journal.read(str(tmp_path)).frames == ()
    # a frame whose record claims another tx than its header ends it too
    write_journal(tmp_path, a_slot(5, 10), [(11, record(12))])
    assert journal.read(str(tmp_path)).frames == ()


def test_damage_in_the_middle_is_refused_not_taken_for_a_torn_end(tmp_path):
    frames = [(11, record(11)), (12, record(12)), (13, record(13))]
    raw = bytearray(write_journal(tmp_path, a_slot(2, 10), frames))
    # flip a byte inside the second frame's record: the third is still whole
    second = formats.JOURNAL_FRAMES_OFFSET + len(frames[0][1]) + 40 + 36
    raw[second] ^= 0xFF
    (tmp_path / "journal").write_bytes(bytes(raw))
    with pytest.raises(engine.CorruptLogError, match=r"damaged at byte \d+: the frame of tx 12"):
        journal.read(str(tmp_path))


def test_frames_without_a_valid_slot_are_refused(tmp_path):
    raw = bytearray(write_journal(tmp_path, a_slot(1, 0), [(1, record(1))]))
    raw[formats.JOURNAL_SLOT_BYTES + 10] ^= 1  # slot 1's room: the only slot
    (tmp_path / "journal").write_bytes(bytes(raw))
    with pytest.raises(engine.CorruptLogError, match="neither of its checkpoint slots"):
        journal.read(str(tmp_path))
    (tmp_path / "journal").write_bytes(bytes(formats.JOURNAL_FRAMES_OFFSET))  # a new file
    assert journal.read(str(tmp_path)) == journal.JournalState(
        str(tmp_path / "journal"), None, ())


def test_the_newest_valid_slot_wins_and_a_torn_one_leaves_the_older(tmp_path):
    older, newer = a_slot(4, 10), a_slot(5, 12)
    raw = bytearray(write_journal(tmp_path, older, [(11, record(11))]))
    s = journal.encode_slot(newer)
    at = formats.JOURNAL_SLOT_BYTES  # seq 5's room
    raw[at:at + len(s)] = s
    (tmp_path / "journal").write_bytes(bytes(raw))
    assert journal.read(str(tmp_path)).slot == newer
    raw[at + 30] ^= 1  # torn while it was written
    (tmp_path / "journal").write_bytes(bytes(raw))
    state = journal.read(str(tmp_path))
    assert state.slot == older and [t for t, _ in state.frames] == [11]


def test_no_journal_is_none(tmp_path):
    assert journal.read(str(tmp_path)) is None
    assert journal.lap_is_empty(str(tmp_path), a_slot()) is True


# ------------------------------------------------------------------ the writer
def test_opening_and_closing_a_database_leaves_its_journal_untouched(tmp_path):
    path = tmp_path / "db"
    with engine.open(str(path)) as db:
        db.append("a", "set", b"1")
    before = (path / "log" / "journal").read_bytes()
    engine.open(str(path)).close()
    assert (path / "log" / "journal").read_bytes() == before


def test_a_checkpoint_comes_every_checkpoint_txs_commits_and_starts_a_lap(tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr(logmod, "CHECKPOINT_TXS", 10)
    with engine.open(str(tmp_path / "db")) as db:
        first = journal.read(db._log.path)
        for i in range(25):
            db.append("a", "set", b"%d" % i)
        state = journal.read(db._log.path)
        assert state.slot.seq == first.slot.seq + 2  # two checkpoints in 25 commits
        assert state.slot.last_tx == 20 and [t for t, _ in state.frames] == [21, 22, 23, 24,
                                                                             25]
        assert db._log._pins


def run_then_cut(path: Path, txs_before: int, txs_after: int, *,
                 meta_ahead: bool) -> None:
    """Commit ``txs_before`` txs and checkpoint, keep LMDB's file as it is then, commit
    ``txs_after`` more (journaled, not flushed in LMDB), and leave the disk as a power
    cut can: LMDB's file as at the checkpoint, with (``meta_ahead``) the newest meta
    pages written over it, pointing at pages that never reached it."""
    log_dir = path / "log"
    data = log_dir / "data.mdb"
    db = engine.open(str(path))
    try:
        for i in range(txs_before):
            db.append(f"acct-{i % 3}", "deposited", b"before-%d" % i)
        db._log.sync()  # a checkpoint: LMDB flushed, its meta pages saved in a slot
        at_checkpoint = data.read_bytes()
        for i in range(txs_after):
            db.append(f"acct-{i % 3}", "deposited", b"after-%d" % i)
        current = data.read_bytes()
        saved_journal = (log_dir / "journal").read_bytes()
    finally:
        db._log._journal._flush = lambda: None  # close must not make the test's cut moot
        db.close()
    image = bytearray(at_checkpoint)
    if meta_ahead:
        psize = lmdbfile.read_header(str(data)).page_size
        for page in (0, 1):
            at = page * psize
            image[at:at + 152] = current[at:at + 152]
    data.write_bytes(bytes(image))
    (log_dir / "journal").write_bytes(saved_journal)


@pytest.mark.parametrize("meta_ahead", [False, True], ids=["pages-lost", "meta-ahead"])
def test_after_a_reboot_every_acknowledged_commit_comes_back(tmp_path, meta_ahead):
    path = tmp_path / "db"
    run_then_cut(path, 20, 30, meta_ahead=meta_ahead)
    with installed(Rebooted()):
        with pytest.raises(engine.StorageError, match="commit journal to apply first"):
            LogStore.probe(str(path / "log"))  # a reader may not read it before the writer
        with engine.open(str(path)) as db:
            assert db.position.tx_id == 50
            assert [e.data for e in db.read_stream("acct-0")][-1] == b"after-27"
            assert any("applied 30 commit(s)" in w for w in db.open_warnings)
        with engine.open(str(path)) as db:  # applied once: the second open has nothing
            assert db.position.tx_id == 50 and db.open_warnings == []
    proc = engine.open(str(path))
    assert proc.position.tx_id == 50
    proc.close()


def test_a_crashed_process_on_the_same_boot_replays_nothing(tmp_path):
    """The page cache kept LMDB's writes: its file is trusted as it is (no rollback
    under readers in other processes)."""
    path = tmp_path / "db"
    db = engine.open(str(path))
    for i in range(5):
        db.append("a", "set", b"%d" % i)
    assert logmod._journal_to_replay(db._log.path, FileSystem().boot_id()) is None
    db.close()


def test_a_frame_whose_lmdb_write_failed_is_never_replayed(tmp_path):
    path = tmp_path / "db"
    with engine.open(str(path)) as db:
        db.append("a", "set", b"1")
        log = db._log
        with pytest.raises(engine.CorruptLogError, match="already exists"):
            log.append([(1, record(1, b"again"))])  # journaled first, then LMDB refuses
        state = journal.read(log.path)
        assert state.frames == ()  # a new lap: the refused frame is dead
        saved = {n: (path / "log" / n).read_bytes() for n in ("data.mdb", "journal")}
    for n, raw in saved.items():
        (path / "log" / n).write_bytes(raw)
    with installed(Rebooted()), engine.open(str(path)) as db:
        assert db.position.tx_id == 1 and db.get("a") == b"1"


def test_the_map_grows_under_the_journal(tmp_path):
    path = tmp_path / "db"
    with engine.open(str(path), map_size=1 << 20) as db:
        for i in range(40):
            db.append(f"big-{i}", "set", os.urandom(64 << 10))
        assert db._log._pins
        size = db._log._env.info()["map_size"]
    assert size > 1 << 20
    with engine.open(str(path)) as db:
        assert db.position.tx_id == 40 and len(db.get("big-39")) == 64 << 10


class FailingFlush(FileSystem):
    def __init__(self, err: int) -> None:
        self.err = err

    def fdatasync(self, fd: int) -> None:
        raise OSError(self.err, os.strerror(self.err))


@pytest.mark.parametrize("err, kind", [(errno.EIO, engine.StorageError),
                                       (errno.ENOSPC, engine.DiskFullError)])
def test_a_failed_journal_flush_commits_nothing_and_refuses_every_later_write(tmp_path,
                                                                            err, kind):
    path = tmp_path / "db"
    with engine.open(str(path)) as db:
        db.append("a", "set", b"1")
        with installed(FailingFlush(err)), pytest.raises(kind, match="journal"):
            db.append("a", "set", b"2")
        assert db.position.tx_id == 1 and db.get("a") == b"1"
        with pytest.raises(engine.StorageError, match="refuses every write"):
            db.append("a", "set", b"3")
    with engine.open(str(path)) as db:  # reopened on a healthy disk: as before
        assert db.position.tx_id == 1


def test_another_mode_removes_the_journal_after_flushing_lmdb(tmp_path):
    path = tmp_path / "db"
    with engine.open(str(path)) as db:
        db.append("a", "set", b"1")
    assert (path / "log" / "journal").exists()
    with engine.open(str(path), sync="none") as db:
        assert not (path / "log" / "journal").exists()
        assert db.get("a") == b"1"


def test_a_journal_from_another_log_is_refused(tmp_path):
    path = tmp_path / "db"
    run_then_cut(path, 5, 5, meta_ahead=False)
    other = tmp_path / "other"
    run_then_cut(other, 9, 1, meta_ahead=False)
    shutil.copy(other / "log" / "journal", path / "log" / "journal")
    with installed(Rebooted()), pytest.raises(engine.CorruptLogError,
                                              match="does not belong"):
        engine.open(str(path))


def test_recovery_of_a_missing_lmdb_file_leaves_it_to_the_open(tmp_path):
    path = tmp_path / "db"
    run_then_cut(path, 3, 3, meta_ahead=False)
    os.unlink(layout.log_data_file(str(path / "log")))
    with installed(Rebooted()):
        assert logmod.recover_journal(str(path / "log")) == 0
