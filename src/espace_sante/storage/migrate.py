"""Versioned migrations: numbered SQL files in `migrations/`, applied in order, each in its own transaction,
under an advisory lock so that two processes starting together do not race. An applied file must not change:
its checksum is recorded and checked (a drift is an error, not a silent skip)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg
import sqlparse
from sqlparse import lexer, tokens

from espace_sante.storage import citus

_LOCK_KEY = 0x65_73_70_61  # "espa"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        """The file's statements, one by one: Citus refuses a query string of several statements when one of
        them changes a distributed table ("cannot insert multiple commands into a prepared statement", as it
        propagates each to the shards), so every migration runs this way, on plain PostgreSQL too."""
        return [part for part in sqlparse.split(self.sql) if not _only_comments(part)]


def _only_comments(part: str) -> bool:
    """A part with nothing to run (a closing comment): tokens only, no grouping, which is slow on long
    statements (a multi-row INSERT) and refuses past 10,000 tokens."""
    return all(
        kind in tokens.Comment or kind in tokens.Whitespace or kind is tokens.Newline or text == ";"
        for kind, text in lexer.tokenize(part)  # type: ignore[no-untyped-call]
    )


class MigrationDrift(RuntimeError):
    pass


def available() -> list[Migration]:
    found = []
    for entry in resources.files("espace_sante.storage.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    return found


async def _ensure_table(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migration (
               version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )


async def applied(conn: asyncpg.Connection) -> dict[int, str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migration') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM schema_migration")
    return {r["version"]: r["checksum"] for r in rows}


async def migrate(dsn: str) -> list[Migration]:
    """Apply pending migrations; returns those applied now. On Citus, the tables are placed on the cluster
    after each migration from the baseline on (storage/citus.py)."""
    conn = await asyncpg.connect(dsn)
    done: list[Migration] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await _ensure_table(conn)
            have = await applied(conn)
            on_citus = await citus.is_citus(conn)
            for m in available():
                if m.version in have:
                    if have[m.version] != m.checksum:
                        raise MigrationDrift(
                            f"migration {m.version:04d}_{m.name} changed after it was applied"
                        )
                    continue
                async with conn.transaction():
                    for statement in m.statements():
                        await conn.execute(statement)
                    await conn.execute(
                        "INSERT INTO schema_migration (version, name, checksum) VALUES ($1, $2, $3)",
                        m.version,
                        m.name,
                        m.checksum,
                    )
                done.append(m)
                if on_citus and m.version >= citus.BASELINE:
                    await citus.distribute(conn)
            if on_citus and max(have, default=0) >= citus.BASELINE:
                await citus.distribute(conn)  # a database made before its extension: placed now
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
    return done


async def pending(conn: asyncpg.Connection) -> list[Migration]:
    have = await applied(conn)
    return [m for m in available() if m.version not in have]
