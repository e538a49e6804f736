"""``engine-admin``: operate a database directory from the shell.

Every command works on a closed database directory (it takes the directory lock,
so it refuses politely while a process has the database open), prints a
readable report on a terminal, prints one JSON object with ``--json``, and exits
non-zero on failure: 1 when the command ran and found a problem or was refused,
2 for usage errors. Long work (verify) shows a progress bar on a terminal.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from .database import Database
from .errors import CorruptLogError, CorruptSnapshotError, EngineError, RecoveryRequired
from .lock import DirLock
from .log import LogStore
from .native import decode_tx
from .recovery import log_dir, plan_open, recover_new_epoch, snap_dir
from .snapshot import list_snapshots, load_snapshot, read_header

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _emit(as_json: bool, payload: dict[str, Any], render: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        render()


def _fail(as_json: bool, exc: BaseException, code: int = 1) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"ok": False, "error": type(exc).__name__, "message": str(exc)}))
    else:
        err.print(f"[bold red]error:[/] {type(exc).__name__}", highlight=False)
        err.print(str(exc), markup=False, highlight=False)
    sys.exit(code)


def _require_dir(path: str, as_json: bool) -> str:
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        _fail(as_json, EngineError(f"{path} is not a directory; give the database directory"))
    return path


@contextmanager
def _locked(path: str) -> Iterator[DirLock]:
    lock = DirLock(path)
    try:
        yield lock
    finally:
        lock.release()


def _value_repr(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        text = data.decode("utf-8")
        if text.isprintable():
            return text
    except UnicodeDecodeError:
        pass
    return {"base64": base64.b64encode(data).decode()}


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="engine")
def main() -> None:
    """Operate an engine database directory (status, verify, snapshot, inspect, recover)."""


# ------------------------------------------------------------------ status
@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@json_option
def status(directory: str, as_json: bool) -> None:
    """Health, positions, epoch history and files of a database."""
    path = _require_dir(directory, as_json)
    try:
        with _locked(path):
            info = LogStore.probe(log_dir(path))
            snaps = []
            for pos, spath in list_snapshots(snap_dir(path)):
                try:
                    h = read_header(spath)
                    snaps.append({"file": os.path.basename(spath), "epoch": pos.epoch,
                                  "tx_id": pos.tx_id, "streams": h.stream_count,
                                  "bytes": h.file_bytes, "ok": True})
                except EngineError as exc:
                    snaps.append({"file": os.path.basename(spath), "epoch": pos.epoch,
                                  "tx_id": pos.tx_id, "ok": False, "error": str(exc)})
            verdict, problem = "ok", None
            try:
                plan = plan_open(path, create=False)
                if plan.warnings:
                    verdict = "degraded"
                    problem = "; ".join(plan.warnings)
            except RecoveryRequired as exc:
                verdict, problem = "recovery required", str(exc)
            except EngineError as exc:
                verdict, problem = "error", str(exc)
    except EngineError as exc:
        _fail(as_json, exc)
    history = [h.to_json() for h in info.history]
    payload = {
        "ok": verdict == "ok", "path": path, "verdict": verdict, "problem": problem,
        "db_id": info.db_id, "epoch": info.epoch if info.exists else None,
        "log": {"exists": info.exists, "first_tx": info.first_tx, "last_tx": info.last_tx,
                "base_tx": info.base_tx, "last_position": info.last_position},
        "snapshots": snaps, "epoch_history": history,
    }

    def render() -> None:
        colour = {"ok": "green", "degraded": "yellow"}.get(verdict, "red")
        out.print(f"[bold]{path}[/]  [{colour}]{verdict}[/]")
        out.print(f"db_id  {info.db_id or '-'}")
        out.print(f"log    {info.describe()}")
        if info.exists:
            out.print(f"       last position {info.last_position}")
        t = Table("epoch", "first tx", "first position", "started", "reason", title="epochs")
        for h in info.history:
            t.add_row(str(h.epoch), str(h.first_tx), str(h.first_position),
                      time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(h.time)), h.reason)
        if info.history:
            out.print(t)
        t = Table("file", "epoch", "tx", "streams", "bytes", "ok", title="snapshots")
        for s in snaps:
            t.add_row(str(s["file"]), str(s["epoch"]), str(s["tx_id"]), str(s.get("streams", "-")),
                      str(s.get("bytes", "-")), "yes" if s["ok"] else "[red]CORRUPT[/]")
        out.print(t)
        if problem:
            out.print(problem, markup=False, highlight=False)

    _emit(as_json, payload, render)
    if verdict not in ("ok", "degraded"):
        sys.exit(1)


# ------------------------------------------------------------------ verify
def verify_directory(path: str, progress: Progress | None = None) -> dict[str, Any]:
    """Check every snapshot and every log record; returns a report (``ok`` False if any failed)."""
    problems: list[str] = []
    checked_snaps = 0
    for _pos, spath in list_snapshots(snap_dir(path)):
        try:
            load_snapshot(spath)
            checked_snaps += 1
        except (CorruptSnapshotError, EngineError) as exc:
            problems.append(str(exc))
    info = LogStore.probe(log_dir(path))
    records = 0
    if info.exists:
        store = LogStore(log_dir(path), readonly=True)
        try:
            total = store.count()
            task = progress.add_task("log records", total=total) if progress else None
            expect_tx = info.base_tx + 1
            expect_pos = info.base_position + 1
            for tx_id, rec in store.iter_range(1):
                records += 1
                if progress is not None and task is not None and records % 512 == 0:
                    progress.update(task, completed=records)
                try:
                    cols = decode_tx(rec)
                except CorruptLogError as exc:
                    problems.append(f"log record tx {tx_id}: {exc}")
                    expect_tx = tx_id + 1
                    continue
                if cols.tx_id != tx_id or cols.epoch != info.epoch:
                    problems.append(f"log record under key {tx_id} holds tx {cols.tx_id} of "
                                    f"epoch {cols.epoch} (log epoch {info.epoch})")
                elif tx_id != expect_tx:
                    problems.append(f"log gap: expected tx {expect_tx}, found {tx_id}")
                elif cols.first_position != expect_pos:
                    problems.append(f"tx {tx_id}: first position {cols.first_position}, "
                                    f"expected {expect_pos}")
                expect_tx = tx_id + 1
                expect_pos = cols.first_position + len(cols.streams)
            if progress is not None and task is not None:
                progress.update(task, completed=total)
        finally:
            store.close()
    return {"ok": not problems, "path": path, "snapshots_ok": checked_snaps,
            "log_records": records, "problems": problems}


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@json_option
def verify(directory: str, as_json: bool) -> None:
    """Check every snapshot and log checksum; exit 1 naming what is corrupt."""
    path = _require_dir(directory, as_json)
    try:
        with _locked(path), Progress(console=err, disable=as_json or not err.is_terminal,
                      transient=True) as progress:
            report = verify_directory(path, progress)
    except EngineError as exc:
        _fail(as_json, exc)

    def render() -> None:
        if report["ok"]:
            out.print(f"[green]ok[/]: {report['snapshots_ok']} snapshot(s) and "
                      f"{report['log_records']} log record(s) verified")
        else:
            err.print(f"[red]{len(report['problems'])} problem(s)[/] in {path}:")
            for p in report["problems"]:
                err.print(f"  - {p}", markup=False, highlight=False)

    _emit(as_json, report, render)
    if not report["ok"]:
        sys.exit(1)


# ---------------------------------------------------------------- snapshot
@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@json_option
def snapshot(directory: str, as_json: bool) -> None:
    """Open the database, write a snapshot of its current state, close."""
    path = _require_dir(directory, as_json)
    try:
        with Database(path, create=False) as db:
            info = db.snapshot()
    except EngineError as exc:
        _fail(as_json, exc)
    payload = {"ok": True, "path": info.path, "epoch": info.epoch, "tx_id": info.tx_id,
               "streams": info.streams, "bytes": info.bytes}
    _emit(as_json, payload, lambda: out.print(
        f"snapshot {info.path}: epoch {info.epoch}, tx {info.tx_id}, {info.streams} streams, "
        f"{info.bytes} bytes"))


# ----------------------------------------------------------------- inspect
@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--tx", "tx_id", type=int, help="Show this transaction's events.")
@click.option("--stream", help="Show this stream's state and events.")
@json_option
def inspect(directory: str, tx_id: int | None, stream: str | None, as_json: bool) -> None:
    """Show one transaction (--tx N) or one stream (--stream NAME)."""
    path = _require_dir(directory, as_json)
    if tx_id is None and stream is None:
        _fail(as_json, EngineError("give --tx N or --stream NAME"), 2)
    try:
        with Database(path, create=False) as db:
            if tx_id is not None:
                txs = list(db.read_log(tx_id, tx_id))
                if not txs:
                    raise EngineError(f"no tx {tx_id} in {path} (last committed: "
                                      f"{db.position.tx_id})")
                t = txs[0]
                payload: dict[str, Any] = {
                    "ok": True, "tx_id": t.tx_id, "epoch": t.epoch, "ts": t.ts,
                    "events": [{"stream": e.stream, "version": e.version, "type": e.type,
                                "position": e.position, "data": _value_repr(e.data)}
                               for e in t.events]}
            else:
                assert stream is not None
                payload = {"ok": True, "stream": stream, "version": db.version(stream),
                           "value": _value_repr(db.get(stream)),
                           "events": [{"version": e.version, "type": e.type, "tx_id": e.tx_id,
                                       "position": e.position, "data": _value_repr(e.data)}
                                      for e in db.read_stream(stream)]}
    except EngineError as exc:
        _fail(as_json, exc)

    def render() -> None:
        if tx_id is not None:
            out.print(f"tx {payload['tx_id']} (epoch {payload['epoch']}, "
                      f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(payload['ts']))})")
        else:
            out.print(f"stream {stream!r}: version {payload['version']}, value "
                      f"{payload['value']!r}")
        t = Table(*[k for k in payload["events"][0]] if payload["events"] else ["(no events)"])
        for e in payload["events"]:
            t.add_row(*[str(v) for v in e.values()])
        out.print(t)

    _emit(as_json, payload, render)


# ----------------------------------------------------------------- recover
@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--new-epoch", is_flag=True, required=True,
              help="Rebuild the log from the newest valid snapshot in a new epoch.")
@click.option("--dry-run", is_flag=True, help="Show what would be done; change nothing.")
@click.option("--force", is_flag=True,
              help="Start a new epoch even on a healthy database (snapshots first: no loss).")
@json_option
def recover(directory: str, new_epoch: bool, dry_run: bool, force: bool, as_json: bool) -> None:
    """Recover a database whose log is lost, gapped, stale or of an older epoch."""
    path = _require_dir(directory, as_json)

    try:
        with _locked(path) as lock:

            def snapshot_first() -> None:
                with Database(path, create=False, _held_lock=lock) as db:
                    db.snapshot()

            report = recover_new_epoch(path, dry_run=dry_run, force=force,
                                       snapshot_first=snapshot_first)
    except EngineError as exc:
        _fail(as_json, exc)
    payload = {"ok": True, **report.to_json()}

    def render() -> None:
        head = "[yellow]dry run[/]: would recover" if dry_run else "[green]recovered[/]"
        out.print(f"{head} {path}")
        out.print(f"  kept:      snapshot {os.path.basename(report.snapshot)} "
                  f"(epoch {report.snapshot_position.epoch}, tx {report.snapshot_position.tx_id}, "
                  f"{report.streams} streams)")
        out.print(f"  log found: {report.log_found}")
        if report.log_moved_to:
            verb = "would move" if dry_run else "moved"
            out.print(f"  old log:   {verb} aside to {report.log_moved_to}", markup=False)
        out.print(f"  new epoch: {report.new_epoch}, next tx {report.next_tx}")
        out.print(f"  lost:      {report.lost}", markup=False, highlight=False)
        for n in report.notes:
            out.print(f"  note:      {n}", markup=False, highlight=False)

    _emit(as_json, payload, render)


# -------------------------------------------------------------------- demo
@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--events", default=10_000, show_default=True, help="Events to write.")
@click.option("--force", is_flag=True, help="Write demo events into a non-empty directory.")
@json_option
def demo(directory: str, events: int, force: bool, as_json: bool) -> None:
    """The main job end to end: write events, snapshot, reopen, show the state."""
    path = os.path.abspath(directory)
    if os.path.isdir(path) and os.listdir(path) and not force:
        _fail(as_json, EngineError(
            f"{path} is not empty; the demo writes sample events and would add them to "
            "whatever database is there. Give a new directory (or --force)."))
    t0 = time.perf_counter()
    try:
        with Database(path, sync="group") as db:
            start = db.position.tx_id
            accounts = [f"account-{i}" for i in range(100)]
            per_tx = 100
            for base in range(0, events, per_tx):
                with db.transaction() as tx:
                    tx.extend((accounts[(base + i) % 100], "deposited",
                               str(base + i).encode()) for i in range(min(per_tx, events - base)))
            db.append("account-0", "closed", b"closed")
            db.append("account-1", "delete", b"")
            written = db.position.tx_id - start
            snap = db.snapshot()
            db.append("account-2", "renamed", b"tail event after the snapshot")
        t_write = time.perf_counter() - t0
        t1 = time.perf_counter()
        with Database(path, create=False) as db:
            t_open = time.perf_counter() - t1
            sample = {s: _value_repr(db.get(s)) for s in ("account-0", "account-1", "account-2")}
            versions = {s: db.version(s) for s in ("account-0", "account-1", "account-2")}
            pos = db.position
            n_streams = sum(1 for _ in db.streams())
    except EngineError as exc:
        _fail(as_json, exc)
    payload = {"ok": True, "path": path, "transactions_written": written + 1,
               "events_written": events + 3, "snapshot": snap.path,
               "snapshot_tx": snap.tx_id, "position": {"epoch": pos.epoch, "tx_id": pos.tx_id},
               "streams": n_streams, "sample_state": sample, "sample_versions": versions,
               "write_seconds": round(t_write, 3), "reopen_seconds": round(t_open, 4)}

    def render() -> None:
        out.print(f"[bold]engine demo[/] in {path}")
        out.print(f"  wrote {events + 3} events in {written + 1} transactions "
                  f"({t_write:.2f} s, sync=group)")
        out.print(f"  snapshot at tx {snap.tx_id}: {snap.path}")
        out.print(f"  reopened in {t_open * 1000:.1f} ms (snapshot + 1 tail tx replayed); "
                  f"position {pos}")
        t = Table("stream", "version", "value")
        for s, v in sample.items():
            t.add_row(s, str(versions[s]), repr(v))
        out.print(t)
        out.print(f"  {n_streams} streams in the state. Try: engine-admin status {path}")

    _emit(as_json, payload, render)


if __name__ == "__main__":  # pragma: no cover
    main()
