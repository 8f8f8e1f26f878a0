"""The newest records of a space's trace chain, for tests that check what was traced. The application reads
the trace only as a whole chain (audit verify, sealing) or under the policy's decision (AuditEvent, the
holder's history): no storage function hands a space's records to a caller without one."""

from __future__ import annotations

import uuid

from espace_sante.storage.audit import RECORD_COLUMNS, StoredRecord, stored_record
from espace_sante.storage.db import Conn


async def newest(conn: Conn, space_id: uuid.UUID, *, limit: int) -> list[StoredRecord]:
    """A space's `limit` newest records, newest first."""
    rows = await conn.fetch(
        f"SELECT space_id, seq, {RECORD_COLUMNS}, prev_hash, hash FROM audit_event WHERE space_id = $1 "
        "ORDER BY seq DESC LIMIT $2",
        space_id,
        limit,
    )
    return [stored_record(r) for r in rows]
