"""OAuth clients and their access tokens (SQL for `oauth_client`, `oauth_token`, `oauth_jti`). Secrets and
tokens arrive here already hashed: this module never sees one in clear."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from espace_sante.storage import notify
from espace_sante.storage.db import Conn


@dataclass(frozen=True)
class ClientRow:
    client_id: str
    name: str
    secret_hash: bytes | None
    scope: str
    disabled: bool
    #: "system" (client credentials / Backend Services), "app" (a holder's app), "software" (a professional's).
    kind: str = "system"
    #: "client_secret" (Basic or form), "private_key_jwt" (RFC 7523 assertion) or "none" (public app).
    auth_method: str = "client_secret"
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    redirect_uris: tuple[str, ...] = ()


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
    #: When the person last proved a factor before this token (people/stepup.py); None if unknown.
    auth_time: datetime | None = None


@dataclass(frozen=True)
class TokenInfo:
    """What introspection tells about an active token (RFC 7662 section 2.2)."""

    client_id: str | None
    scope: str
    issued_at: datetime
    expires_at: datetime
    actor_kind: str
    actor_id: str | None
    subject: str
    grant_id: uuid.UUID | None


_CLIENT_COLUMNS = "client_id, name, secret_hash, scope, disabled, kind, auth_method, jwks::text AS jwks, jwks_uri, redirect_uris"


async def insert_client(conn: Conn, client_id: str, name: str, secret_hash: bytes, scope: str) -> None:
    await conn.execute(
        "INSERT INTO oauth_client (client_id, name, secret_hash, scope) VALUES ($1, $2, $3, $4)",
        client_id,
        name,
        secret_hash,
        scope,
    )


async def insert_registered_client(
    conn: Conn,
    *,
    client_id: str,
    name: str,
    kind: str,
    auth_method: str,
    scope: str,
    secret_hash: bytes | None = None,
    jwks: dict[str, Any] | None = None,
    jwks_uri: str | None = None,
    redirect_uris: tuple[str, ...] = (),
) -> None:
    await conn.execute(
        "INSERT INTO oauth_client (client_id, name, secret_hash, scope, kind, auth_method, jwks, jwks_uri, "
        "redirect_uris) VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, $9::text[])",
        client_id,
        name,
        secret_hash,
        scope,
        kind,
        auth_method,
        None if jwks is None else orjson.dumps(jwks).decode(),
        jwks_uri,
        list(redirect_uris),
    )


def _client(row: Any) -> ClientRow:
    values = dict(row)
    values["secret_hash"] = None if values["secret_hash"] is None else bytes(values["secret_hash"])
    values["jwks"] = None if values["jwks"] is None else orjson.loads(values["jwks"])
    values["redirect_uris"] = tuple(values["redirect_uris"] or ())
    return ClientRow(**values)


async def get_client(conn: Conn, client_id: str) -> ClientRow | None:
    row = await conn.fetchrow(f"SELECT {_CLIENT_COLUMNS} FROM oauth_client WHERE client_id = $1", client_id)
    return None if row is None else _client(row)


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
    await _sweep(conn)


async def _sweep(conn: Conn) -> None:
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
    grant_id: uuid.UUID | None = None,
    family: uuid.UUID | None = None,
    auth_time: datetime | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO oauth_token (token_hash, client_id, scope, expires_at, actor_kind, actor_id, subject, acr, "
        "grant_id, family, auth_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        token_hash,
        client_id,
        scope,
        expires_at,
        actor_kind,
        actor_id,
        subject,
        acr,
        grant_id,
        family,
        auth_time,
    )
    if grant_id is not None:
        await _sweep(conn)


_ACTIVE = (
    "FROM oauth_token t LEFT JOIN oauth_client c ON c.client_id = t.client_id "
    "LEFT JOIN oauth_grant g ON g.grant_id = t.grant_id "
    "WHERE t.token_hash = $1 AND NOT t.revoked AND t.expires_at > now() "
    "AND (t.client_id IS NULL OR NOT c.disabled) AND (t.grant_id IS NULL OR g.revoked_at IS NULL)"
)


async def active_token(conn: Conn, token_hash: bytes) -> TokenRow | None:
    row = await conn.fetchrow(
        "SELECT t.client_id, t.scope, t.expires_at, coalesce(c.name, '') AS name, t.actor_kind, t.actor_id, "
        "t.subject, t.acr, t.auth_time " + _ACTIVE,
        token_hash,
    )
    return None if row is None else TokenRow(**dict(row))


async def token_info(conn: Conn, token_hash: bytes) -> TokenInfo | None:
    """An active access token's facts for introspection; None when unknown, expired, revoked, or its client
    disabled or its grant withdrawn."""
    row = await conn.fetchrow(
        "SELECT t.client_id, t.scope, t.issued_at, t.expires_at, t.actor_kind, t.actor_id, t.subject, "
        "t.grant_id " + _ACTIVE,
        token_hash,
    )
    return None if row is None else TokenInfo(**dict(row))


async def revoke_token(conn: Conn, token_hash: bytes) -> bool:
    """Revoke one token; every process drops it from its cache when this commits."""
    status: str = await conn.execute(
        "UPDATE oauth_token SET revoked = true WHERE token_hash = $1", token_hash
    )
    await notify.publish(conn, notify.TOKENS, "token:" + token_hash.hex())
    return status.endswith(" 1")


async def revoke_client_token(conn: Conn, token_hash: bytes, client_id: str) -> bool:
    """RFC 7009: revoke an access token only if it was issued to `client_id`."""
    hit = await conn.fetchval(
        "UPDATE oauth_token SET revoked = true WHERE token_hash = $1 AND client_id = $2 AND NOT revoked "
        "RETURNING true",
        token_hash,
        client_id,
    )
    if hit:
        await notify.publish(conn, notify.TOKENS, "token:" + token_hash.hex())
    return bool(hit)


async def revoke_tokens(
    conn: Conn, *, grant_id: uuid.UUID | None = None, family: uuid.UUID | None = None
) -> int:
    """Revoke every live access token of a grant or of a token family; every process drops them from its
    cache when this commits (one notification per token: a grant holds a few live tokens at most)."""
    if grant_id is None and family is None:
        return 0
    rows = await conn.fetch(
        "UPDATE oauth_token SET revoked = true WHERE NOT revoked AND expires_at > now() "
        "AND (grant_id = $1 OR family = $2) RETURNING token_hash",
        grant_id,
        family,
    )
    for row in rows:
        await notify.publish(conn, notify.TOKENS, "token:" + bytes(row["token_hash"]).hex())
    return len(rows)


async def revoke_person_tokens(conn: Conn, kind: str, actor_id: str) -> int:
    """Revoke every live token acting for a person (through their software, their apps, or a development
    token), e.g. when their account is disabled; every process drops them when this commits."""
    rows = await conn.fetch(
        "UPDATE oauth_token SET revoked = true WHERE NOT revoked AND expires_at > now() AND "
        "((actor_kind = $1 AND actor_id = $2) OR ($1 = 'holder' AND actor_kind = 'app' AND subject = $2)) "
        "RETURNING token_hash",
        kind,
        actor_id,
    )
    for row in rows:
        await notify.publish(conn, notify.TOKENS, "token:" + bytes(row["token_hash"]).hex())
    return len(rows)


async def disable_client(conn: Conn, client_id: str) -> bool:
    """Disable a client: its tokens stop working on every process when this commits."""
    status: str = await conn.execute(
        "UPDATE oauth_client SET disabled = true WHERE client_id = $1", client_id
    )
    await notify.publish(conn, notify.TOKENS, "client:" + client_id)
    return status.endswith(" 1")


async def use_jti(conn: Conn, client_id: str, jti: str, expires_at: datetime) -> bool:
    """Record a client assertion's `jti`; False if it was already used (a replay) and has not expired."""
    await conn.execute(
        "DELETE FROM oauth_jti WHERE ctid = ANY(ARRAY(SELECT ctid FROM oauth_jti WHERE expires_at < now() "
        "LIMIT 100))"
    )
    inserted = await conn.fetchval(
        "INSERT INTO oauth_jti (client_id, jti, expires_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (client_id, jti) DO UPDATE SET expires_at = EXCLUDED.expires_at "
        "WHERE oauth_jti.expires_at < now() RETURNING true",
        client_id,
        jti,
        expires_at,
    )
    return bool(inserted)
