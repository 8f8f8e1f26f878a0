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
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

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
    return uuid.uuid4()


def new_resource_id(space_id: uuid.UUID | None) -> str:
    """A server-assigned id: space-prefixed for space data, a UUID for directory data."""
    if space_id is None:
        return str(uuid.uuid4())
    return space_id.hex + secrets.token_hex(8)


def new_spaces(n: int) -> list[tuple[uuid.UUID, str]]:
    """`n` new (space id, its first resource's id) pairs, as `new_space_id` and `new_resource_id` make them,
    from one read of the system's random source (a bulk import makes thousands at a time)."""
    pool = os.urandom(24 * n)
    out = []
    for at in range(0, 24 * n, 24):
        space = uuid.UUID(bytes=pool[at : at + 16], version=4)
        out.append((space, space.hex + pool[at + 16 : at + 24].hex()))
    return out


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
