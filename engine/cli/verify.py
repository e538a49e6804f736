"""``engine-admin verify DIR``."""

from __future__ import annotations

import sys

from ..errors import EngineError
from ..ops.verify import VerifyReport, verify_directory
from .app import (
    directory_argument,
    emit,
    err,
    fail,
    json_option,
    lit,
    locked,
    main,
    out,
    printable,
    progress_display,
    require_database,
)


@main.command()
@directory_argument
@json_option
def verify(directory: str, as_json: bool) -> None:
    """Check every snapshot and log checksum; exit 1 naming what is corrupt."""
    path = require_database(directory, as_json)
    try:
        with locked(path), progress_display(as_json) as progress:
            task = progress.add_task("log records", total=None)

            def step(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report = verify_directory(path, step)
    except EngineError as exc:
        fail(as_json, exc)
    emit(as_json, report.to_json(), lambda: render(report))
    if not report.ok:
        sys.exit(1)


def render(report: VerifyReport) -> None:
    if report.ok:
        out.print(f"[green]ok[/]: {lit(report.snapshots_ok)} snapshot(s) and "
                  f"{lit(report.log_records)} log record(s) verified")
    else:
        err.print(f"[red]{lit(len(report.problems))} problem(s)[/] in {lit(report.path)}:")
        for p in report.problems:
            err.print(f"  - {printable(p)}", markup=False, highlight=False)
