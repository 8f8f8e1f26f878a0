"""Spaces: the unit of partitioning (SQL for `space`). The lifecycle issue adds states and transitions."""

from __future__ import annotations

import uuid

from espace_sante.storage.db import Conn
from espace_sante.storage.keys import DIRECTORY_SPACE, KeyStore


async def create(conn: Conn, keys: KeyStore, space_id: uuid.UUID) -> None:
    """Open a space with its own data key, in the caller's transaction."""
    await conn.execute("INSERT INTO space (space_id) VALUES ($1) ON CONFLICT DO NOTHING", space_id)
    await keys.create(conn, space_id)


async def exists(conn: Conn, space_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM space WHERE space_id = $1", space_id))


async def ensure_directory(conn: Conn, keys: KeyStore) -> None:
    """The directory's data key (its bodies are encrypted like everything else)."""
    await keys.create(conn, DIRECTORY_SPACE)


async def identity_changed(conn: Conn, space_id: uuid.UUID) -> None:
    """The space's identity changed (a Patient written, its waiting identity sealed again): one more change
    for the death check to read (lifecycle's `death_checked`). The space row stays held until the transaction
    ends, so that a check of the older identity, marking its own smaller count, leaves this one due
    (migrations/0022)."""
    await conn.execute(
        "UPDATE space SET identity_version = identity_version + 1 WHERE space_id = $1", space_id
    )
