"""The trace's SQL: append a record to a space's hash chain, read it back, read seals.

`append` runs inside the caller's transaction: the record commits with the action or not at all. Allocating
the sequence number locks the space's chain row until that transaction ends, so concurrent writers to one
space are serialised and the chain stays linear; writers to different spaces never wait for each other."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from espace_sante.audit.record import GENESIS, Record, canonical
from espace_sante.storage.db import Conn

#: The columns as read back. PostgreSQL keeps instants Python cannot hold (years past 9999, before 1, infinity),
#: which only an edit outside the application can store: they are read clamped to Python's range, so the record
#: reads and `audit verify` finds its hash no longer matches, instead of the whole read failing (issue 15).
RECORD_COLUMNS = (
    "least(greatest(recorded_at, '0001-01-01 00:00:00+00'), '9999-12-31 23:59:59.999999+00') AS recorded_at, "
    "action, outcome, actor_kind, actor_id, actor_display, basis, entity_type, entity_id, entity_version, "
    "detail, request_id"
)


async def append(conn: Conn, space_id: uuid.UUID, record: Record) -> int:
    """Append `record` to the space's chain (one statement, audit_append in 0002_audit.sql); returns its seq."""
    seq = await conn.fetchval(
        "SELECT audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        space_id,
        record.recorded_at,
        record.action,
        record.outcome,
        record.actor_kind,
        record.actor_id,
        record.actor_display,
        record.basis,
        record.entity_type,
        record.entity_id,
        record.entity_version,
        record.detail,
        record.request_id,
        canonical(space_id, record),
    )
    return int(seq)


@dataclass(frozen=True)
class StoredRecord:
    space_id: uuid.UUID
    seq: int
    record: Record
    prev_hash: bytes
    hash: bytes


def stored_record(row: Any) -> StoredRecord:
    record = Record.as_stored(
        action=row["action"],
        outcome=row["outcome"],
        actor_kind=row["actor_kind"],
        actor_id=row["actor_id"],
        actor_display=row["actor_display"],
        basis=row["basis"],
        entity_type=row["entity_type"],
        entity_id=row["entity_id"],
        entity_version=row["entity_version"],
        detail=row["detail"],
        request_id=row["request_id"],
        recorded_at=row["recorded_at"],
    )
    return StoredRecord(row["space_id"], row["seq"], record, bytes(row["prev_hash"]), bytes(row["hash"]))


async def chain(conn: Conn, space_id: uuid.UUID, *, batch: int = 5000) -> AsyncIterator[StoredRecord]:
    """Every record of a space in order (for verification), fetched in batches. From the smallest bigint, not
    from 1: a row an insider put before the start of the chain must be seen to be reported."""
    start = -(2**63)
    while True:
        rows = await conn.fetch(
            f"SELECT space_id, seq, {RECORD_COLUMNS}, prev_hash, hash FROM audit_event "
            "WHERE space_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
            space_id,
            start,
            batch,
        )
        for row in rows:
            yield stored_record(row)
        if len(rows) < batch or rows[-1]["seq"] == 2**63 - 1:
            return
        start = rows[-1]["seq"] + 1


async def head(conn: Conn, space_id: uuid.UUID) -> tuple[int, bytes] | None:
    row = await conn.fetchrow("SELECT seq, head FROM audit_chain WHERE space_id = $1", space_id)
    return None if row is None else (int(row["seq"]), bytes(row["head"]))


async def spaces(conn: Conn, *, after: uuid.UUID | None = None, limit: int = 10_000) -> list[uuid.UUID]:
    """One page of the spaces that have a trace, in id order (page with `after`): a national deployment has
    tens of millions, too many for one list. Spaces with seals but no chain row (a superuser deleted the
    chain) are listed too, so that verification still looks at them."""
    rows = await conn.fetch(
        "SELECT space_id FROM (SELECT space_id FROM audit_chain UNION SELECT DISTINCT space_id FROM audit_seal) s "
        "WHERE $1::uuid IS NULL OR space_id > $1 ORDER BY space_id LIMIT $2",
        after,
        limit,
    )
    return [r["space_id"] for r in rows]


async def recent(
    conn: Conn, space_id: uuid.UUID, *, before: datetime | None, limit: int, offset: int = 0
) -> list[StoredRecord]:
    """A space's records, newest first (for the holder's view and AuditEvent)."""
    rows = await conn.fetch(
        f"SELECT space_id, seq, {RECORD_COLUMNS}, prev_hash, hash FROM audit_event WHERE space_id = $1 "
        "AND ($2::timestamptz IS NULL OR recorded_at < $2) ORDER BY seq DESC LIMIT $3 OFFSET $4",
        space_id,
        before,
        limit,
        offset,
    )
    return [stored_record(r) for r in rows]


@dataclass(frozen=True)
class Seal:
    space_id: uuid.UUID
    seq: int
    head: bytes
    key_id: str
    signature: bytes


async def add_seal(conn: Conn, seal: Seal) -> bool:
    status: str = await conn.execute(
        "INSERT INTO audit_seal (space_id, seq, head, key_id, signature) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT DO NOTHING",
        seal.space_id,
        seal.seq,
        seal.head,
        seal.key_id,
        seal.signature,
    )
    return status.endswith(" 1")


async def seals(conn: Conn, space_id: uuid.UUID) -> list[Seal]:
    rows = await conn.fetch(
        "SELECT space_id, seq, head, key_id, signature FROM audit_seal WHERE space_id = $1 ORDER BY seq",
        space_id,
    )
    return [Seal(r["space_id"], r["seq"], bytes(r["head"]), r["key_id"], bytes(r["signature"])) for r in rows]


async def unsealed_heads(conn: Conn) -> list[tuple[uuid.UUID, int, bytes]]:
    """Chain heads that moved since their last seal."""
    rows = await conn.fetch(
        "SELECT c.space_id, c.seq, c.head FROM audit_chain c WHERE c.seq > coalesce("
        "(SELECT max(s.seq) FROM audit_seal s WHERE s.space_id = c.space_id), 0)"
    )
    return [(r["space_id"], int(r["seq"]), bytes(r["head"])) for r in rows]


def canonical_fast(space_id: uuid.UUID, r: Record) -> bytes:
    """audit.record.canonical's bytes (tests/notices/test_throughput.py checks they are equal), without
    dataclasses.asdict's deep copies (a third of `notices send`'s time before)."""
    return orjson.dumps(
        {
            "action": r.action,
            "actor_display": r.actor_display,
            "actor_id": r.actor_id,
            "actor_kind": r.actor_kind,
            "basis": r.basis,
            "detail": r.detail,
            "entity_id": r.entity_id,
            "entity_type": r.entity_type,
            "entity_version": r.entity_version,
            "outcome": r.outcome,
            "recorded_at": r.recorded_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "request_id": r.request_id,
            "space_id": str(space_id),
        },
        option=orjson.OPT_SORT_KEYS,
    )


#: audit_event's columns, in the order of the rows `append_batch` and bulk creation (provision.py) COPY.
AUDIT_COLUMNS = (
    "space_id", "seq", "recorded_at", "action", "outcome", "actor_kind", "actor_id", "actor_display", "basis",
    "entity_type", "entity_id", "entity_version", "detail", "request_id", "prev_hash", "hash",
)  # fmt: skip


async def append_batch(conn: Conn, records: Sequence[tuple[uuid.UUID, Record]]) -> None:
    """Append records to their spaces' chains, in order, for a whole batch in four statements: the chains'
    heads locked (as audit_append's upsert locks them: concurrent writers wait, the chains stay linear), each
    record's hash computed here exactly as audit_append computes it, SHA-256(previous hash || seq as int8 ||
    canonical bytes), the records inserted and the heads moved. The rows are those audit_append writes, one by
    one (audit verify checks them the same way); a space without a chain yet starts at seq 1 after GENESIS."""
    if not records:
        return
    spaces = sorted({s for s, _ in records})
    lock = "SELECT space_id, seq, head FROM audit_chain WHERE space_id = ANY($1::uuid[]) ORDER BY space_id FOR UPDATE"
    heads = {r["space_id"]: (int(r["seq"]), bytes(r["head"])) for r in await conn.fetch(lock, spaces)}
    missing = [s for s in spaces if s not in heads]
    if missing:
        await conn.execute(
            "INSERT INTO audit_chain (space_id, seq, head) SELECT s, 0, $2 FROM unnest($1::uuid[]) AS s "
            "ON CONFLICT (space_id) DO NOTHING",
            missing,
            GENESIS,
        )
        heads |= {r["space_id"]: (int(r["seq"]), bytes(r["head"])) for r in await conn.fetch(lock, missing)}
    rows: list[tuple[Any, ...]] = []
    sha256 = hashlib.sha256
    for space_id, r in records:
        seq, prev = heads[space_id]
        seq += 1
        digest = sha256(prev + seq.to_bytes(8, "big", signed=True) + canonical_fast(space_id, r)).digest()
        heads[space_id] = (seq, digest)
        rows.append(
            (
                space_id, seq, r.recorded_at, r.action, r.outcome, r.actor_kind, r.actor_id, r.actor_display,
                r.basis, r.entity_type, r.entity_id, r.entity_version, r.detail, r.request_id, prev, digest,
            )
        )  # fmt: skip
    await conn.copy_records_to_table("audit_event", records=rows, columns=AUDIT_COLUMNS)
    await conn.execute(
        "UPDATE audit_chain c SET seq = u.seq, head = u.head "
        "FROM unnest($1::uuid[], $2::bigint[], $3::bytea[]) AS u(s, seq, head) WHERE c.space_id = u.s",
        list(heads),
        [h[0] for h in heads.values()],
        [h[1] for h in heads.values()],
    )
