"""Model-based test: the engine against a pure-Python in-memory model.

The model is ``stream -> [(type, data), ...]`` plus the list of committed
transactions; the state value is the fold of the stream's events by the reducer.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

import engine

STREAMS = st.sampled_from(["a", "b", "c", "ünï", "日本", "s" * 40])
TYPES = st.sampled_from(["set", "set", "note", "delete", "ü"])
DATA = st.binary(max_size=12)
EVENT = st.tuples(STREAMS, TYPES, DATA)
DELTA = st.integers(-3, 3).filter(bool)


def concat_reducer(value, event):
    return None if event.type == "delete" else (value or b"") + event.data


REDUCERS = {"default": None, "concat": concat_reducer}


def model_value(kind, events):
    value = None
    for etype, data in events:
        if etype == "delete":
            value = None
        elif kind == "default":
            value = data
        else:
            value = (value or b"") + data
    return value


def wrong_version(right, delta):
    v = right + delta
    return v if v >= 0 else right + 1 + abs(delta)


class Rollback(Exception):
    pass


# one op of a transaction: ("append", (s, t, d), expect) or ("extend", [(s, t, d), ...])
# expect: None, ("right",) or ("wrong", delta)
EXPECT = st.one_of(st.none(), st.just(("right",)), st.tuples(st.just("wrong"), DELTA))
OP = st.one_of(
    st.tuples(st.just("append"), EVENT, EXPECT),
    st.tuples(st.just("extend"), st.lists(EVENT, max_size=4)),
)


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="engine-model-")
        self.path = os.path.join(self.tmp, "db")
        self.db: engine.Database | None = None
        self.streams: dict[str, list[tuple[str, bytes]]] = {}
        self.txs: list[list[tuple[str, str, bytes]]] = []
        self.kind = "default"
        self.sync = "none"

    # ------------------------------------------------------------- helpers
    def _open(self) -> None:
        self.db = engine.open(self.path, sync=self.sync, reducer=REDUCERS[self.kind])

    def _commit(self, events):
        self.txs.append(list(events))
        for s, t, d in events:
            self.streams.setdefault(s, []).append((t, d))

    def _check(self, streams) -> None:
        db = self.db
        assert db.position == engine.Position(1, len(self.txs))
        for s in streams:
            evs = self.streams.get(s, [])
            assert db.version(s) == len(evs), s
            assert db.get(s) == model_value(self.kind, evs), s

    def _check_all(self) -> None:
        db = self.db
        self._check(self.streams)
        txs = list(db.read_log())
        assert [t.tx_id for t in txs] == list(range(1, len(self.txs) + 1))
        assert [[(e.stream, e.type, e.data) for e in t.events] for t in txs] == self.txs
        events = [e for t in txs for e in t.events]
        assert [e.position for e in events] == list(range(1, len(events) + 1))
        for s, evs in self.streams.items():
            got = list(db.read_stream(s))
            assert [(e.type, e.data) for e in got] == evs, s
            assert [e.version for e in got] == list(range(1, len(evs) + 1)), s
            assert got == [e for e in events if e.stream == s]

    # --------------------------------------------------------------- rules
    @initialize(sync=st.sampled_from(["none", "group", "commit"]),
                kind=st.sampled_from(sorted(REDUCERS)))
    def setup(self, sync, kind):
        self.sync = sync
        self.kind = kind
        self._open()

    @rule(ev=EVENT)
    def append(self, ev):
        assert self.db.append(*ev) == len(self.txs) + 1
        self._commit([ev])
        self._check([ev[0]])

    @rule(ev=EVENT, right=st.booleans(), delta=DELTA)
    def append_expected(self, ev, right, delta):
        s = ev[0]
        current = len(self.streams.get(s, []))
        if right:
            assert self.db.append(*ev, expected_version=current) == len(self.txs) + 1
            self._commit([ev])
        else:
            wrong = wrong_version(current, delta)
            with pytest.raises(engine.ConcurrencyError) as ei:
                self.db.append(*ev, expected_version=wrong)
            assert (ei.value.stream, ei.value.expected, ei.value.actual) == (s, wrong, current)
        self._check([s])

    @rule(stream=STREAMS)
    def delete(self, stream):
        assert self.db.append(stream, "delete", b"") == len(self.txs) + 1
        self._commit([(stream, "delete", b"")])
        self._check([stream])

    @rule(ops=st.lists(OP, max_size=6), rollback=st.booleans())
    def transaction(self, ops, rollback):
        local = {s: len(evs) for s, evs in self.streams.items()}
        events: list[tuple[str, str, bytes]] = []
        conflict = None
        for op in ops:
            if op[0] == "extend":
                for s, t, d in op[1]:
                    events.append((s, t, d))
                    local[s] = local.get(s, 0) + 1
                continue
            (s, t, d), expect = op[1], op[2]
            if expect is not None:
                right = local.get(s, 0)
                want = right if expect[0] == "right" else wrong_version(right, expect[1])
                if want != right and conflict is None:
                    conflict = (s, want, right)
            events.append((s, t, d))
            local[s] = local.get(s, 0) + 1

        touched = {e[0] for e in events}
        if rollback:
            with pytest.raises(Rollback), self.db.transaction() as tx:
                body_with_extend(tx, ops, self.streams)
                raise Rollback
            assert tx.tx_id is None
        elif conflict is not None:
            with pytest.raises(engine.ConcurrencyError) as ei, self.db.transaction() as tx:
                body_with_extend(tx, ops, self.streams)
            assert (ei.value.stream, ei.value.expected, ei.value.actual) == conflict
            assert tx.tx_id is None
        else:
            with self.db.transaction() as tx:
                body_with_extend(tx, ops, self.streams)
            if events:
                assert tx.tx_id == len(self.txs) + 1
                self._commit(events)
            else:
                assert tx.tx_id is None
        self._check(touched)

    @rule()
    def snapshot(self):
        info = self.db.snapshot()
        assert (info.epoch, info.tx_id) == (1, len(self.txs))
        assert info.streams == len(self.streams)
        assert os.path.exists(info.path)

    @rule()
    def reopen(self):
        self.db.close()
        self._open()
        self._check(self.streams)

    @precondition(lambda self: len(self.txs) > 0)
    @rule()
    def check_everything(self):
        self._check_all()

    def teardown(self):
        try:
            if self.db is not None and not self.db.closed:
                self._check_all()
                self.db.close()
                self._open()  # and once more from disk
                self._check_all()
        finally:
            if self.db is not None:
                self.db.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


def body_with_extend(tx, ops, streams):
    """Replay ``ops`` into ``tx``, computing right/wrong expected versions as it goes."""
    local = {s: len(evs) for s, evs in streams.items()}
    for op in ops:
        if op[0] == "extend":
            tx.extend(op[1])
            for s, _, _ in op[1]:
                local[s] = local.get(s, 0) + 1
            continue
        (s, t, d), expect = op[1], op[2]
        if expect is None:
            tx.append(s, t, d)
        else:
            right = local.get(s, 0)
            want = right if expect[0] == "right" else wrong_version(right, expect[1])
            tx.append(s, t, d, expected_version=want)
        local[s] = local.get(s, 0) + 1


EngineMachine.TestCase.settings = settings(stateful_step_count=30)
TestEngineModel = EngineMachine.TestCase
