"""The measuring method shared by every workload: rotated rounds, timed blocks, medians.

In each round every system runs the same operations, and the order of the systems
rotates from round to round, so machine drift (other jobs, page-cache or
CPU-frequency changes) hits all systems alike. The garbage collector is run before
each timed block. ``ops_per_s`` is the median over rounds.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from .systems import Event, System


def rotations(systems: list[str], rounds: int) -> Iterator[list[str]]:
    """``rounds`` orders of ``systems``, each starting one system further on."""
    n = len(systems)
    for r in range(rounds):
        k = r % n
        yield systems[k:] + systems[:k]


def timed(fn: Callable[[], Any]) -> float:
    """Seconds ``fn()`` takes, after a garbage collection."""
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def summarise(per_round: dict[str, list[float]], ops: int, **extra: Any) -> dict[str, Any]:
    """Each system's result entry from its per-round seconds for ``ops`` operations."""
    out: dict[str, Any] = {}
    for name, secs in per_round.items():
        rates = [ops / s for s in secs]
        out[name] = {
            "ops_per_s": float(statistics.median(rates)),
            "ops_per_s_best": float(max(rates)),
            "ops_per_round": ops,
            "rounds": len(secs),
            "unit": "",
            **extra,
        }
    return out


def populate(system: System, events: list[Event], tx_events: int) -> None:
    """Write ``events`` in transactions of ``tx_events`` (untimed set-up)."""
    for i in range(0, len(events), tx_events):
        system.append_batch(events[i : i + tx_events])
