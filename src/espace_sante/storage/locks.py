"""Advisory locks: serialise work on something that has no row to lock yet (transaction-scoped), or keep a
second run of a long job from starting (session-scoped, gone with a killed run's connection)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

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


@asynccontextmanager
async def held_session(database: db.Database, purpose: bytes, ident: uuid.UUID) -> AsyncIterator[Conn | None]:
    """A connection holding the session lock of (`purpose`, `ident`) (one message's delivery) for as long as
    the caller talks to the relay, or None when another live process holds it. The lock is the connection's:
    a killed worker's lock goes with its connection, so a crash never leaves the thing locked, and the states
    it committed tell the next attempt what the dead one did."""
    digest = hashlib.sha256(purpose + b":" + ident.bytes).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    async with database.pool.acquire() as proxy:
        conn = cast(Conn, proxy)  # the pool hands out proxies that behave as connections
        if not await try_session_lock(conn, key):
            yield None
            return
        try:
            yield conn
        finally:
            try:
                await session_unlock(conn, key)
            except Exception:  # a broken connection: close it, the lock goes with it
                conn.terminate()


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
    head = f"SELECT {columns} FROM {table} WHERE ({where})"
    order_by = f" ORDER BY {order}" if order else ""
    if not db.distributed(conn):
        bound = f" LIMIT {int(limit)}" if limit is not None else ""
        return list(await conn.fetch(f"{head}{order_by}{bound} {lock}", *args))
    keys = ", ".join(key)
    at = len(args)
    one = await conn.prepare(
        f"{head} AND ({keys}) = ({', '.join(f'${at + i + 1}' for i in range(len(key)))}) {lock}"
    )
    # As SKIP LOCKED does, a batch is filled past the rows others hold: candidates are read a page at a time
    # until `limit` rows are locked or none are left (a short batch then means nothing is left for this run,
    # which the callers' loops rely on). Rows this transaction locked still match, so the pages stay aligned.
    rows: list[asyncpg.Record] = []
    tried: set[tuple[Any, ...]] = set()
    offset = 0
    while True:
        page_sql = f"SELECT {keys} FROM {table} WHERE ({where}){order_by}"
        if limit is not None:
            page_sql += f" LIMIT {int(limit)} OFFSET {offset}"
        page = await conn.fetch(page_sql, *args)
        for candidate in page:
            values = tuple(candidate.values())
            if values in tried:
                continue
            tried.add(values)
            row = await one.fetchrow(*args, *values)
            if row is not None:
                rows.append(row)
                if limit is not None and len(rows) >= limit:
                    return rows
        if limit is None or len(page) < limit:
            return rows
        offset += len(page)
