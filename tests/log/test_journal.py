"""The commit journal (engine.journal; FORMAT.md section 3, "Commit journal"): its
bytes, every way a read of it ends or refuses, recovery after a reboot (LMDB's meta
page ahead of its pages, as a power cut can leave it), and the writer's checkpoints.
The power-cut model over whole runs is tests/faults/test_power_cut.py."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import engine
from engine import formats, journal, layout, lmdbfile
from engine import log as logmod
from engine.files import FileSystem, installed
from engine.log import LogStore
from engine.native import encode_tx
from tests.faults.faultfs import FaultyFileSystem


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


def test_frames_of_an_older_lap_end_the_journal_and_a_gap_is_refused(tmp_path):
    write_journal(tmp_path, a_slot(5, 10), [(11, record(11))], lap=4)  # an older lap
    assert journal.read(str(tmp_path)).frames == ()
    # a whole frame of the lap where the slot's next tx should be, but of a later tx:
    # a tx is missing (or the slot's last_tx is wrong), never a torn end
    write_journal(tmp_path, a_slot(5, 10), [(12, record(12))])
    with pytest.raises(engine.CorruptLogError, match="the frame of tx 11 is not whole, yet "
                                                     "tx 12 follows it"):
        journal.read(str(tmp_path))
    # a frame whose record claims another tx than its header ends it
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


CUTS = ["pages-lost", "meta-ahead", "meta-behind"]


def run_then_cut(path: Path, txs_before: int, txs_after: int, *, cut: str) -> None:
    """Commit ``txs_before`` txs and checkpoint, keep LMDB's file as it is then, commit
    ``txs_after`` more (journaled, not flushed in LMDB), and leave the disk as a power
    cut can: ``pages-lost``: LMDB's file as at the checkpoint; ``meta-ahead``: that,
    with the newest meta pages written over it (pointing at pages that never reached
    the disk); ``meta-behind``: every later page on the disk but the meta pages as at
    the checkpoint (the later commits' pages written over whatever they reused: only
    the pin keeps the checkpoint's tree out of that)."""
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
        db.close()
    psize = lmdbfile.read_header(str(data)).page_size
    if cut == "meta-behind":
        image = bytearray(current)
        for page in (0, 1):
            at = page * psize
            image[at:at + 152] = at_checkpoint[at:at + 152]
    else:
        image = bytearray(at_checkpoint)
        if cut == "meta-ahead":
            for page in (0, 1):
                at = page * psize
                image[at:at + 152] = current[at:at + 152]
    data.write_bytes(bytes(image))
    (log_dir / "journal").write_bytes(saved_journal)


@pytest.mark.parametrize("cut", CUTS)
def test_after_a_reboot_every_acknowledged_commit_comes_back(tmp_path, cut):
    path = tmp_path / "db"
    run_then_cut(path, 20, 30, cut=cut)
    with installed(Rebooted()):
        with pytest.raises(engine.StorageError, match="commit journal to apply first"):
            LogStore.probe(str(path / "log"))  # a reader may not read it before the writer
        with engine.open(str(path)) as db:
            assert db.position.tx_id == 50
            assert [e.data for t in db.read_log() for e in t.events] == [
                b"before-%d" % i for i in range(20)] + [b"after-%d" % i for i in range(30)]
            assert any("applied 30 commit(s)" in w for w in db.open_warnings)
        with engine.open(str(path)) as db:  # applied once: the second open has nothing
            assert db.position.tx_id == 50 and db.open_warnings == []
    proc = engine.open(str(path))
    assert proc.position.tx_id == 50
    proc.close()


def test_without_the_pin_the_checkpoints_tree_is_overwritten(tmp_path, monkeypatch):
    """The control for "meta-behind": with the pins dropped at once, later commits
    reuse the checkpoint's pages and recovery cannot bring the commits back."""
    real = LogStore._checkpoint

    def unpinned(self: LogStore) -> None:
        real(self)
        while self._pins:
            self._pins.pop().abort()
        self._pins.append(_FakePin())

    monkeypatch.setattr(LogStore, "_checkpoint", unpinned)
    path = tmp_path / "db"
    run_then_cut(path, 20, 30, cut="meta-behind")
    monkeypatch.setattr(LogStore, "_checkpoint", real)
    with installed(Rebooted()):
        try:
            with engine.open(str(path)) as db:
                got = [e.data for t in db.read_log() for e in t.events]
        except engine.EngineError:
            return  # refused: the damage was found
    assert got != [b"before-%d" % i for i in range(20)] + [b"after-%d" % i for i in range(30)]


class _FakePin:
    def abort(self) -> None:
        pass


def test_a_crashed_process_on_the_same_boot_replays_nothing(tmp_path):
    """SIGKILL, same boot: the page cache kept LMDB's writes, so its file is trusted as
    it is: no meta page is written back (readers in other processes may have it
    mapped) and every commit is there."""
    path = tmp_path / "db"
    child = ("import engine, os, signal, sys\n"
             "db = engine.open(sys.argv[1])\n"
             "for i in range(50): db.append('a', 'set', b'%d' % i)\n"
             "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", child, str(path)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    data = path / "log" / "data.mdb"
    psize = lmdbfile.read_header(str(data)).page_size
    metas = lmdbfile.read_meta_bytes(str(data), psize)
    assert journal.read(str(path / "log")).frames  # frames after the last slot...
    assert logmod.recover_journal(str(path / "log")) == 0  # ...but nothing to replay
    assert lmdbfile.read_meta_bytes(str(data), psize) == metas
    with engine.open(str(path)) as db:
        assert db.position.tx_id == 50 and db.get("a") == b"49"
        assert db.open_warnings == []


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


def test_the_map_grows_under_the_journal_and_a_reboot_after_it_loses_nothing(tmp_path):
    path = tmp_path / "db"
    with engine.open(str(path), map_size=1 << 20) as db:
        for i in range(40):
            db.append(f"big-{i}", "set", os.urandom(64 << 10))
        assert db._log._pins
        size = db._log._env.info()["map_size"]
        db.append("small", "set", b"after the growth")
        saved = saved_log(path)
    assert size > 1 << 20
    cut_and_reboot(path, saved)
    with installed(Rebooted()), engine.open(str(path)) as db:
        assert db.position.tx_id == 41 and len(db.get("big-39")) == 64 << 10
        assert db.get("small") == b"after the growth"


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
    run_then_cut(path, 5, 5, cut="meta-ahead")
    other = tmp_path / "other"
    run_then_cut(other, 9, 1, cut="meta-ahead")
    shutil.copy(other / "log" / "journal", path / "log" / "journal")
    with installed(Rebooted()), pytest.raises(engine.CorruptLogError,
                                              match="does not belong"):
        engine.open(str(path))


def test_recovery_of_a_missing_lmdb_file_leaves_it_to_the_open(tmp_path):
    path = tmp_path / "db"
    run_then_cut(path, 3, 3, cut="pages-lost")
    os.unlink(layout.log_data_file(str(path / "log")))
    with installed(Rebooted()):
        assert logmod.recover_journal(str(path / "log")) == 0


def test_a_journal_of_another_log_of_the_same_shape_is_refused_with_nothing_changed(
        tmp_path):
    path, other = tmp_path / "db", tmp_path / "other"
    run_then_cut(path, 5, 5, cut="meta-ahead")
    run_then_cut(other, 5, 5, cut="meta-ahead")
    shutil.copy(other / "log" / "journal", path / "log" / "journal")
    before = (path / "log" / "data.mdb").read_bytes()
    with installed(Rebooted()), pytest.raises(engine.CorruptLogError,
                                              match="does not belong to this log"):
        engine.open(str(path))
    assert (path / "log" / "data.mdb").read_bytes() == before


class InterruptAfterFlush(FileSystem):
    """The journal's flush completes, then an interrupt lands (the likeliest moment:
    the flush is the slow step)."""

    def fdatasync(self, fd: int) -> None:
        super().fdatasync(fd)
        raise KeyboardInterrupt


def cut_and_reboot(path: Path, saved: dict[str, bytes]) -> None:
    for name, raw in saved.items():
        (path / "log" / name).write_bytes(raw)


def saved_log(path: Path) -> dict[str, bytes]:
    return {n: (path / "log" / n).read_bytes() for n in ("data.mdb", "journal")}


def test_an_interrupt_after_the_journal_flush_never_brings_the_commit_back(tmp_path):
    path = tmp_path / "db"
    with engine.open(str(path)) as db:
        db.append("a", "set", b"1")
        db._log.sync()  # a checkpoint: nothing after it yet
        with installed(InterruptAfterFlush()), pytest.raises(KeyboardInterrupt):
            db.append("a", "set", b"ghost")
        assert db.position.tx_id == 1  # reported as not committed
    # closed with nothing committed since: the ghost's frame must be dead all the same
    with installed(Rebooted()), engine.open(str(path)) as db:
        assert [e.data for e in db.read_stream("a")] == [b"1"]
        db.append("a", "set", b"2")
        saved = saved_log(path)
    cut_and_reboot(path, saved)
    with installed(Rebooted()), engine.open(str(path)) as db:
        assert [e.data for e in db.read_stream("a")] == [b"1", b"2"]


def test_an_interrupt_after_a_slot_flush_leaves_later_commits_recoverable(tmp_path):
    path = tmp_path / "db"
    with engine.open(str(path)) as db:
        db.append("a", "set", b"1")
        with installed(InterruptAfterFlush()), pytest.raises(KeyboardInterrupt):
            db._log.sync()  # the checkpoint's slot is on the disk; the writer was cut short
        assert db._log._journal.unsure
        for i in range(2, 6):
            db.append("a", "set", b"%d" % i)  # acknowledged
        saved = saved_log(path)
    cut_and_reboot(path, saved)
    with installed(Rebooted()), engine.open(str(path)) as db:
        assert db.position.tx_id == 5


def rebuilt_in_epoch_two(path: Path) -> None:
    """A database of 5 txs and a snapshot whose log was lost and rebuilt from the
    snapshot by recover --new-epoch: the new log starts at tx 5, with no records."""
    from engine.ops.recover import recover_new_epoch

    with engine.open(str(path)) as db:
        for i in range(5):
            db.append("a", "set", b"%d" % i)
        db.snapshot()
    shutil.rmtree(path / "log")
    recover_new_epoch(str(path))


def test_a_log_rebuilt_from_a_snapshot_journals_from_its_base(tmp_path):
    """A log made by recover --new-epoch starts at the snapshot's tx, with no records:
    its slot names base_tx, so frames from base_tx + 1 on are replayed."""
    path = tmp_path / "db"
    rebuilt_in_epoch_two(path)
    with engine.open(str(path)) as db:
        assert db.position.tx_id == 5
        for i in range(3):
            db.append("a", "set", b"new-%d" % i)
        saved = saved_log(path)
    cut_and_reboot(path, saved)
    with installed(Rebooted()), engine.open(str(path)) as db:
        assert db.position.tx_id == 8 and db.get("a") == b"new-2"


def test_a_failed_checkpoint_refuses_writes_and_the_next_open_replays(tmp_path):
    path = tmp_path / "db"
    fault = FaultyFileSystem(err=errno.EIO)
    with installed(fault):
        db = engine.open(str(path))
        for i in range(3):
            db.append("a", "set", b"%d" % i)
        fault.fail_lmdb_sync = True
        with pytest.raises(engine.StorageError, match="checkpoint"):
            db._log.sync()
        with pytest.raises(engine.StorageError, match="refuses every write"):
            db.append("a", "set", b"refused")
        db.close()  # its checkpoint fails too: logged, the journal keeps the commits
        fault.fail_lmdb_sync = False
    assert (path / "log" / "journal.replay").exists()
    with engine.open(str(path)) as db:  # same boot, but marked: LMDB is not trusted as is
        assert db.position.tx_id == 3 and db.get("a") == b"2"
    assert not (path / "log" / "journal.replay").exists()


def test_a_checkpoint_failing_at_open_leaves_nothing_open(tmp_path):
    path = tmp_path / "db"
    with engine.open(str(path)) as db:
        db.append("a", "set", b"1")
    run_then_cut(path, 1, 1, cut="pages-lost")  # so that the open must checkpoint
    fault = FaultyFileSystem(err=errno.EIO, fail_lmdb_sync=True)
    with installed(fault), pytest.raises(engine.StorageError):
        engine.open(str(path))
    with engine.open(str(path)) as db:  # the failed open left no environment behind
        assert db.position.tx_id >= 2


class FullWhileGrowing(FileSystem):
    """The disk fills up just as the journal must grow (its zero-fill fails)."""

    def __init__(self) -> None:
        self.failed = 0

    def pwritev(self, fd: int, buffers, offset: int) -> int:  # type: ignore[no-untyped-def]
        if len(buffers) == 1 and not any(buffers[0]):
            self.failed += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().pwritev(fd, buffers, offset)


def test_a_full_disk_while_the_journal_grows_fails_that_commit_only(tmp_path):
    path = tmp_path / "db"
    with engine.open(str(path)) as db:
        db.append("a", "set", b"1")
        fault = FullWhileGrowing()
        with installed(fault), pytest.raises(engine.DiskFullError, match="free space"):
            db.append("big", "set", os.urandom(2 << 20))  # past the zero-filled megabyte
        assert fault.failed == 1 and db.position.tx_id == 1
        db.append("big", "set", b"once there is room")  # not refused: nothing was written
        assert db.position.tx_id == 2


class _InterruptingEnv:
    """An LMDB environment whose next flush is interrupted (a second Ctrl-C landing
    in the checkpoint that was to kill an interrupted commit's frames)."""

    def __init__(self, env, owner) -> None:  # type: ignore[no-untyped-def]
        self._env, self._owner = env, owner

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._env, name)

    def sync(self, force: bool = False) -> None:
        if self._owner.interrupt_sync:
            self._owner.interrupt_sync = False
            raise KeyboardInterrupt
        self._env.sync(force)


class TwoInterrupts(FileSystem):
    def __init__(self) -> None:
        self.interrupt_flush = False
        self.interrupt_sync = False

    def wrap_env(self, env):  # type: ignore[no-untyped-def]
        return _InterruptingEnv(env, self)

    def fdatasync(self, fd: int) -> None:
        super().fdatasync(fd)
        if self.interrupt_flush:
            self.interrupt_flush = False
            raise KeyboardInterrupt


def test_a_second_interrupt_in_the_voiding_checkpoint_still_kills_the_frames(tmp_path):
    path = tmp_path / "db"
    fault = TwoInterrupts()
    with installed(fault):
        db = engine.open(str(path))
        db.append("a", "set", b"1")
        db._log.sync()
        fault.interrupt_flush = fault.interrupt_sync = True
        with pytest.raises(KeyboardInterrupt):
            db.append("a", "set", b"ghost")  # flushed, then its voiding cut short too
        assert db.position.tx_id == 1 and db._log._journal.pending
        db.append("a", "set", b"2")  # tx 2 again: the ghost's frame must be dead first
        saved = saved_log(path)
        db.close()
    cut_and_reboot(path, saved)
    with installed(Rebooted()), engine.open(str(path)) as db:
        assert [e.data for e in db.read_stream("a")] == [b"1", b"2"]


def test_a_refused_write_whose_voiding_also_fails_is_not_replayed_by_the_mark(tmp_path):
    """LMDB refuses the write (EIO) after its frame was flushed, and the checkpoint
    that should kill the frame fails too: the mark names the last tx LMDB accepted,
    and the replay on the same boot stops there."""
    path = tmp_path / "db"
    fault = FaultyFileSystem(err=errno.EIO)
    with installed(fault):
        db = engine.open(str(path))
        db.append("a", "set", b"1")
        fault.fail_lmdb_writes = fault.fail_lmdb_sync = True
        with pytest.raises(engine.StorageError):
            db.append("a", "set", b"reported-failed")
        fault.fail_lmdb_writes = fault.fail_lmdb_sync = False
        db.close()
    assert journal.marked_last_tx(str(path / "log")) == 1
    assert [t for t, _ in journal.read(str(path / "log")).frames][-1] == 2  # still there
    with engine.open(str(path)) as db:
        assert [e.data for e in db.read_stream("a")] == [b"1"]
        db.append("a", "set", b"2")
    with engine.open(str(path)) as db:
        assert [e.data for e in db.read_stream("a")] == [b"1", b"2"]


def test_an_interrupted_recovery_puts_the_meta_pages_back(tmp_path, monkeypatch):
    path = tmp_path / "db"
    run_then_cut(path, 5, 5, cut="meta-ahead")
    before = (path / "log" / "data.mdb").read_bytes()
    real_open = logmod.lmdb.open

    def interrupted(*a, **k):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(logmod.lmdb, "open", interrupted)
    with installed(Rebooted()), pytest.raises(KeyboardInterrupt):
        logmod.recover_journal(str(path / "log"))
    monkeypatch.setattr(logmod.lmdb, "open", real_open)
    assert (path / "log" / "data.mdb").read_bytes() == before  # as it was
    assert not (path / "log" / "journal.meta-before").exists()
    with installed(Rebooted()), engine.open(str(path)) as db:  # and it recovers after
        assert db.position.tx_id == 10


def test_a_recovery_cut_short_after_writing_the_meta_pages_keeps_the_originals(tmp_path):
    """The side file written before the meta pages are replaced: a later attempt that
    finds the journal foreign puts back the true originals, not the replaced ones."""
    path, other = tmp_path / "db", tmp_path / "other"
    run_then_cut(path, 5, 5, cut="meta-ahead")
    run_then_cut(other, 5, 5, cut="meta-ahead")
    shutil.copy(other / "log" / "journal", path / "log" / "journal")
    data = path / "log" / "data.mdb"
    before = data.read_bytes()
    slot = journal.read(str(path / "log")).slot
    psize = slot.page_size  # (the file's own header is ahead of its pages: a cut)
    # what an attempt that crashed right after its write left behind
    logmod._save_before(str(path / "log"), psize, lmdbfile.read_meta_bytes(str(data), psize),
                        slot)
    lmdbfile.write_meta_bytes(str(data), psize, slot.meta0, slot.meta1)
    with installed(Rebooted()), pytest.raises(engine.CorruptLogError, match="nothing was"):
        engine.open(str(path))
    assert data.read_bytes() == before


def test_a_stale_side_file_of_another_slot_is_never_written_back(tmp_path):
    """A side file left by a recovery that finished (its removal undone by a crash) names
    another slot: it is dropped, and a later refused recovery leaves the file as is."""
    path, other = tmp_path / "db", tmp_path / "other"
    run_then_cut(path, 5, 5, cut="meta-ahead")
    data = path / "log" / "data.mdb"
    slot = journal.read(str(path / "log")).slot
    stale = journal.Slot(slot.seq - 1, slot.lmdb_txnid - 3, 0, slot.page_size, bytes(16),
                         slot.meta0, slot.meta1)
    logmod._save_before(str(path / "log"), slot.page_size, (bytes(152), bytes(152)), stale)
    run_then_cut(other, 5, 5, cut="meta-ahead")
    shutil.copy(other / "log" / "journal", path / "log" / "journal")
    before = data.read_bytes()
    with installed(Rebooted()), pytest.raises(engine.CorruptLogError):
        engine.open(str(path))
    assert data.read_bytes() == before
    assert not (path / "log" / "journal.meta-before").exists()


def test_a_journal_of_another_epoch_of_the_same_database_is_refused(tmp_path):
    """recover --new-epoch gives the new log the same db_id and, at its base, the old
    log's tx and checksum at the snapshot: the slot's epoch tells them apart. Here the
    newest slot of an epoch-2 log is made to say epoch 1 (all else equal)."""
    from dataclasses import replace

    path = tmp_path / "db"
    rebuilt_in_epoch_two(path)
    with engine.open(str(path)) as db:
        db.append("a", "set", b"epoch-2")
        db._log.sync()
        db.append("a", "set", b"epoch-2 again")
        saved = saved_log(path)
    raw = bytearray(saved["journal"])
    room = formats.JOURNAL_SLOT_BYTES
    slots = [journal.decode_slot(bytes(raw[i * room:(i + 1) * room])) for i in (0, 1)]
    old = max((x for x in slots if x is not None), key=lambda x: x.seq)  # newest, as saved
    at = (old.seq % 2) * room
    assert old.epoch == 2
    forged = journal.encode_slot(replace(old, epoch=1))
    raw[at:at + len(forged)] = forged
    saved["journal"] = bytes(raw)
    cut_and_reboot(path, saved)
    before = (path / "log" / "data.mdb").read_bytes()
    with installed(Rebooted()), pytest.raises(engine.CorruptLogError, match=r"epoch \(1 against 2"):
        engine.open(str(path))
    assert (path / "log" / "data.mdb").read_bytes() == before


def test_repair_applies_the_journal_before_it_salvages(tmp_path):
    from engine.ops.repair import repair_log

    path = tmp_path / "db"
    run_then_cut(path, 20, 30, cut="pages-lost")
    with installed(Rebooted()):
        with pytest.raises(engine.EngineError, match="commit journal to apply first"):
            repair_log(str(path), dry_run=True)
        with pytest.raises(engine.EngineError, match="intact"):
            repair_log(str(path))  # the journal applied, the log is whole: nothing to do
        with engine.open(str(path)) as db:
            assert db.position.tx_id == 50


def test_status_after_a_power_cut_is_a_verdict_not_an_error(tmp_path):
    from engine.ops.status import directory_status

    path = tmp_path / "db"
    run_then_cut(path, 5, 5, cut="meta-ahead")
    with installed(Rebooted()):
        report = directory_status(str(path))
        assert report.verdict == "journal to apply"
        assert "Open the database for writing" in (report.problem or "")
        assert [s["tx_id"] for s in report.snapshots] == []
        with pytest.raises(engine.JournalPendingError):
            LogStore.probe(str(path / "log"))
