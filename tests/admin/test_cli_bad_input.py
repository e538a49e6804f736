"""``engine-admin`` meets bad input with exit 1 (a refusal) or 2 (a usage error) and
one line naming what was wrong, never a traceback; it leaves the database as it was
and creates nothing in a directory that holds no database (issue 13, item 6)."""

from __future__ import annotations

import os
from typing import Any

import pytest

import engine
from tests.support.cli import run, run_json

BIG = str(2**64)

# {db}: a database with data; {empty}: an empty directory; {missing}: no such path;
# {file}: a regular file; {url}: an empty file:// target. Every case's exit code.
CASES: list[tuple[str, list[str], int]] = [
    ("no-command", [], 2),  # prints the help (checked separately)
    ("unknown-command", ["frobnicate", "{db}"], 2),
    ("unknown-option", ["status", "{db}", "--colour"], 2),
    ("status-empty-dir", ["status", "{empty}"], 1),
    ("status-missing", ["status", "{missing}"], 1),
    ("status-file", ["status", "{file}"], 2),
    ("status-no-arg", ["status"], 2),
    ("verify-empty-dir", ["verify", "{empty}"], 1),
    ("verify-missing", ["verify", "{missing}"], 1),
    ("verify-file", ["verify", "{file}"], 2),
    ("inspect-empty-dir", ["inspect", "{empty}", "--tx", "1"], 1),
    ("inspect-nothing-asked", ["inspect", "{db}"], 2),
    ("inspect-tx-zero", ["inspect", "{db}", "--tx", "0"], 2),
    ("inspect-tx-negative", ["inspect", "{db}", "--tx", "-1"], 2),
    ("inspect-tx-text", ["inspect", "{db}", "--tx", "one"], 2),
    ("inspect-tx-huge", ["inspect", "{db}", "--tx", BIG], 2),
    ("inspect-tx-absent", ["inspect", "{db}", "--tx", "999"], 1),
    ("inspect-tx-missing-value", ["inspect", "{db}", "--tx"], 2),
    ("snapshot-empty-dir", ["snapshot", "{empty}"], 1),
    ("snapshot-missing", ["snapshot", "{missing}"], 1),
    ("recover-without-new-epoch", ["recover", "{db}"], 2),
    ("recover-healthy", ["recover", "{db}", "--new-epoch"], 1),
    ("recover-empty-dir", ["recover", "{empty}", "--new-epoch"], 1),
    ("recover-bad-backup-url", ["recover", "{db}", "--new-epoch", "--from-backup",
                                "ftp://host/x"], 1),
    ("demo-negative-events", ["demo", "{empty}", "--events", "-5"], 2),
    ("demo-text-events", ["demo", "{empty}", "--events", "many"], 2),
    ("demo-into-a-database", ["demo", "{db}"], 1),
    ("demo-file", ["demo", "{file}"], 2),
    ("backup-status-never-backed-up", ["backup", "status", "{db}"], 1),
    ("backup-status-bad-target", ["backup", "status", "{db}", "--target", "ftp://h/x"], 1),
    ("backup-status-empty-dir", ["backup", "status", "{empty}"], 1),
    ("backup-flush-never-backed-up", ["backup", "flush", "{db}"], 1),
    ("backup-flush-negative-timeout", ["backup", "flush", "{db}", "--timeout", "-1"], 2),
    ("backup-full-bad-scheme", ["backup", "full", "{db}", "--to", "ftp://h/x"], 1),
    ("backup-full-relative-file", ["backup", "full", "{db}", "--to", "file://rel/x"], 1),
    ("backup-full-no-target", ["backup", "full", "{db}"], 2),
    ("backup-full-empty-dir", ["backup", "full", "{empty}", "--to", "{url}"], 1),
    ("backup-full-negative-retries", ["backup", "full", "{db}", "--to", "{url}",
                                      "--retries", "-3"], 2),
    ("backup-list-bad-scheme", ["backup", "list", "ftp://h/x"], 1),
    ("backup-list-not-a-url", ["backup", "list", "just words"], 1),
    ("backup-verify-absent", ["backup", "verify", "{url}", "--backup", "latest"], 1),
    ("backup-verify-no-id", ["backup", "verify", "{url}"], 2),
    ("backup-prune-keep-zero", ["backup", "prune", "{url}", "--keep", "0"], 1),
    ("backup-prune-keep-text", ["backup", "prune", "{url}", "--keep", "all"], 2),
    ("restore-no-source", ["restore", "{missing}"], 2),
    ("restore-bad-scheme", ["restore", "{missing}", "--from", "ftp://h/x"], 1),
    ("restore-empty-target", ["restore", "{missing}", "--from", "{url}"], 1),
    ("restore-into-a-database", ["restore", "{db}", "--from", "{url}"], 1),
    ("restore-bad-time", ["restore", "{missing}", "--from", "{url}", "--to-time",
                          "yesterday-ish"], 1),
    ("restore-to-tx-text", ["restore", "{missing}", "--from", "{url}", "--to-tx", "x"], 2),
]


@pytest.fixture
def places(tmp_path):  # type: ignore[no-untyped-def]
    db = tmp_path / "db"
    with engine.open(str(db)) as h:
        h.append("acct", "opened", b"[red]x[/red]")
        h.snapshot()
        h.append("acct", "deposit", b"100")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_bytes(b"a file")
    (tmp_path / "target").mkdir()
    return {"db": str(db), "empty": str(tmp_path / "empty"),
            "missing": str(tmp_path / "missing"), "file": str(tmp_path / "file"),
            "url": (tmp_path / "target").as_uri()}


def _tree(root: str) -> list[tuple[str, int]]:
    out = []
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            if f in ("LOCK", "lock.mdb"):
                continue  # the lock file's pid line is cleared on release; LMDB's lock too
            with open(p, "rb") as fh:
                out.append((os.path.relpath(p, root), hash(fh.read())))
    return sorted(out)


def _db_picture(path: str) -> Any:
    with engine.open(path, create=False) as db:
        return [(t.tx_id, [(e.stream, e.type, e.data) for e in t.events])
                for t in db.read_log()], db.get("acct")


@pytest.mark.parametrize(("argv", "code"), [c[1:] for c in CASES if c[0] != "no-command"],
                         ids=[c[0] for c in CASES if c[0] != "no-command"])
def test_a_refusal_is_one_line_and_changes_nothing(places, argv, code):
    before = {k: _tree(v) for k, v in places.items() if k in ("empty", "db")}
    target_before = sorted(os.listdir(places["url"][len("file://"):]))
    args = [a.format(**places) for a in argv]
    got, out = run(*args)
    assert got == code, out
    assert "Traceback" not in out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    assert {k: _tree(places[k]) for k in before} == before  # nothing created or changed
    assert not os.path.exists(places["missing"])
    assert sorted(os.listdir(places["url"][len("file://"):])) == target_before
    assert _db_picture(places["db"])[1] == b"100"


@pytest.mark.parametrize(("argv", "code"), [c[1:] for c in CASES if c[2] == 1],
                         ids=[c[0] for c in CASES if c[2] == 1])
def test_a_refusal_in_json_is_one_object_naming_the_error(places, argv, code):
    args = [a.format(**places) for a in argv]
    got, rep = run_json(*args)
    assert got == code
    assert rep["ok"] is False and rep["error"].endswith("Error") and rep["message"]


@pytest.mark.parametrize("argv", [[], ["backup"]], ids=["main", "backup"])
def test_a_bare_group_prints_its_help(argv):
    code, out = run(*argv)
    assert code == 2 and "Commands:" in out and "error" not in out


def test_stored_markup_is_shown_literally(places):
    code, out = run("inspect", places["db"], "--tx", "1")
    assert code == 0 and "[red]x[/red]" in out
    code, out = run("inspect", places["db"], "--stream", "acct")
    assert code == 0 and "[red]x[/red]" in out and "100" in out


@pytest.mark.parametrize("name", ["[/]", "[bold]s[/bold]", "a[/b]c", "[link=x]y[/link]"])
def test_names_and_data_that_look_like_markup_do_not_crash_inspect(tmp_path, name):
    path = str(tmp_path / "db")
    with engine.open(path) as db:
        db.append(name, f"t{name}", name.encode())
    code, out = run("inspect", path, "--stream", name)
    assert code == 0, out
    assert out.count(name) >= 2  # the data, the type's suffix (the stream in the header)
    code, out = run("inspect", path, "--tx", "1")
    assert code == 0 and name in out


@pytest.mark.parametrize("raw", [b"x[/]y", b"non-utf8-\xff\xfe", b"[bold]dir[/bold]"],
                         ids=["markup", "undecodable", "bold"])
def test_status_and_verify_show_any_directory_name(tmp_path, raw):
    path = os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), raw))
    with engine.open(path) as db:
        db.append("s", "e", b"1")
        db.snapshot()
    code, out = run("status", path)
    assert code == 0, out
    # what a terminal can show: undecodable bytes as escapes, brackets as themselves
    assert path.encode("utf-8", "backslashreplace").decode() in out.replace("\n", "")
    code, out = run("verify", path)
    assert code == 0 and out.startswith("ok:"), out
    code, rep = run_json("status", path)
    assert code == 0 and rep["path"] == path
