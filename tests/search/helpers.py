"""Small builders for the search stories: every test makes its own data with values no other test uses, and
restricts each search by one of them, so the shared database never leaks into an expected set."""

from __future__ import annotations

import secrets
import string
import uuid
from typing import Any

import httpx

from espace_sante.oauth import devtokens
from espace_sante.runtime import Runtime
from tests.factories import BASE, FHIR_JSON, patient

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def unique_family(prefix: str = "Zz") -> str:
    """A family name no other test uses (letters only, so prefix searches stay meaningful)."""
    return prefix + "".join(secrets.choice(string.ascii_lowercase) for _ in range(12))


def unique_system() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


async def create(fhir: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await fhir.post(f"/{body['resourceType']}", json=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def new_patient(fhir: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    return await create(fhir, patient(**extra))


def observation(patient_id: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    body.update(extra)
    return body


async def search(fhir: httpx.AsyncClient, rtype: str, params: Any, **kwargs: Any) -> dict[str, Any]:
    response = await fhir.get(f"/{rtype}", params=params, **kwargs)
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    return bundle


def match_ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def included(bundle: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (e["resource"]["resourceType"], e["resource"]["id"])
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == "include"
    }


def link(bundle: dict[str, Any], relation: str) -> str | None:
    for item in bundle.get("link", []):
        if item["relation"] == relation:
            url: str = item["url"]
            return url
    return None


async def found(fhir: httpx.AsyncClient, rtype: str, params: Any) -> set[str]:
    """The ids matched by a search (one page, large enough for the small sets the stories build)."""
    pairs = list(params.items()) if isinstance(params, dict) else list(params)
    bundle = await search(fhir, rtype, [*pairs, ("_count", "100")])
    ids = match_ids(bundle)
    assert len(ids) == len(set(ids)), f"duplicates in {ids}"
    assert link(bundle, "next") is None
    return set(ids)


async def client_as(http: httpx.AsyncClient, runtime: Runtime, subject: str, scope: str) -> httpx.AsyncClient:
    """A /fhir client holding a development token of `subject` (`holder:<nir>`, `practitioner:<rpps>`...)."""
    token = (await devtokens.issue(runtime, subject, scope)).access_token
    return httpx.AsyncClient(
        transport=http._transport, base_url=f"{BASE}/fhir", headers={"Authorization": f"Bearer {token}"}
    )
