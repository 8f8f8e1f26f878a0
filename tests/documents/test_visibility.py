"""The French visibility rules on documents, in Marie-Ange Santoni's record (the demo's access world): she masks
a professional's document from professionals; a result waits for its announcement consultation until its
author or the médecin traitant releases it, or a month passes; a minor's confidential document stays hidden
from his representatives. Each test deposits its own documents so the shared world stays as it is."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from espace_sante.context import Context
from espace_sante.demo import access as w
from espace_sante.record import documents
from espace_sante.runtime import Runtime
from tests.access.conftest import CHILD, MOTHER, Client, World
from tests.factories import FHIR_JSON, pdsm_document
from tests.notifications.helpers import deliver_all

MT, HOSPITAL, PHARMACIST = w.MEDECIN_TRAITANT.rpps, w.HOSPITAL_DOCTOR.rpps, w.PHARMACIST.rpps
A07 = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture(autouse=True)
async def _leave_the_world_as_found(fhir: httpx.AsyncClient, world: World) -> AsyncIterator[None]:
    """Documents a test deposits in the demo's records are deleted afterwards: other tests count them."""
    start = (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="seconds")
    demo = set(world.documents.values())
    before = {rid: (await fhir.get(f"/DocumentReference/{rid}")).json() for rid in demo}
    yield
    for rid, body in before.items():  # the release job may have lifted a demo document's flag: put it back
        now = (await fhir.get(f"/DocumentReference/{rid}")).json()
        if now.get("securityLabel") != body.get("securityLabel"):
            restored = await fhir.put(
                f"/DocumentReference/{rid}", json=dict(body, meta={}), headers=FHIR_JSON
            )
            assert restored.status_code == 200, restored.text
    for patient in (world.mother_patient, world.child_patient):
        found = await fhir.get(
            "/DocumentReference", params={"patient": patient, "_lastUpdated": f"ge{start}", "_count": "200"}
        )
        for entry in found.json().get("entry", []):
            if entry["resource"]["id"] not in demo:
                await fhir.delete(f"/DocumentReference/{entry['resource']['id']}")


def _labels(*codes: str) -> list[dict[str, Any]]:
    confidentiality = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]
    }
    return [confidentiality, *({"coding": [{"system": A07, "code": c}]} for c in codes)]


def _set_labels(*codes: str) -> str:
    return json.dumps([{"op": "replace", "path": "/securityLabel", "value": _labels(*codes)}])


async def _deposit(as_actor: Client, patient: str, rpps: str, category: str, *labels: str) -> dict[str, Any]:
    author = await as_actor(f"practitioner:{rpps}", "user/*.cruds")
    body = pdsm_document(f"Patient/{patient}", category=category, rpps=rpps, labels=labels)
    response = await author.post("/fhir/DocumentReference", json=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    stored: dict[str, Any] = response.json()
    return stored


async def _sees(client: httpx.AsyncClient, doc: dict[str, Any]) -> bool:
    read = await client.get(f"/fhir/DocumentReference/{doc['id']}")
    content = await client.get(f"/fhir/{doc['content'][0]['attachment']['url']}", headers={"Accept": "*/*"})
    assert (read.status_code == 200) == (content.status_code == 200), (read.status_code, content.status_code)
    return read.status_code == 200


async def test_the_holder_masks_a_report_from_professionals_but_not_from_its_author_or_her_doctor(
    as_actor: Client, world: World
) -> None:
    doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "11")
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    pharmacist = await as_actor(f"practitioner:{PHARMACIST}", "user/*.rs")
    mt = await as_actor(f"practitioner:{MT}", "user/*.rs")
    hospital = await as_actor(f"practitioner:{HOSPITAL}", "user/*.rs")
    assert await _sees(pharmacist, doc)

    masked = await holder.patch(
        f"/fhir/DocumentReference/{doc['id']}", content=_set_labels("MASQUE_PS"), headers=JSON_PATCH
    )
    assert masked.status_code == 200, masked.text
    assert not await _sees(pharmacist, doc)
    assert await _sees(mt, doc) and await _sees(hospital, doc) and await _sees(holder, doc)
    search = await pharmacist.get(
        "/fhir/DocumentReference", params={"patient": world.mother_patient, "_summary": "count"}
    )
    everything = await mt.get(
        "/fhir/DocumentReference", params={"patient": world.mother_patient, "_summary": "count"}
    )
    assert search.json()["total"] < everything.json()["total"]

    shown = await holder.patch(
        f"/fhir/DocumentReference/{doc['id']}", content=_set_labels(), headers=JSON_PATCH
    )
    assert shown.status_code == 200
    assert await _sees(pharmacist, doc)

    trace = await holder.get("/fhir/AuditEvent", params={"patient": world.mother_patient, "_count": "200"})
    text = " ".join(e["resource"]["text"]["div"] for e in trace.json()["entry"])
    assert "Vous avez masqué votre document aux professionnels de santé" in text


async def test_what_the_holder_may_not_do_to_a_professionals_document(as_actor: Client, world: World) -> None:
    doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "10")
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    url = f"/fhir/DocumentReference/{doc['id']}"
    status = json.dumps([{"op": "replace", "path": "/status", "value": "entered-in-error"}])
    assert (await holder.patch(url, content=status, headers=JSON_PATCH)).status_code == 403
    hide = _set_labels("INVISIBLE_REPRESENTANTS_LEGAUX")
    assert (await holder.patch(url, content=hide, headers=JSON_PATCH)).status_code == 403
    assert (await holder.delete(url)).status_code == 404  # she may mask it, never delete it
    assert (await holder.get(url)).status_code == 200

    # And a professional never masks: that is the holder's decision (R1111-49).
    hospital = await as_actor(f"practitioner:{HOSPITAL}", "user/*.cruds")
    assert (
        await hospital.patch(url, content=_set_labels("MASQUE_PS"), headers=JSON_PATCH)
    ).status_code == 403
    # Another professional changes nothing of a document they did not write.
    pharmacist = await as_actor(f"practitioner:{PHARMACIST}", "user/*.cruds")
    assert (await pharmacist.patch(url, content=status, headers=JSON_PATCH)).status_code in (403, 404)


async def test_a_result_waits_for_its_announcement_until_its_author_releases_it(
    as_actor: Client, world: World
) -> None:
    doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "10", "INVISIBLE_PATIENT")
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    assert not await _sees(holder, doc)
    listed = await holder.get("/fhir/DocumentReference", params={"patient": world.mother_patient})
    assert doc["id"] not in {e["resource"]["id"] for e in listed.json().get("entry", [])}

    hospital = await as_actor(f"practitioner:{HOSPITAL}", "user/*.cruds")
    released = await hospital.patch(
        f"/fhir/DocumentReference/{doc['id']}", content=_set_labels(), headers=JSON_PATCH
    )
    assert released.status_code == 200, released.text
    assert await _sees(holder, doc)
    trace = await holder.get("/fhir/AuditEvent", params={"patient": world.mother_patient, "_count": "200"})
    text = " ".join(e["resource"]["text"]["div"] for e in trace.json()["entry"])
    assert (
        "Dr Antoine Moreau, médecin a rendu visible un document qui attendait une consultation d'annonce"
        in text
    )


async def test_the_medecin_traitant_may_release_a_result_too(as_actor: Client, world: World) -> None:
    doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "10", "INVISIBLE_PATIENT")
    mt = await as_actor(f"practitioner:{MT}", "user/*.cruds")
    released = await mt.patch(
        f"/fhir/DocumentReference/{doc['id']}", content=_set_labels(), headers=JSON_PATCH
    )
    assert released.status_code == 200, released.text
    assert await _sees(await as_actor(f"holder:{MOTHER}", "patient/*.*"), doc)


async def _outbox(runtime: Runtime, recipient: str) -> list[str]:
    await deliver_all(runtime)  # the notifications' jobs, deferred with their events

    async def run(conn: Any) -> list[str]:
        rows = await conn.fetch(
            "SELECT body FROM outbox WHERE $1 = ANY(string_to_array(recipient, ', '))", recipient
        )
        return [r["body"] for r in rows]

    return await runtime.db.read("t_outbox", run)


async def test_without_an_announcement_the_holder_is_told_after_two_weeks_and_sees_it_after_a_month(
    as_actor: Client, world: World, runtime: Runtime
) -> None:
    doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "10", "INVISIBLE_PATIENT")
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    system = Context.system(runtime)
    mail = "marie-ange.santoni@demo.localhost"
    before = len(await _outbox(runtime, mail))
    now = datetime.now(UTC)

    await documents.run_hidden_documents(system, now + timedelta(days=13))
    assert len(await _outbox(runtime, mail)) == before and not await _sees(holder, doc)

    await documents.run_hidden_documents(system, now + timedelta(days=15))
    told = await _outbox(runtime, mail)
    assert len(told) > before
    assert "consultation" in told[-1] and "Compte rendu" not in told[-1]  # no medical content in a mail
    assert not await _sees(holder, doc)
    await documents.run_hidden_documents(system, now + timedelta(days=16))
    assert len(await _outbox(runtime, mail)) == len(told)  # told once

    run = await documents.run_hidden_documents(system, now + timedelta(days=31))
    assert run.released >= 1
    assert await _sees(holder, doc)
    stored = (await holder.get(f"/fhir/DocumentReference/{doc['id']}")).json()
    codes = {c["code"] for label in stored["securityLabel"] for c in label["coding"]}
    assert codes == {"N"}  # the confidentiality code stays; only the flag went


async def test_a_released_or_deleted_document_is_not_released_again(
    as_actor: Client, world: World, runtime: Runtime
) -> None:
    doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "10", "INVISIBLE_PATIENT")
    hospital = await as_actor(f"practitioner:{HOSPITAL}", "user/*.cruds")
    assert (await hospital.delete(f"/fhir/DocumentReference/{doc['id']}")).status_code == 204
    await documents.run_hidden_documents(Context.system(runtime), datetime.now(UTC) + timedelta(days=40))
    history = await hospital.get(f"/fhir/DocumentReference/{doc['id']}/_history")
    assert history.status_code in (404, 410) or len(history.json()["entry"]) == 2


async def test_a_minors_confidential_document_stays_hidden_from_his_representatives(
    as_actor: Client, world: World
) -> None:
    doc = await _deposit(as_actor, world.child_patient, MT, "10", "INVISIBLE_REPRESENTANTS_LEGAUX")
    mother = await as_actor(f"representative:{MOTHER}", "patient/*.*")
    assert not await _sees(mother, doc)
    assert await _sees(await as_actor(f"practitioner:{MT}", "user/*.rs"), doc)
    # The representative may not lift it either.
    lifted = await mother.patch(
        f"/fhir/DocumentReference/{doc['id']}", content=_set_labels(), headers=JSON_PATCH
    )
    assert lifted.status_code == 404
    assert CHILD  # the child's INS names his own space (the representative acts there, not as holder)


async def test_operators_download_nothing(runtime: Runtime, as_actor: Client, world: World) -> None:
    from espace_sante.storage import people as people_store

    doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "10")
    await runtime.db.interaction("op", people_store.ensure_operator, "agent.martin", "Agent Martin")
    operator = await as_actor("operator:agent.martin", "user/*.rs")
    content = await operator.get(f"/fhir/{doc['content'][0]['attachment']['url']}", headers={"Accept": "*/*"})
    assert content.status_code in (403, 404)


def _change(kind: str) -> tuple[str, str]:
    """(HTTP method, JSON Patch body) of a change named as in docs/documents.md's table."""
    if kind == "mask":
        return "PATCH", _set_labels("MASQUE_PS")
    if kind == "hide-from-holder":
        return "PATCH", _set_labels("INVISIBLE_PATIENT")
    if kind == "hide-from-representatives":
        return "PATCH", _set_labels("INVISIBLE_REPRESENTANTS_LEGAUX")
    if kind == "status":
        return "PATCH", json.dumps([{"op": "replace", "path": "/status", "value": "entered-in-error"}])
    if kind == "archive":
        url = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived"
        return "PATCH", json.dumps(
            [{"op": "add", "path": "/extension", "value": [{"url": url, "valueBoolean": True}]}]
        )
    return "DELETE", ""


#: docs/documents.md, "Who changes what", for a report Dr Moreau (care team) wrote in Marie-Ange's record.
WHO_CHANGES_WHAT = {
    f"holder:{MOTHER}": {"mask": 200, "hide-from-holder": 403, "hide-from-representatives": 403, "status": 403,
                         "archive": 200, "delete": 404},
    f"practitioner:{HOSPITAL}": {"mask": 403, "hide-from-holder": 200, "hide-from-representatives": 200,
                                 "status": 200, "archive": 200, "delete": 204},
    f"practitioner:{MT}": {"mask": 403, "hide-from-holder": 200, "hide-from-representatives": 200, "status": 200,
                           "archive": 200, "delete": 204},
    f"practitioner:{PHARMACIST}": {"mask": 404, "hide-from-holder": 404, "hide-from-representatives": 404,
                                   "status": 404, "archive": 404, "delete": 404},
}  # fmt: skip
CASES = [(actor, change, status) for actor, row in WHO_CHANGES_WHAT.items() for change, status in row.items()]


@pytest.mark.parametrize(("actor", "change", "status"), CASES, ids=[f"{a}-{c}" for a, c, _ in CASES])
async def test_who_changes_what_on_a_professionals_document(
    as_actor: Client, world: World, actor: str, change: str, status: int
) -> None:
    doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "10")
    client = await as_actor(actor, "patient/*.*" if actor.startswith("holder") else "user/*.cruds")
    method, body = _change(change)
    url = f"/fhir/DocumentReference/{doc['id']}"
    response = await client.request(method, url, content=body or None, headers=JSON_PATCH if body else None)
    assert response.status_code == status, response.text
    unchanged = (await (await as_actor(f"practitioner:{MT}", "user/*.rs")).get(url)).json()
    if status >= 400:
        assert unchanged["meta"]["versionId"] == "1"


async def test_a_holder_deletes_her_upload_and_its_content_goes_with_it(
    as_actor: Client, world: World
) -> None:
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    body = pdsm_document(f"Patient/{world.mother_patient}", holder=MOTHER.replace(" ", ""))
    made = await holder.post("/fhir/DocumentReference", json=body, headers=FHIR_JSON)
    assert made.status_code == 201, made.text
    url = made.json()["content"][0]["attachment"]["url"]
    assert (await holder.get(f"/fhir/{url}", headers={"Accept": "*/*"})).status_code == 200
    assert (await holder.delete(f"/fhir/DocumentReference/{made.json()['id']}")).status_code == 204
    assert (await holder.get(f"/fhir/{url}", headers={"Accept": "*/*"})).status_code in (404, 410)


async def test_unmasking_the_only_label_leaves_no_empty_list(as_actor: Client, world: World) -> None:
    doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "11")
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    url = f"/fhir/DocumentReference/{doc['id']}"
    only_mask = json.dumps(
        [
            {
                "op": "replace",
                "path": "/securityLabel",
                "value": [{"coding": [{"system": A07, "code": "MASQUE_PS"}]}],
            }
        ]
    )
    masked = await holder.patch(url, content=only_mask, headers=JSON_PATCH)
    assert masked.status_code == 200
    shown = await holder.patch(
        url, content=json.dumps([{"op": "remove", "path": "/securityLabel/1"}]), headers=JSON_PATCH
    )
    assert shown.status_code == 200, shown.text
    labels = shown.json().get("securityLabel")
    assert labels is None or labels  # never []
