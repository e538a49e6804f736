"""Smoke test of bench/compare.py: every workload runs on every system at a tiny size.

Checks the shape of the results and that every ``ops_per_s`` is a positive float;
no timing thresholds (those belong to the benchmarks, not to CI).
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPARE = ROOT / "bench" / "compare.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("engine_bench_compare", COMPARE)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # eventsourcing resolves its aggregate's topic by module
    spec.loader.exec_module(mod)
    return mod


compare = _load()


def _check_system_result(res: dict[str, Any]) -> None:
    assert set(res) == set(compare.SYSTEMS)
    for name, r in res.items():
        rate = r["ops_per_s"]
        assert type(rate) is float and rate > 0 and math.isfinite(rate), (name, r)


@pytest.mark.parametrize("workload", compare.WORKLOADS)
def test_workload_runs_on_every_system(workload: str, tmp_path: Path) -> None:
    res = compare.WORKLOAD_FUNCS[workload](list(compare.SYSTEMS), compare.TINY, tmp_path)
    _check_system_result(res)
    if workload == "append_batch":
        app = res["eventsourcing"]["application_api_ops_per_s"]
        assert type(app) is float and app > 0


def test_run_returns_the_documented_json_shape(tmp_path: Path) -> None:
    result = json.loads(json.dumps(compare.run(compare.TINY, workdir=tmp_path)))
    assert set(result) >= {"workloads", "machine"}
    assert set(result["workloads"]) == set(compare.WORKLOADS)
    for res in result["workloads"].values():
        _check_system_result(res)
        assert res["engine"]["engine_speedup"] == pytest.approx(1.0)
    assert set(result["machine"]) >= {"cpu_count", "platform", "python", "date"}
    assert set(result["skipped"]) == {"backup_lag", "restore"}


def test_cli_json_prints_exactly_one_object() -> None:
    out = subprocess.run(
        [sys.executable, str(COMPARE), "--tiny", "--json", "--workloads", "append_batch,reopen"],
        capture_output=True, text=True, check=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    result = json.loads(out.stdout)  # raises if anything else is on stdout
    assert isinstance(result, dict)
    assert set(result["workloads"]) == {"append_batch", "reopen"}
    for res in result["workloads"].values():
        _check_system_result(res)


def test_eventsourcing_non_durable_connection_runs_synchronous_normal(tmp_path: Path) -> None:
    s = compare.EventsourcingSystem(tmp_path / "es.db", durable=False)
    try:
        s.append_batch([("a", "t", b"x"), ("b", "t", b"y")])
        assert s.get("a") == b"x"
        assert s.synchronous() == 1  # NORMAL, still on the pooled connection
    finally:
        s.close()


_PLOT_SCRIPT = """
import importlib.util, sys
from pathlib import Path
if importlib.util.find_spec("matplotlib") is None:
    sys.exit(3)
spec = importlib.util.spec_from_file_location("engine_bench_compare", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = mod
spec.loader.exec_module(mod)
out = Path(sys.argv[2])
result = mod.run(mod.TINY, workloads=("append_durable",), workdir=out / "work")
mod.plot(result, out / "compare.png")
"""


def test_plot_writes_a_png(tmp_path: Path) -> None:
    # A subprocess: under pytest, tests/ is on sys.path, and a test package there may
    # shadow one of matplotlib's dependencies.
    proc = subprocess.run(
        [sys.executable, "-c", _PLOT_SCRIPT, str(COMPARE), str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr  # 3: matplotlib missing (it is a test extra)
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
