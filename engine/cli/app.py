"""The ``engine-admin`` command group and what every command shares: consoles,
``--json``, rendering, failing with one clear message, and the directory lock."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click
from rich.console import Console

from ..errors import EngineError
from ..lock import DirLock

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
directory_argument = click.argument("directory", type=click.Path(file_okay=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="engine")
def main() -> None:
    """Operate an engine database directory (status, verify, snapshot, inspect, recover)."""


def emit(as_json: bool, payload: dict[str, Any], render: Callable[[], None]) -> None:
    """Print ``payload`` as one JSON object with --json, else ``render()`` for a person."""
    if as_json:
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        render()


def fail(as_json: bool, exc: BaseException, code: int = 1) -> NoReturn:
    """Report ``exc`` (its type and message) and exit with ``code``."""
    if as_json:
        click.echo(json.dumps({"ok": False, "error": type(exc).__name__, "message": str(exc)}))
    else:
        err.print(f"[bold red]error:[/] {type(exc).__name__}", highlight=False)
        err.print(str(exc), markup=False, highlight=False)
    sys.exit(code)


def require_dir(path: str, as_json: bool) -> str:
    """The absolute directory, or fail: commands never create one."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        fail(as_json, EngineError(f"{path} is not a directory; give the database directory"))
    return path


@contextmanager
def locked(path: str) -> Iterator[DirLock]:
    """Hold the directory lock of ``path`` for the block."""
    lock = DirLock(path)
    try:
        yield lock
    finally:
        lock.release()
