"""``engine-admin status DIR``."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.table import Table

from ..errors import DatabaseLockedError, EngineError
from ..log import LogInfo
from ..ops.status import directory_status
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


@main.command()
@directory_argument
@json_option
def status(directory: str, as_json: bool) -> None:
    """Health, positions, epoch history and files of a database."""
    path = require_database(directory, as_json)
    try:
        try:
            with locked(path):
                report = directory_status(path)
            payload, describe = report.to_json(), report.log.describe()
        except DatabaseLockedError as exc:  # a live process holds it: ask it
            live_or_fail(path, exc)
            payload = request(path, "GET", "/status")
            describe = LogInfo(path=path, exists=True, epoch=payload["epoch"] or 0,
                               base_tx=payload["log"]["base_tx"],
                               first_tx=payload["log"]["first_tx"],
                               last_tx=payload["log"]["last_tx"]).describe()
    except EngineError as exc:
        fail(as_json, exc)
    emit(as_json, payload, lambda: render(payload, describe))
    if payload["verdict"] not in ("ok", "degraded"):
        sys.exit(1)


def render(p: dict[str, Any], describe: str) -> None:
    verdict = p["verdict"]
    colour = {"ok": "green", "degraded": "yellow"}.get(verdict, "red")
    live = f"  (live: pid {lit(p['pid'])}, up {p['uptime_seconds']:.0f} s)" if p.get("live") else ""
    out.print(f"[bold]{lit(p['path'])}[/]  [{colour}]{lit(verdict)}[/]{live}", highlight=False)
    out.print(f"db_id  {lit(p['db_id'] or '-')}")
    out.print(f"log    {lit(describe)}")
    if p["log"]["exists"]:
        out.print(f"       last position {lit(p['log']['last_position'])}")
    t = Table("epoch", "first tx", "first position", "started", "reason", title="epochs")
    for h in p["epoch_history"]:
        t.add_row(str(h["epoch"]), str(h["first_tx"]), str(h["first_position"]),
                  time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(h["time"])), lit(h["reason"]))
    if p["epoch_history"]:
        out.print(t)
    t = Table("file", "epoch", "tx", "streams", "bytes", "ok", title="snapshots")
    for s in p["snapshots"]:
        t.add_row(lit(s["file"]), str(s["epoch"]), str(s["tx_id"]), str(s.get("streams", "-")),
                  str(s.get("bytes", "-")), "yes" if s["ok"] else "[red]CORRUPT[/]")
    out.print(t)
    if p.get("backup"):
        b = p["backup"]
        out.print(f"backup {lit(b['target'])}: {lit(b['state'])}, shipped through tx "
                  f"{lit(b['checkpoint_tx'])}"
                  f", lag {lit(b['lag_txs'])} txs / {lit(b['lag_seconds'])} s", highlight=False)
    if p["problem"]:
        out.print(printable(p["problem"]), markup=False, highlight=False)
