"""The policy's reasons as the holder and the professionals meet them through the API (issue 15): the trace
records a code, the holder reads it in words in both languages, and a refusal says why in both languages."""

from __future__ import annotations

from typing import Any

import httpx

from espace_sante.access.reasons import Code, Reason
from espace_sante.audit.fhir import ACCESS_REASONS
from espace_sante.demo import access as w
from espace_sante.runtime import Runtime
from espace_sante.storage.keys import DIRECTORY_SPACE
from tests.access.conftest import Client, World
from tests.factories import FHIR_JSON, new_nir, patient
from tests.trace import records as trace_records

HOSPITAL = w.PROFESSIONALS[1].rpps


def _agent(event: dict[str, Any]) -> dict[str, Any]:
    agent: dict[str, Any] = event["agent"][0]
    return agent


async def test_a_consent_recorded_in_consultation_reads_in_words_in_both_languages(
    as_actor: Client, world: World, fhir: httpx.AsyncClient
) -> None:
    """Dr Moreau records the consent Léa gave him in consultation. Léa's trace says so in French and, in
    English, in English: it showed the policy's French text in both until the reasons were codes."""
    nir = new_nir()
    created = await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    doctor = await as_actor(f"practitioner:{HOSPITAL}", "user/*.rs user/Consent.c")
    recorded = await doctor.post("/access/grants", json={"ins": nir, "basis": "consent", "who": HOSPITAL})
    assert recorded.status_code == 204, recorded.text

    lea = await as_actor(f"holder:{nir}", "patient/*.*")
    trace = await lea.get("/fhir/AuditEvent", params={"patient": pid})
    assert trace.status_code == 200, trace.text
    (grant,) = [
        e["resource"] for e in trace.json()["entry"] if e["resource"]["type"]["code"] == "rights:grant"
    ]
    div = grant["text"]["div"]
    assert "— base : consentement recueilli en consultation." in div
    assert "— basis: consent given during a consultation." in div
    assert _agent(grant)["purposeOfUse"] == [
        {
            "coding": [
                {
                    "system": ACCESS_REASONS,
                    "code": "consent-in-consultation",
                    "display": "consentement recueilli en consultation",
                }
            ],
            "text": "consentement recueilli en consultation",
        }
    ]


async def test_a_refusal_records_the_code_and_says_why_in_both_languages(
    runtime: Runtime, as_actor: Client, world: World
) -> None:
    """A pharmacist's software without the right to write observations is refused: the answer says why in
    French then English, and the directory's chain records the reason's code, with its parameters."""
    pharmacist = await as_actor(f"practitioner:{w.PROFESSIONALS[2].rpps}", "user/Observation.r")
    response = await pharmacist.post(
        "/fhir/Observation", json={"resourceType": "Observation"}, headers=FHIR_JSON
    )
    assert response.status_code == 403, response.text
    diagnostics = response.json()["issue"][0]["diagnostics"]
    assert diagnostics == (
        "accès refusé : create Observation (cette connexion n'a pas le droit correspondant) / access denied: "
        "create Observation (this connection does not hold the corresponding right)"
    )
    request_id = response.headers["x-request-id"]
    recent = await runtime.db.read("test_recent", trace_records.newest, DIRECTORY_SPACE, limit=50)
    (refusal,) = [s.record for s in recent if s.record.request_id == request_id]
    assert refusal.basis == "policy:no-session-scope?context=user&interaction=c&type=Observation"
    assert (
        refusal.basis
        == Reason.of(Code.NO_SESSION_SCOPE, context="user", type="Observation", interaction="c").recorded
    )
