"""Where spaces come from (issue 16 #4): a client used to post 1,000 Patients without any identifier and open
1,000 spaces, each with its key and trace chain, outside the registry's lifecycle. Now a Patient that opens a
space through the API carries a valid INS, and each client opens at most `api_spaces_per_client` spaces per
window, counted in PostgreSQL for every process (429 with Retry-After beyond)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx

from espace_sante.fhir.identifiers import INS_NIA
from espace_sante.oauth import clients as oauth_clients
from espace_sante.runtime import Runtime
from tests.factories import BASE, FHIR_JSON, INS, new_nir, patient


def _bundle(kind: str, *resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}} for r in resources
        ],
    }


def _nameless(family: str, **extra: Any) -> dict[str, Any]:
    """A Patient without any INS (the issue's 1,000 Patients had no identifier at all)."""
    body = patient(name=[{"family": family}], **extra)
    del body["identifier"]
    return body


async def _count(fhir: httpx.AsyncClient, family: str) -> int:
    found = await fhir.get("/Patient", params={"family:exact": family, "_summary": "count"})
    assert found.status_code == 200, found.text
    total: int = found.json()["total"]
    return total


def _family() -> str:
    return "Registre" + uuid.uuid4().hex[:10]


def _outcome(response: httpx.Response) -> tuple[str, list[str]]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return " ".join(i["diagnostics"] for i in body["issue"]), [
        e for i in body["issue"] for e in i.get("expression", [])
    ]


# --- a valid INS ----------------------------------------------------------------------------------------------


async def test_a_patient_without_an_ins_opens_no_space_and_is_told_where_spaces_come_from(
    fhir: httpx.AsyncClient,
) -> None:
    family = _family()
    cases = {
        "no identifier": _nameless(family),
        "another system": _nameless(family, identifier=[{"system": "urn:oid:1.2.3.4", "value": "42"}]),
        "an INS-NIA, whose format nothing checks": _nameless(
            family, identifier=[{"system": INS_NIA, "value": "7"}]
        ),
        "an INS-NIR without a system": _nameless(family, identifier=[{"value": new_nir()}]),
    }
    for what, body in cases.items():
        response = await fhir.post("/Patient", json=body, headers=FHIR_JSON)
        assert response.status_code == 422, (what, response.text)
        said, where = _outcome(response)
        assert where == ["Patient.identifier"], what
        assert said.startswith("Patient.identifier : un Patient qui ouvre un espace porte un INS valide"), (
            said
        )
        assert "registre" in said and "insurer's registry" in said, said
    assert await _count(fhir, family) == 0


async def test_a_patient_with_a_valid_ins_still_opens_a_space(fhir: httpx.AsyncClient) -> None:
    nir = new_nir()
    body = patient(
        nir, identifier=[{"system": "urn:oid:1.2.3.4", "value": "x"}, {"system": INS, "value": nir}]
    )
    created = await fhir.post("/Patient", json=body, headers=FHIR_JSON)
    assert created.status_code == 201, created.text


async def test_a_batch_of_patients_without_ins_opens_nothing(fhir: httpx.AsyncClient) -> None:
    """The issue's batch, shortened: every entry is refused on its own, and no space is opened."""
    family = _family()
    response = await fhir.post(
        "", json=_bundle("batch", *[_nameless(family) for _ in range(20)]), headers=FHIR_JSON
    )
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["422"] * 20
    assert (
        "Bundle.entry[3].resource.identifier" in entries[3]["response"]["outcome"]["issue"][0]["expression"]
    )
    assert await _count(fhir, family) == 0


async def test_a_transaction_with_a_patient_without_ins_is_refused_whole(fhir: httpx.AsyncClient) -> None:
    family = _family()
    good = patient(name=[{"family": family}])
    response = await fhir.post("", json=_bundle("transaction", good, _nameless(family)), headers=FHIR_JSON)
    assert response.status_code == 422, response.text
    said, where = _outcome(response)
    assert where == ["Bundle.entry[1].resource.identifier"] and "INS" in said
    assert await _count(fhir, family) == 0


async def test_a_conditional_create_that_finds_the_patient_opens_nothing_and_needs_nothing_more(
    fhir: httpx.AsyncClient,
) -> None:
    nir = new_nir()
    condition = {**FHIR_JSON, "If-None-Exist": f"identifier={INS}|{nir}"}
    assert (await fhir.post("/Patient", json=patient(nir), headers=condition)).status_code == 201
    again = await fhir.post("/Patient", json=patient(nir), headers=condition)
    assert again.status_code == 200, again.text


# --- a quota per client ---------------------------------------------------------------------------------------


@asynccontextmanager
async def _client(runtime: Runtime, http: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A new feed of its own (the session's feed has opened thousands of spaces), on /fhir."""
    made = await oauth_clients.create_client(runtime, f"quota {uuid.uuid4().hex[:8]}", "system/*.*")
    token = await http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(made.client_id, made.client_secret)
    )
    assert token.status_code == 200, token.text
    headers = {"Authorization": f"Bearer {token.json()['access_token']}", "Accept": "application/fhir+json"}
    async with httpx.AsyncClient(
        transport=http._transport, base_url=f"{BASE}/fhir", headers=headers
    ) as client:
        yield client


@contextmanager
def _quota(runtime: Runtime, spaces: int, window: int) -> Iterator[None]:
    saved = runtime.settings.api_spaces_per_client, runtime.settings.api_spaces_window_seconds
    runtime.settings.api_spaces_per_client, runtime.settings.api_spaces_window_seconds = spaces, window
    try:
        yield
    finally:
        runtime.settings.api_spaces_per_client, runtime.settings.api_spaces_window_seconds = saved


async def test_a_client_opens_at_most_its_quota_of_spaces_then_gets_429_with_retry_after(
    runtime: Runtime, http: httpx.AsyncClient
) -> None:
    with _quota(runtime, spaces=3, window=600):
        async with _client(runtime, http) as feed, _client(runtime, http) as other:
            # A refused Patient opens nothing and so counts for nothing.
            assert (
                await feed.post("/Patient", json=_nameless(_family()), headers=FHIR_JSON)
            ).status_code == 422
            for _ in range(3):
                assert (await feed.post("/Patient", json=patient(), headers=FHIR_JSON)).status_code == 201

            refused = await feed.post("/Patient", json=patient(), headers=FHIR_JSON)
            assert refused.status_code == 429, refused.text
            assert 0 < int(refused.headers["Retry-After"]) <= 600
            said, _ = _outcome(refused)
            assert said.startswith("trop d'espaces ouverts par ce client : 3 au plus en 600 s"), said
            assert refused.json()["issue"][0]["code"] == "throttled"

            batch = await feed.post("", json=_bundle("batch", patient(), patient()), headers=FHIR_JSON)
            assert [e["response"]["status"][:3] for e in batch.json()["entry"]] == ["429", "429"]
            transaction = await feed.post("", json=_bundle("transaction", patient()), headers=FHIR_JSON)
            assert transaction.status_code == 429, transaction.text
            assert int(transaction.headers["Retry-After"]) > 0

            # The quota is per client: another feed still opens spaces, and reading is never counted.
            assert (await other.post("/Patient", json=patient(), headers=FHIR_JSON)).status_code == 201
            assert (await feed.get("/Patient", params={"_count": "1"})).status_code == 200


async def test_concurrent_creations_never_exceed_the_quota(runtime: Runtime, http: httpx.AsyncClient) -> None:
    """Twelve creations at once, on as many connections: the counter row in PostgreSQL lets exactly the
    quota through, as it would for requests spread over several processes."""
    with _quota(runtime, spaces=4, window=600):
        async with _client(runtime, http) as feed:
            answers = await asyncio.gather(
                *(feed.post("/Patient", json=patient(), headers=FHIR_JSON) for _ in range(12))
            )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 4 + [429] * 8, statuses


async def test_the_quota_comes_back_when_its_window_ends(runtime: Runtime, http: httpx.AsyncClient) -> None:
    with _quota(runtime, spaces=1, window=3):
        async with _client(runtime, http) as feed:
            assert (await feed.post("/Patient", json=patient(), headers=FHIR_JSON)).status_code == 201
            refused = await feed.post("/Patient", json=patient(), headers=FHIR_JSON)
            assert refused.status_code == 429 and refused.headers["Retry-After"] in ("1", "2", "3")
            await asyncio.sleep(int(refused.headers["Retry-After"]) + 0.2)
            assert (await feed.post("/Patient", json=patient(), headers=FHIR_JSON)).status_code == 201


# --- the INS of a Patient is the registry's -------------------------------------------------------------------


def _put_entry(body: dict[str, Any]) -> dict[str, Any]:
    return {"resource": body, "request": {"method": "PUT", "url": f"Patient/{body['id']}"}}


def _assert_keeps_its_ins(response: httpx.Response, status: int = 422) -> None:
    assert response.status_code == status, response.text
    said, where = _outcome(response)
    assert where[-1].endswith("identifier"), where
    assert "registre" in said and "changed only by the insurer's registry" in said, said


async def test_an_update_cannot_strip_or_change_the_ins_and_the_ins_keeps_its_one_space(
    fhir: httpx.AsyncClient,
) -> None:
    """The probe's sequence: a PUT with `identifier: []` answered 200, then a new Patient with the same INS
    answered 201, a second space for the same person and the first one left without INS."""
    nir = new_nir()
    created = (await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)).json()
    pid = created["id"]

    stripped = await fhir.put(f"/Patient/{pid}", json=dict(created, identifier=[]), headers=FHIR_JSON)
    _assert_keeps_its_ins(stripped)
    assert stripped.json()["issue"][0]["expression"] == ["Patient.identifier"]
    no_identifier = {k: v for k, v in created.items() if k != "identifier"}
    _assert_keeps_its_ins(await fhir.put(f"/Patient/{pid}", json=no_identifier, headers=FHIR_JSON))
    other = dict(created, identifier=[{"system": INS, "value": new_nir()}])
    _assert_keeps_its_ins(await fhir.put(f"/Patient/{pid}", json=other, headers=FHIR_JSON))
    added = dict(created, identifier=[*created["identifier"], {"system": INS_NIA, "value": "7"}])
    _assert_keeps_its_ins(await fhir.put(f"/Patient/{pid}", json=added, headers=FHIR_JSON))

    # Through a transaction or a batch: the same rule, the same words.
    transaction = await fhir.post(
        "",
        json={
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [_put_entry(dict(created, identifier=[]))],
        },
        headers=FHIR_JSON,
    )
    _assert_keeps_its_ins(transaction)
    batch = await fhir.post(
        "",
        json={"resourceType": "Bundle", "type": "batch", "entry": [_put_entry(other)]},
        headers=FHIR_JSON,
    )
    assert batch.status_code == 200, batch.text
    assert batch.json()["entry"][0]["response"]["status"][:3] == "422"

    # Nothing changed: one version, the INS still finds the patient, and it still has its only space.
    current = (await fhir.get(f"/Patient/{pid}")).json()
    assert current["meta"]["versionId"] == "1" and current["identifier"] == created["identifier"]
    again = await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)
    assert again.status_code == 422, again.text
    assert again.json()["issue"][0]["code"] == "duplicate"
    found = await fhir.get("/Patient", params={"identifier": f"{INS}|{nir}"})
    assert [e["resource"]["id"] for e in found.json().get("entry", [])] == [pid]

    # What does not touch the INS is still an ordinary update, and so is another kind of identifier.
    kept = dict(
        created,
        gender="male",
        identifier=[
            {"use": "official", **created["identifier"][0]},
            {"system": "urn:oid:1.2.3.4", "value": "x"},
        ],
    )
    updated = await fhir.put(f"/Patient/{pid}", json=kept, headers=FHIR_JSON)
    assert updated.status_code == 200, updated.text


async def test_a_deleted_patient_comes_back_with_its_own_ins_only(fhir: httpx.AsyncClient) -> None:
    """A Patient deleted by mistake is put back (PUT, 201) with the INS it had, never with another one."""
    created = (await fhir.post("/Patient", json=patient(), headers=FHIR_JSON)).json()
    pid = created["id"]
    assert (await fhir.delete(f"/Patient/{pid}")).status_code == 204
    other = dict(created, identifier=[{"system": INS, "value": new_nir()}])
    _assert_keeps_its_ins(await fhir.put(f"/Patient/{pid}", json=other, headers=FHIR_JSON))
    back = await fhir.put(f"/Patient/{pid}", json=created, headers=FHIR_JSON)
    assert back.status_code == 201, back.text

    # Deleted again, and meanwhile another Patient carries that INS: putting this one back would make two.
    assert (await fhir.delete(f"/Patient/{pid}")).status_code == 204
    nir = created["identifier"][0]["value"]
    assert (await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)).status_code == 201
    twice = await fhir.put(f"/Patient/{pid}", json=created, headers=FHIR_JSON)
    assert twice.status_code == 422, twice.text
    assert twice.json()["issue"][0]["code"] == "duplicate"


async def test_a_second_patient_with_an_ins_that_has_a_space_opens_nothing(fhir: httpx.AsyncClient) -> None:
    """One person, one space: a plain create with a known INS is refused (422 `duplicate`), a conditional
    create on that INS answers the existing Patient (200, conditional create), and neither opens a space."""
    nir = new_nir()
    created = await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    plain = await fhir.post("/Patient", json=patient(nir, gender="male"), headers=FHIR_JSON)
    assert plain.status_code == 422, plain.text
    assert plain.json()["issue"][0]["code"] == "duplicate"
    condition = {**FHIR_JSON, "If-None-Exist": f"identifier={INS}|{nir}"}
    conditional = await fhir.post("/Patient", json=patient(nir), headers=condition)
    assert conditional.status_code == 200 and conditional.json()["id"] == created.json()["id"]
    found = await fhir.get("/Patient", params={"identifier": f"{INS}|{nir}", "_summary": "count"})
    assert found.json()["total"] == 1
