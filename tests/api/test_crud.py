"""The REST interactions one resource goes through (FHIR R4 http.html): create, read, vread, update, delete and
history, with the headers a client relies on (Location, ETag, Last-Modified, Cache-Control) and the rules the
server keeps (it assigns ids and versions, refuses stale updates and update-as-create, keeps history after a
delete)."""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from tests.factories import BASE, FHIR_JSON, INS, new_nir, patient

SPACE_ID = re.compile(r"^[0-9a-f]{48}$")


def observation(patient_id: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Poids"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2026-11-19",
        "valueQuantity": {"value": 64.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    }
    body.update(extra)
    return body


async def _create(fhir: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await fhir.post(f"/{body['resourceType']}", json=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _outcome_text(response: httpx.Response) -> str:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


async def test_create_sets_id_and_meta_itself_and_says_where_the_resource_is(fhir: httpx.AsyncClient) -> None:
    """A hospital posts a Patient with its own id and a made-up version: the server ignores both, assigns a
    space-prefixed id and version 1, and answers 201 with Location, ETag, Last-Modified and no caching."""
    body = patient(
        id="mon-id-local",
        meta={
            "versionId": "42",
            "lastUpdated": "2001-01-01T00:00:00Z",
            "tag": [{"system": "urn:test", "code": "kept"}],
        },
    )
    response = await fhir.post("/Patient", json=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    created = response.json()
    assert SPACE_ID.match(created["id"]), created["id"]
    assert created["meta"]["versionId"] == "1"
    assert created["meta"]["lastUpdated"] != "2001-01-01T00:00:00Z"
    assert created["meta"]["tag"] == [{"system": "urn:test", "code": "kept"}]
    assert created["identifier"] == body["identifier"]
    assert response.headers["location"] == f"{BASE}/fhir/Patient/{created['id']}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("application/fhir+json")
    modified = parsedate_to_datetime(response.headers["last-modified"])
    assert modified.isoformat()[:19] == created["meta"]["lastUpdated"][:19]


async def test_read_returns_what_was_stored_with_its_version_headers(fhir: httpx.AsyncClient) -> None:
    """Reading the Patient back gives the same JSON the create answered, version 1, never cached."""
    created = await _create(fhir, patient())
    response = await fhir.get(f"/Patient/{created['id']}")
    assert response.status_code == 200, response.text
    assert response.json() == created
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["cache-control"] == "no-store"
    assert "last-modified" in response.headers


async def test_update_with_the_current_version_succeeds_and_a_stale_one_is_refused(
    fhir: httpx.AsyncClient,
) -> None:
    """Two nurses edit the same Patient. The first sends If-Match W/"1" and gets version 2; the second, still
    on version 1, gets 412 naming both versions, and the stored Patient keeps the first edit."""
    created = await _create(fhir, patient())
    pid = created["id"]
    first = dict(created, telecom=[{"system": "phone", "value": "0601020304"}])
    response = await fhir.put(f"/Patient/{pid}", json=first, headers={**FHIR_JSON, "If-Match": 'W/"1"'})
    assert response.status_code == 200, response.text
    assert response.json()["meta"]["versionId"] == "2"
    assert response.headers["etag"] == 'W/"2"'
    assert "location" not in response.headers

    second = dict(created, telecom=[{"system": "phone", "value": "0699999999"}])
    stale = await fhir.put(f"/Patient/{pid}", json=second, headers={**FHIR_JSON, "If-Match": 'W/"1"'})
    assert stale.status_code == 412, stale.text
    text = _outcome_text(stale)
    assert "1" in text and "2" in text and "stale" in text

    current = (await fhir.get(f"/Patient/{pid}")).json()
    assert current["telecom"] == [{"system": "phone", "value": "0601020304"}]
    assert current["meta"]["versionId"] == "2"


async def test_a_malformed_if_match_is_a_clear_400(fhir: httpx.AsyncClient) -> None:
    """If-Match must be an ETag the server gave out; "deux" is not one."""
    created = await _create(fhir, patient())
    response = await fhir.put(
        f"/Patient/{created['id']}", json=created, headers={**FHIR_JSON, "If-Match": "deux"}
    )
    assert response.status_code == 400, response.text
    assert "If-Match" in _outcome_text(response)


async def test_vread_returns_each_version_as_it_was(fhir: httpx.AsyncClient) -> None:
    """After an update, version 1 and version 2 can both be read by their version id."""
    created = await _create(fhir, patient())
    pid = created["id"]
    updated = await fhir.put(f"/Patient/{pid}", json=dict(created, gender="male"), headers=FHIR_JSON)
    assert updated.status_code == 200, updated.text

    v1 = await fhir.get(f"/Patient/{pid}/_history/1")
    v2 = await fhir.get(f"/Patient/{pid}/_history/2")
    assert (v1.status_code, v2.status_code) == (200, 200)
    assert (v1.json()["gender"], v1.json()["meta"]["versionId"]) == ("female", "1")
    assert (v2.json()["gender"], v2.json()["meta"]["versionId"]) == ("male", "2")
    assert v1.headers["etag"] == 'W/"1"'
    missing = await fhir.get(f"/Patient/{pid}/_history/9")
    assert missing.status_code == 404
    assert "_history/9" in _outcome_text(missing)


async def test_update_ignores_the_version_the_client_sends_in_meta(fhir: httpx.AsyncClient) -> None:
    """A client that copies meta.versionId "99" into its update gets version 2: the server counts."""
    created = await _create(fhir, patient())
    body = dict(created, meta={"versionId": "99"})
    response = await fhir.put(f"/Patient/{created['id']}", json=body, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    assert response.json()["meta"]["versionId"] == "2"


async def test_put_cannot_create_a_resource(fhir: httpx.AsyncClient) -> None:
    """The server assigns ids: a PUT to an id that does not exist is 405 and tells the client to POST, and
    nothing is created."""
    unknown = "0" * 32 + "1234567890abcdef"
    response = await fhir.put(f"/Patient/{unknown}", json=patient(id=unknown), headers=FHIR_JSON)
    assert response.status_code == 405, response.text
    assert "POST" in _outcome_text(response)
    assert (await fhir.get(f"/Patient/{unknown}")).status_code == 404

    local = await fhir.put("/Patient/mon-patient", json=patient(id="mon-patient"), headers=FHIR_JSON)
    assert local.status_code == 405, local.text


async def test_update_id_must_match_the_url(fhir: httpx.AsyncClient) -> None:
    """A body whose id differs from the URL (or has none) is a 400 naming Patient.id."""
    created = await _create(fhir, patient())
    other = dict(created, id="f" * 48)
    response = await fhir.put(f"/Patient/{created['id']}", json=other, headers=FHIR_JSON)
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == ["Patient.id"]
    missing = {k: v for k, v in created.items() if k != "id"}
    response = await fhir.put(f"/Patient/{created['id']}", json=missing, headers=FHIR_JSON)
    assert response.status_code == 400, response.text


async def test_resource_type_must_match_the_url(fhir: httpx.AsyncClient) -> None:
    """A Patient posted to /Observation, or put to an Observation URL, is a 400 naming resourceType."""
    response = await fhir.post("/Observation", json=patient(), headers=FHIR_JSON)
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == ["resourceType"]
    assert "Patient" in _outcome_text(response)

    created = await _create(fhir, patient())
    obs = await _create(fhir, observation(created["id"]))
    response = await fhir.put(
        f"/Observation/{obs['id']}", json=dict(created, id=obs["id"]), headers=FHIR_JSON
    )
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == ["resourceType"]


async def test_conditional_create_creates_once_then_returns_the_match(fhir: httpx.AsyncClient) -> None:
    """A feed sends the same Patient twice with If-None-Exist on the INS: the first creates (201), the second
    finds it (200, same id, nothing new). When two Patients match, the server cannot choose: 412."""
    nir = new_nir()
    condition = {**FHIR_JSON, "If-None-Exist": f"identifier={INS}|{nir}"}
    first = await fhir.post("/Patient", json=patient(nir), headers=condition)
    assert first.status_code == 201, first.text
    second = await fhir.post("/Patient", json=patient(nir), headers=condition)
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["meta"]["versionId"] == "1"
    found = await fhir.get("/Patient", params={"identifier": f"{INS}|{nir}"})
    assert found.json()["total"] == 1

    family = "Doublon" + new_nir()[:8]
    for _ in range(2):
        await _create(fhir, patient(name=[{"family": family}]))
    several = await fhir.post(
        "/Patient",
        json=patient(name=[{"family": family}]),
        headers={**FHIR_JSON, "If-None-Exist": f"family:exact={family}"},
    )
    assert several.status_code == 412, several.text
    assert "2" in _outcome_text(several)
    again = await fhir.get("/Patient", params={"family:exact": family})
    assert again.json()["total"] == 2


async def test_prefer_return_minimal_sends_no_body(fhir: httpx.AsyncClient) -> None:
    """With Prefer: return=minimal the create answers 201 with headers only; the update 200 the same way."""
    response = await fhir.post("/Patient", json=patient(), headers={**FHIR_JSON, "Prefer": "return=minimal"})
    assert response.status_code == 201
    assert response.content == b""
    location = response.headers["location"]
    assert location.startswith(f"{BASE}/fhir/Patient/") and location.endswith("/_history/1")
    pid = location.split("/")[-3]
    stored = (await fhir.get(f"/Patient/{pid}")).json()
    updated = await fhir.put(
        f"/Patient/{pid}", json=stored, headers={**FHIR_JSON, "Prefer": "return=minimal"}
    )
    assert updated.status_code == 200
    assert updated.content == b""
    assert updated.headers["etag"] == 'W/"2"'


async def test_delete_then_read_is_gone_but_history_remains(fhir: httpx.AsyncClient) -> None:
    """An Observation entered by mistake is deleted: reading it is 410 Gone, deleting it again is harmless,
    and its history still lists the delete, the update and the create, whose versions stay readable."""
    pat = await _create(fhir, patient())
    obs = await _create(fhir, observation(pat["id"]))
    oid = obs["id"]
    updated = await fhir.put(f"/Observation/{oid}", json=dict(obs, status="amended"), headers=FHIR_JSON)
    assert updated.status_code == 200, updated.text

    deleted = await fhir.delete(f"/Observation/{oid}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    gone = await fhir.get(f"/Observation/{oid}")
    assert gone.status_code == 410, gone.text
    assert "deleted" in _outcome_text(gone)
    assert (await fhir.delete(f"/Observation/{oid}")).status_code == 204

    history = await fhir.get(f"/Observation/{oid}/_history")
    assert history.status_code == 200, history.text
    bundle = history.json()
    assert bundle["type"] == "history"
    methods = [(e["request"]["method"], e["response"]["etag"]) for e in bundle["entry"]]
    assert methods == [("DELETE", 'W/"3"'), ("PUT", 'W/"2"'), ("POST", 'W/"1"')]
    assert "resource" not in bundle["entry"][0]
    assert bundle["entry"][2]["resource"]["status"] == "final"
    assert (await fhir.get(f"/Observation/{oid}/_history/1")).json()["status"] == "final"
    search = await fhir.get("/Observation", params={"_id": oid})
    assert search.json()["total"] == 0


async def test_delete_of_an_unknown_resource_is_404(fhir: httpx.AsyncClient) -> None:
    response = await fhir.delete(f"/Observation/{'a' * 48}")
    assert response.status_code == 404, response.text
    assert "Observation/" in _outcome_text(response)


async def test_instance_history_pages_and_filters_by_since(fhir: httpx.AsyncClient) -> None:
    """A Patient updated twice has three versions. `_count=1` pages through them newest first, following
    the `next` link; `_since` the second version's time leaves out the first."""
    created = await _create(fhir, patient())
    pid = created["id"]
    v2 = (await fhir.put(f"/Patient/{pid}", json=dict(created, gender="male"), headers=FHIR_JSON)).json()
    await fhir.put(f"/Patient/{pid}", json=dict(v2, gender="other"), headers=FHIR_JSON)

    seen = []
    url: str | None = f"/Patient/{pid}/_history?_count=1"
    while url is not None:
        page = await fhir.get(url)
        assert page.status_code == 200, page.text
        entries = page.json()["entry"]
        assert len(entries) <= 1
        seen += [e["resource"]["meta"]["versionId"] for e in entries]
        nxt = [link["url"] for link in page.json()["link"] if link["relation"] == "next"]
        url = nxt[0] if nxt and entries else None
        assert len(seen) <= 3, "paging does not stop"
    assert seen == ["3", "2", "1"]

    since = await fhir.get(f"/Patient/{pid}/_history", params={"_since": v2["meta"]["lastUpdated"]})
    assert since.status_code == 200, since.text
    assert [e["resource"]["meta"]["versionId"] for e in since.json()["entry"]] == ["3", "2"]

    back = [link["url"] for link in page.json()["link"] if link["relation"] == "previous"]
    assert back and "_offset=1" in back[0]

    future = await fhir.get(f"/Patient/{pid}/_history", params={"_since": "2999-01-01"})
    assert future.status_code == 200, future.text
    assert future.json()["entry"] == []

    bad = await fhir.get(f"/Patient/{pid}/_history", params={"_since": "hier"})
    assert bad.status_code == 400
    assert "_since" in _outcome_text(bad)


async def test_type_history_lists_recent_changes_of_that_type(fhir: httpx.AsyncClient) -> None:
    """The type history with `_since` lists the Observations written since then (create and update), and
    nothing older; `_count` limits the page."""
    pat = await _create(fhir, patient())
    old = await _create(fhir, observation(pat["id"]))
    fresh = await _create(fhir, observation(pat["id"]))
    since = fresh["meta"]["lastUpdated"]
    await fhir.put(f"/Observation/{fresh['id']}", json=dict(fresh, status="amended"), headers=FHIR_JSON)

    response = await fhir.get("/Observation/_history", params={"_since": since})
    assert response.status_code == 200, response.text
    pairs = [(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in response.json()["entry"]]
    assert (fresh["id"], "2") in pairs and (fresh["id"], "1") in pairs
    assert all(rid != old["id"] for rid, _ in pairs)

    one = await fhir.get("/Observation/_history", params={"_since": since, "_count": "1"})
    assert len(one.json()["entry"]) == 1
    assert one.json()["entry"][0]["resource"]["id"] == fresh["id"]


async def test_history_of_an_unknown_resource_is_404(fhir: httpx.AsyncClient) -> None:
    response = await fhir.get(f"/Patient/{'b' * 48}/_history")
    assert response.status_code == 404, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_an_observation_cannot_move_to_another_patient(fhir: httpx.AsyncClient) -> None:
    """An update that changes the Observation's subject to another Patient is refused (422 naming the
    subject): records do not move between spaces."""
    jeanne, paul = await _create(fhir, patient()), await _create(fhir, patient())
    obs = await _create(fhir, observation(jeanne["id"]))
    moved = dict(obs, subject={"reference": f"Patient/{paul['id']}"})
    response = await fhir.put(f"/Observation/{obs['id']}", json=moved, headers=FHIR_JSON)
    assert response.status_code == 422, response.text
    assert response.json()["issue"][0]["expression"] == ["Observation.subject"]
    assert "another patient" in _outcome_text(response)


async def test_updating_a_deleted_resource_brings_it_back_as_a_new_version(fhir: httpx.AsyncClient) -> None:
    """A Patient deleted by mistake is put back with PUT: 201, version 3, readable again."""
    created = await _create(fhir, patient())
    pid = created["id"]
    assert (await fhir.delete(f"/Patient/{pid}")).status_code == 204
    back = await fhir.put(f"/Patient/{pid}", json=created, headers=FHIR_JSON)
    assert back.status_code == 201, back.text
    assert back.json()["meta"]["versionId"] == "3"
    assert back.headers["location"].endswith(f"/Patient/{pid}/_history/3")
    assert (await fhir.get(f"/Patient/{pid}")).status_code == 200


async def test_a_versioned_reference_into_another_patients_record_is_refused(fhir: httpx.AsyncClient) -> None:
    """Pointing at a precise version of Paul's Observation (`Observation/<id>/_history/1`) from Jeanne's record
    is a planted reference like any other: 422."""
    jeanne, paul = await _create(fhir, patient()), await _create(fhir, patient())
    pauls = await _create(fhir, observation(paul["id"]))
    for ref in (f"Observation/{pauls['id']}/_history/1", f"{BASE}/fhir/Observation/{pauls['id']}/_history/1"):
        planted = observation(jeanne["id"], derivedFrom=[{"reference": ref}])
        response = await fhir.post("/Observation", json=planted, headers=FHIR_JSON)
        assert response.status_code == 422, (ref, response.text)
        assert "another patient" in _outcome_text(response)
    own = await _create(fhir, observation(jeanne["id"]))
    fine = observation(jeanne["id"], derivedFrom=[{"reference": f"Observation/{own['id']}/_history/1"}])
    assert (await fhir.post("/Observation", json=fine, headers=FHIR_JSON)).status_code == 201


async def test_an_attachment_url_into_another_patients_record_is_refused(fhir: httpx.AsyncClient) -> None:
    """A DocumentReference for Jeanne whose attachment is Paul's Binary, by relative or absolute URL: 422."""
    jeanne, paul = await _create(fhir, patient()), await _create(fhir, patient())
    binary = await _create(
        fhir,
        {
            "resourceType": "Binary",
            "contentType": "text/plain",
            "data": "eA==",
            "securityContext": {"reference": f"Patient/{paul['id']}"},
        },
    )
    for url in (f"Binary/{binary['id']}", f"{BASE}/fhir/Binary/{binary['id']}"):
        doc = {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": f"Patient/{jeanne['id']}"},
            "content": [{"attachment": {"contentType": "text/plain", "url": url}}],
        }
        response = await fhir.post("/DocumentReference", json=doc, headers=FHIR_JSON)
        assert response.status_code == 422, (url, response.text)
        assert "another patient" in _outcome_text(response)


async def test_a_malformed_if_none_exist_is_400(fhir: httpx.AsyncClient) -> None:
    for condition in ("nimportequoi", "nope=1"):
        response = await fhir.post(
            "/Patient", json=patient(), headers={**FHIR_JSON, "If-None-Exist": condition}
        )
        assert response.status_code == 400, (condition, response.text)


async def test_search_by_post_finds_what_get_finds(fhir: httpx.AsyncClient) -> None:
    """POST _search with a form (identifiers kept out of the URL) answers the same searchset as GET."""
    nir = new_nir()
    created = await _create(fhir, patient(nir))
    response = await fhir.post("/Patient/_search", data={"identifier": f"{INS}|{nir}"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "searchset"
    assert result["total"] == 1
    assert result["entry"][0]["resource"]["id"] == created["id"]
    assert result["entry"][0]["fullUrl"] == f"{BASE}/fhir/Patient/{created['id']}"
