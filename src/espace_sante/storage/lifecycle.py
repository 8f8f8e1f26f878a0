"""The lifecycle's SQL (migrations/0009_lifecycle.sql): a space's state row, the set-based searches of
`lifecycle run`, and the deletion of a space's data. Which transition is legal is decided by the table in
spaces/lifecycle.py, which passes the allowed source states to every statement here: a row whose state
changed meanwhile is simply not matched."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from espace_sante.storage import locks, people
from espace_sante.storage.db import Conn
from espace_sante.storage.keys import KeyStore
from espace_sante.storage.provision import clear_pending

#: Tables with a `space_id` that outlive the space's data: the space row itself (its state is the
#: tombstone), its trace (kept as the record of what was done; it holds no medical content and its rows
#: cannot be deleted: 0002_audit.sql), and the registry's INS -> space link (so that a later import does
#: not make a second space for an opposed person). Every other table with a space_id is space data and is
#: deleted; tests/lifecycle checks that a new table falls on one side.
KEPT_TABLES = frozenset({"space", "audit_chain", "audit_event", "audit_seal", "registry_person"})
#: Deleted first: rows that reference others (binary_content -> blob).
_FIRST = ("binary_content",)


@dataclass(frozen=True)
class SpaceRow:
    space_id: uuid.UUID
    state: str
    state_at: Any
    opens_on: date | None
    prior_state: str | None
    closed_reason: str | None
    destroy_on: date | None


async def lock(conn: Conn, space_id: uuid.UUID) -> SpaceRow | None:
    """The space's lifecycle row, locked until the end of the transaction."""
    row = await conn.fetchrow(
        "SELECT space_id, state, state_at, opens_on, prior_state, closed_reason, destroy_on FROM space "
        "WHERE space_id = $1 FOR UPDATE",
        space_id,
    )
    return None if row is None else SpaceRow(**dict(row))


async def space_of_ins(conn: Conn, ins: str) -> uuid.UUID | None:
    """The space of a person: the one the registry made for this INS (kept after destruction, so that the
    state can still be told), else the oldest live Patient carrying it (spaces made through the API before the
    registry knew the person). The registry's link comes first: a Patient another space made with the same
    INS must not stand for the person's own space."""
    made = await conn.fetchval("SELECT space_id FROM registry_person WHERE nir = $1", ins)
    if made is not None:
        return uuid.UUID(str(made))
    ref = await people.patient_by_ins(conn, ins)
    return None if ref is None else uuid.UUID(str(ref.space_id))


async def represented_by(conn: Conn, representative_ins: str, on: date) -> list[tuple[uuid.UUID, str, date]]:
    """(space, state, end of the rights) of the spaces this person represents on `on` (rights not ended that
    day), destroyed ones left out, in a stable order."""
    rows = await conn.fetch(
        "SELECT r.space_id, s.state, r.until FROM space_representative r JOIN space s USING (space_id) "
        "WHERE r.representative_ins = $1 AND r.until > $2 AND s.state <> 'destroyed' ORDER BY r.space_id",
        representative_ins,
        on,
    )
    return [(r["space_id"], r["state"], r["until"]) for r in rows]


async def row_of(conn: Conn, space_id: uuid.UUID) -> SpaceRow | None:
    """The space's lifecycle row, without a lock (what the holder or an operator is shown)."""
    row = await conn.fetchrow(
        "SELECT space_id, state, state_at, opens_on, prior_state, closed_reason, destroy_on FROM space "
        "WHERE space_id = $1",
        space_id,
    )
    return None if row is None else SpaceRow(**dict(row))


async def state_of(conn: Conn, space_id: uuid.UUID) -> str | None:
    value = await conn.fetchval("SELECT state FROM space WHERE space_id = $1", space_id)
    return None if value is None else str(value)


async def move(
    conn: Conn,
    space_id: uuid.UUID,
    sources: frozenset[str],
    target: str,
    *,
    opens_on: date | None = None,
    prior_state: str | None = None,
    closed_reason: str | None = None,
    destroy_on: date | None = None,
) -> bool:
    """Set the new state if the space is still in one of `sources`; False otherwise. The date columns are
    those of the new state (others are cleared)."""
    status: str = await conn.execute(
        "UPDATE space SET state = $3, state_at = now(), opens_on = $4, prior_state = $5, closed_reason = $6, "
        "destroy_on = $7 WHERE space_id = $1 AND state = ANY($2::text[])",
        space_id,
        sorted(sources),
        target,
        opens_on,
        prior_state,
        closed_reason,
        destroy_on,
    )
    return status.endswith(" 1")


async def move_due(conn: Conn, due_sql: str, sources: frozenset[str], target: str, *args: Any, limit: int,
                   closed_reason: str | None = None) -> list[uuid.UUID]:  # fmt: skip
    """Move up to `limit` spaces in `sources` matching `due_sql` (a condition on `space`, parameters from $2)
    to `target`, skipping rows another run holds; returns them."""
    held = await locks.claim(
        conn,
        table="space",
        columns="space_id",
        where=f"state = ANY($1::text[]) AND ({due_sql})",
        args=(sorted(sources), *args),
        key=("space_id",),
        order="space_id",
        limit=limit,
    )
    if not held:
        return []
    rows = await conn.fetch(
        "UPDATE space SET state = $2, state_at = now(), opens_on = NULL, prior_state = NULL, "
        "closed_reason = $3, destroy_on = NULL WHERE space_id = ANY($1::uuid[]) RETURNING space_id",
        [r["space_id"] for r in held],
        target,
        closed_reason,
    )
    return sorted(r["space_id"] for r in rows)


async def coming_of_age(
    conn: Conn, states: frozenset[str], as_of: date, *, limit: int
) -> list[tuple[uuid.UUID, str]]:
    """(space, state) of spaces in `states` with a representative whose rights ended by `as_of` and were not
    yet handled, locked (another run skips them)."""
    rows = await locks.claim(
        conn,
        table="space s",
        columns="s.space_id, s.state",
        where="s.space_id IN (SELECT p.space_id FROM space_representative p WHERE NOT p.of_age_done "
        "AND p.until <= $2) AND s.state = ANY($1::text[])",
        args=(sorted(states), as_of),
        key=("s.space_id",),
        order="s.space_id",
        limit=limit,
    )
    return [(r["space_id"], r["state"]) for r in rows]


async def mark_of_age(conn: Conn, spaces: Sequence[uuid.UUID], as_of: date) -> None:
    await conn.execute(
        "UPDATE space_representative SET of_age_done = true WHERE space_id = ANY($1::uuid[]) AND until <= $2",
        list(spaces),
        as_of,
    )


async def due_for_destruction(conn: Conn, as_of: date, archive_years: int, *, limit: int) -> list[uuid.UUID]:
    """Closed spaces whose archive period ended, or whose holder asked for destruction due by `as_of`,
    locked (another run skips them)."""
    rows = await locks.claim(
        conn,
        table="space",
        columns="space_id",
        where="state = 'closed' AND (destroy_on <= $1 OR "
        "(state_at AT TIME ZONE 'Europe/Paris')::date + make_interval(years => $2) <= $1)",
        args=(as_of, archive_years),
        key=("space_id",),
        order="space_id",
        limit=limit,
    )
    return [r["space_id"] for r in rows]


@dataclass(frozen=True)
class DeathCandidate:
    """A space whose identity changed since it was last checked for a death date: its change count, and its
    live Patients' ids, or the id of the Patient whose identity waits in the registry."""

    space_id: uuid.UUID
    identity_version: int
    patients: tuple[str, ...]
    waiting: str | None


async def death_candidates(
    conn: Conn, live: frozenset[str], *, after: uuid.UUID | None, limit: int
) -> list[DeathCandidate]:
    """Up to `limit` spaces in a live state whose identity changed since it was last checked
    (`identity_version > death_checked`, the partial index of migrations/0022), by space id from `after`."""
    rows = await conn.fetch(
        "WITH due AS (SELECT space_id, identity_version FROM space "
        "WHERE identity_version > death_checked AND state = ANY($1::text[]) "
        f"AND ($2::uuid IS NULL OR space_id > $2) ORDER BY space_id LIMIT {int(limit)}) "
        "SELECT d.space_id, d.identity_version, r.resource_id, p.patient_id AS waiting "
        "FROM due d LEFT JOIN resource r ON r.space_id = d.space_id AND r.resource_type = 'Patient' "
        "AND NOT r.deleted LEFT JOIN registry_person p ON p.space_id = d.space_id AND p.pending IS NOT NULL "
        "ORDER BY d.space_id, r.resource_id",
        sorted(live),
        after,
    )
    out: list[DeathCandidate] = []
    for r in rows:
        if not out or out[-1].space_id != r["space_id"]:
            out.append(DeathCandidate(r["space_id"], r["identity_version"], (), r["waiting"]))
        if r["resource_id"] is not None:
            last = out[-1]
            out[-1] = replace(last, patients=(*last.patients, r["resource_id"]))
    return out


async def mark_death_checked(conn: Conn, checked: Sequence[tuple[uuid.UUID, int]]) -> None:
    """(space, identity_version read): checked up to that change (a later change stays due)."""
    if checked:
        await conn.execute(
            "UPDATE space s SET death_checked = c.version FROM unnest($1::uuid[], $2::bigint[]) AS c(id, version) "
            "WHERE s.space_id = c.id AND s.death_checked < c.version",
            [c[0] for c in checked],
            [c[1] for c in checked],
        )


async def space_tables(conn: Conn) -> list[str]:
    """Every table of space data (a NOT NULL space_id column) except the kept ones, children first."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'space_id' AND a.attnotnull "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY c.relname"
    )
    names = [r["relname"] for r in rows if r["relname"] not in KEPT_TABLES and r["relname"] != "space_key"]
    return sorted(names, key=lambda name: (name not in _FIRST, name))


async def blob_keys(conn: Conn, spaces: Sequence[uuid.UUID]) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """The stored objects of these spaces (to delete from the blob store once their rows are gone)."""
    rows = await conn.fetch(
        "SELECT space_id, blob_id FROM blob WHERE space_id = ANY($1::uuid[]) "
        "UNION SELECT space_id, blob_id FROM blob_upload WHERE space_id = ANY($1::uuid[])",
        list(spaces),
    )
    return [(r["space_id"], r["blob_id"]) for r in rows]


async def erase(conn: Conn, keys: KeyStore, spaces: Sequence[uuid.UUID]) -> int:
    """Delete every row of these spaces' data (resources, versions, index, rights, documents, settings...)
    and destroy their data keys (crypto-shredding: what a backup still holds can never be decrypted).
    Returns the number of rows deleted. The trace and the space rows stay (KEPT_TABLES)."""
    ids = list(spaces)
    deleted = 0
    for table in await space_tables(conn):
        status: str = await conn.execute(f'DELETE FROM "{table}" WHERE space_id = ANY($1::uuid[])', ids)
        deleted += int(status.split()[-1])
    for space_id in ids:
        deleted += await keys.destroy(conn, space_id)
    # The registry's link stays (KEPT_TABLES: the person's INS still finds the space and its state), but not
    # an identity still waiting for the Patient (migrations/0018): unreadable now anyway, its key is gone.
    await clear_pending(conn, ids)
    return deleted
