"""The lifecycle as an API (`/space/status`, `/space/transitions`, api/spaces/routes.py): the holder closes,
reopens, asks for destruction and contests a suspension; an operator records an opposition by phone and
suspends; nobody reaches someone else's space; bad input is an OperationOutcome."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import httpx

from espace_sante import clock
from espace_sante.context import Context
from espace_sante.oauth import devtokens
from espace_sante.runtime import Runtime
from espace_sante.spaces import lifecycle
from espace_sante.spaces.notices import delivery, letters
from espace_sante.storage import people as people_store
from tests.factories import BASE
from tests.lifecycle.test_lifecycle import active, observation, registered


async def bearer(runtime: Runtime, http: httpx.AsyncClient, actor: str, scope: str) -> httpx.AsyncClient:
    issued = await devtokens.issue(runtime, actor, scope)
    return httpx.AsyncClient(
        transport=http._transport,
        base_url=BASE,
        headers={"Authorization": f"Bearer {issued.access_token}", "Accept": "application/json"},
    )


def outcome_text(response: httpx.Response) -> str:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


async def test_a_holder_closes_her_space_reads_its_state_and_reopens_it(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient
) -> None:
    space, nir, pid = await active(fhir)
    obs = await observation(fhir, pid)
    holder = await bearer(runtime, http, f"holder:{nir}", "patient/*.*")

    shown = await holder.post("/space/status", json={})
    assert shown.status_code == 200, shown.text
    assert shown.json()["state"] == "active" and shown.json()["words"]["fr"] == "activé par son titulaire"
    assert shown.headers["cache-control"] == "no-store"

    closed = await holder.post("/space/transitions", json={"event": "close"})
    assert closed.status_code == 200, closed.text
    assert closed.json()["from"] == "active" and closed.json()["to"] == "closed"
    assert closed.json()["status"]["closed_reason"] == "holder"
    assert (await holder.get(f"/fhir/Observation/{obs}")).status_code == 404

    again = await holder.post("/space/transitions", json={"event": "close"})
    assert again.status_code == 409 and "fermé" in outcome_text(again)

    reopened = await holder.post("/space/transitions", json={"event": "reopen"})
    assert reopened.json()["to"] == "active"
    assert (await holder.get(f"/fhir/Observation/{obs}")).status_code == 200

    erased = await holder.post("/space/transitions", json={"event": "erase"})
    assert erased.json()["to"] == "closed"
    assert (
        erased.json()["status"]["destroy_on"]
        == (clock.today() + timedelta(days=runtime.settings.destruction_delay_days)).isoformat()
    )
    assert await lifecycle.state(runtime, space) == "closed"


async def test_nobody_reaches_someone_elses_space_and_people_cannot_suspend(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient
) -> None:
    space, nir, _ = await active(fhir)
    _, other_nir, _ = await active(fhir)
    other = await bearer(runtime, http, f"holder:{other_nir}", "patient/*.*")
    for body in ({"ins": nir}, {"ins": nir, "event": "close"}):
        path = "/space/transitions" if "event" in body else "/space/status"
        answered = await other.post(path, json=body)
        assert answered.status_code == 404, answered.text
    assert await lifecycle.state(runtime, space) == "active"

    holder = await bearer(runtime, http, f"holder:{nir}", "patient/*.*")
    refused = await holder.post("/space/transitions", json={"event": "suspend"})
    assert refused.status_code == 403
    assert (await holder.post("/space/transitions", json={"event": "destroy"})).status_code == 400
    assert (await holder.post("/space/transitions", json={"event": "close", "x": 1})).status_code == 400
    # No free text reaches the trace the holder reads: a reason is a code, and only for a suspension.
    told = await holder.post("/space/transitions", json={"event": "close", "reason": "suivi oncologique"})
    assert told.status_code == 400
    assert (await holder.post("/space/status", json={"ins": "not-an-ins"})).status_code == 400
    assert (await http.post("/space/status", json={})).status_code == 401

    feed = await fhir.post(f"{BASE}/space/status", json={"ins": nir})  # a machine client: not a person
    assert feed.status_code in (400, 404)


async def test_an_operator_records_a_phone_opposition_and_a_suspension_the_holder_contests(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient, tmp_path: Path
) -> None:
    await runtime.db.interaction("t_operator", people_store.ensure_operator, "agent-cpam-75", "Agent CPAM 75")
    operator = await bearer(runtime, http, "operator:agent-cpam-75", "")
    notified, nir = await registered(runtime, tmp_path)
    assert (
        await operator.post("/space/transitions", json={"ins": nir, "event": "oppose"})
    ).status_code == 400
    opposed = await operator.post(
        "/space/transitions", json={"ins": nir, "event": "oppose", "channel": "phone"}
    )
    assert opposed.status_code == 200, opposed.text
    assert opposed.json()["to"] == "opposed" and opposed.json()["status"]["words"]["en"] == "objected to"
    twice = await operator.post(
        "/space/transitions", json={"ins": nir, "event": "oppose", "channel": "phone"}
    )
    assert twice.status_code == 409
    # The person asks again, by phone: the new notice and code go at once (no wait for `notices send`).
    asked = await operator.post("/space/transitions", json={"ins": nir, "event": "request"})
    assert (asked.json()["from"], asked.json()["to"]) == ("opposed", "notified")
    assert await lifecycle.state(runtime, notified) == "notified"
    queued = await delivery.emails_of(runtime, notified) + await letters.letters_of(runtime, notified)
    assert len(queued) == 1

    _, holder_nir, pid = await active(fhir)
    suspended = await operator.post(
        "/space/transitions", json={"ins": holder_nir, "event": "suspend", "reason": "fraud"}
    )
    assert suspended.json()["to"] == "suspended"
    holder = await bearer(runtime, http, f"holder:{holder_nir}", "patient/*.*")
    shown = (await holder.post("/space/status", json={})).json()
    assert shown["state"] == "suspended" and shown["words"]["fr"] == "suspendu"
    assert (await holder.get(f"/fhir/Patient/{pid}")).status_code == 404  # the data is out of reach
    contested = await holder.post("/space/transitions", json={"event": "resume"})  # her objection
    assert contested.json()["to"] == "active"
    assert (await holder.get(f"/fhir/Patient/{pid}")).status_code == 200


async def test_the_registrys_space_stands_for_the_person_even_after_destruction(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient, tmp_path: Path
) -> None:
    """An INS names the space the registry made for it, not another Patient carrying the same INS (review of
    2026-12-03), and still names it once destroyed, so that an operator can tell what became of it."""
    from tests.factories import FHIR_JSON, patient

    space, nir = await registered(runtime, tmp_path)
    other = await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)  # a hospital's own Patient
    if other.status_code == 201:
        assert uuid.UUID(other.json()["id"][:32]) != space
    assert await lifecycle.space_of_ins(runtime, nir) == space

    system = Context.system(runtime)
    await lifecycle.close(system, space)
    await lifecycle.erase(system, space, on=clock.today())
    await lifecycle.run(runtime, clock.today() + timedelta(days=runtime.settings.destruction_delay_days))
    assert await lifecycle.space_of_ins(runtime, nir) == space
    assert await lifecycle.state(runtime, space) == "destroyed"
