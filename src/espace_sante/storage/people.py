"""Who a national identifier designates, read from the search index (no body is decrypted): the holder's
space and Patient from an INS, a professional's directory entry, profession and organisation from an RPPS."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date

from espace_sante.access.policy import Decision
from espace_sante.storage.db import Conn

INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
RPPS_SYSTEMS = ("https://rpps.esante.gouv.fr", "urn:oid:1.2.250.1.71.4.2.1")
FINESS_SYSTEMS = ("https://finess.esante.gouv.fr", "urn:oid:1.2.250.1.71.4.2.2")
PROFESSION_SYSTEMS = (
    "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante",
    "urn:oid:1.2.250.1.71.1.2.7",
)
SPECIALTY_SYSTEMS = (
    "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale",
    "urn:oid:1.2.250.1.213.2.28",
)


@dataclass(frozen=True)
class PatientRef:
    space_id: uuid.UUID
    patient_id: str


@dataclass(frozen=True)
class PractitionerRef:
    practitioner_id: str
    profession: str
    specialty: str
    organisation: str


async def patient_by_ins(conn: Conn, ins: str) -> PatientRef | None:
    """The person's own Patient: in the space the registry made for this INS when there is one, else in the
    oldest space whose live Patient carries it. Never the most recently or least recently written copy: a
    Patient another space holds with the same INS must not stand for the person (review of issue 16).

    One statement over the identifier index by value (migrations/0029, which holds the live Patients'
    identifiers) and the registry's links, both keyed by the INS: on Citus they are colocated, and it runs on
    one shard. Space ids are time-ordered (fhir/compartment.new_space_id): the smallest is the oldest."""
    row = await conn.fetchrow(
        "SELECT i.space_id, i.resource_id FROM patient_identifier i "
        "LEFT JOIN registry_person p ON p.nir = i.value AND p.space_id = i.space_id "
        "WHERE i.value = $1 AND i.system = $2 "
        "ORDER BY (p.space_id IS NULL), i.space_id, i.resource_id LIMIT 1",
        ins,
        INS_SYSTEM,
    )
    return None if row is None else PatientRef(row["space_id"], row["resource_id"])


async def ins_has_space(conn: Conn, system: str, value: str, *, besides: uuid.UUID | None = None) -> bool:
    """Whether a person with this INS has a space (other than `besides`): the registry's link, or a live
    Patient carrying it."""
    return bool(
        await conn.fetchval(
            # Both by the identifier's value, colocated on Citus: one shard (migrations/0029).
            "SELECT EXISTS (SELECT 1 FROM registry_person WHERE nir = $2 AND $1 = $3 "
            "AND space_id IS DISTINCT FROM $4) "
            "OR EXISTS (SELECT 1 FROM patient_identifier WHERE value = $2 AND system = $1 "
            "AND space_id IS DISTINCT FROM $4)",
            system,
            value,
            INS_SYSTEM,
            besides,
        )
    )


async def registry_patient(conn: Conn, ins: str) -> PatientRef | None:
    """The space the registry made for this INS and the id its Patient has (or will have once the space
    opens: migrations/0018)."""
    row = await conn.fetchrow("SELECT space_id, patient_id FROM registry_person WHERE nir = $1", ins)
    return None if row is None else PatientRef(row["space_id"], row["patient_id"])


async def practitioner_by_rpps(conn: Conn, rpps: str) -> PractitionerRef | None:
    """The directory Practitioner with this RPPS and, from its first active PractitionerRole, the profession
    (TRE_G15), the specialty and the organisation's FINESS."""
    pid = await conn.fetchval(
        "SELECT t.resource_id FROM dir_sp_token t JOIN dir_resource r USING (space_id, resource_type, resource_id) "
        "WHERE t.resource_type = 'Practitioner' AND t.param = 'identifier' AND t.code = $1 "
        "AND t.system = ANY($2::text[]) AND NOT r.deleted ORDER BY r.last_updated LIMIT 1",
        rpps,
        list(RPPS_SYSTEMS),
    )
    if pid is None:
        return None
    role = await conn.fetchrow(
        "SELECT x.resource_id, "
        "(SELECT t.code FROM dir_sp_token t WHERE t.space_id = x.space_id AND t.resource_type = x.resource_type "
        " AND t.resource_id = x.resource_id AND t.param = 'role' AND t.system = ANY($2::text[]) LIMIT 1) AS profession, "
        "(SELECT t.code FROM dir_sp_token t WHERE t.space_id = x.space_id AND t.resource_type = x.resource_type "
        " AND t.resource_id = x.resource_id AND t.param = 'specialty' AND t.system = ANY($3::text[]) LIMIT 1) AS specialty, "
        "(SELECT o.code FROM dir_sp_reference y JOIN dir_sp_token o ON o.resource_type = 'Organization' "
        " AND o.resource_id = y.target_id AND o.param = 'identifier' AND o.system = ANY($4::text[]) "
        " WHERE y.space_id = x.space_id AND y.resource_type = x.resource_type AND y.resource_id = x.resource_id "
        " AND y.param = 'organization' LIMIT 1) AS organisation "
        "FROM dir_sp_reference x JOIN dir_resource r USING (space_id, resource_type, resource_id) "
        "WHERE x.resource_type = 'PractitionerRole' AND x.param = 'practitioner' AND x.target_id = $1 "
        "AND NOT r.deleted ORDER BY r.last_updated LIMIT 1",
        pid,
        list(PROFESSION_SYSTEMS),
        list(SPECIALTY_SYSTEMS),
        list(FINESS_SYSTEMS),
    )
    if role is None:
        return PractitionerRef(pid, "", "", "")
    return PractitionerRef(pid, role["profession"] or "", role["specialty"] or "", role["organisation"] or "")


async def practitioners_rpps(conn: Conn, practitioner_ids: Sequence[str]) -> dict[str, set[str]]:
    """The RPPS each of these directory Practitioners carries (a trace records a professional by RPPS, a FHIR
    client may name him by his directory entry: `AuditEvent?agent=Practitioner/<id>`)."""
    if not practitioner_ids:
        return {}
    rows = await conn.fetch(
        "SELECT t.resource_id, t.code FROM dir_sp_token t JOIN dir_resource r USING (space_id, resource_type, resource_id) "
        "WHERE t.resource_type = 'Practitioner' AND t.resource_id = ANY($1::text[]) AND t.param = 'identifier' "
        "AND t.system = ANY($2::text[]) AND NOT r.deleted",
        list(practitioner_ids),
        list(RPPS_SYSTEMS),
    )
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(str(r["resource_id"]), set()).add(str(r["code"]))
    return out


async def operator_display(conn: Conn, login: str) -> str | None:
    value = await conn.fetchval("SELECT display FROM operator WHERE login = $1 AND NOT disabled", login)
    return None if value is None else str(value)


async def ensure_operator(conn: Conn, login: str, display: str) -> None:
    await conn.execute(
        "INSERT INTO operator (login, display) VALUES ($1, $2) ON CONFLICT (login) DO NOTHING", login, display
    )


async def birth_date(conn: Conn, decision: Decision, space_id: uuid.UUID, patient_id: str) -> date | None:
    """The holder's date of birth, from the search index (for the end of a representative's rights), under
    a decision to read Patient covering the space."""
    decision.require_read("Patient", [space_id])
    value = await conn.fetchval(
        "SELECT low FROM sp_date WHERE space_id = $1 AND resource_type = 'Patient' AND resource_id = $2 "
        "AND param = 'birthdate' LIMIT 1",
        space_id,
        patient_id,
    )
    return None if value is None else value.astimezone(UTC).date()


async def ins_of_space(conn: Conn, decision: Decision, space_id: uuid.UUID) -> str | None:
    """The INS of a space's holder, from the search index; for a space the registry made whose Patient is
    not written yet (migrations/0018), from the registry's link. Under a decision to read Patient there."""
    decision.require_read("Patient", [space_id])
    value = await conn.fetchval(
        "SELECT t.code FROM sp_token t JOIN resource r USING (space_id, resource_type, resource_id) "
        "WHERE t.space_id = $1 AND t.resource_type = 'Patient' AND t.param = 'identifier' AND t.system = $2 "
        "AND NOT r.deleted LIMIT 1",
        space_id,
        INS_SYSTEM,
    )
    if value is None:
        value = await conn.fetchval(
            "SELECT nir FROM registry_person WHERE space_id = $1 AND pending IS NOT NULL", space_id
        )
    return None if value is None else str(value)


async def ins_of_spaces(conn: Conn, decision: Decision, spaces: Sequence[uuid.UUID]) -> list[str]:
    """The INS of these spaces' holders, in one statement: from their Patients' search index and from the
    registry's links (a space the registry made keeps its link). Under a decision to read Patient there."""
    decision.require_read("Patient", spaces)
    rows = await conn.fetch(
        "SELECT t.code FROM sp_token t JOIN resource r USING (space_id, resource_type, resource_id) "
        "WHERE t.space_id = ANY($1::uuid[]) AND t.resource_type = 'Patient' AND t.param = 'identifier' "
        "AND t.system = $2 AND NOT r.deleted "
        "UNION SELECT nir FROM registry_person WHERE space_id = ANY($1::uuid[])",
        list(spaces),
        INS_SYSTEM,
    )
    return sorted(str(r["code"]) for r in rows)


async def known_person(conn: Conn, ins: str) -> bool:
    """Whether this INS names a person: a live Patient carries it, or the registry made them a space."""
    if await patient_by_ins(conn, ins) is not None:
        return True
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM registry_person WHERE nir = $1)", ins))


async def representatives_of(conn: Conn, decision: Decision, space_id: uuid.UUID) -> list[str]:
    """The INS of the space's legal representatives whose rights run today (people's identities: under a
    decision to read Patient covering the space)."""
    decision.require_read("Patient", [space_id])
    rows = await conn.fetch(
        "SELECT representative_ins FROM space_representative WHERE space_id = $1 "
        "AND until > (now() AT TIME ZONE 'Europe/Paris')::date",
        space_id,
    )
    return [r["representative_ins"] for r in rows]
