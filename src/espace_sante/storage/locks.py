"""Advisory locks: serialise work on something that has no row to lock yet (transaction-scoped), or keep a
second run of a long job from starting (session-scoped, gone with a killed run's connection)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import asyncpg

from espace_sante.storage import db
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


async def claim(
    conn: Conn,
    *,
    table: str,
    columns: str,
    where: str,
    args: Sequence[Any] = (),
    key: Sequence[str],
    order: str = "",
    limit: int | None = None,
    skip_locked: bool = True,
) -> list[asyncpg.Record]:
    """`SELECT columns FROM table WHERE where ORDER BY order LIMIT limit FOR UPDATE [SKIP LOCKED]`: rows over
    many spaces, each locked until the transaction ends (rows another transaction holds skipped, or waited for).

    Citus locks rows only in a statement that runs on one shard ("could not run distributed query with FOR
    UPDATE/SHARE commands"). There, the candidates are read without a lock, then each is locked by a statement
    naming it by `key` (which must include the distribution column) and repeating the condition: a row another
    run holds is skipped (or waited for), and one that stopped matching meanwhile (a run that just handled it
    committed) is left out. The result is what the one statement gives on PostgreSQL; the cost is a statement
    per row, which batch jobs pay beside the per-space work they do anyway. The parts are SQL of the caller's
    (storage modules), never input; `where` uses $1..$n for `args`."""
    lock = "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"
    head = f"SELECT {columns} FROM {table} WHERE {where}"
    tail = (f" ORDER BY {order}" if order else "") + (f" LIMIT {int(limit)}" if limit is not None else "")
    if not db.distributed(conn):
        return list(await conn.fetch(f"{head}{tail} {lock}", *args))
    keys = ", ".join(key)
    candidates = await conn.fetch(f"SELECT {keys} FROM {table} WHERE {where}{tail}", *args)
    at = len(args)
    one = await conn.prepare(
        f"{head} AND ({keys}) = ({', '.join(f'${at + i + 1}' for i in range(len(key)))}) {lock}"
    )
    rows = []
    for candidate in candidates:
        row = await one.fetchrow(*args, *candidate.values())
        if row is not None:
            rows.append(row)
    return rows
