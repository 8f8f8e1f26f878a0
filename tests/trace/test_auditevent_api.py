"""The trace as FHIR AuditEvent through the HTTP API: a feed's accesses to one patient's record, listed newest
first as IHE BALP-style AuditEvents that are valid R4, with plain French words; filters, paging, access
rules, and what never appears in them (search values)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from espace_sante.fhir.validation import validate_resource
from espace_sante.oauth import clients as oauth_clients
from espace_sante.runtime import Runtime
from espace_sante.storage.keys import DIRECTORY_SPACE
from tests.conftest import TokenFactory
from tests.factories import BASE, FHIR_JSON, INS, new_nir, patient
from tests.trace import records as trace_records

CABINET = "Logiciel du cabinet"


def observation(patient_id: str, value: float = 64.5) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Poids"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2026-11-19",
        "valueQuantity": {"value": value, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    }


@pytest.fixture(scope="module")
async def cabinet(runtime: Runtime, http: httpx.AsyncClient) -> httpx.AsyncClient:
    """A professional's software registered under a name the holder will read."""
    client = await oauth_clients.create_client(runtime, CABINET, "system/*.*")
    response = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client.client_id, client.client_secret),
    )
    assert response.status_code == 200, response.text
    return httpx.AsyncClient(
        transport=http._transport,
        base_url=f"{BASE}/fhir",
        headers={"Authorization": f"Bearer {response.json()['access_token']}"},
    )


class Story:
    def __init__(self, nir: str, pid: str, oid: str) -> None:
        self.nir, self.pid, self.oid = nir, pid, oid


@pytest.fixture(scope="module")
async def story(cabinet: httpx.AsyncClient) -> Story:
    """The feed creates a patient and a weight, reads it, searches the patient by INS, changes the weight and
    deletes it: six accesses to one space."""
    nir = new_nir()
    created = await cabinet.post("/Patient", json=patient(nir), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    obs = await cabinet.post("/Observation", json=observation(pid), headers=FHIR_JSON)
    assert obs.status_code == 201, obs.text
    oid = obs.json()["id"]
    assert (await cabinet.get(f"/Observation/{oid}")).status_code == 200
    found = await cabinet.get("/Patient", params={"identifier": f"{INS}|{nir}"})
    assert found.status_code == 200 and found.json()["total"] == 1
    body = dict(obs.json(), valueQuantity=dict(obs.json()["valueQuantity"], value=65.0))
    assert (await cabinet.put(f"/Observation/{oid}", json=body, headers=FHIR_JSON)).status_code == 200
    assert (await cabinet.delete(f"/Observation/{oid}")).status_code == 204
    return Story(nir, pid, oid)


def _resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset", bundle
    return [e["resource"] for e in bundle.get("entry", [])]


async def _list(client: httpx.AsyncClient, pid: str, **params: Any) -> dict[str, Any]:
    response = await client.get("/AuditEvent", params={"patient": f"Patient/{pid}", **params})
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    return bundle


def _what(event: dict[str, Any]) -> str | None:
    for entity in event.get("entity", []):
        if entity.get("role", {}).get("code") in ("4", "24"):
            return str(entity.get("what", {}).get("reference") or entity.get("description"))
    return None


def _texts(event: dict[str, Any]) -> str:
    return str(event["text"]["div"])


async def test_the_feeds_accesses_are_listed_newest_first_as_balp_audit_events(
    cabinet: httpx.AsyncClient, story: Story
) -> None:
    """Each access is one AuditEvent, newest first, valid R4, with BALP's type/subtype/action, the software as
    requesting agent with its basis, the resource (versioned) and the patient as entities, and a sentence in
    plain French that names the software and the kind of data."""
    events = _resources(await _list(cabinet, story.pid))[:6]
    for event in events:
        validate_resource(event, expected_type="AuditEvent")
    pid, oid = story.pid, story.oid
    assert [(e["subtype"][0]["code"], e["action"], _what(e)) for e in events] == [
        ("delete", "D", f"Observation/{oid}/_history/3"),
        ("update", "U", f"Observation/{oid}/_history/2"),
        ("search-type", "E", "Patient ?identifier"),
        ("read", "R", f"Observation/{oid}/_history/1"),
        ("create", "C", f"Observation/{oid}/_history/1"),
        ("create", "C", f"Patient/{pid}/_history/1"),
    ]
    recorded = [e["recorded"] for e in events]
    assert recorded == sorted(recorded, reverse=True)
    for event in events:
        assert event["type"] == {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "Restful Operation",
        }
        assert event["subtype"][0]["system"] == "http://hl7.org/fhir/restful-interaction"
        assert event["outcome"] == "0" and "outcomeDesc" not in event
        agent = event["agent"][0]
        assert agent["requestor"] is True and agent["who"]["display"] == CABINET
        assert agent["who"]["identifier"]["system"] == "urn:espace-sante:oauth-client"
        assert agent["who"]["identifier"]["value"].startswith("cli_")
        # The policy's reason: its code and its words (access/reasons.py), not the text the code replaced.
        assert agent["purposeOfUse"][0]["coding"][0]["code"] == "system-scope"
        assert agent["purposeOfUse"][0]["text"] == "accès système autorisé"
        assert event["agent"][1]["requestor"] is False
        patients = [x for x in event["entity"] if x.get("role", {}).get("code") == "1"]
        assert patients == [
            {
                "what": {"reference": f"Patient/{pid}"},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                    "display": "Person",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            }
        ]
        assert event["source"]["observer"]["display"] == "espace-sante"
        assert event["text"]["status"] == "generated"
        assert _texts(event).startswith('<div xmlns="http://www.w3.org/1999/xhtml">')
        assert "Le logiciel « Logiciel du cabinet »" in _texts(event)
        assert event["id"].startswith(uuid.UUID(pid[:32]).hex + "-")
    texts = [_texts(e) for e in events]
    assert "a supprimé votre mesure (observation)" in texts[0]
    assert "a modifié votre mesure (observation)" in texts[1]
    assert "a recherché votre dossier" in texts[2] and "(critères : identifiant)" in texts[2]
    assert "a consulté votre mesure (observation)" in texts[3]
    assert "a ajouté une mesure (observation) à votre dossier" in texts[4]
    assert "a ouvert votre dossier" in texts[5]
    assert all("base : accès système autorisé." in t for t in texts)
    assert "The software “Logiciel du cabinet” deleted your measurement (observation)" in texts[0]


async def test_reading_the_trace_is_itself_traced_after_the_listing(
    cabinet: httpx.AsyncClient, story: Story
) -> None:
    """A listing never contains its own reading; the next listing shows it first, as a search of the trace."""
    first = _resources(await _list(cabinet, story.pid))
    second = _resources(await _list(cabinet, story.pid))
    assert second[1:] == first[: len(second) - 1]
    top = second[0]
    assert (top["subtype"][0]["code"], top["action"]) == ("search-type", "E")
    assert _what(top).startswith("AuditEvent ?")  # type: ignore[union-attr]
    assert "patient" in _what(top)  # type: ignore[operator]
    assert "a consulté l'historique des accès à votre dossier" in _texts(top)


async def test_no_search_value_ever_appears_in_the_trace(
    fhir: httpx.AsyncClient, cabinet: httpx.AsyncClient, story: Story
) -> None:
    """The INS the feed searched for (a search value) is in no AuditEvent, raw or formatted."""
    bundle = await _list(fhir, story.pid, _count="200")
    raw = str(bundle)
    assert story.nir not in raw
    assert f"{story.nir[:1]} {story.nir[1:3]}" not in raw
    assert "64.5" not in raw and "65.0" not in raw  # nor any medical value


async def test_date_action_subtype_and_outcome_filters(cabinet: httpx.AsyncClient, story: Story) -> None:
    everything = _resources(await _list(cabinet, story.pid, _count="200"))
    read = next(e for e in everything if e["subtype"][0]["code"] == "read")
    at = read["recorded"]

    async def subtypes(**params: Any) -> list[str]:
        return [e["subtype"][0]["code"] for e in _resources(await _list(cabinet, story.pid, **params))]

    before_or_at = await subtypes(date=f"le{at}", _count="200")
    assert before_or_at == ["read", "create", "create"]
    after = await subtypes(date=f"gt{at}", action="U,D")
    assert after == ["delete", "update"]
    assert await subtypes(date=f"eq{at}") == ["read"]
    assert await subtypes(date=f"lt{at}", action="C") == ["create", "create"]
    assert await subtypes(date="lt2000") == []
    assert await subtypes(date="2000-01", action="R") == []
    year = datetime.now(UTC).year
    assert len(await subtypes(date=f"ge{year - 1}", _count="200")) >= len(everything)  # a partial date
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    assert await subtypes(date=f"ge{tomorrow}") == []
    assert await subtypes(action="C") == ["create", "create"]
    assert await subtypes(subtype="delete") == ["delete"]
    assert await subtypes(subtype="http://hl7.org/fhir/restful-interaction|update") == ["update"]
    assert await subtypes(subtype="http://other.example|update") == []
    assert await subtypes(action="R", subtype="read", entity=f"Observation/{story.oid}") == ["read"]
    assert await subtypes(outcome="8") == []
    assert await subtypes(_id=read["id"]) == ["read"]
    counted = await _list(cabinet, story.pid, action="C", _summary="count")
    assert counted["total"] == 2 and "entry" not in counted


async def test_agent_by_identifier_names_who_acted(cabinet: httpx.AsyncClient, story: Story) -> None:
    """`agent:identifier=system|value` (R4 search.html#reference, the `identifier` modifier) keeps the records
    of the agent whose `who.identifier` that is; a literal reference to anything but a directory Practitioner
    names no one; other modifiers and chains on agent stay refused."""
    everything = _resources(await _list(cabinet, story.pid, _count="200"))
    who = _resources(await _list(cabinet, story.pid, subtype="update"))[0]["agent"][0]["who"]["identifier"]
    token = f"{who['system']}|{who['value']}"
    mine = _resources(await _list(cabinet, story.pid, _count="200", **{"agent:identifier": token}))
    # Newest first: the feed's two readings above, then what `everything` listed of the feed's.
    by_feed = [e["id"] for e in everything if e["agent"][0]["who"]["identifier"] == who]
    assert [e["id"] for e in mine[2:]] == by_feed and len(by_feed) < len(everything)
    assert all(e["agent"][0]["who"]["identifier"] == who for e in mine)
    for params in (
        {"agent:identifier": f"{who['system']}|cli_nobody"},
        {"agent:identifier": f"https://rpps.esante.gouv.fr|{who['value']}"},
        {"agent": "Organization/1"},
        {"agent": f"Practitioner/{uuid.uuid4()}"},
        {"source": "Device/1"},
    ):
        assert _resources(await _list(cabinet, story.pid, **params)) == [], params
    for name in (
        "agent:exact",
        "agent:not",
        "agent.identifier",
        "agent:identifier:exact",
        "entity:identifier",
    ):
        response = await cabinet.get("/AuditEvent", params={"patient": f"Patient/{story.pid}", name: token})
        assert response.status_code == 400, name
        assert response.json()["resourceType"] == "OperationOutcome"


async def test_paging_follows_next_links_over_one_snapshot(cabinet: httpx.AsyncClient, story: Story) -> None:
    """Each page read adds a record to the chain being listed: the links pin a snapshot, so following them
    gives every record once, in order, with no duplicate and no gap."""
    whole = [e["id"] for e in _resources(await _list(cabinet, story.pid, _count="200"))]
    bundle = await _list(cabinet, story.pid, _count="2")
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert links["self"].startswith(f"{BASE}/fhir/AuditEvent?") and "_upto=" in links["self"]
    seen = [e["id"] for e in _resources(bundle)]
    pages = 1
    while "next" in links:
        response = await cabinet.get(links["next"])
        assert response.status_code == 200, response.text
        bundle = response.json()
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert "previous" in links
        seen += [e["id"] for e in _resources(bundle)]
        pages += 1
    # The first listing above is in this snapshot: it comes first, then everything the `whole` listing saw.
    assert seen[1:] == whole
    assert pages == (len(seen) + 1) // 2
    assert bundle["total"] == len(seen)


async def test_read_one_audit_event_and_foreign_ids_are_404(cabinet: httpx.AsyncClient, story: Story) -> None:
    listed = _resources(await _list(cabinet, story.pid, subtype="read"))[0]
    response = await cabinet.get(f"/AuditEvent/{listed['id']}")
    assert response.status_code == 200, response.text
    assert response.json() == listed
    assert response.headers["etag"] == 'W/"1"'
    validate_resource(response.json(), expected_type="AuditEvent")
    space, seq = listed["id"].split("-")
    for rid in (
        f"{space}-99999999",  # no such record
        f"{uuid.uuid4().hex}-1",  # no such chain
        f"{DIRECTORY_SPACE.hex}-1",  # the directory's chain is no patient's trace
        f"{space}-0",
        f"{space}-{seq}.0",
        "not-an-audit-event",
        story.oid,
    ):
        assert (await cabinet.get(f"/AuditEvent/{rid}")).status_code == 404, rid
    assert (await cabinet.get(f"/AuditEvent/{listed['id']}/_history/1")).status_code == 405
    assert (await cabinet.get(f"/AuditEvent/{listed['id']}/_history")).status_code == 405
    assert (await cabinet.get("/AuditEvent/_history")).status_code == 405
    # The read itself is in the trace.
    top = _resources(await _list(cabinet, story.pid, subtype="read"))[0]
    assert _what(top) == f"AuditEvent/{listed['id']}/_history/1"


async def test_a_search_must_name_its_patient(cabinet: httpx.AsyncClient, story: Story) -> None:
    response = await cabinet.get("/AuditEvent")
    assert response.status_code == 400
    assert "patient" in response.json()["issue"][0]["diagnostics"]
    posted = await cabinet.post(
        "/AuditEvent/_search",
        data={"patient": story.pid, "action": "D"},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert posted.status_code == 200, posted.text
    assert [e["action"] for e in _resources(posted.json())] == ["D"]
    for params in (
        {"patient": f"Patient/{story.pid}", "_include": "AuditEvent:entity"},
        {"patient": f"Patient/{story.pid}", "_sort": "date"},
        {"patient": f"Patient/{story.pid}", "action:not": "R"},
        {"patient": f"Patient/{story.pid}", "_upto": "x"},
        {"patient": f"Observation/{story.oid}"},
    ):
        assert (await cabinet.get("/AuditEvent", params=params)).status_code == 400, params
    # Someone else's or no one's patient id: an empty listing, and nothing is recorded anywhere.
    for other in (uuid.uuid4().hex + "0" * 16, story.pid[:32] + "0" * 16):
        assert _resources(await _list(cabinet, other)) == []


async def test_without_audit_event_rights_403_and_the_refusal_is_in_the_directory_chain(
    runtime: Runtime, token_for: TokenFactory, http: httpx.AsyncClient, story: Story
) -> None:
    token = await token_for("system/Patient.* system/Observation.*")
    response = await http.get(
        "/fhir/AuditEvent",
        params={"patient": story.pid},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 403, response.text
    request_id = response.headers["x-request-id"]
    recent = await runtime.db.read("test_recent", trace_records.newest, DIRECTORY_SPACE, limit=50)
    refusals = [s.record for s in recent if s.record.request_id == request_id]
    assert len(refusals) == 1
    refusal = refusals[0]
    assert (refusal.action, refusal.outcome, refusal.entity_type, refusal.detail) == (
        "access:refused",
        "8",
        "AuditEvent",
        "search",
    )
    assert refusal.basis == "policy:no-system-scope?interaction=s&type=AuditEvent"
    read = await http.get(
        f"/fhir/AuditEvent/{story.pid[:32]}-1", headers={"Authorization": f"Bearer {token}"}
    )
    assert read.status_code == 403


async def test_a_batch_entry_reads_the_trace_too(cabinet: httpx.AsyncClient, story: Story) -> None:
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"AuditEvent?patient={story.pid}&action=D"}}],
    }
    response = await cabinet.post("", json=batch, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    inner = response.json()["entry"][0]["resource"]
    assert [e["action"] for e in _resources(inner)] == ["D"]


async def test_the_capability_statement_says_read_and_search_only(http: httpx.AsyncClient) -> None:
    statement = (await http.get("/fhir/metadata")).json()
    audit = next(r for r in statement["rest"][0]["resource"] if r["type"] == "AuditEvent")
    assert {i["code"] for i in audit["interaction"]} == {"read", "search-type"}
    names = {p["name"] for p in audit["searchParam"]}
    assert {"patient", "date", "action", "subtype", "outcome", "_id"} <= names
    agent = next(p for p in audit["searchParam"] if p["name"] == "agent")
    assert "agent:identifier" in agent["documentation"]
    assert audit["searchRevInclude"] == [] and audit["searchInclude"] == []
