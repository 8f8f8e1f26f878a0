"""Machine clients and their access tokens (SQL for `oauth_client`, `oauth_token`). Secrets and tokens arrive
here already hashed: this module never sees one in clear."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from . import notify
from .db import Conn


@dataclass(frozen=True)
class ClientRow:
    client_id: str
    name: str
    secret_hash: bytes
    scope: str
    disabled: bool


@dataclass(frozen=True)
class TokenRow:
    """An active token. `actor_kind` is "client" for a machine client acting as itself; otherwise the token
    acts for a person (`actor_id`), through `client_id` (None for a development token)."""

    client_id: str | None
    scope: str
    expires_at: datetime
    name: str
    actor_kind: str = "client"
    actor_id: str | None = None
    subject: str = ""
    acr: str = ""


async def insert_client(conn: Conn, client_id: str, name: str, secret_hash: bytes, scope: str) -> None:
    await conn.execute(
        "INSERT INTO oauth_client (client_id, name, secret_hash, scope) VALUES ($1, $2, $3, $4)",
        client_id,
        name,
        secret_hash,
        scope,
    )


async def get_client(conn: Conn, client_id: str) -> ClientRow | None:
    row = await conn.fetchrow(
        "SELECT client_id, name, secret_hash, scope, disabled FROM oauth_client WHERE client_id = $1",
        client_id,
    )
    return None if row is None else ClientRow(**dict(row))


async def insert_token(
    conn: Conn, token_hash: bytes, client_id: str, scope: str, expires_at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO oauth_token (token_hash, client_id, scope, expires_at) VALUES ($1, $2, $3, $4)",
        token_hash,
        client_id,
        scope,
        expires_at,
    )
    # Keep the table small: expired tokens are useless. A cheap, bounded sweep on each issue.
    await conn.execute(
        "DELETE FROM oauth_token WHERE ctid = ANY(ARRAY(SELECT ctid FROM oauth_token "
        "WHERE expires_at < now() - interval '1 hour' LIMIT 100))"
    )


async def insert_person_token(
    conn: Conn,
    token_hash: bytes,
    *,
    client_id: str | None,
    actor_kind: str,
    actor_id: str,
    scope: str,
    expires_at: datetime,
    subject: str = "",
    acr: str = "",
) -> None:
    await conn.execute(
        "INSERT INTO oauth_token (token_hash, client_id, scope, expires_at, actor_kind, actor_id, subject, acr) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        token_hash,
        client_id,
        scope,
        expires_at,
        actor_kind,
        actor_id,
        subject,
        acr,
    )


async def active_token(conn: Conn, token_hash: bytes) -> TokenRow | None:
    row = await conn.fetchrow(
        "SELECT t.client_id, t.scope, t.expires_at, coalesce(c.name, '') AS name, t.actor_kind, t.actor_id, "
        "t.subject, t.acr FROM oauth_token t LEFT JOIN oauth_client c USING (client_id) "
        "WHERE t.token_hash = $1 AND NOT t.revoked AND t.expires_at > now() "
        "AND (t.client_id IS NULL OR NOT c.disabled)",
        token_hash,
    )
    return None if row is None else TokenRow(**dict(row))


async def revoke_token(conn: Conn, token_hash: bytes) -> bool:
    """Revoke one token; every process drops it from its cache when this commits."""
    status: str = await conn.execute(
        "UPDATE oauth_token SET revoked = true WHERE token_hash = $1", token_hash
    )
    await notify.publish(conn, notify.TOKENS, "token:" + token_hash.hex())
    return status.endswith(" 1")


async def disable_client(conn: Conn, client_id: str) -> bool:
    """Disable a client: its tokens stop working on every process when this commits."""
    status: str = await conn.execute(
        "UPDATE oauth_client SET disabled = true WHERE client_id = $1", client_id
    )
    await notify.publish(conn, notify.TOKENS, "client:" + client_id)
    return status.endswith(" 1")
