"""A professional refused on Jeanne's record: the refusal is in the directory's chain at once, and in her own
chain once the job deferred with it has run, once, worded for her; nothing is copied for a space nobody has,
nor for a holder refused on someone else's record."""

from __future__ import annotations

import json
import uuid

import httpx

from espace_sante.audit import trace
from espace_sante.runtime import Runtime
from espace_sante.storage.db import Conn
from espace_sante.storage.keys import DIRECTORY_SPACE
from tests.access.conftest import MOTHER, World
from tests.accounts.helpers import new_person
from tests.factories import new_professional
from tests.notifications.helpers import run_queue
from tests.web.test_history_page import client_of, her_patient, software_of


async def _refusals(runtime: Runtime, space_id: uuid.UUID, actor_id: str) -> int:
    async def count(conn: Conn) -> int:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM audit_event WHERE space_id = $1 AND action = 'access:refused' "
                "AND actor_id = $2",
                space_id,
                actor_id,
            )
        )

    return await runtime.db.read("t_refusals", count)


async def _copy_jobs(runtime: Runtime, actor_id: str) -> list[dict[str, object]]:
    async def jobs(conn: Conn) -> list[dict[str, object]]:
        rows = await conn.fetch(
            "SELECT args FROM procrastinate_jobs WHERE task_name = $1 AND args->'record'->>'actor_id' = $2",
            trace.COPY_REFUSAL_TASK,
            actor_id,
        )
        return [dict(json.loads(r["args"])) for r in rows]

    return await runtime.db.read("t_jobs", jobs)


async def test_a_refusal_reaches_her_chain_after_the_refused_request_once(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    space = uuid.UUID(patient_id[:32])
    rpps, _ = await new_professional(fhir)
    stranger = await software_of(runtime, rpps)
    assert (await stranger.get(f"/Patient/{patient_id}")).status_code == 404
    assert await _refusals(runtime, DIRECTORY_SPACE, rpps) == 1
    assert await _refusals(runtime, space, rpps) == 0  # not in the refused request's transaction
    [job] = await _copy_jobs(runtime, rpps)

    await run_queue(runtime, trace.QUEUE)
    assert await _refusals(runtime, space, rpps) == 1
    # A job run again (a worker killed after its commit) finds it there.
    args = job["record"]
    assert isinstance(args, dict)
    assert await trace.copy_refusal(runtime, space, args) is False
    assert await _refusals(runtime, space, rpps) == 1


async def test_no_chain_for_a_record_nobody_has_nor_for_a_holder_refused_elsewhere(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    rpps, _ = await new_professional(fhir)
    prober = await software_of(runtime, rpps)
    invented = uuid.uuid4()
    assert (await prober.get(f"/Patient/{invented.hex}{'0' * 16}")).status_code == 404
    assert await _copy_jobs(runtime, rpps) == []  # not even a job for an id nobody has
    await run_queue(runtime, trace.QUEUE)
    assert await _refusals(runtime, invented, rpps) == 0
    assert await _refusals(runtime, DIRECTORY_SPACE, rpps) == 1  # the attempt itself stays on record

    # A holder reaching for another's record: refused and recorded for the operators, not worded to that holder.
    jeanne = await new_person(runtime, fhir)
    paul = await new_person(runtime, fhir)
    paul_patient = await her_patient(fhir, paul)
    as_jeanne = await client_of(runtime, f"holder:{jeanne.actor_id}", "patient/*.rs")
    assert (await as_jeanne.get(f"/Patient/{paul_patient}")).status_code == 404
    assert await _copy_jobs(runtime, jeanne.actor_id) == []
    assert await _refusals(runtime, uuid.UUID(paul_patient[:32]), jeanne.actor_id) == 0


async def test_an_attempt_on_what_is_hidden_from_the_parents_is_not_shown_to_them(
    runtime: Runtime, fhir: httpx.AsyncClient, world: World
) -> None:
    """A professional refused on Léo's confidential document: the attempt reaches his chain naming the
    document, and his mother's view of his history leaves it out, as it leaves out his doctor's read of it."""
    rpps, _ = await new_professional(fhir)
    stranger = await software_of(runtime, rpps)
    secret = world.documents["child:confidentiel"]
    assert (await stranger.get(f"/DocumentReference/{secret}")).status_code == 404
    await run_queue(runtime, trace.QUEUE)
    space = uuid.UUID(world.child_patient[:32])
    assert await _refusals(runtime, space, rpps) == 1
    mother = await client_of(runtime, f"representative:{MOTHER}", "patient/*.rs")
    seen = await mother.get("/AuditEvent", params={"patient": world.child_patient, "_count": "200"})
    assert seen.status_code == 200
    assert rpps not in seen.text
