"""A hypothesis search over generated worlds (SECURITY V4 4.1.1-4.1.5, FHIR attacks 1 and 2): whatever the
documents, visibility codes, authors, bases, blocks and sharing rules, no actor reads, counts or includes
anything the rules do not give them.

The oracle below is written from the rules of PRODUCT.md section 4 and the habilitation data, in plain Python
and independently of access/policy.py; the server's answers through HTTP (search, `_summary=count`,
`_revinclude`, read by id, Binary) must equal it."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from espace_sante.oauth import devtokens
from espace_sante.runtime import Runtime
from espace_sante.storage import access as access_store
from tests.factories import BASE, FHIR_JSON, new_nir, new_professional, patient

G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
A03 = "urn:oid:1.2.250.1.213.1.1.4.1"
A07 = "urn:oid:1.2.250.1.213.1.1.4.13"
LABELS = ("MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX")
CATEGORIES = ("10", "42", "43", "52", "90")
#: Médecin, pharmacien, infirmier, masseur-kinésithérapeute, aide-soignant (no access to records).
PROFESSIONS = ("10", "21", "60", "70", "35")
BASES = ("consent", "care_team", "medecin_traitant", "emergency")


def _habilitation() -> dict[str, dict[str, set[str]]]:
    """profession -> {"read": categories, "profile_read": sections}, straight from the data file."""
    data = json.loads(resources.files("espace_sante.access").joinpath("habilitation.json").read_text("utf-8"))
    out = {}
    for group in data["groups"].values():
        for code in group["professions"]:
            out[code] = {"read": set(group["read"]), "profile_read": set(group["profile_read"])}
    return out


HABILITATION = _habilitation()
SHARED_BY_DEFAULT = {"Immunization", "Condition", "Procedure", "Consent", "RelatedPerson"}


@dataclass
class Professional:
    rpps: str
    profession: str
    practitioner_id: str


@dataclass
class Document:
    category: str
    labels: frozenset[str]
    author: int | None  # index of a professional
    id: str = ""
    binary: str = ""


@dataclass
class Space:
    nir: str
    documents: list[Document]
    allergy: bool
    bases: dict[int, frozenset[str]]
    blocked: frozenset[int]
    emergency_refused: bool
    masked_in_emergency: bool
    shared: frozenset[str] | None
    patient_id: str = ""
    space_id: Any = None
    allergy_id: str = ""
    immunization_id: str = ""


@dataclass
class World:
    spaces: list[Space] = field(default_factory=list)


@pytest.fixture(scope="module")
async def professionals(
    fhir: httpx.AsyncClient, runtime: Runtime
) -> list[tuple[Professional, httpx.AsyncClient]]:
    out = []
    for profession in PROFESSIONS:
        rpps, pid = await new_professional(fhir, profession)
        token = (await devtokens.issue(runtime, f"practitioner:{rpps}", "user/*.rs")).access_token
        client = httpx.AsyncClient(
            transport=fhir._transport, base_url=f"{BASE}/fhir", headers={"Authorization": f"Bearer {token}"}
        )
        out.append((Professional(rpps, profession, pid), client))
    return out


documents = st.builds(
    Document,
    category=st.sampled_from(CATEGORIES),
    labels=st.frozensets(st.sampled_from(LABELS), max_size=2),
    author=st.none() | st.integers(0, len(PROFESSIONS) - 1),
)
spaces = st.builds(
    Space,
    nir=st.just(""),
    documents=st.lists(documents, max_size=4),
    allergy=st.booleans(),
    bases=st.dictionaries(
        st.integers(0, len(PROFESSIONS) - 1),
        st.frozensets(st.sampled_from(BASES), min_size=1, max_size=2),
        max_size=4,
    ),
    blocked=st.frozensets(st.integers(0, len(PROFESSIONS) - 1), max_size=1),
    emergency_refused=st.booleans(),
    masked_in_emergency=st.booleans(),
    shared=st.none() | st.frozensets(st.sampled_from(["Immunization", "AllergyIntolerance"])),
)


async def _build(fhir: httpx.AsyncClient, runtime: Runtime, space: Space, pros: list[Professional]) -> None:
    space.nir = new_nir()
    created = await fhir.post("/Patient", json=patient(space.nir), headers=FHIR_JSON)
    space.patient_id = created.json()["id"]
    space.space_id = uuid.UUID(space.patient_id[:32])
    ref = {"reference": f"Patient/{space.patient_id}"}
    for doc in space.documents:
        binary = await fhir.post(
            "/Binary",
            json={
                "resourceType": "Binary",
                "contentType": "text/plain",
                "securityContext": ref,
                "data": base64.b64encode(b"x").decode(),
            },
            headers=FHIR_JSON,
        )
        doc.binary = binary.json()["id"]
        body: dict[str, Any] = {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": ref,
            "category": [{"coding": [{"system": A03, "code": doc.category}]}],
            "content": [{"attachment": {"contentType": "text/plain", "url": f"Binary/{doc.binary}"}}],
        }
        if doc.labels:
            body["securityLabel"] = [{"coding": [{"system": A07, "code": c}]} for c in sorted(doc.labels)]
        if doc.author is not None:
            body["author"] = [{"reference": f"Practitioner/{pros[doc.author].practitioner_id}"}]
        made = await fhir.post("/DocumentReference", json=body, headers=FHIR_JSON)
        assert made.status_code == 201, made.text
        doc.id = made.json()["id"]
    imm = await fhir.post(
        "/Immunization",
        json={
            "resourceType": "Immunization",
            "status": "completed",
            "vaccineCode": {"text": "Grippe"},
            "patient": ref,
            "occurrenceDateTime": "2026-10-01",
        },
        headers=FHIR_JSON,
    )
    space.immunization_id = imm.json()["id"]
    if space.allergy:
        allergy = await fhir.post(
            "/AllergyIntolerance",
            json={"resourceType": "AllergyIntolerance", "code": {"text": "Pollen"}, "patient": ref},
            headers=FHIR_JSON,
        )
        space.allergy_id = allergy.json()["id"]

    async def rights(conn: Any) -> None:
        for i, bases in space.bases.items():
            for basis in bases:
                if basis == "emergency":
                    ends = datetime.now(UTC) + timedelta(hours=1)
                    await access_store.start_emergency(
                        conn, space.space_id, pros[i].rpps, "emergency", "immediate_risk", ends
                    )
                else:
                    await access_store.set_basis(conn, space.space_id, pros[i].rpps, basis, "test")
        for i in space.blocked:
            await access_store.block(conn, space.space_id, pros[i].rpps)
        await access_store.save_settings(
            conn,
            space.space_id,
            emergency_refused=space.emergency_refused,
            samu_refused=False,
            masked_in_emergency=space.masked_in_emergency,
            shared_sections=None if space.shared is None else sorted(space.shared),
            matrix_overrides={},
        )

    await runtime.db.interaction("test_world_rights", rights)


# --- the oracle: the rules, written out ------------------------------------------------------------------


def _bases(space: Space, i: int) -> set[str]:
    if i in space.blocked:
        return set()
    bases = set(space.bases.get(i, ()))
    if space.emergency_refused:
        bases.discard("emergency")
    return bases


def professional_sees_document(space: Space, i: int, pro: Professional, doc: Document) -> bool:
    bases = _bases(space, i)
    if not bases:
        return False
    if "medecin_traitant" in bases:
        return True  # every document, masked ones included
    if doc.category not in HABILITATION[pro.profession]["read"]:
        return False
    if "MASQUE_PS" in doc.labels and doc.author != i:
        only_emergency = bases == {"emergency"}
        return only_emergency and space.masked_in_emergency
    return True


def professional_sees_section(space: Space, i: int, pro: Professional, section: str) -> bool:
    bases = _bases(space, i)
    shared = SHARED_BY_DEFAULT if space.shared is None else set(space.shared)
    if not bases or section not in shared:
        return False
    return "medecin_traitant" in bases or section in HABILITATION[pro.profession]["profile_read"]


def holder_sees_document(doc: Document) -> bool:
    return "INVISIBLE_PATIENT" not in doc.labels


def _ids(bundle: dict[str, Any], rtype: str) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == rtype}


#: Searches that only count (issue 16): they tell whether a patient has a kind of document as well as a page.
COUNTING = (
    {"_summary": "count"},
    {"_count": "0"},
    {"_offset": "50"},
    {"_total": "accurate", "_count": "1"},
)


async def _search_records(runtime: Runtime, space_id: Any, actor_id: str) -> int:
    async def run(conn: Any) -> int:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM audit_event WHERE space_id = $1 AND actor_id = $2 "
                "AND action = 'resource:search'",
                space_id,
                actor_id,
            )
        )

    return await runtime.db.read("test_world_trace", run)


async def _traced(
    runtime: Runtime,
    client: httpx.AsyncClient,
    path: str,
    params: dict[str, str],
    space: Space,
    actor_id: str,
) -> dict[str, Any]:
    """A search whose answer reached the space (an entry, or a count above zero) left a record in its trace."""
    before = await _search_records(runtime, space.space_id, actor_id)
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    if bundle.get("entry") or bundle.get("total"):
        assert await _search_records(runtime, space.space_id, actor_id) > before, (path, params, actor_id)
    return bundle


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    world=st.lists(spaces, min_size=1, max_size=2),
    counting=st.sampled_from(COUNTING),
    category=st.sampled_from(CATEGORIES),
)
async def test_no_generated_world_lets_anyone_see_more_than_the_rules_give(
    fhir: httpx.AsyncClient,
    runtime: Runtime,
    professionals: list[tuple[Professional, httpx.AsyncClient]],
    world: list[Space],
    counting: dict[str, str],
    category: str,
) -> None:
    """... and no search, count or include that reaches a space leaves its trace without a record."""
    pros = [p for p, _ in professionals]
    for space in world:
        await _build(fhir, runtime, space, pros)
    for space in world:
        holder_token = (await devtokens.issue(runtime, f"holder:{space.nir}", "patient/*.*")).access_token
        holder = httpx.AsyncClient(
            transport=fhir._transport,
            base_url=f"{BASE}/fhir",
            headers={"Authorization": f"Bearer {holder_token}"},
        )
        actors: list[tuple[str, httpx.AsyncClient, Any]] = [("holder", holder, None)]
        actors += [(f"pro{i}", client, i) for i, (_, client) in enumerate(professionals)]
        for name, client, i in actors:
            who = space.nir if i is None else pros[i].rpps
            if i is None:
                expected = {d.id for d in space.documents if holder_sees_document(d)}
                sections = {"Immunization": True, "AllergyIntolerance": True}
                patient_visible = True
            else:
                expected = {d.id for d in space.documents if professional_sees_document(space, i, pros[i], d)}
                sections = {
                    s: professional_sees_section(space, i, pros[i], s)
                    for s in ("Immunization", "AllergyIntolerance")
                }
                patient_visible = bool(_bases(space, i))
            context = (name, space)
            found = await _traced(
                runtime,
                client,
                "/DocumentReference",
                {"patient": space.patient_id, "_count": "50"},
                space,
                who,
            )
            assert _ids(found, "DocumentReference") == expected, context
            count = await _traced(
                runtime,
                client,
                "/DocumentReference",
                {"patient": space.patient_id, "_summary": "count"},
                space,
                who,
            )
            assert count["total"] == len(expected), context
            of_class = {d.id for d in space.documents if d.id in expected and d.category == category}
            counted = await _traced(
                runtime,
                client,
                "/DocumentReference",
                {"patient": space.patient_id, "category": f"{A03}|{category}", **counting},
                space,
                who,
            )
            assert counted["total"] == len(of_class), (context, counting, category)
            included = await _traced(
                runtime,
                client,
                "/Patient",
                {"_id": space.patient_id, "_revinclude": "DocumentReference:subject"},
                space,
                who,
            )
            assert _ids(included, "DocumentReference") == expected, context
            assert _ids(included, "Patient") == ({space.patient_id} if patient_visible else set()), context
            for doc in space.documents:
                read = await client.get(f"/DocumentReference/{doc.id}")
                assert read.status_code == (200 if doc.id in expected else 404), (context, doc)
                content = await client.get(f"/Binary/{doc.binary}")
                assert content.status_code == (200 if doc.id in expected else 404), (context, doc)
            immunizations = await _traced(
                runtime, client, "/Immunization", {"patient": space.patient_id}, space, who
            )
            assert _ids(immunizations, "Immunization") == (
                {space.immunization_id} if sections["Immunization"] else set()
            ), context
            if space.allergy:
                allergy = await client.get(f"/AllergyIntolerance/{space.allergy_id}")
                assert allergy.status_code == (200 if sections["AllergyIntolerance"] else 404), context
