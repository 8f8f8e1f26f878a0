"""The trace's SQL for the AuditEvent view: one record, and a space's records filtered and paged, newest first.

Every query is scoped to one space's chain (the primary key's leading column) and to a snapshot: the highest
sequence number the listing covers. Reading the trace appends a record to the very chain being listed, so
without the snapshot each page would shift the next by one."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from espace_sante.access.policy import Decision
from espace_sante.storage import db
from espace_sante.storage.audit import (  # one row shape for the whole trace
    RECORD_COLUMNS,
    REFUSED_SUBTYPES,
    SUBTYPES,
    StoredRecord,
    stored_record,
)
from espace_sante.storage.db import Conn

#: An actor a listing asks for: (kind or None for any kind, id or None for any id).
Agent = tuple[str | None, str | None]


@dataclass(frozen=True)
class Range:
    """`recorded_at` in [low, high) (a bound None is open); `negate` for the `ne` prefix."""

    low: datetime | None
    high: datetime | None
    negate: bool = False


@dataclass(frozen=True)
class TraceQuery:
    """A filtered listing of one chain. Each list is an AND of ORs; None means "no filter"."""

    space_id: uuid.UUID
    upto: int
    dates: Sequence[Sequence[Range]] = ()
    subtypes: frozenset[str] | None = None
    outcomes: frozenset[str] | None = None
    seqs: frozenset[int] | None = None
    #: (entity type or None for any, entity id): a record matches one of them.
    entities: Sequence[tuple[str | None, str]] | None = None
    #: Who acted, as an AND of ORs of actors (one OR per `agent` clause).
    agents: Sequence[Sequence[Agent]] = ()
    #: A filter that can match nothing (a code of another system): skip the rows, keep the query's shape.
    nothing: bool = False
    #: (actor kind, actor id): only that actor's records (a professional sees their own accesses).
    actor: tuple[str, str] | None = None
    #: (actor kind, actor id): that actor's records left out (the holder's home shows what others did).
    not_actor: tuple[str, str] | None = None
    #: (entity type, entity id) whose records are left out (documents hidden from the reader).
    excluded: Sequence[tuple[str, str]] = ()


def _literal(text: str) -> str:
    # The codes come from constant tables in audit/fhir.py, never from a request; quoted all the same.
    return "'" + text.replace("'", "''") + "'"


def _subtype_sql() -> str:
    """The restful-interaction code of a row, in SQL (the same tables audit/fhir.subtype reads)."""
    cases = " ".join(
        f"WHEN {_literal(action)} THEN {_literal(code)}"
        for action, code in SUBTYPES.items()
        if action != "resource:history"
    )
    refused = " ".join(f"WHEN {_literal(a)} THEN {_literal(c)}" for a, c in REFUSED_SUBTYPES.items())
    return (
        f"(CASE WHEN action = 'resource:history' THEN "
        f"(CASE WHEN entity_id IS NULL THEN 'history-type' ELSE 'history-instance' END) "
        f"WHEN action = 'access:refused' THEN (CASE detail {refused} ELSE 'read' END) "
        f"ELSE (CASE action {cases} END) END)"
    )


_SUBTYPE = _subtype_sql()


def _where(q: TraceQuery) -> tuple[str, list[Any]]:
    params: list[Any] = [q.space_id, q.upto]
    conds = ["space_id = $1", "seq <= $2"]

    def arg(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if q.nothing:
        conds.append("false")
    if q.actor is not None:
        conds.append(f"actor_kind = {arg(q.actor[0])} AND actor_id = {arg(q.actor[1])}")
    if q.not_actor is not None:
        conds.append(f"NOT (actor_kind = {arg(q.not_actor[0])} AND actor_id = {arg(q.not_actor[1])})")
    if q.excluded:
        conds.append(
            f"(entity_id IS NULL OR (entity_type, entity_id) NOT IN (SELECT * FROM unnest("
            f"{arg([t for t, _ in q.excluded])}::text[], {arg([i for _, i in q.excluded])}::text[])))"
        )
    for ors in q.dates:
        parts = []
        for r in ors:
            bounds = []
            if r.low is not None:
                bounds.append(f"recorded_at >= {arg(r.low)}")
            if r.high is not None:
                bounds.append(f"recorded_at < {arg(r.high)}")
            expr = " AND ".join(bounds) or "true"
            parts.append(f"NOT ({expr})" if r.negate else f"({expr})")
        conds.append("(" + " OR ".join(parts or ["false"]) + ")")
    if q.subtypes is not None:
        conds.append(f"{_SUBTYPE} = ANY({arg(sorted(q.subtypes))}::text[])")
    if q.outcomes is not None:
        conds.append(f"outcome = ANY({arg(sorted(q.outcomes))}::text[])")
    if q.seqs is not None:
        conds.append(f"seq = ANY({arg(sorted(q.seqs))}::bigint[])")
    if q.entities is not None:
        parts = []
        for rtype, rid in q.entities:
            if rtype is None:
                parts.append(f"entity_id = {arg(rid)}")
            else:
                parts.append(f"(entity_type = {arg(rtype)} AND entity_id = {arg(rid)})")
        conds.append("(" + " OR ".join(parts or ["false"]) + ")")
    for actors in q.agents:
        parts = []
        for kind, ident in actors:
            # Equalities, not `= ANY`, so that one actor's records come from audit_event_space_actor in
            # sequence order (migrations/0030) and a page stops after its rows.
            both = [f"actor_kind = {arg(kind)}"] if kind is not None else []
            both += [f"actor_id = {arg(ident)}"] if ident is not None else []
            parts.append("(" + (" AND ".join(both) or "true") + ")")
        conds.append("(" + " OR ".join(parts or ["false"]) + ")")
    return " AND ".join(conds), params


async def page(
    conn: Conn, decision: Decision, q: TraceQuery, *, limit: int, offset: int
) -> list[StoredRecord]:
    """One page of a space's trace, newest first, under a decision to read AuditEvent covering the space."""
    decision.require_read("AuditEvent", [q.space_id])
    where, params = _where(q)
    rows = await conn.fetch(
        f"SELECT space_id, seq, {RECORD_COLUMNS}, prev_hash, hash FROM audit_event WHERE {where} "
        f"ORDER BY seq DESC LIMIT ${len(params) + 1} OFFSET ${len(params) + 2}",
        *params,
        limit,
        offset,
    )
    return [stored_record(r) for r in rows]


#: The professionals a select lists at most (a record seen by a whole hospital ward stays a usable list).
MAX_PROFESSIONALS = 500


async def professionals(conn: Conn, decision: Decision, q: TraceQuery) -> list[tuple[str, str]]:
    """(RPPS, name as last recorded) of the professionals in one space's chain up to its snapshot, by name.
    The distinct actors are found by skipping from one to the next in audit_event_space_actor (a loose index
    scan: one probe per professional, never a walk over their tens of thousands of records), then each one's
    latest name by a backward probe of the same index."""
    decision.require_read("AuditEvent", [q.space_id])
    # Citus plans no recursive query over a distributed table: there, the distinct professionals are read in
    # the space's one shard (the same answer, a walk of its index instead of a probe per professional).
    actors = (
        "SELECT DISTINCT actor_id AS id FROM audit_event WHERE space_id = $1 AND actor_kind = 'practitioner' "
        "AND seq <= $2"
        if db.distributed(conn)
        else (
            "WITH RECURSIVE actor(id, n) AS ("
            "  (SELECT actor_id, 1 FROM audit_event WHERE space_id = $1 AND actor_kind = 'practitioner' "
            "   AND seq <= $2 ORDER BY actor_id LIMIT 1) "
            "  UNION ALL "
            "  SELECT (SELECT e.actor_id FROM audit_event e WHERE e.space_id = $1 AND e.actor_kind = 'practitioner' "
            "          AND e.actor_id > actor.id AND e.seq <= $2 ORDER BY e.actor_id LIMIT 1), n + 1 "
            f"  FROM actor WHERE actor.id IS NOT NULL AND n < {MAX_PROFESSIONALS}"
            ") SELECT id FROM actor WHERE id IS NOT NULL"
        )
    )
    rows = await conn.fetch(
        f"WITH a AS ({actors}) "
        "SELECT a.id AS actor_id, coalesce(("
        "  SELECT e.actor_display FROM audit_event e WHERE e.space_id = $1 AND e.actor_kind = 'practitioner' "
        "  AND e.actor_id = a.id AND e.seq <= $2 ORDER BY e.seq DESC LIMIT 1"
        "), '') AS display FROM a "
        f"ORDER BY display, a.id LIMIT {MAX_PROFESSIONALS}",
        q.space_id,
        q.upto,
    )
    return [(str(r["actor_id"]), str(r["display"])) for r in rows]


async def count(conn: Conn, q: TraceQuery) -> int:
    where, params = _where(q)
    return int(await conn.fetchval(f"SELECT count(*) FROM audit_event WHERE {where}", *params))


async def one(conn: Conn, decision: Decision, space_id: uuid.UUID, seq: int) -> StoredRecord | None:
    """One record of a space's trace, under a decision to read AuditEvent covering the space."""
    decision.require_read("AuditEvent", [space_id])
    row = await conn.fetchrow(
        f"SELECT space_id, seq, {RECORD_COLUMNS}, prev_hash, hash FROM audit_event WHERE space_id = $1 AND seq = $2",
        space_id,
        seq,
    )
    return None if row is None else stored_record(row)


async def head_seq(conn: Conn, space_id: uuid.UUID) -> int | None:
    value = await conn.fetchval("SELECT seq FROM audit_chain WHERE space_id = $1", space_id)
    return None if value is None else int(value)


async def patient_of(conn: Conn, space_id: uuid.UUID) -> str | None:
    """The id of the space's Patient, from the chain itself (the first record naming a Patient: its
    creation). The trace outlives the resources, so it does not ask the resource tables."""
    value = await conn.fetchval(
        "SELECT entity_id FROM audit_event WHERE space_id = $1 AND entity_type = 'Patient' "
        "AND entity_id IS NOT NULL AND action <> 'access:refused' ORDER BY seq LIMIT 1",
        space_id,
    )
    return None if value is None else str(value)


async def client_names(conn: Conn, client_ids: Sequence[str]) -> dict[str, str]:
    """Registered names of machine clients, for records whose actor has no display name."""
    if not client_ids:
        return {}
    rows = await conn.fetch(
        "SELECT client_id, name FROM oauth_client WHERE client_id = ANY($1::text[])", list(client_ids)
    )
    return {r["client_id"]: r["name"] for r in rows}
