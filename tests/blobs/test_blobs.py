"""The blob store, on a local folder and on a real S3 service (SeaweedFS): the same behaviour from both."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from espace_sante.settings import Settings
from espace_sante.storage.blobs import (
    BlobInfo,
    BlobMissing,
    BlobStore,
    BlobStoreError,
    LocalBlobStore,
    S3BlobStore,
    open_blob_store,
)
from tests.blobs.conftest import s3_store
from tests.seaweed import SeaweedFS

DATA = bytes(range(256)) * 40 + b"tail"


async def _keys(store: BlobStore, prefix: str = "", page_size: int = 1000) -> list[str]:
    return sorted([info.key async for info in store.list(prefix, page_size=page_size)])


async def test_put_then_read_whole_and_ranges(store: BlobStore) -> None:
    await store.put("spaces/a1/doc", DATA)
    assert await store.read("spaces/a1/doc") == DATA
    assert await store.read("spaces/a1/doc", 0, 1) == DATA[:1]
    assert await store.read("spaces/a1/doc", 100, 2000) == DATA[100:2000]
    assert await store.read("spaces/a1/doc", 5000) == DATA[5000:]
    assert await store.read("spaces/a1/doc", len(DATA) - 4, len(DATA)) == b"tail"
    # Like a slice: a range past the end is cut short, one starting at or past the end is empty.
    assert await store.read("spaces/a1/doc", len(DATA) - 2, len(DATA) + 50) == b"il"
    assert await store.read("spaces/a1/doc", len(DATA)) == b""
    assert await store.read("spaces/a1/doc", len(DATA) + 10, len(DATA) + 20) == b""
    assert await store.read("spaces/a1/doc", 7, 7) == b""


async def test_bad_ranges_are_refused(store: BlobStore) -> None:
    await store.put("r/doc", DATA)
    with pytest.raises(ValueError):
        await store.read("r/doc", -1)
    with pytest.raises(ValueError):
        await store.read("r/doc", 10, 5)


async def test_missing_key_raises_blob_missing(store: BlobStore) -> None:
    for start, end in ((0, None), (10, 20), (5, 5), (3, None)):
        with pytest.raises(BlobMissing):
            await store.read("spaces/nobody/none", start, end)
    assert await store.size("spaces/nobody/none") is None
    # A "folder" of other keys is not an object.
    await store.put("spaces/folder/inner", b"x")
    with pytest.raises(BlobMissing):
        await store.read("spaces/folder")
    assert await store.size("spaces/folder") is None


async def test_size_and_empty_object(store: BlobStore) -> None:
    await store.put("s/full", DATA)
    await store.put("s/empty", b"")
    assert await store.size("s/full") == len(DATA)
    assert await store.size("s/empty") == 0
    assert await store.read("s/empty") == b""
    assert await store.read("s/empty", 0, 10) == b""


async def test_overwrite_replaces_content(store: BlobStore) -> None:
    await store.put("o/doc", DATA)
    await store.put("o/doc", b"short")
    assert await store.read("o/doc") == b"short"
    assert await store.size("o/doc") == 5
    assert await _keys(store, "o/") == ["o/doc"]


async def test_delete_is_idempotent(store: BlobStore) -> None:
    await store.put("d/doc", DATA)
    await store.delete("d/doc")
    await store.delete("d/doc")
    await store.delete("d/never-written")
    assert await store.size("d/doc") is None
    with pytest.raises(BlobMissing):
        await store.read("d/doc")
    assert await _keys(store, "d/") == []


async def test_list_pages_through_every_object_under_a_prefix(store: BlobStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    wanted = [f"spaces/ab/{i:02d}" for i in range(7)] + ["spaces/abc/x", "spaces/ab/deep/er/y"]
    for key in [*wanted, "spaces/b/z", "other/q"]:
        await store.put(key, key.encode())
    # Page size 2: S3 answers in five pages, with continuation tokens.
    infos = [info async for info in store.list("spaces/ab", page_size=2)]
    assert sorted(i.key for i in infos) == sorted(wanted)
    for info in infos:
        assert isinstance(info, BlobInfo)
        assert info.size == len(info.key)
        assert info.modified.utcoffset() == timedelta(0)
        assert before <= info.modified <= datetime.now(UTC) + timedelta(seconds=5)
    assert await _keys(store, "spaces/ab/", page_size=3) == sorted(
        k for k in wanted if k.startswith("spaces/ab/")
    )
    assert await _keys(store, "spaces/ab/deep/") == ["spaces/ab/deep/er/y"]
    assert await _keys(store, "nothing/") == []
    assert len(await _keys(store, page_size=4)) == len(wanted) + 2


@pytest.mark.parametrize(
    "key",
    ["", "/abs/key", "a/../b", "..", "a/./b", "a//b", "a/", "a\\b", "a\x00b", ".hidden", "a/.tmp-1234"],
)
async def test_unsafe_keys_are_refused(store: BlobStore, key: str) -> None:
    with pytest.raises(ValueError):
        await store.put(key, b"x")
    with pytest.raises(ValueError):
        await store.read(key)
    with pytest.raises(ValueError):
        await store.size(key)
    with pytest.raises(ValueError):
        await store.delete(key)


async def test_unsafe_prefixes_are_refused(store: BlobStore) -> None:
    for prefix in ("../", "/etc", "a/../", "a\\b", "a//"):
        with pytest.raises(ValueError):
            await _keys(store, prefix)


async def test_local_files_are_private_and_leave_no_temporaries(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    await store.put("spaces/s1/doc", DATA)
    path = tmp_path / "blobs" / "spaces" / "s1" / "doc"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in (tmp_path / "blobs", path.parent.parent, path.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert os.listdir(path.parent) == ["doc"]


async def test_local_failed_put_keeps_old_content_and_removes_its_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalBlobStore(tmp_path)
    await store.put("f/doc", b"old")

    def crash(src: object, dst: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        await store.put("f/doc", b"new")
    monkeypatch.undo()
    assert await store.read("f/doc") == b"old"
    assert os.listdir(tmp_path / "f") == ["doc"]


async def test_local_list_skips_temporaries_and_stale_ones_are_deleted(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.put("t/doc", b"x")
    stale, fresh = tmp_path / "t" / ".tmp-crashed", tmp_path / "t" / ".tmp-writing"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    assert await _keys(store) == ["t/doc"]
    assert await store.delete_stale_temps(timedelta(minutes=10)) == 1
    assert not stale.exists()
    assert fresh.exists()
    assert await store.delete_stale_temps(timedelta(minutes=10)) == 0


async def test_local_concurrent_puts_of_one_key_leave_one_whole_value(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    values = [bytes([i]) * 100_000 for i in range(8)]
    await asyncio.gather(*(store.put("c/doc", v) for v in values))
    assert await store.read("c/doc") in values
    assert os.listdir(tmp_path / "c") == ["doc"]


async def test_s3_wrong_credentials_give_a_clear_error(seaweedfs: SeaweedFS) -> None:
    store = s3_store(seaweedfs, secret_access_key="not-the-secret")
    try:
        with pytest.raises(BlobStoreError) as caught:
            await store.put("k/doc", b"x")
        message = str(caught.value)
        assert "refused access" in message
        assert seaweedfs.access_key in message
        assert "ESPACE_SANTE_S3_SECRET_ACCESS_KEY" in message
        assert "not-the-secret" not in message
        # Failure on first use is not remembered: the next call tries again (and fails again).
        with pytest.raises(BlobStoreError):
            await store.size("k/doc")
    finally:
        await store.close()


async def test_s3_unknown_access_key_gives_a_clear_error(seaweedfs: SeaweedFS) -> None:
    store = s3_store(seaweedfs, access_key_id="NOBODY", secret_access_key="nothing")
    try:
        with pytest.raises(BlobStoreError, match=r"refused access.*NOBODY"):
            await store.ensure_bucket()
    finally:
        await store.close()


async def test_s3_creates_its_bucket_once_on_first_use(seaweedfs: SeaweedFS) -> None:
    first = s3_store(seaweedfs)
    second = s3_store(seaweedfs, bucket=first.bucket)
    try:
        # Concurrent first calls share one client: the lock makes the rest wait for the first.
        await asyncio.gather(*(first.put(f"b/{i}", b"x") for i in range(10)))
        client = first._client
        await first.put("b/again", b"y")
        assert first._client is client
        await second.ensure_bucket()  # exists already: nothing to do
        assert await second.read("b/again") == b"y"
        assert len(await _keys(second, "b/")) == 11
    finally:
        await first.close()
        await second.close()
    await first.close()  # closing twice is harmless


async def test_s3_unreachable_service_is_a_blob_store_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = S3BlobStore(
        endpoint_url=f"http://127.0.0.1:{port}",
        bucket="nowhere",
        region="us-east-1",
        access_key_id="a",
        secret_access_key="b",
        max_attempts=1,  # retrying a refused connection only adds backoff
    )
    try:
        with pytest.raises(BlobStoreError, match="could not"):
            await store.size("k")
    finally:
        await store.close()


def test_open_blob_store_follows_the_settings(tmp_path: Path) -> None:
    local = open_blob_store(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalBlobStore)
    assert local.root == (tmp_path / "blobs").resolve()
    s3 = open_blob_store(
        Settings(
            data_dir=tmp_path,
            blob_backend="s3",
            s3_endpoint_url="http://127.0.0.1:9",
            s3_bucket="docs-bucket",
            s3_region="eu-west-3",
            s3_access_key_id="id",
            s3_secret_access_key="secret",
        )
    )
    assert isinstance(s3, S3BlobStore)
    assert (s3.endpoint_url, s3.bucket, s3.region) == ("http://127.0.0.1:9", "docs-bucket", "eu-west-3")
