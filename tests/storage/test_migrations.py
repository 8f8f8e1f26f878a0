"""Versioned migrations: an existing database keeps its data when the code brings new migrations."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from espace_sante.runtime import Runtime
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


async def test_0022_counts_the_identities_to_check_as_the_old_versions_said(
    scratch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upgrading a database of before migration 0022: a space whose Patient changed since its last death check,
    and a waiting identity never checked, are due; a checked space and a space closed on death are not."""
    every = migrate.available()
    monkeypatch.setattr(migrate, "available", lambda: [m for m in every if m.version < 22])
    await migrate.migrate(scratch)
    conn = await asyncpg.connect(scratch)
    try:
        changed, waiting, checked, dead = [uuid.uuid4() for _ in range(4)]
        await conn.executemany(
            "INSERT INTO space (space_id, state, death_checked, closed_reason) VALUES ($1, $2, $3, $4)",
            [(changed, "active", 1, None), (waiting, "notified", 0, None), (checked, "active", 2, None),
             (dead, "closed", 0, "death")],
        )  # fmt: skip
        await conn.executemany(
            "INSERT INTO resource (space_id, resource_type, resource_id, version_id, last_updated) "
            "VALUES ($1, 'Patient', $2, $3, now())",
            [(changed, "p1", 2), (checked, "p3", 2)],
        )
        await conn.execute(
            "INSERT INTO registry_person (nir, space_id, patient_id, fingerprint, pending, pending_key) "
            "VALUES ('180017500100197', $1, 'p2', '\\x00', '\\x00', 1), "
            "('280017500100168', $2, 'p4', '\\x00', '\\x00', 1)",
            waiting,
            dead,
        )
        monkeypatch.setattr(migrate, "available", lambda: every)
        assert 22 in [m.version for m in await migrate.migrate(scratch)]
        due = await conn.fetch("SELECT space_id FROM space WHERE identity_version > death_checked")
        assert {r["space_id"] for r in due} == {changed, waiting}
    finally:
        await conn.close()
