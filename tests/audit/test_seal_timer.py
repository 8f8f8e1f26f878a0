"""The serving process seals the trace on a timer: a new access is sealed without anyone running a command."""

from __future__ import annotations

import asyncio

import httpx

from espace_sante.audit import chains as audit
from espace_sante.jobs import seal
from espace_sante.runtime import Runtime
from espace_sante.storage import audit as audit_store
from tests.factories import FHIR_JSON, patient


async def test_the_timer_seals_heads_that_moved_and_stops_when_asked(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    await audit.seal_heads(runtime)
    created = await fhir.post("/Patient", json=patient(), headers=FHIR_JSON)
    assert created.status_code == 201
    assert await runtime.db.read("t_unsealed", audit_store.unsealed_heads)
    stop = asyncio.Event()
    timer = asyncio.create_task(seal.run(runtime, 0.05, stop))
    for _ in range(100):
        await asyncio.sleep(0.05)
        if not await runtime.db.read("t_unsealed", audit_store.unsealed_heads):
            break
    stop.set()
    await asyncio.wait_for(timer, 5)
    assert await runtime.db.read("t_unsealed", audit_store.unsealed_heads) == []
