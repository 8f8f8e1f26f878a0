"""The composition root's state: settings, database pool, key store, and the embedded PostgreSQL when used.
One Runtime per process; the web app, the CLI and the jobs all build it the same way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from espace_sante.crypto import KeyRing, LocalKek
from espace_sante.settings import Settings
from espace_sante.storage import migrate as migrations
from espace_sante.storage import notify, spaces
from espace_sante.storage.blobs import BlobStore, open_blob_store
from espace_sante.storage.db import Conn, Database
from espace_sante.storage.embedded import EmbeddedPostgres, ensure_database
from espace_sante.storage.keys import KeyStore
from espace_sante.storage.notify import Listener
from espace_sante.storage.token_cache import TokenCache


@dataclass
class Runtime:
    settings: Settings
    db: Database
    keys: KeyStore
    embedded: EmbeddedPostgres | None = field(default=None)
    tokens: TokenCache = field(default_factory=TokenCache)
    listener: Listener | None = field(default=None)
    #: Where document content lives (local files or S3): record/documents/.
    blobs: BlobStore | None = field(default=None)

    @classmethod
    async def open(cls, settings: Settings, *, apply_migrations: bool = False) -> Runtime:
        settings.check_production()
        kek, *previous = settings.kek_bytes()
        keys = KeyStore(KeyRing(LocalKek(kek), [LocalKek(k) for k in previous]))
        embedded = None
        dsn = settings.database_url
        if not dsn:
            embedded = EmbeddedPostgres(settings.pg_data)
            dsn = await ensure_database(embedded.start())
        if apply_migrations:
            await migrations.migrate(dsn)
        db = Database(
            dsn,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            statement_timeout_ms=settings.db_statement_timeout_ms,
        )
        await db.open()
        runtime = cls(settings, db, keys, embedded, blobs=open_blob_store(settings))
        await runtime._listen(dsn)
        if not await runtime.migrations_pending():
            await db.interaction("ensure_directory_key", spaces.ensure_directory, keys)
        return runtime

    @property
    def blob_store(self) -> BlobStore:
        if self.blobs is None:
            self.blobs = open_blob_store(self.settings)
        return self.blobs

    async def migrations_pending(self) -> list[str]:
        async with self.db.pool.acquire() as conn:
            return [f"{m.version:04d}_{m.name}" for m in await migrations.pending(cast(Conn, conn))]

    async def _listen(self, dsn: str) -> None:
        """Token revocations from any process reach this one's cache; without the listener, no caching."""

        def lost() -> None:
            self.tokens.enabled = False
            self.tokens.clear()

        def ready() -> None:
            self.tokens.clear()
            self.tokens.enabled = True

        self.listener = Listener(dsn, notify.TOKENS, self.tokens.invalidate, lost, ready)
        await self.listener.start()

    async def close(self) -> None:
        if self.blobs is not None:
            await self.blobs.close()
        if self.listener is not None:
            await self.listener.close()
            self.listener = None
        await self.db.close()
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None
