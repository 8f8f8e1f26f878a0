"""The ceiling: a bare ASGI app (no framework) that answers GET /fhir/Patient/{id} with the stored JSON of that
Patient, read by primary key from the same PostgreSQL, served by uvicorn with one worker (uvloop, httptools),
like `espace-sante serve --workers 1`.

It returns the *decrypted* body, which is what the API returns: one query fetches the ciphertext and the space's
wrapped data key together (resource JOIN resource_version JOIN space_key, all by primary key), then it unwraps
the key with the data folder's key-encryption key and opens the body with the app's own crypto helpers and
associated data. So it does the irreducible work of a read (HTTP, one round trip, AES-GCM) and nothing else:
no authentication, no policy, no transaction, no logging.

Run as `python -m benchmarks.ceiling --port P` with DATABASE_URL and ESPACE_SANTE_DATA_DIR set."""

from __future__ import annotations

import argparse
import os
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from espace_sante.crypto import KeyRing, LocalKek, dek_context, open_, resource_aad
from espace_sante.fhir.compartment import space_of
from espace_sante.settings import Settings

PREFIX = "/fhir/Patient/"
SQL = (
    "SELECT v.version_id, v.key_version, v.body, k.kek_id, k.wrapped_key FROM resource r "
    "JOIN resource_version v USING (space_id, resource_type, resource_id, version_id) "
    "JOIN space_key k ON k.space_id = v.space_id AND k.key_version = v.key_version "
    "WHERE r.space_id = $1 AND r.resource_type = 'Patient' AND r.resource_id = $2 AND NOT r.deleted"
)
JSON = [(b"content-type", b"application/fhir+json; charset=utf-8")]

Send = Any
Receive = Any


class Ceiling:
    def __init__(self, dsn: str, ring: KeyRing) -> None:
        self.dsn = dsn
        self.ring = ring
        self.pool: asyncpg.Pool | None = None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            status, body = await self._handle(scope["method"], scope["path"])
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [*JSON, (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # The app's pool settings (Settings.db_pool_min / db_pool_max).
                settings = Settings()
                self.pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=settings.db_pool_min,
                    max_size=settings.db_pool_max,
                    server_settings={"application_name": "bench-ceiling"},
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, method: str, path: str) -> tuple[int, bytes]:
        if path == "/healthz":
            return 200, b'{"status":"ok"}'
        rid = path[len(PREFIX) :]
        space = space_of(rid) if method == "GET" and path.startswith(PREFIX) else None
        if space is None or self.pool is None:
            return 404, b'{"resourceType":"OperationOutcome"}'
        row = await self.pool.fetchrow(SQL, space, rid)
        if row is None:
            return 404, b'{"resourceType":"OperationOutcome"}'
        key_version = row["key_version"]
        dek = self.ring.get(row["kek_id"]).unwrap(row["wrapped_key"], dek_context(str(space), key_version))
        aad = resource_aad(str(space), "Patient", rid, row["version_id"], key_version)
        return 200, open_(AESGCM(dek), row["body"], aad)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    kek, *previous = Settings().kek_bytes()  # the data folder's kek.key, as the app loads it
    app = Ceiling(os.environ["DATABASE_URL"], KeyRing(LocalKek(kek), [LocalKek(k) for k in previous]))
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        server_header=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
