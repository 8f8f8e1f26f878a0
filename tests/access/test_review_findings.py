"""The security review of 2026-11-24, each finding as the story of its attack, now refused.

C1 the preview showed the asker what is hidden from them; C2 a person rewrote a professional's content;
C3/C4 a professional took over another document's content by pointing at it; C5 a chain probed unreadable
documents; C6 a deleted hidden document became readable; C7 an objection did not hold; C8 a read-only token
changed rights; C9 /access told whether an INS has a record; C10 a NUL byte gave a 500."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from espace_sante.demo import access as w
from espace_sante.oauth import devtokens
from espace_sante.runtime import Runtime
from tests.access.conftest import MOTHER, Client, World
from tests.factories import BASE, FHIR_JSON, new_nir, patient, pdsm_document

A03 = "urn:oid:1.2.250.1.213.1.1.4.1"
A07 = "urn:oid:1.2.250.1.213.1.1.4.13"
MT, HOSPITAL, PHARMACIST = w.MEDECIN_TRAITANT.rpps, w.HOSPITAL_DOCTOR.rpps, w.PHARMACIST.rpps


def _binary_of(document: dict[str, Any]) -> str:
    return str(document["content"][0]["attachment"]["url"]).rsplit("/", 1)[-1]


def _text(data: str) -> dict[str, Any]:
    return {
        "resourceType": "Binary",
        "contentType": "text/plain",
        "data": base64.b64encode(data.encode()).decode(),
    }


async def test_c1_the_preview_never_shows_the_asker_what_is_hidden_from_them(
    as_actor: Client, world: World
) -> None:
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    preview = (await holder.get("/access/preview", params={"rpps": MT})).json()
    ids = {i["id"] for i in preview["items"]}
    assert world.documents["ordonnance"] in ids and world.documents["resultat-annonce"] not in ids
    representative = await as_actor(f"representative:{MOTHER}", "patient/*.*")
    child = (
        await representative.get("/access/preview", params={"rpps": MT, "patient": world.child_patient})
    ).json()
    ids = {i["id"] for i in child["items"]}
    assert world.documents["child:carnet"] in ids and world.documents["child:confidentiel"] not in ids


async def test_c2_a_holder_cannot_rewrite_a_professionals_content(
    as_actor: Client, world: World, fhir: httpx.AsyncClient
) -> None:
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    document = (await holder.get(f"/fhir/DocumentReference/{world.documents['ordonnance']}")).json()
    binary = _binary_of(document)
    rewritten = await holder.put(
        f"/fhir/Binary/{binary}", json={**_text("10 g"), "id": binary}, headers=FHIR_JSON
    )
    assert rewritten.status_code == 405  # as for a resource that is not hers to change
    assert (await holder.delete(f"/fhir/Binary/{binary}")).status_code == 404
    assert (
        "Amoxicilline 1 g" in base64.b64decode((await fhir.get(f"/Binary/{binary}")).json()["data"]).decode()
    )


async def test_c3_c4_a_professional_cannot_take_over_another_documents_content(
    as_actor: Client, world: World, fhir: httpx.AsyncClient
) -> None:
    pharmacist = await as_actor(f"practitioner:{PHARMACIST}", "user/*.cruds")
    masked = _binary_of((await fhir.get(f"/DocumentReference/{world.documents['cr-masque']}")).json())
    prescription = _binary_of(
        (await pharmacist.get(f"/fhir/DocumentReference/{world.documents['ordonnance']}")).json()
    )
    for target in (prescription, masked):
        mine = {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": f"Patient/{world.mother_patient}"},
            "category": [{"coding": [{"system": A03, "code": "43"}]}],
            "content": [{"attachment": {"contentType": "text/plain", "url": f"Binary/{target}"}}],
        }
        refused = await pharmacist.post("/fhir/DocumentReference", json=mine, headers=FHIR_JSON)
        assert refused.status_code == 422, refused.text
        assert "autre document" in refused.json()["issue"][0]["diagnostics"]
    assert (await pharmacist.get(f"/fhir/Binary/{masked}")).status_code == 404
    put = await pharmacist.put(
        f"/fhir/Binary/{prescription}", json={**_text("x"), "id": prescription}, headers=FHIR_JSON
    )
    assert put.status_code == 405


async def test_a_professional_signs_only_as_themselves(
    as_actor: Client, world: World, fhir: httpx.AsyncClient
) -> None:
    pharmacist = await as_actor(f"practitioner:{PHARMACIST}", "user/*.cruds")
    mt_id = (
        await fhir.get("/Practitioner", params={"identifier": f"https://rpps.esante.gouv.fr|{MT}"})
    ).json()["entry"][0]["resource"]["id"]
    # PDSm authors are contained: naming the médecin traitant there is refused like a literal reference.
    forged = pdsm_document(f"Patient/{world.mother_patient}", category="43", rpps=MT)
    response = await pharmacist.post("/fhir/DocumentReference", json=forged, headers=FHIR_JSON)
    assert response.status_code == 422 and "en votre nom" in response.json()["issue"][0]["diagnostics"]
    forged["author"].append({"reference": f"Practitioner/{mt_id}"})
    response = await pharmacist.post("/fhir/DocumentReference", json=forged, headers=FHIR_JSON)
    assert response.status_code == 422
    forged = pdsm_document(f"Patient/{world.mother_patient}", category="43", rpps=PHARMACIST)
    made = await pharmacist.post("/fhir/DocumentReference", json=forged, headers=FHIR_JSON)
    assert made.status_code == 201
    # The server adds the literal reference the access rules judge authorship on (masked documents, writes).
    assert made.json()["author"][-1]["reference"].startswith("Practitioner/")


async def test_c5_a_chain_never_probes_what_the_actor_may_not_read(
    as_actor: Client, world: World, fhir: httpx.AsyncClient
) -> None:
    items = [
        {"item": {"reference": f"DocumentReference/{world.documents[k]}"}}
        for k in ("cr-hospit", "resultat-annonce")
    ]
    listed = await fhir.post(
        "/List",
        json={
            "resourceType": "List",
            "status": "current",
            "mode": "working",
            "subject": {"reference": f"Patient/{world.mother_patient}"},
            "entry": items,
        },
        headers=FHIR_JSON,
    )
    # A chain from the documents the holder reads to the result hidden from her finds nothing.
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    probe = await holder.get(
        "/fhir/DocumentReference",
        params={
            "patient": world.mother_patient,
            "relatesto:DocumentReference.security-label": "INVISIBLE_PATIENT",
        },
    )
    assert probe.json()["total"] == 0
    # Submission sets are not given to people until they can be filtered (documents issue).
    assert (await holder.get(f"/fhir/List/{listed.json()['id']}")).status_code == 404


async def test_c6_a_deleted_hidden_document_stays_hidden(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient
) -> None:
    nir = new_nir()
    pid = (await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)).json()["id"]
    binary = (
        await fhir.post(
            "/Binary",
            json={**_text("Diagnostic"), "securityContext": {"reference": f"Patient/{pid}"}},
            headers=FHIR_JSON,
        )
    ).json()["id"]
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{pid}"},
        "category": [{"coding": [{"system": A03, "code": "10"}]}],
        "securityLabel": [{"coding": [{"system": A07, "code": "INVISIBLE_PATIENT"}]}],
        "content": [{"attachment": {"contentType": "text/plain", "url": f"Binary/{binary}"}}],
    }
    did = (await fhir.post("/DocumentReference", json=document, headers=FHIR_JSON)).json()["id"]
    assert (await fhir.delete(f"/DocumentReference/{did}")).status_code == 204
    token = (await devtokens.issue(runtime, f"holder:{nir}", "patient/*.rs")).access_token
    holder = httpx.AsyncClient(
        transport=http._transport, base_url=BASE, headers={"Authorization": f"Bearer {token}"}
    )
    assert (await holder.get(f"/fhir/DocumentReference/{did}")).status_code == 404
    assert (await holder.get(f"/fhir/DocumentReference/{did}/_history/1")).status_code == 404
    assert (await holder.get(f"/fhir/Binary/{binary}")).status_code == 404
    listed = await holder.get("/fhir/DocumentReference/_history")
    assert did not in listed.text


async def test_c7_an_objection_holds_until_the_holder_lifts_it(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient, world: World
) -> None:
    nir = new_nir()
    pid = (await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)).json()["id"]

    def client(token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=http._transport, base_url=BASE, headers={"Authorization": f"Bearer {token}"}
        )

    doctor = client(
        (await devtokens.issue(runtime, f"practitioner:{HOSPITAL}", "user/*.rs user/Consent.c")).access_token
    )
    holder = client((await devtokens.issue(runtime, f"holder:{nir}", "patient/*.*")).access_token)
    assert (
        await doctor.post("/access/grants", json={"ins": nir, "basis": "care_team", "who": HOSPITAL})
    ).status_code == 204
    assert (
        await holder.post("/access/grants/revoke", json={"basis": "care_team", "who": HOSPITAL})
    ).status_code == 204
    again = await doctor.post("/access/grants", json={"ins": nir, "basis": "care_team", "who": HOSPITAL})
    assert again.status_code == 404
    assert (await doctor.get(f"/fhir/Patient/{pid}")).status_code == 404
    assert (
        await holder.post("/access/grants", json={"basis": "care_team", "who": HOSPITAL})
    ).status_code == 204
    assert (await doctor.get(f"/fhir/Patient/{pid}")).status_code == 200


async def test_c8_c9_rights_need_consent_scopes_and_tell_strangers_nothing(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient, world: World
) -> None:
    nir = new_nir()
    await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)
    token = (await devtokens.issue(runtime, f"practitioner:{HOSPITAL}", "user/Practitioner.r")).access_token
    software = httpx.AsyncClient(
        transport=http._transport, base_url=BASE, headers={"Authorization": f"Bearer {token}"}
    )
    for path, body in (
        ("/access/grants", {"ins": nir, "basis": "consent", "who": HOSPITAL}),
        ("/access/emergency", {"ins": nir, "reason": "immediate_risk"}),
    ):
        assert (await software.post(path, json=body)).status_code == 404, path
    stranger = (await devtokens.issue(runtime, f"holder:{MOTHER}", "patient/*.*")).access_token
    other = httpx.AsyncClient(
        transport=http._transport, base_url=BASE, headers={"Authorization": f"Bearer {stranger}"}
    )
    exists = await other.post("/access/grants/revoke", json={"ins": nir, "basis": "consent", "who": HOSPITAL})
    absent = await other.post(
        "/access/grants/revoke", json={"ins": new_nir(), "basis": "consent", "who": HOSPITAL}
    )
    assert exists.status_code == absent.status_code == 404
    assert exists.json()["issue"][0]["diagnostics"] == absent.json()["issue"][0]["diagnostics"]


async def test_c10_a_nul_byte_is_a_client_error(http: httpx.AsyncClient) -> None:
    response = await http.get("/oauth/authorize", params={"client_id": "\x00", "response_type": "code"})
    assert response.status_code < 500
