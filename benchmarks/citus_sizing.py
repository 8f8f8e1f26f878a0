"""The figures behind docs/scaling.md, measured on a local Citus cluster (a coordinator and two workers on
loopback, tests/citus/cluster.py): statements per request on the coordinator and tasks on the workers, WAL per
document deposited, and bytes per space in the distributed tables.

    python -m benchmarks.citus_sizing [--spaces 200]     # needs `make citus` first

The workload is the national one in miniature: people made through the feed, each with a discharge summary
deposited by a hospital (ITI-65, the ANS example with its PDF, whose bytes go to the blob store, not the
database), three measurements, reads and searches by their doctor's software and by themselves."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from tests.citus import cluster
from tests.documents.mhd import by_type, iti65
from tests.factories import BASE, FHIR_JSON, INS, new_nir, patient

from espace_sante.app import create_app
from espace_sante.oauth import clients as oauth_clients
from espace_sante.runtime import Runtime
from espace_sante.settings import Settings
from espace_sante.storage import citus, migrate

NODES = ("coordinator", "worker1", "worker2")


async def _sum(uris: list[str], sql: str) -> float:
    total = 0.0
    for uri in uris:
        conn = await asyncpg.connect(uri)
        try:
            total += float(await conn.fetchval(sql) or 0)
        finally:
            await conn.close()
    return total


async def _reset(uris: list[str]) -> None:
    for uri in uris:
        conn = await asyncpg.connect(uri)
        try:
            await conn.execute("SELECT pg_stat_statements_reset()")
        finally:
            await conn.close()


_CALLS = "SELECT sum(calls) FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'"


async def measure(spaces: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="espace-sante-sizing-"))
    nodes = cluster.start(base, workers=2, preload="citus,pg_stat_statements")
    try:
        dsn = await cluster.form(nodes)
        conn = await asyncpg.connect(dsn)  # the coordinator creates it on the workers too
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.close()
        await migrate.migrate(dsn)
        settings = Settings(
            data_dir=base / "app",
            database_url=dsn,
            dev=True,
            base_url=BASE,
            kek=base64.b64encode(os.urandom(32)).decode(),
            api_spaces_per_client=10_000_000,
        )
        rt = await Runtime.open(settings)
        try:
            return await _workload(rt, nodes, dsn, spaces)
        finally:
            await rt.close()
    finally:
        nodes.stop()
        shutil.rmtree(base, ignore_errors=True)


async def _workload(rt: Runtime, nodes: cluster.Cluster, dsn: str, spaces: int) -> dict[str, Any]:
    app = create_app(runtime=rt)
    transport = httpx.ASGITransport(app=app)
    client = await oauth_clients.create_client(rt, "sizing feed", "system/*.*")
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        token = (
            await http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(client.client_id, client.client_secret),
            )
        ).json()["access_token"]
    fhir = httpx.AsyncClient(
        transport=transport,
        base_url=f"{BASE}/fhir",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
    )
    workers = [w.uri() for w in nodes.workers]
    coordinator = [nodes.coordinator.uri()]
    conn = await asyncpg.connect(dsn)
    tables = list(citus.BY_SPACE) + list(citus.BY_OWN_KEY)
    size_sql = " + ".join(f"citus_total_relation_size('{t}')" for t in tables)
    wal = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"

    per: dict[str, dict[str, float]] = {}
    people: list[tuple[str, str]] = []

    async def step(name: str, times: int, action: Callable[[int], Awaitable[None]]) -> None:
        size0 = float(await conn.fetchval(f"SELECT {size_sql}"))
        await _reset(coordinator + workers)
        wal0 = await _sum(workers, wal)
        started = time.perf_counter()
        for i in range(times):
            await action(i)
        seconds = time.perf_counter() - started
        per[name] = {
            "requests": times,
            "statements_per_request": round(await _sum(coordinator, _CALLS) / times, 1),
            "worker_tasks_per_request": round(await _sum(workers, _CALLS) / times, 1),
            "worker_wal_bytes_per_request": round((await _sum(workers, wal) - wal0) / times),
            "ms_per_request": round(1000 * seconds / times, 2),
            "stored_bytes_per_request": round(
                (float(await conn.fetchval(f"SELECT {size_sql}")) - size0) / times
            ),
        }

    async def create(i: int) -> None:
        nir = new_nir()
        created = await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)
        assert created.status_code == 201, created.text
        people.append((nir, created.json()["id"]))

    async def deposit(i: int) -> None:
        response = await fhir.post("", json=iti65(people[i][0]), headers=FHIR_JSON)
        assert response.status_code == 200, response.text
        by_type(response)

    async def measurement(i: int) -> None:
        pid = people[i // 3][1]
        body = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "valueQuantity": {"value": 60 + i % 40, "unit": "/min", "system": "http://unitsofmeasure.org",
                              "code": "/min"},
        }  # fmt: skip
        assert (await fhir.post("/Observation", json=body, headers=FHIR_JSON)).status_code == 201

    async def read(i: int) -> None:
        assert (await fhir.get(f"/Patient/{people[i % len(people)][1]}")).status_code == 200

    async def iti67(i: int) -> None:
        nir = people[i % len(people)][0]
        found = await fhir.get("/DocumentReference", params={"patient.identifier": f"{INS}|{nir}"})
        assert found.status_code == 200 and found.json().get("entry"), found.text

    async def search_in_space(i: int) -> None:
        pid = people[i % len(people)][1]
        assert (await fhir.get("/Observation", params={"patient": f"Patient/{pid}"})).status_code == 200

    async def batch() -> float:
        people.clear()
        await step("create Patient (a space)", spaces, create)
        await step("ITI-65 deposit (transaction: List, DocumentReference, Binary)", spaces, deposit)
        await step("create Observation", spaces * 3, measurement)
        await step("read Patient by id", spaces, read)
        await step("ITI-67 search by INS", spaces, iti67)
        await step("search Observation?patient=", spaces, search_in_space)
        return float(await conn.fetchval(f"SELECT {size_sql}"))

    # Twice: the first batch fills the shards' first pages and warms the caches; the figures are the second's,
    # what one more space costs in a cluster already in use.
    bytes_before = await batch()
    bytes_after = await batch()
    by_table = {t: int(await conn.fetchval(f"SELECT citus_total_relation_size('{t}')")) for t in tables}
    await conn.close()
    return {
        "spaces": spaces,
        "per_request": per,
        "bytes_per_space": round((bytes_after - bytes_before) / spaces),
        "bytes_by_table": {t: n for t, n in sorted(by_table.items(), key=lambda kv: -kv[1]) if n > 0},
        "shards_per_table": 32,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", type=int, default=200)
    args = parser.parse_args()
    cluster.build()
    result = asyncio.run(measure(args.spaces))
    print(json.dumps(result, indent=2))
    out = (
        Path(__file__).parent
        / "results"
        / f"citus-sizing-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    )
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
