"""The admin endpoint: real HTTP over DIR/admin.sock, its routes and errors, the socket's
permissions and peer check, hostile clients, and close with clients connected."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import stat
import threading
import time

import pytest

import engine
from engine import layout
from engine.admin import server as admin_server


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def call(db: engine.Database, method: str, route: str, body: bytes | None = None):  # type: ignore[no-untyped-def]
    c = UnixHTTP(layout.admin_socket(db.path))
    try:
        c.request(method, route, body=body)
        r = c.getresponse()
        raw = r.read()
        return r.status, (raw.decode() if route == "/metrics" and r.status == 200
                          else json.loads(raw)), dict(r.getheaders())
    finally:
        c.close()


def raw_exchange(path: str, data: bytes, *, shut: bool = True, timeout: float = 10) -> bytes:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


@pytest.fixture
def live(tmp_path):  # type: ignore[no-untyped-def]
    db = engine.open(str(tmp_path / "db"), admin_socket=True,
                     backup=f"file://{tmp_path}/target")
    for i in range(10):
        db.append(f"s{i % 3}", "e", b"%d" % i)
    yield db
    db.close()


def test_the_socket_is_owner_only_and_removed_on_close(live):
    path = layout.admin_socket(live.path)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert not [n for n in os.listdir(live.path) if n.startswith(".admin-")]
    live.close()
    assert not os.path.exists(path)


def test_status_route(live):
    code, body, headers = call(live, "GET", "/status")
    assert code == 200 and headers["Content-Type"] == "application/json"
    assert body["verdict"] == "ok" and body["live"] is True and body["pid"] == os.getpid()
    assert body["log"]["last_tx"] == 10 and body["db_id"] == live.db_id
    assert body["uptime_seconds"] >= 0 and body["options"]["sync"] == "commit"
    assert body["backup"]["state"] in ("running", "starting")
    assert body["options"]["backup"].startswith("file://")


def test_snapshot_route(live):
    code, body, _ = call(live, "POST", "/snapshot")
    assert code == 200 and body["tx_id"] == 10 and os.path.exists(body["path"])


def test_backup_routes(live):
    code, body, _ = call(live, "POST", "/backup/flush", json.dumps({"timeout": 10}).encode())
    assert code == 200 and body["flushed_through_tx"] == 10 and body["pending_txs"] == 0
    assert set(body) >= {"epoch", "flushed_through_tx", "pending_txs", "seconds"}
    code, body, _ = call(live, "POST", "/backup/flush")  # no body: the default timeout
    assert code == 200
    code, body, _ = call(live, "GET", "/backup/status")
    assert code == 200 and body["checkpoint_tx"] == 10 and body["lag_txs"] == 0


def test_flush_errors_are_json_with_a_code(live):
    code, body, _ = call(live, "POST", "/backup/flush", b"{not json")
    assert code == 400 and body["code"] == "bad_json"
    code, body, _ = call(live, "POST", "/backup/flush", b'{"timeout": -1}')
    assert code == 400 and body["code"] == "bad_field"
    live.backup.pause()
    code, body, _ = call(live, "POST", "/backup/flush", b'{"timeout": 1}')
    assert code == 409 and body["code"] == "BackupPausedError"


def test_backup_routes_without_a_backup(tmp_path):
    with engine.open(str(tmp_path / "db"), admin_socket=True) as db:
        code, body, _ = call(db, "GET", "/backup/status")
        assert code == 404 and body["code"] == "no_backup"
        code, body, _ = call(db, "POST", "/backup/flush")
        assert code == 404 and body["code"] == "no_backup"


def test_unknown_routes_and_wrong_methods(live):
    code, body, _ = call(live, "GET", "/nope")
    assert code == 404 and body["code"] == "not_found" and "/status" in body["error"]
    code, body, headers = call(live, "POST", "/status")
    assert code == 405 and headers["Allow"] == "GET"
    code, body, headers = call(live, "GET", "/snapshot")
    assert code == 405 and headers["Allow"] == "POST"
    code, body, _ = call(live, "DELETE", "/backup/flush")
    assert code == 405


def test_metrics_route_serves_prometheus_text(live):
    live.snapshot()
    live.backup.flush()
    code, text, headers = call(live, "GET", "/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain")
    for name in ("engine_commits_total 10.0", "engine_events_total 10.0",
                 "engine_commit_latency_seconds_bucket", "engine_commit_group_size_bucket",
                 "engine_snapshots_total 1.0", "engine_snapshot_last_bytes",
                 "engine_state_streams", "engine_log_bytes", "engine_backup_checkpoint_tx 10.0",
                 "engine_backup_lag_txs 0.0", "engine_backup_lag_seconds",
                 "engine_backup_segments_shipped_total", "engine_backup_bytes_shipped_total",
                 "engine_backup_flush_seconds_bucket", "engine_backup_stale_requests_ignored",
                 'engine_backup_state{state="running"} 1.0', "backup_retry_attempts_total",
                 "engine_commit_failures_total", "engine_admin_requests_total"):
        assert name in text, name
    # one registry per database: a second database's metrics are its own
    assert [ln for ln in text.splitlines() if ln.startswith("engine_commits_total ")] == \
        ["engine_commits_total 10.0"]


def test_garbage_and_oversized_requests_are_answered_or_dropped(live):
    path = layout.admin_socket(live.path)
    # not HTTP/1.x at all: the standard library answers HTTP/0.9-style, a bare body
    assert b'"code": "bad_request"' in raw_exchange(path, b"\x00\xffnot http at all\r\n\r\n")
    assert b" 501 " in raw_exchange(path, b"BREW /coffee HTTP/1.1\r\n\r\n")
    assert b" 400 " in raw_exchange(path, b"GET /status HTTP/1.1\r\nContent-Length: x\r\n\r\n")
    many = b"GET /status HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) \
        + b"\r\n"
    assert b" 431 " in raw_exchange(path, many)
    long_line = b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n"
    assert b" 414 " in raw_exchange(path, long_line)
    huge = b"POST /backup/flush HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n{"
    assert b" 413 " in raw_exchange(path, huge)
    chunked = b"POST /snapshot HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert b" 411 " in raw_exchange(path, chunked)
    # half-closed mid-request: the server gives up on it, nothing breaks
    raw_exchange(path, b"GET /stat", shut=True, timeout=2)
    assert call(live, "GET", "/status")[0] == 200


def test_a_slow_client_is_timed_out(live, monkeypatch):
    path = layout.admin_socket(live.path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(path)
    s.sendall(b"GET /status HTTP/1.1\r\n")  # and never the rest
    t0 = time.monotonic()
    got = s.recv(100)  # the server drops it after its I/O timeout
    assert got == b"" and time.monotonic() - t0 < admin_server.IO_TIMEOUT_SECONDS + 5
    s.close()


def test_100_concurrent_clients_while_writes_go_on(live):
    stop = threading.Event()
    written = []

    def writer() -> None:
        while not stop.is_set():
            written.append(live.append("w", "e", b"x"))

    w = threading.Thread(target=writer)
    w.start()
    statuses: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        try:
            code = call(live, "GET", "/status")[0]
        except (OSError, http.client.HTTPException):
            code = -1  # dropped: allowed, as long as the host is unharmed
        with lock:
            statuses.append(code)

    cs = [threading.Thread(target=client) for _ in range(100)]
    for c in cs:
        c.start()
    for c in cs:
        c.join(60)
    stop.set()
    w.join()
    assert len(statuses) == 100 and set(statuses) <= {200, 503, -1}
    assert statuses.count(200) >= 16
    # nothing lost: every acknowledged write is there
    assert live.version("w") == len(written) and live.position.tx_id == 10 + len(written)


def test_close_with_a_client_stuck_mid_request(tmp_path):
    db = engine.open(str(tmp_path / "db"), admin_socket=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(layout.admin_socket(db.path))
    s.sendall(b"POST /snapshot HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")  # stuck in the body
    time.sleep(0.1)
    t0 = time.monotonic()
    db.close()
    assert time.monotonic() - t0 < 3
    s.close()


def test_another_uid_is_refused():
    """The socket file is 0600, and even if it were not, the peer check refuses."""
    import shutil
    import tempfile

    root = tempfile.mkdtemp(prefix="engine-uid-")
    os.chmod(root, 0o755)  # traversable by the other uid: only the socket's mode protects
    live = engine.open(os.path.join(root, "db"), admin_socket=True)
    try:
        _another_uid_is_refused(live)
    finally:
        live.close()
        shutil.rmtree(root)


def _another_uid_is_refused(live: engine.Database) -> None:
    path = layout.admin_socket(live.path)
    os.chmod(live.path, 0o755)
    if os.getuid() != 0:
        pytest.fail("this test switches uid in a child: it must run as root (CI does)")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become nobody and try
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            outcome = []
            for chmod_first in (False, True):
                try:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.settimeout(5)
                    s.connect(path)
                    s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
                    outcome.append(s.recv(100).decode() or "closed")
                except PermissionError:
                    outcome.append("EACCES")
                except OSError as exc:
                    outcome.append(type(exc).__name__)
                if not chmod_first:
                    os.write(w, b"?")  # ask the parent to widen the socket
                    time.sleep(0.5)
            os.write(w, ("|" + json.dumps(outcome)).encode())
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"?"
    os.chmod(path, 0o666)  # widen it: now only the peer check stands in the way
    data = b""
    while chunk := os.read(r, 1000):
        data += chunk
    os.waitpid(pid, 0)
    outcome = json.loads(data.decode().lstrip("|"))
    assert outcome[0] == "EACCES"  # 0600: cannot even connect
    assert outcome[1] in ("closed", "ConnectionResetError", "BrokenPipeError")  # peer check
    _code, text, _ = call(live, "GET", "/metrics")
    assert "engine_admin_refused_total 1.0" in text


def test_the_socket_is_0600_at_every_moment(tmp_path):
    """Race stat() against the socket's creation: no observation is ever wider."""
    db_path = tmp_path / "db"
    engine.open(str(db_path)).close()
    sock_path = layout.admin_socket(str(db_path))
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                seen.append(stat.S_IMODE(os.lstat(sock_path).st_mode))
            for name in os.listdir(db_path):  # the private directory it is bound in
                if name.startswith(".admin-"):
                    with contextlib.suppress(FileNotFoundError):
                        seen.append(stat.S_IMODE(os.lstat(db_path / name).st_mode) | 0o1000)

    t = threading.Thread(target=watch)
    t.start()
    for _ in range(20):
        engine.open(str(db_path), admin_socket=True).close()
    stop.set()
    t.join()
    assert seen, "the watcher never saw the socket"
    assert set(seen) <= {0o600, 0o1700}, {oct(m) for m in seen}


def test_a_stale_socket_is_replaced(tmp_path):
    path = str(tmp_path / "db")
    engine.open(path).close()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(layout.admin_socket(path))
    stale.close()  # bound, never listening: as a dead process leaves it
    with engine.open(path, admin_socket=True) as db:
        assert call(db, "GET", "/status")[0] == 200


def test_a_live_socket_is_never_touched(tmp_path):
    path = str(tmp_path / "db")
    engine.open(path).close()
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(layout.admin_socket(path))
    other.listen(1)
    ino = os.stat(layout.admin_socket(path)).st_ino
    try:
        with pytest.raises(engine.EngineError, match="live process; it was not touched"):
            engine.open(path, admin_socket=True)
        assert os.stat(layout.admin_socket(path)).st_ino == ino
        with engine.open(path):  # and the failed open released the directory
            pass
    finally:
        other.close()
        os.unlink(layout.admin_socket(path))


def test_a_non_socket_in_the_way_is_refused(tmp_path):
    path = str(tmp_path / "db")
    engine.open(path).close()
    with open(layout.admin_socket(path), "w") as f:
        f.write("not a socket")
    with pytest.raises(engine.EngineError, match="not a socket"):
        engine.open(path, admin_socket=True)
    with open(layout.admin_socket(path)) as f:
        assert f.read() == "not a socket"


def test_nothing_listens_on_tcp(live):
    with open("/proc/net/tcp") as f4, open("/proc/net/tcp6") as f6:
        before = f4.read() + f6.read()
    pid_fds = os.listdir(f"/proc/{os.getpid()}/fd")
    inet = []
    for fd in pid_fds:
        try:
            target = os.readlink(f"/proc/{os.getpid()}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            inode = target[8:-1]
            if inode in before:
                inet.append(inode)
    listening = [line for line in before.splitlines() if any(i in line for i in inet)
                 and line.split()[3] == "0A"]
    assert not listening
