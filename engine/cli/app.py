"""The ``engine-admin`` command group and what every command shares: consoles,
``--json``, rendering, failing with one clear message, and the directory lock."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import click

from .. import layout
from ..errors import EngineError
from ..lock import DirLock

if TYPE_CHECKING:
    from rich.console import Console


class LazyConsole:
    """A rich ``Console`` made on first use. Importing rich costs ~30 ms of every
    command's start, and a command run with ``--json`` (or one that only fails early)
    never prints through it; everything else is delegated to the real console."""

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None  # made once, by the main thread

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr, soft_wrap=True)
        return self._console

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.console.print(*objects, **kwargs)

    @property
    def is_terminal(self) -> bool:
        return self.console.is_terminal


out = LazyConsole()
err = LazyConsole(stderr=True)


class ProgressDisplay(Protocol):
    """The part of ``rich.progress.Progress`` the commands use."""

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: Any) -> Any: ...

    def add_task(self, description: str, *, total: float | None = ...) -> Any: ...

    def update(self, task_id: Any, *, total: float | None = ..., completed: float | None = ...,
               description: str | None = ...) -> None: ...


class _NoProgress:
    """What ``progress_display`` returns when nobody watches: the same calls, no output,
    and no rich import."""

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def add_task(self, description: str, *, total: float | None = None) -> int:
        return 0

    def update(self, task_id: Any, *, total: float | None = None,
               completed: float | None = None, description: str | None = None) -> None:
        return None


def _is_tty(stream: Any) -> bool:
    """``stream.isatty()``, False for a closed or missing stream (``2>&-`` makes
    ``sys.stderr`` None)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def progress_display(as_json: bool, *, byte_counts: bool = False) -> ProgressDisplay:
    """A transient rich progress bar on stderr when it is a terminal and the output is
    not ``--json`` (with ``byte_counts``, sizes and time left); otherwise a silent
    stand-in: rich's own ``disable=`` would still cost its import."""
    # rich's own terminal test (isatty, or TTY_COMPATIBLE=1 / FORCE_COLOR set) decides,
    # but only once the cheap part of it says there may be a terminal
    if as_json or not (_is_tty(sys.stderr)
                       or any(v in os.environ for v in ("TTY_COMPATIBLE", "FORCE_COLOR"))):
        return _NoProgress()
    if sys.stderr is None or not err.is_terminal:  # closed (2>&-): nowhere to draw
        return _NoProgress()
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    columns = (("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                TimeRemainingColumn()) if byte_counts else Progress.get_default_columns())
    return Progress(*columns, console=err.console, transient=True)


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
directory_argument = click.argument("directory", type=click.Path(file_okay=False))


# Each top-level command and the modules that define it (and its subcommands),
# imported when the command is looked up: a command pays only for its own imports.
COMMANDS: dict[str, tuple[str, ...]] = {
    "backup": ("backup", "full"), "demo": ("demo",), "inspect": ("inspect",),
    "recover": ("recover",), "repair": ("repair",), "restore": ("restore",),
    "snapshot": ("snapshot",), "status": ("status",), "verify": ("verify",),
}


class EngineGroup(click.Group):
    """click's group, with usage errors reported on one line like every other refusal
    (``error: <what was wrong> (see <command> --help)``, exit 2), and the command
    modules loaded lazily (``COMMANDS``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            for module in COMMANDS[cmd_name]:
                importlib.import_module(f"{__package__}.{module}")  # registers on main
        return super().get_command(ctx, cmd_name)

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # a bare group: its help
            click.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            err.print(f"[bold red]error:[/] {lit(exc.format_message())}{lit(where)}",
                      highlight=False)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            err.print(f"[bold red]error:[/] {lit(exc.format_message())}", highlight=False)
            sys.exit(exc.exit_code)
        except click.Abort:
            err.print("[bold red]error:[/] aborted", highlight=False)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=EngineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="engine")
def main() -> None:
    """Operate an engine database directory (status, verify, snapshot, inspect, recover)."""


def emit(as_json: bool, payload: dict[str, Any], render: Callable[[], None]) -> None:
    """Print ``payload`` as one JSON object with --json, else ``render()`` for a person."""
    if as_json:
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        render()


def printable(value: object) -> str:
    """``value`` as text any terminal can show: characters that cannot be encoded
    (a path's undecodable bytes arrive as lone surrogates) become backslash escapes."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def lit(value: object) -> str:
    """``value`` shown literally inside rich markup: stored names and data, paths and
    messages are the user's bytes, never markup (``[red]`` in an event stays ``[red]``)."""
    from rich.markup import escape  # rich only when something is printed

    return escape(printable(value))


def fail(as_json: bool, exc: BaseException, code: int = 1) -> NoReturn:
    """Report ``exc`` on one line (``error: <Type>: <message>``, the type left out for a
    plain EngineError) and exit with ``code``; with --json one object naming both."""
    if as_json:
        click.echo(json.dumps({"ok": False, "error": type(exc).__name__, "message": str(exc)}))
    else:
        kind = "" if type(exc) is EngineError else f"{type(exc).__name__}: "
        err.print(f"[bold red]error:[/] {lit(kind)}{lit(exc)}", highlight=False)
    sys.exit(code)


def require_dir(path: str, as_json: bool) -> str:
    """The absolute directory, or fail: commands never create one."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        fail(as_json, EngineError(f"{path} is not a directory; give the database directory"))
    return path


def require_database(path: str, as_json: bool) -> str:
    """The absolute directory if it holds a database, or fail without touching it:
    commands that read a database never create ``LOCK`` (or anything) elsewhere."""
    path = require_dir(path, as_json)
    if not layout.holds_database(path):
        fail(as_json, EngineError(
            f"{path} holds no engine database (no log/ and no snapshots/); give the "
            "directory a database was opened in"))
    return path


@contextmanager
def locked(path: str) -> Iterator[DirLock]:
    """Hold the directory lock of ``path`` for the block."""
    lock = DirLock(path)
    try:
        yield lock
    finally:
        lock.release()
