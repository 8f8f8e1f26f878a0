"""Transaction-scoped advisory locks: serialise work on something that has no row to lock yet."""

from __future__ import annotations

import hashlib

from .db import Conn


async def hold_until_commit(conn: Conn, name: str) -> None:
    """Wait for, then hold until the transaction ends, the lock called `name` (hashed to PostgreSQL's 64-bit
    advisory lock key). Used so that two conditional creates with one condition cannot both create."""
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
