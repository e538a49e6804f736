"""``engine-admin status DIR``."""

from __future__ import annotations

import sys
import time

from rich.table import Table

from ..errors import EngineError
from ..ops.status import StatusReport, directory_status
from .app import directory_argument, emit, fail, json_option, locked, main, out, require_dir


@main.command()
@directory_argument
@json_option
def status(directory: str, as_json: bool) -> None:
    """Health, positions, epoch history and files of a database."""
    path = require_dir(directory, as_json)
    try:
        with locked(path):
            report = directory_status(path)
    except EngineError as exc:
        fail(as_json, exc)
    emit(as_json, report.to_json(), lambda: render(report))
    if not report.usable:
        sys.exit(1)


def render(report: StatusReport) -> None:
    info = report.log
    colour = {"ok": "green", "degraded": "yellow"}.get(report.verdict, "red")
    out.print(f"[bold]{report.path}[/]  [{colour}]{report.verdict}[/]")
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
    for s in report.snapshots:
        t.add_row(str(s["file"]), str(s["epoch"]), str(s["tx_id"]), str(s.get("streams", "-")),
                  str(s.get("bytes", "-")), "yes" if s["ok"] else "[red]CORRUPT[/]")
    out.print(t)
    if report.problem:
        out.print(report.problem, markup=False, highlight=False)
