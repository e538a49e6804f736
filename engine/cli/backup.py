"""``engine-admin backup status|flush DIR``: the continuous log backup of a database."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..api import open as open_database
from ..backup.status import closed_status, recorded_target
from ..backup.uploader import BackupOptions
from ..errors import EngineError
from .app import directory_argument, emit, fail, json_option, locked, main, out, require_dir

target_option = click.option(
    "--target", "target_url", metavar="URL",
    help="Backup target (default: the one the database last shipped to).")


@main.group()
def backup() -> None:
    """Continuous log backup: status and force flush."""


@backup.command("status")
@directory_argument
@target_option
@json_option
def status(directory: str, target_url: str | None, as_json: bool) -> None:
    """Checkpoint, lag (RPO) and state of the log backup of a closed database."""
    path = require_dir(directory, as_json)
    try:
        with locked(path):
            report = closed_status(path, target_url)
    except EngineError as exc:
        fail(as_json, exc)
    emit(as_json, report, lambda: render_status(report))
    if not report["ok"]:
        sys.exit(1)


def render_status(r: dict[str, Any]) -> None:
    colour = "green" if r["ok"] else "red"
    out.print(f"[bold]{r['path']}[/] -> {r['target']}  [{colour}]{r['state']}[/]",
              highlight=False)
    out.print(f"  epoch {r['epoch']}: last tx {r['last_tx']}, shipped through tx "
              f"{r.get('checkpoint_tx', '?')} ({r.get('segments', '?')} segments)")
    out.print(f"  lag: {r.get('lag_txs', '?')} txs, {r.get('lag_seconds', '?')} s")
    if r.get("last_error"):
        out.print(f"  {r['last_error']}", markup=False, highlight=False)


@backup.command("flush")
@directory_argument
@target_option
@click.option("--timeout", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="Seconds to wait for the target.")
@json_option
def flush(directory: str, target_url: str | None, timeout: float, as_json: bool) -> None:
    """Ship everything committed to the backup target now (before a restart or a move)."""
    path = require_dir(directory, as_json)
    try:
        with locked(path):
            url, _meta = recorded_target(path)
        spec = target_url or url
        if spec is None:
            raise EngineError(f"{path} has never been backed up; give the target with "
                              "--target URL")
        opts = BackupOptions(target=spec, close_timeout_seconds=timeout)
        with open_database(path, create=False, backup=opts) as db:
            result = db.backup.flush(timeout)
    except EngineError as exc:
        fail(as_json, exc)
    payload = {"ok": True, **result.to_json()}
    emit(as_json, payload, lambda: out.print(
        f"flushed epoch {result.epoch} through tx {result.flushed_through_tx} "
        f"in {result.seconds * 1000:.1f} ms ({result.pending_txs} pending)"))
