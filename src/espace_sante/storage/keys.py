"""Data keys per space, stored wrapped (SQL for `space_key`). Unwrapped keys are cached briefly in process
memory so that a read does not pay for an unwrap; a destroyed key disappears from every process's cache within
`CACHE_SECONDS`."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from espace_sante.crypto import DecryptionFailed, KeyRing, dek_context, new_data_key
from espace_sante.storage import locks
from espace_sante.storage.db import Conn

CACHE_SECONDS = 60.0
CACHE_ENTRIES = 50_000

#: The directory's pseudo-space: Practitioner, PractitionerRole, Organization and their keys.
DIRECTORY_SPACE = uuid.UUID(int=0)


class MissingDataKey(DecryptionFailed):
    """The space has no data key: never created, or destroyed (crypto-shredded)."""


class KeyStore:
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        #: (space, key version) -> (expiry, key); and space -> newest key version, for encrypting.
        self._cache: OrderedDict[tuple[uuid.UUID, int], tuple[float, AESGCM]] = OrderedDict()
        self._newest: dict[uuid.UUID, int] = {}

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
        aead = AESGCM(dek)
        self._remember(space_id, 1, aead, newest=True)
        return 1, aead

    def new_key(self, space_id: uuid.UUID) -> tuple[str, bytes, AESGCM]:
        """A fresh version-1 data key for a space the caller is about to create in bulk: (KEK id, wrapped key,
        cipher). The caller writes the `space_key` row in its transaction (storage/provision.py)."""
        dek = new_data_key()
        kek = self.ring.current
        wrapped = kek.wrap(dek, dek_context(str(space_id), 1))
        aead = AESGCM(dek)
        self._remember(space_id, 1, aead, newest=True)
        return kek.key_id, wrapped, aead

    async def current(self, conn: Conn, space_id: uuid.UUID) -> tuple[int, AESGCM]:
        """The newest data key of a space, for encrypting."""
        newest = self._newest.get(space_id)
        if newest is not None:
            aead = self._cached(space_id, newest)
            if aead is not None:
                return newest, aead
        row = await conn.fetchrow(
            """SELECT key_version, kek_id, wrapped_key FROM space_key WHERE space_id = $1
               ORDER BY key_version DESC LIMIT 1""",
            space_id,
        )
        if row is None:
            raise MissingDataKey(f"no data key for space {space_id}")
        aead = self._unwrap(space_id, row["key_version"], row["kek_id"], row["wrapped_key"])
        self._remember(space_id, row["key_version"], aead, newest=True)
        return row["key_version"], aead

    async def version(self, conn: Conn, space_id: uuid.UUID, key_version: int) -> AESGCM:
        """A given data key version, for decrypting."""
        aead = self._cached(space_id, key_version)
        if aead is not None:
            return aead
        row = await conn.fetchrow(
            "SELECT kek_id, wrapped_key FROM space_key WHERE space_id = $1 AND key_version = $2",
            space_id,
            key_version,
        )
        if row is None:
            raise MissingDataKey(f"no data key {key_version} for space {space_id}")
        aead = self._unwrap(space_id, key_version, row["kek_id"], row["wrapped_key"])
        self._remember(space_id, key_version, aead, newest=False)
        return aead

    def from_row(self, space_id: uuid.UUID, key_version: int, kek_id: str, wrapped: bytes) -> AESGCM:
        """A data key fetched by the caller's own query (joined to the rows it decrypts)."""
        aead = self._cached(space_id, key_version)
        if aead is None:
            aead = self._unwrap(space_id, key_version, kek_id, wrapped)
            self._remember(space_id, key_version, aead, newest=False)
        return aead

    async def destroy(self, conn: Conn, space_id: uuid.UUID) -> int:
        """Crypto-shredding: delete every data key of the space. Its bodies can never be read again."""
        self._forget(space_id)
        status: str = await conn.execute("DELETE FROM space_key WHERE space_id = $1", space_id)
        return int(status.split()[-1])

    async def rewrap(self, conn: Conn) -> int:
        """Rewrap every data key under the current KEK (after a KEK rotation). Returns how many changed."""
        kek = self.ring.current
        rows = await locks.claim(
            conn,
            table="space_key",
            columns="space_id, key_version, kek_id, wrapped_key",
            where="kek_id <> $1",
            args=(kek.key_id,),
            key=("space_id", "key_version"),
            order="space_id, key_version",  # one order for every rewrap: two at once wait, never deadlock
            skip_locked=False,
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
        self.clear()
        return len(rows)

    def clear(self) -> None:
        self._cache.clear()
        self._newest.clear()

    def _unwrap(self, space_id: uuid.UUID, key_version: int, kek_id: str, wrapped: bytes) -> AESGCM:
        return AESGCM(self.ring.get(kek_id).unwrap(wrapped, dek_context(str(space_id), key_version)))

    def _cached(self, space_id: uuid.UUID, key_version: int) -> AESGCM | None:
        entry = self._cache.get((space_id, key_version))
        if entry is None or entry[0] <= time.monotonic():
            return None
        self._cache.move_to_end((space_id, key_version))
        return entry[1]

    def _remember(self, space_id: uuid.UUID, key_version: int, aead: AESGCM, *, newest: bool) -> None:
        self._cache[(space_id, key_version)] = (time.monotonic() + CACHE_SECONDS, aead)
        self._cache.move_to_end((space_id, key_version))
        if newest:
            self._newest[space_id] = key_version
        while len(self._cache) > CACHE_ENTRIES:
            (old_space, _), _ = self._cache.popitem(last=False)
            self._newest.pop(old_space, None)

    def _forget(self, space_id: uuid.UUID) -> None:
        for key in [k for k in self._cache if k[0] == space_id]:
            del self._cache[key]
        self._newest.pop(space_id, None)
