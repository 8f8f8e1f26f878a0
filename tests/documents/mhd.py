"""Builders for MHD submissions, from the French-coded examples in tests/data/pdsm (a hospital's software
depositing a discharge summary), with a fresh INS and fresh uniqueIds each time."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from tests.factories import FHIR_JSON, INS, PDSM_EXAMPLES, new_nir, patient

EXAMPLE_INS = "294037512000591"


def _oid() -> str:
    return f"urn:oid:2.25.{uuid.uuid4().int}"


def iti65(nir: str) -> dict[str, Any]:
    """The ITI-65 example for the person with this INS: new SubmissionSet and document uniqueIds."""
    bundle: dict[str, Any] = json.loads(
        (PDSM_EXAMPLES / "iti65-fr.json").read_text().replace(EXAMPLE_INS, nir)
    )
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "List":
            for identifier in resource["identifier"]:
                if identifier["value"].startswith("urn:oid:"):
                    identifier["value"] = _oid()
        elif resource["resourceType"] == "DocumentReference":
            resource["masterIdentifier"]["value"] = _oid()
    return bundle


def iti105(nir: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(
        (PDSM_EXAMPLES / "iti105-fr.json").read_text().replace(EXAMPLE_INS, nir)
    )
    body["masterIdentifier"]["value"] = _oid()
    return body


def by_type(response: httpx.Response) -> dict[str, dict[str, Any]]:
    return {e["resource"]["resourceType"]: e["resource"] for e in response.json()["entry"] if "resource" in e}


async def new_person(fhir: httpx.AsyncClient) -> tuple[str, str]:
    """(INS, Patient id) of a new person, registered by the insurer's feed."""
    nir = new_nir()
    created = await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    return nir, created.json()["id"]


async def documents_of(fhir: httpx.AsyncClient, nir: str, **params: str) -> list[dict[str, Any]]:
    """ITI-67: the person's documents by INS, as a document consumer asks."""
    found = await fhir.get(
        "/DocumentReference", params={"patient.identifier": f"{INS}|{nir}", "status": "current", **params}
    )
    assert found.status_code == 200, found.text
    return [e["resource"] for e in found.json().get("entry", [])]
