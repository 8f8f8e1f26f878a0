"""A person's authorisations of OAuth clients, their authorization codes and refresh tokens (SQL for
`oauth_grant`, `oauth_code`, `oauth_refresh`, `oidc_flow`). Codes and tokens arrive hashed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from espace_sante.storage import clients
from espace_sante.storage.db import Conn


@dataclass(frozen=True)
class GrantRow:
    grant_id: uuid.UUID
    client_id: str
    client_name: str
    person_kind: str
    person_id: str
    scope: str
    granted_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class CodeRow:
    grant_id: uuid.UUID
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    acr: str
    family: uuid.UUID
    expires_at: datetime
    used_at: datetime | None
    person_kind: str
    person_id: str
    grant_live: bool
    #: When the approving person last proved a factor (people/stepup.py); None if unknown.
    auth_time: datetime | None = None


@dataclass(frozen=True)
class RefreshRow:
    grant_id: uuid.UUID
    client_id: str
    scope: str
    acr: str
    family: uuid.UUID
    expires_at: datetime
    rotated_at: datetime | None
    revoked: bool
    person_kind: str
    person_id: str
    grant_live: bool


@dataclass(frozen=True)
class FlowRow:
    provider: str
    state: str
    nonce: str
    code_verifier: str
    next_path: str


_GRANT = (
    "SELECT g.grant_id, g.client_id, c.name AS client_name, g.person_kind, g.person_id, g.scope, g.granted_at, "
    "g.revoked_at FROM oauth_grant g JOIN oauth_client c USING (client_id) "
)


async def give(conn: Conn, client_id: str, person_kind: str, person_id: str, scope: str) -> uuid.UUID:
    """The person's live grant to this client, created or widened to `scope` (what they just approved)."""
    existing = await conn.fetchval(
        "UPDATE oauth_grant SET scope = $4 WHERE person_kind = $2 AND person_id = $3 AND client_id = $1 "
        "AND revoked_at IS NULL RETURNING grant_id",
        client_id,
        person_kind,
        person_id,
        scope,
    )
    if existing is not None:
        return uuid.UUID(str(existing))
    grant_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO oauth_grant (grant_id, client_id, person_kind, person_id, scope) VALUES ($1, $2, $3, $4, $5)",
        grant_id,
        client_id,
        person_kind,
        person_id,
        scope,
    )
    return grant_id


async def live(conn: Conn, person_kind: str, person_id: str, client_id: str) -> GrantRow | None:
    row = await conn.fetchrow(
        _GRANT
        + "WHERE g.person_kind = $1 AND g.person_id = $2 AND g.client_id = $3 AND g.revoked_at IS NULL",
        person_kind,
        person_id,
        client_id,
    )
    return None if row is None else GrantRow(**dict(row))


async def of_person(conn: Conn, person_kind: str, person_id: str) -> list[GrantRow]:
    """The person's live grants, newest first."""
    rows = await conn.fetch(
        _GRANT + "WHERE g.person_kind = $1 AND g.person_id = $2 AND g.revoked_at IS NULL "
        "ORDER BY g.granted_at DESC",
        person_kind,
        person_id,
    )
    return [GrantRow(**dict(r)) for r in rows]


async def get(conn: Conn, grant_id: uuid.UUID) -> GrantRow | None:
    row = await conn.fetchrow(_GRANT + "WHERE g.grant_id = $1", grant_id)
    return None if row is None else GrantRow(**dict(row))


async def revoke(conn: Conn, grant_id: uuid.UUID, reason: str) -> bool:
    """End a grant: its codes, refresh tokens and access tokens stop working on every process when this
    commits. False if it was already revoked."""
    hit = await conn.fetchval(
        "UPDATE oauth_grant SET revoked_at = now(), revoked_reason = $2 WHERE grant_id = $1 "
        "AND revoked_at IS NULL RETURNING true",
        grant_id,
        reason,
    )
    await conn.execute("DELETE FROM oauth_code WHERE grant_id = $1", grant_id)
    await conn.execute(
        "UPDATE oauth_refresh SET revoked = true WHERE grant_id = $1 AND NOT revoked", grant_id
    )
    await clients.revoke_tokens(conn, grant_id=grant_id)
    return bool(hit)


async def revoke_family(conn: Conn, family: uuid.UUID) -> None:
    """End one chain of tokens (started by one authorization code): its refresh and access tokens."""
    await conn.execute("UPDATE oauth_refresh SET revoked = true WHERE family = $1 AND NOT revoked", family)
    await clients.revoke_tokens(conn, family=family)


async def insert_code(
    conn: Conn,
    code_hash: bytes,
    *,
    grant_id: uuid.UUID,
    client_id: str,
    redirect_uri: str,
    scope: str,
    code_challenge: str,
    acr: str,
    family: uuid.UUID,
    expires_at: datetime,
    auth_time: datetime | None = None,
) -> None:
    await conn.execute(
        "DELETE FROM oauth_code WHERE ctid = ANY(ARRAY(SELECT ctid FROM oauth_code "
        "WHERE expires_at < now() - interval '1 hour' LIMIT 100))"
    )
    await conn.execute(
        "INSERT INTO oauth_code (code_hash, grant_id, client_id, redirect_uri, scope, code_challenge, acr, family, "
        "expires_at, auth_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        code_hash,
        grant_id,
        client_id,
        redirect_uri,
        scope,
        code_challenge,
        acr,
        family,
        expires_at,
        auth_time,
    )


async def get_code(conn: Conn, code_hash: bytes) -> CodeRow | None:
    row = await conn.fetchrow(
        "SELECT k.grant_id, k.client_id, k.redirect_uri, k.scope, k.code_challenge, k.acr, k.family, k.expires_at, "
        "k.used_at, g.person_kind, g.person_id, g.revoked_at IS NULL AS grant_live, k.auth_time "
        "FROM oauth_code k JOIN oauth_grant g USING (grant_id) WHERE k.code_hash = $1",
        code_hash,
    )
    return None if row is None else CodeRow(**dict(row))


async def consume_code(conn: Conn, code_hash: bytes) -> bool:
    """Mark a code used; False if it was used already or has expired (single use, RFC 6749 4.1.2)."""
    hit = await conn.fetchval(
        "UPDATE oauth_code SET used_at = now() WHERE code_hash = $1 AND used_at IS NULL AND expires_at > now() "
        "RETURNING true",
        code_hash,
    )
    return bool(hit)


async def insert_refresh(
    conn: Conn,
    token_hash: bytes,
    *,
    grant_id: uuid.UUID,
    client_id: str,
    scope: str,
    acr: str,
    family: uuid.UUID,
    expires_at: datetime,
) -> None:
    await conn.execute(
        "DELETE FROM oauth_refresh WHERE ctid = ANY(ARRAY(SELECT ctid FROM oauth_refresh "
        "WHERE expires_at < now() - interval '1 day' LIMIT 100))"
    )
    await conn.execute(
        "INSERT INTO oauth_refresh (token_hash, grant_id, client_id, scope, acr, family, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        token_hash,
        grant_id,
        client_id,
        scope,
        acr,
        family,
        expires_at,
    )


async def get_refresh(conn: Conn, token_hash: bytes) -> RefreshRow | None:
    row = await conn.fetchrow(
        "SELECT r.grant_id, r.client_id, r.scope, r.acr, r.family, r.expires_at, r.rotated_at, r.revoked, "
        "g.person_kind, g.person_id, g.revoked_at IS NULL AS grant_live "
        "FROM oauth_refresh r JOIN oauth_grant g USING (grant_id) WHERE r.token_hash = $1",
        token_hash,
    )
    return None if row is None else RefreshRow(**dict(row))


async def rotate_refresh(conn: Conn, token_hash: bytes) -> bool:
    """Mark a refresh token exchanged; False if it already was (a reuse) or is no longer valid."""
    hit = await conn.fetchval(
        "UPDATE oauth_refresh SET rotated_at = now() WHERE token_hash = $1 AND rotated_at IS NULL "
        "AND NOT revoked AND expires_at > now() RETURNING true",
        token_hash,
    )
    return bool(hit)


async def refresh_family_of_client(conn: Conn, token_hash: bytes, client_id: str) -> uuid.UUID | None:
    """The family of a refresh token issued to `client_id` (RFC 7009 revocation), or None."""
    found = await conn.fetchval(
        "SELECT family FROM oauth_refresh WHERE token_hash = $1 AND client_id = $2", token_hash, client_id
    )
    return None if found is None else uuid.UUID(str(found))


async def refresh_active(conn: Conn, token_hash: bytes) -> RefreshRow | None:
    """A refresh token that still works (introspection)."""
    row = await get_refresh(conn, token_hash)
    if row is None or row.revoked or row.rotated_at is not None or not row.grant_live:
        return None
    return row


# --- OpenID Connect sign-in flows (people/federation.py) --------------------------------------------------


async def insert_flow(
    conn: Conn,
    flow_hash: bytes,
    *,
    provider: str,
    state: str,
    nonce: str,
    code_verifier: str,
    next_path: str,
    expires_at: datetime,
) -> None:
    await conn.execute(
        "DELETE FROM oidc_flow WHERE ctid = ANY(ARRAY(SELECT ctid FROM oidc_flow WHERE expires_at < now() "
        "LIMIT 100))"
    )
    await conn.execute(
        "INSERT INTO oidc_flow (flow_hash, provider, state, nonce, code_verifier, next_path, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        flow_hash,
        provider,
        state,
        nonce,
        code_verifier,
        next_path,
        expires_at,
    )


async def take_flow(conn: Conn, flow_hash: bytes) -> FlowRow | None:
    """The flow, deleted as it is read (single use); None if unknown or expired."""
    row = await conn.fetchrow(
        "DELETE FROM oidc_flow WHERE flow_hash = $1 RETURNING provider, state, nonce, code_verifier, next_path, "
        "expires_at > now() AS fresh",
        flow_hash,
    )
    if row is None or not row["fresh"]:
        return None
    values = dict(row)
    del values["fresh"]
    return FlowRow(**values)
