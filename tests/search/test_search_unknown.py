"""A search the server cannot honour in full is refused rather than widened (issue 16 #2, patient safety).

FHIR R4 search.html lets a lenient server drop an unknown parameter, but a server "SHALL reject" a modifier it
does not support, and a dropped `patient.identifer` (a typo) leaves no patient filter at all: the answer would
be every document the caller may see, of every patient. So unsupported modifiers, chains we cannot follow and
unknown parameters of a search that names a patient are a 400 that names the parameter; harmless unknowns
elsewhere are still ignored, and said in the Bundle."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from espace_sante.oauth import devtokens
from espace_sante.runtime import Runtime
from espace_sante.storage import access as access_store
from espace_sante.storage.db import Conn
from tests.factories import BASE, INS, new_nir, new_professional, patient, pdsm_document
from tests.search.helpers import create, link, match_ids, search


def _refused(response: httpx.Response, name: str) -> None:
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    (issue,) = outcome["issue"]
    assert issue["severity"] == "error"
    assert issue["expression"] == [name]
    assert f"'{name}'" in issue["diagnostics"]


@pytest.fixture(scope="module")
async def record(fhir: httpx.AsyncClient) -> dict[str, Any]:
    """A patient with one document, known by INS."""
    nir = new_nir()
    holder = await create(fhir, patient(nir))
    document = await create(fhir, pdsm_document(f"Patient/{holder['id']}"))
    return {"nir": nir, "patient": holder["id"], "document": document["id"]}


@pytest.mark.parametrize(
    "name",
    [
        "patient.identifier:exact",  # a string modifier on a token
        "patient.identifier:text",  # a token modifier this server does not support
        "patient.identifer",  # a typo in the chained parameter
        "Patient.identifier",  # the type instead of the parameter
        "patient.link.identifier",  # two levels of chaining
        "subject:Location.identifier",  # a type the reference cannot point to
        "patient:identifier",  # a colon for a dot
        "status:below",
    ],
)
async def test_what_would_drop_the_patient_filter_is_refused(
    fhir: httpx.AsyncClient, record: dict[str, Any], name: str
) -> None:
    """Lenient handling (the default) refuses these too: ignored, each would answer with every patient's
    documents while the right spelling answers one patient's."""
    right = await search(fhir, "DocumentReference", {"patient.identifier": f"{INS}|{record['nir']}"})
    assert match_ids(right) == [record["document"]]
    _refused(await fhir.get("/DocumentReference", params={name: f"{INS}|{record['nir']}"}), name)


@pytest.mark.parametrize("filters", ["_has:Observation:patient:code", "_tag", "_list", "_filter"])
async def test_standard_filters_we_do_not_implement_are_refused(
    fhir: httpx.AsyncClient, filters: str
) -> None:
    _refused(await fhir.get("/Observation", params={filters: "x"}), filters)


async def test_an_unknown_parameter_beside_a_patient_filter_is_refused(
    fhir: httpx.AsyncClient, record: dict[str, Any]
) -> None:
    for named in ({"patient": record["patient"]}, {"patient.identifier": f"{INS}|{record['nir']}"}):
        _refused(await fhir.get("/DocumentReference", params={**named, "setting-typo": "x"}), "setting-typo")
    _refused(await fhir.get("/Patient", params={"_id": record["patient"], "colour": "blue"}), "colour")


async def test_a_harmless_unknown_is_ignored_and_said_in_the_bundle(
    fhir: httpx.AsyncClient, record: dict[str, Any]
) -> None:
    bundle = await search(
        fhir, "DocumentReference", {"_id": record["document"], "colour": "blue", "_elements": "id"}
    )
    assert match_ids(bundle) == [record["document"]]
    (outcome,) = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome["resource"]["resourceType"] == "OperationOutcome"
    assert [(i["severity"], i["expression"]) for i in outcome["resource"]["issue"]] == [
        ("warning", ["colour"]),
        ("warning", ["_elements"]),
    ]
    self_link = link(bundle, "self")
    assert self_link is not None
    assert "colour" not in self_link
    assert "_elements" not in self_link
    # A count says it too.
    count = await search(
        fhir, "DocumentReference", {"_id": record["document"], "colour": "x", "_summary": "count"}
    )
    assert count["total"] == 1
    assert [e["search"]["mode"] for e in count["entry"]] == ["outcome"]


async def test_a_professionals_document_search_never_drops_a_parameter(
    fhir: httpx.AsyncClient, http: httpx.AsyncClient, runtime: Runtime, record: dict[str, Any]
) -> None:
    """ITI-67 names the patient: a professional's DocumentReference search refuses any unknown parameter, even
    without a patient filter, where a holder's is only warned."""
    rpps, _ = await new_professional(fhir, "10")
    space = record["patient"][:32]

    async def consent(conn: Conn) -> None:
        import uuid

        await access_store.set_basis(conn, uuid.UUID(space), rpps, "consent", "test")

    await runtime.db.interaction("test_consent", consent)
    token = (await devtokens.issue(runtime, f"practitioner:{rpps}", "user/*.rs")).access_token
    pro = httpx.AsyncClient(
        transport=http._transport, base_url=f"{BASE}/fhir", headers={"Authorization": f"Bearer {token}"}
    )
    found = await pro.get("/DocumentReference", params={"_id": record["document"]})
    assert match_ids(found.json()) == [record["document"]]
    _refused(await pro.get("/DocumentReference", params={"_id": record["document"], "colour": "x"}), "colour")
    token = (await devtokens.issue(runtime, f"holder:{record['nir']}", "patient/*.rs")).access_token
    holder = httpx.AsyncClient(
        transport=http._transport, base_url=f"{BASE}/fhir", headers={"Authorization": f"Bearer {token}"}
    )
    warned = await holder.get("/DocumentReference", params={"_id": record["document"], "colour": "x"})
    assert warned.status_code == 200, warned.text
    assert match_ids(warned.json()) == [record["document"]]
