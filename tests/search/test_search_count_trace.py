"""A search that only counts still reaches the record it counts in (issue 16 #1): "does this patient have a
document of this kind?" is answered by a count, a `_count=0` or a page past the end as well as by a page, so
each leaves a record in the holder's trace like any search. So does a later page: the rows `_offset` skipped
exist, in records the page does not show. Only zero matches may stay silent."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from espace_sante.fhir.compartment import space_of
from espace_sante.runtime import Runtime
from tests.search.helpers import create, new_patient, observation, search, unique_system


async def _searches(runtime: Runtime, space: uuid.UUID) -> int:
    """How many search records the space's trace holds."""

    async def run(conn: Any) -> int:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM audit_event WHERE space_id = $1 AND action = 'resource:search'", space
            )
        )

    return await runtime.db.read("test_count_searches", run)


async def _two_records(fhir: httpx.AsyncClient) -> tuple[str, list[tuple[str, uuid.UUID]]]:
    """Two patients with one measurement each, of a code no other test uses."""
    system = unique_system()
    made = []
    for _ in range(2):
        p = await new_patient(fhir)
        await create(fhir, observation(p["id"], code={"coding": [{"system": system, "code": "x"}]}))
        space = space_of(p["id"])
        assert space is not None
        made.append((p["id"], space))
    return f"{system}|x", made


@pytest.mark.parametrize(
    "extra",
    [
        {"_summary": "count"},
        {"_count": "0"},
        {"_offset": "100"},
        {"_total": "accurate", "_count": "1"},
        # The second page shows one record's row and tells that a row of the other comes before it.
        {"_offset": "1", "_count": "1"},
    ],
    ids=["summary-count", "count-0", "past-the-end", "total-accurate", "later-page"],
)
async def test_a_search_that_counts_is_traced_in_every_space_it_counts(
    fhir: httpx.AsyncClient, runtime: Runtime, extra: dict[str, str]
) -> None:
    code, made = await _two_records(fhir)
    before = {space: await _searches(runtime, space) for _, space in made}
    bundle = await search(fhir, "Observation", {"code": code, **extra})
    assert bundle["total"] == 2
    for _, space in made:
        assert await _searches(runtime, space) == before[space] + 1


async def test_a_count_pinned_to_one_patient_is_traced_there_only(
    fhir: httpx.AsyncClient, runtime: Runtime
) -> None:
    code, ((first, space), (_, other)) = await _two_records(fhir)
    before = await _searches(runtime, space), await _searches(runtime, other)
    bundle = await search(fhir, "Observation", {"patient": first, "code": code, "_summary": "count"})
    assert bundle["total"] == 1
    assert (await _searches(runtime, space), await _searches(runtime, other)) == (before[0] + 1, before[1])


async def test_a_count_of_nothing_stays_silent(fhir: httpx.AsyncClient, runtime: Runtime) -> None:
    p = await new_patient(fhir)
    space = space_of(p["id"])
    assert space is not None
    before = await _searches(runtime, space)
    bundle = await search(fhir, "Observation", {"patient": p["id"], "_summary": "count"})
    assert bundle["total"] == 0
    assert await _searches(runtime, space) == before
