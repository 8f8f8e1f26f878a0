"""Signing in with a password and a second factor (the transitional means, SECURITY "Authentication levels").

Two steps. The password step checks the login and password; when right, and when the account has a second
factor, it opens a short-lived *flow* (the browser holds its secret in a cookie, the database its digest).
The second step takes a TOTP code or a recovery code on that flow and opens the session at level "eidas2".
A password alone never opens a session: an account without TOTP signs in with a passkey.

Every guess passes `ratelimit` first; every outcome is traced in the directory's chain, a failure with the
counter update, a success with the session row. Failures say the same thing whether the login exists or not,
and an unknown login costs the same argon2 time as a known one.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from espace_sante import mail
from espace_sante.audit import trace
from espace_sante.people import passwords, ratelimit, sessions, totp
from espace_sante.people.accounts import LOCKED, LOGIN_PATTERN, Account, account_record, login_key
from espace_sante.runtime import Runtime
from espace_sante.storage import accounts as store
from espace_sante.storage.accounts import AccountRow
from espace_sante.storage.db import Conn

#: The level reached by password + TOTP (or recovery code), and by a passkey with user verification.
ACR = "eidas2"

WRONG = "Identifiant ou mot de passe incorrect. / Wrong login or password."
WRONG_CODE = "Code incorrect. / Wrong code."
REPLAYED = (
    "Ce code a déjà servi : attendez le suivant (30 secondes). / This code was already used: wait for the next "
    "one (30 seconds)."
)
EXPIRED = (
    "Le délai pour saisir le code est dépassé : recommencez la connexion. / Too late to type the code: sign in "
    "again."
)
NO_SECOND_FACTOR = (
    "Ce compte n'a pas de second facteur pour le mot de passe : connectez-vous avec une clé d'accès. "
    "/ This account has no second factor for passwords: sign in with a passkey."
)


class _Expired(Exception):
    """The sign-in step expired while its second factor was being checked (rolls the check back)."""


class SignInRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def flow_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _anonymous(login_key_: str) -> tuple[str, str]:
    """How a failure with an unknown login is traced: by a digest of the login, never the typed text."""
    return "anonymous", "login:" + hashlib.sha256(login_key_.encode()).hexdigest()[:16]


async def _refuse(
    rt: Runtime,
    gate: ratelimit.Gate,
    who: tuple[str, str],
    *,
    factor: str,
    reason: str,
    ip: str,
    request_id: str,
    count: bool = True,
) -> None:
    """Trace a refused attempt (and the lockout it causes), in one transaction with the counters."""

    async def work(conn: Conn) -> None:
        locked = list(gate.newly_locked)
        if count:
            locked += await ratelimit.failed(conn, rt.settings, gate)
        detail = f"{factor} ip={ip}"
        await trace.account_event(
            conn,
            account_record(
                "signin:failure",
                kind=who[0],
                actor_id=who[1],
                outcome="4",
                detail=detail,
                basis=reason,
                request_id=request_id,
            ),
        )
        if locked:
            await trace.account_event(
                conn,
                account_record(
                    "signin:locked",
                    kind=who[0],
                    actor_id=who[1],
                    outcome="4",
                    detail=f"{factor} ip={ip} keys={','.join(k.split(':', 1)[0] for k in locked)}",
                    basis="too many failures",
                    request_id=request_id,
                ),
            )

    await rt.db.interaction("signin_refused", work)


def _who(account: AccountRow | None, key: str) -> tuple[str, str]:
    return (account.kind, account.actor_id) if account is not None else _anonymous(key)


async def password_step(
    rt: Runtime, *, login: str, password: str, ip: str, next_path: str = "", request_id: str = ""
) -> str:
    """Check login and password. Returns the secret of the flow for the second factor (to keep in a cookie).
    SignInRefused with the message to show otherwise."""
    key = login_key(login)[:254]
    gate = await ratelimit.enter(rt, [ratelimit.password_key(key), ratelimit.ip_key(ip)])
    # A login no account can have (control characters, spaces…) is looked up nowhere, but costs the same.
    plausible = bool(LOGIN_PATTERN.match(key))
    account = await rt.db.read("account_by_login", store.by_login, key) if plausible else None
    who = _who(account, key)
    if not gate.allowed:
        await _refuse(
            rt, gate, who, factor="password", reason="locked", ip=ip, request_id=request_id, count=False
        )
        raise SignInRefused(LOCKED)
    stored = await rt.db.read("account_password", store.password, account.account_id) if account else None
    checked = await passwords.verify_password(
        rt.settings, stored[0] if stored else None, stored[1] if stored else "", password[:4096]
    )
    if not checked.ok or account is None or account.disabled:
        reason = "disabled" if checked.ok and account is not None else "wrong secret"
        await _refuse(rt, gate, who, factor="password", reason=reason, ip=ip, request_id=request_id)
        raise SignInRefused(WRONG)
    has = await rt.db.read("account_factors", store.factors, account.account_id)
    rehash = await passwords.hash_password(rt.settings, password) if checked.rehash else None
    secret = secrets.token_urlsafe(32)

    async def work(conn: Conn) -> bool:
        await ratelimit.succeeded(conn, gate)
        if rehash is not None:
            await store.set_password(conn, account.account_id, *rehash)
        if not has.totp:
            await trace.account_event(
                conn,
                account_record(
                    "signin:failure",
                    kind=account.kind,
                    actor_id=account.actor_id,
                    outcome="4",
                    detail=f"password ip={ip}",
                    basis="no second factor",
                    request_id=request_id,
                ),
            )
            return False
        await store.add_flow(
            conn, flow_digest(secret), account.account_id, next_path, rt.settings.signin_step_seconds
        )
        return True

    if not await rt.db.interaction("signin_password", work):
        raise SignInRefused(NO_SECOND_FACTOR)
    return secret


@dataclass(frozen=True)
class SignedIn:
    secret: str
    session: sessions.Session
    next_path: str


async def flow_account(rt: Runtime, flow_secret: str) -> tuple[Account, str] | None:
    """The account waiting for its second factor on this flow, and where to go next; None if expired."""
    if not flow_secret or len(flow_secret) > 128:
        return None
    found = await rt.db.read("signin_flow", store.flow, flow_digest(flow_secret))
    if found is None:
        return None
    row = await rt.db.read("account_get", store.by_id, found[0])
    if row is None or row.disabled:
        return None
    return Account.of(row), found[1]


async def second_factor_step(
    rt: Runtime, *, flow_secret: str, code: str, ip: str, user_agent: str, request_id: str = ""
) -> SignedIn:
    """Check a TOTP code (once only) or a recovery code (single use) on a password flow and open the
    session. SignInRefused with the message to show otherwise."""
    waiting = await flow_account(rt, flow_secret)
    if waiting is None:
        raise SignInRefused(EXPIRED)
    account, next_path = waiting
    who = (account.kind, account.actor_id)
    gate = await ratelimit.enter(rt, [ratelimit.second_factor_key(account.account_id), ratelimit.ip_key(ip)])
    if not gate.allowed:
        await rt.db.interaction("signin_flow_end", store.end_flow, flow_digest(flow_secret))
        await _refuse(
            rt, gate, who, factor="totp", reason="locked", ip=ip, request_id=request_id, count=False
        )
        raise SignInRefused(LOCKED)
    peppers = passwords.peppers(rt.settings)
    code = code.strip()[:64]
    step: int | None = None
    use_totp = totp.looks_like_totp(code)
    if use_totp:
        row = await rt.db.read("account_totp", store.totp, account.account_id)
        if row is not None:
            secret = totp.decrypt(peppers, account.account_id, row.secret_enc, row.key_id)
            step = totp.matching_step(secret, code)
    factor = "totp" if use_totp else "recovery"
    method = "password+totp" if use_totp else "password+recovery"

    async def work(conn: Conn) -> SignedIn | str:
        if use_totp:
            if step is None:
                return "wrong secret"
            if not await store.use_totp_step(conn, account.account_id, step):
                return "replayed code"
        elif not await store.use_recovery_code(
            conn, account.account_id, totp.recovery_digests(peppers, account.account_id, code)
        ):
            return "wrong secret"
        if not await store.end_flow(conn, flow_digest(flow_secret)):
            # Roll back: an expired step must not use up the code or the recovery code just checked.
            raise _Expired
        await ratelimit.succeeded(conn, gate)
        cookie, session = await sessions.start_in(
            conn,
            rt,
            account.account_id,
            acr=ACR,
            method=method,
            user_agent=user_agent,
            ip=ip,
            request_id=request_id,
        )
        return SignedIn(cookie, session, next_path)

    try:
        outcome = await rt.db.interaction("signin_second_factor", work)
    except _Expired:
        raise SignInRefused(EXPIRED) from None
    if isinstance(outcome, str):
        await _refuse(rt, gate, who, factor=factor, reason=outcome, ip=ip, request_id=request_id)
        if outcome == "replayed code":
            # SECURITY V2 2.8.4: a code used twice may mean someone else saw it; the person is told.
            await mail.notify_credential_change(rt, account.notice_address, "totp-replayed")
        raise SignInRefused(REPLAYED if outcome == "replayed code" else WRONG_CODE)
    if not use_totp:
        await mail.notify_credential_change(rt, account.notice_address, "recovery-code-used")
    return outcome
