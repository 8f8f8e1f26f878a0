"""A Bundle entry and the HTTP request it stands for take one path (record/interactions.py): a transaction entry
POSTing a DocumentReference with its content inline is an ITI-105 publish, a batch GET of AuditEvent reads the
trace, a PATCH entry changes a document's metadata, and what a type does not offer is refused alike."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from tests.documents.mhd import iti105, new_person
from tests.factories import FHIR_JSON

JSON_PATCH = {"Content-Type": "application/json-patch+json"}
HIDE = {
    "system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument",
    "code": "INVISIBLE_PATIENT",
}


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict[str, Any]) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}


def get(url: str) -> dict[str, Any]:
    return {"request": {"method": "GET", "url": url}}


def json_patch(url: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
    data = base64.b64encode(json.dumps(operations).encode()).decode()
    return {
        "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data},
        "request": {"method": "PATCH", "url": url},
    }


async def _published(fhir: httpx.AsyncClient, nir: str) -> dict[str, Any]:
    response = await fhir.post("/DocumentReference", json=iti105(nir), headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_a_transaction_entry_with_inline_content_is_a_simplified_publish(
    fhir: httpx.AsyncClient,
) -> None:
    nir, pid = await new_person(fhir)
    body = iti105(nir)
    pdf = base64.b64decode(body["content"][0]["attachment"]["data"])
    response = await fhir.post("/", json=bundle("transaction", post(body)), headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    (entry,) = response.json()["entry"]
    assert entry["response"]["status"].startswith("201")
    doc = entry["resource"]
    attachment = doc["content"][0]["attachment"]
    assert "data" not in attachment and attachment["url"].startswith("Binary/")
    assert attachment["size"] == len(pdf)
    assert doc["subject"]["reference"] == f"Patient/{pid}"
    content = await fhir.get(f"/{attachment['url']}", headers={"Accept": "*/*"})
    assert content.content == pdf

    # The same checks as ITI-105 over HTTP, said about the entry.
    wrong = iti105(nir)
    wrong["content"][0]["attachment"]["size"] = 12
    refused = await fhir.post("/", json=bundle("transaction", post(wrong)), headers=FHIR_JSON)
    assert refused.status_code == 422, refused.text
    assert refused.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.content[0].attachment.size"]


async def test_a_batch_entry_with_inline_content_is_a_simplified_publish(fhir: httpx.AsyncClient) -> None:
    nir, _ = await new_person(fhir)
    response = await fhir.post("/", json=bundle("batch", post(iti105(nir))), headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    (entry,) = response.json()["entry"]
    assert entry["response"]["status"].startswith("201"), entry
    assert entry["resource"]["content"][0]["attachment"]["url"].startswith("Binary/")


async def test_a_batch_reads_and_searches_the_trace(fhir: httpx.AsyncClient) -> None:
    _, pid = await new_person(fhir)
    response = await fhir.post(
        "/",
        json=bundle("batch", get(f"AuditEvent?patient=Patient/{pid}"), get("AuditEvent?action=R")),
        headers=FHIR_JSON,
    )
    assert response.status_code == 200, response.text
    found, unnamed = response.json()["entry"]
    assert found["response"]["status"].startswith("200"), found
    events = [e["resource"] for e in found["resource"]["entry"]]
    assert events and {e["resourceType"] for e in events} == {"AuditEvent"}
    # The trace of a whole country is not listed: a search names its patient, as over HTTP.
    assert unnamed["response"]["status"].startswith("400"), unnamed
    one = events[0]["id"]
    read = await fhir.post("/", json=bundle("batch", get(f"AuditEvent/{one}")), headers=FHIR_JSON)
    (entry,) = read.json()["entry"]
    assert entry["response"]["status"].startswith("200"), entry
    assert entry["resource"]["id"] == one
    direct = await fhir.get(f"/AuditEvent/{one}")
    assert direct.status_code == 200 and direct.json()["id"] == one


async def test_a_patch_entry_changes_a_documents_metadata(fhir: httpx.AsyncClient) -> None:
    nir, _ = await new_person(fhir)
    doc = await _published(fhir, nir)
    add = [{"op": "add", "path": "/securityLabel/-", "value": {"coding": [HIDE]}}]
    response = await fhir.post(
        "/", json=bundle("batch", json_patch(f"DocumentReference/{doc['id']}", add)), headers=FHIR_JSON
    )
    assert response.status_code == 200, response.text
    (entry,) = response.json()["entry"]
    assert entry["response"]["status"].startswith("200"), entry
    codes = {c["code"] for label in entry["resource"]["securityLabel"] for c in label["coding"]}
    assert "INVISIBLE_PATIENT" in codes
    assert entry["resource"]["meta"]["versionId"] == "2"

    # ifMatch of a PATCH entry is If-Match: a stale version is 412, not a lost update.
    stale = json_patch(f"DocumentReference/{doc['id']}", add)
    stale["request"]["ifMatch"] = 'W/"1"'
    refused = await fhir.post("/", json=bundle("batch", stale), headers=FHIR_JSON)
    assert refused.json()["entry"][0]["response"]["status"].startswith("412")

    # What a PATCH may not change is refused alike over HTTP and in an entry.
    title = [{"op": "replace", "path": "/content/0/attachment/title", "value": "Autre titre"}]
    direct = await fhir.patch(
        f"/DocumentReference/{doc['id']}", content=json.dumps(title), headers=JSON_PATCH
    )
    assert direct.status_code == 405
    batch = await fhir.post(
        "/", json=bundle("batch", json_patch(f"DocumentReference/{doc['id']}", title)), headers=FHIR_JSON
    )
    assert batch.json()["entry"][0]["response"]["status"].startswith("405")


async def test_patch_of_another_type_and_writes_of_the_trace_are_405_in_both(fhir: httpx.AsyncClient) -> None:
    _, pid = await new_person(fhir)
    ops = [{"op": "replace", "path": "/gender", "value": "female"}]
    direct = await fhir.patch(f"/Patient/{pid}", content=json.dumps(ops), headers=JSON_PATCH)
    assert direct.status_code == 405, direct.text
    entry = json_patch(f"Patient/{pid}", ops)
    batch = await fhir.post("/", json=bundle("batch", entry), headers=FHIR_JSON)
    assert batch.status_code == 200, batch.text
    assert batch.json()["entry"][0]["response"]["status"].startswith("405")
    transaction = await fhir.post("/", json=bundle("transaction", entry), headers=FHIR_JSON)
    assert transaction.status_code == 405, transaction.text

    event = {"resourceType": "AuditEvent", "id": "x"}
    assert (await fhir.put("/AuditEvent/x", json=event, headers=FHIR_JSON)).status_code == 405
    put = {"resource": event, "request": {"method": "PUT", "url": "AuditEvent/x"}}
    batch = await fhir.post("/", json=bundle("batch", put), headers=FHIR_JSON)
    assert batch.json()["entry"][0]["response"]["status"].startswith("405")
    history = await fhir.post("/", json=bundle("batch", get("AuditEvent/x/_history/1")), headers=FHIR_JSON)
    assert history.json()["entry"][0]["response"]["status"].startswith("405")


async def test_a_conditional_simplified_publish_that_matches_stores_nothing(fhir: httpx.AsyncClient) -> None:
    """If-None-Exist on ITI-105 (a retry after a lost response): the document found is the answer, and its
    content is not stored a second time, inline or not."""
    nir, _ = await new_person(fhir)
    body = iti105(nir)
    master = body["masterIdentifier"]
    condition = f"identifier={master['system']}|{master['value']}"
    first = await fhir.post(
        "/DocumentReference", json=body, headers={**FHIR_JSON, "If-None-Exist": condition}
    )
    assert first.status_code == 201, first.text
    again = await fhir.post(
        "/DocumentReference", json=body, headers={**FHIR_JSON, "If-None-Exist": condition}
    )
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert "data" not in again.json()["content"][0]["attachment"]
