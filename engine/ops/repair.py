"""``engine-admin repair DIR``: rebuild a damaged log from its intact records.

:func:`repair_log` salvages every intact transaction record of ``DIR/log/data.mdb``
into a fresh log (same db_id, a new epoch), sets the damaged log aside (never
deleted), and reports exactly what was kept and what was lost. The damaged file is
never opened with LMDB in this process (it can crash it: SIGBUS, SIGABRT): its
bytes are scanned by :mod:`engine.salvage`, and LMDB's own view of it is read in a
child process (:func:`lmdb_view_child`), whose crash is only a finding.

The rule for what goes into the fresh log (docs/RUNBOOK.md, "Repairing a damaged
log"): the state must be a snapshot (or the empty state before tx 1) plus a
gap-free run of records after it. Of every starting point (each valid snapshot on
the log's timeline, and tx 0 when the log began there) the one whose run reaches
the highest tx wins; on a tie, the one that keeps more records in the log. The log
holds that run from its first record (the history before the snapshot too, with the
records' true epochs), then a new epoch starts at the next tx. Every other intact
record is written to the salvage file beside the set-aside log: nothing intact is
dropped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .. import formats, layout
from ..errors import EngineError, StorageError
from ..files import fs
from ..log import LogStore, journal_pending, recover_journal
from ..logreader import LogReader
from ..model import EpochRecord
from ..salvage import FoundRecord, RawScan, read_raw, salvage_chunks, scan
from ..snapshot import LoadedSnapshot, list_snapshots, load_snapshot, read_header
from .plan import in_history, set_aside_dir

# progress(done, total, phase)
Progress = Callable[[int, int, str], None]

SALVAGE_FILE = "salvaged.etxr"      # beside the set-aside data.mdb (FORMAT.md section 10)
REPORT_FILE = "repair-report.json"  # the report, kept with the damaged log
REASON = "repair: rebuilt from the intact records of a damaged log"
APPEND_BATCH = 256
_PROBLEMS_SHOWN = 20


@dataclass
class LmdbView:
    """What LMDB itself could read of the damaged log, in a child process."""

    opened: bool                 # the child read the meta and the records to the end
    crashed: str | None = None   # "signal SIGBUS" etc. when LMDB took the child down
    error: str | None = None     # an engine error (damaged meta, LMDB's own complaint)
    db_id: str | None = None
    epoch: int | None = None
    base_tx: int | None = None
    base_position: int | None = None
    history: list[dict[str, object]] | None = None
    first_tx: int | None = None
    last_tx: int | None = None
    records: int = 0
    bad: list[int] = field(default_factory=list)  # keys whose record fails a check
    problems: list[str] = field(default_factory=list)
    checksums: dict[int, int] = field(default_factory=dict)  # tx -> its record's trailer

    @property
    def healthy(self) -> bool:
        return self.opened and not self.problems and self.crashed is None

    def describe(self) -> str:
        if self.crashed:
            return f"LMDB crashed reading it ({self.crashed})"
        if self.error:  # without the engine's advice to run verify or recover: this is repair
            return f"LMDB could not read it: {self.error.split(' Run `engine-admin')[0]}"
        if not self.problems:
            span = f"txs {self.first_tx}..{self.last_tx}" if self.first_tx else "no records"
            return f"LMDB reads it whole ({span}, every record intact)"
        return (f"LMDB reads it ({self.records} records up to tx {self.last_tx}) with "
                f"{len(self.problems)} problem(s)")


@dataclass
class RepairReport:
    """What repair found, kept, set aside and lost (printed, or as JSON)."""

    path: str
    dry_run: bool
    db_id: str
    db_id_from: str
    data_file: str
    file_bytes: int
    lmdb: str
    found: dict[str, int]
    log_before: dict[str, int | None]
    snapshot: str | None
    state_tx: int
    kept: dict[str, int | None]
    outside: list[dict[str, object]]
    lost: list[dict[str, object]]
    lost_after: str
    conflicts: list[dict[str, object]]
    new_epoch: int
    next_tx: int
    moved_to: str | None
    salvage_file: str | None
    unreadable: list[list[int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    forced: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path, "dry_run": self.dry_run, "forced": self.forced,
            "db_id": self.db_id, "db_id_from": self.db_id_from, "data_file": self.data_file,
            "file_bytes": self.file_bytes, "unreadable": self.unreadable, "lmdb": self.lmdb,
            "found": self.found, "log_before": self.log_before, "snapshot": self.snapshot,
            "state_tx": self.state_tx, "kept": self.kept, "outside": self.outside,
            "salvage_file": self.salvage_file, "lost": self.lost,
            "lost_after": self.lost_after, "conflicts": self.conflicts,
            "new_epoch": self.new_epoch, "next_tx": self.next_tx,
            "moved_to": self.moved_to, "notes": self.notes,
        }  # fmt: skip


# ------------------------------------------------------------- LMDB's own view


def lmdb_view_child(log_path: str, want: str = "") -> None:
    """The child process: read the log through LMDB (it may crash; that is why this
    runs in a child) and print what it saw as one JSON object. ``want`` (tx ids,
    comma-separated) asks for the checksum trailer of the records LMDB holds under
    those keys (to tell which of two intact copies is the live one)."""
    out: dict[str, object] = {"opened": False}
    try:
        store = LogStore(log_path, readonly=True)
        try:
            meta = store.read_meta()

            def u64(key: bytes) -> int | None:
                v = meta.get(key)
                return int(formats.U64_LE.unpack(v)[0]) if v is not None and len(v) == 8 \
                    else None

            raw_id = meta.get(formats.META_DB_ID)
            hist = meta.get(formats.META_HISTORY)
            raw_history = json.loads(hist) if hist else None
            epoch, base_tx = u64(formats.META_EPOCH), u64(formats.META_BASE_TX)
            base_pos = u64(formats.META_BASE_POSITION)
            out.update(db_id=raw_id.decode("ascii", "replace") if raw_id else None,
                       epoch=epoch, base_tx=base_tx, base_position=base_pos,
                       history=raw_history)
            history = tuple(EpochRecord.from_json(d) for d in (raw_history or []))
            bad: list[int] = []
            problems: list[str] = []

            def report(tx_id: int, message: str) -> None:
                bad.append(tx_id)
                problems.append(message)

            if raw_id is None or not _is_uuid(raw_id):
                problems.append("the log's db_id meta entry is missing or damaged")
            if epoch is None or base_tx is None or base_pos is None:
                problems.append("the log's meta entries (epoch, base_tx, base_position) "
                                "are missing or damaged")
            reader = LogReader(store, epoch=epoch or 0, base_tx=base_tx or 0,
                               base_position=base_pos or 0,
                               where=os.path.dirname(log_path), history=history)
            seen: list[int] = []
            for _ in reader.scan(1, cont=reader.start(), report=report,
                                 on_record=seen.append):
                pass
            sums: dict[str, int] = {}
            for t in (int(x) for x in want.split(",") if x):
                rec = store.get(t)
                if rec is not None and len(rec) >= 8:
                    sums[str(t)] = int(formats.U64_LE.unpack_from(rec, len(rec) - 8)[0])
            out.update(opened=True, records=len(seen), bad=bad, problems=problems,
                       first_tx=seen[0] if seen else None,
                       last_tx=seen[-1] if seen else None, checksums=sums)
        finally:
            store.close()
    except (EngineError, ValueError, KeyError, TypeError) as exc:
        out["error"] = str(exc)
    print(json.dumps(out))


def lmdb_view(log_path: str, want: list[int] | None = None) -> LmdbView:
    """Run :func:`lmdb_view_child` in a child process and read its findings."""
    code = ("import sys; from engine.ops.repair import lmdb_view_child; "
            "lmdb_view_child(sys.argv[1], sys.argv[2])")
    arg = ",".join(map(str, want or []))
    # The child must import this very engine (not another one on its default path).
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (here, os.environ.get("PYTHONPATH", "")) if p))
    try:
        proc = subprocess.run([sys.executable, "-c", code, log_path, arg], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, check=False, env=env)
    except OSError as exc:
        raise StorageError(f"cannot start a child process to read {log_path}: {exc}") from exc
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = str(-proc.returncode)
        return LmdbView(opened=False, crashed=f"signal {name}")
    try:
        got = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return LmdbView(opened=False, crashed=f"exit status {proc.returncode}: {tail}")
    return LmdbView(
        opened=bool(got.get("opened")), error=got.get("error"), db_id=got.get("db_id"),
        epoch=got.get("epoch"), base_tx=got.get("base_tx"),
        base_position=got.get("base_position"), history=got.get("history"),
        first_tx=got.get("first_tx"), last_tx=got.get("last_tx"),
        records=int(got.get("records") or 0), bad=list(got.get("bad") or []),
        problems=list(got.get("problems") or []),
        checksums={int(k): int(v) for k, v in (got.get("checksums") or {}).items()})


# ------------------------------------------------------------------ the plan


@dataclass
class _Meta:
    """The damaged log's meta as far as it is known (None: not found)."""

    db_id: str | None = None
    db_id_from: str = ""
    epoch: int | None = None
    base_tx: int | None = None
    base_position: int | None = None
    history: tuple[EpochRecord, ...] | None = None
    notes: list[str] = field(default_factory=list)


def _one(name: str, values: list[bytes], ok: Callable[[bytes], bool], notes: list[str]
         ) -> bytes | None:
    good = [v for v in values if ok(v)]
    if len(good) > 1:
        notes.append(f"the meta entry {name!r} was found with {len(good)} different values; "
                     "none is trusted")
        return None
    return good[0] if good else None


def _is_uuid(v: bytes) -> bool:
    try:
        return len(v) == 36 and str(uuid.UUID(v.decode("ascii"))) == v.decode("ascii")
    except (UnicodeDecodeError, ValueError):
        return False


def _history(v: bytes) -> tuple[EpochRecord, ...] | None:
    try:
        raw = json.loads(v)
        if not isinstance(raw, list) or not raw:
            return None
        return tuple(EpochRecord.from_json(d) for d in raw)
    except (ValueError, KeyError, TypeError):
        return None


def _meta(raw: RawScan, view: LmdbView, notes: list[str]) -> _Meta:
    """The meta from LMDB's view when the child read it, else from the scanned bytes."""
    m = _Meta()
    if view.db_id and _is_uuid(view.db_id.encode()):
        m.db_id, m.db_id_from = view.db_id, "the log's meta (read by LMDB)"
        m.epoch, m.base_tx, m.base_position = view.epoch, view.base_tx, view.base_position
        if view.history:
            m.history = _history(json.dumps(view.history).encode())
        return m
    got = _one("db_id", raw.meta.get("db_id", []), _is_uuid, notes)
    if got is not None:
        m.db_id, m.db_id_from = got.decode("ascii"), "the log's meta (found in the raw bytes)"

    def u64(name: str) -> int | None:
        v = _one(name, raw.meta.get(name, []), lambda b: len(b) == 8, notes)
        return None if v is None else int(formats.U64_LE.unpack(v)[0])

    m.epoch, m.base_tx, m.base_position = u64("epoch"), u64("base_tx"), u64("base_position")
    h = _one("epoch_history", raw.meta.get("epoch_history", []),
             lambda b: _history(b) is not None, notes)
    m.history = _history(h) if h is not None else None
    return m


@dataclass
class _Start:
    """A starting point of the state: a snapshot, or tx 0 of a log that began there."""

    tx_id: int
    last_position: int
    snapshot: LoadedSnapshot | None


@dataclass
class _Choice:
    start: _Start
    records: list[FoundRecord]   # the fresh log's records, gap-free
    base_tx: int
    base_position: int
    state_tx: int                # the state after repair is at this tx


def _epoch_of(starts: list[tuple[int, int]], tx_id: int) -> int:
    """The epoch ``tx_id`` belongs to, given the history's sorted (first_tx, epoch)."""
    i = bisect_right(starts, (tx_id, 1 << 64)) - 1
    return starts[i][1] if i >= 0 else 0


def _synthesized(chosen: dict[int, FoundRecord]) -> tuple[EpochRecord, ...]:
    """An epoch history that fits the records, when no history could be read."""
    out: list[EpochRecord] = []
    for t in sorted(chosen):
        r = chosen[t]
        if not out or r.epoch > out[-1].epoch:
            out.append(EpochRecord(r.epoch, t, r.first_position, r.ts_ns / 1e9,
                                   "reconstructed by repair (the epoch history was unreadable)"))
    return tuple(out)


def _runs(chosen: dict[int, FoundRecord], history: tuple[EpochRecord, ...]
          ) -> tuple[list[list[FoundRecord]], list[FoundRecord]]:
    """Maximal gap-free runs (consecutive tx ids, positions continuing, each record's
    epoch the one the history gives its tx), and the records that fit no history."""
    runs: list[list[FoundRecord]] = []
    misfits: list[FoundRecord] = []
    starts = sorted((h.first_tx, h.epoch) for h in history)
    for t in sorted(chosen):
        r = chosen[t]
        if _epoch_of(starts, t) != r.epoch:
            misfits.append(r)
            continue
        last = runs[-1][-1] if runs else None
        if last is not None and last.tx_id + 1 == t and last.last_position + 1 == \
                r.first_position:
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs, misfits


def _choose(starts: list[_Start], runs: list[list[FoundRecord]]) -> _Choice | None:
    """The starting point whose run reaches furthest (then: the most records kept)."""
    best: _Choice | None = None
    containing = {r.tx_id: run for run in runs for r in run}
    for s in starts:
        run = containing.get(s.tx_id + 1)
        if run is not None and run[s.tx_id + 1 - run[0].tx_id].first_position == \
                s.last_position + 1:
            records = run
            end = run[-1].tx_id
        else:
            # Nothing continues the start: keep the run that ends exactly at it (its
            # history), if its positions agree.
            before = containing.get(s.tx_id)
            records = []
            if before is not None and before[-1].tx_id == s.tx_id and \
                    before[-1].last_position == s.last_position:
                records = before
            end = s.tx_id
        if records:
            base_tx, base_pos = records[0].tx_id - 1, records[0].first_position - 1
        else:
            base_tx, base_pos = s.tx_id, s.last_position
        c = _Choice(s, records, base_tx, base_pos, end)
        if best is None or (end, len(records)) > (best.state_tx, len(best.records)):
            best = c
    return best


def _ranges(txs: list[int]) -> Iterator[tuple[int, int]]:
    """Consecutive runs of sorted tx ids as (first, last)."""
    if not txs:
        return
    first = prev = txs[0]
    for t in txs[1:]:
        if t != prev + 1:
            yield first, prev
            first = t
        prev = t
    yield first, prev


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _pick(raw: RawScan, buf: bytearray, view: LmdbView, logp: str
          ) -> tuple[dict[int, FoundRecord], list[FoundRecord], list[dict[str, object]], int]:
    """One record per tx: identical copies count once; of different intact copies
    (a conflict) one is chosen. Returns (chosen, losing copies, conflicts, duplicates)."""
    copies: dict[int, list[FoundRecord]] = {}
    duplicates = 0
    for r in raw.records:
        alts = copies.setdefault(r.tx_id, [])
        same = next((a for a in alts if a.size == r.size and a.checksum == r.checksum
                     and buf[a.offset : a.offset + a.size] == buf[r.offset : r.offset + r.size]),
                    None)
        if same is None:
            alts.append(r)
        else:
            duplicates += 1
            if r.anchored and not same.anchored:
                alts[alts.index(same)] = r
    chosen: dict[int, FoundRecord] = {}
    conflicts: list[dict[str, object]] = []
    losers: list[FoundRecord] = []
    contested = sorted(t for t, alts in copies.items() if len(alts) > 1)
    live: dict[int, int] = {}
    if contested and view.opened:  # ask LMDB which copy its tree holds
        live = lmdb_view(logp, contested).checksums
    for t, alts in copies.items():
        # The copy LMDB's tree holds is the truth when the tree reads. Else: a copy
        # inside LMDB's structure beats one that is not (that may be bytes inside a
        # value); then the later write, since a tx id is written again only after
        # the earlier write of it was lost (an aborted LMDB transaction whose pages
        # had spilled, or a power cut with sync="none").
        alts.sort(key=lambda a: (live.get(t) == a.checksum, a.anchored, a.ts_ns, a.offset),
                  reverse=True)
        chosen[t] = alts[0]
        if len(alts) > 1:
            losers.extend(alts[1:])
            top = alts[0]
            why = ("the copy LMDB's tree holds" if live.get(t) == top.checksum else
                   "inside LMDB's structure" if top.anchored and not alts[1].anchored else
                   "the later write")
            conflicts.append({"tx_id": t, "kept": {"offset": top.offset,
                                                   "time": _iso(top.ts_ns / 1e9), "why": why},
                              "others": [{"offset": a.offset, "time": _iso(a.ts_ns / 1e9)}
                                         for a in alts[1:]]})
    return chosen, losers, conflicts, duplicates


def _gaps(present: list[int], lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """The ranges of ``lo..hi`` missing from the sorted ``present`` (never iterates
    over the whole range: a foreign record's tx id may be huge)."""
    nxt = lo
    for t in present:
        if t > hi:
            break
        if t > nxt:
            yield nxt, t - 1
        nxt = max(nxt, t + 1)
    if nxt <= hi:
        yield nxt, hi


def _lost(chosen: dict[int, FoundRecord], raw: RawScan, view: LmdbView, lo: int, hi: int,
          snap_tx: int) -> list[dict[str, object]]:
    """The tx ids in ``lo..hi`` with no intact copy, split at the snapshot, with what
    is known of each range."""
    claims = sorted(d.claims_tx for d in raw.damaged if d.claims_tx is not None)
    bad = sorted(view.bad)

    def within(xs: list[int], a: int, b: int) -> int:
        return bisect_right(xs, b) - bisect_right(xs, a - 1)

    lost: list[dict[str, object]] = []
    for t0, t1 in _gaps(sorted(chosen), lo, hi):
        # Split at the snapshot: what it covers is lost as history only.
        for a, b in ((t0, min(t1, snap_tx)), (max(t0, snap_tx + 1), t1)):
            if a > b:
                continue
            known: list[str] = []
            if b <= snap_tx:
                known.append("their effect is in the state (the snapshot holds it); only "
                             "the events' history is gone")
            if torn := within(claims, a, b):
                known.append(f"{torn} damaged copy(ies) claim these tx ids")
            if within(bad, a, b):
                known.append("LMDB still holds a record under these keys, but it fails its "
                             "checks")
            if not known:
                known.append("no copy of these records was found")
            lost.append({"first_tx": a, "last_tx": b, "count": b - a + 1,
                         "known": "; ".join(known)})
    return lost


def repair_log(path: str, *, dry_run: bool = False, force: bool = False,
               db_id: str | None = None, progress: Progress | None = None) -> RepairReport:
    """Rebuild the damaged log of ``path`` from its intact records (the caller holds
    the directory lock).

    Refuses (``EngineError``, nothing changed) when there is no log file, when the
    log is intact (unless ``force``), when the database id cannot be found (unless
    ``db_id`` gives it), and when no starting point exists (the records need a
    snapshot that no longer reads). Steps, each safe to repeat after a crash: build
    ``DIR/log.new``; write the salvage file and the report into ``DIR/log``; move
    ``DIR/log`` to ``DIR/aside/log-damaged-<stamp>``; rename ``DIR/log.new`` to
    ``DIR/log``.
    """
    logp = layout.log_dir(path)
    data_file = layout.log_data_file(logp)
    if not dry_run:
        # After a power cut the commit journal holds commits LMDB's file lacks: apply
        # them first (the caller holds the lock), or salvaging data.mdb alone would
        # drop every acknowledged commit since the last checkpoint.
        recover_journal(logp)
    elif os.path.isfile(data_file):
        _refuse_unrecovered = journal_pending(logp)
        if _refuse_unrecovered is not None:
            raise EngineError(f"{_refuse_unrecovered} A repair would apply them first; "
                              "the dry run changes nothing.")
    if not os.path.isfile(data_file):
        raise EngineError(f"no log to repair in {path}: {data_file} does not exist. "
                          "If the log is gone, run `engine-admin recover --new-epoch "
                          f"{path}` (docs/RUNBOOK.md, 'The log is gone').")
    notes: list[str] = []
    if progress:
        progress(0, 0, "LMDB check")
    view = lmdb_view(logp)
    if view.healthy and not force:
        raise EngineError(
            f"the log of {path} is intact ({view.describe()}); nothing to repair. "
            "`engine-admin verify` checks it; pass --force to rebuild it in a new epoch "
            "anyway (nothing is lost).")
    buf, unreadable = read_raw(data_file, (lambda d, t: progress(d, t, "read"))
                               if progress else None)
    raw = scan(buf, data_file, (lambda d, t: progress(d, t, "scan")) if progress else None)
    if unreadable:
        notes.append(f"{sum(b - a for a, b in unreadable)} bytes could not be read (I/O "
                     "errors) and were scanned as zeros")
    meta = _meta(raw, view, notes)

    # Snapshots: every valid one of this database, and every epoch any header knows.
    snaps: list[LoadedSnapshot] = []
    known_epochs: list[int] = []
    histories: list[tuple[EpochRecord, ...]] = []
    for pos, spath in list_snapshots(layout.snapshot_dir(path)):
        known_epochs.append(pos.epoch)
        try:
            header = read_header(spath)
            histories.append(header.history)
            known_epochs.extend(h.epoch for h in header.history)
            snaps.append(load_snapshot(spath))
        except EngineError as exc:
            notes.append(f"{os.path.basename(spath)} is not usable: {exc}")

    given = db_id
    if given is not None and not _is_uuid(given.encode()):
        raise EngineError(f"--db-id {given!r} is not a UUID like "
                          "c99006b6-255a-4ec8-82bd-9d1033a324e0")
    if meta.db_id is None:
        if given is not None:
            meta.db_id, meta.db_id_from = given, "--db-id"
        else:
            ids = {s.header.db_id for s in snaps}
            if len(ids) == 1:
                meta.db_id = ids.pop()
                meta.db_id_from = f"snapshot {os.path.basename(snaps[0].header.path)}"
            else:
                raise EngineError(
                    f"cannot repair {path}: the database id is not in the log's meta (its "
                    "page is damaged) and "
                    + ("no valid snapshot holds it" if not ids else
                       f"the snapshots disagree ({', '.join(sorted(ids))})")
                    + ". Nothing was changed. If you know the id (an earlier `engine-admin "
                    "status --json`, a backup's key prefix), run again with --db-id UUID.")
    elif given is not None and given != meta.db_id:
        raise EngineError(f"--db-id {given} differs from the id in the log's meta "
                          f"({meta.db_id}); nothing was changed. Leave --db-id out.")
    the_id = meta.db_id
    foreign = [s for s in snaps if s.header.db_id != the_id]
    for s in foreign:
        notes.append(f"{os.path.basename(s.header.path)} belongs to database "
                     f"{s.header.db_id}, not {the_id}: not used (move it out)")
    snaps = [s for s in snaps if s.header.db_id == the_id]

    chosen, losers, conflicts, duplicates = _pick(raw, buf, view, logp)
    # When LMDB reads the log, its last tx is where the committed log ends: an intact
    # record past it was never committed (an aborted or rolled-back write), and
    # replaying it would resurrect a write its caller was told had failed.
    lmdb_end: int | None = None
    if view.opened:
        lmdb_end = view.last_tx if view.last_tx is not None else (view.base_tx or 0)
    unreached = {t for t in chosen if lmdb_end is not None and t > lmdb_end}

    history = meta.history
    if history is None:
        heard = [h for h in histories if h]
        if heard:
            history = max(heard, key=lambda h: max(r.epoch for r in h))
            notes.append("the log's epoch history was not found: taken from the newest "
                         "snapshot header")
        else:
            history = _synthesized(chosen)
            if history:
                notes.append("the log's epoch history was not found anywhere: rebuilt "
                             "from the records' epochs")
    runs, misfits = _runs({t: r for t, r in chosen.items() if t not in unreached}, history)
    misfit_ids = {r.tx_id for r in misfits}
    for r in misfits:
        notes.append(f"tx {r.tx_id} carries epoch {r.epoch}, which the epoch history does "
                     "not give it: not replayed (kept in the salvage file)")

    starts: list[_Start] = []
    first_found = min(chosen) if chosen else None
    if meta.base_tx == 0 or (meta.base_tx is None and first_found == 1
                             and chosen[1].first_position == 1):
        starts.append(_Start(0, 0, None))
    for s in snaps:
        if history and not in_history(s.header.position, history):
            notes.append(f"{os.path.basename(s.header.path)} is off the log's timeline: "
                         "not used")
            continue
        starts.append(_Start(s.header.tx_id, s.header.last_position, s))
    choice = _choose(starts, runs)
    if choice is None:
        have = (f"the intact records start at tx {first_found}" if first_found
                else "no intact record was found")
        raise EngineError(
            f"cannot repair {path}: {have}, the log's base is "
            f"{'unknown' if meta.base_tx is None else f'tx {meta.base_tx}'}, and no valid "
            "snapshot covers the transactions before them, so no state can be rebuilt. "
            "Nothing was changed. Restore the snapshots (or the whole database) from a "
            "backup.")

    kept = choice.records
    kept_ids = {r.tx_id for r in kept}
    state_tx = choice.state_tx
    last_pos = kept[-1].last_position if kept else choice.base_position
    epochs = [r.epoch for r in raw.records] + [h.epoch for h in history] + known_epochs
    epochs += [e for e in (meta.epoch, view.epoch) if isinstance(e, int)]
    new_epoch = max(epochs, default=0) + 1
    new_history = [h for h in history if h.first_tx <= state_tx and h.epoch < new_epoch]
    reason = (f"{REASON} (txs {kept[0].tx_id}..{kept[-1].tx_id} kept)" if kept
              else f"{REASON} (no record kept)")
    new_history.append(EpochRecord(new_epoch, state_tx + 1, last_pos + 1, time.time(),
                                   reason.encode()[: formats.MAX_REASON_BYTES]
                                   .decode("utf-8", "ignore")))

    # Kept outside the log: every other intact record, each with why.
    snap_tx = choice.start.tx_id
    outside_recs = sorted([r for t, r in chosen.items() if t not in kept_ids] + losers,
                          key=lambda r: (r.tx_id, r.ts_ns))
    lo = (meta.base_tx + 1) if meta.base_tx is not None else min(
        [t for t in (first_found, snap_tx + 1) if t is not None])
    hi = max(max(chosen, default=0), view.last_tx or 0, state_tx)
    lost = _lost(chosen, raw, view, lo, hi, snap_tx)
    last_found = max(chosen, default=0)
    if view.opened and view.last_tx is not None:
        lost_after = f"nothing after tx {view.last_tx}: LMDB's own view ends there"
    else:
        lost_after = (f"unknown: no intact record after tx {last_found} was found; any "
                      "later transaction is lost")
        if any(d.claims_tx == last_found + 1 for d in raw.damaged):
            lost_after += f" (a damaged copy claims tx {last_found + 1})"
    def why_outside(t: int) -> str:
        if t in unreached:
            return (f"past tx {lmdb_end}, where the log LMDB reads ends: never committed "
                    "(an aborted or rolled-back write), not replayed")
        if t in misfit_ids:
            return "their epoch does not fit the epoch history: not replayed"
        if t <= choice.base_tx:
            return ("before the kept log starts (history only: the snapshot's state holds "
                    "their effect)" if t <= snap_tx else "before the kept log starts")
        # The kept run ends at state_tx because tx state_tx + 1 is missing, damaged or
        # does not continue it: everything later is past that break.
        return f"after a gap at tx {state_tx + 1}: they cannot be replayed onto the state"

    outside: list[dict[str, object]] = []
    by_why: dict[str, list[int]] = {}
    for t in sorted({r.tx_id for r in outside_recs if r.tx_id not in kept_ids}):
        by_why.setdefault(why_outside(t), []).append(t)
    for why, txs in by_why.items():
        for a, b in _ranges(txs):
            outside.append({"first_tx": a, "last_tx": b, "count": b - a + 1, "why": why})
    outside.sort(key=lambda o: (int(str(o["first_tx"])), str(o["why"])))
    if losers:
        outside.append({"first_tx": min(r.tx_id for r in losers),
                        "last_tx": max(r.tx_id for r in losers), "count": len(losers),
                        "why": "conflicting copies of tx ids (not used; see conflicts)"})
    # LMDB's complaints about single records are in `lost`; the others are told here.
    other = [p for p in view.problems if not p.startswith("log record for tx")]
    notes.extend(other[:_PROBLEMS_SHOWN])
    if view.healthy:
        notes.append("forced on an intact log: every record is kept, in a new epoch")

    moved = set_aside_dir(path, f"log-damaged-epoch{meta.epoch or view.epoch or 0}")
    report = RepairReport(
        path=path, dry_run=dry_run, db_id=the_id, db_id_from=meta.db_id_from,
        data_file=data_file, file_bytes=raw.size, lmdb=view.describe(),
        found={"candidates": len(raw.records) + len(raw.damaged),
               "intact_copies": len(raw.records), "records": len(chosen),
               "duplicates": duplicates, "conflicts": len(conflicts),
               "damaged_copies": len(raw.damaged),
               "outside_lmdb_structure": sum(1 for r in chosen.values() if not r.anchored)},
        log_before={"epoch": meta.epoch, "base_tx": meta.base_tx,
                    "base_position": meta.base_position,
                    "first_tx": first_found, "last_tx": last_found or None},
        snapshot=choice.start.snapshot.header.path if choice.start.snapshot else None,
        state_tx=state_tx,
        kept={"first_tx": kept[0].tx_id if kept else None,
              "last_tx": kept[-1].tx_id if kept else None, "count": len(kept),
              "events": sum(r.count for r in kept),
              "first_position": kept[0].first_position if kept else None,
              "last_position": kept[-1].last_position if kept else None,
              "base_tx": choice.base_tx, "base_position": choice.base_position},
        outside=outside, lost=lost, lost_after=lost_after, conflicts=conflicts,
        new_epoch=new_epoch, next_tx=state_tx + 1, moved_to=moved,
        salvage_file=os.path.join(moved, SALVAGE_FILE) if outside_recs else None,
        unreadable=[[a, b] for a, b in unreadable], notes=notes, forced=view.healthy,
    )  # fmt: skip
    if dry_run:
        return report
    _build(path, report, buf, kept, outside_recs, new_history, progress)
    return report


def _build(path: str, report: RepairReport, buf: bytearray, kept: list[FoundRecord],
           outside: list[FoundRecord], history: list[EpochRecord],
           progress: Progress | None) -> None:
    logp = layout.log_dir(path)
    staging = layout.log_staging_dir(path)
    files = fs()
    assert report.moved_to is not None
    try:
        if os.path.exists(staging):
            shutil.rmtree(staging)  # a half-made log of an interrupted run
        # 1. the fresh log, whole and synced, while DIR/log is still the damaged one
        store = LogStore(staging, sync="none")
        try:
            store.initialise(report.db_id, report.new_epoch, int(report.kept["base_tx"] or 0),
                             int(report.kept["base_position"] or 0), history)
            done = 0
            for i in range(0, len(kept), APPEND_BATCH):
                batch = kept[i : i + APPEND_BATCH]
                store.append([(r.tx_id, bytes(buf[r.offset : r.offset + r.size]))
                              for r in batch])
                done += len(batch)
                if progress:
                    progress(done, len(kept), "write")
            store.sync()
        finally:
            store.close()
        files.fsync_dir(staging)
        # 2. what did not go into it, and the report, kept with the damaged log
        if outside:
            final = os.path.join(logp, SALVAGE_FILE)
            files.write_atomic(final, final + ".tmp", salvage_chunks(buf, outside))
        final = os.path.join(logp, REPORT_FILE)
        files.write_atomic(final, final + ".tmp",
                           [json.dumps(report.to_json(), indent=2).encode()])
        # 3. the damaged log aside (never deleted), 4. the fresh one into place
        files.makedirs(os.path.dirname(report.moved_to))
        files.move_durably(logp, report.moved_to)
        files.move_durably(staging, logp)
    except OSError as exc:  # StorageError is one too
        if os.path.isfile(layout.log_data_file(logp)):  # failed before the renames
            shutil.rmtree(staging, ignore_errors=True)
            what = ("nothing was changed (the damaged log is where it was); fix the cause "
                    "and run the same command again")
        else:
            what = (f"the damaged log is in {report.moved_to} and {staging} holds the "
                    f"repaired log: rename it to {logp}")
        raise StorageError(f"repair of {path} failed: {exc}. Nothing was deleted: "
                           f"{what}.") from exc

