"""Batch and transaction Bundles (FHIR R4 http.html#transaction): a transaction is all or nothing and resolves
its `urn:uuid:` and conditional references; a batch runs each entry on its own and reports each result."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.factories import FHIR_JSON, INS, new_nir, patient

RPPS = "urn:oid:1.2.250.1.71.4.2.1"
OBS_IDS = "urn:espace-sante:test:observation"


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def observation(subject: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Poids"}]},
        "subject": {"reference": subject},
        "valueQuantity": {"value": 64.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    }
    body.update(extra)
    return body


def post(resource: dict[str, Any], full_url: str | None = None, **request: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def diagnostics(body: dict[str, Any]) -> str:
    assert body["resourceType"] == "OperationOutcome", body
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


async def _create(fhir: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await fhir.post(f"/{body['resourceType']}", json=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _total(fhir: httpx.AsyncClient, rtype: str, **params: str) -> int:
    response = await fhir.get(f"/{rtype}", params=params)
    assert response.status_code == 200, response.text
    total: int = response.json()["total"]
    return total


async def test_transaction_resolves_urn_uuid_references_between_its_entries(fhir: httpx.AsyncClient) -> None:
    """A lab sends the practitioner, the patient and a result in one transaction, linked by urn:uuid fullUrls.
    The server gives each an id and rewrites the references to them."""
    nir, rpps = new_nir(), "1" + new_nir()[:10]
    doc_url, pat_url, obs_url = urn(), urn(), urn()
    practitioner = {
        "resourceType": "Practitioner",
        "identifier": [{"system": RPPS, "value": rpps}],
        "name": [{"family": "Curie"}],
    }
    result = await fhir.post(
        "",
        json=bundle(
            "transaction",
            post(observation(pat_url, performer=[{"reference": doc_url}]), obs_url),
            post(practitioner, doc_url),
            post(patient(nir), pat_url),
        ),
        headers=FHIR_JSON,
    )
    assert result.status_code == 200, result.text
    body = result.json()
    assert body["type"] == "transaction-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created"] * 3
    obs, doc, pat = (e["resource"] for e in body["entry"])
    assert obs["subject"]["reference"] == f"Patient/{pat['id']}"
    assert obs["performer"][0]["reference"] == f"Practitioner/{doc['id']}"
    assert body["entry"][2]["response"]["location"] == f"Patient/{pat['id']}/_history/1"
    stored = await fhir.get(f"/Observation/{obs['id']}")
    assert stored.json()["subject"]["reference"] == f"Patient/{pat['id']}"


async def test_a_bad_entry_rolls_back_every_entry(fhir: httpx.AsyncClient) -> None:
    """A transaction creates a Patient and an Observation, then updates an existing Patient with a stale
    version. The update fails (412), and nothing of the transaction exists afterwards: not the new Patient,
    not the Observation, and the existing Patient is unchanged."""
    existing = await _create(fhir, patient())
    changed = await fhir.put(
        f"/Patient/{existing['id']}", json=dict(existing, gender="male"), headers=FHIR_JSON
    )
    assert changed.status_code == 200
    nir, marker = new_nir(), uuid.uuid4().hex
    pat_url = urn()
    result = await fhir.post(
        "",
        json=bundle(
            "transaction",
            post(patient(nir), pat_url),
            post(observation(pat_url, identifier=[{"system": OBS_IDS, "value": marker}])),
            {
                "resource": dict(existing, gender="other"),
                "request": {"method": "PUT", "url": f"Patient/{existing['id']}", "ifMatch": 'W/"1"'},
            },
        ),
        headers=FHIR_JSON,
    )
    assert result.status_code == 412, result.text
    assert "Bundle.entry[2]" in diagnostics(result.json())

    assert await _total(fhir, "Patient", identifier=f"{INS}|{nir}") == 0
    assert await _total(fhir, "Observation", identifier=f"{OBS_IDS}|{marker}") == 0
    current = (await fhir.get(f"/Patient/{existing['id']}")).json()
    assert (current["gender"], current["meta"]["versionId"]) == ("male", "2")


async def test_an_invalid_resource_in_a_transaction_is_named_and_nothing_is_written(
    fhir: httpx.AsyncClient,
) -> None:
    """The second entry's Patient has gender "femme": the transaction is refused with 422 naming
    Bundle.entry[1] and the gender element, and the first entry's Patient was not created."""
    nir = new_nir()
    result = await fhir.post(
        "",
        json=bundle(
            "transaction",
            post(patient(nir)),
            post(patient(gender="femme")),
        ),
        headers=FHIR_JSON,
    )
    assert result.status_code == 422, result.text
    outcome = result.json()
    assert "Bundle.entry[1]" in diagnostics(outcome)
    assert any("gender" in e for i in outcome["issue"] for e in i.get("expression", []))
    assert await _total(fhir, "Patient", identifier=f"{INS}|{nir}") == 0


async def test_a_failing_read_rolls_back_the_writes_before_it(fhir: httpx.AsyncClient) -> None:
    """GET entries run last; a read of a missing resource fails the transaction after the creates ran, and
    the creates are undone."""
    nir = new_nir()
    result = await fhir.post(
        "",
        json=bundle(
            "transaction",
            {"request": {"method": "GET", "url": f"Patient/{'c' * 48}"}},
            post(patient(nir)),
        ),
        headers=FHIR_JSON,
    )
    assert result.status_code == 404, result.text
    assert "Bundle.entry[0]" in diagnostics(result.json())
    assert await _total(fhir, "Patient", identifier=f"{INS}|{nir}") == 0


async def test_conditional_reference_resolves_to_the_one_match(fhir: httpx.AsyncClient) -> None:
    """A French feed names the patient by INS (`Patient?identifier=system|value`); the server writes the
    Patient's id into the reference."""
    nir = new_nir()
    pat = await _create(fhir, patient(nir))
    result = await fhir.post(
        "",
        json=bundle(
            "transaction",
            post(observation(f"Patient?identifier={INS}|{nir}")),
        ),
        headers=FHIR_JSON,
    )
    assert result.status_code == 200, result.text
    assert result.json()["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{pat['id']}"


async def test_conditional_reference_with_no_match_is_a_clear_422(fhir: httpx.AsyncClient) -> None:
    """No Patient has this INS: 422 naming the entry, the element and "no resource matches"; nothing written."""
    nir, marker = new_nir(), uuid.uuid4().hex
    result = await fhir.post(
        "",
        json=bundle(
            "transaction",
            post(patient(new_nir())),
            post(
                observation(
                    f"Patient?identifier={INS}|{nir}", identifier=[{"system": OBS_IDS, "value": marker}]
                )
            ),
        ),
        headers=FHIR_JSON,
    )
    assert result.status_code == 422, result.text
    outcome = result.json()
    text = diagnostics(outcome)
    assert "Bundle.entry[1]" in text
    assert "no resource matches" in text
    assert nir in text
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[1].resource.subject.reference"]
    assert await _total(fhir, "Observation", identifier=f"{OBS_IDS}|{marker}") == 0


async def test_conditional_reference_with_two_matches_is_a_clear_422(fhir: httpx.AsyncClient) -> None:
    """Two Patients carry the same hospital number (IPP) of one establishment, each with its own INS: the
    server will not guess which one. (Two Patients with one INS cannot be made: one person, one space.)"""
    ipp = f"IPP-{new_nir()}"
    local = "urn:oid:1.2.250.1.71.4.2.7.99"
    for _ in range(2):
        body = patient()
        body["identifier"].append({"system": local, "value": ipp})
        await _create(fhir, body)
    result = await fhir.post(
        "",
        json=bundle(
            "transaction",
            post(observation(f"Patient?identifier={local}|{ipp}")),
        ),
        headers=FHIR_JSON,
    )
    assert result.status_code == 422, result.text
    text = diagnostics(result.json())
    assert "Bundle.entry[0]" in text
    assert "several resources match" in text


async def test_conditional_reference_matches_a_patient_created_in_the_same_transaction(
    fhir: httpx.AsyncClient,
) -> None:
    """The Patient is created by the transaction and the Observation names it by INS, not by urn:uuid."""
    nir = new_nir()
    result = await fhir.post(
        "",
        json=bundle(
            "transaction",
            post(observation(f"Patient?identifier={INS}|{nir}")),
            post(patient(nir), urn()),
        ),
        headers=FHIR_JSON,
    )
    assert result.status_code == 200, result.text
    obs, pat = (e["resource"] for e in result.json()["entry"])
    assert obs["subject"]["reference"] == f"Patient/{pat['id']}"


async def test_references_to_another_patients_space_are_refused(fhir: httpx.AsyncClient) -> None:
    """An Observation about Jeanne that points at Paul's Observation (or names Paul as performer) is refused,
    by a plain create and inside a transaction: a record never links into someone else's."""
    jeanne, paul = await _create(fhir, patient()), await _create(fhir, patient())
    pauls = await _create(fhir, observation(f"Patient/{paul['id']}"))

    planted = observation(
        f"Patient/{jeanne['id']}", derivedFrom=[{"reference": f"Observation/{pauls['id']}"}]
    )
    response = await fhir.post("/Observation", json=planted, headers=FHIR_JSON)
    assert response.status_code == 422, response.text
    assert "another patient" in diagnostics(response.json())
    assert response.json()["issue"][0]["expression"] == ["Observation.derivedFrom[0].reference"]

    marker = uuid.uuid4().hex
    result = await fhir.post(
        "",
        json=bundle(
            "transaction",
            post(observation(f"Patient/{jeanne['id']}", identifier=[{"system": OBS_IDS, "value": marker}])),
            post(observation(f"Patient/{jeanne['id']}", performer=[{"reference": f"Patient/{paul['id']}"}])),
        ),
        headers=FHIR_JSON,
    )
    assert result.status_code == 422, result.text
    assert "Bundle.entry[1]" in diagnostics(result.json())
    assert await _total(fhir, "Observation", identifier=f"{OBS_IDS}|{marker}") == 0


async def test_batch_entries_succeed_or_fail_independently(fhir: httpx.AsyncClient) -> None:
    """A batch of four: a good Patient, a Patient with gender "femme", a read of a missing Patient and
    another good Patient. The batch answers 200; each entry has its own status, the failures carry an
    OperationOutcome, and both good Patients exist."""
    good1, good2 = new_nir(), new_nir()
    result = await fhir.post(
        "",
        json=bundle(
            "batch",
            post(patient(good1)),
            post(patient(gender="femme")),
            {"request": {"method": "GET", "url": f"Patient/{'d' * 48}"}},
            post(patient(good2)),
        ),
        headers=FHIR_JSON,
    )
    assert result.status_code == 200, result.text
    body = result.json()
    assert body["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses[0] == "201 Created" and statuses[3] == "201 Created"
    assert statuses[1].startswith("422") and statuses[2].startswith("404")
    bad = body["entry"][1]["response"]["outcome"]
    assert "Patient.gender" in diagnostics(bad)
    assert bad["id"]
    assert body["entry"][2]["response"]["outcome"]["issue"][0]["code"] == "not-found"
    assert await _total(fhir, "Patient", identifier=f"{INS}|{good1}") == 1
    assert await _total(fhir, "Patient", identifier=f"{INS}|{good2}") == 1


async def test_batch_reads_and_searches(fhir: httpx.AsyncClient) -> None:
    """GET entries in a batch: a read, a vread and a search each come back in their entry."""
    nir = new_nir()
    pat = await _create(fhir, patient(nir))
    result = await fhir.post(
        "",
        json=bundle(
            "batch",
            {"request": {"method": "GET", "url": f"Patient/{pat['id']}"}},
            {"request": {"method": "GET", "url": f"Patient/{pat['id']}/_history/1"}},
            {"request": {"method": "GET", "url": f"Patient?identifier={INS}|{nir}"}},
        ),
        headers=FHIR_JSON,
    )
    assert result.status_code == 200, result.text
    read, vread, search = result.json()["entry"]
    assert read["response"]["status"] == "200 OK"
    assert read["resource"]["id"] == pat["id"]
    assert read["response"]["etag"] == 'W/"1"'
    assert vread["resource"]["meta"]["versionId"] == "1"
    assert search["response"]["status"] == "200 OK"
    assert search["resource"]["type"] == "searchset"
    assert search["resource"]["total"] == 1
    assert search["resource"]["entry"][0]["resource"]["id"] == pat["id"]


async def test_update_and_delete_in_a_transaction_honour_if_match(fhir: httpx.AsyncClient) -> None:
    """A transaction corrects a Patient (ifMatch on its current version) and deletes a wrong Observation.
    Both happen; the Observation reads 410 afterwards."""
    pat = await _create(fhir, patient())
    obs = await _create(fhir, observation(f"Patient/{pat['id']}"))
    result = await fhir.post(
        "",
        json=bundle(
            "transaction",
            {
                "resource": dict(pat, gender="male"),
                "request": {"method": "PUT", "url": f"Patient/{pat['id']}", "ifMatch": 'W/"1"'},
            },
            {"request": {"method": "DELETE", "url": f"Observation/{obs['id']}"}},
        ),
        headers=FHIR_JSON,
    )
    assert result.status_code == 200, result.text
    put, delete = result.json()["entry"]
    assert put["response"]["status"] == "200 OK"
    assert put["response"]["etag"] == 'W/"2"'
    assert put["resource"]["gender"] == "male"
    assert delete["response"]["status"] == "204 No Content"
    assert (await fhir.get(f"/Observation/{obs['id']}")).status_code == 410


async def test_a_stale_delete_in_a_transaction_is_412_and_undoes_the_rest(fhir: httpx.AsyncClient) -> None:
    """A PUT with a stale ifMatch fails the transaction, and the DELETE that ran before it is undone."""
    pat = await _create(fhir, patient())
    obs = await _create(fhir, observation(f"Patient/{pat['id']}"))
    await fhir.put(f"/Patient/{pat['id']}", json=dict(pat, gender="male"), headers=FHIR_JSON)
    result = await fhir.post(
        "",
        json=bundle(
            "transaction",
            {"request": {"method": "DELETE", "url": f"Observation/{obs['id']}"}},
            {
                "resource": dict(pat, gender="other"),
                "request": {"method": "PUT", "url": f"Patient/{pat['id']}", "ifMatch": 'W/"1"'},
            },
        ),
        headers=FHIR_JSON,
    )
    assert result.status_code == 412, result.text
    assert "Bundle.entry[1]" in diagnostics(result.json())
    assert (await fhir.get(f"/Observation/{obs['id']}")).status_code == 200
    assert (await fhir.get(f"/Patient/{pat['id']}")).json()["gender"] == "male"


async def test_too_many_entries_is_413(fhir: httpx.AsyncClient) -> None:
    """More entries than the server takes in one Bundle (1000) is refused up front, saying how many."""
    entries = [{"request": {"method": "GET", "url": "Patient?_count=1"}}] * 1001
    result = await fhir.post("", json=bundle("batch", *entries), headers=FHIR_JSON)
    assert result.status_code == 413, result.text
    assert "1001 > 1000" in diagnostics(result.json())


async def test_the_base_only_takes_batch_or_transaction_bundles(fhir: httpx.AsyncClient) -> None:
    """A Patient posted to the base, or a Bundle of type collection, is a 400 that says what is expected."""
    response = await fhir.post("", json=patient(), headers=FHIR_JSON)
    assert response.status_code == 400, response.text
    assert "Bundle" in diagnostics(response.json())
    collection = await fhir.post("", json=bundle("collection"), headers=FHIR_JSON)
    assert collection.status_code == 400, collection.text
    assert collection.json()["issue"][0]["expression"] == ["Bundle.type"]


async def test_an_empty_transaction_is_an_empty_response(fhir: httpx.AsyncClient) -> None:
    result = await fhir.post("", json=bundle("transaction"), headers=FHIR_JSON)
    assert result.status_code == 200, result.text
    assert result.json()["type"] == "transaction-response"
    assert result.json()["entry"] == []


async def test_a_transaction_entry_with_an_unknown_urn_reference_is_named(fhir: httpx.AsyncClient) -> None:
    """An Observation whose subject is a urn:uuid no entry declares: 422 naming the entry."""
    result = await fhir.post("", json=bundle("transaction", post(observation(urn()))), headers=FHIR_JSON)
    assert result.status_code == 422, result.text
    assert "Bundle.entry[0]" in diagnostics(result.json())


async def test_a_malformed_entry_is_located_precisely(fhir: httpx.AsyncClient) -> None:
    """An entry without request.url fails a transaction naming Bundle.entry[1].request.url; in a batch a
    PATCH entry gets its own 405 and the other entry still runs."""
    result = await fhir.post(
        "",
        json=bundle(
            "transaction",
            post(patient()),
            {"resource": patient(), "request": {"method": "POST"}},
        ),
        headers=FHIR_JSON,
    )
    assert result.status_code == 400, result.text
    assert result.json()["issue"][0]["expression"] == ["Bundle.entry[1].request.url"]
    assert diagnostics(result.json()).count("Bundle.entry[1]") == 1

    nir = new_nir()
    batch = await fhir.post(
        "",
        json=bundle(
            "batch",
            {"request": {"method": "PATCH", "url": "Patient/x"}},
            post(patient(nir)),
        ),
        headers=FHIR_JSON,
    )
    assert batch.status_code == 200, batch.text
    first, second = batch.json()["entry"]
    assert first["response"]["status"] == "405"
    assert "PATCH" in diagnostics(first["response"]["outcome"])
    assert second["response"]["status"] == "201 Created"


async def test_resending_a_transaction_reuses_the_patient_it_matched(fhir: httpx.AsyncClient) -> None:
    """A feed re-sends the same transaction (conditional create on the INS): the second time the Patient
    entry answers 200 with the existing Patient, and the new Observation attaches to it."""
    nir = new_nir()

    def send() -> dict[str, Any]:
        pat_url = urn()
        return bundle(
            "transaction",
            post(patient(nir), pat_url, ifNoneExist=f"identifier={INS}|{nir}"),
            post(observation(pat_url)),
        )

    first = await fhir.post("", json=send(), headers=FHIR_JSON)
    assert first.status_code == 200, first.text
    second = await fhir.post("", json=send(), headers=FHIR_JSON)
    assert second.status_code == 200, second.text
    assert [e["response"]["status"] for e in second.json()["entry"]] == ["200 OK", "201 Created"]
    pid = first.json()["entry"][0]["resource"]["id"]
    assert second.json()["entry"][0]["resource"]["id"] == pid
    assert second.json()["entry"][1]["resource"]["subject"]["reference"] == f"Patient/{pid}"
    assert await _total(fhir, "Patient", identifier=f"{INS}|{nir}") == 1
    assert await _total(fhir, "Observation", patient=pid) == 2


async def test_a_documents_content_takes_its_space_from_the_document_and_is_not_rewritten(
    fhir: httpx.AsyncClient,
) -> None:
    """The Binary of a document gets its space from the DocumentReference. Once deposited, its content is what
    the document's metadata describes: a PUT of new bytes is refused (a correction is a replacement)."""
    pat = await _create(fhir, patient())
    bin_url = urn()
    result = await fhir.post(
        "",
        json=bundle(
            "transaction",
            post({"resourceType": "Binary", "contentType": "text/plain", "data": "djE="}, bin_url),
            post(
                {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "subject": {"reference": f"Patient/{pat['id']}"},
                    "content": [{"attachment": {"contentType": "text/plain", "url": bin_url}}],
                }
            ),
        ),
        headers=FHIR_JSON,
    )
    assert result.status_code == 200, result.text
    binary = result.json()["entry"][0]["resource"]
    assert binary["id"][:32] == pat["id"][:32]  # the patient's space
    replaced = await fhir.put(f"/Binary/{binary['id']}", json=dict(binary, data="djI="), headers=FHIR_JSON)
    assert replaced.status_code == 422, replaced.text
    assert "remplacement" in replaced.json()["issue"][0]["diagnostics"] or "replacement" in replaced.text
    assert (await fhir.get(f"/Binary/{binary['id']}")).json()["data"] == "djE="


async def test_a_conditional_create_matching_two_patients_fails_the_transaction(
    fhir: httpx.AsyncClient,
) -> None:
    """ifNoneExist matches two Patients (one hospital number on two records): 412 naming the entry, and the
    other entry is not written."""
    other = new_nir()
    ipp, local = f"IPP-{new_nir()}", "urn:oid:1.2.250.1.71.4.2.7.99"
    for _ in range(2):
        body = patient()
        body["identifier"].append({"system": local, "value": ipp})
        await _create(fhir, body)
    result = await fhir.post(
        "",
        json=bundle(
            "transaction",
            post(patient(other)),
            post(patient(), ifNoneExist=f"identifier={local}|{ipp}"),
        ),
        headers=FHIR_JSON,
    )
    assert result.status_code == 412, result.text
    assert "Bundle.entry[1]" in diagnostics(result.json())
    assert await _total(fhir, "Patient", identifier=f"{INS}|{other}") == 0


async def test_duplicate_full_urls_and_deletes_of_nothing_fail_a_transaction(fhir: httpx.AsyncClient) -> None:
    same = urn()
    duplicate = await fhir.post(
        "", json=bundle("transaction", post(patient(), same), post(patient(), same)), headers=FHIR_JSON
    )
    assert duplicate.status_code == 400, duplicate.text
    assert "fullUrl" in diagnostics(duplicate.json())

    nir = new_nir()
    missing = await fhir.post(
        "",
        json=bundle(
            "transaction",
            post(patient(nir)),
            {"request": {"method": "DELETE", "url": f"Observation/{'9' * 48}"}},
        ),
        headers=FHIR_JSON,
    )
    assert missing.status_code == 404, missing.text
    assert "Bundle.entry[1]" in diagnostics(missing.json())
    assert await _total(fhir, "Patient", identifier=f"{INS}|{nir}") == 0


async def test_batch_entry_errors_name_their_entry_and_where_in_it(fhir: httpx.AsyncClient) -> None:
    """A search entry with a bad `_count` is located in its request.url; an entry of an unknown type is
    named by its index like every other entry."""
    result = await fhir.post(
        "",
        json=bundle(
            "batch",
            {"request": {"method": "GET", "url": "Patient?_count=beaucoup"}},
            {"request": {"method": "GET", "url": "Medication/1"}},
        ),
        headers=FHIR_JSON,
    )
    assert result.status_code == 200, result.text
    search, unknown = (e["response"] for e in result.json()["entry"])
    assert search["status"] == "400"
    assert search["outcome"]["issue"][0]["expression"] == ["Bundle.entry[0].request.url"]
    assert "_count" in diagnostics(search["outcome"])
    assert unknown["status"] == "404"
    assert diagnostics(unknown["outcome"]).startswith("Bundle.entry[1]")
    assert "Medication" in diagnostics(unknown["outcome"])
