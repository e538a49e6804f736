"""Chaos: random damage to the log and the snapshots never crashes verify, never yields
a wrong state, and verify flags every damage that changed anything.

Each trial copies one intact database, damages one file (truncation at a random size,
a zeroed page, random bit flips, a run of random bytes; the log's two meta pages get
extra weight), then runs, each in a forked child so a crash is an observation and
never kills pytest: verify's snapshot part and its log part (the part
``verify_directory`` runs in a child process of its own), ``status``, and ``open``
followed by the state and ``read_log``. The assertions:

* verify's snapshot part never dies; its log part may (a damaged page), which
  ``verify_directory`` reports as a problem: either way verify gives a verdict;
* open and status never die of damage the checks before mapping cover (truncation,
  the meta pages, snapshots); a damaged interior LMDB page may still kill them
  (docs/FORMAT.md, section 3), and then verify must have flagged it;
* open either raises an ``EngineError`` or opens a state equal to the fold of the
  intact records up to the position it reports, and ``read_log`` either raises an
  ``EngineError`` or returns exactly those records;
* verify ok => open succeeds with the original position, state and read_log.

``ENGINE_CHAOS_TRIALS`` sets the number of trials (default 300), ``ENGINE_CHAOS_SEED``
the seed (default: random, printed with any failure so it can be replayed).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from typing import Any

import pytest

import engine
from engine import layout
from engine.ops import verify as verify_mod
from engine.ops.status import directory_status
from tests.log.lmdb_damage import ChildResult, data_file, flip_bit, in_child, write_at

TRIALS = int(os.environ.get("ENGINE_CHAOS_TRIALS", "300"))
SEED = int(os.environ.get("ENGINE_CHAOS_SEED", str(random.SystemRandom().randrange(1 << 32))))
TXS = 120
STREAMS = [f"stream-{i}" for i in range(8)]

Log = list[tuple[int, list[tuple[str, str, str]]]]


def _build(path: str, rng: random.Random) -> Log:
    with engine.open(path, keep_snapshots=3) as db:
        for i in range(1, TXS + 1):
            with db.transaction() as tx:
                for _ in range(rng.choice([1, 1, 2, 3])):
                    stream = rng.choice(STREAMS)
                    kind = "delete" if rng.random() < 0.1 else "set"
                    big = rng.random() < 0.3  # overflow pages, else leaf-page values
                    size = rng.randrange(2500, 6000) if big else rng.randrange(1, 300)
                    tx.append(stream, kind, rng.randbytes(size))
            if i in (50, 90):
                db.snapshot()
        return _read_log(db)


def _read_log(db: engine.Database) -> Log:
    return [(t.tx_id, [(e.stream, e.type, e.data.hex()) for e in t.events])
            for t in db.read_log()]


def _states(log: Log) -> list[dict[str, list[Any]]]:
    """The state after each prefix of the log: stream -> [version, value hex or None]."""
    state: dict[str, list[Any]] = {s: [0, None] for s in STREAMS}
    out = [{s: list(v) for s, v in state.items()}]
    for _tx, events in log:
        for stream, kind, data in events:
            state[stream][0] += 1
            state[stream][1] = None if kind == "delete" else data
        out.append({s: list(v) for s, v in state.items()})
    return out


def _damage(path: str, rng: random.Random) -> tuple[str, bool]:
    """Damage one file of ``path``; returns (description, covered by the checks before
    mapping or a snapshot: open must not die of it)."""
    snaps = sorted(os.listdir(layout.snapshot_dir(path)))
    if rng.random() < 0.25 and snaps:
        target, covered = os.path.join(layout.snapshot_dir(path), rng.choice(snaps)), True
    else:
        target, covered = data_file(path), False
    size = os.path.getsize(target)
    meta_pages = target.endswith("data.mdb") and rng.random() < 0.2
    span = min(size, 8192) if meta_pages else size
    kind = rng.choice(["truncate", "zero page", "bit flips", "byte run"])
    name = os.path.relpath(target, path)
    if kind == "truncate":
        new = rng.randrange(0, size)
        os.truncate(target, new)
        return f"{name}: truncated from {size} to {new} bytes", True
    covered = covered or meta_pages
    if kind == "zero page":
        page = rng.randrange(0, max(1, span // 4096))
        write_at(target, page * 4096, b"\0" * min(4096, size - page * 4096))
        return f"{name}: page {page} zeroed", covered or page < 2
    if kind == "bit flips":
        bits = sorted(rng.randrange(0, span * 8) for _ in range(rng.randrange(1, 9)))
        for bit in bits:
            flip_bit(target, bit)
        return f"{name}: bits {bits} flipped", covered or bits[-1] < 8192 * 8
    length = rng.randrange(1, 65)
    offset = rng.randrange(0, max(1, span - length))
    write_at(target, offset, rng.randbytes(length))
    return f"{name}: {length} random bytes at {offset}", covered or offset + length <= 8192


def _typed(result: ChildResult) -> str | None:
    """None if the child answered or raised an EngineError; else what went wrong."""
    if result.crashed:
        return f"killed by signal {result.signal}"
    if result.hung:
        return "hung"
    answer = result.answer
    if answer is None:
        return f"exited {result.exit_code} without an answer"
    if "error" in answer and not issubclass(getattr(engine, answer["error"], type(None)),
                                            engine.EngineError):
        return f"raised {answer['error']}: {answer['message']}"
    return None


def _open_and_read(path: str) -> dict[str, Any]:
    with engine.open(path) as db:
        out: dict[str, Any] = {
            "tx": db.position.tx_id,
            "state": {s: [db.version(s), None if db.get(s) is None else db.get(s).hex()]  # type: ignore[union-attr]
                      for s in STREAMS}}
        try:
            out["log"] = _read_log(db)
        except engine.EngineError as exc:
            out["log_error"] = f"{type(exc).__name__}: {exc}"
        return out


def _trial(base: str, work: str, rng: random.Random, log: Log,
           states: list[dict[str, list[Any]]]) -> tuple[list[str], str]:
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work)
    what, covered = _damage(work, rng)
    problems: list[str] = []

    def check(name: str, fn: Callable[[], Any], may_crash: bool) -> ChildResult:
        result = in_child(fn, timeout=60)
        wrong = _typed(result)
        if wrong is not None and not (may_crash and (result.crashed or result.hung)):
            problems.append(f"{name} {wrong}")
        return result

    snaps = check("verify (snapshots)", lambda: verify_mod.check_snapshots(work), False)
    logs = check("verify (log)", lambda: verify_mod.check_log(work), True)
    verify_ok = (snaps.answer is not None and "ok" in snaps.answer and not snaps.answer["ok"][1]
                 and logs.answer is not None and "ok" in logs.answer
                 and not logs.answer["ok"][1])
    status = check("status", lambda: directory_status(work).verdict, not covered)
    opened = check("open", lambda: _open_and_read(work), not covered)
    for name, result in (("status", status), ("open", opened)):
        if (result.crashed or result.hung) and verify_ok:
            problems.append(f"{name} died ({_typed(result)}) but verify said ok")
    got = opened.answer.get("ok") if opened.answer else None
    if got is not None:
        tx = got["tx"]
        if not 0 <= tx <= TXS:
            problems.append(f"open reports tx {tx}, past the original {TXS}")
        elif got["state"] != states[tx]:
            problems.append(f"open reports tx {tx} but its state is not the fold of txs 1..{tx}")
        elif "log" in got and got["log"] != log[:tx]:
            problems.append(f"read_log after open at tx {tx} differs from the intact records")
        if verify_ok and (tx != TXS or got.get("log") != log):
            problems.append(f"verify said ok but open gives tx {tx} / "
                            f"{got.get('log_error', 'a different read_log')}")
    elif verify_ok:
        problems.append(f"verify said ok but open failed: {_typed(opened) or opened.answer}")
    outcome = ("verify ok" if verify_ok else "flagged") + (
        ", open died" if opened.crashed or opened.hung else
        ", open refused" if opened.answer and "error" in opened.answer else ", opened") + (
        ", status died" if status.crashed or status.hung else "")
    return [f"{what}: {p}" for p in problems], outcome


@pytest.mark.slow
def test_random_damage_never_crashes_and_never_lies(tmp_path):
    rng = random.Random(SEED)
    base = str(tmp_path / "base")
    log = json.loads(json.dumps(_build(base, rng)))  # as the children answer: lists
    states = _states(log)
    failures: list[str] = []
    outcomes: dict[str, int] = {}
    for trial in range(TRIALS):
        trial_rng = random.Random(f"{SEED}-{trial}")
        problems, outcome = _trial(base, str(tmp_path / "work"), trial_rng, log, states)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        failures.extend(f"ENGINE_CHAOS_SEED={SEED} trial {trial}: {p}" for p in problems)
    print(f"chaos: seed {SEED}, {TRIALS} trials: {outcomes}")
    assert not failures, "\n".join(failures[:40])
