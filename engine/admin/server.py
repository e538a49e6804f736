"""The admin server: HTTP/1.1 over the Unix socket ``DIR/admin.sock``.

Transport and safety only; what each route answers is ``engine.admin.routes``.
HTTP parsing is the standard library's (``http.server.BaseHTTPRequestHandler``):
no hand-written parser, no extra dependency for a handful of local requests.

Safety (it must never hurt the host process):

* The socket is **0600 from the start**: it is bound inside a private ``0700``
  directory under a ``0177`` umask, chmod'ed, then renamed into place, so there is
  no moment at which another user could connect. No TCP listener exists.
* Each connection's peer is checked with ``SO_PEERCRED``: another uid is refused
  (root excepted) before a byte is read.
* Bounded: at most ``MAX_CONNECTIONS`` at once (more are answered 503 and closed),
  a read/write timeout per connection (slow or stuck clients are dropped), at most
  100 headers and 64 KiB lines (the standard library's limits), and 64 KiB bodies.
* Work runs in the connection's own thread, never on the commit path.
* ``close()`` stops accepting, shuts down every open connection (a client stuck
  mid-request is cut off) and removes the socket, bounded in time.

A stale socket left by a dead process is replaced; a socket that answers (a live
process) is never touched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
import tempfile
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from .. import layout
from ..errors import EngineError, storage_error
from . import metrics
from .routes import MAX_BODY, Routes

log = logging.getLogger("engine.admin")

MAX_CONNECTIONS = 16
IO_TIMEOUT_SECONDS = 5.0
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process on the other end of a Unix socket (SO_PEERCRED)."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(raw)[1])


class _Handler(BaseHTTPRequestHandler):
    """One connection. ``server`` is the :class:`AdminServer`."""

    protocol_version = "HTTP/1.1"
    server_version = "engine-admin"
    timeout = IO_TIMEOUT_SECONDS
    server: AdminServer  # type: ignore[assignment]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("admin %s", format % args)

    def _reply(self, status: int, payload: Any, allow: list[str] | None = None) -> None:
        if isinstance(payload, bytes):
            body, ctype = payload, metrics.CONTENT_TYPE
        else:
            body, ctype = (json.dumps(payload, default=str) + "\n").encode(), \
                "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if allow:
            self.send_header("Allow", ", ".join(allow))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.server.count_request()

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._reply(411, {"error": "send a Content-Length, not a chunked body",
                              "code": "length_required"})
            return None
        if length is None:
            return b""
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self._reply(400, {"error": f"bad Content-Length {length!r}", "code": "bad_length"})
            return None
        if n > MAX_BODY:
            self.close_connection = True
            self._reply(413, {"error": f"the body is {n} bytes; the limit is {MAX_BODY}",
                              "code": "too_large"})
            return None
        return self.rfile.read(n)

    def _serve(self) -> None:
        body = self._body()
        if body is None:
            return
        (status, payload), allow = self.server.routes.dispatch(self.command, self.path, body)
        self._reply(status, payload, allow)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """The standard library's parse errors (bad request line, too many headers,
        a line too long) as the endpoint's JSON error body."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self._reply(code, {"error": message or explain or "bad request",
                               "code": "bad_request"})


class AdminServer:
    """Serves one database's admin endpoint on ``DIR/admin.sock`` until :meth:`close`."""

    def __init__(self, db: Any) -> None:
        self.path = layout.admin_socket(db.path)
        self.routes = Routes(db, self.stats)
        self._lock = threading.Lock()
        # Guarded by _lock: open connections and their threads; counters.
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._requests = 0
        self._refused = 0
        self._closing = False
        self._listener = self._bind(db.path)
        try:  # a failure from here on closes the listener and removes the socket again
            self._inode = os.stat(self.path).st_ino
            self._thread = threading.Thread(target=self._accept_loop,
                                            name=f"engine-admin:{db.path}", daemon=True)
            self._thread.start()
        except BaseException as exc:
            self._listener.close()
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            if isinstance(exc, OSError):
                raise storage_error(exc, f"cannot serve the admin socket {self.path}: {exc}",
                                    directory=db.path, writing=self.path,
                                    consequence="the database was not opened") from exc
            raise

    # ------------------------------------------------------------- binding
    def _bind(self, directory: str) -> socket.socket:
        _clear_stale(self.path)
        try:
            private = tempfile.mkdtemp(prefix=".admin-", dir=directory)  # 0700
        except OSError as exc:
            raise storage_error(exc, f"cannot create the admin socket {self.path}: {exc}",
                                directory=directory, writing=self.path,
                                consequence="the database was not opened") from exc
        tmp = os.path.join(private, layout.ADMIN_SOCKET)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o177)
            try:
                sock.bind(tmp)
            finally:
                os.umask(old)
            os.chmod(tmp, 0o600)
            sock.listen(MAX_CONNECTIONS)
            os.rename(tmp, self.path)
        except OSError as exc:
            sock.close()
            raise storage_error(exc, f"cannot create the admin socket {self.path}: {exc}",
                                directory=directory, writing=self.path,
                                consequence="the database was not opened") from exc
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            with contextlib.suppress(OSError):
                os.rmdir(private)
        sock.settimeout(1.0)  # accept() wakes at least once a second to see a close
        return sock

    # ------------------------------------------------------------ serving
    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                if self._closing:
                    return
                continue
            except OSError:
                return  # the listener was shut down by close()
            if self._closing:
                conn.close()
                return
            self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        try:
            uid = peer_uid(conn)
        except OSError:
            conn.close()
            return
        if uid != os.getuid() and uid != 0:
            log.warning("admin socket %s: refused a connection from uid %d", self.path, uid)
            with self._lock:
                self._refused += 1
            conn.close()
            return
        with self._lock:
            busy = len(self._conns) >= MAX_CONNECTIONS
            if busy:
                self._refused += 1
        if busy:
            _refuse_busy(conn)
            return
        conn.settimeout(IO_TIMEOUT_SECONDS)
        t = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name="engine-admin-conn")
        with self._lock:
            self._conns[conn] = t
        t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            _Handler(conn, "admin.sock", self)  # type: ignore[arg-type]
        except (OSError, ValueError):
            pass  # a client that went away, timed out, or was cut off by close()
        except Exception:  # a bug: never take the host down for it
            log.exception("admin socket %s: a request failed", self.path)
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            with self._lock:
                self._conns.pop(conn, None)

    def count_request(self) -> None:
        with self._lock:
            self._requests += 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self._requests, "refused": self._refused,
                    "connections": len(self._conns)}

    # ------------------------------------------------------------- closing
    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, cut off open connections, remove the socket."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            conns = list(self._conns.items())
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout)
        for conn, _t in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for _conn, t in conns:
            t.join(timeout)
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:  # ours, not a successor's
                os.unlink(self.path)


def _refuse_busy(conn: socket.socket) -> None:
    body = json.dumps({"error": f"the admin endpoint serves at most {MAX_CONNECTIONS} "
                                "connections at once; retry", "code": "busy"}).encode()
    with contextlib.suppress(OSError):
        conn.settimeout(1.0)
        conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: " + str(len(body)).encode() +
                     b"\r\n\r\n" + body)
    conn.close()


def _clear_stale(path: str) -> None:
    """Remove a socket nobody answers on; refuse to touch one that answers, or a non-socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    import stat

    if not stat.S_ISSOCK(st.st_mode):
        raise EngineError(f"{path} exists and is not a socket; move it away to use "
                          "admin_socket=True")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # stale: its process is gone
        return
    except OSError as exc:
        raise EngineError(f"cannot tell whether {path} is in use ({exc}); it was not "
                          "touched") from exc
    finally:
        probe.close()
    raise EngineError(f"{path} is the admin socket of a live process; it was not touched. "
                      "Close that process's database first.")
