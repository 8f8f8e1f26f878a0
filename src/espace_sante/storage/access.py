"""The facts the access policy decides on, read in the action's own transaction (a consent withdrawn or a
block set while a request runs is seen by that request or not at all: SECURITY V11 11.1.6), and the writes
that change them. Rows are in migrations/0003_access.sql."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import orjson

from espace_sante.access import matrix as habilitation
from espace_sante.access.actors import Actor
from espace_sante.access.policy import SpaceFacts
from espace_sante.storage.db import Conn
from espace_sante.storage.people import INS_SYSTEM, patient_by_ins


def _who(actor: Actor) -> list[str]:
    """The names a professional's bases may be recorded under: their RPPS, and their organisation's care team."""
    names = [actor.id]
    if actor.organisation:
        names.append(f"finess:{actor.organisation}")
    return names


async def related_spaces(conn: Conn, actor: Actor, *, today: date) -> list[uuid.UUID]:
    """Every space the actor may have something in: the holder's own (an app's holder's), a representative's
    minors (rights not yet ended), a professional's spaces with an active basis or emergency access. The
    policy still decides on each."""
    if actor.kind in ("holder", "app"):
        ins = actor.id if actor.kind == "holder" else actor.subject
        found = await patient_by_ins(conn, ins) if ins else None
        return [] if found is None else [found.space_id]
    if actor.kind == "representative":
        rows = await conn.fetch(
            "SELECT space_id FROM space_representative WHERE representative_ins = $1 AND until > $2",
            actor.id,
            today,
        )
        return [r["space_id"] for r in rows]
    if actor.kind == "practitioner":
        rows = await conn.fetch(
            "SELECT space_id FROM access_basis WHERE who = ANY($1::text[]) AND revoked_at IS NULL "
            "UNION SELECT space_id FROM emergency_access WHERE rpps = $2 AND ends_at > now()",
            _who(actor),
            actor.id,
        )
        return sorted(r["space_id"] for r in rows)
    return []


async def facts(conn: Conn, actor: Actor, spaces: Sequence[uuid.UUID], *, today: date) -> list[SpaceFacts]:
    """The facts of each space for this actor, in one query (it runs before every person's request)."""
    if not spaces:
        return []
    holder_ins = actor.id if actor.kind == "holder" else actor.subject if actor.kind == "app" else ""
    representative = actor.id if actor.kind == "representative" else ""
    rpps = actor.id if actor.kind == "practitioner" else ""
    distinct = list(dict.fromkeys(spaces))
    # One space (a request naming its record): every table is filtered on that space by an equality, which
    # Citus routes to the space's shard (it sends `= ANY` of one element, or a correlation it cannot follow
    # through the UNION below, elsewhere). Several: each subquery follows the row's space.
    one = len(distinct) == 1
    sp = "$1::uuid" if one else "r.space_id"
    rows = await conn.fetch(
        "SELECT r.space_id, r.resource_id AS patient_id, s.emergency_refused, s.samu_refused, "
        "s.masked_in_emergency, s.shared_sections, s.matrix_overrides, "
        f"($2 <> '' AND EXISTS (SELECT 1 FROM sp_token t WHERE t.space_id = {sp} AND "
        " t.resource_type = 'Patient' AND t.resource_id = r.resource_id AND t.param = 'identifier' "
        " AND t.system = $6 AND t.code = $2)) AS is_holder, "
        f"(SELECT p.until FROM space_representative p WHERE p.space_id = {sp} "
        " AND p.representative_ins = $3) AS until, "
        f"ARRAY(SELECT b.basis FROM access_basis b WHERE b.space_id = {sp} AND b.who = ANY($5::text[]) "
        f" AND b.revoked_at IS NULL UNION SELECT e.kind FROM emergency_access e WHERE e.space_id = {sp} "
        " AND e.rpps = $4 AND e.ends_at > now()) AS bases, "
        f"EXISTS (SELECT 1 FROM access_block k WHERE k.space_id = {sp} AND k.rpps = $4) AS blocked, "
        # The lifecycle state (0009_lifecycle.sql): the policy reaches only spaces in a usable state.
        "sp.state "
        f"FROM resource r JOIN space sp ON sp.space_id = r.space_id "
        f"LEFT JOIN space_settings s ON s.space_id = r.space_id "
        f"WHERE {'r.space_id = $1::uuid' if one else 'r.space_id = ANY($1::uuid[])'} "
        "AND r.resource_type = 'Patient' AND NOT r.deleted",
        distinct[0] if len(distinct) == 1 else distinct,
        holder_ins,
        representative,
        rpps,
        _who(actor) if rpps else [],
        INS_SYSTEM,
    )
    out = []
    for r in rows:
        relation = "holder" if r["is_holder"] else "representative" if r["until"] is not None else ""
        out.append(
            SpaceFacts(
                space_id=r["space_id"],
                patient_id=r["patient_id"],
                relation=relation,  # type: ignore[arg-type]
                representative_until=r["until"],
                bases=frozenset(r["bases"]),
                blocked=r["blocked"],
                emergency_refused=bool(r["emergency_refused"]),
                samu_refused=bool(r["samu_refused"]),
                masked_in_emergency=bool(r["masked_in_emergency"]),
                shared_sections=None if r["shared_sections"] is None else frozenset(r["shared_sections"]),
                overrides=_overrides(r["matrix_overrides"]),
                state=r["state"],
            )
        )
    return out


def _overrides(raw: Any) -> dict[str, habilitation.Override]:
    data = orjson.loads(raw) if isinstance(raw, (str, bytes)) else (raw or {})
    return {
        str(profession): habilitation.Override(frozenset(v.get("add", ())), frozenset(v.get("remove", ())))
        for profession, v in data.items()
        if isinstance(v, dict)
    }


# --- changes of rights (the services trace each one in the same transaction) ----------------------------


async def set_basis(
    conn: Conn, space_id: uuid.UUID, who: str, basis: str, granted_by: str, *, lifts_objection: bool = True
) -> bool:
    """Give (or give again) a basis. False when the holder objected to it and this grant may not lift that
    (a professional declaring themselves)."""
    status: str = await conn.execute(
        "INSERT INTO access_basis (space_id, who, basis, granted_by) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (space_id, who, basis) DO UPDATE SET granted_by = EXCLUDED.granted_by, "
        "granted_at = EXCLUDED.granted_at, revoked_at = NULL, objected_at = NULL "
        "WHERE access_basis.objected_at IS NULL OR $5",
        space_id,
        who,
        basis,
        granted_by,
        lifts_objection,
    )
    return status.endswith(" 1")


async def revoke_basis(
    conn: Conn, space_id: uuid.UUID, who: str, basis: str, *, objection: bool = False
) -> bool:
    """End a basis; with `objection` (the holder's), it also stays ended until the holder gives it again."""
    # Two spellings rather than a CASE: Citus refuses now() inside CASE in a distributed UPDATE.
    status: str = await conn.execute(
        "UPDATE access_basis SET revoked_at = now()"
        + (", objected_at = now()" if objection else "")
        + " WHERE space_id = $1 AND who = $2 AND basis = $3 AND revoked_at IS NULL",
        space_id,
        who,
        basis,
    )
    return status.endswith(" 1")


async def medecin_traitant(conn: Conn, space_id: uuid.UUID) -> str | None:
    value = await conn.fetchval(
        "SELECT who FROM access_basis WHERE space_id = $1 AND basis = 'medecin_traitant' AND revoked_at IS NULL",
        space_id,
    )
    return None if value is None else str(value)


async def bases_of(conn: Conn, space_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT who, basis, granted_by, granted_at, revoked_at FROM access_basis WHERE space_id = $1 "
        "ORDER BY granted_at, who",
        space_id,
    )
    return [dict(r) for r in rows]


async def block(conn: Conn, space_id: uuid.UUID, rpps: str) -> None:
    await conn.execute(
        "INSERT INTO access_block (space_id, rpps) VALUES ($1, $2) ON CONFLICT DO NOTHING", space_id, rpps
    )


async def unblock(conn: Conn, space_id: uuid.UUID, rpps: str) -> bool:
    status: str = await conn.execute(
        "DELETE FROM access_block WHERE space_id = $1 AND rpps = $2", space_id, rpps
    )
    return status.endswith(" 1")


async def blocked_of(conn: Conn, space_id: uuid.UUID) -> list[str]:
    rows = await conn.fetch("SELECT rpps FROM access_block WHERE space_id = $1 ORDER BY rpps", space_id)
    return [r["rpps"] for r in rows]


async def start_emergency(
    conn: Conn, space_id: uuid.UUID, rpps: str, kind: str, reason: str, ends_at: datetime
) -> uuid.UUID:
    access_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO emergency_access (space_id, access_id, rpps, kind, reason, ends_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        space_id,
        access_id,
        rpps,
        kind,
        reason,
        ends_at,
    )
    return access_id


async def save_settings(
    conn: Conn,
    space_id: uuid.UUID,
    *,
    emergency_refused: bool,
    samu_refused: bool,
    masked_in_emergency: bool,
    shared_sections: Sequence[str] | None,
    matrix_overrides: dict[str, dict[str, list[str]]],
) -> None:
    await conn.execute(
        "INSERT INTO space_settings (space_id, emergency_refused, samu_refused, masked_in_emergency, "
        "shared_sections, matrix_overrides) VALUES ($1, $2, $3, $4, $5, $6::jsonb) "
        "ON CONFLICT (space_id) DO UPDATE SET emergency_refused = EXCLUDED.emergency_refused, "
        "samu_refused = EXCLUDED.samu_refused, masked_in_emergency = EXCLUDED.masked_in_emergency, "
        "shared_sections = EXCLUDED.shared_sections, matrix_overrides = EXCLUDED.matrix_overrides, "
        "updated_at = EXCLUDED.updated_at",
        space_id,
        emergency_refused,
        samu_refused,
        masked_in_emergency,
        None if shared_sections is None else list(shared_sections),
        orjson.dumps(matrix_overrides).decode(),
    )


async def add_representative(conn: Conn, space_id: uuid.UUID, representative_ins: str, until: date) -> None:
    await conn.execute(
        "INSERT INTO space_representative (space_id, representative_ins, until) VALUES ($1, $2, $3) "
        "ON CONFLICT (space_id, representative_ins) DO UPDATE SET until = EXCLUDED.until",
        space_id,
        representative_ins,
        until,
    )


async def is_representative(
    conn: Conn, space_id: uuid.UUID, representative_ins: str, *, on: date | None = None
) -> bool:
    """Whether this person represents the space's holder (on `on`: with rights not ended that day)."""
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM space_representative WHERE space_id = $1 AND representative_ins = $2 "
            "AND ($3::date IS NULL OR until > $3)",
            space_id,
            representative_ins,
            on,
        )
    )


async def patient_of_space(conn: Conn, space_id: uuid.UUID) -> str | None:
    value = await conn.fetchval(
        "SELECT resource_id FROM resource WHERE space_id = $1 AND resource_type = 'Patient' AND NOT deleted",
        space_id,
    )
    return None if value is None else str(value)
