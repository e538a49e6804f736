"""Smoke test of bench/compare.py and bench/comparison/: every workload runs on every
system at a tiny size, and the benchmarks' plumbing (sys.path, installed engine,
ignored result paths) does what bench/README.md says.

Checks the shape of the results and that every ``ops_per_s`` is a positive float;
no timing thresholds (those belong to the benchmarks, not to CI). ``bench/`` is on
``sys.path`` through ``pythonpath`` in pyproject.toml.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import benchlib
import pytest
from comparison import report, runner, systems, workloads
from comparison.sizes import TINY

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
COMPARE = BENCH / "compare.py"


def _check_system_result(workload: str, res: dict[str, Any]) -> None:
    assert set(res) == set(workloads.systems_for(workload, systems.SYSTEMS))
    for name, r in res.items():
        rate = r["ops_per_s"]
        assert type(rate) is float and rate > 0 and math.isfinite(rate), (name, r)


@pytest.mark.parametrize("workload", list(workloads.WORKLOADS))
def test_workload_runs_on_every_system(workload: str, tmp_path: Path) -> None:
    chosen = workloads.systems_for(workload, systems.SYSTEMS)
    res = workloads.WORKLOADS[workload].run(chosen, TINY, tmp_path)
    _check_system_result(workload, res)
    if workload == "append_batch":
        app = res["eventsourcing"]["application_api_ops_per_s"]
        assert type(app) is float and app > 0


def test_run_returns_the_documented_json_shape(tmp_path: Path) -> None:
    result = json.loads(report.to_json(runner.run(TINY, workdir=tmp_path)))
    assert set(result) == {"workloads", "machine", "sizes", "seconds", "skipped", "notes"}
    assert list(result["workloads"]) == list(workloads.WORKLOADS)
    assert list(result["workloads"]) == [
        "append_batch", "append_durable", "read_state", "read_stream",
        "read_stream_batched", "reopen", "backup_lag", "restore", "backup_flush",
        "backup_shipping", "backup_overhead",
    ]  # fmt: skip
    for w, res in result["workloads"].items():
        _check_system_result(w, res)
        assert res["engine"]["engine_speedup"] == pytest.approx(1.0)
        assert {r["unit"] for r in res.values()} == {workloads.WORKLOADS[w].unit}
    assert set(result["machine"]) >= {"cpu_count", "platform", "python", "date", "sqlite"}
    assert result["skipped"] == {}
    assert set(result["notes"]) == set(systems.SYSTEMS)


def test_every_system_declares_workloads_it_can_run() -> None:
    for name, cls in systems.SYSTEM_CLASSES.items():
        assert cls.name == name
        assert cls.workloads <= set(workloads.WORKLOADS), name
        for w in cls.workloads:
            assert workloads.systems_for(w, [name]) == [name]


def test_a_workload_gets_only_the_systems_that_declare_it() -> None:
    both = ["engine", "eventsourcing_app"]
    assert workloads.systems_for("append_batch", both) == both
    assert workloads.systems_for("read_state", both) == ["engine"]


def test_declaring_a_workload_without_its_interface_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class WriteOnly(systems.EventsourcingAppSystem):
        name = "write_only"
        workloads: ClassVar[frozenset[str]] = frozenset({"read_state"})

    monkeypatch.setitem(systems.SYSTEM_CLASSES, "write_only", WriteOnly)
    with pytest.raises(TypeError, match="needs a ReadableSystem"):
        workloads.systems_for("read_state", ["engine", "write_only"])


def test_cli_json_prints_exactly_one_object(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(COMPARE), "--tiny", "--json", "--workloads", "append_batch,reopen"],
        capture_output=True, text=True, check=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    result = json.loads(out.stdout)  # raises if anything else is on stdout
    assert isinstance(result, dict)
    assert set(result["workloads"]) == {"append_batch", "reopen"}
    for w, res in result["workloads"].items():
        _check_system_result(w, res)


def test_cli_rejects_an_unknown_system() -> None:
    out = subprocess.run(
        [sys.executable, str(COMPARE), "--tiny", "--systems", "engine,nosuchstore"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "unknown system or workload: nosuchstore" in out.stderr


_PATH_SCRIPT = """
import json, runpy, sys
before = list(sys.path)
ns = runpy.run_path(sys.argv[1], run_name="compare_under_test")
ns["_bench_on_path"]()
print(json.dumps([p for p in sys.path if p not in before]))
"""


def test_compare_puts_only_bench_on_sys_path(tmp_path: Path) -> None:
    # Never the checkout root: that would shadow an installed engine with the
    # source directory (no compiled core after a non-editable install).
    out = subprocess.run(
        [sys.executable, "-c", _PATH_SCRIPT, str(COMPARE)],
        capture_output=True, text=True, check=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert json.loads(out.stdout) == [str(BENCH)]


# Run with -S (no site-packages, so no real engine, editable or not): a stand-in lets
# benchlib import, then import_engine() chooses between two fake engine packages.
_IMPORT_SCRIPT = """
import json, sys, types
from pathlib import Path
sys.modules["engine"] = types.ModuleType("engine")
import benchlib
del sys.modules["engine"]
fake_root, site = Path(sys.argv[1]), sys.argv[2]
benchlib.REPO_ROOT = fake_root
if site:
    sys.path.insert(0, site)
sys.path.insert(0, str(fake_root))
before = list(sys.path)
engine = benchlib.import_engine()
print(json.dumps({"where": engine.WHERE, "path_kept": sys.path == before}))
"""


@pytest.mark.parametrize("installed", [True, False])
def test_import_engine_prefers_the_installed_package(tmp_path: Path, installed: bool) -> None:
    checkout, site = tmp_path / "checkout", tmp_path / "site"
    for where, base in (("checkout", checkout), ("installed", site)):
        (base / "engine").mkdir(parents=True)
        (base / "engine" / "__init__.py").write_text(f"WHERE = {where!r}\n")
    out = subprocess.run(
        [sys.executable, "-S", "-c", _IMPORT_SCRIPT, str(checkout), str(site) if installed else ""],
        capture_output=True, text=True, check=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(BENCH)},
    )  # fmt: skip
    got = json.loads(out.stdout)
    assert got == {"where": "installed" if installed else "checkout", "path_kept": True}


def test_results_go_to_an_ignored_directory() -> None:
    assert report.PLOT_PATH.parent == benchlib.LATEST_DIR
    assert shutil.which("git") is not None and (ROOT / ".git").exists(), \
        "run the suite from a git checkout (it checks what git ignores)"
    for path in (report.PLOT_PATH, benchlib.LATEST_DIR / "core_ratios.json"):
        rel = path.relative_to(ROOT)
        ignored = subprocess.run(["git", "check-ignore", "-q", str(rel)], cwd=ROOT, timeout=30)
        assert ignored.returncode == 0, f"{rel} is not git-ignored"
    for name in ("core_ratios.json", "compare.png"):
        rel = (benchlib.REFERENCE_DIR / name).relative_to(ROOT)
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(rel)], cwd=ROOT,
                                 capture_output=True, timeout=30)  # fmt: skip
        assert tracked.returncode == 0, f"{rel} is not committed"


def test_eventsourcing_non_durable_connection_runs_synchronous_normal(tmp_path: Path) -> None:
    s = systems.EventsourcingSystem(tmp_path / "es.db", durable=False)
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
sys.path.insert(0, sys.argv[1])
from comparison import report, runner
from comparison.sizes import TINY
out = Path(sys.argv[2])
result = runner.run(TINY, workloads=("append_durable",), workdir=out / "work")
report.plot(result, out / "compare.png")
"""


def test_plot_writes_a_png(tmp_path: Path) -> None:
    # A subprocess: under pytest, the checkout root is on sys.path, and a directory
    # there may shadow one of matplotlib's dependencies.
    proc = subprocess.run(
        [sys.executable, "-c", _PLOT_SCRIPT, str(BENCH), str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr  # 3: matplotlib missing (it is a test extra)
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
