"""The trace is written with the action, or neither is; and each space's chain stays linear."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from espace_sante.context import Context
from espace_sante.fhir.compartment import space_of
from espace_sante.record import interactions as fhir_service
from espace_sante.runtime import Runtime
from espace_sante.storage import audit as audit_store
from espace_sante.storage.audit import GENESIS, chain_hash
from espace_sante.storage.keys import DIRECTORY_SPACE
from tests.factories import FHIR_JSON, INS, new_nir, patient
from tests.trace import records as trace_records


async def _records(runtime: Runtime, space: uuid.UUID) -> list[audit_store.StoredRecord]:
    async with runtime.db.pool.acquire() as conn:
        return [r async for r in audit_store.chain(conn, space)]


async def _new_patient(fhir: httpx.AsyncClient, nir: str | None = None) -> tuple[str, uuid.UUID]:
    response = await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    pid = response.json()["id"]
    space = space_of(pid)
    assert space is not None
    return pid, space


def _observation(pid: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Poids"},
        "subject": {"reference": f"Patient/{pid}"},
        **extra,
    }


async def test_every_access_to_a_space_is_in_its_chain(fhir: httpx.AsyncClient, runtime: Runtime) -> None:
    """A feed creates a patient and a measurement, reads it, searches, updates and deletes it: the patient's
    chain lists each of those accesses, with who did it and on what basis, in order."""
    pid, space = await _new_patient(fhir)
    obs = (await fhir.post("/Observation", json=_observation(pid), headers=FHIR_JSON)).json()
    assert (await fhir.get(f"/Observation/{obs['id']}")).status_code == 200
    assert (await fhir.get("/Observation", params={"patient": pid})).status_code == 200
    obs["status"] = "amended"
    assert (await fhir.put(f"/Observation/{obs['id']}", json=obs, headers=FHIR_JSON)).status_code == 200
    assert (await fhir.delete(f"/Observation/{obs['id']}")).status_code == 204

    records = await _records(runtime, space)
    assert [(r.record.action, r.record.entity_type) for r in records] == [
        ("resource:create", "Patient"),
        ("resource:create", "Observation"),
        ("resource:read", "Observation"),
        ("resource:search", "Observation"),
        ("resource:update", "Observation"),
        ("resource:delete", "Observation"),
    ]
    assert all(
        r.record.actor_kind == "client" and r.record.basis.startswith("policy:system-scope?") for r in records
    )
    assert records[4].record.entity_version == 2
    assert records[3].record.detail == "?patient"  # parameter names, never their values


async def test_a_search_across_patients_leaves_a_record_in_each_space(
    fhir: httpx.AsyncClient, runtime: Runtime
) -> None:
    family = "Tracé" + uuid.uuid4().hex[:8]
    one = await _new_patient(fhir)
    two = await _new_patient(fhir)
    for pid, _ in (one, two):
        body = (await fhir.get(f"/Patient/{pid}")).json()
        body["name"] = [{"family": family}]
        assert (await fhir.put(f"/Patient/{pid}", json=body, headers=FHIR_JSON)).status_code == 200
    found = await fhir.get("/Patient", params={"family": family})
    assert found.json()["total"] == 2
    for _, space in (one, two):
        last = (await _records(runtime, space))[-1].record
        assert (last.action, last.detail) == ("resource:search", "?family")
        assert family.lower() not in last.detail.lower()


async def test_the_trace_rolls_back_with_a_failed_transaction(
    fhir: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A transaction's second entry is invalid: the first entry's measurement is not stored, and the patient's
    trace shows no creation either (no trace of a success that did not happen)."""
    pid, space = await _new_patient(fhir)
    before = len(await _records(runtime, space))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": _observation(pid), "request": {"method": "POST", "url": "Observation"}},
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "nope",
                    "code": {"text": "x"},
                    "subject": {"reference": f"Patient/{pid}"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = await fhir.post("", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 422
    assert len(await _records(runtime, space)) == before


async def test_when_the_trace_cannot_be_written_the_action_fails(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit store fails (disk full, a bug): the write it would have traced does not happen."""
    ctx = Context.system(runtime)
    pat = (await fhir_service.create(ctx, patient())).stored
    count_before = (await fhir_service.search(ctx, "Observation", [("patient", pat.resource_id)])).total

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(audit_store, "append", broken)
    with pytest.raises(RuntimeError, match="audit store unavailable"):
        await fhir_service.create(ctx, _observation(pat.resource_id))
    monkeypatch.undo()
    after = (await fhir_service.search(ctx, "Observation", [("patient", pat.resource_id)])).total
    assert after == count_before == 0


async def test_concurrent_writers_keep_one_linear_chain(runtime: Runtime) -> None:
    """Twenty measurements arrive at once for one patient: the chain has no gap, no fork, and every link
    hashes to the next."""
    ctx = Context.system(runtime)
    pat = (await fhir_service.create(ctx, patient())).stored
    await asyncio.gather(*(fhir_service.create(ctx, _observation(pat.resource_id)) for _ in range(20)))
    records = await _records(runtime, pat.space_id)
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert len(records) == 21
    prev = GENESIS
    for r in records:
        assert r.prev_hash == prev
        assert r.hash == chain_hash(prev, pat.space_id, r.seq, r.record)
        prev = r.hash


async def test_a_refusal_is_traced(http: httpx.AsyncClient, token_for: Any, runtime: Runtime) -> None:
    """A client allowed only to search patients tries to create one: 403, and the directory's chain records
    who was refused what."""
    token = await token_for("system/Patient.rs")
    response = await http.post(
        "/fhir/Patient", json=patient(new_nir()), headers={"Authorization": f"Bearer {token}", **FHIR_JSON}
    )
    assert response.status_code == 403
    async with runtime.db.pool.acquire() as conn:
        last = (await trace_records.newest(conn, DIRECTORY_SPACE, limit=1))[0].record
    assert (last.action, last.outcome, last.entity_type, last.detail) == (
        "access:refused",
        "8",
        "Patient",
        "create",
    )
    assert last.actor_kind == "client"
    assert INS not in last.detail


async def test_the_spaces_with_a_trace_are_listed_a_page_at_a_time(runtime: Runtime) -> None:
    """`audit verify` over the whole country reads the list of spaces in pages, in order, each once."""
    ctx = Context.system(runtime)
    for _ in range(3):
        await fhir_service.create(ctx, patient())
    async with runtime.db.pool.acquire() as conn:
        everything = await audit_store.spaces(conn, limit=1_000_000)
        paged: list[uuid.UUID] = []
        after = None
        while page := await audit_store.spaces(conn, after=after, limit=2):
            paged += page
            after = page[-1]
    assert paged == everything == sorted(everything)
    assert len(everything) >= 3
