"""A worker joins the cluster and shards move to it while feeds keep writing: every write a client was told
succeeded reads back afterwards, as it was written (the crash-test style of tests/documents/test_crash.py).

Shards move by logical replication (`shard_transfer_mode => 'force_logical'`): the copy runs while the shard
takes writes, which are then replayed, and writes wait only for the final switch (Citus docs, "Rebalance
shards without downtime"); migrations/0028 gives the search index tables the replica identity that needs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import httpx

from espace_sante.runtime import Runtime
from tests.citus import cluster
from tests.factories import FHIR_JSON, new_nir, patient

WRITERS = 4


async def a_space(fhir: httpx.AsyncClient) -> str:
    created = await fhir.post("/Patient", json=patient(new_nir()), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def observation(patient_id: str, value: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


async def test_a_new_worker_takes_shards_while_writes_go_on_and_nothing_acknowledged_is_lost(
    runtime: Runtime, citus_cluster: cluster.Cluster, fhir: httpx.AsyncClient
) -> None:
    patients = [await a_space(fhir) for _ in range(WRITERS * 4)]
    acknowledged: dict[str, int] = {}
    refused: list[int] = []
    moving = asyncio.Event()
    done = asyncio.Event()

    async def writer(n: int) -> None:
        value = n * 1_000_000
        while not done.is_set():
            value += 1
            pid = patients[value % len(patients)]
            response = await fhir.post("/Observation", json=observation(pid, value), headers=FHIR_JSON)
            if response.status_code == 201:
                acknowledged[response.json()["id"]] = value
            else:  # a write may be refused (the client then knows it did not happen); never a lie
                refused.append(response.status_code)

    writers = [asyncio.create_task(writer(n)) for n in range(WRITERS)]
    await asyncio.sleep(1)
    before = len(acknowledged)

    new = citus_cluster.add_worker()
    await cluster.join(citus_cluster, new)
    conn = await asyncpg.connect(citus_cluster.uri)
    try:
        started = time.monotonic()
        moving.set()
        await conn.execute("SELECT rebalance_table_shards(shard_transfer_mode => 'force_logical')")
        moved_in = time.monotonic() - started
        await asyncio.sleep(1)  # writes after the moves, on the new placements
    finally:
        done.set()
        await asyncio.gather(*writers)
    try:
        on_new = await conn.fetchval(
            "SELECT count(*) FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid) WHERE n.nodeport = $1",
            new.port,
        )
        workers = await conn.fetchval("SELECT count(*) FROM pg_dist_node WHERE groupid <> 0 AND isactive")
    finally:
        await conn.close()

    assert workers == 3 and on_new > 0, (workers, on_new)
    assert len(acknowledged) > before, "the writers kept writing while the shards moved"
    print(
        f"\nrebalance: {on_new} shard placements moved in {moved_in:.1f} s; {len(acknowledged)} writes "
        f"acknowledged, {len(refused)} refused {sorted(set(refused))}"
    )
    lost = []
    for oid, value in acknowledged.items():
        read = await fhir.get(f"/Observation/{oid}")
        if read.status_code != 200 or read.json()["valueQuantity"]["value"] != value:
            lost.append((oid, read.status_code))
    assert lost == []
    # Every patient's observations are found by search too: the index rows moved with the resources.
    found = 0
    for pid in patients:
        page = await fhir.get("/Observation", params={"patient": f"Patient/{pid}", "_summary": "count"})
        found += page.json()["total"]
    assert found == len(acknowledged)
