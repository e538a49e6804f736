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


def imported_modules(*args: str, env: dict[str, str] | None = None) -> tuple[int, set[str]]:
    """Run ``python -X importtime -m engine.cli ARGS``: (exit code, top-level packages
    the run imported)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "engine.cli", *args],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return proc.returncode, names


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


def test_a_person_on_a_terminal_gets_rich_output(tmp_path: Path, backed_up: str) -> None:
    code, names = imported_modules("restore", "--from", backed_up, str(tmp_path / "out"),
                                   env={"TTY_COMPATIBLE": "1"})
    assert code == 0
    assert "rich" in names


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
