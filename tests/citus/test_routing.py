"""On Citus, the requests of everyday use run each of their statements on one shard (the router executor), and
the statements that fan out to every shard are the ones listed here, each with why.

The proof is Citus's own: `citus.multi_task_query_log_level = error` makes any statement that would run as more
than one task fail instead. A second application, on the same cluster and keys, connects with that setting; the
everyday stories run through it and must succeed. The listed fan-outs run through it too and must fail, so that
the list stays true (one that stops fanning out is taken off it)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from espace_sante.access.actors import Actor
from espace_sante.access.scopes import Scopes
from espace_sante.app import create_app
from espace_sante.audit import chains
from espace_sante.context import Context
from espace_sante.oauth import devtokens
from espace_sante.runtime import Runtime
from espace_sante.spaces import activation, lifecycle
from espace_sante.storage import access as access_store
from tests.conftest import TokenFactory
from tests.documents.mhd import by_type, iti65
from tests.factories import BASE, FHIR_JSON, INS, new_professional
from tests.registry.test_import import person, write
from tests.registry.test_import import run as import_registry

ONE_TASK = "citus.multi_task_query_log_level=error"
FANNED_OUT = "multi-task query about to be executed"


@pytest.fixture(scope="module")
async def routed(runtime: Runtime) -> AsyncIterator[Any]:
    """The application again, on connections where a statement that fans out is an error."""
    dsn = runtime.settings.database_url
    settings = runtime.settings.model_copy(
        update={"database_url": f"{dsn}{'&' if '?' in dsn else '?'}{ONE_TASK}"}
    )
    rt = await Runtime.open(settings)
    try:
        yield create_app(runtime=rt)
    finally:
        await rt.close()


def client(app: Any, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=f"{BASE}/fhir",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
    )


async def acting(runtime: Runtime, app: Any, actor: str, scope: str) -> httpx.AsyncClient:
    return client(app, (await devtokens.issue(runtime, actor, scope)).access_token)


async def a_person_of_the_registry(runtime: Runtime, tmp_path: Path) -> tuple[uuid.UUID, str]:
    """Made the national way: imported from the insurer's registry, then activated by the holder."""
    row = person()
    assert (await import_registry(runtime, write(tmp_path / "registre.csv", [row])))["created"] == 1
    space = await lifecycle.space_of_ins(runtime, row["nir"])
    assert space is not None
    holder = Actor(
        "holder", row["nir"], Scopes.parse("patient/*.*"), "Anne", acr="eidas2", auth_time=datetime.now(UTC)
    )
    await lifecycle.activate(Context(runtime, holder), space)
    return space, row["nir"]


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return dict(response.json()) if response.content else {}


async def test_a_day_of_a_record_runs_on_one_shard_per_statement(
    runtime: Runtime, routed: Any, fhir: httpx.AsyncClient, token_for: TokenFactory, tmp_path: Path
) -> None:
    """A hospital deposits a discharge summary (ITI-65) for a person of the registry, a feed adds a measurement
    and reads it back, updates it and reads its history; the holder finds her documents (ITI-67), fetches the
    content (ITI-68), searches and reads her trace; her doctor, on the care team, reads the summary. Every
    statement of all that names its space and runs on one shard."""
    space, nir = await a_person_of_the_registry(runtime, tmp_path)
    rpps, _ = await new_professional(fhir)
    await runtime.db.interaction(
        "t_care_team", lambda conn: access_store.set_basis(conn, space, rpps, "care_team", "test")
    )
    feed = client(routed, await token_for("system/*.*"))
    holder = await acting(runtime, routed, f"holder:{nir}", "patient/*.*")
    doctor = await acting(runtime, routed, f"practitioner:{rpps}", "user/*.*")

    # ITI-65: a transaction naming the patient by INS.
    deposited = by_type(await feed.post("", json=iti65(nir), headers=FHIR_JSON))
    document = deposited["DocumentReference"]
    patient_id = document["subject"]["reference"].split("/")[1]
    assert patient_id[:32] == space.hex

    # CRUD, history and search in one space.
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }
    created = ok(await feed.post("/Observation", json=obs, headers=FHIR_JSON), 201)
    ok(await feed.get(f"/Observation/{created['id']}"))
    obs["id"], obs["valueQuantity"]["value"] = created["id"], 75
    ok(await feed.put(f"/Observation/{created['id']}", json=obs, headers=FHIR_JSON | {"If-Match": 'W/"1"'}))
    history = ok(await feed.get(f"/Observation/{created['id']}/_history"))
    assert len(history["entry"]) == 2
    found = ok(await feed.get("/Observation", params={"patient": f"Patient/{patient_id}", "code": "8867-4"}))
    assert [e["resource"]["id"] for e in found["entry"]] == [created["id"]]

    # ITI-67 and ITI-68 as the holder, by her INS.
    mine = ok(await holder.get("/DocumentReference", params={"patient.identifier": f"{INS}|{nir}"}))
    assert document["id"] in [e["resource"]["id"] for e in mine["entry"]]
    content = document["content"][0]["attachment"]["url"]
    binary = await holder.get(content.split("/fhir", 1)[1] if "/fhir" in content else f"/{content}")
    assert binary.status_code == 200 and binary.content
    ok(await holder.get(f"/Patient/{patient_id}"))

    # The professional on the care team: the access facts, the read and its trace.
    ok(await doctor.get(f"/DocumentReference/{document['id']}"))
    seen = ok(await holder.get("/AuditEvent", params={"patient": f"Patient/{patient_id}", "_count": "50"}))
    assert any(rpps in str(e["resource"].get("agent")) for e in seen["entry"])

    # The trace of the space is whole, checked on one-task connections too (`audit verify --space`).
    report = await chains.verify(routed.state.runtime, space)
    assert report.ok and report.records >= 8, report.as_dict()


async def a_feeds_search_naming_no_patient(rt: Runtime, feed: httpx.AsyncClient) -> None:
    await feed.get("/Observation", params={"code": "8867-4"})


async def an_activation_code_typed_on_the_activation_page(rt: Runtime, feed: httpx.AsyncClient) -> None:
    await activation.check(Context.system(rt), "ABCD-EFGH-JKMN-PQ", date(1971, 3, 2), ip="192.0.2.7")


async def the_daily_lifecycle_run(rt: Runtime, feed: httpx.AsyncClient) -> None:
    await lifecycle.run(rt)


async def audit_verify_of_every_space(rt: Runtime, feed: httpx.AsyncClient) -> None:
    await chains.verify(rt)


#: Statements that run on every shard, and why they may: each runs through the application on one-task
#: connections and must be refused there, so that the list stays true.
FAN_OUTS: dict[str, Callable[[Runtime, httpx.AsyncClient], Awaitable[None]]] = {
    "a machine client's search naming no patient runs over every space it may read (a feed's own query; one "
    "trace row per space it reaches)": a_feeds_search_naming_no_patient,
    "an activation code names no space: its digest is looked for in every shard (once per person, at "
    "activation; a lookup table keyed by digest would make it one shard)": an_activation_code_typed_on_the_activation_page,
    "the daily lifecycle run looks for the spaces due to open, close or be destroyed in every shard (a batch "
    "job, then one shard per space it handles)": the_daily_lifecycle_run,
    "`audit verify` without --space lists every space with a trace (an operator's check)": audit_verify_of_every_space,
}


@pytest.mark.parametrize("why", sorted(FAN_OUTS))
async def test_the_statements_that_fan_out_are_the_listed_ones(
    routed: Any, token_for: TokenFactory, why: str
) -> None:
    feed = client(routed, await token_for("system/*.*"))
    # Refused by Citus on these connections; the test transport hands the application's error over.
    with pytest.raises(asyncpg.PostgresError, match=FANNED_OUT):
        await FAN_OUTS[why](routed.state.runtime, feed)


async def test_the_one_task_setting_is_in_force(runtime: Runtime) -> None:
    """The check above is the setting's: a statement over every space fails on such a connection."""
    dsn = runtime.settings.database_url
    conn = await asyncpg.connect(f"{dsn}{'&' if '?' in dsn else '?'}{ONE_TASK}")
    try:
        with pytest.raises(asyncpg.PostgresError, match=FANNED_OUT):
            await conn.fetchval("SELECT count(*) FROM resource")
        assert await conn.fetchval("SELECT count(*) FROM resource WHERE space_id = $1", uuid.uuid4()) == 0
    finally:
        await conn.close()
