"""``engine-admin backup full|list|verify|prune``: full backups in a target."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from ..errors import DatabaseLockedError, EngineError
from .app import (
    directory_argument,
    emit,
    fail,
    json_option,
    lit,
    out,
    printable,
    progress_display,
    require_database,
)
from .backup import backup
from .client import live_or_fail, request

retries_option = click.option(
    "--retries", type=click.IntRange(min=0), default=None,
    help="Retries of each file part after its first try (default 7).")
backoff_option = click.option(
    "--backoff-max", type=click.FloatRange(min=0), default=None,
    help="Longest wait between two tries, seconds (default 5; full jitter).")
fault_rate_option = click.option(
    "--fault-rate", type=click.FloatRange(0.0, 1.0), default=None,
    help="Drill: fail this fraction of target calls transiently (1.0: every call).")
fault_seed_option = click.option("--fault-seed", type=int, default=0, show_default=True,
                                 help="Seed of --fault-rate (a drill is reproducible).")
db_id_option = click.option("--db-id", help="The database, when the target holds several.")


@contextmanager
def progress_bar(as_json: bool, what: str) -> Iterator[Callable[[int, int, str], None]]:
    """A byte progress bar on a terminal (nothing with --json or when piped)."""
    with progress_display(as_json, byte_counts=True) as progress:
        task = progress.add_task(what, total=None)

        def step(done: int, total: int, description: str) -> None:
            progress.update(task, completed=done, total=total or None, description=description)

        yield step


@backup.command("full")
@directory_argument
@click.option("--to", "to_url", required=True, metavar="URL", help="The backup target.")
@retries_option
@backoff_option
@fault_rate_option
@fault_seed_option
@json_option
def full(directory: str, to_url: str, retries: int | None, backoff_max: float | None,
         fault_rate: float | None, fault_seed: int, as_json: bool) -> None:
    """A consistent full backup of a database (closed, or live through its admin socket)."""
    path = require_database(directory, as_json)
    kwargs: dict[str, Any] = {"retries": retries, "backoff_max": backoff_max,
                              "fault_rate": fault_rate, "fault_seed": fault_seed}
    try:
        try:
            with progress_bar(as_json, "backup") as step:  # opens it: takes its lock
                from ..backup.full import backup_full  # obstore only when needed

                payload = backup_full(path, to_url, progress=step, **kwargs).to_json()
        except DatabaseLockedError as exc:  # a live process holds it: it backs up
            live_or_fail(path, exc)
            payload = request(path, "POST", "/backup/full",
                              {"to": to_url, **{k: v for k, v in kwargs.items()
                                                if v is not None}}, timeout=3600)
    except EngineError as exc:
        fail(as_json, exc)
    emit(as_json, payload, lambda: out.print(
        f"[green]full backup[/] {lit(payload['id'])} of {lit(payload['db_id'])}: epoch "
        f"{lit(payload['epoch'])} tx {lit(payload['tx_id'])}, {lit(payload['bytes'])} bytes in "
        f"{lit(payload['files'])} file(s), {payload['seconds']:.2f} s, "
        f"{lit(payload['retry_attempts'])} retries -> {lit(payload['target'])}", highlight=False))


def _age(seconds: float) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n:
            return f"{seconds / n:.1f}{unit}"
    return f"{seconds:.0f}s"


@backup.command("list")
@click.argument("url")
@db_id_option
@json_option
def list_command(url: str, db_id: str | None, as_json: bool) -> None:
    """Full backups in a target: id, epoch, tx, size, complete or not, age."""
    try:
        from ..backup.full import list_backups

        entries = [e.to_json() for e in list_backups(url, db_id=db_id)]
    except EngineError as exc:
        fail(as_json, exc)

    def render() -> None:
        if not entries:
            out.print(f"no full backups in {lit(url)}")
        for e in entries:
            state = "[green]complete[/]" if e["complete"] else "[red]INCOMPLETE[/]"
            out.print(f"{lit(e['id'])}  epoch {lit(e['epoch'])}  tx {lit(e['tx_id'])}  "
                      f"{lit(e['bytes'])} B  "
                      f"{state}  {lit(_age(e['age_seconds']))} ago", highlight=False)

    emit(as_json, {"ok": True, "backups": entries}, render)


@backup.command("verify")
@click.argument("url")
@click.option("--backup", "backup_id", required=True, metavar="ID|latest",
              help="The backup to re-read.")
@db_id_option
@retries_option
@backoff_option
@json_option
def verify_command(url: str, backup_id: str, db_id: str | None, retries: int | None,
                   backoff_max: float | None, as_json: bool) -> None:
    """Re-read every file of a backup and check its size and checksum."""
    try:
        with progress_bar(as_json, "verify") as step:
            from ..backup.full import verify_backup

            report = verify_backup(url, backup_id, db_id=db_id, retries=retries,
                                   backoff_max=backoff_max, progress=step)
    except EngineError as exc:
        fail(as_json, exc)
    r = report.to_json()

    def render() -> None:
        if r["ok"]:
            out.print(f"[green]ok[/] backup {lit(r['id'])}: {lit(r['files'])} file(s), "
                      f"{lit(r['parts'])} "
                      f"part(s), {lit(r['bytes'])} bytes verified", highlight=False)
        else:
            out.print(f"[red]broken[/] backup {lit(r['id'])}:", highlight=False)
            for p in r["problems"]:
                out.print(f"  {printable(p)}", markup=False, highlight=False)

    emit(as_json, r, render)
    if not r["ok"]:
        sys.exit(1)


@backup.command("prune")
@click.argument("url")
@click.option("--keep", type=int, required=True, help="Complete backups to keep (>= 1).")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option("--min-age", "min_age", type=click.FloatRange(min=0), default=6 * 3600.0,
              show_default=True,
              help="Seconds an incomplete backup must have been quiet before it is pruned "
                   "(it may still be running).")
@db_id_option
@json_option
def prune_command(url: str, keep: int, dry_run: bool, min_age: float, db_id: str | None,
                  as_json: bool) -> None:
    """Delete all but the newest KEEP complete backups (and older incomplete ones)."""
    try:
        from ..backup.full import prune_backups

        r = prune_backups(url, keep, db_id=db_id, dry_run=dry_run,
                          min_age_seconds=min_age).to_json()
    except EngineError as exc:
        fail(as_json, exc)
    verb = "would delete" if dry_run else "deleted"
    emit(as_json, r, lambda: out.print(
        f"{lit(verb)} {lit(len(r['deleted']))} backup(s) ({lit(r['objects'])} objects, "
        f"{lit(r['bytes'])} bytes)"
        f": {lit(', '.join(r['deleted']) or 'none')}; kept {lit(', '.join(r['kept']))}",
        highlight=False))


__all__ = ["full", "list_command", "prune_command", "verify_command"]
