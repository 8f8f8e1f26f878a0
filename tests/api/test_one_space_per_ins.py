"""One person, one space: a professional's software that posts a Patient with an INS the service already knows
is told to name that patient instead, whatever the timing; a test INS opens nothing outside development
(review of issue 16: a copy with the same INS took over the person's lookups)."""

from __future__ import annotations

import asyncio
import dataclasses

import httpx
import pytest

from espace_sante.access.actors import Actor
from espace_sante.context import Context
from espace_sante.errors import InvalidResource
from espace_sante.fhir.identifiers import INS_NIR_TEST, nir_key
from espace_sante.record import interactions
from espace_sante.runtime import Runtime
from tests.factories import FHIR_JSON, INS, new_nir, patient


async def _count(fhir: httpx.AsyncClient, nir: str) -> int:
    found = await fhir.get("/Patient", params={"identifier": f"{INS}|{nir}", "_total": "accurate"})
    return int(found.json()["total"])


async def test_a_second_patient_with_a_known_ins_is_refused_and_the_first_kept(
    fhir: httpx.AsyncClient,
) -> None:
    nir = new_nir()
    first = await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)
    assert first.status_code == 201, first.text
    second = await fhir.post("/Patient", json=patient(nir, name=[{"family": "Copie"}]), headers=FHIR_JSON)
    assert second.status_code == 422, second.text
    issue = second.json()["issue"][0]
    assert issue["code"] == "duplicate" and issue["expression"] == ["Patient.identifier"]
    assert "un espace existe déjà pour cet INS" in issue["diagnostics"]
    assert await _count(fhir, nir) == 1


async def test_two_posts_of_one_ins_at_once_open_one_space(fhir: httpx.AsyncClient) -> None:
    nir = new_nir()
    answers = await asyncio.gather(
        *(fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON) for _ in range(3))
    )
    assert sorted(a.status_code for a in answers) == [201, 422, 422]
    assert await _count(fhir, nir) == 1


async def test_the_conditional_create_of_a_known_ins_still_answers_the_existing_patient(
    fhir: httpx.AsyncClient,
) -> None:
    nir = new_nir()
    created = await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)
    again = await fhir.post(
        "/Patient", json=patient(nir), headers={**FHIR_JSON, "If-None-Exist": f"identifier={INS}|{nir}"}
    )
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]


async def test_a_test_ins_opens_a_space_only_in_development(runtime: Runtime) -> None:
    nir13 = new_nir()[:13]
    body = patient()
    body["identifier"] = [{"system": INS_NIR_TEST, "value": f"{nir13}{nir_key(nir13):02d}"}]
    client = Actor("system", "registry")
    production = dataclasses.replace(
        runtime, settings=runtime.settings.model_copy(update={"dev": False, "environment": "production"})
    )
    with pytest.raises(InvalidResource, match="INS valide"):
        await interactions.create(Context(production, client), dict(body))
    written = await interactions.create(Context(runtime, client), dict(body))
    assert written.created
