"""A document's content through the API: checked from its bytes, stored encrypted outside the resource tables,
retrieved as a download (ITI-68) with ranges and an ETag, and nothing kept of a refused submission."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx
import pikepdf

from espace_sante.runtime import Runtime
from tests.content.samples import altered_pdf, javascript_action, png, report_pdf
from tests.factories import FHIR_JSON, INS, new_nir, patient


def _transaction(nir: str, content: bytes, content_type: str, **attachment: Any) -> dict[str, Any]:
    """A patient (created if new) and a document with its content, the way French software sends them: the
    subject by a conditional reference to the INS."""
    subject = {"reference": f"Patient?identifier={INS}|{nir}"}
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:5d0c6c55-0000-4000-8000-000000000001",
                "resource": patient(nir),
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={INS}|{nir}"},
            },
            {
                "fullUrl": "urn:uuid:5d0c6c55-0000-4000-8000-000000000002",
                "resource": {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "subject": subject,
                    "content": [
                        {
                            "attachment": {
                                "contentType": content_type,
                                "url": "urn:uuid:5d0c6c55-0000-4000-8000-000000000003",
                                **attachment,
                            }
                        }
                    ],
                },
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": "urn:uuid:5d0c6c55-0000-4000-8000-000000000003",
                "resource": {
                    "resourceType": "Binary",
                    "contentType": content_type,
                    "securityContext": subject,
                    "data": base64.b64encode(content).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }


async def _deposit(
    fhir: httpx.AsyncClient, content: bytes, content_type: str, **attachment: Any
) -> dict[str, Any]:
    response = await fhir.post(
        "/", json=_transaction(new_nir(), content, content_type, **attachment), headers=FHIR_JSON
    )
    assert response.status_code == 200, response.text
    return {e["resource"]["resourceType"]: e["resource"] for e in response.json()["entry"]}


async def _objects(runtime: Runtime) -> set[str]:
    return {info.key async for info in runtime.blob_store.list("spaces/")}


async def test_a_pdf_report_is_stored_encrypted_and_retrieved_as_a_download(
    fhir: httpx.AsyncClient, runtime: Runtime
) -> None:
    pdf = report_pdf(pages=3)
    stored = await _deposit(fhir, pdf, "application/pdf", size=len(pdf))
    binary = stored["Binary"]
    assert "data" not in binary  # the transaction's answer carries the metadata, not the bytes back

    retrieved = await fhir.get(f"/Binary/{binary['id']}", headers={"Accept": "*/*"})
    assert retrieved.status_code == 200
    assert retrieved.content == pdf
    assert retrieved.headers["content-type"] == "application/pdf"
    assert retrieved.headers["x-content-type-options"] == "nosniff"
    assert retrieved.headers["content-security-policy"].startswith("sandbox")
    assert retrieved.headers["content-disposition"].startswith("attachment")
    assert retrieved.headers["accept-ranges"] == "bytes"

    # On disk the bytes are ciphertext: not even the PDF header shows.
    assert await _objects(runtime)
    for path in runtime.settings.blob_path.rglob("*"):
        if path.is_file():
            assert b"%PDF" not in path.read_bytes()[:64]

    # Asking for the resource gives the Binary with its content inline (FHIR binary.html).
    resource = await fhir.get(f"/Binary/{binary['id']}")
    assert base64.b64decode(resource.json()["data"]) == pdf


async def test_ranges_and_etags_let_a_large_document_be_read_in_parts(fhir: httpx.AsyncClient) -> None:
    pdf = report_pdf(pages=100, lines=40)
    assert len(pdf) > 70_000  # more than one 64 KiB segment
    binary = (await _deposit(fhir, pdf, "application/pdf"))["Binary"]
    url = f"/Binary/{binary['id']}"

    part = await fhir.get(url, headers={"Accept": "*/*", "Range": "bytes=65000-66099"})
    assert part.status_code == 206
    assert part.content == pdf[65000:66100]
    assert part.headers["content-range"] == f"bytes 65000-66099/{len(pdf)}"

    tail = await fhir.get(url, headers={"Accept": "*/*", "Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == pdf[-100:]

    beyond = await fhir.get(url, headers={"Accept": "*/*", "Range": f"bytes={len(pdf)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(pdf)}"

    whole = await fhir.get(url, headers={"Accept": "*/*"})
    again = await fhir.get(url, headers={"Accept": "*/*", "If-None-Match": whole.headers["etag"]})
    assert again.status_code == 304 and again.content == b""

    stale = await fhir.get(url, headers={"Accept": "*/*", "Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == pdf  # a changed document is sent whole


async def test_identical_uploads_are_stored_once_per_space(fhir: httpx.AsyncClient, runtime: Runtime) -> None:
    nir = new_nir()
    image = png(64, 64)
    first = await fhir.post("/", json=_transaction(nir, image, "image/png"), headers=FHIR_JSON)
    assert first.status_code == 200, first.text
    before = await _objects(runtime)
    bundle = _transaction(nir, image, "image/png")
    second = await fhir.post("/", json=bundle, headers=FHIR_JSON)
    assert second.status_code == 200, second.text
    assert await _objects(runtime) == before  # the same content in the same space: one object

    # Another person's identical file is another object, under that person's key.
    third = await fhir.post("/", json=_transaction(new_nir(), image, "image/png"), headers=FHIR_JSON)
    assert third.status_code == 200
    assert len(await _objects(runtime) - before) == 1


async def test_a_pdf_with_javascript_is_refused_and_nothing_of_its_submission_is_kept(
    fhir: httpx.AsyncClient, runtime: Runtime
) -> None:
    def open_action(pdf: pikepdf.Pdf) -> None:
        pdf.Root.OpenAction = javascript_action(pdf)

    dangerous = altered_pdf(open_action)
    nir = new_nir()
    before = await _objects(runtime)
    response = await fhir.post("/", json=_transaction(nir, dangerous, "application/pdf"), headers=FHIR_JSON)
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert "OpenAction" in issue["diagnostics"] or "JavaScript" in issue["diagnostics"]
    assert issue["expression"] == ["Bundle.entry[2].resource.data"]
    # All or nothing: not even the patient of the transaction was created, and no object was written.
    found = await fhir.get("/Patient", params={"identifier": f"{INS}|{nir}"})
    assert found.json().get("total", 0) == 0
    assert await _objects(runtime) == before


async def test_the_type_is_read_from_the_bytes_not_from_the_declaration(fhir: httpx.AsyncClient) -> None:
    response = await fhir.post("/", json=_transaction(new_nir(), png(), "application/pdf"), headers=FHIR_JSON)
    assert response.status_code == 422
    assert "image/png" in response.json()["issue"][0]["diagnostics"]

    html = b"<html><script>alert(1)</script></html>"
    response = await fhir.post("/", json=_transaction(new_nir(), html, "text/plain"), headers=FHIR_JSON)
    assert response.status_code == 422


async def test_declared_size_and_hash_must_match_the_content(fhir: httpx.AsyncClient) -> None:
    pdf = report_pdf()
    wrong = base64.b64encode(hashlib.sha1(b"another file", usedforsecurity=False).digest()).decode()
    response = await fhir.post(
        "/",
        json=_transaction(new_nir(), pdf, "application/pdf", size=len(pdf) + 1, hash=wrong),
        headers=FHIR_JSON,
    )
    assert response.status_code == 422
    expressions = {e for i in response.json()["issue"] for e in i.get("expression", [])}
    assert expressions == {
        "Bundle.entry[1].resource.content[0].attachment.size",
        "Bundle.entry[1].resource.content[0].attachment.hash",
    }

    right = base64.b64encode(hashlib.sha1(pdf, usedforsecurity=False).digest()).decode()
    ok = await fhir.post(
        "/",
        json=_transaction(new_nir(), pdf, "application/pdf", size=len(pdf), hash=right),
        headers=FHIR_JSON,
    )
    assert ok.status_code == 200, ok.text


async def test_documents_over_the_size_limit_are_refused(fhir: httpx.AsyncClient, runtime: Runtime) -> None:
    limit = runtime.settings.document_max_bytes
    runtime.settings.document_max_bytes = 2048
    try:
        response = await fhir.post(
            "/", json=_transaction(new_nir(), report_pdf(pages=5), "application/pdf"), headers=FHIR_JSON
        )
    finally:
        runtime.settings.document_max_bytes = limit
    assert response.status_code == 413
    assert "2048" in response.json()["issue"][0]["diagnostics"]


async def test_a_missing_object_is_an_error_before_any_byte_is_sent(
    fhir: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The store lost an object (an operator's mistake, a restored backup): the download answers 503 with an
    OperationOutcome, not a 200 cut short, and `documents verify` names it."""
    from espace_sante.access.actors import SYSTEM
    from espace_sante.access.policy import decide
    from espace_sante.context import Context
    from espace_sante.fhir import compartment
    from espace_sante.record import documents
    from espace_sante.storage import documents as docs_store

    binary = (await _deposit(fhir, report_pdf(pages=2, lines=7), "application/pdf"))["Binary"]
    space = compartment.space_of(binary["id"])
    assert space is not None
    reading = decide(SYSTEM, "read", "Binary")
    blob = await runtime.db.read("t_blob", docs_store.content_of, reading, space, binary["id"], 1)
    assert blob is not None
    path = runtime.settings.blob_path / blob.key
    saved = path.read_bytes()
    path.unlink()
    try:
        lost = await fhir.get(f"/Binary/{binary['id']}", headers={"Accept": "*/*"})
        assert lost.status_code == 503
        assert lost.json()["resourceType"] == "OperationOutcome"
        report = await documents.verify(Context.system(runtime))
        assert blob.key in (report.missing or []) and not report.clean
    finally:
        path.write_bytes(saved)
