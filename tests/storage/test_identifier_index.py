"""`patient_identifier` (migrations/0029: which space holds a Patient with this identifier, the lookup that
runs on one shard on Citus) says what the Patients' identifier search rows say, through every way a Patient is
written, and batch claims fill their batch past the rows another run holds (storage/locks.claim)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from espace_sante import clock
from espace_sante.runtime import Runtime
from espace_sante.spaces import lifecycle
from espace_sante.storage import locks
from espace_sante.storage.db import Conn
from tests.factories import FHIR_JSON, INS, new_nir, patient
from tests.lifecycle.test_lifecycle import holder_ctx
from tests.registry.test_import import person, write
from tests.registry.test_import import run as import_registry

IPP = "urn:oid:1.2.250.1.71.4.2.1.999"


async def index_of(runtime: Runtime, space: uuid.UUID) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(the identifier rows of `patient_identifier`, those of the search index) for a space's Patients."""

    async def read(conn: Conn) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        by_value = await conn.fetch(
            "SELECT DISTINCT value, system, resource_id FROM patient_identifier WHERE space_id = $1", space
        )
        by_space = await conn.fetch(
            "SELECT DISTINCT code, system, resource_id FROM sp_token WHERE space_id = $1 "
            "AND resource_type = 'Patient' AND param = 'identifier'",
            space,
        )
        return sorted(map(tuple, by_value)), sorted(map(tuple, by_space))

    return await runtime.db.read("t_identifier_index", read)


async def in_step(runtime: Runtime, space: uuid.UUID) -> list[tuple[Any, ...]]:
    by_value, by_space = await index_of(runtime, space)
    assert by_value == by_space
    return by_value


async def test_the_identifier_index_follows_a_patient_through_its_life(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """Created, given a hospital's IPP, losing it, deleted, then its space erased: at each step the index by
    value holds exactly the identifiers the Patient's search rows hold."""
    nir = new_nir()
    created = await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    body, pid = created.json(), created.json()["id"]
    space = uuid.UUID(pid[:32])
    assert [(v, s) for v, s, _ in await in_step(runtime, space)] == [(nir, INS)]

    body["identifier"].append({"system": IPP, "value": "IPP-778"})
    updated = await fhir.put(f"/Patient/{pid}", json=body, headers=FHIR_JSON | {"If-Match": 'W/"1"'})
    assert updated.status_code == 200, updated.text
    assert {v for v, _, _ in await in_step(runtime, space)} == {nir, "IPP-778"}

    body["identifier"] = [i for i in body["identifier"] if i["system"] != IPP]
    updated = await fhir.put(f"/Patient/{pid}", json=body, headers=FHIR_JSON | {"If-Match": 'W/"2"'})
    assert updated.status_code == 200, updated.text
    assert {v for v, _, _ in await in_step(runtime, space)} == {nir}
    # Found by the INS through the index by value, as ITI-67 finds it.
    found = await fhir.get("/Patient", params={"identifier": f"{INS}|{nir}"})
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [pid]

    await lifecycle.erase(holder_ctx(runtime, nir), space, on=clock.today())
    await lifecycle.run(runtime, clock.today() + timedelta(days=runtime.settings.destruction_delay_days))
    assert await in_step(runtime, space) == []


async def test_a_missing_row_is_put_back_at_the_next_write(runtime: Runtime, fhir: httpx.AsyncClient) -> None:
    """A row lost (a process on the code before migration 0029 wrote the Patient while it was applied) comes
    back when the Patient is next written: every identifier is rewritten, not only those that changed."""
    nir = new_nir()
    created = await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)
    body, pid = created.json(), created.json()["id"]
    space = uuid.UUID(pid[:32])
    await runtime.db.interaction(
        "t_lose_row", lambda conn: conn.execute("DELETE FROM patient_identifier WHERE value = $1", nir)
    )
    assert (await index_of(runtime, space))[0] == []
    body["gender"] = "female"
    updated = await fhir.put(f"/Patient/{pid}", json=body, headers=FHIR_JSON | {"If-Match": 'W/"1"'})
    assert updated.status_code == 200, updated.text
    assert [(v, s) for v, s, _ in await in_step(runtime, space)] == [(nir, INS)]


async def test_a_person_of_the_registry_is_indexed_when_the_space_opens(
    runtime: Runtime, tmp_path: Path
) -> None:
    """The registry's bulk path: the identity waits sealed (no Patient, no row), then the Patient written at
    activation carries its rows in the index by value too."""
    row = person()
    assert (await import_registry(runtime, write(tmp_path / "r.csv", [row])))["created"] == 1
    space = await lifecycle.space_of_ins(runtime, row["nir"])
    assert space is not None
    assert await in_step(runtime, space) == []
    await lifecycle.activate(holder_ctx(runtime, row["nir"]), space)
    assert [(v, s) for v, s, _ in await in_step(runtime, space)] == [(row["nir"], INS)]


async def test_a_batch_claim_is_filled_past_the_rows_another_run_holds(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """Two runs claim from the same six spaces: the first holds two, the second still gets the three it asks
    for (SKIP LOCKED on one server; on Citus, candidates read a page at a time until the batch is full)."""
    spaces = []
    for _ in range(6):
        created = await fhir.post("/Patient", json=patient(new_nir()), headers=FHIR_JSON)
        spaces.append(uuid.UUID(created.json()["id"][:32]))
    spaces.sort()

    async def claim(conn: Conn, limit: int) -> list[uuid.UUID]:
        rows = await locks.claim(
            conn,
            table="space",
            columns="space_id",
            where="space_id = ANY($1::uuid[])",
            args=(spaces,),
            key=("space_id",),
            order="space_id",
            limit=limit,
        )
        return [r["space_id"] for r in rows]

    async with runtime.db.pool.acquire() as first, first.transaction():
        held = await claim(first, 2)  # type: ignore[arg-type]
        assert held == spaces[:2]
        async with runtime.db.pool.acquire() as second, second.transaction():
            assert await claim(second, 3) == spaces[2:5]  # type: ignore[arg-type]
            # Without a limit: every row not held elsewhere.
            assert await claim(second, 10) == spaces[2:]  # type: ignore[arg-type]


async def test_a_claim_that_waits_sees_what_the_holder_committed(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """A claim that waits for a row (no SKIP LOCKED: the trace heads, the registry's people) gets it once the
    holder commits, and leaves it out when the holder's change made it stop matching."""
    created = await fhir.post("/Patient", json=patient(new_nir()), headers=FHIR_JSON)
    space = uuid.UUID(created.json()["id"][:32])
    async with runtime.db.pool.acquire() as first:
        tx = first.transaction()
        await tx.start()
        await first.execute(
            "UPDATE space SET state = 'closed' WHERE space_id = $1 AND state = 'active'", space
        )

        async def waiting(conn: Conn) -> list[Any]:
            return await locks.claim(
                conn,
                table="space",
                columns="space_id, state",
                where="space_id = $1 AND state = 'active'",
                args=(space,),
                key=("space_id",),
                skip_locked=False,
            )

        task = asyncio.create_task(runtime.db.interaction("t_wait", waiting))
        await asyncio.sleep(0.3)
        assert not task.done()  # it waits for the holder
        await tx.rollback()  # the holder gives up: the row still matches
        assert [r["state"] for r in await task] == ["active"]
