"""The demo's access world, loaded once into the session's database, and people's tokens for it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest

from espace_sante.demo import access as demo_access
from espace_sante.demo import world as demo
from espace_sante.fhir.identifiers import make_nir
from espace_sante.oauth import devtokens
from espace_sante.runtime import Runtime
from espace_sante.storage import people as people_store
from espace_sante.storage.db import Conn
from tests.factories import BASE

MOTHER = make_nir(demo_access.MOTHER_NIR13)
CHILD = make_nir(demo_access.CHILD_NIR13)


@dataclass(frozen=True)
class World:
    mother_patient: str
    child_patient: str
    documents: dict[str, str]  # key ("ordonnance", "cr-masque", ...) -> DocumentReference id


async def _ids(conn: Conn) -> tuple[str, str, dict[str, str]]:
    mother = await people_store.patient_by_ins(conn, MOTHER)
    child = await people_store.patient_by_ins(conn, CHILD)
    assert mother is not None and child is not None
    rows = await conn.fetch(
        "SELECT t.code, t.resource_id FROM sp_token t WHERE t.resource_type = 'DocumentReference' "
        "AND t.param = 'identifier' AND t.system = $1 AND t.space_id = ANY($2::uuid[])",
        demo_access.DEMO_IDS,
        [mother.space_id, child.space_id],
    )
    # The mother's documents by their key ("cr", "ordonnance"...), her son's as "child:<key>".
    docs = {}
    for r in rows:
        nir, _, key = r["code"].partition("-")
        docs[key if nir == MOTHER else f"child:{key}"] = r["resource_id"]
    return mother.patient_id, child.patient_id, docs


@pytest.fixture(scope="session")
async def world(runtime: Runtime) -> World:
    await demo.load(runtime)
    mother, child, docs = await runtime.db.read("test_world_ids", _ids)
    return World(mother, child, docs)


Client = Callable[[str, str], Awaitable[httpx.AsyncClient]]


@pytest.fixture(scope="session")
async def as_actor(runtime: Runtime, http: httpx.AsyncClient, world: World) -> Client:
    """An httpx client on the whole app acting as `kind:id` with `scope` (a development token)."""
    cache: dict[tuple[str, str], httpx.AsyncClient] = {}

    async def make(actor: str, scope: str) -> httpx.AsyncClient:
        if (actor, scope) not in cache:
            issued = await devtokens.issue(runtime, actor, scope)
            cache[(actor, scope)] = httpx.AsyncClient(
                transport=http._transport,
                base_url=BASE,
                headers={"Authorization": f"Bearer {issued.access_token}", "Accept": "application/fhir+json"},
            )
        return cache[(actor, scope)]

    return make
