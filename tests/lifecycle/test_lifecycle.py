"""The lifecycle of a space as short stories (spaces/lifecycle.py, docs/lifecycle.md), in the session's
database: notice and opening, opposition, closure and reopening, destruction, suspension, death, refusals, and
the trace of each step in plain words."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from espace_sante import clock
from espace_sante.access.actors import REGISTRY, Actor
from espace_sante.access.policy import decide
from espace_sante.access.scopes import Scopes
from espace_sante.audit import chains as audit
from espace_sante.audit import wording
from espace_sante.context import Context
from espace_sante.crypto import DecryptionFailed, open_, pending_aad, resource_aad
from espace_sante.errors import Conflict, Forbidden, NotFound
from espace_sante.oauth import devtokens
from espace_sante.runtime import Runtime
from espace_sante.spaces import identity, lifecycle
from espace_sante.storage import access as access_store
from espace_sante.storage import audit as audit_store
from espace_sante.storage import lifecycle as lifecycle_store
from espace_sante.storage import people as people_store
from espace_sante.storage.db import Conn
from tests.factories import BASE, FHIR_JSON, new_nir, new_professional, patient
from tests.registry.test_import import person, write
from tests.registry.test_import import run as import_registry

TODAY = clock.today()


def holder_ctx(runtime: Runtime, nir: str) -> Context:
    # Just signed in: closing and destroying need a recent proof of identity (people/stepup.py).
    jeanne = Actor(
        "holder", nir, Scopes.parse("patient/*.*"), "Jeanne Martin", acr="eidas2", auth_time=datetime.now(UTC)
    )
    return Context(runtime, jeanne)


async def registered(runtime: Runtime, tmp_path: Path, **values: str) -> tuple[uuid.UUID, str]:
    """A person imported from the registry: a `registered` space. Returns (space, NIR)."""
    row = person(**values)
    assert (await import_registry(runtime, write(tmp_path / f"{row['nir']}.csv", [row])))["created"] == 1
    found = await lifecycle.space_of_ins(runtime, row["nir"])
    assert found is not None
    return found, row["nir"]


async def active(fhir: httpx.AsyncClient) -> tuple[uuid.UUID, str, str]:
    """A Patient created through the API (as before this issue): an `active` space. (space, NIR, Patient id)"""
    nir = new_nir()
    created = await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    return uuid.UUID(pid[:32]), nir, pid


async def observation(fhir: httpx.AsyncClient, pid: str) -> str:
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }
    created = await fhir.post("/Observation", json=body, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def as_person(runtime: Runtime, http: httpx.AsyncClient, actor: str, scope: str) -> httpx.AsyncClient:
    issued = await devtokens.issue(runtime, actor, scope)
    return httpx.AsyncClient(
        transport=http._transport,
        base_url=f"{BASE}/fhir",
        headers={"Authorization": f"Bearer {issued.access_token}", "Accept": "application/fhir+json"},
    )


async def bodies(runtime: Runtime, space: uuid.UUID) -> list[Any]:
    async def fetch(conn: Conn) -> list[Any]:
        return list(
            await conn.fetch(
                "SELECT resource_type, resource_id, version_id, key_version, body FROM resource_version "
                "WHERE space_id = $1 AND body IS NOT NULL",
                space,
            )
        )

    return await runtime.db.read("t_bodies", fetch)


async def waiting_identity(runtime: Runtime, space: uuid.UUID) -> dict[str, Any]:
    """The identity the registry gave, sealed until the space opens (spaces/identity.py)."""

    async def q(conn: Conn) -> dict[str, Any]:
        found = await identity.body(conn, runtime, space, decision=decide(REGISTRY, "read", "Patient"))
        assert found is not None and await people_store.ins_of_space(
            conn, decide(REGISTRY, "read", "Patient"), space
        )
        return found[1]

    return await runtime.db.read("t_waiting", q)


async def count_rows(runtime: Runtime, space: uuid.UUID, rtype: str | None = None) -> int:
    async def fetch(conn: Conn) -> int:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM resource WHERE space_id = $1 AND ($2::text IS NULL OR resource_type = $2)",
                space,
                rtype,
            )
        )

    return await runtime.db.read("t_count", fetch)


async def readable_with_the_key_store(runtime: Runtime, space: uuid.UUID, rows: list[Any]) -> int:
    """How many of these old encrypted rows the key store can still decrypt."""
    readable = 0
    for r in rows:
        try:
            aead = await runtime.db.read("t_key", runtime.keys.version, space, r["key_version"])
            aad = resource_aad(
                str(space), r["resource_type"], r["resource_id"], r["version_id"], r["key_version"]
            )
            open_(aead, r["body"], aad)
            readable += 1
        except DecryptionFailed:
            pass
    return readable


async def trace(runtime: Runtime, space: uuid.UUID) -> list[Any]:
    async def fetch(conn: Conn) -> list[Any]:
        return [s.record async for s in audit_store.chain(conn, space)]

    return await runtime.db.read("t_trace", fetch)


async def test_a_registered_space_is_notified_then_opened_by_the_run_past_the_window(
    runtime: Runtime, tmp_path: Path
) -> None:
    space, _ = await registered(runtime, tmp_path)
    assert await lifecycle.state(runtime, space) == "registered"
    system = Context.system(runtime)
    assert await lifecycle.notify(system, space, on=TODAY) == ("registered", "notified")
    window = runtime.settings.opposition_window_days
    await lifecycle.run(runtime, TODAY + timedelta(days=window - 1))
    assert await lifecycle.state(runtime, space) == "notified"  # the window is not over
    opened = await lifecycle.run(runtime, TODAY + timedelta(days=window))
    assert opened.opened >= 1 and await lifecycle.state(runtime, space) == "open"
    await lifecycle.run(runtime, TODAY + timedelta(days=window))  # idempotent
    actions = [r.action for r in await trace(runtime, space)]
    assert actions.count("space:open") == 1 and actions.index("space:notify") < actions.index("space:open")


async def test_an_opposed_space_never_opens_and_its_data_and_key_are_gone(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient, tmp_path: Path
) -> None:
    space, nir = await registered(runtime, tmp_path)
    await lifecycle.notify(Context.system(runtime), space, on=TODAY)
    found = await runtime.db.read("t_by_ins", people_store.registry_patient, nir)
    assert found is not None
    sealed_before = await waiting_identity(runtime, space)
    # Before it opens, a space holds only the identity the registry gave, sealed under its key: no Patient,
    # so nothing can be written about the person (a feed is refused; the legacy import sets documents aside).
    observation_ = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{found.patient_id}"},
    }
    refused = await fhir.post("/Observation", json=observation_, headers=FHIR_JSON)
    assert refused.status_code == 422
    old_seal = await runtime.db.read(
        "t_seal", lambda c: c.fetchval("SELECT pending FROM registry_person WHERE space_id = $1", space)
    )
    operator = Context(runtime, Actor("operator", "agent-cpam", display="Agent CPAM"))
    assert await lifecycle.oppose(operator, space, "phone") == ("notified", "opposed")
    assert await count_rows(runtime, space) == 0
    new_key = await runtime.db.read("t_key", runtime.keys.version, space, 1)
    with pytest.raises(DecryptionFailed):  # the old key is destroyed: the old seal is unreadable
        open_(new_key, old_seal, pending_aad(str(space), found.patient_id, 1))
    # Only the identity, still waiting (the space never opened), sealed again under the new key.
    assert await waiting_identity(runtime, space) == sealed_before
    await lifecycle.run(runtime, TODAY + timedelta(days=runtime.settings.opposition_window_days + 1))
    assert await lifecycle.state(runtime, space) == "opposed"
    assert await count_rows(runtime, space, "Patient") == 0  # an opposed space is never opened
    holder = await as_person(runtime, http, f"holder:{nir}", "patient/*.*")
    assert (await holder.get(f"/Patient/{found.patient_id}")).status_code == 404
    with pytest.raises(Conflict):
        await lifecycle.oppose(operator, space, "counter")
    # Later they ask for a space after all: registered again, a new notice will follow; it opens as any other.
    assert await lifecycle.request(holder_ctx(runtime, nir), space) == ("opposed", "registered")
    assert await waiting_identity(runtime, space) == sealed_before
    assert await lifecycle.activate(holder_ctx(runtime, nir), space) == ("registered", "active")
    assert (await holder.get(f"/Patient/{found.patient_id}")).json()["name"] == sealed_before["name"]


async def test_a_closed_space_is_read_by_no_one_until_its_holder_reopens_it(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient
) -> None:
    space, nir, pid = await active(fhir)
    obs = await observation(fhir, pid)
    rpps, _ = await new_professional(fhir)
    await runtime.db.interaction("t_basis", access_store.set_basis, space, rpps, "medecin_traitant", "test")
    holder = await as_person(runtime, http, f"holder:{nir}", "patient/*.*")
    doctor = await as_person(runtime, http, f"practitioner:{rpps}", "user/*.cruds")
    paths = [f"/Patient/{pid}", f"/Observation/{obs}"]
    before = [(await holder.get(p)).json() for p in paths]
    assert (await doctor.get(paths[0])).status_code == 200

    assert await lifecycle.close(holder_ctx(runtime, nir), space) == ("active", "closed")
    for reader in (holder, doctor):
        for p in paths:
            assert (await reader.get(p)).status_code == 404, p
    deposit = await doctor.post(
        "/Observation",
        json={"resourceType": "Observation", "status": "final", "code": {"text": "pouls"},
              "subject": {"reference": f"Patient/{pid}"}},
        headers=FHIR_JSON,
    )  # fmt: skip
    assert deposit.status_code in (403, 404, 422)
    searched = (await doctor.get("/Observation", params={"patient": pid})).json()
    assert searched.get("total", 0) == 0 and not searched.get("entry")

    stranger = holder_ctx(runtime, new_nir())
    with pytest.raises(NotFound):
        await lifecycle.reopen(stranger, space)
    assert await lifecycle.reopen(holder_ctx(runtime, nir), space) == ("closed", "active")
    assert [(await holder.get(p)).json() for p in paths] == before  # everything is back
    assert (await doctor.get(paths[0])).status_code == 200


async def test_destruction_makes_old_bodies_undecryptable_and_the_space_not_found(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient
) -> None:
    space, nir, pid = await active(fhir)
    await observation(fhir, pid)
    old = await bodies(runtime, space)
    assert await lifecycle.erase(holder_ctx(runtime, nir), space, on=TODAY) == ("active", "closed")
    delay = runtime.settings.destruction_delay_days
    await lifecycle.run(runtime, TODAY + timedelta(days=delay - 1))
    assert await lifecycle.state(runtime, space) == "closed"  # the holder may still change their mind
    done = await lifecycle.run(runtime, TODAY + timedelta(days=delay))
    assert done.destroyed >= 1 and await lifecycle.state(runtime, space) == "destroyed"
    assert await count_rows(runtime, space) == 0
    assert await readable_with_the_key_store(runtime, space, old) == 0
    assert (await fhir.get(f"/Patient/{pid}")).status_code == 404
    with pytest.raises(NotFound):
        await lifecycle.reopen(holder_ctx(runtime, nir), space)
    actions = [r.action for r in await trace(runtime, space)]  # the trace stays, and still verifies
    assert actions[-2:] == ["space:erase", "space:destroy"]
    assert not (await audit.verify(runtime, space)).broken


async def test_illegal_transitions_are_refused_with_a_clear_error(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    space, nir, _ = await active(fhir)
    system = Context.system(runtime)
    for event in ("notify", "open", "reopen", "request", "resume", "destroy"):
        with pytest.raises(Conflict) as refused:
            await lifecycle.transition(system, space, event)  # type: ignore[arg-type]
        assert refused.value.status == 409
        assert (
            "changement impossible" in refused.value.message and "illegal transition" in refused.value.message
        )
    with pytest.raises(Conflict):
        await lifecycle.oppose(system, space, "online")  # too late: the space is open; closing is the way
    doctor = Context(runtime, Actor("practitioner", "10000000000", Scopes.parse("user/*.*")))
    with pytest.raises(NotFound):  # not a person of this space: as if it did not exist (review 2026-12-03)
        await lifecycle.close(doctor, space)
    with pytest.raises(Forbidden):  # the holder cannot suspend their own space
        await lifecycle.suspend(holder_ctx(runtime, nir), space)
    with pytest.raises(NotFound):
        await lifecycle.close(system, uuid.uuid4())
    assert await lifecycle.state(runtime, space) == "active"


async def test_a_suspension_without_objection_closes_the_space_and_an_objection_lifts_it(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    insurer = Context(runtime, Actor("operator", "agent-fraude", display="Service fraude"))
    kept, nir, _ = await active(fhir)
    await lifecycle.suspend(insurer, kept, "fraud")
    assert await lifecycle.resume(holder_ctx(runtime, nir), kept) == ("suspended", "active")
    space, _, _ = await active(fhir)
    await lifecycle.suspend(insurer, space, "fraud")
    days = runtime.settings.suspension_days
    await lifecycle.run(runtime, TODAY + timedelta(days=days - 1))
    assert await lifecycle.state(runtime, space) == "suspended"
    await lifecycle.run(runtime, TODAY + timedelta(days=days))
    assert await lifecycle.state(runtime, space) == "closed"
    assert await lifecycle.state(runtime, kept) == "active"
    last = (await trace(runtime, space))[-1]
    assert last.action == "space:close" and last.detail.endswith("|suspension")


async def test_a_death_date_from_the_registry_closes_the_space_at_the_next_run(
    runtime: Runtime, tmp_path: Path
) -> None:
    space, _ = await registered(runtime, tmp_path, death_date=(TODAY - timedelta(days=3)).isoformat())
    alive, _ = await registered(runtime, tmp_path)
    counts = await lifecycle.run(runtime, TODAY)
    assert counts.closed_deceased >= 1
    assert await lifecycle.state(runtime, space) == "closed"
    assert await lifecycle.state(runtime, alive) == "registered"
    with pytest.raises(Conflict):  # a space closed on death is not reopened
        await lifecycle.reopen(Context.system(runtime), space)
    again = await lifecycle.run(runtime, TODAY)
    assert await lifecycle.state(runtime, alive) == "registered" and again.closed_deceased == 0


async def test_the_death_check_reads_an_identity_once_per_change(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """The run decrypts only the identities changed since their last check (a partial index holds those
    spaces, migrations/0022): a Patient created through the API is checked once; written again (a death
    date recorded by a professional's software), it is checked again and its space closed."""
    space, nir, pid = await active(fhir)

    async def due() -> bool:
        async def q(conn: Conn) -> bool:
            found = await lifecycle_store.death_candidates(conn, lifecycle.LIVE, after=None, limit=100_000)
            return space in {c.space_id for c in found}

        return await runtime.db.read("t_due", q)

    assert await due()
    await lifecycle.run(runtime, TODAY)
    assert not await due() and await lifecycle.state(runtime, space) == "active"

    died = patient(nir) | {"id": pid, "deceasedDateTime": (TODAY - timedelta(days=1)).isoformat()}
    updated = await fhir.put(f"/Patient/{pid}", json=died, headers=FHIR_JSON)
    assert updated.status_code == 200, updated.text
    assert await due()
    assert (await lifecycle.run(runtime, TODAY)).closed_deceased >= 1
    assert await lifecycle.state(runtime, space) == "closed" and not await due()


async def test_every_transition_is_in_the_trace_in_plain_words(runtime: Runtime, tmp_path: Path) -> None:
    space, nir = await registered(runtime, tmp_path)
    system, me = Context.system(runtime), holder_ctx(runtime, nir)
    insurer = Context(runtime, Actor("operator", "agent-cpam", display="Agent CPAM"))
    await lifecycle.notify(system, space, on=TODAY)
    await lifecycle.activate(me, space)  # before the window ends
    await lifecycle.suspend(insurer, space)
    await lifecycle.resume(me, space)
    await lifecycle.close(me, space)
    await lifecycle.reopen(me, space)
    records = [r for r in await trace(runtime, space) if r.action.startswith("space:")]
    french = [wording.sentence(r) for r in records]
    english = [wording.sentence(r, "en") for r in records]
    assert french[0].startswith(
        "Le service espace santé lui-même a créé votre espace santé d'après le registre de l'Assurance Maladie"
    )
    assert english[0].startswith("The espace santé service itself created your health space from the insurer")
    french, english = french[1:], english[1:]
    assert french[0].startswith(
        "Le service espace santé lui-même a envoyé l'avis de création de votre espace"
    )
    assert french[1].startswith("Vous avez activé votre espace santé le ")
    assert french[2].startswith("Un agent du service (Agent CPAM) a suspendu votre espace santé")
    assert "levé la suspension" in french[3]
    assert "fermé votre espace santé (à votre demande)" in french[4]
    assert "rouvert votre espace santé, avec toutes ses données" in french[5]
    assert english[4].startswith("You closed your health space (at your request) on ")
    assert [r.detail.split("|")[0] for r in records[1:]] == [
        "registered>notified", "notified>active", "active>suspended", "suspended>active", "active>closed",
        "closed>active",
    ]  # fmt: skip
    # Activation wrote the Patient from the identity the registry gave, traced as the registry's feed.
    created = [r for r in await trace(runtime, space) if r.action == "resource:create"]
    assert [(r.entity_type, r.entity_version, r.actor_kind) for r in created] == [("Patient", 1, "system")]
    assert not (await audit.verify(runtime, space)).broken


async def test_every_table_of_space_data_is_deleted_or_knowingly_kept(runtime: Runtime) -> None:
    """A new table with a space_id is erased on destruction unless it is listed as kept (storage/lifecycle.py)."""

    async def names(conn: Conn) -> list[str]:
        return await lifecycle_store.space_tables(conn)

    erased = await runtime.db.read("t_tables", names)
    assert {"resource", "resource_version", "sp_token", "blob", "binary_content", "access_basis"} <= set(
        erased
    )
    assert erased[0] == "binary_content"  # before the blobs it references
    assert not set(erased) & lifecycle_store.KEPT_TABLES


async def test_a_feed_deposits_nothing_in_a_space_that_is_not_open(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """Machine clients are decided without facts; a deposit into a closed space is still refused, like an
    unknown patient (the state check on writes, record/resources.create_in)."""
    from tests.factories import pdsm_document

    created = await fhir.post("/Patient", json=patient(), headers=FHIR_JSON)
    pid = created.json()["id"]
    ok = await fhir.post("/DocumentReference", json=pdsm_document(f"Patient/{pid}"), headers=FHIR_JSON)
    assert ok.status_code == 201, ok.text
    space = uuid.UUID(pid[:32])
    await lifecycle.close(Context.system(runtime), space, reason="holder")
    refused = await fhir.post("/DocumentReference", json=pdsm_document(f"Patient/{pid}"), headers=FHIR_JSON)
    assert refused.status_code == 422


async def test_a_feed_reads_nothing_of_a_closed_space_until_it_is_reopened(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """A machine client with system scopes reaches every open or active space, and a closed one not at all:
    a read by id, a version, a search and a history answer as if it did not exist."""
    from tests.factories import pdsm_document

    pid = (await fhir.post("/Patient", json=patient(), headers=FHIR_JSON)).json()["id"]
    doc = await fhir.post("/DocumentReference", json=pdsm_document(f"Patient/{pid}"), headers=FHIR_JSON)
    did = doc.json()["id"]
    space = uuid.UUID(pid[:32])

    async def seen() -> tuple[int, int, int, int]:
        read = await fhir.get(f"/DocumentReference/{did}")
        vread = await fhir.get(f"/DocumentReference/{did}/_history/1")
        found = await fhir.get("/DocumentReference", params={"patient": f"Patient/{pid}"})
        history = await fhir.get(f"/Patient/{pid}/_history")
        total = len(found.json().get("entry", [])) if found.status_code == 200 else -1
        versions = len(history.json().get("entry", [])) if history.status_code == 200 else 0
        return read.status_code, vread.status_code, total, versions

    assert await seen() == (200, 200, 1, 1)
    await lifecycle.close(Context.system(runtime), space, reason="holder")
    assert await seen() == (404, 404, 0, 0)
    await lifecycle.reopen(Context.system(runtime), space)
    assert await seen() == (200, 200, 1, 1)


async def test_one_unreadable_patient_does_not_stop_the_run_for_everyone_else(
    runtime: Runtime, fhir: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A live space whose data key is lost (a fault, not a lifecycle step) is logged by the death check and
    skipped; the spaces after it still open."""
    broken, _, _ = await active(fhir)
    # And a registry space whose key is lost before it opens: its sealed identity cannot become a Patient.
    lost, _ = await registered(runtime, tmp_path)
    await lifecycle.notify(Context.system(runtime), lost, on=TODAY)
    async with runtime.db.pool.acquire() as conn, conn.transaction():
        await runtime.keys.destroy(conn, broken)
        await runtime.keys.destroy(conn, lost)
    try:
        space, _ = await registered(runtime, tmp_path)
        await lifecycle.notify(Context.system(runtime), space, on=TODAY)
        ran = await lifecycle.run(runtime, TODAY + timedelta(days=runtime.settings.opposition_window_days))
        assert ran.opened >= 2 and await lifecycle.state(runtime, space) == "open"
        assert await count_rows(runtime, space, "Patient") == 1
        assert await count_rows(runtime, lost, "Patient") == 0  # logged, left waiting, the others opened
    finally:  # leave no live space without a key in the shared database
        async with runtime.db.pool.acquire() as conn, conn.transaction():
            await lifecycle_store.erase(conn, runtime.keys, [broken, lost])
            await conn.execute(
                "UPDATE space SET state = 'destroyed' WHERE space_id = ANY($1::uuid[])", [broken, lost]
            )
