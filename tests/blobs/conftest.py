"""Blob store fixtures: a local folder, or a real S3 service (the session's SeaweedFS, tests/conftest.py) with a
fresh bucket per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from espace_sante.storage.blobs import BlobStore, LocalBlobStore
from tests.seaweed import s3_store


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
