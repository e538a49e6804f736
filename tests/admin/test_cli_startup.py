"""What ``engine-admin`` loads before it works: a command imports only what it uses
(rich only when it prints for a person, obstore only when it meets a target), since
Python's imports are most of a short command's time (README, "Log backup against
Litestream"). Checked with the interpreter's own import trace in a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import engine
from engine.cli import app


def imported(*args: str, env: dict[str, str] | None = None) -> tuple[int, set[str]]:
    """Run ``python -X importtime -m engine.cli ARGS``: (exit code, every module the
    run imported, by full name)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "engine.cli", *args],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return proc.returncode, names


def imported_modules(*args: str, env: dict[str, str] | None = None) -> tuple[int, set[str]]:
    """As :func:`imported`, by top-level package."""
    code, names = imported(*args, env=env)
    return code, {n.split(".")[0] for n in names}


@pytest.fixture
def backed_up(tmp_path: Path) -> str:
    url = (tmp_path / "target").as_uri()
    with engine.open(str(tmp_path / "src"), backup=url) as db:
        db.append("acct-1", "deposited", b"x" * 10)
        db.backup.flush(timeout=30)
    return url


def test_restore_with_json_never_imports_rich(tmp_path: Path, backed_up: str) -> None:
    code, names = imported_modules("restore", "--from", backed_up, str(tmp_path / "out"),
                                   "--json")
    assert code == 0
    assert "obstore" in names  # the trace does see the target layer: the check can fail
    assert "rich" not in names


def test_verify_with_json_imports_neither_rich_nor_obstore(tmp_path: Path) -> None:
    with engine.open(str(tmp_path / "db")) as db:
        db.append("acct-1", "deposited", b"x")
    code, names = imported_modules("verify", str(tmp_path / "db"), "--json")
    assert code == 0
    assert "engine" in names
    assert not {"rich", "obstore"} & names


def test_a_progress_bar_only_for_a_terminal(tmp_path: Path, backed_up: str) -> None:
    plain = {k: v for k, v in os.environ.items() if k not in ("TTY_COMPATIBLE", "FORCE_COLOR")}
    code, names = imported("restore", "--from", backed_up, str(tmp_path / "out1"),
                           env={"TTY_COMPATIBLE": "1"})
    assert code == 0
    assert "rich.progress" in names  # a terminal (as rich decides): the bar is drawn
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "engine.cli", "restore",
                           "--from", backed_up, str(tmp_path / "out2")],
                          capture_output=True, text=True, timeout=120, env=plain,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0
    assert "restored" in proc.stdout  # a person's report, printed through rich
    assert "rich.progress" not in proc.stderr  # piped: no bar, not even its import


def test_a_closed_stderr_does_not_break_a_command(tmp_path: Path) -> None:
    """``2>&-``: sys.stderr is None in the command; --json output still comes."""
    with engine.open(str(tmp_path / "db")) as db:
        db.append("acct-1", "deposited", b"x")
    proc = subprocess.run(f"{sys.executable} -m engine.cli verify {tmp_path / 'db'} --json 2>&-",
                          shell=True, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout
    assert '"ok": true' in proc.stdout


def test_progress_is_silent_without_a_terminal_and_rich_on_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.progress import Progress

    for name in ("TTY_COMPATIBLE", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    if not sys.stderr.isatty():
        assert not isinstance(app.progress_display(False), Progress)
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setattr(app, "err", app.LazyConsole(stderr=True))
    assert isinstance(app.progress_display(False), Progress)
    assert isinstance(app.progress_display(False, byte_counts=True), Progress)
    quiet = app.progress_display(True)  # --json: never a bar, even on a terminal
    assert not isinstance(quiet, Progress)
    with quiet as p:
        p.update(p.add_task("x", total=3), completed=1, total=3, description="y")
