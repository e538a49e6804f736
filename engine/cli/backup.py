"""``engine-admin backup status|flush DIR``: the continuous log backup of a database."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import DatabaseLockedError, EngineError
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
from .client import live_or_fail, request

target_option = click.option(
    "--target", "target_url", metavar="URL",
    help="Backup target (default: the one the database last shipped to).")


@main.group()
def backup() -> None:
    """Backups: the continuous log backup (status, flush) and full backups (full, list,
    verify, prune)."""


@backup.command("status")
@directory_argument
@target_option
@json_option
def status(directory: str, target_url: str | None, as_json: bool) -> None:
    """Checkpoint, lag (RPO) and state of the log backup of a closed database."""
    from ..backup.status import closed_status  # obstore only when a command needs it

    path = require_database(directory, as_json)
    try:
        try:
            with locked(path):
                report = closed_status(path, target_url)
        except DatabaseLockedError as exc:  # a live process holds it: ask it
            live_or_fail(path, exc)
            live = request(path, "GET", "/backup/status")
            report = {"ok": live["ok"], "path": path, **{k: v for k, v in live.items()
                                                          if k != "ok"}}
    except EngineError as exc:
        fail(as_json, exc)
    emit(as_json, report, lambda: render_status(report))
    if not report["ok"]:
        sys.exit(1)


def render_status(r: dict[str, Any]) -> None:
    colour = "green" if r["ok"] else "red"
    out.print(f"[bold]{lit(r['path'])}[/] -> {lit(r['target'])}  [{colour}]{lit(r['state'])}[/]",
              highlight=False)
    segs = r.get("segments", r.get("segments_shipped", "?"))
    out.print(f"  epoch {lit(r['epoch'])}: last tx {lit(r['last_tx'])}, shipped through tx "
              f"{lit(r.get('checkpoint_tx', '?'))} ({lit(segs)} segments)")
    out.print(f"  lag: {lit(r.get('lag_txs', '?'))} txs, {lit(r.get('lag_seconds', '?'))} s")
    if r.get("last_error"):
        out.print(f"  {printable(r['last_error'])}", markup=False, highlight=False)


@backup.command("flush")
@directory_argument
@target_option
@click.option("--timeout", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="Seconds to wait for the target.")
@json_option
def flush(directory: str, target_url: str | None, timeout: float, as_json: bool) -> None:
    """Ship everything committed to the backup target now (before a restart or a move)."""
    from ..api import open as open_database
    from ..backup.status import recorded_target
    from ..backup.uploader import BackupOptions

    path = require_database(directory, as_json)
    try:
        try:
            with locked(path):
                url, _meta = recorded_target(path)
        except DatabaseLockedError as exc:  # a live process holds it: it flushes
            live_or_fail(path, exc)
            payload = request(path, "POST", "/backup/flush", {"timeout": timeout},
                              timeout=timeout + 10)
        else:
            spec = target_url or url
            if spec is None:
                raise EngineError(f"{path} has never been backed up; give the target with "
                                  "--target URL")
            opts = BackupOptions(target=spec, close_timeout_seconds=timeout)
            with open_database(path, create=False, backup=opts) as db:
                payload = {"ok": True, **db.backup.flush(timeout).to_json()}
    except EngineError as exc:
        fail(as_json, exc)
    emit(as_json, payload, lambda: out.print(
        f"flushed epoch {lit(payload['epoch'])} through tx {lit(payload['flushed_through_tx'])} "
        f"in {payload['seconds'] * 1000:.1f} ms ({lit(payload['pending_txs'])} pending)"))
