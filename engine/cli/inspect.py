"""``engine-admin inspect DIR --tx N | --stream NAME``."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.table import Table

from ..database import Database
from ..errors import EngineError
from ..ops.inspect import inspect_stream, inspect_tx
from .app import directory_argument, emit, fail, json_option, lit, main, out, require_database


@main.command()
@directory_argument
@click.option("--tx", "tx_id", type=click.IntRange(1, (1 << 63) - 1),
              help="Show this transaction's events.")
@click.option("--stream", help="Show this stream's state and events.")
@json_option
def inspect(directory: str, tx_id: int | None, stream: str | None, as_json: bool) -> None:
    """Show one transaction (--tx N) or one stream (--stream NAME)."""
    path = require_database(directory, as_json)
    if tx_id is None and stream is None:
        fail(as_json, EngineError("give --tx N or --stream NAME"), 2)
    try:
        with Database(path, create=False) as db:
            if tx_id is not None:
                payload = inspect_tx(db, tx_id)
            else:
                assert stream is not None
                payload = inspect_stream(db, stream)
    except EngineError as exc:
        fail(as_json, exc)
    emit(as_json, payload, lambda: render(payload, tx_id, stream))


def render(payload: dict[str, Any], tx_id: int | None, stream: str | None) -> None:
    if tx_id is not None:
        out.print(f"tx {lit(payload['tx_id'])} (epoch {lit(payload['epoch'])}, "
                  f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(payload['ts']))})")
        for tr in payload.get("tracking", []):
            out.print(f"  tracks {lit(repr(tr['name']))} at position {lit(tr['position'])}")
    else:
        out.print(f"stream {lit(repr(stream))}: version {lit(payload['version'])}, value "
                  f"{lit(repr(payload['value']))}")
    t = Table(*[lit(k) for k in payload["events"][0]] if payload["events"] else ["(no events)"])
    for e in payload["events"]:
        t.add_row(*[lit(v) for v in e.values()])
    out.print(t)
