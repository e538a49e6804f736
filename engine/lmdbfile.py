"""Reads LMDB's two meta pages of ``data.mdb`` without mapping it, and the tree pages a
cursor is about to walk.

LMDB trusts its file: it maps ``data.mdb`` and follows page numbers into the map,
so a file shorter than its meta page says (a truncated copy) raises SIGBUS on the
first read past the end, and a page size of 0 raises SIGFPE. This module checks
the header with plain ``pread`` calls *before* the engine lets LMDB map the file,
and turns what it finds into :class:`~engine.errors.CorruptLogError`. Before a
cursor walks a key range, :func:`check_range_pages` checks the tree pages it will
visit (LMDB aborts on a sibling page that is not a leaf). Leaf nodes are not
parsed: ``engine-admin verify`` reads every record in a child process for that
(docs/FORMAT.md, section 3, "Checks before LMDB maps the file").

Layout (LMDB 0.9, 64-bit; mdb.c ``MDB_page``, ``MDB_meta``, ``MDB_db``). Pages 0
and 1 are meta pages; transaction N writes meta page N % 2, so the newest commit
is the meta with the larger txnid. Each page starts with a 16-byte header:

    u64 pgno  u16 pad  u16 flags (P_META = 0x08)  u16 lower  u16 upper

and a meta page continues with ``MDB_meta``:

    u32 magic (0xBEEFC0DE)  u32 version (1)  u64 address  u64 mapsize
    MDB_db free  MDB_db main  u64 last_pg  u64 txnid

    MDB_db := u32 pad  u16 flags  u16 depth  u64 branch_pages  u64 leaf_pages
              u64 overflow_pages  u64 entries  u64 root

The free DB's ``pad`` is the page size (``mm_psize``).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Final

from .errors import CorruptLogError, StorageError
from .files import fs

MAGIC: Final = 0xBEEFC0DE
DATA_VERSION: Final = 1
P_META: Final = 0x08
P_INVALID: Final = (1 << 64) - 1      # the root of an empty tree
MIN_PAGE_SIZE: Final = 512
MAX_PAGE_SIZE: Final = 0x8000         # LMDB 0.9 MAX_PAGESIZE (PAGEBASE 0)
META_OFFSET: Final = 16               # MDB_meta follows the page header
_PAGE_HEADER: Final = struct.Struct("<QHH")           # pgno, pad, flags
_META_HEAD: Final = struct.Struct("<IIQQ")            # magic, version, address, mapsize
_DB: Final = struct.Struct("<IHHQQQQQ")               # one MDB_db (48 bytes)
_META_TAIL: Final = struct.Struct("<QQ")              # last_pg, txnid
_META_END: Final = META_OFFSET + _META_HEAD.size + 2 * _DB.size + _META_TAIL.size  # 152
RUNBOOK: Final = ("see 'A damaged log' in docs/RUNBOOK.md: run `engine-admin verify DIR`, "
                  "then `engine-admin repair DIR` or restore from a backup")


@dataclass(frozen=True)
class TreeInfo:
    """One ``MDB_db``: a B-tree's root and page counts."""

    pad: int
    flags: int
    depth: int
    branch_pages: int
    leaf_pages: int
    overflow_pages: int
    entries: int
    root: int


@dataclass(frozen=True)
class MetaPage:
    """One of the two meta pages, as stored."""

    index: int
    pgno: int
    flags: int
    magic: int
    version: int
    mapsize: int
    free: TreeInfo
    main: TreeInfo
    last_pg: int
    txnid: int

    @property
    def page_size(self) -> int:
        return self.free.pad


@dataclass(frozen=True)
class Header:
    """What the two meta pages say: the one LMDB will use (``newest``) and the file size."""

    path: str
    file_bytes: int
    metas: tuple[MetaPage, MetaPage]

    @property
    def newest(self) -> MetaPage:
        # mdb_env_pick_meta: meta 1 only when its txnid is strictly larger.
        a, b = self.metas
        return b if b.txnid > a.txnid else a

    @property
    def page_size(self) -> int:
        return self.metas[0].page_size


def parse_meta(page: bytes, index: int) -> MetaPage:
    """Decode meta page ``index`` (at least 152 bytes of it); no checks."""
    pgno, _pad, flags = _PAGE_HEADER.unpack_from(page, 0)
    magic, version, _address, mapsize = _META_HEAD.unpack_from(page, META_OFFSET)
    off = META_OFFSET + _META_HEAD.size
    free = TreeInfo(*_DB.unpack_from(page, off))
    main = TreeInfo(*_DB.unpack_from(page, off + _DB.size))
    last_pg, txnid = _META_TAIL.unpack_from(page, off + 2 * _DB.size)
    return MetaPage(index=index, pgno=pgno, flags=flags, magic=magic, version=version,
                    mapsize=mapsize, free=free, main=main, last_pg=last_pg, txnid=txnid)


def _refuse(path: str, what: str) -> CorruptLogError:
    return CorruptLogError(f"the log file {path} is damaged: {what}; {RUNBOOK}.")


def read_header(path: str) -> Header | None:
    """Read and check both meta pages of the ``data.mdb`` at ``path``.

    Returns None for a missing or empty file (LMDB makes a new environment of it);
    :class:`StorageError` if the file cannot be read.
    Raises :class:`CorruptLogError` naming the file and what is wrong when LMDB
    could not map it safely: a file shorter than two meta pages or than the newest
    meta page's ``last_pg`` says, a page that is not a meta page, a wrong magic,
    version or page size, meta pages that disagree, or a root past the last page.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read the log file {path}: {exc}. Check its "
                           "permissions.") from exc
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return None
        first = os.pread(fd, _META_END, 0)
        if len(first) < _META_END:
            raise _refuse(path, f"it is {size} bytes, shorter than LMDB's first meta page "
                                "(the file was truncated)")
        m0 = parse_meta(first, 0)
        _check_meta(path, m0)
        psize = m0.page_size
        second = os.pread(fd, _META_END, psize)
    except OSError as exc:  # EIO from a failing disk, EISDIR, ...
        raise StorageError(f"cannot read the log file {path}: {exc}. Check the disk and "
                           f"the file; {RUNBOOK}.") from exc
    finally:
        os.close(fd)
    if size < 2 * psize:
        raise _refuse(path, f"it is {size} bytes, shorter than LMDB's two meta pages "
                            f"({2 * psize} bytes): the file was truncated")
    m1 = parse_meta(second, 1)
    _check_meta(path, m1)
    if m1.page_size != psize:
        raise _refuse(path, f"its meta pages disagree on the page size ({psize} and "
                            f"{m1.page_size})")
    header = Header(path=path, file_bytes=size, metas=(m0, m1))
    _check_txnids(path, m0, m1)
    for meta in (m0, m1):
        _check_extent(header, meta)
    return header


META_BYTES: Final = 152  # what LMDB writes of a meta page at a commit (_META_END)


def read_meta_bytes(path: str, page_size: int) -> tuple[bytes, bytes]:
    """The first 152 bytes of both meta pages (what LMDB writes at a commit) as stored:
    the commit journal saves them at each checkpoint (engine.journal)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        m0, m1 = os.pread(fd, _META_END, 0), os.pread(fd, _META_END, page_size)
    finally:
        os.close(fd)
    if len(m0) != _META_END or len(m1) != _META_END:
        raise _refuse(path, "it is shorter than its two meta pages")
    return m0, m1


def check_saved_metas(path: str, page_size: int, m0: bytes, m1: bytes,
                      from_key: bytes) -> None:
    """Check, before they are written back, that the meta pages ``m0``/``m1`` fit the
    file at ``path``: valid meta pages, a tree inside the file, and intact pages on the
    path a cursor takes from ``from_key`` to the last key (what the journal's recovery
    walks). :class:`CorruptLogError` otherwise: then the file is left as it was."""
    metas = (parse_meta(m0, 0), parse_meta(m1, 1))
    for m in metas:
        _check_meta(path, m)
        if m.page_size != page_size:
            raise _refuse(path, f"a saved meta page gives the page size {m.page_size}")
    _check_txnids(path, *metas)
    header = Header(path=path, file_bytes=os.path.getsize(path), metas=metas)
    for m in metas:
        _check_extent(header, m)
    check_range_pages(path, from_key, header=header)


def write_meta_bytes(path: str, page_size: int, m0: bytes, m1: bytes) -> None:
    """Put back both meta pages saved by :func:`read_meta_bytes` and fsync the file: the
    commit journal's recovery makes LMDB open the tree of its last checkpoint (the
    file must not be open in LMDB meanwhile)."""
    for i, m in enumerate((m0, m1)):
        page = parse_meta(m, i)
        _check_meta(path, page)
        if page.page_size != page_size:
            raise _refuse(path, f"a saved meta page gives the page size {page.page_size}")
    fd = os.open(path, os.O_WRONLY)
    try:
        if os.pwrite(fd, m0, 0) != len(m0) or os.pwrite(fd, m1, page_size) != len(m1):
            raise OSError(f"a short write to {path}")
        fs().fsync(fd)
    finally:
        os.close(fd)


def _check_meta(path: str, m: MetaPage) -> None:
    where = f"meta page {m.index}"
    if m.pgno != m.index or not m.flags & P_META:
        raise _refuse(path, f"{where} is not an LMDB meta page (page number {m.pgno}, "
                            f"flags {m.flags:#x})")
    if m.magic != MAGIC:
        raise _refuse(path, f"{where} has magic {m.magic:#010x}, not LMDB's {MAGIC:#010x} "
                            "(not an LMDB file, or its first pages were overwritten)")
    if m.version != DATA_VERSION:
        raise _refuse(path, f"{where} has LMDB data version {m.version}; this LMDB reads "
                            f"version {DATA_VERSION}")
    psize = m.page_size
    if not MIN_PAGE_SIZE <= psize <= MAX_PAGE_SIZE or psize & (psize - 1):
        raise _refuse(path, f"{where} gives the page size {psize}, which LMDB never writes "
                            f"(a power of two from {MIN_PAGE_SIZE} to {MAX_PAGE_SIZE})")


def _check_txnids(path: str, m0: MetaPage, m1: MetaPage) -> None:
    # Transaction N writes meta page N % 2, so the pages hold consecutive txnids of
    # their own parity (a fresh environment writes txnid 0 into both). Anything else
    # is a damaged txnid, and LMDB would pick its tree by the damaged number.
    fresh = m0.txnid == 0 and m1.txnid in (0, 1)
    if fresh:
        return
    if (m0.txnid % 2, m1.txnid % 2) != (0, 1) or abs(m0.txnid - m1.txnid) != 1:
        raise _refuse(path, f"its meta pages hold transaction ids {m0.txnid} and "
                            f"{m1.txnid}, which LMDB never writes (page 0 holds even ids, "
                            "page 1 odd ones, one apart): one of them is damaged")


def _check_extent(h: Header, m: MetaPage) -> None:
    psize = h.page_size
    needed = (m.last_pg + 1) * psize
    if m is h.newest and h.file_bytes < needed:
        raise _refuse(h.path, f"data.mdb is {h.file_bytes} bytes but its meta page says the "
                              f"database needs {needed} bytes ({m.last_pg + 1} pages): the "
                              "file was truncated")
    for name, tree in (("main", m.main), ("free-page", m.free)):
        if tree.root == P_INVALID:
            if tree.entries or tree.depth:
                raise _refuse(h.path, f"meta page {m.index} says the {name} tree is empty "
                                      f"but holds {tree.entries} entries")
            continue
        if not 2 <= tree.root <= m.last_pg:
            raise _refuse(h.path, f"meta page {m.index} puts the {name} tree's root at page "
                                  f"{tree.root}, outside the file's pages 2..{m.last_pg}")
        pages = tree.branch_pages + tree.leaf_pages + tree.overflow_pages
        if pages > m.last_pg + 1 or tree.depth == 0:
            raise _refuse(h.path, f"meta page {m.index} says the {name} tree has depth "
                                  f"{tree.depth} and {pages} pages, but the file has "
                                  f"{m.last_pg + 1}")


# ---------------------------------------------------------------- the pages of a range

_PAGE: Final = struct.Struct("<QHHHH")  # pgno, pad, flags, lower, upper
# lo, hi, flags, ksize; a branch node's child page is lo | hi << 16 | flags << 32
_NODE: Final = struct.Struct("<HHHH")
P_BRANCH: Final = 0x01
P_LEAF: Final = 0x02
MAX_DEPTH: Final = 32                   # LMDB's CURSOR_STACK


def check_range_pages(path: str, from_key: bytes, max_leaves: int | None = None,
                      header: Header | None = None) -> int:
    """Check, with plain reads, every page a cursor moving from ``from_key`` to the last
    key of the main tree will visit: branch pages whole (header, node offsets, child
    page numbers), leaf pages' headers and node offsets. Returns the leaf pages checked.

    This is what LMDB does not check before it asserts: ``mdb_cursor_next`` aborts the
    process (``IS_LEAF(mp)``) when a sibling is a zeroed or garbled page. Node contents
    (key and value sizes, overflow page numbers) are not checked: the record checks
    find damaged values. With ``max_leaves`` only the first leaves from ``from_key`` on
    (and the branch pages above them) are checked. Raises :class:`CorruptLogError`
    naming the page. ``header``: check the tree these meta pages name instead of the
    file's own (the commit journal's saved ones, before they are written back).
    """
    if header is None:
        header = read_header(path)
    if header is None:
        return 0
    meta = header.newest
    tree = meta.main
    if tree.root == P_INVALID:
        return 0
    psize = header.page_size
    budget = tree.branch_pages + tree.leaf_pages  # a cycle in a damaged tree ends here
    leaves = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        stack: list[tuple[int, int]] = [(tree.root, 1)]  # (page, level), visited in key order
        while stack:
            pgno, level = stack.pop()
            budget -= 1
            if budget < 0:
                raise _refuse(path, f"its main tree reaches more pages than the "
                                    f"{tree.branch_pages} branch and {tree.leaf_pages} leaf "
                                    "pages it has (a cycle)")
            page = os.pread(fd, psize, pgno * psize)
            ptrs = _check_page(path, header, page, pgno, level, tree.depth)
            if level == tree.depth:
                leaves += 1
                if leaves == max_leaves:  # pages are visited in key order
                    break
                continue
            # child i holds the keys from its own key up to the next child's key: it is
            # visited unless the next child's key is still <= from_key. Nodes are parsed
            # only until max_leaves children are known (each holds at least one leaf).
            visit: list[int] = []
            prev: int | None = None
            for i, off in enumerate(ptrs):
                lo, hi, flags, ksize = _NODE.unpack_from(page, off)
                if off + _NODE.size + ksize > psize:
                    raise _page_damaged(path, pgno, f"node {i}'s key runs past the page")
                child = lo | hi << 16 | flags << 32
                if not 2 <= child <= meta.last_pg:
                    raise _page_damaged(path, pgno, f"node {i} points at page {child}, outside "
                                                    f"the file's pages 2..{meta.last_pg}")
                key = page[off + _NODE.size:off + _NODE.size + ksize]
                if prev is not None and key > from_key:
                    visit.append(prev)
                    if max_leaves is not None and len(visit) >= max_leaves:
                        prev = None
                        break
                prev = child
            if prev is not None:
                visit.append(prev)
            stack.extend((child, level + 1) for child in reversed(visit))
    except OSError as exc:
        raise StorageError(f"cannot read the log file {path}: {exc}. Check the disk and "
                           f"the file; {RUNBOOK}.") from exc
    finally:
        os.close(fd)
    return leaves


def _page_damaged(path: str, pgno: int, what: str) -> CorruptLogError:
    return _refuse(path, f"page {pgno} of its main tree is damaged: {what}")


def _check_page(path: str, header: Header, page: bytes, pgno: int, level: int,
                depth: int) -> tuple[int, ...]:
    """The node offsets of a branch (above the bottom level) or leaf page, checked."""
    psize = header.page_size
    if len(page) < psize:
        raise _page_damaged(path, pgno, "it lies past the end of the file")
    stored, _pad, flags, lower, upper = _PAGE.unpack_from(page, 0)
    want, kind = (P_LEAF, "leaf") if level == depth else (P_BRANCH, "branch")
    if stored != pgno or not flags & want or flags & (P_LEAF | P_BRANCH) == P_LEAF | P_BRANCH:
        raise _page_damaged(path, pgno, f"it should be a {kind} page but holds page number "
                                        f"{stored} and flags {flags:#x} (zeroed or overwritten)")
    if not _PAGE.size <= lower <= upper <= psize or (lower - _PAGE.size) % 2:
        raise _page_damaged(path, pgno, f"its free-space bounds {lower}..{upper} are impossible")
    count = (lower - _PAGE.size) // 2
    ptrs: tuple[int, ...] = struct.unpack_from(f"<{count}H", page, _PAGE.size)
    if count == 0 or min(ptrs) < upper or max(ptrs) > psize - _NODE.size:
        raise _page_damaged(path, pgno, f"its {count} node offsets point outside its node area")
    if kind == "branch" and count < 2:  # LMDB asserts NUMKEYS(mp) > 1 on a branch page
        raise _page_damaged(path, pgno, "it is a branch page with a single node, which LMDB "
                                        "never writes")
    return ptrs
