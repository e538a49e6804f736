"""Output of a result: the table (rich, or plain text), the JSON line, the plot."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from benchlib import LATEST_DIR

from .workloads import WORKLOADS

PLOT_PATH = LATEST_DIR / "compare.png"  # git-ignored; the committed one is in reference/


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.2f}"


def to_json(result: dict[str, Any]) -> str:
    """The result as one line of JSON (what ``--json`` prints)."""
    return json.dumps(result)


def _rows(result: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for w, res in result["workloads"].items():
        for name, r in res.items():
            sp = r.get("engine_speedup")
            rows.append((w, name, fmt_rate(r["ops_per_s"]), r["unit"],
                         "-" if sp is None else f"{sp:.2f}x"))  # fmt: skip
            if "application_api_ops_per_s" in r:
                sp = r.get("engine_speedup_vs_application_api")
                rows.append((w, f"{name}/app", fmt_rate(r["application_api_ops_per_s"]),
                             r["unit"], "-" if sp is None else f"{sp:.2f}x"))  # fmt: skip
    return rows


def targets(result: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every ``(workload, target name, {value, target, met, meaning})`` in the result
    (the backup workloads put theirs in the engine's entry under ``targets``)."""
    return [(w, name, t) for w, res in result["workloads"].items()
            for r in res.values() for name, t in r.get("targets", {}).items()]  # fmt: skip


def print_table(result: dict[str, Any]) -> None:
    """One row per workload and system (ops/s, unit, engine ÷ system), then each entry's
    summary (details), the targets (MET/MISSED) and the notes."""
    rows = _rows(result)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain fallback
        print(f"{'workload':15s} {'system':14s} {'ops/s':>14s} {'unit':8s} {'engine/sys':>10s}")
        for row in rows:
            print(f"{row[0]:15s} {row[1]:14s} {row[2]:>14s} {row[3]:8s} {row[4]:>10s}")
    else:
        table = Table(title="engine vs alternatives (median ops/s over rounds)")
        for col, just in (("workload", "left"), ("system", "left"), ("ops/s", "right"),
                          ("unit", "left"), ("engine ÷ system", "right")):  # fmt: skip
            table.add_column(col, justify=just)  # type: ignore[arg-type]
        last = None
        for row in rows:
            table.add_row(*(row if row[0] != last else ("", *row[1:])))
            last = row[0]
        Console().print(table)
    details = [(w, name, r["summary"]) for w, res in result["workloads"].items()
               for name, r in res.items() if r.get("summary")]  # fmt: skip
    if details:
        print("details:")
        for w, name, text in details:
            print(f"  {w}/{name}: {text}")
    found = targets(result)
    if found:
        print("targets:")
        for w, name, t in found:
            print(f"  {w}/{name}: {t['value']:.4g} (target {t['target']:g}) "
                  f"{'MET' if t['met'] else 'MISSED'}: {t['meaning']}")  # fmt: skip
    print("notes:")
    for name, note in result["notes"].items():
        print(f"  {name}: {note}")
    for w, why in result["skipped"].items():
        print(f"  {w}: {why}")
    print(f"  {result['machine']['cpu_count']} CPUs, {result['machine']['platform']}, "
          f"python {result['machine']['python']}, {result['seconds']}s")  # fmt: skip


def plot(result: dict[str, Any], path: Path = PLOT_PATH) -> Path:
    """One subplot per workload, one bar per system (log scale), the notes in a spare panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(result["workloads"])
    cols = min(3, len(workloads))
    rows = (len(workloads) + 1 + cols - 1) // cols  # +1: the notes panel
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False)
    flat = list(axes.flat)
    colours = {"engine": "#d62728", "lmdb": "#1f77b4", "sqlite": "#2ca02c",
               "eventsourcing": "#9467bd", "eventsourcing/app": "#c5b0d5",
               "litestream": "#ff7f0e"}  # fmt: skip
    for ax, w in zip(flat, workloads, strict=False):
        res = result["workloads"][w]
        names = list(res)
        vals = [res[n]["ops_per_s"] for n in names]
        if "application_api_ops_per_s" in res.get("eventsourcing", {}):
            names.append("eventsourcing/app")
            vals.append(res["eventsourcing"]["application_api_ops_per_s"])
        bars = ax.bar(names, vals, color=[colours.get(n, "grey") for n in names])
        ax.set_yscale("log")
        ax.set_ylim(min(vals) / 5, max(vals) * 3)  # bars start well below the smallest
        ax.set_title(w)
        unit = WORKLOADS[w].unit
        per_s = "1 / median lag (1/s)" if unit == "1/lag" else f"{unit}/s"
        ax.set_ylabel(f"{per_s} (log scale)")
        ax.tick_params(axis="x", rotation=25)
        for b, v in zip(bars, vals, strict=True):
            ax.annotate(fmt_rate(v), (b.get_x() + b.get_width() / 2, v), ha="center",
                        va="bottom", fontsize=8)  # fmt: skip
    notes = flat[len(workloads)]
    notes.axis("off")
    m = result["machine"]
    text = [f"{m['cpu_count']} CPUs, python {m['python']}, {m['date']}",
            "median ops/s over rotated rounds; higher is better", ""]  # fmt: skip
    text += [f"{k}: {v}" for k, v in result["notes"].items()]
    text += [f"{k}: {v}" for k, v in result["skipped"].items()]
    notes.text(0, 1, "\n".join(textwrap.fill(t, 60) for t in text), va="top", fontsize=7.5,
               family="monospace")  # fmt: skip
    for ax in flat[len(workloads) + 1 :]:
        ax.axis("off")
    fig.suptitle("engine vs alternatives")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
