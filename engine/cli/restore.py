"""``engine-admin restore --from URL DIR``: rebuild a database from a full or log backup."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

import click

from ..errors import EngineError, InvalidEventError
from .app import emit, err, fail, json_option, lit, main, out, progress_display

if TYPE_CHECKING:
    from ..backup.full import FullRestoreReport
    from ..backup.restore import RestoreReport


def parse_time(text: str) -> float:
    """An ISO 8601 time (a zone is required, or ``Z``) as Unix seconds."""
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEventError(f"--to-time {text!r} is not an ISO 8601 time, e.g. "
                                "2026-12-01T07:30:00Z") from None
    if t.tzinfo is None:
        raise InvalidEventError(f"--to-time {text!r} has no time zone; add Z for UTC or an "
                                "offset such as +01:00")
    return t.timestamp()


@main.command("restore")
@click.option("--from", "source", required=True, metavar="URL", help="The backup target.")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--to-tx", type=int, help="Stop after this transaction.")
@click.option("--to-time", help="Stop after the last tx committed at or before this time.")
@click.option("--db-id", help="The database to restore when the target holds several.")
@click.option("--backup", "backup_id", metavar="ID|latest",
              help="Restore this full backup (then replay the log backup past it for "
                   "--to-tx/--to-time); without it, restore from the log backup alone.")
@click.option("--fallback", is_flag=True,
              help="With --backup: if it is broken, use the newest earlier complete one.")
@click.option("--retries", type=click.IntRange(min=0), default=None,
              help="Retries of each file part after its first try (default 7).")
@click.option("--backoff-max", type=click.FloatRange(min=0), default=None,
              help="Longest wait between two tries, seconds (default 5; full jitter).")
@click.option("--fault-rate", type=click.FloatRange(0.0, 1.0), default=None,
              help="Drill: fail this fraction of target calls transiently (1.0: every call).")
@click.option("--fault-seed", type=int, default=0, show_default=True,
              help="Seed of --fault-rate.")
@json_option
def restore_command(source: str, directory: str, to_tx: int | None, to_time: str | None,
                    db_id: str | None, backup_id: str | None, fallback: bool,
                    retries: int | None, backoff_max: float | None, fault_rate: float | None,
                    fault_seed: int, as_json: bool) -> None:
    """Restore a database from a full backup or a log backup into a new directory
    (it opens a new epoch)."""
    try:
        when = parse_time(to_time) if to_time is not None else None
        if backup_id is None and (fallback or fault_rate is not None or retries is not None
                                  or backoff_max is not None):
            raise InvalidEventError("--fallback, --retries, --backoff-max and --fault-rate "
                                    "apply to a full backup: give --backup ID|latest")
        with progress_display(as_json) as progress:
            task = progress.add_task("restore", total=None)

            def step(done: int, total: int, what: str) -> None:
                progress.update(task, completed=done, total=total, description=what)

            if backup_id is not None:
                from ..backup.full import restore_full  # imported only when used

                full = restore_full(source, directory, backup=backup_id, to_tx=to_tx,
                                    to_time=when, db_id=db_id, fallback=fallback,
                                    retries=retries, backoff_max=backoff_max, progress=step,
                                    fault_rate=fault_rate, fault_seed=fault_seed)
                emit(as_json, full.to_json(), lambda: render_full(full))
                return
            from ..backup.restore import restore  # obstore only when a command needs it

            report = restore(source, directory, to_tx=to_tx, to_time=when, db_id=db_id,
                             progress=step)
    except EngineError as exc:
        fail(as_json, exc)
    emit(as_json, report.to_json(), lambda: render(report))


def render_full(r: FullRestoreReport) -> None:
    for note in r.notes:
        err.print(f"[yellow]warning:[/] {lit(note)}", highlight=False)
    out.print(f"[green]restored[/] {lit(r.path)} from full backup {lit(r.backup_id)} in "
              f"{lit(r.target)}",
              highlight=False)
    out.print(f"  database {lit(r.db_id)}: backup at epoch {lit(r.backup_epoch)} tx "
              f"{lit(r.backup_tx)}; "
              f"restored to tx {lit(r.last_tx)} ({lit(r.segments)} log segment(s) replayed)",
              highlight=False)
    out.print(f"  {lit(r.bytes)} bytes verified, {lit(r.retry_attempts)} retries, "
              f"{r.seconds:.2f} s",
              highlight=False)
    out.print(f"  the restored database is a fork: its next tx opens epoch {lit(r.new_epoch)}",
              highlight=False)


def render(r: RestoreReport) -> None:
    when = ("" if r.last_time is None else
            f", committed {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(r.last_time))}")
    out.print(f"[green]restored[/] {lit(r.path)} from {lit(r.target)}", highlight=False)
    out.print(f"  database {lit(r.db_id)}, newest epoch {lit(r.restored_epoch)} (epochs "
              f"{lit(', '.join(map(str, r.epochs)))} on its lineage)", highlight=False)
    out.print(f"  txs {lit(r.first_tx)}..{lit(r.last_tx)}{lit(when)}; {lit(r.segments)} "
              f"segment(s) verified, "
              f"{r.seconds:.2f} s", highlight=False)
    out.print(f"  the restored database is a fork: its next tx opens epoch {lit(r.new_epoch)}",
              highlight=False)
