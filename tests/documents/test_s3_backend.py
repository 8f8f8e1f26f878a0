"""The same content path on the S3 back-end (a real SeaweedFS server): a submission's content lands in the
bucket encrypted, comes back whole and by range, and `documents verify` finds the bucket and the rows agree."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from espace_sante.context import Context
from espace_sante.record import documents
from espace_sante.runtime import Runtime
from espace_sante.storage.blobs import BlobStore
from tests.content.samples import report_pdf
from tests.documents.mhd import by_type, iti65, new_person
from tests.factories import FHIR_JSON
from tests.seaweed import SeaweedFS, s3_store


@pytest.fixture
async def on_s3(runtime: Runtime, seaweedfs: SeaweedFS) -> AsyncIterator[BlobStore]:
    """The runtime's blob store switched to a fresh bucket for one test (the rest of the session keeps its
    local folder)."""
    local = runtime.blob_store
    store = s3_store(seaweedfs, f"docs-{uuid.uuid4().hex[:16]}")
    runtime.blobs = store
    try:
        yield store
    finally:
        runtime.blobs = local
        await store.close()


async def test_a_submission_on_s3_is_stored_encrypted_and_served_by_range(
    fhir: httpx.AsyncClient, runtime: Runtime, on_s3: BlobStore
) -> None:
    nir, _ = await new_person(fhir)
    response = await fhir.post("/", json=iti65(nir), headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    binary = by_type(response)["Binary"]

    keys = [info.key async for info in on_s3.list("spaces/")]
    assert len(keys) == 1
    assert b"%PDF" not in await on_s3.read(keys[0], 0, 64)

    whole = await fhir.get(f"/Binary/{binary['id']}", headers={"Accept": "*/*"})
    assert whole.status_code == 200 and whole.content.startswith(b"%PDF")
    part = await fhir.get(f"/Binary/{binary['id']}", headers={"Accept": "*/*", "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]

    # A large one too: several segments, read back through Range GETs on the bucket.
    big = report_pdf(pages=100, lines=40)
    body = iti65(nir)
    for entry in body["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Binary":
            resource["data"] = base64.b64encode(big).decode()
        if resource["resourceType"] == "DocumentReference":
            attachment = resource["content"][0]["attachment"]
            attachment["hash"] = base64.b64encode(hashlib.sha1(big, usedforsecurity=False).digest()).decode()
            attachment["size"] = len(big)
    assert (await fhir.post("/", json=body, headers=FHIR_JSON)).status_code == 200

    report = await documents.verify(Context.system(runtime), deep=True)
    # Rows of earlier tests point at the session's local folder; what this bucket holds is whole and recorded.
    assert report.orphans == [] and report.unreadable == []
