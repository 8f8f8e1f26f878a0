"""A newcomer's first minutes with the API: the README's story, step by step."""

from __future__ import annotations

import base64

import httpx

from tests.factories import FHIR_JSON, INS, new_nir


async def test_transaction_creates_a_patient_and_a_document_then_finds_them(fhir: httpx.AsyncClient) -> None:
    """A hospital's software sends one transaction: the patient (matched by INS if known) and a report with
    its content. Then it finds the document again by the patient's INS, with the patient included."""
    nir = new_nir()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:6a7d0c1e-1111-4a4a-9b9b-000000000001",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": INS, "value": nir}],
                    "name": [{"family": "Dupont", "given": ["Émile"]}],
                    "gender": "male",
                    "birthDate": "1953-12-10",
                },
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={INS}|{nir}"},
            },
            {
                "fullUrl": "urn:uuid:6a7d0c1e-1111-4a4a-9b9b-000000000002",
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "text/plain",
                    "data": base64.b64encode(b"Examen normal.").decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
            {
                "fullUrl": "urn:uuid:6a7d0c1e-1111-4a4a-9b9b-000000000003",
                "resource": {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]},
                    "subject": {"reference": f"Patient?identifier={INS}|{nir}"},
                    "content": [
                        {
                            "attachment": {
                                "contentType": "text/plain",
                                "url": "urn:uuid:6a7d0c1e-1111-4a4a-9b9b-000000000002",
                            }
                        }
                    ],
                },
                "request": {"method": "POST", "url": "DocumentReference"},
            },
        ],
    }
    response = await fhir.post("", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["201 Created"] * 3
    patient_id = result["entry"][0]["resource"]["id"]
    document = result["entry"][2]["resource"]
    assert document["subject"]["reference"] == f"Patient/{patient_id}"
    binary_id = result["entry"][1]["resource"]["id"]
    assert document["content"][0]["attachment"]["url"] == f"Binary/{binary_id}"

    found = await fhir.get(
        "/DocumentReference",
        params={"patient.identifier": f"{INS}|{nir}", "_include": "DocumentReference:subject"},
    )
    assert found.status_code == 200, found.text
    entries = found.json()["entry"]
    assert [(e["resource"]["resourceType"], e["search"]["mode"]) for e in entries] == [
        ("DocumentReference", "match"),
        ("Patient", "include"),
    ]
    assert found.json()["total"] == 1

    again = await fhir.get(f"/Binary/{binary_id}")
    assert base64.b64decode(again.json()["data"]) == b"Examen normal."


async def test_the_readme_submission_is_found_by_ins_and_downloaded(fhir: httpx.AsyncClient) -> None:
    """The README's document story: the example patient, then the French ITI-65 example (twice: the second
    time stores nothing), found by INS with the README's query and downloaded as the README does."""
    import json
    from pathlib import Path

    root = Path(__file__).parents[2]
    created = await fhir.post(
        "/", content=(root / "docs" / "readme-transaction.json").read_bytes(), headers=FHIR_JSON
    )
    assert created.status_code == 200, created.text
    submission = (root / "tests" / "data" / "pdsm" / "iti65-fr.json").read_bytes()
    first = await fhir.post("/", content=submission, headers=FHIR_JSON)
    again = await fhir.post("/", content=submission, headers=FHIR_JSON)
    assert first.status_code == 200 and again.status_code == 200, (first.text, again.text)
    assert [e["resource"]["id"] for e in again.json()["entry"]] == [
        e["resource"]["id"] for e in first.json()["entry"]
    ]
    found = await fhir.get(
        "/DocumentReference",
        params={"patient.identifier": f"{INS}|294037512000591", "status": "current", "category": "10"},
    )
    url = found.json()["entry"][0]["resource"]["content"][0]["attachment"]["url"]
    pdf = await fhir.get(f"/{url}", headers={"Accept": "*/*"})
    binary = next(e for e in json.loads(submission)["entry"] if e["resource"]["resourceType"] == "Binary")
    assert pdf.content == base64.b64decode(binary["resource"]["data"])
