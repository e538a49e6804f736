"""Helpers that damage a closed database's files the way media and tools do, and run
code that may crash (a damaged LMDB page can kill the process) in a forked child."""

from __future__ import annotations

import faulthandler
import json
import os
import select
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine import layout, lmdbfile

PAGE = struct.Struct("<QHHHH")  # pgno, pad, flags, lower, upper
P_BRANCH, P_LEAF, P_OVERFLOW = 0x01, 0x02, 0x04
F_BIGDATA = 0x01


def data_file(db_path: str) -> str:
    return layout.log_data_file(layout.log_dir(db_path))


@dataclass
class LivePages:
    """The pages of the newest commit's main tree, by kind."""

    branch: list[int]
    leaf: list[int]
    overflow: list[int]  # first page of each overflow run


def live_pages(db_path: str) -> LivePages:
    """Walk the main tree of the newest meta page with plain reads (test helper: trusts
    the file, which must be intact)."""
    path = data_file(db_path)
    header = lmdbfile.read_header(path)
    assert header is not None
    psize = header.page_size
    with open(path, "rb") as f:
        raw = f.read()
    out = LivePages([], [], [])

    def walk(pgno: int) -> None:
        page = raw[pgno * psize:(pgno + 1) * psize]
        _no, _pad, flags, lower, _upper = PAGE.unpack_from(page, 0)
        ptrs = struct.unpack_from(f"<{(lower - 16) // 2}H", page, 16)
        if flags & P_BRANCH:
            out.branch.append(pgno)
            for off in ptrs:
                lo, hi, fl = struct.unpack_from("<HHH", page, off)
                walk(lo | hi << 16 | fl << 32)
        else:
            out.leaf.append(pgno)
            for off in ptrs:
                _lo, _hi, fl, ksize = struct.unpack_from("<HHHH", page, off)
                if fl & F_BIGDATA:
                    out.overflow.append(struct.unpack_from("<Q", page, off + 8 + ksize)[0])

    walk(header.newest.main.root)
    return out


def page_size(db_path: str) -> int:
    header = lmdbfile.read_header(data_file(db_path))
    assert header is not None
    return header.page_size


def zero_page(db_path: str, pgno: int) -> None:
    psize = page_size(db_path)
    with open(data_file(db_path), "r+b") as f:
        f.seek(pgno * psize)
        f.write(b"\0" * psize)


def write_at(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def flip_bit(path: str, bit: int) -> None:
    with open(path, "r+b") as f:
        f.seek(bit // 8)
        b = f.read(1)[0]
        f.seek(bit // 8)
        f.write(bytes([b ^ (1 << (bit % 8))]))


@dataclass
class ChildResult:
    """How a forked child ended: its JSON answer, or the signal that killed it."""

    answer: Any = None
    signal: int | None = None
    exit_code: int | None = None
    hung: bool = False

    @property
    def crashed(self) -> bool:
        return self.signal is not None


def in_child(fn: Callable[[], Any], timeout: float = 60.0) -> ChildResult:
    """Run ``fn`` in a forked child; its JSON-able return value comes back through a
    pipe. A child killed by a signal (or hung past ``timeout``) is reported, never
    fatal to this process."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        faulthandler.disable()  # a crash here is the expected outcome, not a report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)  # LMDB's assertion text would only clutter the test output
        os.close(rfd)
        code = 0
        try:
            data = json.dumps({"ok": fn()}, default=str).encode()
        except BaseException as exc:
            data = json.dumps({"error": type(exc).__name__, "message": str(exc)}).encode()
        try:
            os.write(wfd, data)
        except BaseException:
            code = 3
        os._exit(code)
    os.close(wfd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    hung = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            hung = True
            os.kill(pid, signal.SIGKILL)
            break
        ready, _, _ = select.select([rfd], [], [], left)
        if ready:
            chunk = os.read(rfd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    os.close(rfd)
    _, status = os.waitpid(pid, 0)
    result = ChildResult(hung=hung)
    if hung:
        return result
    if os.WIFSIGNALED(status):
        result.signal = os.WTERMSIG(status)
        return result
    result.exit_code = os.WEXITSTATUS(status)
    if chunks:
        result.answer = json.loads(b"".join(chunks))
    return result
