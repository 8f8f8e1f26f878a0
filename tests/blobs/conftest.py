"""Blob store fixtures: a local folder, or a real S3 service (SeaweedFS, started once per session and only
when a test asks for it) with a fresh bucket per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from espace_sante.storage.blobs import BlobStore, LocalBlobStore, S3BlobStore
from tests.seaweed import SeaweedFS, start_seaweedfs


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    print(f"\nSeaweedFS S3 at {server.endpoint}: first put after {server.started_in:.1f} s")
    yield server
    server.stop()


def s3_store(
    server: SeaweedFS,
    bucket: str | None = None,
    *,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> S3BlobStore:
    """A store on `server`, in a fresh bucket unless one is named, with the server's credentials unless
    others are given."""
    return S3BlobStore(
        endpoint_url=server.endpoint,
        bucket=bucket or f"t-{uuid.uuid4().hex[:20]}",
        region=server.region,
        access_key_id=access_key_id or server.access_key,
        secret_access_key=secret_access_key or server.secret_key,
    )


@pytest.fixture(params=["local", "s3"])
async def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[BlobStore]:
    blobs: BlobStore
    if request.param == "local":
        blobs = LocalBlobStore(tmp_path_factory.mktemp("blobs") / "store")
    else:
        blobs = s3_store(request.getfixturevalue("seaweedfs"))
    yield blobs
    await blobs.close()
