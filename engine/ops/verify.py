"""``verify``: check every snapshot and every log record of a closed database.

The log is read in a **child process** (``python -m engine.ops.verify DIR``). LMDB
trusts the pages it maps: a zeroed or garbled interior page makes it fail an
assertion (SIGABRT), read out of bounds (SIGSEGV, SIGBUS) or loop, and none of that
can be caught in the process that reads. The child reports progress and problems
as JSON lines on stdout; if it dies by a signal, exits without a report, or stops
reporting for :data:`STALL_SECONDS`, the parent turns that into a problem of the
report, so ``verify`` always returns a verdict. Snapshots are checked in this
process: their reader checks lengths and checksums before it trusts any field.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from .. import layout
from ..errors import EngineError
from ..lineage import RUNBOOK as DIVERGED_RUNBOOK
from ..lineage import diverged
from ..log import RUNBOOK, LogInfo, LogStore
from ..logreader import LogReader, ProblemList
from ..snapshot import list_snapshots, load_snapshot

# progress(done, total): called every PROGRESS_EVERY records and at the end.
Progress = Callable[[int, int], None]
PROGRESS_EVERY = 512
# A child that sends nothing for this long is taken as hung (a loop in a damaged
# tree) and killed; it reports every PROGRESS_EVERY records, far more often.
STALL_SECONDS = float(os.environ.get("ENGINE_VERIFY_STALL_SECONDS", "120"))


@dataclass
class VerifyReport:
    """What verify checked and every problem it found (``ok`` when there are none)."""

    path: str
    snapshots_ok: int = 0
    log_records: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {"ok": self.ok, "path": self.path, "snapshots_ok": self.snapshots_ok,
                "log_records": self.log_records, "problems": list(self.problems)}


def verify_directory(path: str, progress: Progress | None = None) -> VerifyReport:
    """Check every snapshot and every log record of ``path`` (which the caller has locked).

    Each snapshot must load and, when it records the checksum of its tx's record and
    the log holds that tx, agree with the log (:mod:`engine.lineage`): one that does not
    belongs to a diverged copy. Snapshots set aside in ``DIR/snapshots/diverged`` are
    reported until an operator moves them out. The log is checked by
    :class:`~engine.logreader.LogReader` (checksum, key, epoch, gap-free continuation
    from the log's base) in a child process (:func:`check_log`);
    every problem is collected, and a child killed by damage is one more problem.
    """
    report = VerifyReport(path=path)
    report.snapshots_ok, problems = check_snapshots(path)
    report.problems.extend(problems)
    records, problems = _check_log_in_child(path, progress)
    report.log_records = records
    report.problems.extend(problems)
    return report


def check_snapshots(path: str) -> tuple[int, list[str]]:
    """Load every snapshot of ``path`` whole and check its lineage against the log
    (point reads only: safe on a damaged log, whose header checks run first):
    ``(snapshots that passed, problems)``."""
    report = VerifyReport(path=path)
    store: LogStore | None = None
    info: LogInfo | None = None
    try:
        info = LogStore.probe(layout.log_dir(path))
        store = LogStore(layout.log_dir(path), readonly=True) if info.exists else None
    except EngineError:
        store = None  # the log's own problem is the child's to report
    try:
        _verify_snapshots(path, report, store, info)
    finally:
        if store is not None:
            store.close()
    return report.snapshots_ok, report.problems


def _verify_snapshots(path: str, report: VerifyReport, store: LogStore | None,
                      info: LogInfo | None) -> None:
    for _pos, spath in list_snapshots(layout.snapshot_dir(path)):
        try:
            loaded = load_snapshot(spath)
        except EngineError as exc:
            report.problems.append(str(exc))
            continue
        div = None
        if store is not None and info is not None:
            try:
                # the lineage read walks the tree to the snapshot's tx: its pages are
                # checked first, so damage there is the child's verdict, not a crash here
                store.check_pages_from(loaded.header.tx_id)
                div = diverged(loaded.header, store, info)
            except EngineError:
                store = None  # the log is damaged: the child's check reports it
        if div is not None:
            report.problems.append(f"{div.describe()}. Opening sets it aside into "
                                   f"{layout.diverged_dir(path)} (runbook: {DIVERGED_RUNBOOK})")
            continue
        report.snapshots_ok += 1
    where = layout.diverged_dir(path)
    try:
        set_aside = sorted(os.listdir(where))
    except FileNotFoundError:
        set_aside = []
    except OSError as exc:
        report.problems.append(f"cannot list {where}: {exc}")
        set_aside = []
    for name in set_aside:
        report.problems.append(
            f"{os.path.join(where, name)} was set aside on open: it belongs to a diverged "
            "copy of this database (same db_id, other transactions). Find out which copy is "
            "the live one, then move the file out of the database directory (runbook: "
            f"{DIVERGED_RUNBOOK})")


def check_log(path: str, progress: Progress | None = None) -> tuple[int, list[str]]:
    """The log part of verify, in this process: ``(records read, problems)``.

    May crash the process on a damaged LMDB page: run it in a child (as
    :func:`verify_directory` does)."""
    problems = ProblemList()
    try:
        info = LogStore.probe(layout.log_dir(path))
    except EngineError as exc:
        return 0, [str(exc)]
    if not info.exists:
        return 0, []
    store = LogStore(layout.log_dir(path), readonly=True)
    records = 0
    try:
        # A damaged tree page would make LMDB abort the scan: name the page instead.
        store.check_pages_from(1)
        total = store.count()
        reader = LogReader(store, epoch=info.epoch, base_tx=info.base_tx,
                           base_position=info.base_position, where=path,
                           history=info.history)

        def seen(_tx_id: int) -> None:
            nonlocal records
            records += 1
            if records > total + 1:  # a loop in a damaged tree would never end
                raise _TreeLoop(records)
            if progress is not None and records % PROGRESS_EVERY == 0:
                progress(records, total)

        for _cols in reader.scan(1, cont=reader.start(), report=problems, on_record=seen):
            pass
        if progress is not None:
            progress(total, total)
    except _TreeLoop:
        problems.append(f"the log's LMDB file {layout.log_data_file(layout.log_dir(path))} "
                        f"is damaged: reading it yields more records than its tree holds "
                        f"({total}); {RUNBOOK}.")
    except EngineError as exc:
        problems.append(str(exc))
    finally:
        store.close()
    return records, list(problems)


class _TreeLoop(Exception):
    def __init__(self, records: int) -> None:
        super().__init__(f"{records} records read")


# ---------------------------------------------------------------- the child


def child_command(path: str) -> list[str]:
    """The checker's command line (a seam: tests swap it for a child that misbehaves)."""
    return [sys.executable, "-m", "engine.ops.verify", path]


def _check_log_in_child(path: str, progress: Progress | None) -> tuple[int, list[str]]:
    data_file = layout.log_data_file(layout.log_dir(path))
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(
            child_command(path), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=stderr, env=env)
        assert child.stdout is not None
        lines: queue.Queue[bytes] = queue.Queue()
        pump = threading.Thread(target=_pump, args=(child.stdout, lines), daemon=True,
                                name="engine-verify-pump")
        pump.start()
        result: dict[str, Any] | None = None
        hung = False
        try:
            while True:
                try:
                    line = lines.get(timeout=STALL_SECONDS)
                except queue.Empty:
                    hung = True
                    break
                if not line:
                    break  # the child closed stdout: it ended
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue  # not ours (a stray print): ignore it
                if "progress" in msg and progress is not None:
                    progress(*msg["progress"])
                elif "result" in msg:
                    result = msg["result"]
        finally:
            if child.poll() is None and (hung or result is None):
                child.kill()
            returncode = child.wait()
            pump.join(timeout=5)
            child.stdout.close()
        stderr.seek(0)
        errtext = stderr.read().decode("utf-8", "replace")
    if hung:
        return 0, [f"the log's LMDB file {data_file} is damaged: the checker process stopped "
                   f"making progress for {STALL_SECONDS:.0f} s while reading it (a loop in a "
                   f"damaged tree) and was killed; {RUNBOOK}."]
    if result is not None and returncode == 0:
        return int(result["records"]), [str(p) for p in result["problems"]]
    return 0, [child_verdict(data_file, returncode, errtext)]


def child_verdict(data_file: str, returncode: int, stderr: str) -> str:
    """The problem to report for a checker process that ended without a result."""
    detail = _assertion(stderr)
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return (f"the log's LMDB file {data_file} is damaged: the checker process was killed "
                f"by {name} while reading it{detail}; {RUNBOOK}.")
    return (f"the log's LMDB file {data_file} could not be checked: the checker process "
            f"exited with status {returncode}{detail}; {RUNBOOK}.")


def _assertion(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if "Assertion" in ln:  # LMDB's mdb_assert_fail: "mdb.c:N: Assertion 'X' failed in f()"
            return f" (LMDB assertion: {ln})"
    return f" ({lines[-1]})" if lines else ""


def _pump(stream: IO[bytes], lines: queue.Queue[bytes]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(b"")


def _child_main(argv: list[str]) -> int:
    """``python -m engine.ops.verify DIR``: check the log, report as JSON lines."""
    path = argv[0]
    out = sys.stdout

    def step(done: int, total: int) -> None:
        out.write(json.dumps({"progress": [done, total]}) + "\n")
        out.flush()

    records, problems = check_log(path, step)
    out.write(json.dumps({"result": {"records": records, "problems": problems}}) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
