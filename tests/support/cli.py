"""Running engine-admin in-process (click's CliRunner) for the CLI tests."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from engine.cli import main


def run(*args: str) -> tuple[int, str]:
    """``engine-admin ARGS``: (exit code, output)."""
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


def run_json(*args: str) -> tuple[int, Any]:
    """``engine-admin ARGS --json``: (exit code, the parsed JSON object)."""
    code, out = run(*args, "--json")
    return code, json.loads(out)
