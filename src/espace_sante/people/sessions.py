"""Sessions of people signed in to the portals (SECURITY V3).

- Server-side, in PostgreSQL: the browser holds a 256-bit random secret in a `__Host-` cookie; the row holds
  its SHA-256 digest (a slow hash adds nothing at that entropy), so a copy of the table opens no session.
- A new session, with a new secret, at every sign-in (ASVS 3.2.1); a session also carries its synchronizer
  CSRF token, the assurance level reached (`acr`, one of `access.actors.LEVELS`), the sign-in method, and
  when the person last proved a factor (`auth_time`: the sign-in, then each step-up, people/stepup.py).
- Idle and absolute timeouts from settings (3.3.2); the person lists their sessions and ends one or all of
  them (3.3.3/3.3.4); sign-out deletes the row, so replaying the old cookie opens nothing (3.3.1).
- Starting a session writes its `signin:success` record in the same transaction as the row (V7 7.1.3).
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from espace_sante.access.actors import LEVELS, Actor, ActorKind
from espace_sante.access.scopes import Scopes
from espace_sante.audit import trace
from espace_sante.people import actors as people
from espace_sante.people.accounts import account_record
from espace_sante.runtime import Runtime
from espace_sante.storage import accounts as account_store
from espace_sante.storage import sessions as store
from espace_sante.storage.db import Conn
from espace_sante.storage.sessions import Session

__all__ = [
    "COOKIE",
    "Session",
    "actor_of",
    "current",
    "end",
    "end_everywhere",
    "is_fresh",
    "list_for",
    "proved",
    "revoke",
    "start",
]

#: `__Host-`: Secure, Path=/, no Domain (RFC 6265bis 4.1.3.2): no subdomain or plain-http page can set it.
COOKIE = "__Host-es_session"

#: The scopes a person's own session gives them: everything the policy lets that person do.
SESSION_SCOPES: dict[str, str] = {"holder": "patient/*.*", "practitioner": "user/*.*", "operator": ""}

#: `last_seen_at` is written at most this often (idle timeout granularity), not on every request.
_TOUCH_EVERY = timedelta(seconds=60)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _clean(text: str, size: int) -> str:
    return "".join(c for c in text if c.isprintable())[:size]


async def start_in(
    conn: Conn,
    rt: Runtime,
    account_id: uuid.UUID,
    *,
    acr: str,
    method: str,
    user_agent: str,
    ip: str,
    request_id: str = "",
    auth_time: datetime | None = None,
) -> tuple[str, Session]:
    """Open a session inside the caller's transaction (with the trace record). ValueError for an unknown
    level or a disabled or unknown account. `auth_time`: when the person proved who they are, if before now
    (an identity provider's answer); now otherwise."""
    if acr not in LEVELS:
        raise ValueError(f"unknown assurance level {acr!r}")
    account = await account_store.by_id(conn, account_id)
    if account is None or account.disabled:
        raise ValueError("no such enabled account")
    secret = secrets.token_urlsafe(32)
    session = await store.insert(
        conn,
        uuid.uuid4(),
        digest(secret),
        account_id,
        acr=acr,
        method=method,
        csrf_token=secrets.token_urlsafe(32),
        user_agent=_clean(user_agent, 300),
        ip=_clean(ip, 64),
        absolute_seconds=rt.settings.session_absolute_seconds,
        auth_time=auth_time,
    )
    await trace.account_event(
        conn,
        account_record(
            "signin:success",
            kind=account.kind,
            actor_id=account.actor_id,
            detail=f"{method} ip={session.ip}",
            basis=acr,
            request_id=request_id,
        ),
    )
    return secret, session


async def start(
    rt: Runtime,
    account_id: uuid.UUID,
    *,
    acr: str,
    method: str,
    user_agent: str,
    ip: str,
    request_id: str = "",
    auth_time: datetime | None = None,
) -> tuple[str, Session]:
    """Open a session for an account whose person has just proven who they are (federation, passkey, password
    and second factor): returns the secret for the cookie, and the session. The caller must already have
    checked the factors; `acr` must be one of `access.actors.LEVELS`."""
    return await rt.db.interaction(
        "session_start",
        start_in,
        rt,
        account_id,
        acr=acr,
        method=method,
        user_agent=user_agent,
        ip=ip,
        request_id=request_id,
        auth_time=auth_time,
    )


async def current(rt: Runtime, secret: str) -> Session | None:
    """The live session of this cookie secret, or None (unknown, ended, timed out, account disabled)."""
    if not secret or len(secret) > 128:
        return None
    session = await rt.db.read(
        "session_current", store.live, digest(secret), rt.settings.session_idle_seconds
    )
    if session is None:
        return None
    if datetime.now(UTC) - session.last_seen_at > _TOUCH_EVERY:
        await rt.db.interaction("session_touch", store.touch, session.session_id)
    return session


def is_fresh(rt: Runtime, session: Session) -> bool:
    """Whether the sign-in is recent enough to change a factor (SECURITY V3 3.7.1). What cannot be undone asks
    for a proof within five minutes instead, which the step-up page renews (people/stepup.py)."""
    return datetime.now(UTC) - session.created_at < timedelta(seconds=rt.settings.reauth_seconds)


async def proved(rt: Runtime, session: Session) -> Session:
    """The session after the person proved a factor again (people/stepup.py): its `auth_time` is now."""
    at = await rt.db.interaction("session_proved", store.proved, session.session_id)
    return dataclasses.replace(session, auth_time=at)


async def actor_of(rt: Runtime, session: Session) -> Actor:
    """The actor the session acts as, with the person's full scopes and the level reached at sign-in.
    NotFound when the person's Patient or Practitioner no longer exists."""
    kind: ActorKind = "holder"
    if session.kind == "practitioner":
        kind = "practitioner"
    elif session.kind == "operator":
        kind = "operator"
    scopes = Scopes.parse(SESSION_SCOPES.get(session.kind, ""))
    actor = await people.actor_for(rt, kind, session.actor_id, scopes=scopes, acr=session.acr, via="")
    return dataclasses.replace(actor, auth_time=session.auth_time)


async def list_for(rt: Runtime, session: Session) -> list[Session]:
    """The account's live sessions, most recently used first."""
    return await rt.db.read(
        "session_list", store.of_account, session.account_id, rt.settings.session_idle_seconds
    )


async def list_for_account(rt: Runtime, account_id: uuid.UUID) -> list[Session]:
    """An account's live sessions (operators' command line)."""
    return await rt.db.read("session_list", store.of_account, account_id, rt.settings.session_idle_seconds)


async def _ended(
    conn: Conn, session: Session, action: str, detail: str, request_id: str, *, only: uuid.UUID | None
) -> int:
    if only is None:
        count = await store.delete_all(conn, session.account_id)
    else:
        count = int(await store.delete(conn, session.account_id, only))
    if count:
        await trace.account_event(
            conn,
            account_record(
                action, kind=session.kind, actor_id=session.actor_id, detail=detail, request_id=request_id
            ),
        )
    return count


async def end(rt: Runtime, session: Session, *, request_id: str = "") -> None:
    """Sign out: the session's row is deleted, so its cookie opens nothing any more."""
    await rt.db.interaction(
        "session_end", _ended, session, "session:end", "one", request_id, only=session.session_id
    )


async def revoke(rt: Runtime, session: Session, session_id: uuid.UUID, *, request_id: str = "") -> bool:
    """End one of the account's sessions (another account's session id ends nothing)."""
    count = await rt.db.interaction(
        "session_revoke", _ended, session, "session:revoke", "one", request_id, only=session_id
    )
    return count > 0


async def end_everywhere(rt: Runtime, session: Session, *, request_id: str = "") -> int:
    """Sign out everywhere: every session of the account, this one included."""
    return await rt.db.interaction(
        "session_end_all", _ended, session, "session:revoke", "all", request_id, only=None
    )
