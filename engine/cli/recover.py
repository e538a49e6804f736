"""``engine-admin recover --new-epoch DIR``."""

from __future__ import annotations

import os

import click

from ..database import Database
from ..errors import EngineError
from ..ops.recover import RecoveryReport, recover_new_epoch
from .app import (
    directory_argument,
    emit,
    fail,
    json_option,
    lit,
    locked,
    main,
    out,
    printable,
    require_database,
)


@main.command()
@directory_argument
@click.option("--new-epoch", is_flag=True, required=True,
              help="Rebuild the log from the newest valid snapshot in a new epoch.")
@click.option("--dry-run", is_flag=True, help="Show what would be done; change nothing.")
@click.option("--force", is_flag=True,
              help="Start a new epoch even on a healthy database (snapshots first: no loss).")
@click.option("--from-backup", "from_backup", metavar="URL",
              help="Also replay what this log backup holds past the snapshot (and the "
                   "history before it), so only what was never shipped is lost.")
@json_option
def recover(directory: str, new_epoch: bool, dry_run: bool, force: bool,
            from_backup: str | None, as_json: bool) -> None:
    """Recover a database whose log is lost, gapped, stale or of an older epoch."""
    path = require_database(directory, as_json)
    try:
        with locked(path) as lock:

            def snapshot_first() -> None:
                with Database(path, create=False, _held_lock=lock) as db:
                    db.snapshot()

            tail = None
            if from_backup:
                from ..backup.recover import backup_tail  # obstore only when asked for

                tail = backup_tail(from_backup)
            report = recover_new_epoch(path, dry_run=dry_run, force=force,
                                       snapshot_first=snapshot_first, tail=tail)
    except EngineError as exc:
        fail(as_json, exc)
    emit(as_json, {"ok": True, **report.to_json()}, lambda: render(report))


def render(report: RecoveryReport) -> None:
    dry_run = report.dry_run
    head = "[yellow]dry run[/]: would recover" if dry_run else "[green]recovered[/]"
    out.print(f"{head} {lit(report.path)}")
    out.print(f"  kept:      snapshot {lit(os.path.basename(report.snapshot))} "
              f"(epoch {lit(report.snapshot_position.epoch)}, tx "
              f"{lit(report.snapshot_position.tx_id)}, "
              f"{lit(report.streams)} streams)")
    out.print(f"  log found: {lit(report.log_found)}")
    if report.log_moved_to:
        verb = "would move" if dry_run else "moved"
        out.print(f"  old log:   {verb} aside to {printable(report.log_moved_to)}", markup=False)
    out.print(f"  new epoch: {lit(report.new_epoch)}, next tx {lit(report.next_tx)}")
    out.print(f"  lost:      {printable(report.lost)}", markup=False, highlight=False)
    for n in report.notes:
        out.print(f"  note:      {printable(n)}", markup=False, highlight=False)
