"""Smoke test of bench/eventsourcing_compare.py: every row runs on both persistence
modules at a tiny size, and the command line writes its JSON where bench/README.md
says. Checks shapes and that every rate is a positive float; no timing thresholds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import eventsourcing_compare as bench
import pytest


def test_every_row_runs_on_both_modules(tmp_path: Path) -> None:
    result = bench.run(bench.TINY, 1, workdir=tmp_path)
    assert list(result["rows"]) == [r.name for r in bench.ROWS]
    for name, row in result["rows"].items():
        for system in bench.SYSTEMS:
            rate = row[system]
            assert type(rate) is float and rate > 0 and math.isfinite(rate), (name, system)
        assert row["ratio"] == pytest.approx(row["engine"] / row["sqlite"])
    assert {r["api"] for r in result["rows"].values()} == {"recorder", "application"}
    table = bench.table(result).splitlines()
    assert len(table) == 2 + len(bench.ROWS)
    assert all(line.count("|") == 7 for line in table)
    assert list(tmp_path.iterdir()) == []  # every store's directory was removed


def test_the_command_line_writes_latest_json(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bench, "LATEST_DIR", tmp_path)
    monkeypatch.setattr(bench, "QUICK", bench.TINY)
    assert bench.main(["--quick", "--rounds", "1", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((tmp_path / "eventsourcing_compare.json").read_text())
    assert printed["rows"].keys() == written["rows"].keys()
    assert written["rounds"] == 1 and written["sizes"] == bench.TINY.__dict__


def test_the_engine_rows_use_the_engine_module(tmp_path: Path) -> None:
    store = bench.Store("engine", tmp_path, durable=False)
    try:
        assert type(store.recorder).__module__ == "engine.contrib.eventsourcing"
        assert type(store.app.factory).__module__ == "engine.contrib.eventsourcing"
        assert store.recorder.db.sync == "none"
    finally:
        store.close()
    store = bench.Store("sqlite", tmp_path, durable=True)
    try:
        assert type(store.recorder).__module__ == "eventsourcing.sqlite"
    finally:
        store.close()
