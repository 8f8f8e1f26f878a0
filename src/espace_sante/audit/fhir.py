"""A trace record as a FHIR R4 AuditEvent, shaped like IHE Basic Audit Log Patterns (BALP 1.1, "RESTful
activities": IHE.BasicAudit.Create/Read/Update/Delete/Query and their PatientRead, PatientQuery… variants).

What maps where (FHIR R4 auditevent.html; BALP section 1:52.4):
- id: `<space uuid hex>-<seq>`, a valid FHIR id (datatypes.html#id, 34 to 52 characters) that names the
  chain and the position, so a read goes straight to one row and a forged id can only name a chain.
- type: `rest` (audit-event-type), subtype: the FHIR interaction (restful-interaction), action C/R/U/D/E
  (BALP uses E "execute" for a search, R for read, vread and history).
- recorded, outcome (0/4/8, as stored), outcomeDesc when the access was refused.
- agent[0]: who acted (the requestor), identified by an identifier whose system names the kind of actor;
  its purposeOfUse carries the policy's basis for the decision (auditevent-definitions.html#
  AuditEvent.agent.purposeOfUse: "the reason given for this user"): its code (access/reasons.py) and its
  words, also for records that hold the policy's old text. agent[1]: this server (BALP: the
  server is the Destination Role ID, the client the Source Role ID).
- source: this server, an application server (security-source-type 4).
- entity: the resource touched (`Type/id/_history/v` when the version is known; BALP entity "data",
  type 2 System Object, role 4 Domain Resource) or, for a search, the query (role 24 Query) described by its
  parameter names only: the record never holds search values, so `entity.query` (which BALP fills with the
  whole request) is never set. The patient is its own entity (type 1 Person, role 1 Patient), as BALP's
  Patient* profiles require. The request id is a BALP "transaction" entity (XrequestId).
- text: the sentence of audit/wording.py, French then English, so any FHIR client shows the plain words.
"""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC
from typing import Any

from espace_sante.access import reasons
from espace_sante.audit import wording
from espace_sante.fhir.identifiers import INS_NIR, RPPS
from espace_sante.storage.audit import REFUSED_SUBTYPES, SUBTYPES, Record

AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
AUDIT_EVENT_ACTION = "http://hl7.org/fhir/audit-event-action"
AUDIT_EVENT_OUTCOME = "http://hl7.org/fhir/audit-event-outcome"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
ENTITY_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
URI = "urn:ietf:rfc:3986"

#: Identifier systems of the actors, per kind: the national ones where the actor id is one (INS for people
#: with a space, RPPS for professionals), ours otherwise.
ACTOR_SYSTEMS: dict[str, str] = {
    "holder": INS_NIR,
    "representative": INS_NIR,
    "practitioner": RPPS,
    "client": "urn:espace-sante:oauth-client",
    "app": "urn:espace-sante:oauth-client",
    "operator": "urn:espace-sante:operator",
    "system": "urn:espace-sante:system",
}
_ACTOR_ROLES_FR: dict[str, str] = {
    "holder": "titulaire",
    "representative": "représentant légal",
    "practitioner": "professionnel de santé",
    "client": "logiciel",
    "app": "application",
    "operator": "agent du service",
    "system": "service espace santé",
}

#: audit-event-action per interaction (BALP: Query is E, Read R, Create C, Update U, Delete D).
ACTIONS: dict[str, str] = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "history-type": "R",
    "search-type": "E",
    "update": "U",
    "patch": "U",
    "delete": "D",
}
#: Our own events that are not RESTful interactions (changes of rights, emergency access).
ESPACE_SANTE_EVENTS = "https://espace-sante.example/fhir/CodeSystem/audit-event"
#: The policy's reasons (access/reasons.py Code), the codes of purposeOfUse.
ACCESS_REASONS = "https://espace-sante.example/fhir/CodeSystem/access-reason"
#: Records whose basis is the policy's reason; the others hold their own service's code (an activation
#: failure, an app withdrawn), which their sentence words (audit/wording.py).
_POLICY_PREFIXES = ("resource:", "document:", "rights:")
_POLICY_ACTIONS = frozenset(
    {"access:refused", "access:emergency", "token:issue", "oauth:token", "oauth:grant"}
)
_OUTCOMES = {"0": "Success", "4": "Minor failure", "8": "Serious failure", "12": "Major failure"}

_ID = re.compile(r"^([0-9a-f]{32})-([1-9][0-9]{0,17})$")


def event_id(space_id: uuid.UUID, seq: int) -> str:
    return f"{space_id.hex}-{seq}"


def parse_id(rid: str) -> tuple[uuid.UUID, int] | None:
    """(space, seq) of an AuditEvent id, or None when it cannot be one of ours."""
    match = _ID.match(rid)
    if match is None:
        return None
    return uuid.UUID(match.group(1)), int(match.group(2))


def subtype(record: Record) -> str:
    """The restful-interaction code of a record (a refusal: the interaction that was refused)."""
    if record.action == "access:refused":
        return REFUSED_SUBTYPES.get(record.detail, "read")
    if record.action not in SUBTYPES:
        return ""  # a change of rights or an emergency access: not a RESTful interaction
    code = SUBTYPES[record.action]
    if code == "history-instance" and record.entity_id is None:
        return "history-type"
    return code


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _instant(record: Record) -> str:
    return record.recorded_at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _narrative(record: Record) -> dict[str, str]:
    fr = html.escape(wording.sentence(record, "fr"), quote=False)
    en = html.escape(wording.sentence(record, "en"), quote=False)
    return {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p lang="fr" xml:lang="fr">{fr}</p>'
        f'<p lang="en" xml:lang="en">{en}</p></div>',
    }


def _reason(record: Record) -> tuple[reasons.Reason | None, bool]:
    """(the policy's reason the record holds, whether its basis is the policy's at all)."""
    policy = record.action.startswith(_POLICY_PREFIXES) or record.action in _POLICY_ACTIONS
    return (reasons.from_recorded(record.basis) if record.basis else None), policy


def _purpose(record: Record) -> list[dict[str, Any]]:
    reason, policy = _reason(record)
    if reason is not None:
        fr = reasons.words(reason, "fr")
        return [{"coding": [_coding(ACCESS_REASONS, reason.code.value, fr)], "text": fr}]
    # An unknown policy reason is said to be so, never shown as recorded; another service's code is its own.
    return [{"text": reasons.words(None, "fr") if policy else record.basis}]


def _agent(record: Record, code: str) -> dict[str, Any]:
    display = record.actor_display.strip() or record.actor_id
    if record.actor_kind in ("client", "app", "system"):
        # BALP: the client application is the Source Role ID.
        agent_type = _coding(DICOM, "110153", "Source Role ID")
    elif code in ("create", "update", "patch", "delete"):
        agent_type = _coding(PARTICIPATION, "AUT", "author (originator)")
    else:
        agent_type = _coding(PARTICIPATION, "IRCP", "information recipient")
    agent: dict[str, Any] = {
        "type": {"coding": [agent_type]},
        "role": [{"text": _ACTOR_ROLES_FR.get(record.actor_kind, record.actor_kind)}],
        "who": {
            "identifier": {
                "system": ACTOR_SYSTEMS.get(record.actor_kind, "urn:espace-sante:actor"),
                "value": record.actor_id,
            },
            "display": display,
        },
        "name": display,
        "requestor": True,
    }
    if record.basis:
        agent["purposeOfUse"] = _purpose(record)
    return agent


def _server(base: str) -> dict[str, Any]:
    return {
        "type": {"coding": [_coding(DICOM, "110152", "Destination Role ID")]},
        "who": {"identifier": {"system": URI, "value": base}, "display": "espace-sante"},
        "requestor": False,
        "network": {"address": base, "type": "5"},  # 5: URI (network-type)
    }


def _entities(record: Record, patient_id: str | None) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    if record.entity_type and record.entity_id:
        reference = f"{record.entity_type}/{record.entity_id}"
        if record.entity_version is not None:
            reference += f"/_history/{record.entity_version}"
        entities.append(
            {
                "what": {"reference": reference},
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(ENTITY_ROLE, "4", "Domain Resource"),
            }
        )
    elif record.entity_type:
        # A search or a type history: the query, by the parameter names it used (never their values).
        names = record.detail.split("?", 1)[1] if "?" in record.detail else ""
        entity: dict[str, Any] = {
            "type": _coding(ENTITY_TYPE, "2", "System Object"),
            "role": _coding(ENTITY_ROLE, "24", "Query"),
            "description": f"{record.entity_type}" + (f" ?{names}" if names else ""),
        }
        if names:
            entity["detail"] = [{"type": "parameters", "valueString": names.replace("&", ",")}]
        entities.append(entity)
    if patient_id:
        entities.append(
            {
                "what": {"reference": f"Patient/{patient_id}"},
                "type": _coding(ENTITY_TYPE, "1", "Person"),
                "role": _coding(ENTITY_ROLE, "1", "Patient"),
            }
        )
    if record.request_id:
        entities.append(
            {
                "what": {"identifier": {"value": record.request_id}},
                "type": _coding(BALP_ENTITY_TYPE, "XrequestId", "X-Request-Id"),
            }
        )
    return entities


def audit_event(
    space_id: uuid.UUID, seq: int, record: Record, *, patient_id: str | None, base: str
) -> dict[str, Any]:
    """The AuditEvent of one record. `patient_id` is the space's Patient (None when unknown); `base` the FHIR
    base URL of this server (the observer)."""
    code = subtype(record)
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": event_id(space_id, seq),
        # A record never changes (the trace is append-only): its one version is 1.
        "meta": {"versionId": "1", "lastUpdated": _instant(record)},
        "language": "fr-FR",
        "text": _narrative(record),
        "type": _coding(AUDIT_EVENT_TYPE, "rest", "Restful Operation")
        if code
        else _coding(ESPACE_SANTE_EVENTS, record.action, record.action),
        "subtype": [_coding(RESTFUL_INTERACTION, code, code)],
        "action": ACTIONS.get(code, "U" if record.action.startswith("rights:") else "E"),
        "recorded": _instant(record),
        "outcome": record.outcome,
    }
    if not code:
        del event["subtype"]
    if record.outcome != "0":
        reason, policy = _reason(record)
        if policy and record.basis:
            fr, en = reasons.words(reason, "fr"), reasons.words(reason, "en")
            event["outcomeDesc"] = f"Accès refusé : {fr} / access refused: {en}"
        else:
            event["outcomeDesc"] = (
                f"Accès refusé / access refused: {record.basis or _OUTCOMES.get(record.outcome, '')}"
            )
    event["agent"] = [_agent(record, code), _server(base)]
    event["source"] = {
        "site": "espace-sante",
        "observer": {"identifier": {"system": URI, "value": base}, "display": "espace-sante"},
        "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
    }
    entities = _entities(record, patient_id)
    if entities:
        event["entity"] = entities
    return event
