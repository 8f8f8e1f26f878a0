"""Activation codes' SQL (`activation_code`, migration 0010): one row per space holding a keyed digest of the
live code, never the code. Every function runs in the caller's transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from espace_sante.access.policy import Decision
from espace_sante.storage import locks, people
from espace_sante.storage.db import Conn


@dataclass(frozen=True)
class CodeRow:
    space_id: uuid.UUID
    digest: bytes
    pepper_id: str
    expires_at: datetime
    used_at: datetime | None
    failures: int
    locked_at: datetime | None
    #: The database's clock when the row was read (expiry is judged on it, as every process shares it).
    now: datetime

    @property
    def expired(self) -> bool:
        return self.expires_at <= self.now


async def replace(
    conn: Conn, space_id: uuid.UUID, digest: bytes, pepper_id: str, expires_at: datetime
) -> tuple[bool, datetime]:
    """Store the space's new code, replacing any previous one (counters and lock cleared).
    Returns (whether a previous code was replaced, its expiry as stored)."""
    row = await conn.fetchrow(
        """INSERT INTO activation_code AS a (space_id, digest, pepper_id, expires_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (space_id) DO UPDATE SET digest = excluded.digest, pepper_id = excluded.pepper_id,
             issued_at = excluded.issued_at, expires_at = excluded.expires_at, used_at = NULL, failures = 0, locked_at = NULL
           RETURNING (xmax <> 0) AS replaced, expires_at""",
        space_id,
        digest,
        pepper_id,
        expires_at,
    )
    assert row is not None
    return bool(row["replaced"]), row["expires_at"]


async def find(conn: Conn, digests: list[bytes]) -> list[CodeRow]:
    """The rows whose digest is one of `digests` (one per configured pepper), locked for this transaction so
    that concurrent attempts on one code are judged one after the other."""
    rows = await locks.claim(
        conn,
        table="activation_code",
        columns="space_id, digest, pepper_id, expires_at, used_at, failures, locked_at, now() AS now",
        where="digest = ANY($1::bytea[])",
        args=(digests,),
        key=("space_id",),
        order="space_id",
        skip_locked=False,
    )
    return [
        CodeRow(
            r["space_id"],
            bytes(r["digest"]),
            r["pepper_id"],
            r["expires_at"],
            r["used_at"],
            int(r["failures"]),
            r["locked_at"],
            r["now"],
        )
        for r in rows
    ]


async def use(conn: Conn, space_id: uuid.UUID, digest: bytes) -> uuid.UUID | None:
    """Mark the code used, only if it still is the space's live, unused, unlocked, unexpired code: the one
    statement that decides a redemption (None when another one won, or the code changed meanwhile)."""
    value: uuid.UUID | None = await conn.fetchval(
        "UPDATE activation_code SET used_at = now() WHERE space_id = $1 AND digest = $2 AND used_at IS NULL "
        "AND locked_at IS NULL AND expires_at > now() RETURNING space_id",
        space_id,
        digest,
    )
    return value


async def fail(conn: Conn, space_id: uuid.UUID, digest: bytes, limit: int) -> tuple[int, bool]:
    """Count one wrong birth date on this code; lock it when the count reaches `limit`.
    Returns (failures now, whether this failure locked it)."""
    row = await conn.fetchrow(
        "UPDATE activation_code SET failures = failures + 1, "
        "locked_at = CASE WHEN failures + 1 >= $3 THEN now() END "
        "WHERE space_id = $1 AND digest = $2 AND locked_at IS NULL RETURNING failures, locked_at",
        space_id,
        digest,
        limit,
    )
    if row is None:
        return limit, False
    return int(row["failures"]), row["locked_at"] is not None


async def discard(conn: Conn, space_id: uuid.UUID) -> bool:
    """Forget the space's code (opposition, closure, destruction): nothing can be redeemed for it any more."""
    status: str = await conn.execute("DELETE FROM activation_code WHERE space_id = $1", space_id)
    return status.endswith(" 1")


async def issued_to_former_representatives(conn: Conn, space_id: uuid.UUID) -> bool:
    """Whether the space's live code was issued while the holder had legal representatives whose rights have
    ended since (the code went to them, before the 18th birthday)."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM activation_code a JOIN space_representative r USING (space_id) "
            "WHERE a.space_id = $1 AND r.until <= (now() AT TIME ZONE 'Europe/Paris')::date "
            "AND (a.issued_at AT TIME ZONE 'Europe/Paris')::date < r.until)",
            space_id,
        )
    )


async def holder_birth_date(conn: Conn, decision: Decision, space_id: uuid.UUID) -> date | None:
    """The birth date of the space's Patient (the registry's Patient when the space came from the registry,
    else the space's one Patient), from the search index: no body is decrypted. Under a decision to read
    Patient covering the space."""
    decision.require_read("Patient", [space_id])
    patient_id = await conn.fetchval(
        "SELECT patient_id FROM registry_person WHERE space_id = $1 LIMIT 1", space_id
    )
    if patient_id is None:
        patient_id = await conn.fetchval(
            "SELECT resource_id FROM resource WHERE space_id = $1 AND resource_type = 'Patient' AND NOT deleted "
            "ORDER BY last_updated LIMIT 1",
            space_id,
        )
    if patient_id is None:
        return None
    return await people.birth_date(conn, decision, space_id, str(patient_id))


async def last_opposition(conn: Conn, space_id: uuid.UUID) -> tuple[datetime, str, str] | None:
    """When and how the space's latest opposition was recorded, from its trace (which outlives the space's
    data): (recorded_at, channel, actor kind). The lifecycle writes `space:oppose` with detail
    `from>opposed|channel`."""
    row = await conn.fetchrow(
        "SELECT recorded_at, detail, actor_kind FROM audit_event WHERE space_id = $1 AND action = 'space:oppose' "
        "ORDER BY seq DESC LIMIT 1",
        space_id,
    )
    if row is None:
        return None
    return row["recorded_at"], str(row["detail"]).rpartition("|")[2], str(row["actor_kind"])
