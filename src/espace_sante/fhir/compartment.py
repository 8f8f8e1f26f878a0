"""Which space a resource belongs to, and ids that say so.

Each Patient defines a space; the resources about that patient live in it. A resource names its patient by one
element (FHIR R4 Patient compartment, compartmentdefinition-patient.html, narrowed to the one element that holds
the record's subject). Practitioner, PractitionerRole and Organization are directory data, outside spaces.

Ids of space resources are 48 hex characters: the space id (32) then 16 random. The server assigns them (no
update-as-create), so any request that names a resource also names its space, and a query can go to that
space's partition without a global lookup (DESIGN.md: every query of a request is scoped to one space)."""

from __future__ import annotations

import os
import re
import secrets
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from asyncpg.pgproto import pgproto

DIRECTORY_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization"})

#: The element of each space type that names its patient (a Reference to Patient).
PATIENT_ELEMENT: Mapping[str, str] = {
    "RelatedPerson": "patient",
    "DocumentReference": "subject",
    "List": "subject",
    "AllergyIntolerance": "patient",
    "MedicationStatement": "subject",
    "Condition": "subject",
    "Procedure": "subject",
    "Immunization": "patient",
    "Observation": "subject",
    "Consent": "patient",
    "Communication": "subject",
    "Appointment": "participant.actor",
    "AuditEvent": "entity.what",
    "Binary": "securityContext",
}

_SPACE_ID = re.compile(r"^[0-9a-f]{48}$")
_DIRECTORY_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# FHIR id datatype (datatypes.html#id)
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def is_directory(resource_type: str) -> bool:
    return resource_type in DIRECTORY_TYPES


def new_space_id() -> uuid.UUID:
    [(space, _)] = new_spaces(1)
    return space


def _time_ordered(ms: bytes, rand: bytes) -> uuid.UUID:
    """A UUID version 7 (RFC 9562 section 5.7): 48 bits of Unix time in milliseconds (`ms`, 6 bytes), then 74
    random bits (`rand`, 10 bytes, of which the version and variant take 6 bits). It is asyncpg's UUID, a
    `uuid.UUID` (equal, same hash) that the driver writes without calling back into Python: a bulk import
    writes each space id in eight tables."""
    raw = bytearray(ms + rand)
    raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
    raw[8] = (raw[8] & 0x3F) | 0x80  # variant RFC 9562
    return pgproto.UUID(bytes(raw))


def new_resource_id(space_id: uuid.UUID | None) -> str:
    """A server-assigned id: space-prefixed for space data, a UUID for directory data."""
    if space_id is None:
        return str(uuid.uuid4())
    return space_id.hex + secrets.token_hex(8)


def new_spaces(n: int) -> list[tuple[uuid.UUID, str]]:
    """`n` new (space id, its first resource's id as `new_resource_id` makes it) pairs, from one read of the
    system's random source (a bulk import makes thousands at a time).

    Space ids are time-ordered (UUID version 7): every table's key leads with the space id, so new spaces'
    rows go to the right-hand end of those indexes instead of a random page of each. With random ids the
    registry import's PostgreSQL cost per person doubled between 100,000 and 1,000,000 spaces, once the
    indexes outgrew memory: each insert dirtied a page of its own, and wrote it whole to the WAL after every
    checkpoint (benchmarks/README.md, "Provisioning"). 74 random bits keep them unguessable; the creation
    time they show (to the millisecond) is no secret of a space."""
    pool = os.urandom(18 * n)
    ms = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    out = []
    for at in range(0, 18 * n, 18):
        space = _time_ordered(ms, pool[at : at + 10])
        out.append((space, space.hex + pool[at + 10 : at + 18].hex()))
    return out


def random_id() -> uuid.UUID:
    """A random UUID (version 4, RFC 9562 section 5.4) as asyncpg's UUID: a third of `uuid.uuid4()`'s cost,
    and the driver writes it without calling back into Python (a bulk import makes one per notice)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # variant RFC 9562
    return pgproto.UUID(bytes(raw))


def space_of(resource_id: str) -> uuid.UUID | None:
    """The space a space resource id belongs to, or None when the id is not one of ours."""
    if _SPACE_ID.match(resource_id):
        return uuid.UUID(resource_id[:32])
    return None


def is_directory_id(resource_id: str) -> bool:
    return bool(_DIRECTORY_ID.match(resource_id))


def references_at(resource: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every Reference object at a dotted path, with a FHIRPath-like location for error messages."""

    def walk(node: Any, parts: list[str], where: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        if isinstance(node, list):
            for i, item in enumerate(node):
                yield from walk(item, parts, f"{where}[{i}]")
            return
        if not parts:
            if isinstance(node, Mapping):
                yield where, node
            return
        if isinstance(node, Mapping) and parts[0] in node:
            yield from walk(node[parts[0]], parts[1:], f"{where}.{parts[0]}")

    rtype = str(resource.get("resourceType", ""))
    yield from walk(resource, path.split("."), rtype)


def patient_references(resource: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(location, reference string) of the references that may name the resource's patient."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or rtype not in PATIENT_ELEMENT:
        return []
    found = []
    for where, ref in references_at(resource, PATIENT_ELEMENT[rtype]):
        value = ref.get("reference")
        if isinstance(value, str) and value and not value.startswith("#"):
            # Appointment participants and AuditEvent entities name many kinds of things; keep patients.
            if rtype in ("Appointment", "AuditEvent") and not _names_patient(value):
                continue
            found.append((f"{where}.reference", value))
    return found


def _names_patient(reference: str) -> bool:
    return reference.startswith(("Patient/", "Patient?", "urn:uuid:")) or "/Patient/" in reference
