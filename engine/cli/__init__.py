"""``engine-admin``: operate a database directory from the shell.

Every command works on a closed database directory (it takes the directory lock,
so it refuses politely while a process has the database open), prints a readable
report on a terminal, prints one JSON object with ``--json``, and exits non-zero
on failure: 1 when the command ran and found a problem or was refused, 2 for usage
errors. Long work (verify) shows a progress bar on a terminal.

The commands only parse arguments and render: the work is done by the library
functions in :mod:`engine.ops`. One module per command group.

The command modules are imported only when their command runs (``app.COMMANDS``):
``engine-admin restore`` pays for restore's imports, not for every command's.
"""

from __future__ import annotations

from .app import main

__all__ = ["main"]
