"""``engine-admin demo DIR``: the main job end to end."""

from __future__ import annotations

import os
from typing import Any

import click
from rich.table import Table

from ..errors import EngineError
from ..ops.demo import run_demo
from .app import directory_argument, emit, fail, json_option, lit, main, out


@main.command()
@directory_argument
@click.option("--events", default=10_000, show_default=True,
              type=click.IntRange(min=0), help="Events to write.")
@click.option("--force", is_flag=True, help="Write demo events into a non-empty directory.")
@json_option
def demo(directory: str, events: int, force: bool, as_json: bool) -> None:
    """The main job end to end: write events, snapshot, reopen, show the state."""
    path = os.path.abspath(directory)
    try:
        payload = run_demo(path, events, force=force)
    except EngineError as exc:
        fail(as_json, exc)
    emit(as_json, payload, lambda: render(payload))


def render(p: dict[str, Any]) -> None:
    out.print(f"[bold]engine demo[/] in {lit(p['path'])}")
    out.print(f"  wrote {lit(p['events_written'])} events in {lit(p['transactions_written'])} "
              f"transactions ({p['write_seconds']:.2f} s, sync=group)")
    out.print(f"  snapshot at tx {lit(p['snapshot_tx'])}: {lit(p['snapshot'])}")
    pos = p["position"]
    out.print(f"  reopened in {p['reopen_seconds'] * 1000:.1f} ms (snapshot + 1 tail tx "
              f"replayed); position epoch {lit(pos['epoch'])}, tx {lit(pos['tx_id'])}")
    t = Table("stream", "version", "value")
    for s, v in p["sample_state"].items():
        t.add_row(lit(s), str(p["sample_versions"][s]), lit(repr(v)))
    out.print(t)
    out.print(f"  {lit(p['streams'])} streams in the state. Try: engine-admin status "
              f"{lit(p['path'])}")
