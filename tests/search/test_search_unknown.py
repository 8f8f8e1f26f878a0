"""A search the server cannot honour in full is refused rather than widened (issue 16 #2, patient safety).

FHIR R4 search.html lets a lenient server drop an unknown parameter, but a server "SHALL reject" a modifier it
does not support, and a dropped `patient.identifer` (a typo) leaves no patient filter at all: the answer would
be every document the caller may see, of every patient. So unsupported modifiers, chains we cannot follow and
unknown parameters of a search that names a patient, or of anyone's who reaches more than one record (a
professional, a representative, a machine client), are a 400 that names the parameter; harmless unknowns of a
holder alone are still ignored, and said in the Bundle."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from espace_sante import clock
from espace_sante.fhir.compartment import space_of
from espace_sante.oauth import devtokens
from espace_sante.runtime import Runtime
from espace_sante.storage import access as access_store
from espace_sante.storage.db import Conn
from tests.factories import BASE, INS, new_nir, new_professional, patient, pdsm_document
from tests.search.helpers import client_as, create, link, match_ids, observation, search, unique_system


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
    http: httpx.AsyncClient, runtime: Runtime, record: dict[str, Any]
) -> None:
    """Only for a caller who reaches one record (a holder alone): nothing she could drop widens her answer."""
    fhir = await client_as(http, runtime, f"holder:{record['nir']}", "patient/*.rs")
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
    # A parameter that only shapes the answer is not a filter to drop: ignored and said, even in ITI-67.
    shaped = await pro.get("/DocumentReference", params={"_id": record["document"], "_elements": "id"})
    assert shaped.status_code == 200, shaped.text
    assert match_ids(shaped.json()) == [record["document"]]
    token = (await devtokens.issue(runtime, f"holder:{record['nir']}", "patient/*.rs")).access_token
    holder = httpx.AsyncClient(
        transport=http._transport, base_url=f"{BASE}/fhir", headers={"Authorization": f"Bearer {token}"}
    )
    warned = await holder.get("/DocumentReference", params={"_id": record["document"], "colour": "x"})
    assert warned.status_code == 200, warned.text
    assert match_ids(warned.json()) == [record["document"]]


@pytest.fixture(scope="module")
async def family(fhir: httpx.AsyncClient, runtime: Runtime) -> dict[str, Any]:
    """A mother who represents two children, a professional who cares for both, and one
    measurement of a code no other test uses in each child's record."""
    system = unique_system()
    mother = new_nir()
    await create(fhir, patient(mother))  # a representative signs in with her own INS
    rpps, _ = await new_professional(fhir, "10")
    children = []
    for _ in range(2):
        nir = new_nir()
        child = await create(fhir, patient(nir, birthDate="2018-03-01"))
        made = await create(
            fhir, observation(child["id"], code={"coding": [{"system": system, "code": "x"}]})
        )
        children.append({"nir": nir, "patient": child["id"], "observation": made["id"]})

    async def relate(conn: Conn) -> None:
        for child in children:
            space = space_of(child["patient"])
            assert isinstance(space, uuid.UUID)
            await access_store.add_representative(conn, space, mother, clock.today() + timedelta(days=365))
            await access_store.set_basis(conn, space, rpps, "consent", "test")
            # Measurements are not shared with professionals by default: these children's parents share them.
            await access_store.save_settings(
                conn,
                space,
                emergency_refused=False,
                samu_refused=False,
                masked_in_emergency=False,
                shared_sections=["Observation"],
                matrix_overrides={},
            )

    await runtime.db.interaction("test_family", relate)
    return {"code": f"{system}|x", "mother": mother, "rpps": rpps, "children": children}


@pytest.mark.parametrize(
    "caller",
    ["feed", "practitioner", "representative"],
)
async def test_a_misspelt_patient_filter_is_refused_to_whoever_reaches_several_records(
    fhir: httpx.AsyncClient, http: httpx.AsyncClient, runtime: Runtime, family: dict[str, Any], caller: str
) -> None:
    """`patinet` dropped, the search no longer names a patient: it would answer with both children's
    measurements where the caller asked for one child's."""
    clients = {
        "feed": lambda: fhir,
        "practitioner": lambda: client_as(http, runtime, f"practitioner:{family['rpps']}", "user/*.rs"),
        "representative": lambda: client_as(
            http, runtime, f"representative:{family['mother']}", "patient/*.rs"
        ),
    }
    made = clients[caller]()
    client = made if isinstance(made, httpx.AsyncClient) else await made
    first = family["children"][0]
    right = await search(
        client, "Observation", {"patient": f"Patient/{first['patient']}", "code": family["code"]}
    )
    assert match_ids(right) == [first["observation"]]
    wide = await search(client, "Observation", {"code": family["code"]})
    assert sorted(match_ids(wide)) == sorted(c["observation"] for c in family["children"])
    params = {"patinet": f"Patient/{first['patient']}", "code": family["code"]}
    _refused(await client.get("/Observation", params=params), "patinet")
    _refused(await client.get("/Observation", params={"_elements": "id", **params}), "patinet")
    # A standard parameter that only shapes the answer cannot widen it: still ignored, and said.
    shaped = await search(client, "Observation", {"code": family["code"], "_elements": "id"})
    assert sorted(match_ids(shaped)) == sorted(c["observation"] for c in family["children"])
    (outcome,) = [e for e in shaped["entry"] if e["search"]["mode"] == "outcome"]
    assert [i["expression"] for i in outcome["resource"]["issue"]] == [["_elements"]]


async def test_a_holder_alone_is_only_warned_of_a_misspelt_filter(
    http: httpx.AsyncClient, runtime: Runtime, family: dict[str, Any]
) -> None:
    """A child's own access (one record) cannot be widened by a dropped parameter: warned, not refused."""
    first = family["children"][0]
    client = await client_as(http, runtime, f"holder:{first['nir']}", "patient/*.rs")
    bundle = await search(
        client, "Observation", {"patinet": f"Patient/{first['patient']}", "code": family["code"]}
    )
    assert match_ids(bundle) == [first["observation"]]
    (outcome,) = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert [i["expression"] for i in outcome["resource"]["issue"]] == [["patinet"]]


@pytest.mark.parametrize("caller", ["holder", "feed", "practitioner", "representative"])
async def test_a_search_that_names_the_patient_ignores_and_lists_what_only_shapes_the_answer(
    fhir: httpx.AsyncClient, http: httpx.AsyncClient, runtime: Runtime, family: dict[str, Any], caller: str
) -> None:
    """`_elements` and `_contained` choose no rows (docs/access-policy.md: "ignored and listed for everyone"):
    beside a patient filter they were refused as if they could widen it. A real unknown there stays a 400."""
    first = family["children"][0]
    users = {
        "holder": f"holder:{first['nir']}",
        "practitioner": f"practitioner:{family['rpps']}",
        "representative": f"representative:{family['mother']}",
    }
    client = (
        fhir
        if caller == "feed"
        else await client_as(
            http, runtime, users[caller], "user/*.rs" if caller == "practitioner" else "patient/*.rs"
        )
    )
    named = {"patient": f"Patient/{first['patient']}", "code": family["code"]}
    for shaping in ({"_elements": "id"}, {"_contained": "true"}, {"_elements": "id", "_contained": "both"}):
        bundle = await search(client, "Observation", {**named, **shaping})
        assert match_ids(bundle) == [first["observation"]], shaping
        (outcome,) = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
        assert [i["expression"] for i in outcome["resource"]["issue"]] == [[n] for n in shaping]
        self_link = link(bundle, "self")
        assert self_link is not None and not any(n in self_link for n in shaping), self_link
    _refused(await client.get("/Observation", params={**named, "_elements": "id", "colour": "x"}), "colour")
    _refused(await client.get("/Observation", params={"_elements": "id", **named, "colour": "x"}), "colour")
