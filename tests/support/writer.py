"""A writer in another process, driven line by line over stdin (for the tests of
read-only handles, which must run in a different process from the writer).

Commands, one per line, each answered by one line ``ok <tx_id> <last_position>``:
``append STREAM TYPE DATA``, ``bulk N`` (N one-event transactions of 1 KiB),
``snapshot``, ``close`` (then the process exits).
"""

from __future__ import annotations

import subprocess
import sys
from typing import IO, Any

SCRIPT = r"""
import sys, engine
db = engine.open(sys.argv[1], sync=sys.argv[2], map_size=int(sys.argv[3]) or None)
print("ok", db.position.tx_id, db.last_position, flush=True)
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "append":
        db.append(args[0], args[1], args[2].encode())
    elif cmd == "bulk":
        for i in range(int(args[0])):
            db.append(f"bulk{i % 97}", "filled", bytes(1024))
    elif cmd == "snapshot":
        db.snapshot()
    elif cmd == "close":
        db.close()
        print("ok", 0, 0, flush=True)
        break
    print("ok", db.position.tx_id, db.last_position, flush=True)
"""


class Writer:
    """``engine.open(path)`` in a child process, owning the directory."""

    def __init__(self, path: str, sync: str = "none", map_size: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, path, sync, str(map_size)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.tx, self.position = self._answer()

    def _answer(self) -> tuple[int, int]:
        out: IO[str] = self.proc.stdout  # type: ignore[assignment]
        line = out.readline().split()
        if not line or line[0] != "ok":
            raise RuntimeError(f"the writer failed: {line!r} (exit {self.proc.poll()})")
        return int(line[1]), int(line[2])

    def send(self, *words: Any) -> tuple[int, int]:
        stdin: IO[str] = self.proc.stdin  # type: ignore[assignment]
        stdin.write(" ".join(map(str, words)) + "\n")
        stdin.flush()
        self.tx, self.position = self._answer()
        return self.tx, self.position

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send("close")
            self.proc.wait(30)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)
