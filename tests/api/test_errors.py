"""Every error a client can provoke: the right status, an OperationOutcome with an id that says what is wrong
and where, never a stack trace; and the security headers on every answer."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from espace_sante.app import create_app
from espace_sante.oauth import clients as oauth_clients
from espace_sante.runtime import Runtime
from espace_sante.storage import clients
from tests.conftest import TokenFactory
from tests.factories import BASE, FHIR_JSON, INS, new_nir, patient


def outcome(response: httpx.Response) -> dict[str, Any]:
    """The OperationOutcome of an error response, checked for what every error must carry."""
    assert response.headers["content-type"].startswith("application/fhir+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body.get("id"), body
    assert body["issue"] and all(i["severity"] == "error" and i["diagnostics"] for i in body["issue"]), body
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


def text(response: httpx.Response) -> str:
    return " ".join(i["diagnostics"] for i in outcome(response)["issue"])


def expressions(response: httpx.Response) -> list[str]:
    return [e for i in outcome(response)["issue"] for e in i.get("expression", [])]


async def _patient_id(fhir: httpx.AsyncClient) -> str:
    response = await fhir.post("/Patient", json=patient(), headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    pid: str = response.json()["id"]
    return pid


# --- 400 ---------------------------------------------------------------------------------------------------


async def test_bad_json_names_the_line_and_column(fhir: httpx.AsyncClient) -> None:
    """A body with a missing value on its second line: 400 saying where the JSON breaks."""
    response = await fhir.post(
        "/Patient", content=b'{"resourceType": "Patient",\n  "gender": }', headers=FHIR_JSON
    )
    assert response.status_code == 400
    message = text(response)
    assert "invalid JSON" in message
    assert "line 2" in message and "column" in message


async def test_an_empty_body_and_a_non_object_body_are_400(fhir: httpx.AsyncClient) -> None:
    empty = await fhir.post("/Patient", content=b"  ", headers=FHIR_JSON)
    assert empty.status_code == 400
    assert "empty request body" in text(empty)
    array = await fhir.post("/Patient", json=[patient()], headers=FHIR_JSON)
    assert array.status_code == 400
    assert "FHIR JSON resource" in text(array)


async def test_an_unknown_search_parameter_is_400_when_strict(fhir: httpx.AsyncClient) -> None:
    """With Prefer: handling=strict a typo in a parameter name is an error naming it."""
    response = await fhir.get("/Patient", params={"nom": "Martin"}, headers={"Prefer": "handling=strict"})
    assert response.status_code == 400
    assert "nom" in text(response)


# --- 401 ---------------------------------------------------------------------------------------------------


async def test_no_token_is_401_with_www_authenticate(http: httpx.AsyncClient) -> None:
    response = await http.get("/fhir/Patient")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert outcome(response)["issue"][0]["code"] == "login"


async def test_an_invalid_token_is_401(http: httpx.AsyncClient) -> None:
    for header in (
        "Bearer " + secrets.token_urlsafe(32),
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer " + "x" * 600,
    ):
        response = await http.get("/fhir/Patient", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers["www-authenticate"].startswith("Bearer")
        outcome(response)


async def test_an_expired_token_is_401(http: httpx.AsyncClient, runtime: Runtime) -> None:
    """A token whose lifetime is over no longer opens anything, and the answer says so."""
    client = await oauth_clients.create_client(runtime, "expired", "system/*.read")
    token = secrets.token_urlsafe(32)
    await runtime.db.interaction(
        "test_expired_token",
        clients.insert_token,
        oauth_clients.digest(token),
        client.client_id,
        "system/*.read",
        datetime.now(UTC) - timedelta(seconds=1),
    )
    response = await http.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "expired" in text(response)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_token_in_the_query_string_is_refused(
    http: httpx.AsyncClient, token_for: TokenFactory
) -> None:
    """Tokens in URLs end up in logs: refused even when valid, with a pointer to the Authorization header."""
    token = await token_for("system/*.*")
    response = await http.get("/fhir/Patient", params={"access_token": token})
    assert response.status_code in (400, 401)
    assert "Authorization" in text(response)
    both = await http.get(
        "/fhir/Patient", params={"access_token": token}, headers={"Authorization": f"Bearer {token}"}
    )
    assert both.status_code in (400, 401)


# --- 403 ---------------------------------------------------------------------------------------------------


async def test_a_scope_that_does_not_cover_the_interaction_is_403(
    http: httpx.AsyncClient, token_for: TokenFactory
) -> None:
    """A read-only feed tries to create a Patient: 403 naming the interaction and the type."""
    token = await token_for("system/*.read")
    response = await http.post(
        "/fhir/Patient", json=patient(), headers={**FHIR_JSON, "Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 403
    message = text(response)
    assert "create Patient" in message
    assert outcome(response)["issue"][0]["code"] == "forbidden"


# --- 404 ---------------------------------------------------------------------------------------------------


async def test_an_unknown_type_is_404_naming_it(fhir: httpx.AsyncClient) -> None:
    for response in (
        await fhir.get("/Medication"),
        await fhir.get("/Medication/abc"),
        await fhir.post("/Medication", json={"resourceType": "Medication"}, headers=FHIR_JSON),
    ):
        assert response.status_code == 404, response.text
        assert "Medication" in text(response)


async def test_an_unknown_id_is_404(fhir: httpx.AsyncClient) -> None:
    for rid in ("a" * 48, "not-one-of-ours", "bad_id!"):
        response = await fhir.get(f"/Patient/{rid}")
        assert response.status_code == 404, rid
        outcome(response)
    unknown = await fhir.get(f"/Patient/{'a' * 48}")
    assert f"Patient/{'a' * 48}" in text(unknown)
    directory = await fhir.get("/Practitioner/00000000-0000-4000-8000-000000000000")
    assert directory.status_code == 404


async def test_an_unknown_path_is_404(fhir: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
    response = await fhir.get("/Patient/a/b/c/d")
    assert response.status_code == 404
    outcome(response)
    other = await http.get("/nowhere")
    assert other.status_code == 404
    assert "Traceback" not in other.text


# --- 405 ---------------------------------------------------------------------------------------------------


async def test_patch_is_405_pointing_to_put(fhir: httpx.AsyncClient) -> None:
    pid = await _patient_id(fhir)
    response = await fhir.patch(
        f"/Patient/{pid}",
        json=[{"op": "replace", "path": "/gender", "value": "male"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 405
    assert "PUT" in text(response)


async def test_put_without_an_existing_id_is_405(fhir: httpx.AsyncClient) -> None:
    """PUT to the type (no id) and PUT to an id that does not exist are both 405."""
    no_id = await fhir.put("/Patient", json=patient(), headers=FHIR_JSON)
    assert no_id.status_code == 405
    assert "PUT" in text(no_id)
    assert "GET" in no_id.headers.get("allow", "")
    unknown = await fhir.put(f"/Patient/{'e' * 48}", json=patient(id="e" * 48), headers=FHIR_JSON)
    assert unknown.status_code == 405
    assert "POST" in text(unknown)


async def test_writing_an_audit_event_is_405(fhir: httpx.AsyncClient) -> None:
    """AuditEvent is written by the server only: create, update and delete are 405."""
    event = {
        "resourceType": "AuditEvent",
        "type": {"code": "rest"},
        "recorded": "2026-11-24T10:00:00Z",
        "agent": [{"requestor": True}],
        "source": {"observer": {"display": "x"}},
    }
    create = await fhir.post("/AuditEvent", json=event, headers=FHIR_JSON)
    assert create.status_code == 405, create.text
    assert "read-only" in text(create)
    rid = "a" * 48
    update = await fhir.put(f"/AuditEvent/{rid}", json=dict(event, id=rid), headers=FHIR_JSON)
    assert update.status_code == 405
    delete = await fhir.delete(f"/AuditEvent/{rid}")
    assert delete.status_code == 405
    assert (await fhir.get("/AuditEvent")).status_code == 400  # must name its patient (tests/trace)


# --- 410, 412 ----------------------------------------------------------------------------------------------


async def test_a_deleted_resource_is_410_and_a_stale_update_412(fhir: httpx.AsyncClient) -> None:
    pid = await _patient_id(fhir)
    current = (await fhir.get(f"/Patient/{pid}")).json()
    await fhir.put(f"/Patient/{pid}", json=current, headers=FHIR_JSON)
    stale = await fhir.put(f"/Patient/{pid}", json=current, headers={**FHIR_JSON, "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert "stale version 1, current is 2" in text(stale)
    assert (await fhir.delete(f"/Patient/{pid}")).status_code == 204
    gone = await fhir.get(f"/Patient/{pid}")
    assert gone.status_code == 410
    assert outcome(gone)["issue"][0]["code"] == "deleted"


# --- 413 ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def small(runtime: Runtime, token_for: TokenFactory) -> AsyncIterator[httpx.AsyncClient]:
    """The same server with a 2 KiB request limit."""
    settings = runtime.settings.model_copy(update={"max_request_bytes": 2048})
    app = create_app(settings=settings, runtime=runtime)
    token = await token_for("system/*.*")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=f"{BASE}/fhir",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client


def _big_patient() -> bytes:
    return orjson.dumps(patient(name=[{"family": "Martin", "given": ["Jeanne" * 100] * 10}]))


async def test_a_body_over_the_limit_with_content_length_is_413(small: httpx.AsyncClient) -> None:
    body = _big_patient()
    assert len(body) > 2048
    response = await small.post("/Patient", content=body, headers=FHIR_JSON)
    assert response.status_code == 413
    assert "2048" in text(response)
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_chunked_body_over_the_limit_is_413(small: httpx.AsyncClient) -> None:
    """Without Content-Length the limit is enforced while the body streams in."""
    body = _big_patient()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 500):
            yield body[i : i + 500]

    response = await small.post("/Patient", content=chunks(), headers=FHIR_JSON)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert "2048" in text(response)


async def test_a_body_under_the_limit_passes(small: httpx.AsyncClient) -> None:
    response = await small.post("/Patient", json=patient(), headers=FHIR_JSON)
    assert response.status_code == 201, response.text


# --- 415 ---------------------------------------------------------------------------------------------------


async def test_xml_is_415(fhir: httpx.AsyncClient) -> None:
    """This server speaks JSON only: an XML body, a body without Content-Type and _format=xml are 415."""
    xml = await fhir.post(
        "/Patient",
        content=b'<Patient xmlns="http://hl7.org/fhir"/>',
        headers={"Content-Type": "application/fhir+xml"},
    )
    assert xml.status_code == 415
    assert "JSON" in text(xml) and "application/fhir+xml" in text(xml)

    bare = await fhir.post("/Patient", content=orjson.dumps(patient()))
    assert bare.status_code == 415
    assert "absent" in text(bare)

    pid = await _patient_id(fhir)
    for url in (f"/Patient/{pid}", "/Patient", "/metadata"):
        response = await fhir.get(url, params={"_format": "xml"})
        assert response.status_code == 415, (url, response.text)
        assert "JSON" in text(response)
    ok = await fhir.get(f"/Patient/{pid}", params={"_format": "json"})
    assert ok.status_code == 200


async def test_search_by_post_needs_a_form(fhir: httpx.AsyncClient) -> None:
    response = await fhir.post("/Patient/_search", json={"name": "Martin"}, headers=FHIR_JSON)
    assert response.status_code == 415
    assert "x-www-form-urlencoded" in text(response)


# --- 422 ---------------------------------------------------------------------------------------------------


async def test_a_gender_outside_the_value_set_is_422_naming_it(fhir: httpx.AsyncClient) -> None:
    response = await fhir.post("/Patient", json=patient(gender="femme"), headers=FHIR_JSON)
    assert response.status_code == 422
    assert "Patient.gender" in expressions(response)
    assert "femme" in text(response) and "female" in text(response)


async def test_a_wrong_ins_nir_key_is_422_saying_the_key_is_wrong(fhir: httpx.AsyncClient) -> None:
    nir = new_nir()
    wrong = nir[:13] + f"{(int(nir[13:]) % 97) + 1:02d}"
    response = await fhir.post("/Patient", json=patient(wrong), headers=FHIR_JSON)
    assert response.status_code == 422, response.text
    message = text(response).lower()
    assert "key" in message and ("clé" in message or "cle" in message)
    assert any(e.startswith("Patient.identifier[0]") for e in expressions(response))
    found = await fhir.get("/Patient", params={"identifier": f"{INS}|{wrong}"})
    assert found.json()["total"] == 0


async def test_an_observation_without_subject_is_422_naming_it(fhir: httpx.AsyncClient) -> None:
    body = {"resourceType": "Observation", "status": "final", "code": {"text": "Poids"}}
    response = await fhir.post("/Observation", json=body, headers=FHIR_JSON)
    assert response.status_code == 422
    assert expressions(response) == ["Observation.subject"]
    assert "patient" in text(response)


async def test_an_observation_about_a_patient_that_does_not_exist_is_422(fhir: httpx.AsyncClient) -> None:
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Poids"},
        "subject": {"reference": f"Patient/{'f' * 48}"},
    }
    response = await fhir.post("/Observation", json=body, headers=FHIR_JSON)
    assert response.status_code == 422
    assert "does not exist" in text(response)
    assert expressions(response) == ["Observation.subject.reference"]


async def test_an_unknown_element_is_422_naming_it(fhir: httpx.AsyncClient) -> None:
    response = await fhir.post("/Patient", json=patient(sexe="F"), headers=FHIR_JSON)
    assert response.status_code == 422
    assert "Patient.sexe" in expressions(response)


# --- on every answer ---------------------------------------------------------------------------------------


async def test_security_headers_are_on_every_answer(fhir: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
    answers = [
        await fhir.get("/Patient"),
        await fhir.get("/Nope"),
        await http.get("/fhir/metadata"),
        await http.get("/healthz"),
        await http.post("/oauth/token", data={"grant_type": "password"}),
    ]
    for response in answers:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
        assert "server" not in response.headers
        assert response.headers["x-request-id"]


async def test_no_error_answers_with_a_stack_trace_or_without_an_outcome_id(fhir: httpx.AsyncClient) -> None:
    """A sweep of odd requests: each answer is a 4xx OperationOutcome with its own id."""
    ids = set()
    pid = await _patient_id(fhir)
    odd = [
        fhir.get("/Patient", params={"birthdate": "hier"}),
        fhir.get("/Patient", params={"_count": "-1"}),
        fhir.get("/Patient", params={"_sort": "nope"}, headers={"Prefer": "handling=strict"}),
        fhir.get(f"/Patient/{pid}/_history/abc"),
        fhir.get("/Patient/_history", params={"_count": "x"}),
        fhir.post("/Patient", content=b"\xff\xfe", headers=FHIR_JSON),
        fhir.post("/Patient", content=b"[" * 10000 + b"]" * 10000, headers=FHIR_JSON),
        fhir.post("/Patient", json={"resourceType": "Patient", "birthDate": 19550814}, headers=FHIR_JSON),
        fhir.put(f"/Patient/{pid}", json={"resourceType": "Patient"}, headers={**FHIR_JSON, "If-Match": "x"}),
        fhir.post(
            "", json={"resourceType": "Bundle", "type": "transaction", "entry": "x"}, headers=FHIR_JSON
        ),
        fhir.delete("/Patient"),
    ]
    for pending in odd:
        response = await pending
        assert 400 <= response.status_code < 500, (response.request.url, response.text)
        ids.add(outcome(response)["id"])
    assert len(ids) == len(odd)
