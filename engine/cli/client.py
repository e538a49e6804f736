"""Reaching a live process: ``engine-admin`` over ``DIR/admin.sock``.

When a process holds the database (its ``DIR/LOCK``), commands that have a route
(status, snapshot, backup status, backup flush) ask that process through its admin
socket; without a socket they fail naming the holder's pid and the fix.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any

from .. import layout
from ..errors import DatabaseLockedError, EngineError


class AdminError(EngineError):
    """The live process answered with an error (its message and code are kept)."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def request(path: str, method: str, route: str, body: dict[str, Any] | None = None,
            timeout: float = 30.0) -> Any:
    """One request to the admin socket of the database at ``path``; the JSON reply (or
    the text of /metrics). Raises :class:`AdminError` for an error reply."""
    sock = layout.admin_socket(path)
    conn = _UnixConnection(sock, timeout)
    data = None if body is None else json.dumps(body).encode()
    try:
        conn.request(method, route, body=data,
                     headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        raw = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise EngineError(f"the admin socket {sock} did not answer ({exc}); is the process "
                          "alive?") from exc
    finally:
        conn.close()
    if route == "/metrics" and resp.status == 200:
        return raw.decode()
    try:
        payload = json.loads(raw)
    except ValueError:
        raise EngineError(f"the admin socket {sock} sent a reply that is not JSON") from None
    if resp.status >= 400:
        raise AdminError(str(payload.get("error", raw[:200])), resp.status,
                         str(payload.get("code", "")))
    return payload


def live_or_fail(path: str, exc: DatabaseLockedError) -> None:
    """Return if the holder of ``path`` serves an admin socket; else raise saying how."""
    if os.path.exists(layout.admin_socket(path)):
        return
    who = f"process {exc.holder_pid}" if exc.holder_pid else "another process"
    raise DatabaseLockedError(
        f"{path} is open in {who}, which serves no admin socket. Open it there with "
        "engine.open(..., admin_socket=True) to let engine-admin reach it, or stop it first.",
        exc.holder_pid) from None
