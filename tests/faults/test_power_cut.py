"""Power cuts, simulated (tests/faults/powercut): a child appends and reports each
commit as it returns; it is killed with SIGKILL at a random moment, and the log's
files (LMDB's ``data.mdb`` and the commit journal) are rebuilt as the disk would hold
them had the power gone then (every write that no later flush of its file covered is
dropped). Then the database must open as after a reboot (another boot id: the commit
journal replays), hold a gap-free run of intact transactions, and hold every
acknowledged commit its sync mode promises:

- ``sync="commit"`` and ``"group"``: every acknowledged commit (durable on return: its
  journal frame was flushed; LMDB itself flushed only at checkpoints);
- ``sync="data"``: every acknowledged commit but possibly the last (its meta page is
  flushed by the next commit's flush or the meta flusher, docs/FORMAT.md section 3);
- ``sync="none"``: a prefix only, and the model shows it: acknowledged commits are lost;
  so does ``"commit"`` with the journal's flush turned off (the negative control).

Under ``"data"`` also: once the meta flusher has flushed, nothing before is lost, and
a snapshot is never ahead of the log after a cut.

Cycles per mode: ENGINE_POWERCUT_CYCLES (default 6).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import engine
from engine.files import FileSystem, installed
from tests.faults.powercut import build_shim, cut, shim_env

CYCLES = int(os.environ.get("ENGINE_POWERCUT_CYCLES", "6"))

CHILD = r"""
import sys, time
if sys.argv[3] == "mutant":  # the negative control: "commit" without its journal flush
    import engine.journal
    engine.journal.Journal._flush = lambda self: None
import engine
db = engine.open(sys.argv[1], sync=sys.argv[2])
print("open", db.position.tx_id, flush=True)
if sys.argv[3] == "threads":  # concurrent committers: "group" batches several of them
    import threading
    out = threading.Lock()
    def commit_forever(k):
        seq = 0
        while True:
            seq += 1
            tx = db.append("t%d" % k, "deposited", b"t%d-%d" % (k, seq))
            with out:
                sys.stdout.write("ack %d\n" % tx)
                sys.stdout.flush()
    for k in range(3):
        threading.Thread(target=commit_forever, args=(k,), daemon=True).start()
    while True:
        time.sleep(1)
n = 0
while True:
    nxt = db.position.tx_id + 1
    db.append("acct-%d" % (nxt % 7), "deposited", b"%d" % nxt)
    print("ack", nxt, flush=True)
    n += 1
    if sys.argv[3] == "checkpoint" and n % 300 == 0:  # a checkpoint every 300 commits
        with db._log._write_lock:
            db._log._checkpoint()
    if sys.argv[3] == "snapshot" and n % 25 == 0:  # the cut right after a snapshot
        db.snapshot()
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
    if sys.argv[3] == "quiet" and n % 40 == 0:  # wait for the meta flusher's flush
        flusher = db._services["metaflush"]
        seen = flusher.flushes
        while flusher.flushes == seen:
            time.sleep(0.001)
        print("quiet", nxt, flush=True)
        time.sleep(0.05)
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shim(tmp_path_factory.mktemp("powercut"))


def run_until_cut(shim: Path, path: Path, sync: str, log: Path, rng: random.Random,
                  variant: str = "plain") -> list[int]:
    """Run the child until a random SIGKILL; returns the tx ids it acknowledged (for
    the "quiet" variant: the ones a completed meta-flusher flush covers)."""
    (path / "log").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), sync, variant],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            env=shim_env(shim, watched(path), log))
    acked: list[int] = []
    opened = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            if len(parts) != 2 or not line.endswith("\n"):
                continue  # a line the kill cut short: not an acknowledgment
            kind, tx = parts
            if kind == "open":
                opened.set()
            elif kind == ("quiet" if variant == "quiet" else "ack"):
                acked.append(int(tx))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not opened.wait(60):
        proc.kill()
        raise AssertionError(f"the child did not open: {proc.stderr.read() if proc.stderr else ''}")
    time.sleep(rng.uniform(0.02, 0.4) if variant != "quiet" else rng.uniform(0.1, 0.6))
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    reader.join(10)
    return acked


def watched(path: Path) -> list[Path]:
    """The files a power cut rebuilds: LMDB's, then the commit journal."""
    return [path / "log" / "data.mdb", path / "log" / "journal"]


class Rebooted(FileSystem):
    """The machine after the cut: another boot, so the page cache is gone."""

    def boot_id(self) -> bytes:
        return b"after-the-cut-01"


def check_after_cut(path: Path, variant: str = "plain") -> int:
    """Open the database as the cut left it, as after a reboot: gap-free, every record
    intact and what its writer wrote. Returns its last tx."""
    with installed(Rebooted()), engine.open(str(path)) as db:
        last = db.position.tx_id
        txs = list(db.read_log())
        assert [t.tx_id for t in txs] == list(range(1, last + 1))
        seqs: dict[str, int] = {}
        for t in txs:
            if variant != "threads":
                assert [e.data for e in t.events] == [b"%d" % t.tx_id], t.tx_id
                continue
            # each thread's events come in its own order, one per tx, none missing in
            # between (a new child, after a cut, counts from 1 again)
            (e,) = t.events
            k, seq = e.data.decode().lstrip("t").split("-")
            assert e.stream == f"t{k}" and int(seq) in (1, seqs.get(e.stream, 0) + 1), t.tx_id
            seqs[e.stream] = int(seq)
    return last


def cycles(shim: Path, tmp_path: Path, sync: str, seed: int, variant: str = "plain"
           ) -> list[tuple[int, int, int]]:
    """(max acknowledged, last tx after the cut, writes dropped) per cycle."""
    rng = random.Random(seed)
    path = tmp_path / "db"
    files = watched(path)
    out = []
    for n in range(CYCLES):
        baselines = [f.read_bytes() if f.exists() else b"" for f in files]
        log = tmp_path / f"writes-{n}.bin"
        acked = run_until_cut(shim, path, sync, log, rng, variant)
        dropped = sum(cut(f, b, log, i)[1] for i, (f, b) in enumerate(zip(files, baselines,
                                                                        strict=True)))
        last = check_after_cut(path, variant)
        out.append((max(acked, default=0), last, dropped))
    return out


@pytest.mark.parametrize("sync, variant", [("commit", "plain"), ("group", "plain"),
                                           ("group", "threads"), ("commit", "checkpoint"),
                                           ("commit", "snapshot")])
def test_every_acknowledged_commit_survives_a_power_cut(shim, tmp_path, sync, variant):
    """("group", "threads"): three threads commit at once, so groups have members;
    ("commit", "checkpoint"): checkpoints come every 300 commits, so cuts land before,
    inside and after them; ("commit", "snapshot"): the cut right after a snapshot (the
    snapshot must not be ahead of the log: the open would refuse)."""
    for acked, last, _dropped in cycles(shim, tmp_path, sync, seed=11, variant=variant):
        assert last >= acked, f"sync={sync}: tx {acked} was acknowledged, the cut left {last}"


def test_sync_data_loses_at_most_the_last_acknowledged_commit(shim, tmp_path):
    for acked, last, _dropped in cycles(shim, tmp_path, "data", seed=12):
        assert last >= acked - 1, f"tx {acked} was acknowledged, the cut left {last}"


def test_sync_data_keeps_what_the_meta_flusher_flushed(shim, tmp_path):
    """Once the flusher has flushed after commits paused, every commit before is durable."""
    results = cycles(shim, tmp_path, "data", seed=15, variant="quiet")
    assert any(acked > 0 for acked, _, _ in results), results  # the flusher did flush
    for acked, last, _dropped in results:
        assert last >= acked, f"tx {acked} was flushed by the meta flusher, the cut left {last}"


def test_a_snapshot_under_sync_data_is_never_ahead_of_the_log(shim, tmp_path):
    """The child snapshots after 25 commits and cuts its own power right after: the log
    must reach the snapshot (check_after_cut opens it: a snapshot past the log would
    refuse with LogGapError)."""
    for acked, last, _dropped in cycles(shim, tmp_path, "data", seed=16, variant="snapshot"):
        assert last >= acked - 1


def test_the_model_catches_a_commit_without_its_journal_flush(shim, tmp_path):
    """The negative control for the "commit" test: the commit journal without its
    flush under sync="commit" loses an acknowledged commit at some cut."""
    results = cycles(shim, tmp_path, "commit", seed=17, variant="mutant")
    assert any(last < acked for acked, last, _ in results), results


def test_the_model_drops_what_sync_none_never_flushed(shim, tmp_path):
    """The negative control: the same harness shows sync="none" losing acknowledged
    commits (so the checks above can fail), and the log still opens whole."""
    results = cycles(shim, tmp_path, "none", seed=13)
    assert any(last < acked for acked, last, _ in results), results
    assert any(dropped > 0 for _, _, dropped in results)


def test_the_database_verifies_after_power_cuts(shim, tmp_path):
    cycles(shim, tmp_path, "data", seed=14)
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "verify", str(tmp_path / "db"),
                           "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"ok": true' in proc.stdout


def test_an_empty_log_file_is_a_log_never_written(tmp_path):
    """What a cut right after LMDB created data.mdb leaves: an empty file. Without
    snapshots it is a new database; with one, the log is lost (the recovery error)."""
    path = tmp_path / "db"
    (path / "log").mkdir(parents=True)
    (path / "log" / "data.mdb").write_bytes(b"")
    with engine.open(str(path)) as db:
        db.append("a", "set", b"1")
    other = tmp_path / "other"
    with engine.open(str(other)) as db:
        db.append("a", "set", b"1")
        db.snapshot()
    (other / "log" / "data.mdb").write_bytes(b"")
    with pytest.raises(engine.LogMissingError, match="no log was found"):
        engine.open(str(other))
