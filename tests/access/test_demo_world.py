"""The "Done when" of the access issue, through the HTTP API: in the demo world, each person sees exactly what
the rules allow, and the holder's trace lists every access in plain words.

Marie-Ange Santoni's record holds five documents: the demo's consultation report ("cr", by her médecin
traitant), a prescription ("ordonnance", by her médecin traitant), a hospital report ("cr-hospit", by the
hospital doctor), a report she masked from professionals ("cr-masque", MASQUE_PS, by the hospital doctor) and
a result awaiting an announcement consultation ("resultat-annonce", INVISIBLE_PATIENT, by the hospital doctor).
Her son Léo's record holds a vaccination certificate ("carnet") and a confidential consultation hidden from his
legal representatives ("confidentiel")."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from espace_sante.demo import access as w
from tests.access.conftest import CHILD, MOTHER, Client, World
from tests.trace import records as trace_records

MT, HOSPITAL, PHARMACIST, URGENTIST, BLOCKED = (p.rpps for p in w.PROFESSIONALS)
ALL_MOTHER = {"cr", "ordonnance", "cr-hospit", "cr-masque", "resultat-annonce"}

# (actor, the mother's documents the actor finds)
# The urgentist's line holds until test_emergency_access_opens_for_a_time... below opens her access (tests of
# this file run in order and share the session's database).
MOTHER_DOCUMENTS = [
    (f"holder:{MOTHER}", "patient/*.*", ALL_MOTHER - {"resultat-annonce"}),
    (f"practitioner:{MT}", "user/*.rs", ALL_MOTHER),  # masked included (L1111-16)
    (f"practitioner:{HOSPITAL}", "user/*.rs", ALL_MOTHER),  # care team; author of the masked one
    (f"practitioner:{PHARMACIST}", "user/*.rs", {"ordonnance"}),  # consent; the matrix: prescriptions
    (f"practitioner:{URGENTIST}", "user/*.rs", set()),  # no basis until an emergency access
    (f"practitioner:{BLOCKED}", "user/*.rs", set()),  # blocked, though in the care team
]


def _keys(world: World, bundle: dict[str, object]) -> set[str]:
    by_id = {v: k for k, v in world.documents.items()}
    found = set()
    for entry in bundle.get("entry", []):  # type: ignore[attr-defined]
        resource = entry["resource"]
        if resource["resourceType"] == "DocumentReference":
            found.add(by_id.get(resource["id"], resource["id"]))
    return found


@pytest.mark.parametrize(("actor", "scope", "expected"), MOTHER_DOCUMENTS)
async def test_each_person_finds_exactly_the_documents_the_rules_allow(
    as_actor: Client, world: World, actor: str, scope: str, expected: set[str]
) -> None:
    client = await as_actor(actor, scope)
    response = await client.get("/fhir/DocumentReference", params={"patient": world.mother_patient})
    assert response.status_code == 200, response.text
    assert _keys(world, response.json()) == expected
    count = await client.get(
        "/fhir/DocumentReference", params={"patient": world.mother_patient, "_summary": "count"}
    )
    assert count.json()["total"] == len(expected)


@pytest.mark.parametrize(("actor", "scope", "expected"), MOTHER_DOCUMENTS)
async def test_a_document_out_of_reach_answers_like_one_that_does_not_exist(
    as_actor: Client, world: World, actor: str, scope: str, expected: set[str]
) -> None:
    client = await as_actor(actor, scope)
    absent = await client.get(f"/fhir/DocumentReference/{world.documents['cr'][:32]}{'0' * 16}")
    for key in ALL_MOTHER:
        response = await client.get(f"/fhir/DocumentReference/{world.documents[key]}")
        if key in expected:
            assert response.status_code == 200, (key, response.text)
        else:
            assert response.status_code == absent.status_code == 404, key
            assert "introuvable" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(("actor", "scope", "expected"), MOTHER_DOCUMENTS)
async def test_versions_and_history_follow_the_same_rule(
    as_actor: Client, world: World, actor: str, scope: str, expected: set[str]
) -> None:
    """SECURITY FHIR attack 1 and 3: vread and _history of a document out of reach answer "not found", and a
    type history lists only reachable documents."""
    client = await as_actor(actor, scope)
    for key in ALL_MOTHER:
        rid = world.documents[key]
        vread = await client.get(f"/fhir/DocumentReference/{rid}/_history/1")
        history = await client.get(f"/fhir/DocumentReference/{rid}/_history")
        wanted = 200 if key in expected else 404
        assert (vread.status_code, history.status_code) == (wanted, wanted), key
    listed = await client.get("/fhir/DocumentReference/_history", params={"_count": "200"})
    ids = {e["resource"]["id"] for e in listed.json().get("entry", []) if "resource" in e}
    reachable = {world.documents[k] for k in expected}
    mother_ids = {world.documents[k] for k in ALL_MOTHER}
    assert ids & mother_ids == reachable


async def test_the_content_of_a_document_follows_the_document(as_actor: Client, world: World) -> None:
    pharmacist = await as_actor(f"practitioner:{PHARMACIST}", "user/*.rs")
    for key, visible in (("ordonnance", True), ("cr-hospit", False)):
        doc = (await as_actor(f"practitioner:{MT}", "user/*.rs")).get(
            f"/fhir/DocumentReference/{world.documents[key]}"
        )
        url = (await doc).json()["content"][0]["attachment"]["url"]
        response = await pharmacist.get(f"/fhir/{url}")
        assert response.status_code == (200 if visible else 404), (key, response.text)


async def test_includes_never_widen_what_a_professional_sees(as_actor: Client, world: World) -> None:
    pharmacist = await as_actor(f"practitioner:{PHARMACIST}", "user/*.rs")
    response = await pharmacist.get(
        "/fhir/Patient", params={"_id": world.mother_patient, "_revinclude": "DocumentReference:subject"}
    )
    assert response.status_code == 200
    assert _keys(world, response.json()) == {"ordonnance"}


async def test_profile_sections_follow_the_holders_choice_and_the_matrix(
    as_actor: Client, world: World
) -> None:
    """By default vaccinations are shared and allergies are not: even the médecin traitant sees no allergy
    until the holder shares that section; the holder always sees her own."""
    mt = await as_actor(f"practitioner:{MT}", "user/*.rs")
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    for client, rtype, expected in (
        (mt, "Immunization", 1),
        (mt, "AllergyIntolerance", 0),
        (holder, "AllergyIntolerance", 1),
    ):
        response = await client.get(f"/fhir/{rtype}", params={"patient": world.mother_patient})
        assert response.json().get("total") == expected, (rtype, response.text)


async def test_a_professional_without_basis_learns_nothing_not_even_that_a_record_exists(
    as_actor: Client, world: World
) -> None:
    urgentist = await as_actor(f"practitioner:{URGENTIST}", "user/*.rs")
    found = await urgentist.get("/fhir/Patient", params={"_id": world.mother_patient})
    assert found.json()["total"] == 0
    read = await urgentist.get(f"/fhir/Patient/{world.mother_patient}")
    assert read.status_code == 404


async def test_the_representative_manages_the_childs_record_but_not_what_is_hidden_from_her(
    as_actor: Client, world: World
) -> None:
    mother = await as_actor(f"representative:{MOTHER}", "patient/*.*")
    response = await mother.get("/fhir/DocumentReference", params={"patient": world.child_patient})
    keys = _keys(world, response.json())
    assert "child:carnet" in keys and "child:confidentiel" not in keys
    mt = await as_actor(f"practitioner:{MT}", "user/*.rs")
    both = await mt.get("/fhir/DocumentReference", params={"patient": world.child_patient})
    assert {"child:carnet", "child:confidentiel"} <= _keys(world, both.json())
    # As a holder, the mother reaches her own record only; as a representative, her son's only.
    own = await (await as_actor(f"holder:{MOTHER}", "patient/*.*")).get(
        f"/fhir/Patient/{world.child_patient}"
    )
    assert own.status_code == 404
    other = await mother.get(f"/fhir/Patient/{world.mother_patient}")
    assert other.status_code == 404


async def test_operators_never_reach_medical_data(runtime: object, as_actor: Client, world: World) -> None:
    from espace_sante.storage import people as people_store

    await runtime.db.interaction("op", people_store.ensure_operator, "agent.dupont", "Agent Dupont")  # type: ignore[attr-defined]
    operator = await as_actor("operator:agent.dupont", "user/*.rs")
    for path in ("/fhir/DocumentReference", f"/fhir/Patient/{world.mother_patient}"):
        response = await operator.get(
            path, params={"patient": world.mother_patient} if "?" not in path else None
        )
        assert response.status_code in (403, 404), response.text


async def test_emergency_access_opens_for_a_time_and_the_holder_reads_it_in_her_trace(
    as_actor: Client, world: World
) -> None:
    urgentist = await as_actor(f"practitioner:{URGENTIST}", "user/*.rs user/Consent.c")
    opened = await urgentist.post("/access/emergency", json={"ins": MOTHER, "reason": "unable_to_consent"})
    assert opened.status_code == 200, opened.text
    response = await urgentist.get("/fhir/DocumentReference", params={"patient": world.mother_patient})
    # Masked documents stay masked in an emergency unless the holder chose otherwise.
    assert _keys(world, response.json()) == ALL_MOTHER - {"cr-masque"}
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    trace = await holder.get("/fhir/AuditEvent", params={"patient": world.mother_patient, "_count": "200"})
    sentences = [e["resource"]["text"]["div"] for e in trace.json()["entry"]]
    assert any("Sophie Bernard" in s and "accès en urgence" in s for s in sentences)


async def test_a_blocked_professional_cannot_open_an_emergency_access(as_actor: Client, world: World) -> None:
    blocked = await as_actor(f"practitioner:{BLOCKED}", "user/*.rs user/Consent.c")
    response = await blocked.post("/access/emergency", json={"ins": MOTHER, "reason": "immediate_risk"})
    assert response.status_code == 404


async def test_the_holders_trace_lists_each_professionals_access_in_plain_words(
    as_actor: Client, world: World
) -> None:
    for rpps in (MT, HOSPITAL, PHARMACIST):
        client = await as_actor(f"practitioner:{rpps}", "user/*.rs")
        await client.get(f"/fhir/DocumentReference/{world.documents['ordonnance']}")
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    trace = await holder.get("/fhir/AuditEvent", params={"patient": world.mother_patient, "_count": "200"})
    text = " ".join(e["resource"]["text"]["div"] for e in trace.json()["entry"])
    assert "Dr Claire Lefèvre, médecin a consulté" in text and "base : médecin traitant" in text
    assert "Dr Antoine Moreau, médecin a consulté" in text and "base : équipe de soins" in text
    assert "Pierre Garnier, pharmacien a consulté" in text and "base : votre consentement" in text
    assert "Vous avez bloqué tout accès de Dr Marc Roux" in text


async def test_a_professional_sees_only_their_own_accesses_in_the_trace(
    as_actor: Client, world: World
) -> None:
    pharmacist = await as_actor(f"practitioner:{PHARMACIST}", "user/*.rs")
    await pharmacist.get(f"/fhir/DocumentReference/{world.documents['ordonnance']}")
    mine = await pharmacist.get("/fhir/AuditEvent", params={"patient": world.mother_patient, "_count": "200"})
    actors = {e["resource"]["agent"][0]["who"]["identifier"]["value"] for e in mine.json()["entry"]}
    assert actors == {PHARMACIST}
    mt = await as_actor(f"practitioner:{MT}", "user/*.rs")
    everyone = await mt.get("/fhir/AuditEvent", params={"patient": world.mother_patient, "_count": "200"})
    assert (
        len({e["resource"]["agent"][0]["who"]["identifier"]["value"] for e in everyone.json()["entry"]}) > 2
    )


async def test_what_can_this_professional_see_is_the_policys_own_answer(
    as_actor: Client, world: World
) -> None:
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    response = await holder.get("/access/preview", params={"rpps": PHARMACIST})
    assert response.status_code == 200, response.text
    preview = response.json()
    docs = {i["id"] for i in preview["items"] if i["type"] == "DocumentReference"}
    assert docs == {world.documents["ordonnance"]}
    assert {i["reason"] for i in preview["items"]} == {"consentement du titulaire"}
    pharmacist = await as_actor(f"practitioner:{PHARMACIST}", "user/*.rs")
    for item in preview["items"]:
        seen = await pharmacist.get(f"/fhir/{item['type']}/{item['id']}")
        assert seen.status_code == 200, item
    blocked = (await holder.get("/access/preview", params={"rpps": BLOCKED})).json()
    assert blocked["blocked"] is True and blocked["items"] == []


async def test_the_overview_lists_bases_blocks_and_rules(as_actor: Client, world: World) -> None:
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    overview = (await holder.get("/access")).json()
    active = {(b["who"], b["basis"]) for b in overview["bases"] if b["active"]}
    assert {
        (MT, "medecin_traitant"),
        (f"finess:{w.HOSPITAL_FINESS}", "care_team"),
        (PHARMACIST, "consent"),
    } <= active
    assert [b["rpps"] for b in overview["blocked"]] == [BLOCKED]
    assert "Immunization" in overview["settings"]["shared_sections"]
    assert "AllergyIntolerance" not in overview["settings"]["shared_sections"]


async def test_the_child_is_not_an_adult_yet_and_the_parent_is_his_representative(
    http: httpx.AsyncClient, as_actor: Client, world: World
) -> None:
    child = await as_actor(f"representative:{CHILD}", "patient/*.*")
    # Léo represents no one: his token reaches nothing.
    response = await child.get("/fhir/DocumentReference", params={"patient": world.mother_patient})
    assert response.json()["total"] == 0


async def test_the_trace_keeps_a_hidden_document_hidden(as_actor: Client, world: World) -> None:
    """SECURITY FHIR attack 3: the hospital doctor reads the result awaiting its announcement; the holder's
    trace does not reveal it (nor its id), the médecin traitant's view of the trace does."""
    hospital = await as_actor(f"practitioner:{HOSPITAL}", "user/*.rs")
    hidden = world.documents["resultat-annonce"]
    assert (await hospital.get(f"/fhir/DocumentReference/{hidden}")).status_code == 200
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    # Every page of her trace (the suite's stories add to it: it outgrows one page of the server's maximum).
    entries, pages = [], 0
    page = await holder.get("/fhir/AuditEvent", params={"patient": world.mother_patient, "_count": "200"})
    while True:
        assert hidden not in page.text
        entries += page.json().get("entry", [])
        pages += 1
        following = [link["url"] for link in page.json().get("link", []) if link["relation"] == "next"]
        if not following:
            break
        link = urlsplit(following[0])
        page = await holder.get(f"{link.path}?{link.query}")
    count = await holder.get(
        "/fhir/AuditEvent", params={"patient": world.mother_patient, "_summary": "count"}
    )
    assert count.json()["total"] == len(entries) + pages  # + each listing's own reading, after its snapshot
    mt = await as_actor(f"practitioner:{MT}", "user/*.rs")
    full = await mt.get("/fhir/AuditEvent", params={"patient": world.mother_patient, "_count": "500"})
    assert hidden in full.text


async def test_a_read_without_basis_is_refused_in_the_trace(
    as_actor: Client, world: World, runtime: object
) -> None:
    from espace_sante.storage.keys import DIRECTORY_SPACE

    async def refusals(conn: object) -> int:
        rows = await trace_records.newest(conn, DIRECTORY_SPACE, limit=100_000)  # type: ignore[arg-type]
        return sum(1 for r in rows if r.record.action == "access:refused" and r.record.actor_id == BLOCKED)

    before = await runtime.db.read("t", refusals)  # type: ignore[attr-defined]
    blocked = await as_actor(f"practitioner:{BLOCKED}", "user/*.rs")
    assert (await blocked.get(f"/fhir/Patient/{world.mother_patient}")).status_code == 404
    assert await runtime.db.read("t", refusals) == before + 1  # type: ignore[attr-defined]


async def test_a_professional_reaching_many_records_names_the_patient(
    as_actor: Client, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from espace_sante.record import resources as fhir_service

    monkeypatch.setattr(fhir_service, "MAX_SPACES_WITHOUT_PATIENT", 1)
    mt = await as_actor(f"practitioner:{MT}", "user/*.rs")  # médecin traitant of the mother and of her son
    broad = await mt.get("/fhir/DocumentReference")
    assert broad.status_code == 400 and broad.json()["issue"][0]["expression"] == ["patient"]
    named = await mt.get("/fhir/DocumentReference", params={"patient": world.mother_patient})
    assert named.status_code == 200
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    assert (await holder.get("/fhir/DocumentReference")).status_code == 200
