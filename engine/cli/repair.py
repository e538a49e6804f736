"""``engine-admin repair DIR``: salvage the intact records of a damaged log."""

from __future__ import annotations

import os

import click

from .. import layout
from ..errors import EngineError
from ..ops.repair import RepairReport, repair_log
from .app import (
    directory_argument,
    emit,
    fail,
    json_option,
    locked,
    main,
    out,
    progress_display,
    require_dir,
)


@main.command()
@directory_argument
@click.option("--dry-run", is_flag=True, help="Show what would be kept and lost; change nothing.")
@click.option("--force", is_flag=True,
              help="Rebuild the log in a new epoch even if it is intact (nothing is lost).")
@click.option("--db-id", "db_id", metavar="UUID",
              help="The database id, when neither the log's meta nor a snapshot holds it.")
@json_option
def repair(directory: str, dry_run: bool, force: bool, db_id: str | None,
           as_json: bool) -> None:
    """Rebuild a damaged log from its intact records (new epoch; the old log is set aside)."""
    path = require_dir(directory, as_json)
    # Checked before the lock: a directory without a log gets no LOCK file either.
    if not os.path.isfile(layout.log_data_file(layout.log_dir(path))):
        fail(as_json, EngineError(
            f"no database log in {path} (no log/data.mdb): nothing to repair"
            + (f"; {layout.log_staging_dir(path)} exists: an interrupted repair or "
               "recovery left it (rename it to log/ if it is whole)"
               if os.path.isdir(layout.log_staging_dir(path)) else "")))
    try:
        with locked(path), progress_display(as_json) as progress:
            task = progress.add_task("LMDB check", total=None)

            def step(done: int, total: int, phase: str) -> None:
                progress.update(task, description=phase, completed=done,
                                total=total or None)

            report = repair_log(path, dry_run=dry_run, force=force, db_id=db_id,
                                progress=step)
    except EngineError as exc:
        fail(as_json, exc)
    emit(as_json, {"ok": True, **report.to_json()}, lambda: render(report))


def _span(first: object, last: object) -> str:
    return f"tx {first}" if first == last else f"txs {first}..{last}"


def render(report: RepairReport) -> None:
    dry = report.dry_run
    head = "[yellow]dry run[/]: would repair" if dry else "[green]repaired[/]"
    out.print(f"{head} {report.path} (database {report.db_id}, from {report.db_id_from})",
              highlight=False)
    f = report.found
    out.print(f"  scanned:   {report.data_file} ({report.file_bytes} bytes): "
              f"{f['records']} intact record(s), {f['duplicates']} duplicate copy(ies), "
              f"{f['damaged_copies']} damaged copy(ies), {f['conflicts']} conflict(s)",
              markup=False, highlight=False)
    out.print(f"  lmdb:      {report.lmdb}", markup=False, highlight=False)
    k = report.kept
    if k["count"]:
        out.print(f"  kept:      {_span(k['first_tx'], k['last_tx'])} in the log "
                  f"({k['count']} records, {k['events']} events, positions "
                  f"{k['first_position']}..{k['last_position']})", highlight=False)
    else:
        out.print("  kept:      no record in the log", highlight=False)
    if report.snapshot:
        out.print(f"  state:     snapshot {os.path.basename(report.snapshot)} plus the log, "
                  f"up to tx {report.state_tx}", markup=False, highlight=False)
    else:
        out.print(f"  state:     the log from tx 1, up to tx {report.state_tx}",
                  highlight=False)
    for o in report.outside:
        out.print(f"  outside:   {_span(o['first_tx'], o['last_tx'])} ({o['count']}): "
                  f"{o['why']}", markup=False, highlight=False)
    if report.salvage_file:
        verb = "would be written to" if dry else "written to"
        out.print(f"             {verb} {report.salvage_file}", markup=False, highlight=False)
    for lost in report.lost:
        out.print(f"  lost:      {_span(lost['first_tx'], lost['last_tx'])} "
                  f"({lost['count']}): {lost['known']}", markup=False, highlight=False)
    if report.lost_after:
        out.print(f"  after:     {report.lost_after}", markup=False, highlight=False)
    for c in report.conflicts:
        out.print(f"  conflict:  tx {c['tx_id']}: kept the copy at {c['kept']}, not "
                  f"{c['others']}", markup=False, highlight=False)
    verb = "would move" if dry else "moved"
    out.print(f"  old log:   {verb} aside to {report.moved_to}", markup=False, highlight=False)
    out.print(f"  new epoch: {report.new_epoch}, next tx {report.next_tx}", highlight=False)
    for n in report.notes:
        out.print(f"  note:      {n}", markup=False, highlight=False)
