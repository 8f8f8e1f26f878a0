"""Spaces created in bulk (the registry import's path) are indistinguishable from spaces created one by one:
their Patient reads back decrypted through the API, is found by INS, and their audit chain verifies."""

from __future__ import annotations

import uuid

import httpx

from espace_sante.access.actors import SYSTEM
from espace_sante.access.policy import decide
from espace_sante.audit import chains as audit
from espace_sante.fhir import compartment
from espace_sante.runtime import Runtime
from espace_sante.storage import provision
from espace_sante.storage.audit import SUCCESS, Record
from espace_sante.storage.db import Conn
from tests.factories import INS, new_nir, patient


async def test_bulk_made_spaces_read_back_search_and_verify(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    people = []
    for _ in range(50):
        space = compartment.new_space_id()
        nir = new_nir()
        people.append(
            provision.NewSpace(space, compartment.new_resource_id(space), patient(nir), "open")
        )  # open: feeds reach it
    decision = decide(SYSTEM, "create", "Patient")
    record = Record(action="resource:create", outcome=SUCCESS, actor_kind="system", actor_id="espace-sante")

    async def work(conn: Conn) -> set[str]:
        nirs = [p.patient["identifier"][0]["value"] for p in people]
        assert await provision.known_ins(conn, nirs) == set()
        await provision.create_spaces(conn, runtime.keys, decision, people, record=record)
        return await provision.known_ins(conn, nirs)

    known = await runtime.db.interaction("test_provision", work)
    assert len(known) == 50
    runtime.keys.clear()  # read back with keys unwrapped from the rows, as another process would
    one = people[7]
    read = await fhir.get(f"/Patient/{one.patient_id}")
    assert read.status_code == 200 and read.json()["meta"]["versionId"] == "1"
    nir = one.patient["identifier"][0]["value"]
    found = await fhir.get("/Patient", params={"identifier": f"{INS}|{nir}"})
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [one.patient_id]
    by_name = await fhir.get(
        "/Patient", params={"family": "martin", "birthdate": "1955-08-14", "_id": one.patient_id}
    )
    assert by_name.json()["total"] == 1
    for p in people[:5]:
        report = await audit.verify(runtime, p.space_id)
        assert not report.broken, report
    # The next access appends to the chain the bulk path started.
    trace = await fhir.get("/AuditEvent", params={"patient": one.patient_id})
    assert trace.json()["total"] >= 2
    assert not (await audit.verify(runtime, one.space_id)).broken
    assert uuid.UUID(one.patient_id[:32]) == one.space_id


def test_the_bulk_chain_hash_is_the_trace_s_own() -> None:
    """provision.py hashes records without dataclasses.asdict (for speed); the bytes must be the same."""
    from espace_sante.storage.audit import chain_hash

    space = compartment.new_space_id()
    record = Record(
        action="rights:representative", outcome=SUCCESS, actor_kind="system", actor_id="espace-sante",
        actor_display="espace-sante", basis="système", entity_type="Patient", entity_id="x" * 48,
        entity_version=3, detail="|185112B31618668|", request_id="registre é",
    )  # fmt: skip
    prev = bytes(range(32))
    assert provision._chain_hash(prev, space, 7, record) == chain_hash(prev, space, 7, record)
