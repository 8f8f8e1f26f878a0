"""Data keys per space, stored wrapped (SQL for `space_key`). Unwrapped keys are cached briefly in process
memory so that a read does not pay for an unwrap; a destroyed key disappears from every process's cache within
`CACHE_SECONDS`."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..crypto import DecryptionFailed, KeyRing, dek_context, new_data_key
from .db import Conn

CACHE_SECONDS = 60.0
CACHE_ENTRIES = 50_000

#: The directory's pseudo-space: Practitioner, PractitionerRole, Organization and their keys.
DIRECTORY_SPACE = uuid.UUID(int=0)


class MissingDataKey(DecryptionFailed):
    """The space has no data key: never created, or destroyed (crypto-shredded)."""


class KeyStore:
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self._cache: OrderedDict[uuid.UUID, tuple[float, int, AESGCM]] = OrderedDict()

    async def create(self, conn: Conn, space_id: uuid.UUID) -> tuple[int, AESGCM]:
        """A fresh data key for a new space (idempotent: an existing key is returned)."""
        dek = new_data_key()
        kek = self.ring.current
        wrapped = kek.wrap(dek, dek_context(str(space_id), 1))
        inserted = await conn.fetchval(
            """INSERT INTO space_key (space_id, key_version, kek_id, wrapped_key) VALUES ($1, 1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING key_version""",
            space_id,
            kek.key_id,
            wrapped,
        )
        if inserted is None:
            return await self.current(conn, space_id)
        entry = (1, AESGCM(dek))
        self._remember(space_id, *entry)
        return entry

    async def current(self, conn: Conn, space_id: uuid.UUID) -> tuple[int, AESGCM]:
        """The newest data key of a space, for encrypting."""
        cached = self._cache.get(space_id)
        if cached is not None and cached[0] > time.monotonic():
            self._cache.move_to_end(space_id)
            return cached[1], cached[2]
        row = await conn.fetchrow(
            """SELECT key_version, kek_id, wrapped_key FROM space_key WHERE space_id = $1
               ORDER BY key_version DESC LIMIT 1""",
            space_id,
        )
        if row is None:
            raise MissingDataKey(f"no data key for space {space_id}")
        dek = self.ring.get(row["kek_id"]).unwrap(
            row["wrapped_key"], dek_context(str(space_id), row["key_version"])
        )
        aead = AESGCM(dek)
        self._remember(space_id, row["key_version"], aead)
        return row["key_version"], aead

    async def version(self, conn: Conn, space_id: uuid.UUID, key_version: int) -> AESGCM:
        """A given data key version, for decrypting older rows."""
        cached = self._cache.get(space_id)
        if cached is not None and cached[1] == key_version and cached[0] > time.monotonic():
            return cached[2]
        row = await conn.fetchrow(
            "SELECT kek_id, wrapped_key FROM space_key WHERE space_id = $1 AND key_version = $2",
            space_id,
            key_version,
        )
        if row is None:
            raise MissingDataKey(f"no data key {key_version} for space {space_id}")
        return AESGCM(
            self.ring.get(row["kek_id"]).unwrap(row["wrapped_key"], dek_context(str(space_id), key_version))
        )

    async def destroy(self, conn: Conn, space_id: uuid.UUID) -> int:
        """Crypto-shredding: delete every data key of the space. Its bodies can never be read again."""
        self._cache.pop(space_id, None)
        status: str = await conn.execute("DELETE FROM space_key WHERE space_id = $1", space_id)
        return int(status.split()[-1])

    async def rewrap(self, conn: Conn) -> int:
        """Rewrap every data key under the current KEK (after a KEK rotation). Returns how many changed."""
        kek = self.ring.current
        rows = await conn.fetch(
            "SELECT space_id, key_version, kek_id, wrapped_key FROM space_key WHERE kek_id <> $1 FOR UPDATE",
            kek.key_id,
        )
        for row in rows:
            context = dek_context(str(row["space_id"]), row["key_version"])
            dek = self.ring.get(row["kek_id"]).unwrap(row["wrapped_key"], context)
            await conn.execute(
                "UPDATE space_key SET kek_id = $3, wrapped_key = $4 WHERE space_id = $1 AND key_version = $2",
                row["space_id"],
                row["key_version"],
                kek.key_id,
                kek.wrap(dek, context),
            )
        self._cache.clear()
        return len(rows)

    def _remember(self, space_id: uuid.UUID, key_version: int, aead: AESGCM) -> None:
        self._cache[space_id] = (time.monotonic() + CACHE_SECONDS, key_version, aead)
        self._cache.move_to_end(space_id)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
