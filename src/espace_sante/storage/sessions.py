"""Server-side sessions (SQL for `web_session`). The cookie's secret never reaches this module: only its
SHA-256 digest, which is what the row is looked up by."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from espace_sante.storage.accounts import new_credential_generation
from espace_sante.storage.db import Conn


@dataclass(frozen=True)
class Session:
    """A live session and the account it belongs to. `acr` is the assurance level reached at sign-in
    (`espace_sante.access.actors.LEVELS`), `method` how (`password+totp`, `password+recovery`, `passkey`);
    `auth_time` when the person last proved a factor (the sign-in, or a later confirmation of identity)."""

    session_id: uuid.UUID
    account_id: uuid.UUID
    kind: str
    actor_id: str
    login: str
    acr: str
    method: str
    csrf_token: str
    user_agent: str
    ip: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    auth_time: datetime
    #: When her previous visit (session) began, None on her first: what is "new since her last visit".
    previous_visit_at: datetime | None = None


_COLUMNS = (
    "s.session_id, s.account_id, a.kind, a.actor_id, a.login, s.acr, s.method, s.csrf_token, s.user_agent, "
    "s.ip, s.created_at, s.last_seen_at, s.expires_at, s.auth_time, s.previous_visit_at"
)


def _session(row: Any) -> Session:
    return Session(**{k: row[k] for k in Session.__dataclass_fields__})


async def insert(
    conn: Conn,
    session_id: uuid.UUID,
    secret_hash: bytes,
    account_id: uuid.UUID,
    *,
    acr: str,
    method: str,
    csrf_token: str,
    user_agent: str,
    ip: str,
    absolute_seconds: int,
    auth_time: datetime | None = None,
) -> Session:
    # `auth_time` None: a sign-in here, now. An identity provider's may be before now (long before when it gave
    # none, people/federation.py), never after (a clock ahead is not trusted).
    # The session remembers when the account's previous visit began; this one becomes the last (one statement).
    await conn.execute(
        "WITH visit AS (UPDATE account a SET visited_at = now() FROM (SELECT visited_at FROM account "
        "WHERE account_id = $3 FOR UPDATE) AS before WHERE a.account_id = $3 RETURNING before.visited_at) "
        "INSERT INTO web_session (session_id, secret_hash, account_id, acr, method, csrf_token, user_agent, ip, "
        "expires_at, auth_time, previous_visit_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
        "now() + make_interval(secs => $9), LEAST(COALESCE($10, now()), now()), (SELECT visited_at FROM visit))",
        session_id,
        secret_hash,
        account_id,
        acr,
        method,
        csrf_token,
        user_agent,
        ip,
        absolute_seconds,
        auth_time,
    )
    # Bounded sweep of expired sessions on each sign-in.
    await conn.execute(
        "DELETE FROM web_session WHERE ctid = ANY(ARRAY(SELECT ctid FROM web_session "
        "WHERE expires_at < now() LIMIT 100))"
    )
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM web_session s JOIN account a USING (account_id) WHERE s.session_id = $1",
        session_id,
    )
    return _session(row)


async def live(conn: Conn, secret_hash: bytes, idle_seconds: int) -> Session | None:
    """The session with this secret digest if neither timeout has passed and its account is enabled."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM web_session s JOIN account a USING (account_id) "
        "WHERE s.secret_hash = $1 AND NOT a.disabled AND s.expires_at > now() "
        "AND s.last_seen_at > now() - make_interval(secs => $2)",
        secret_hash,
        idle_seconds,
    )
    return None if row is None else _session(row)


async def proved(conn: Conn, session_id: uuid.UUID) -> datetime:
    """The person proved a factor again in this session (step-up): its `auth_time` is now."""
    at: datetime = await conn.fetchval(
        "UPDATE web_session SET auth_time = now() WHERE session_id = $1 RETURNING auth_time", session_id
    )
    return at


async def touch(conn: Conn, session_id: uuid.UUID) -> None:
    await conn.execute("UPDATE web_session SET last_seen_at = now() WHERE session_id = $1", session_id)


async def of_account(conn: Conn, account_id: uuid.UUID, idle_seconds: int) -> list[Session]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM web_session s JOIN account a USING (account_id) WHERE s.account_id = $1 "
        "AND s.expires_at > now() AND s.last_seen_at > now() - make_interval(secs => $2) "
        "ORDER BY s.last_seen_at DESC",
        account_id,
        idle_seconds,
    )
    return [_session(r) for r in rows]


async def delete(conn: Conn, account_id: uuid.UUID, session_id: uuid.UUID) -> bool:
    """End one of the account's sessions (a session id of another account ends nothing)."""
    status: str = await conn.execute(
        "DELETE FROM web_session WHERE account_id = $1 AND session_id = $2", account_id, session_id
    )
    return status.endswith(" 1")


async def delete_all(conn: Conn, account_id: uuid.UUID, *, keep: uuid.UUID | None = None) -> int:
    """End the account's sessions (but `keep`). Signing out everywhere also ends every trusted device: the
    account's credential generation goes up (storage/accounts.py)."""
    await new_credential_generation(conn, account_id)
    status: str = await conn.execute(
        "DELETE FROM web_session WHERE account_id = $1 AND ($2::uuid IS NULL OR session_id <> $2)",
        account_id,
        keep,
    )
    return int(status.split()[-1])
