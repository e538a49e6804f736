"""One contract, three backends: file://, memory:// and a real S3 server (SeaweedFS).

Every test here runs against each backend through the ``target`` fixture, like
Litestream's ``RunWithReplicaClient``; backend-specific behaviour (file durability,
memory naming) is at the end.
"""

from __future__ import annotations

import io
import os
import threading
from datetime import datetime
from pathlib import Path

import pytest

from engine.backup import MIN_PART_SIZE, ObjectInfo, Target, open_target
from engine.backup.targets import forget_memory_targets, staging_name
from engine.errors import (
    BackupConflictError,
    BackupNotFoundError,
    InvalidKeyError,
    OptionsError,
    PermanentBackupError,
)
from tests.backup.conftest import MakeTarget, unique

# ---------------------------------------------------------------- put / get / head


def test_put_get_roundtrip_and_info(target: Target) -> None:
    info = target.put("db/log/1/1-10.seg", b"segment bytes")
    assert info == ObjectInfo("db/log/1/1-10.seg", 13, info.etag, info.last_modified)
    assert info.etag
    assert target.get("db/log/1/1-10.seg") == b"segment bytes"
    head = target.head("db/log/1/1-10.seg")
    assert head is not None
    assert (head.key, head.size, head.etag) == ("db/log/1/1-10.seg", 13, info.etag)
    assert isinstance(head.last_modified, datetime)
    assert head.last_modified.tzinfo is not None


def test_put_replaces_and_changes_the_etag(target: Target) -> None:
    first = target.put("k", b"one")
    second = target.put("k", b"second version")
    assert target.get("k") == b"second version"
    assert second.etag != first.etag
    head = target.head("k")
    assert head is not None and head.size == 14 and head.etag == second.etag


def test_put_accepts_bytearray_memoryview_and_empty(target: Target) -> None:
    target.put("ba", bytearray(b"from a bytearray"))
    target.put("mv", memoryview(b"xxfrom a memoryview")[2:])
    assert target.put("empty", b"").size == 0
    assert target.get("ba") == b"from a bytearray"
    assert target.get("mv") == b"from a memoryview"
    assert target.get("empty") == b""
    head = target.head("empty")
    assert head is not None and head.size == 0


def test_every_allowed_key_character_roundtrips(target: Target) -> None:
    key = "AZaz09/a.b_c-d=e/0123456789abcdef-0000000000000001.seg"
    target.put(key, b"ok")
    assert target.get(key) == b"ok"
    assert [i.key for i in target.list()] == [key]


def test_get_and_head_of_a_missing_object(target: Target) -> None:
    with pytest.raises(BackupNotFoundError) as err:
        target.get("no/such/key")
    assert err.value.key == "no/such/key"
    assert err.value.transient is False
    assert isinstance(err.value, PermanentBackupError)
    assert target.url in str(err.value) and "'no/such/key'" in str(err.value)
    assert target.head("no/such/key") is None


# ---------------------------------------------------------------- conditional writes


def test_create_only_creates_once_then_conflicts(target: Target) -> None:
    info = target.put("fence/owner", b"me", create_only=True)
    assert info.size == 2
    with pytest.raises(BackupConflictError) as err:
        target.put("fence/owner", b"someone else", create_only=True)
    assert err.value.key == "fence/owner"
    assert err.value.transient is False
    assert "'fence/owner'" in str(err.value) and target.url in str(err.value)
    assert target.get("fence/owner") == b"me"


def test_put_if_match_swaps_only_the_current_version(target: Target) -> None:
    v1 = target.put("manifest/latest", b"backup-1")
    assert v1.etag is not None
    v2 = target.put_if_match("manifest/latest", b"backup-2", v1.etag)
    assert v2.etag and v2.etag != v1.etag
    assert target.get("manifest/latest") == b"backup-2"
    with pytest.raises(BackupConflictError) as err:
        target.put_if_match("manifest/latest", b"stale writer", v1.etag)
    assert err.value.key == "manifest/latest"
    assert target.get("manifest/latest") == b"backup-2"


def test_put_if_match_on_a_missing_object_conflicts(target: Target) -> None:
    etag = target.put("other", b"x").etag
    assert etag is not None
    with pytest.raises(BackupConflictError):
        target.put_if_match("missing", b"data", etag)
    assert target.head("missing") is None


def test_concurrent_compare_and_swap_loses_no_update(target: Target) -> None:
    target.put("counter", b"0")
    threads, rounds = 4, 8
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(rounds):
                while True:
                    info = target.head("counter")
                    assert info is not None and info.etag is not None
                    value = int(target.get_range("counter", 0, 64))
                    try:
                        target.put_if_match("counter", str(value + 1).encode(), info.etag)
                        break
                    except BackupConflictError:
                        continue
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=bump) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert errors == []
    assert int(target.get("counter")) == threads * rounds


# ---------------------------------------------------------------- ranges


def test_get_range(target: Target) -> None:
    target.put("r", b"0123456789")
    assert target.get_range("r", 0, 1) == b"0"
    assert target.get_range("r", 3, 7) == b"3456"
    assert target.get_range("r", 8, 100) == b"89"  # clipped, like a slice
    assert target.get_range("r", 10, 20) == b""  # starts at the end
    assert target.get_range("r", 50, 60) == b""  # starts past the end
    target.put("empty", b"")
    assert target.get_range("empty", 0, 10) == b""


@pytest.mark.parametrize(("start", "end"), [(-1, 3), (5, 5), (6, 2), (0.0, 3), (True, 3)])
def test_get_range_refuses_bad_ranges(target: Target, start: object, end: object) -> None:
    target.put("r", b"0123456789")
    with pytest.raises(InvalidKeyError):
        target.get_range("r", start, end)  # type: ignore[arg-type]


def test_get_range_of_a_missing_object(target: Target) -> None:
    with pytest.raises(BackupNotFoundError):
        target.get_range("missing", 0, 10)
    with pytest.raises(BackupNotFoundError):  # a key that reads like a range error
        target.get_range("InvalidRange/Requested-range-was-invalid", 0, 10)


# ---------------------------------------------------------------- list / delete


def test_list_is_sorted_recursive_and_uses_string_prefixes(target: Target) -> None:
    assert target.list() == []
    for key, data in [("b/2", b"22"), ("a/b/c", b"abc"), ("ab", b"x"), ("a/bc", b"yz"),
                      ("a/b/d/e", b"deep"), ("a/a", b"")]:
        target.put(key, data)
    everything = target.list()
    assert [i.key for i in everything] == ["a/a", "a/b/c", "a/b/d/e", "a/bc", "ab", "b/2"]
    assert {i.key: i.size for i in everything} == {
        "a/a": 0, "a/b/c": 3, "a/b/d/e": 4, "a/bc": 2, "ab": 1, "b/2": 2}
    assert all(i.etag and isinstance(i.last_modified, datetime) for i in everything)
    assert [i.key for i in target.list("a")] == ["a/a", "a/b/c", "a/b/d/e", "a/bc", "ab"]
    assert [i.key for i in target.list("a/")] == ["a/a", "a/b/c", "a/b/d/e", "a/bc"]
    assert [i.key for i in target.list("a/b")] == ["a/b/c", "a/b/d/e", "a/bc"]
    assert [i.key for i in target.list("a/b/")] == ["a/b/c", "a/b/d/e"]
    assert [i.key for i in target.list("a/b/d/e")] == ["a/b/d/e"]
    assert target.list("c") == [] and target.list("zz/top/") == []


def test_list_sees_only_its_own_prefix(make_target: MakeTarget) -> None:
    mine, sibling = make_target(""), make_target("2")  # sibling's prefix extends mine
    mine.put("x", b"mine")
    sibling.put("x", b"sibling's")
    sibling.put("y", b"sibling's")
    assert [i.key for i in mine.list()] == ["x"]
    assert [i.key for i in sibling.list()] == ["x", "y"]
    assert mine.get("x") == b"mine"


def test_delete(target: Target) -> None:
    target.put("a/1", b"1")
    target.put("a/2", b"2")
    target.delete("a/1")
    assert target.head("a/1") is None
    with pytest.raises(BackupNotFoundError):
        target.get("a/1")
    assert [i.key for i in target.list()] == ["a/2"]
    target.delete("a/1")  # already gone: not an error
    target.delete("never/existed")
    assert [i.key for i in target.list()] == ["a/2"]


def test_check_passes_on_a_healthy_target(target: Target) -> None:
    target.check()
    target.put("k", b"v")
    target.check()


# ---------------------------------------------------------------- bad keys

BAD_KEYS = ["", "/abs", "a//b", "a/", "a/../b", "..", "./a", "a\x00b", "sp ace", "back\\slash",
            "hash#1", "q?x", "ünï", "x" * 201, "/".join(["a"] * 600)]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused_before_anything_is_sent(target: Target, key: str) -> None:
    calls = [
        lambda: target.put(key, b"x"),
        lambda: target.put(key, b"x", create_only=True),
        lambda: target.put_if_match(key, b"x", '"etag"'),
        lambda: target.get(key),
        lambda: target.get_range(key, 0, 1),
        lambda: target.head(key),
        lambda: target.delete(key),
        lambda: target.put_file(key, io.BytesIO(b"x")),
        lambda: target.get_file(key, io.BytesIO()),
    ]
    for call in calls:
        with pytest.raises(InvalidKeyError) as err:
            call()
        assert isinstance(err.value, ValueError)
        assert "keys are '/'-separated" in str(err.value)
    assert target.list() == []


def test_a_non_string_key_is_refused(target: Target) -> None:
    with pytest.raises(InvalidKeyError, match="not a str"):
        target.put(b"bytes-key", b"x")  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["/", "//", "a//", "/a", "a/../", "a b"])
def test_bad_list_prefixes_are_refused(target: Target, prefix: str) -> None:
    with pytest.raises(InvalidKeyError):
        target.list(prefix)


# ---------------------------------------------------------------- large files


def _payload(size: int) -> bytes:
    block = os.urandom(1 << 16)
    return (block * (size // len(block) + 1))[:size]


def test_multipart_put_file_and_get_file_roundtrip(target: Target, tmp_path: Path) -> None:
    data = _payload(2 * MIN_PART_SIZE + 123_457)  # three parts, the last one short
    src = tmp_path / "snapshot.snap"
    src.write_bytes(data)
    info = target.put_file("full/1/snapshot.snap", src, part_size=MIN_PART_SIZE)
    assert info.size == len(data)
    head = target.head("full/1/snapshot.snap")
    assert head is not None and head.size == len(data) and head.etag == info.etag
    # straddle the first part boundary
    assert target.get_range("full/1/snapshot.snap", MIN_PART_SIZE - 5, MIN_PART_SIZE + 5) == (
        data[MIN_PART_SIZE - 5: MIN_PART_SIZE + 5])
    dest = tmp_path / "restored.snap"
    got = target.get_file("full/1/snapshot.snap", dest, part_size=MIN_PART_SIZE)
    assert got.size == len(data)
    assert dest.read_bytes() == data
    assert target.get("full/1/snapshot.snap") == data


def test_put_file_from_a_file_object_and_small_files(target: Target, tmp_path: Path) -> None:
    data = _payload(MIN_PART_SIZE + 10)
    assert target.put_file("big", io.BytesIO(data), part_size=MIN_PART_SIZE).size == len(data)
    assert target.get("big") == data
    assert target.put_file("small", io.BytesIO(b"tiny")).size == 4
    assert target.get("small") == b"tiny"
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert target.put_file("empty", empty).size == 0
    out = io.BytesIO()
    assert target.get_file("small", out).size == 4
    assert out.getvalue() == b"tiny"
    assert target.get_file("empty", tmp_path / "empty.out").size == 0
    assert (tmp_path / "empty.out").read_bytes() == b""


def test_get_file_refuses_to_mix_two_versions(target: Target) -> None:
    target.put("snap", _payload(MIN_PART_SIZE + 100))

    class Meddler(io.BytesIO):
        """A download file whose first write replaces the object being downloaded."""

        def write(self, chunk: object) -> int:
            if not self.getbuffer().nbytes:
                target.put("snap", b"a newer, shorter version")
            return super().write(chunk)  # type: ignore[call-overload, no-any-return]

    with pytest.raises(BackupConflictError) as err:
        target.get_file("snap", Meddler(), part_size=MIN_PART_SIZE)
    assert err.value.key == "snap"


def test_get_file_of_a_missing_object(target: Target, tmp_path: Path) -> None:
    with pytest.raises(BackupNotFoundError):
        target.get_file("missing", tmp_path / "out")


@pytest.mark.parametrize("part_size", [MIN_PART_SIZE - 1, 0, -5, 6 * 1024**3])
def test_part_size_is_checked(target: Target, tmp_path: Path, part_size: int) -> None:
    with pytest.raises(OptionsError, match="part_size"):
        target.put_file("k", io.BytesIO(b"x"), part_size=part_size)
    with pytest.raises(OptionsError, match="part_size"):
        target.get_file("k", tmp_path / "out", part_size=part_size)
    assert target.list() == []


def test_put_file_of_a_missing_local_file_is_a_storage_error(target: Target,
                                                             tmp_path: Path) -> None:
    from engine.errors import StorageError

    with pytest.raises(StorageError, match="cannot open the file to upload"):
        target.put_file("k", tmp_path / "does-not-exist")
    assert target.head("k") is None


# ---------------------------------------------------------------- memory:// naming


def test_a_named_memory_target_is_shared_within_the_process() -> None:
    name = unique("shared")
    try:
        first = open_target(f"memory://{name}/db1")
        first.put("log/1/1-5.seg", b"seg")
        reopened = open_target(f"memory://{name}/db1")
        assert reopened.get("log/1/1-5.seg") == b"seg"
        assert [i.key for i in open_target(f"memory://{name}").list()] == ["db1/log/1/1-5.seg"]
        assert reopened.url == f"memory://{name}/db1"
    finally:
        forget_memory_targets(name)
    assert open_target(f"memory://{name}/db1").list() == []  # forgotten: a new, empty store


def test_an_anonymous_memory_target_is_fresh_every_time() -> None:
    first = open_target("memory://")
    first.put("k", b"v")
    assert open_target("memory://").head("k") is None
    assert first.get("k") == b"v"


# ---------------------------------------------------------------- file:// durability


def _fsync_recorder(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the path behind every fsync'd fd (then really fsync it)."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def test_file_put_is_durable_on_return(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "backups"
    target = open_target(f"file://{root}")
    synced = _fsync_recorder(monkeypatch)
    target.put("db/log/1/1-10.seg", b"payload")
    final = root / "db/log/1/1-10.seg"
    assert final.read_bytes() == b"payload"
    # the data (written under a staging name, then renamed) ...
    data_syncs = [p for p in synced if p.startswith(str(final) + "#")]
    assert len(data_syncs) == 1
    # ... then the directory that received the rename; before the data, each new
    # directory (db, db/log, db/log/1) was fsynced into its parent
    dirs = synced[synced.index(data_syncs[0]) + 1:]
    assert dirs == [str(final.parent)]
    made = synced[:synced.index(data_syncs[0])]
    assert made == [str(root), str(root / "db"), str(root / "db/log")]
    assert sorted(os.listdir(final.parent)) == ["1-10.seg"]  # no staging file left


def test_file_create_only_and_cas_and_delete_are_durable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = open_target(f"file://{tmp_path}")
    target.put("a/k", b"0")
    synced = _fsync_recorder(monkeypatch)
    target.put("a/new", b"1", create_only=True)
    etag = target.head("a/k")
    assert etag is not None and etag.etag is not None
    target.put_if_match("a/k", b"2", etag.etag)
    target.delete("a/new")
    dir_syncs = [p for p in synced if p == str(tmp_path / "a")]
    assert len(dir_syncs) == 3  # link, rename, unlink
    assert len([p for p in synced if "#" in p]) == 2  # the two data files
    assert sorted(os.listdir(tmp_path / "a")) == ["k"]


def test_file_staging_files_are_never_listed(tmp_path: Path) -> None:
    target = open_target(f"file://{tmp_path}")
    target.put("a/k", b"v")
    (tmp_path / "a" / "k#123456").write_bytes(b"left by a crash")
    # the names the target itself stages under (every one: they are random)
    for _ in range(50):
        Path(staging_name(str(tmp_path / "a" / "k"))).write_bytes(b"left by a crash")
    assert [i.key for i in target.list()] == ["a/k"]


def test_file_cas_is_atomic_across_target_objects(tmp_path: Path) -> None:
    """Two Target objects on one directory share the directory lock (as two processes
    would), so a stale writer on the other object still loses."""
    one, two = open_target(f"file://{tmp_path}"), open_target(f"file://{tmp_path}")
    v1 = one.put("m", b"1")
    assert v1.etag is not None
    two.put_if_match("m", b"2", v1.etag)
    with pytest.raises(BackupConflictError, match="ETag"):
        one.put_if_match("m", b"3", v1.etag)
    assert one.get("m") == b"2"


def test_file_target_directory_is_created_on_open(tmp_path: Path) -> None:
    root = tmp_path / "x" / "y"
    target = open_target(f"file://{root}/")
    assert root.is_dir()
    assert target.url == f"file://{root}"
    target.check()
