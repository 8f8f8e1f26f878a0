"""A machine client reaches open and active spaces only, whichever way its search reaches a space: the space it
names (patient=), the target of a chain (ITI-67's patient.identifier), or neither (every row checked); for the
page and for the count. The state is checked once per space where the search has one (storage/search.py
`_where`, `_anchor`; benchmarks/README.md "Machine clients reach open and active spaces only")."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from espace_sante.access.actors import Actor
from espace_sante.access.policy import PROFESSIONAL_STATES, decide
from espace_sante.access.scopes import Scopes
from espace_sante.context import Context
from espace_sante.fhir.searchquery import parse_search
from espace_sante.runtime import Runtime
from espace_sante.spaces import lifecycle
from espace_sante.storage import search as search_store
from espace_sante.storage import visibility
from tests.factories import FHIR_JSON, INS, new_nir, patient, pdsm_document

FEED = Actor("client", "feed", Scopes.parse("system/*.*"))


async def _space_with_document(fhir: httpx.AsyncClient) -> tuple[uuid.UUID, str, str, str]:
    """(space, NIR, Patient id, DocumentReference id) of a new active space holding one current document."""
    nir = new_nir()
    created = await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    doc = await fhir.post("/DocumentReference", json=pdsm_document(f"Patient/{pid}"), headers=FHIR_JSON)
    assert doc.status_code == 201, doc.text
    return uuid.UUID(pid[:32]), nir, pid, doc.json()["id"]


async def test_every_way_a_feed_searches_skips_a_closed_space(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    closed, nir, pid, did = await _space_with_document(fhir)
    _, other_nir, _, other_did = await _space_with_document(fhir)

    async def found(params: dict[str, str]) -> tuple[set[str], int]:
        page = await fhir.get("/DocumentReference", params=params)
        assert page.status_code == 200, page.text
        counted = await fhir.get("/DocumentReference", params={**params, "_summary": "count"})
        assert counted.status_code == 200, counted.text
        return {e["resource"]["id"] for e in page.json().get("entry", [])}, counted.json()["total"]

    def by_ins(value: str, param: str = "patient.identifier") -> dict[str, str]:
        return {param: f"{INS}|{value}", "status": "current"}

    named = {"patient": f"Patient/{pid}"}
    by_id = {"_id": f"{did},{other_did}"}
    by_subject = by_ins(nir, "subject:Patient.identifier")
    assert await found(by_ins(nir)) == ({did}, 1)
    assert await found(by_subject) == ({did}, 1)
    assert await found(named) == ({did}, 1)
    assert await found(by_id) == ({did, other_did}, 2)

    await lifecycle.close(Context.system(runtime), closed, reason="holder")
    assert await found(by_ins(nir)) == (set(), 0)
    assert await found(by_subject) == (set(), 0)
    assert await found(named) == (set(), 0)
    assert await found(by_id) == ({other_did}, 1)
    assert await found(by_ins(other_nir)) == ({other_did}, 1)

    await lifecycle.reopen(Context.system(runtime), closed)
    assert await found(by_ins(nir)) == ({did}, 1)
    assert await found(named) == ({did}, 1)


def _where(pairs: list[tuple[str, str]], actor: Actor = FEED) -> tuple[str, list[object]]:
    q = search_store._Sql()
    _, where = search_store._where(
        q, decide(actor, "search", "DocumentReference"), parse_search("DocumentReference", pairs, strict=True)
    )
    return where, q.args


def _state_checks(where: str) -> list[str]:
    """The space each lifecycle-state check of a WHERE clause probes."""
    return re.findall(r"FROM space s WHERE s\.space_id = (\S+) AND s\.state", where)


def test_the_state_is_checked_once_per_space_when_the_search_has_one() -> None:
    """The shape the ITI-67 figures depend on: a probe of `space` per row costs as much as each of the search's
    other per-row probes (0.85x at one client); per space it is one probe."""
    # A chain to a space type: on the chained target, which the rows share (same space), not on each row.
    where, args = _where([("patient.identifier", f"{INS}|{new_nir()}"), ("status", "current")])
    assert {"open", "active"} == PROFESSIONAL_STATES
    assert _state_checks(where) == ["c.space_id"]
    assert (
        "EXISTS (SELECT 1 FROM resource c WHERE c.space_id = x.space_id AND c.resource_id = x.target_id"
        in where
    )
    # The states are written in (constants of the policy): as a text[] parameter they cost as much as the check.
    assert "s.state IN ('active', 'open')" in where and sorted(PROFESSIONAL_STATES) not in args
    # The space named by the search: one check of that parameter, the same the rows are limited to.
    space = uuid.uuid4()
    where, args = _where([("patient", f"Patient/{space.hex}{'0' * 16}")])
    checks = _state_checks(where)
    assert len(checks) == 1 and f"r.space_id = {checks[0]}" in where and args[int(checks[0][1:]) - 1] == space
    # Neither: every row.
    assert _state_checks(_where([("status", "current")])[0]) == ["r.space_id"]
    # A chain to the directory (no lifecycle state) anchors nothing: every row.
    where, _ = _where([("author:Practitioner.identifier", "https://rpps.esante.gouv.fr|10001234567")])
    assert _state_checks(where) == ["r.space_id"]
    # The service itself reaches every space: no check.
    assert _state_checks(_where([("status", "current")], Actor("system", "espace-sante"))[0]) == []


def test_only_lifecycle_states_are_written_into_the_sql() -> None:
    for bad in ({"open'); DROP TABLE space; --"}, set(), {"Open"}):
        with pytest.raises(ValueError):
            visibility.live_sql("r.space_id", frozenset(bad))
