"""The admin endpoint's routes: JSON over HTTP, answered from the live database.

Each route is a method returning ``(status, payload)``; errors are
``{"error": message, "code": name}`` with 400/404/405/409/503 as fits. The routes
hold the database weakly (the server is one of its services: no cycle).
"""

from __future__ import annotations

import json
import os
import time
import weakref
from collections.abc import Callable
from typing import Any

from .. import layout
from ..errors import (
    BackupError,
    BackupFencedError,
    BackupPausedError,
    DatabaseClosedError,
    EngineError,
    TransientBackupError,
)
from ..ops.status import StatusReport, snapshot_files
from . import metrics

Reply = tuple[int, Any]  # (HTTP status, JSON payload or bytes for /metrics)
MAX_BODY = 64 << 10


class RouteError(Exception):
    """An error reply: HTTP ``status``, machine-readable ``code``, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Routes:
    """The routes of one database's admin endpoint."""

    def __init__(self, db: Any, server_stats: Callable[[], dict[str, int]]) -> None:
        self._db = weakref.ref(db)
        self._started = time.time()
        self._server_stats = server_stats
        self.registry = metrics.make_registry(db, self._server_metrics)
        self.table: dict[str, dict[str, Callable[[bytes], Reply]]] = {
            "/status": {"GET": self.status},
            "/metrics": {"GET": self.metrics},
            "/backup/status": {"GET": self.backup_status},
            "/backup/flush": {"POST": self.backup_flush},
            "/snapshot": {"POST": self.snapshot},
            "/backup/full": {"POST": self.backup_full},
        }

    def _live(self) -> Any:
        db = self._db()
        if db is None or db.closed:
            raise RouteError(503, "closed", "the database is closing")
        return db

    def dispatch(self, method: str, path: str, body: bytes) -> tuple[Reply, list[str]]:
        """``(reply, allowed methods)``; never raises."""
        route = self.table.get(path.split("?", 1)[0])
        if route is None:
            return (404, {"error": f"no route {path!r}; routes: {', '.join(self.table)}",
                          "code": "not_found"}), []
        fn = route.get(method)
        if fn is None:
            return (405, {"error": f"{path} takes {', '.join(route)}, not {method}",
                          "code": "method_not_allowed"}), list(route)
        try:
            return fn(body), []
        except RouteError as exc:
            return (exc.status, {"error": str(exc), "code": exc.code}), []
        except DatabaseClosedError as exc:
            return (503, {"error": str(exc), "code": "closed"}), []
        except EngineError as exc:
            return (500, {"error": f"{type(exc).__name__}: {exc}", "code": "engine_error"}), []

    # ------------------------------------------------------------------ routes
    def status(self, _body: bytes) -> Reply:
        """What ``engine-admin status --json`` prints, plus the live process's facts."""
        db = self._live()
        warnings = list(db.open_warnings)
        report = StatusReport(path=db.path, verdict="degraded" if warnings else "ok",
                              problem="; ".join(warnings) or None, log=db.log_info(),
                              snapshots=snapshot_files(db.path))
        options = db.options.to_json()
        options["backup"] = None if db.options.backup is None else self._backup_target(db)
        payload = report.to_json()
        payload.update(live=True, pid=os.getpid(), uptime_seconds=round(time.time() -
                                                                       self._started, 3),
                       options=options, backup=self._backup_json(db),
                       admin_socket=layout.admin_socket(db.path))
        return 200, payload

    def metrics(self, _body: bytes) -> Reply:
        self._live()
        return 200, metrics.render(self.registry)

    def backup_status(self, _body: bytes) -> Reply:
        db = self._live()
        st = self._backup_json(db)
        if st is None:
            raise RouteError(404, "no_backup", f"{db.path} was opened without backup=")
        return 200, {"ok": st["state"] in ("running", "starting", "paused"), **st}

    def backup_flush(self, body: bytes) -> Reply:
        db = self._live()
        timeout = _json_number(body, "timeout")
        try:
            backup = db.backup
        except EngineError:
            raise RouteError(404, "no_backup", f"{db.path} was opened without backup="
                             ) from None
        try:
            result = backup.flush(timeout)
        except (BackupPausedError, BackupFencedError) as exc:
            raise RouteError(409, type(exc).__name__, str(exc)) from None
        except TransientBackupError as exc:
            raise RouteError(503, "TransientBackupError", str(exc)) from None
        except BackupError as exc:
            raise RouteError(503, type(exc).__name__, str(exc)) from None
        return 200, {"ok": True, **result.to_json()}

    def backup_full(self, body: bytes) -> Reply:
        """A full backup of the live database: body ``{"to": URL, "retries": N,
        "backoff_max": S, "fault_rate": R, "fault_seed": S}`` (only ``to`` required);
        the reply is ``BackupInfo.to_json()``. Runs in the connection's thread."""
        db = self._live()
        obj = _json_object(body)
        url = obj.get("to")
        if not isinstance(url, str) or not url:
            raise RouteError(400, "bad_field", 'give the target: {"to": "s3://bucket/prefix"}')
        kwargs: dict[str, Any] = {}
        for name, kind in (("retries", int), ("backoff_max", float), ("fault_rate", float),
                           ("fault_seed", int)):
            value = obj.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 \
                    or (kind is int and not isinstance(value, int)):
                raise RouteError(400, "bad_field", f"{name} must be a number >= 0, got "
                                 f"{value!r}")
            kwargs[name] = value
        try:
            info = db.backup_full(url, **kwargs)
        except BackupError as exc:
            raise RouteError(503 if exc.transient else 502, type(exc).__name__,
                             str(exc)) from None
        return 200, info.to_json()

    def snapshot(self, _body: bytes) -> Reply:
        db = self._live()
        info = db.snapshot()
        return 200, {"ok": True, "path": info.path, "epoch": info.epoch, "tx_id": info.tx_id,
                     "streams": info.streams, "bytes": info.bytes}

    # ----------------------------------------------------------------- helpers
    @staticmethod
    def _backup_json(db: Any) -> dict[str, Any] | None:
        try:
            backup = db.backup
        except EngineError:
            return None
        return dict(backup.status().to_json())

    @staticmethod
    def _backup_target(db: Any) -> str:
        try:
            return str(db.backup.target.url)  # safe: never credentials
        except EngineError:
            return "?"

    def _server_metrics(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self._server_stats()
        yield CounterMetricFamily("engine_admin_requests", "Admin requests answered.",
                                  value=s["requests"])
        yield CounterMetricFamily("engine_admin_refused", "Admin connections refused "
                                  "(another uid, or too many at once).", value=s["refused"])
        yield GaugeMetricFamily("engine_admin_connections", "Open admin connections.",
                                value=s["connections"])


def _json_object(body: bytes) -> dict[str, Any]:
    """The JSON object of a body ({} when there is none)."""
    if not body.strip():
        return {}
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RouteError(400, "bad_json", "the body is not JSON") from None
    if not isinstance(obj, dict):
        raise RouteError(400, "bad_json", "the body must be a JSON object")
    return obj


def _json_number(body: bytes, name: str, *, minimum: float = 0.0) -> float | None:
    """The optional number ``name`` of a JSON object body (None if absent or no body)."""
    if not body.strip():
        return None
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RouteError(400, "bad_json", "the body is not JSON; send e.g. "
                         '{"timeout": 10}') from None
    if not isinstance(obj, dict):
        raise RouteError(400, "bad_json", "the body must be a JSON object")
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum:
        raise RouteError(400, "bad_field", f"{name} must be a number >= {minimum:g}, got "
                         f"{value!r}")
    return float(value)
