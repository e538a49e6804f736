"""One process, one open handle: DIR/LOCK."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import engine

REPO = str(Path(__file__).resolve().parents[2])


def test_second_open_in_same_process_is_refused(open_db, db_path):
    db = open_db()
    db.append("s", "e", b"1")
    with pytest.raises(engine.DatabaseLockedError) as ei:
        engine.open(db_path)
    assert isinstance(ei.value, engine.EngineError)
    assert str(os.getpid()) in str(ei.value)
    # the refused open did not disturb the owner
    assert db.append("s", "e", b"2") == 2
    assert db.get("s") == b"2"
    db.close()
    db2 = open_db()
    assert db2.version("s") == 2


def test_other_process_holding_the_database_is_named(db_path):
    script = textwrap.dedent(f"""
        import sys, engine
        db = engine.open({db_path!r})
        db.append("s", "e", b"child")
        print("ready", flush=True)
        sys.stdin.readline()
        db.close()
        print("closed", flush=True)
    """)
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(engine.DatabaseLockedError) as ei:
            engine.open(db_path)
        assert str(proc.pid) in str(ei.value)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "closed"
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with engine.open(db_path) as db:
        assert db.get("s") == b"child"


def test_lock_is_released_when_the_holder_is_killed(db_path):
    script = textwrap.dedent(f"""
        import sys, time, engine
        db = engine.open({db_path!r})
        db.append("s", "e", b"child")
        print("ready", flush=True)
        time.sleep(600)
    """)
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(engine.DatabaseLockedError):
            engine.open(db_path)
    finally:
        proc.kill()
        proc.wait()
    with engine.open(db_path) as db:
        assert db.get("s") == b"child"
        assert db.position.tx_id == 1


def test_failed_open_releases_the_lock(db_path):
    with pytest.raises(engine.EngineError):
        engine.open(db_path, keep_snapshots=0)
    with engine.open(db_path) as db:
        db.append("s", "e", b"1")
    with engine.open(db_path) as db:
        assert db.version("s") == 1
