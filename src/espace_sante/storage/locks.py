"""Advisory locks: serialise work on something that has no row to lock yet (transaction-scoped), or keep a
second run of a long job from starting (session-scoped, gone with a killed run's connection)."""

from __future__ import annotations

import hashlib

from espace_sante.storage.db import Conn


async def hold_until_commit(conn: Conn, name: str) -> None:
    """Wait for, then hold until the transaction ends, the lock called `name` (hashed to PostgreSQL's 64-bit
    advisory lock key). Used so that two conditional creates with one condition cannot both create."""
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    await conn.execute("SELECT pg_advisory_xact_lock($1)", key)


async def try_session_lock(conn: Conn, key: int) -> bool:
    """Take the session lock `key` if free; held until `session_unlock` or the connection ends."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))


async def session_unlock(conn: Conn, key: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", key)
