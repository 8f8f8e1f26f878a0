"""Writes and changes of rights through the HTTP API, as table-driven stories: who may deposit what, who may
give, withdraw and block, and that every change takes effect at once and shows in the holder's trace."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from espace_sante import clock
from espace_sante.demo import access as w
from espace_sante.oauth import devtokens
from espace_sante.runtime import Runtime
from espace_sante.storage import access as access_store
from tests.access.conftest import MOTHER, Client, World
from tests.factories import BASE, FHIR_JSON, new_nir, patient, pdsm_document

MT, HOSPITAL, PHARMACIST, URGENTIST, BLOCKED = (p.rpps for p in w.PROFESSIONALS)
A03 = "urn:oid:1.2.250.1.213.1.1.4.1"


def _document(patient_id: str, category: str, actor: str = "") -> dict[str, Any]:
    """An ITI-105 deposit of this class by `actor` (kind:id): a professional's names them as author, a holder's
    own upload names her (PDSm's patient-as-author form)."""
    kind, _, who = actor.partition(":")
    if kind == "holder":
        return pdsm_document(f"Patient/{patient_id}", holder=who)
    return pdsm_document(
        f"Patient/{patient_id}", category=category, rpps=who if kind == "practitioner" else None
    )


async def _fresh_holder(fhir: httpx.AsyncClient) -> tuple[str, str]:
    nir = new_nir()
    created = await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)
    assert created.status_code == 201
    return nir, created.json()["id"]


# (who deposits, document class, expected status) in Marie-Ange's record
DEPOSITS = [
    (f"practitioner:{PHARMACIST}", "43", 201),  # dispensation: a pharmacist's document
    (f"practitioner:{PHARMACIST}", "10", 403),  # a report: not a pharmacist's to deposit (matrix)
    (f"practitioner:{HOSPITAL}", "10", 201),  # care team
    (f"practitioner:{MT}", "52", 201),  # médecin traitant
    (f"practitioner:{URGENTIST}", "10", 422),  # no basis: answered like an unknown patient
    (f"practitioner:{BLOCKED}", "10", 422),  # blocked: the same answer
    (f"holder:{MOTHER}", "90", 201),  # the holder's own upload
]


@pytest.mark.parametrize(("actor", "category", "status"), DEPOSITS)
async def test_who_may_deposit_what(
    as_actor: Client, world: World, actor: str, category: str, status: int
) -> None:
    scope = "patient/*.*" if actor.startswith("holder") else "user/*.cruds"
    client = await as_actor(actor, scope)
    response = await client.post(
        "/fhir/DocumentReference", json=_document(world.mother_patient, category, actor), headers=FHIR_JSON
    )
    assert response.status_code == status, response.text
    if status == 422:
        unknown = await client.post(
            "/fhir/DocumentReference",
            json=_document(uuid.uuid4().hex + "0" * 16, category, actor),
            headers=FHIR_JSON,
        )
        assert unknown.status_code == 422
        assert (
            unknown.json()["issue"][0]["diagnostics"].split("«")[0]
            == response.json()["issue"][0]["diagnostics"].split("«")[0]
        )


async def test_the_holder_removes_her_uploads_but_not_a_professionals_document(
    as_actor: Client, world: World
) -> None:
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    own = await holder.post(
        "/fhir/DocumentReference",
        json=_document(world.mother_patient, "90", f"holder:{MOTHER}"),
        headers=FHIR_JSON,
    )
    assert own.status_code == 201
    assert (await holder.delete(f"/fhir/DocumentReference/{own.json()['id']}")).status_code == 204
    professional = await holder.delete(f"/fhir/DocumentReference/{world.documents['ordonnance']}")
    assert professional.status_code == 404
    assert (await holder.get(f"/fhir/DocumentReference/{world.documents['ordonnance']}")).status_code == 200


async def test_a_holder_never_writes_into_another_record(
    as_actor: Client, world: World, fhir: httpx.AsyncClient
) -> None:
    _, other = await _fresh_holder(fhir)
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    response = await holder.post(
        "/fhir/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "Poids"},
            "subject": {"reference": f"Patient/{other}"},
        },
        headers=FHIR_JSON,
    )
    assert response.status_code == 422


async def test_consent_given_then_withdrawn_takes_effect_at_once(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient
) -> None:
    nir, pid = await _fresh_holder(fhir)
    made = await fhir.post("/DocumentReference", json=_document(pid, "42"), headers=FHIR_JSON)
    doc = made.json()["id"]
    holder = _client(http, (await devtokens.issue(runtime, f"holder:{nir}", "patient/*.*")).access_token)
    pharmacist = _client(
        http, (await devtokens.issue(runtime, f"practitioner:{PHARMACIST}", "user/*.rs")).access_token
    )
    assert (await pharmacist.get(f"/fhir/DocumentReference/{doc}")).status_code == 404
    given = await holder.post("/access/grants", json={"basis": "consent", "who": PHARMACIST})
    assert given.status_code == 204, given.text
    assert (await pharmacist.get(f"/fhir/DocumentReference/{doc}")).status_code == 200
    withdrawn = await holder.post("/access/grants/revoke", json={"basis": "consent", "who": PHARMACIST})
    assert withdrawn.status_code == 204
    assert (await pharmacist.get(f"/fhir/DocumentReference/{doc}")).status_code == 404
    trace = await holder.get("/fhir/AuditEvent", params={"patient": pid, "_count": "100"})
    text = " ".join(e["resource"]["text"]["div"] for e in trace.json()["entry"])
    assert "Vous avez autorisé Pierre Garnier, pharmacien" in text
    assert "Vous avez retiré l'accès de Pierre Garnier, pharmacien" in text
    assert "Pierre Garnier, pharmacien a consulté votre document" in text


async def test_a_professional_records_consent_given_in_consultation_and_the_holder_sees_it(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient
) -> None:
    nir, pid = await _fresh_holder(fhir)
    nurse_free = _client(
        http,
        (await devtokens.issue(runtime, f"practitioner:{HOSPITAL}", "user/*.rs user/Consent.c")).access_token,
    )
    recorded = await nurse_free.post("/access/grants", json={"ins": nir, "basis": "consent", "who": HOSPITAL})
    assert recorded.status_code == 204, recorded.text
    # ...for themselves only
    other = await nurse_free.post("/access/grants", json={"ins": nir, "basis": "consent", "who": PHARMACIST})
    assert other.status_code == 404
    holder = _client(http, (await devtokens.issue(runtime, f"holder:{nir}", "patient/*.*")).access_token)
    trace = await holder.get("/fhir/AuditEvent", params={"patient": pid})
    assert "Dr Antoine Moreau, médecin a autorisé Dr Antoine Moreau" in trace.text


async def test_sharing_changes_need_a_strong_sign_in(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient
) -> None:
    nir, _ = await _fresh_holder(fhir)
    weak = _client(
        http, (await devtokens.issue(runtime, f"holder:{nir}", "patient/*.*", acr="eidas1")).access_token
    )
    response = await weak.post("/access/blocks", json={"rpps": BLOCKED})
    assert response.status_code == 403
    assert "connexion renforcée" in response.json()["issue"][0]["diagnostics"]


async def test_insurers_and_employers_can_never_be_granted_access(as_actor: Client) -> None:
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    for who in ("MUTUELLE-42", "siret:12345678900011", "10000000000"):
        response = await holder.post("/access/grants", json={"basis": "consent", "who": who})
        assert response.status_code == 400, who
        assert response.json()["resourceType"] == "OperationOutcome"


async def test_a_new_medecin_traitant_replaces_the_former(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient
) -> None:
    nir, pid = await _fresh_holder(fhir)
    for rpps in (MT, BLOCKED):
        declared = await fhir.post(
            f"{BASE}/access/grants", json={"ins": nir, "basis": "medecin_traitant", "who": rpps}
        )
        assert declared.status_code == 204, declared.text
    former = _client(http, (await devtokens.issue(runtime, f"practitioner:{MT}", "user/*.rs")).access_token)
    assert (await former.get(f"/fhir/Patient/{pid}")).status_code == 404
    current = _client(
        http, (await devtokens.issue(runtime, f"practitioner:{BLOCKED}", "user/*.rs")).access_token
    )
    assert (await current.get(f"/fhir/Patient/{pid}")).status_code == 200


async def test_a_representatives_rights_end_at_the_minors_eighteenth_birthday(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient
) -> None:
    parent, _ = await _fresh_holder(fhir)
    child_nir = new_nir()
    created = await fhir.post("/Patient", json=patient(child_nir, birthDate="2010-01-01"), headers=FHIR_JSON)
    child = created.json()["id"]
    recorded = await fhir.post(
        f"{BASE}/access/representatives", json={"ins": child_nir, "representative_ins": parent}
    )
    assert recorded.status_code == 204, recorded.text
    rep = _client(
        http, (await devtokens.issue(runtime, f"representative:{parent}", "patient/*.*")).access_token
    )
    assert (await rep.get(f"/fhir/Patient/{child}")).status_code == 200
    space = uuid.UUID(child[:32])
    await runtime.db.interaction(
        "test_end_rights", access_store.add_representative, space, parent, clock.today() - timedelta(days=1)
    )
    assert (await rep.get(f"/fhir/Patient/{child}")).status_code == 404
    assert (await rep.get("/fhir/Patient", params={"_id": child})).json()["total"] == 0


async def test_an_adult_gets_no_representative(fhir: httpx.AsyncClient) -> None:
    adult, _ = await _fresh_holder(fhir)  # born in 1955
    response = await fhir.post(
        f"{BASE}/access/representatives", json={"ins": adult, "representative_ins": MOTHER}
    )
    assert response.status_code == 400


async def test_development_tokens_are_refused_outside_development_mode(runtime: Runtime) -> None:
    from dataclasses import replace

    from espace_sante.errors import Forbidden

    settings = runtime.settings.model_copy(update={"dev": False, "data_dir": runtime.settings.data_dir / "x"})
    production_like = replace(
        runtime, settings=settings
    )  # shares the pool; no DEMO marker, no ESPACE_SANTE_DEV
    with pytest.raises(Forbidden):
        await devtokens.issue(production_like, f"holder:{MOTHER}", "patient/*.rs")


def _client(http: httpx.AsyncClient, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=http._transport,
        base_url=BASE,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
    )


async def test_the_holder_narrows_and_widens_the_matrix_for_her_record(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient
) -> None:
    nir, pid = await _fresh_holder(fhir)
    prescription = (
        await fhir.post("/DocumentReference", json=_document(pid, "42"), headers=FHIR_JSON)
    ).json()["id"]
    report = (await fhir.post("/DocumentReference", json=_document(pid, "10"), headers=FHIR_JSON)).json()[
        "id"
    ]
    holder = _client(http, (await devtokens.issue(runtime, f"holder:{nir}", "patient/*.*")).access_token)
    assert (
        await holder.post("/access/grants", json={"basis": "consent", "who": PHARMACIST})
    ).status_code == 204
    pharmacist = _client(
        http, (await devtokens.issue(runtime, f"practitioner:{PHARMACIST}", "user/*.rs")).access_token
    )
    assert (await pharmacist.get(f"/fhir/DocumentReference/{prescription}")).status_code == 200
    assert (await pharmacist.get(f"/fhir/DocumentReference/{report}")).status_code == 404
    rules = {"matrix_overrides": {"21": {"add": ["10"], "remove": ["42"]}}}
    assert (await holder.put("/access/settings", json=rules)).status_code == 204
    assert (await pharmacist.get(f"/fhir/DocumentReference/{prescription}")).status_code == 404
    assert (await pharmacist.get(f"/fhir/DocumentReference/{report}")).status_code == 200
    bad = await holder.put("/access/settings", json={"matrix_overrides": {"21": {"add": ["99"]}}})
    assert bad.status_code == 400 and "inconnue" in bad.json()["issue"][0]["diagnostics"]
