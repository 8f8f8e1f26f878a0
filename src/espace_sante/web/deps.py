"""What a portal page needs about the browser in front of it: its session, the request context for the
person signed in, and the anti-forgery checks (SECURITY V3, V4 4.2.2).

- `current_session(request)`: the live session of the `__Host-es_session` cookie, or None.
- `session_context(request)`: a FastAPI dependency giving the `Context` (runtime, the person's actor with
  their full scopes and sign-in level, request id) of the person signed in. Without a live session it raises
  `SignInRequired`, which the app answers with a redirection to the sign-in page (GET) and coming back to the
  same address afterwards, or 401 (other methods).
- `check_csrf(request, session, token)`: a cookie-authenticated POST must carry the session's synchronizer
  token (form field `csrf` or header `X-CSRF-Token`), and must not come from another site.
- Before a session exists (sign-in forms), a signed double-submit token: the browser holds a random value in
  the `__Host-es_pre` cookie; the form carries a timestamped HMAC of it under a pepper-derived key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import cast
from urllib.parse import quote, urlsplit

from fastapi import Request
from starlette.responses import Response

from espace_sante.context import Context
from espace_sante.people import sessions
from espace_sante.people.passkeys import origin
from espace_sante.people.passwords import peppers
from espace_sante.people.sessions import Session
from espace_sante.runtime import Runtime

SESSION_COOKIE = sessions.COOKIE
PRE_COOKIE = "__Host-es_pre"
#: Whose space the holder pages show (web/holder/whose.py): an opaque reference, bound to the session.
CHOICE_COOKIE = "__Host-es_pour"
FLOW_COOKIE = "__Host-es_flow"
#: How long a sign-in form stays valid.
FORM_MAX_AGE = 2 * 3600
_UNSET = object()


class SignInRequired(Exception):
    """No live session: sign in, then come back to `next_path`."""

    def __init__(self, next_path: str = "") -> None:
        super().__init__("sign-in required")
        self.next_path = next_path


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def client_ip(request: Request) -> str:
    """The client's address: the peer's, or the one a trusted proxy forwarded (ESPACE_SANTE_TRUSTED_PROXIES,
    app.py); an X-Forwarded-For from anyone else is ignored."""
    return request.client.host if request.client else ""


def user_agent(request: Request) -> str:
    return request.headers.get("user-agent", "")[:300]


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")


def safe_next(value: str | None) -> str:
    """A local path to return to after sign-in, or "" (SECURITY V5 5.1.5: never another site)."""
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith("//"):
        return ""
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return ""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return ""
    return value


def here(request: Request) -> str:
    """This request's path and query, to come back to."""
    query = request.url.query
    return safe_next(request.url.path + (f"?{query}" if query else ""))


async def current_session(request: Request) -> Session | None:
    """The live session of this browser, or None. Looked up once per request."""
    cached = getattr(request.state, "es_session", _UNSET)
    if cached is not _UNSET:
        return cast("Session | None", cached)
    secret = request.cookies.get(SESSION_COOKIE, "")
    session = await sessions.current(runtime(request), secret) if secret else None
    request.state.es_session = session
    return session


async def session_context(request: Request) -> Context:
    """The context of the person signed in (FastAPI dependency). SignInRequired without a live session."""
    session = await current_session(request)
    if session is None:
        raise SignInRequired(here(request))
    rt = runtime(request)
    actor = await sessions.actor_of(rt, session)
    return Context(rt, actor, request_id=request_id(request))


def sign_in_url(next_path: str) -> str:
    return "/connexion" + (f"?next={quote(next_path, safe='/')}" if next_path else "")


# --- anti-forgery ------------------------------------------------------------------------------------------


def same_site(request: Request) -> bool:
    """False when the browser says the request comes from another site (Sec-Fetch-Site, Origin). Under our
    `Referrer-Policy: no-referrer` browsers send `Origin: null` on form posts: then Sec-Fetch-Site decides."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    sent = request.headers.get("origin")
    return sent in (None, "null") or sent == origin(runtime(request).settings)


def check_csrf(request: Request, session: Session, token: str | None) -> bool:
    """The synchronizer token of the session (SECURITY V4 4.2.2), from the form or the X-CSRF-Token header."""
    value = token or request.headers.get("x-csrf-token", "")
    return (
        bool(value)
        and same_site(request)
        and hmac.compare_digest(value.encode(), session.csrf_token.encode())
    )


def _pre_key(request: Request) -> bytes:
    return peppers(runtime(request).settings).subkey("signin-form")


def pre_cookie(request: Request) -> tuple[str, bool]:
    """The browser's pre-session value, and whether it must be set (new)."""
    value = request.cookies.get(PRE_COOKIE, "")
    if 20 <= len(value) <= 100:
        return value, False
    return secrets.token_urlsafe(32), True


def pre_token(request: Request, cookie_value: str) -> str:
    stamp = str(int(time.time()))
    mac = hmac.new(_pre_key(request), f"{stamp}.{cookie_value}".encode(), hashlib.sha256).hexdigest()
    return f"{stamp}.{mac}"


def check_pre_token(request: Request, token: str | None) -> bool:
    """Signed double-submit: the token must be an HMAC of this browser's pre-session cookie, recent."""
    value = token or request.headers.get("x-csrf-token", "")
    cookie_value = request.cookies.get(PRE_COOKIE, "")
    if not value or not cookie_value or not same_site(request):
        return False
    stamp, _, mac = value.partition(".")
    if not (stamp.isascii() and stamp.isdigit()) or not 0 <= time.time() - int(stamp) <= FORM_MAX_AGE:
        return False
    expected = hmac.new(_pre_key(request), f"{stamp}.{cookie_value}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac.encode(), expected.encode())


def pre_binding(request: Request) -> bytes:
    """What a sign-in WebAuthn challenge is bound to: this browser's pre-session cookie."""
    return hashlib.sha256(request.cookies.get(PRE_COOKIE, "").encode()).digest()


def set_cookie(response: Response, name: str, value: str, *, max_age: int | None = None) -> None:
    """`__Host-` cookies: Secure, HttpOnly, SameSite=Lax, Path=/, no Domain (SECURITY V3 3.4.1-3.4.4)."""
    response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax")


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="lax")
