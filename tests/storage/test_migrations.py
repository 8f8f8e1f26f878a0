"""Versioned migrations: an existing database keeps its data when the code brings new migrations."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from espace_sante.services.runtime import Runtime
from espace_sante.storage import migrate
from espace_sante.storage.embedded import database_uri


@pytest.fixture
async def scratch(runtime: Runtime) -> AsyncIterator[str]:
    name = "scratch_" + secrets.token_hex(4)
    async with runtime.db.pool.acquire() as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    yield database_uri(runtime.db.dsn, name)
    async with runtime.db.pool.acquire() as conn:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_an_upgrade_applies_only_new_migrations_and_keeps_the_data(
    scratch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await migrate.migrate(scratch)
    assert [m.version for m in first] == [m.version for m in migrate.available()]
    conn = await asyncpg.connect(scratch)
    try:
        await conn.execute("INSERT INTO space (space_id) VALUES (gen_random_uuid())")
        assert await migrate.migrate(scratch) == []  # nothing new: nothing applied

        # The next release ships a migration: only it runs, the data stays.
        later = migrate.Migration(9999, "add_space_note", "ALTER TABLE space ADD COLUMN note text;")
        monkeypatch.setattr(migrate, "available", lambda: [*first, later])
        assert [m.version for m in await migrate.migrate(scratch)] == [9999]
        assert await conn.fetchval("SELECT count(*) FROM space") == 1
        assert await conn.fetchval("SELECT max(version) FROM schema_migration") == 9999
    finally:
        await conn.close()


async def test_a_migration_changed_after_it_was_applied_is_refused(scratch: str) -> None:
    await migrate.migrate(scratch)
    conn = await asyncpg.connect(scratch)
    try:
        await conn.execute("UPDATE schema_migration SET checksum = 'edited' WHERE version = 1")
    finally:
        await conn.close()
    with pytest.raises(migrate.MigrationDrift, match="changed after it was applied"):
        await migrate.migrate(scratch)
