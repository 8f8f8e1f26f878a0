"""Records written before the policy's reasons were codes keep their text, inside their hash chain, and read as
they did (issue 15): one chain holding an old text and the code recorded today for the same access verifies,
and the holder reads the same words for both."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from espace_sante.access.reasons import Code, Reason
from espace_sante.audit import chains as audit
from espace_sante.fhir.compartment import space_of
from espace_sante.runtime import Runtime
from espace_sante.storage import audit as audit_store
from espace_sante.storage.audit import Record
from espace_sante.storage.db import Conn
from tests.factories import FHIR_JSON, new_nir, patient

WHEN = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


async def test_an_old_text_and_todays_code_share_a_chain_and_read_the_same(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    created = await fhir.post("/Patient", json=patient(new_nir()), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    space = space_of(pid)
    assert space is not None

    def read(basis: str) -> Record:
        return Record(
            action="resource:read",
            outcome="0",
            actor_kind="practitioner",
            actor_id="10000000001",
            actor_display="Dr Anne Durand, pharmacienne",
            basis=basis,
            entity_type="Patient",
            entity_id=pid,
            entity_version=1,
            recorded_at=WHEN,
        )

    old, new = read("consentement du titulaire"), read(Reason(Code.CONSENT).recorded)
    assert new.basis == "policy:consent"

    async def append(conn: Conn) -> tuple[int, int]:
        return await audit_store.append(conn, space, old), await audit_store.append(conn, space, new)

    seqs = await runtime.db.interaction("test_old_and_new", append)
    report = await audit.verify(runtime, space)
    assert report.ok and report.records >= 3  # the Patient's creation, then the two reads

    # The holder's trace: the same sentence for both, in both languages.
    response = await fhir.get("/AuditEvent", params={"patient": pid, "_count": "50"})
    assert response.status_code == 200, response.text
    events = {e["resource"]["id"]: e["resource"] for e in response.json()["entry"]}
    old_event, new_event = (events[f"{space.hex}-{seq}"] for seq in seqs)
    assert old_event["text"] == new_event["text"]
    assert "— base : votre consentement." in old_event["text"]["div"]
    assert "— basis: your consent." in old_event["text"]["div"]
    assert old_event["agent"][0]["purposeOfUse"] == new_event["agent"][0]["purposeOfUse"]
    assert old_event["agent"][0]["purposeOfUse"][0]["coding"][0]["code"] == "consent"
