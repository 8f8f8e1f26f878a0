"""A hospital's care team reaches thousands of records (issue 15): its professionals search one patient at a
time by INS, the way IHE MHD ITI-67 does, and are never asked to "name the patient" they have just named."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

import httpx
import pytest

from espace_sante.oauth import devtokens
from espace_sante.record.resources import MAX_SPACES_WITHOUT_PATIENT
from espace_sante.runtime import Runtime
from espace_sante.storage import access as access_store
from espace_sante.storage.db import Conn
from tests.factories import BASE, G15, INS, new_nir, new_rpps, patient, pdsm_document
from tests.search.helpers import create, match_ids

FINESS = "https://finess.esante.gouv.fr"


@dataclass(frozen=True)
class Ward:
    """One patient of a hospital whose care team holds more records than a search may browse."""

    nir: str
    patient_id: str
    document_id: str
    professional: httpx.AsyncClient


async def _care_team_member(fhir: httpx.AsyncClient, finess: str) -> str:
    """A médecin working for the establishment `finess` (directory data, written by a feed); their RPPS."""
    organisation = await create(
        fhir,
        {"resourceType": "Organization", "identifier": [{"system": FINESS, "value": finess}], "name": "CHU"},
    )
    rpps = new_rpps()
    practitioner = await create(
        fhir,
        {
            "resourceType": "Practitioner",
            "identifier": [{"system": "https://rpps.esante.gouv.fr", "value": rpps}],
            "name": [{"family": "Garnier", "given": ["Paul"]}],
        },
    )
    await create(
        fhir,
        {
            "resourceType": "PractitionerRole",
            "practitioner": {"reference": f"Practitioner/{practitioner['id']}"},
            "organization": {"reference": f"Organization/{organisation['id']}"},
            "code": [{"coding": [{"system": G15, "code": "10"}]}],
        },
    )
    return rpps


@pytest.fixture(scope="module")
async def ward(fhir: httpx.AsyncClient, http: httpx.AsyncClient, runtime: Runtime) -> Ward:
    finess = "".join(secrets.choice("0123456789") for _ in range(9))
    rpps = await _care_team_member(fhir, finess)
    nir = new_nir()
    holder = await create(fhir, patient(nir))
    document = await create(fhir, pdsm_document(f"Patient/{holder['id']}"))
    space = uuid.UUID(holder["id"][:32])

    async def care_team(conn: Conn) -> None:
        await access_store.set_basis(conn, space, f"finess:{finess}", "care_team", "test")
        # The rest of the hospital's patients, in one statement: only the bases matter to the search.
        await conn.execute(
            "INSERT INTO access_basis (space_id, who, basis, granted_by) SELECT gen_random_uuid(), $1, "
            "'care_team', 'test' FROM generate_series(1, $2::int)",
            f"finess:{finess}",
            MAX_SPACES_WITHOUT_PATIENT,
        )

    await runtime.db.interaction("test_care_team", care_team)
    token = (await devtokens.issue(runtime, f"practitioner:{rpps}", "user/*.rs")).access_token
    client = httpx.AsyncClient(
        transport=http._transport, base_url=f"{BASE}/fhir", headers={"Authorization": f"Bearer {token}"}
    )
    return Ward(nir, holder["id"], document["id"], client)


@pytest.mark.parametrize("name", ["patient.identifier", "subject:Patient.identifier"])
async def test_a_care_team_member_finds_a_patients_documents_by_ins(ward: Ward, name: str) -> None:
    response = await ward.professional.get("/DocumentReference", params={name: f"{INS}|{ward.nir}"})
    assert response.status_code == 200, response.text
    assert match_ids(response.json()) == [ward.document_id]


async def test_a_care_team_member_finds_the_patient_by_ins(ward: Ward) -> None:
    response = await ward.professional.get("/Patient", params={"identifier": f"{INS}|{ward.nir}"})
    assert response.status_code == 200, response.text
    assert match_ids(response.json()) == [ward.patient_id]


async def test_an_unknown_ins_finds_nothing_rather_than_asking_for_the_patient(ward: Ward) -> None:
    response = await ward.professional.get(
        "/DocumentReference", params={"patient.identifier": f"{INS}|{new_nir()}"}
    )
    assert response.status_code == 200, response.text
    assert match_ids(response.json()) == []


async def test_browsing_the_hospitals_patients_is_still_refused(ward: Ward) -> None:
    response = await ward.professional.get("/DocumentReference", params={"status": "current"})
    assert response.status_code == 400, response.text
    assert "name the patient" in response.text
    # An identifier of another kind than a patient's does not name one either.
    response = await ward.professional.get(
        "/DocumentReference",
        params={"author:Practitioner.identifier": f"https://rpps.esante.gouv.fr|{new_rpps()}"},
    )
    assert response.status_code == 400, response.text
