"""What the admin endpoint costs a live database, measured in one run.

Usage::

    python bench/admin_overhead.py [--quick] [--json]

1. Commit throughput with a Prometheus scraper doing ``GET /metrics`` every 100 ms
   against the same database without one (target: under 2% slower). The scraper is
   another process, as Prometheus is (a scraper thread inside the measured process
   would add its own GIL hand-offs to the cost). One writer
   thread commits single events (``sync="none"``, so the commit path itself, not the
   disk, is measured) for a fixed time per round; rounds alternate between "no
   scraper" and "scraper", so machine drift hits both alike; medians are compared.
2. ``POST /backup/flush`` latency over the real socket with nothing pending (a file
   target), median and p99 over many calls.

Writes ``bench/results/latest/admin_overhead.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ only (benchlib)
from benchlib import LATEST_DIR, import_engine

engine = import_engine()


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


def _get(conn: _UnixHTTP, method: str, route: str, body: bytes | None = None) -> bytes:
    conn.request(method, route, body=body)
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"{route}: {r.status} {data[:200]!r}")
    return data


SCRAPER = """
import http.client, socket, sys, time
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(sys.argv[1])
c = C("localhost", timeout=30)
n = 0
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    c.request("GET", "/metrics"); r = c.getresponse(); r.read(); n += 1
    time.sleep(0.1)
print(n)
"""


def _commit_rate(db: object, seconds: float, scrape: bool, sock: str) -> tuple[float, int]:
    proc = None
    if scrape:
        proc = subprocess.Popen([sys.executable, "-c", SCRAPER, sock, str(seconds)],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(0.05)
    n = 0
    end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    append = db.append  # type: ignore[attr-defined]
    while time.perf_counter() < end:
        for _ in range(200):
            append("s", "e", b"x" * 100)
        n += 200
    rate = n / (time.perf_counter() - t0)
    scrapes = 0
    if proc is not None:
        out, _ = proc.communicate(timeout=60)
        scrapes = int(out.strip() or 0)
    return rate, scrapes


def run(quick: bool) -> dict[str, object]:
    rounds, seconds, flushes = (4, 1.0, 100) if quick else (8, 2.0, 400)
    root = tempfile.mkdtemp(prefix="engine-admin-bench-")
    db = engine.open(f"{root}/db", sync="none", admin_socket=True,
                     backup=f"file://{root}/target")
    sock = f"{root}/db/admin.sock"
    try:
        _commit_rate(db, 0.5, False, sock)  # warm-up
        plain, scraped, n_scrapes = [], [], 0
        for i in range(rounds):
            for scrape in ((False, True) if i % 2 == 0 else (True, False)):
                rate, s = _commit_rate(db, seconds, scrape, sock)
                (scraped if scrape else plain).append(rate)
                n_scrapes += s
        db.backup.flush()
        conn = _UnixHTTP(sock)
        lat = []
        for _ in range(flushes):
            t0 = time.perf_counter()
            _get(conn, "POST", "/backup/flush", b"{}")
            lat.append(time.perf_counter() - t0)
        conn.close()
    finally:
        db.close()
    lat.sort()
    p_plain, p_scraped = statistics.median(plain), statistics.median(scraped)
    return {
        "commit_rate_no_scraper": round(p_plain), "commit_rate_scraper_10hz": round(p_scraped),
        "scraper_overhead_percent": round(100 * (1 - p_scraped / p_plain), 2),
        "scrapes": n_scrapes, "rounds": rounds, "seconds_per_round": seconds,
        "flush_nothing_pending_ms": {"median": round(statistics.median(lat) * 1e3, 3),
                                     "p99": round(lat[int(len(lat) * 0.99) - 1] * 1e3, 3),
                                     "calls": len(lat)},
        "targets": {"scraper_overhead_percent": "< 2"},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = run(args.quick)
    LATEST_DIR.mkdir(parents=True, exist_ok=True)
    (LATEST_DIR / "admin_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:28s} {v}")


if __name__ == "__main__":
    main()
