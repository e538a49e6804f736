"""A hypothesis state machine over the log backup's control plane.

It interleaves appends, pause/resume, flush, close and reopen with and without
``backup=``, epoch changes (``recover --new-epoch --force`` on the closed database),
target outages and their end, and duplicated or reordered control requests (the
ids drawn from the one generator, delivered out of order). After every step that
flushes, and at teardown, it checks that the target holds every committed tx of
the current lineage exactly once and contiguous, and that a restore equals the
source.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import engine
from engine.backup.chain import fetch_segments, plan_chain
from engine.backup.faults import FaultyTarget
from engine.backup.restore import restore
from engine.backup.targets import open_target
from engine.backup.uploader import BackupOptions, Control, next_observation_id
from engine.lock import DirLock
from engine.ops.recover import recover_new_epoch

STEPS = int(os.environ.get("ENGINE_BACKUP_MODEL_STEPS", "25"))
EXAMPLES = int(os.environ.get("ENGINE_BACKUP_MODEL_EXAMPLES", "12"))


class LogBackupModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="engine-backup-model-")
        self.path = os.path.join(self.tmp, "db")
        self.inner = open_target(f"file://{self.tmp}/target")
        self.target = FaultyTarget(self.inner)
        self.db: engine.Database | None = None
        self.with_backup = False
        self.n = 0
        self.held: list[Control] = []  # control requests made but not delivered yet
        self._open(backup=True)

    # ------------------------------------------------------------- helpers
    def _options(self) -> BackupOptions:
        return BackupOptions(target=self.target, interval_seconds=0.005,
                             backoff_max_seconds=0.02, close_timeout_seconds=2,
                             flush_timeout_seconds=5, fence_check_seconds=0.05)

    def _open(self, backup: bool) -> None:
        self.db = engine.open(self.path, backup=self._options() if backup else None)
        self.with_backup = backup

    def _shipped(self) -> tuple[int, list[int]]:
        """(base tx, the txs of the segments after it) on the newest lineage."""
        assert self.db is not None
        if self.db.position.tx_id == 0:
            return 0, []  # nothing committed: a flush had nothing to ship
        chain = plan_chain(self.inner, self.db.db_id)
        assert chain.gap is None, chain.gap
        base = chain.base.tx_id if chain.base is not None else 0
        return base, [t for _h, recs in fetch_segments(self.inner, chain) for t, _ in recs]

    def _check_exactly_once(self) -> None:
        """Every committed tx is in the target once: in the base snapshot the lineage
        starts from (an epoch opened after txs that were never shipped), or in exactly
        one segment, contiguous up to the last commit."""
        base, txs = self._shipped()
        assert txs == list(range(base + 1, base + len(txs) + 1)), (base, txs)
        assert self.db is not None
        assert base + len(txs) == self.db.position.tx_id

    # --------------------------------------------------------------- rules
    @rule(k=st.integers(1, 5))
    def append(self, k: int) -> None:
        assert self.db is not None
        with self.db.transaction() as tx:
            for _ in range(k):
                self.n += 1
                tx.append(f"s{self.n % 5}", "e", b"%d" % self.n)

    @precondition(lambda self: self.with_backup and not self.target.is_out)
    @rule()
    def flush(self) -> None:
        assert self.db is not None
        try:
            r = self.db.backup.flush()
        except engine.BackupPausedError:
            return
        assert r.flushed_through_tx == self.db.position.tx_id
        self._check_exactly_once()

    @precondition(lambda self: self.with_backup)
    @rule(kind=st.sampled_from(["stop", "start"]), deliver_now=st.booleans())
    def control(self, kind: str, deliver_now: bool) -> None:
        """Make a control request; deliver it now or hold it to deliver late."""
        assert self.db is not None
        req = Control(kind, next_observation_id(), "model")
        if deliver_now:
            self.db.backup.submit(req)
        else:
            self.held.append(req)

    @precondition(lambda self: self.with_backup and bool(self.held))
    @rule(data=st.data())
    def deliver_late(self, data: st.DataObject) -> None:
        """Deliver held requests in any order, possibly twice: all are stale or applied."""
        assert self.db is not None
        order = data.draw(st.permutations(self.held))
        dup = data.draw(st.booleans())
        for req in order + (order[:1] if dup else []):
            self.db.backup.submit(req)
        self.held.clear()

    @precondition(lambda self: self.with_backup)
    @rule()
    def resume(self) -> None:
        assert self.db is not None
        self.db.backup.resume()

    @rule()
    def outage(self) -> None:
        self.target.outage()

    @rule()
    def outage_ends(self) -> None:
        self.target.restore_service()

    @rule(backup=st.booleans())
    def reopen(self, backup: bool) -> None:
        assert self.db is not None
        self.db.close()
        self.held.clear()
        self._open(backup)

    @precondition(lambda self: not self.target.is_out and self.n > 0)
    @rule()
    def new_epoch(self) -> None:
        """recover --new-epoch --force on the closed database: a new epoch, then reopen."""
        assert self.db is not None
        self.db.close()
        self.held.clear()
        lock = DirLock(self.path)
        try:
            def snapshot_first() -> None:
                with engine.Database(self.path, _held_lock=lock) as d:
                    d.snapshot()

            recover_new_epoch(self.path, force=True, snapshot_first=snapshot_first)
        finally:
            lock.release()
        # the new epoch starts after everything; make sure the old one was shipped whole
        self._open(backup=True)

    # ----------------------------------------------------------- invariants
    @invariant()
    def position_matches_commits(self) -> None:
        assert self.db is not None
        assert self.db.position.tx_id == self.db.commit_signal.current.tx_id

    def teardown(self) -> None:
        try:
            assert self.db is not None
            self.target.restore_service()
            self.db.close()
            # a final run with backup=: everything committed ships, exactly once
            self._open(backup=True)
            self.db.backup.resume()
            self.db.backup.flush(timeout=20)
            self._check_exactly_once()
            committed = self.db.position.tx_id
            self.db.close()
            if committed == 0:
                return
            dest = os.path.join(self.tmp, "restored")
            restore(self.inner, dest)
            with engine.open(self.path) as src, engine.open(dest) as got:
                want = {s: (src.version(s), src.get(s)) for s in src.streams()}
                assert {s: (got.version(s), got.get(s)) for s in got.streams()} == want
                assert got.position.tx_id == src.position.tx_id
        finally:
            if self.db is not None and not self.db.closed:
                self.db.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


LogBackupModel.TestCase.settings = settings(max_examples=EXAMPLES, stateful_step_count=STEPS,
                                            deadline=None)
TestLogBackupModel = LogBackupModel.TestCase
