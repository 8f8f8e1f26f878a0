"""Signing in with a password and a second factor (the transitional means, SECURITY "Authentication levels").

Two steps. The password step checks the login and password; when right, and when the account has a second
factor, it opens a short-lived *flow* (the browser holds its secret in a cookie, the database its digest).
The second step takes a TOTP code or a recovery code on that flow and opens the session at level "eidas2".
A password alone never opens a session: an account without TOTP signs in with a passkey.

Every guess passes `ratelimit` first, counted per login and source (the address, or the browser's trusted
device); every outcome is traced in the directory's chain, a failure with the counter update, a success with
the session row. Failures say the same thing whether the login exists or not, and an unknown login costs the
same argon2 time as a known one.

Past the login's ceiling (docs/access-policy.md "Sign-in limits"), a password typed from a browser that is not
one of the account's trusted devices is checked *blind*: right or wrong, the answer is the code step, and only
the right password with the right code opens a session. A distributed guesser learns nothing more about the
password, and the holder, from any new address, still signs in. The code step of a blind flow does the same
work either way (a wrong password's on `NOBODY` and a stand-in counter, `codes_key`).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from espace_sante import mail
from espace_sante.audit import trace
from espace_sante.people import devices, passwords, ratelimit, sessions, totp
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
    "Code déjà utilisé : ce code a déjà servi, attendez le suivant (30 secondes). / Code already used: wait "
    "for the next one (30 seconds)."
)
#: The answer to every refused code of a blind step: it must not tell whether the password was right.
BLIND_WRONG = (
    "Identifiant, mot de passe ou code incorrect : recommencez la connexion. / Wrong login, password or code: "
    "sign in again."
)
EXPIRED = (
    "Le délai pour saisir le code est dépassé : recommencez la connexion. / Too late to type the code: sign in "
    "again."
)
NO_SECOND_FACTOR = (
    "Ce compte n'a pas de second facteur pour le mot de passe : connectez-vous avec une clé d'accès. "
    "/ This account has no second factor for passwords: sign in with a passkey."
)


#: The account id of a blind step whose password was wrong: no account has it, so its code step does the same
#: reads as any other and finds nothing.
NOBODY = uuid.UUID(int=0)


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


async def refuse_attempt(
    rt: Runtime,
    gate: ratelimit.Gate,
    who: tuple[str, str],
    *,
    factor: str,
    reason: str,
    ip: str,
    request_id: str,
    count: bool = True,
    uncount: bool = False,
    note: str = "",
) -> None:
    """Trace a refused attempt (and the wait it starts), in one transaction with the counters; password and
    passkey sign-in share it. `count`: the attempt was a guess (a refusal while waiting was counted nowhere);
    `uncount`: it was counted but was no guess, and is given back."""
    await rt.db.interaction(
        "signin_refused",
        _record_refusal,
        rt,
        gate,
        who,
        factor=factor,
        reason=reason,
        ip=ip,
        request_id=request_id,
        count=count,
        uncount=uncount,
        note=note,
    )


async def _record_refusal(
    conn: Conn,
    rt: Runtime,
    gate: ratelimit.Gate,
    who: tuple[str, str],
    *,
    factor: str,
    reason: str,
    ip: str,
    request_id: str,
    count: bool = True,
    uncount: bool = False,
    note: str = "",
) -> None:
    locked = await ratelimit.failed(conn, rt.settings, gate) if count and not uncount else []
    if uncount:
        await ratelimit.not_a_guess(conn, gate)
    detail = f"{factor} ip={ip}" + (f" {note}" if note else "")
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
                detail=f"{factor} ip={ip} keys={','.join(_kind(k) for k in locked)}",
                basis="too many failures",
                request_id=request_id,
            ),
        )


def _kind(key: str) -> str:
    """`pw+ip` for `pw:<digest>|ip:<address>`: what a wait is counted on, without the login or address."""
    return "+".join(part.split(":", 1)[0] for part in key.split("|"))


def _who(account: AccountRow | None, key: str) -> tuple[str, str]:
    return (account.kind, account.actor_id) if account is not None else _anonymous(key)


async def password_step(
    rt: Runtime,
    *,
    login: str,
    password: str,
    ip: str,
    next_path: str = "",
    request_id: str = "",
    device_cookie: str = "",
) -> str:
    """Check login and password. Returns the secret of the flow for the second factor (to keep in a cookie).
    SignInRefused with the message to show otherwise. `device_cookie`: the browser's trusted-device cookie."""
    key = login_key(login)[:254]
    # A login no account can have (control characters, spaces…) is looked up nowhere, but costs the same.
    plausible = bool(LOGIN_PATTERN.match(key))
    account = await rt.db.read("account_by_login", store.by_login, key) if plausible else None
    device = devices.trusted_device(
        rt.settings,
        device_cookie,
        account.account_id if account else None,
        account.credential_generation if account else 0,
    )
    source = ratelimit.Source(ip, device)
    gate = await ratelimit.enter(rt, ratelimit.keys_for(ratelimit.password_key(key), source))
    who = _who(account, key)
    if not gate.allowed:
        await refuse_attempt(
            rt, gate, who, factor="password", reason="locked", ip=ip, request_id=request_id, count=False
        )
        raise SignInRefused(LOCKED)
    stored = await rt.db.read("account_password", store.password, account.account_id) if account else None
    checked = await passwords.verify_password(
        rt.settings, stored[0] if stored else None, stored[1] if stored else "", password[:4096]
    )
    if gate.over_ceiling and not source.trusted:
        return await _blind_step(rt, gate, who, account, key, checked.ok, next_path, ip, request_id)
    if not checked.ok or account is None or account.disabled:
        reason = "disabled" if checked.ok and account is not None else "wrong secret"
        await refuse_attempt(rt, gate, who, factor="password", reason=reason, ip=ip, request_id=request_id)
        raise SignInRefused(WRONG)
    has = await rt.db.read("account_factors", store.factors, account.account_id)
    rehash = await passwords.hash_password(rt.settings, password) if checked.rehash else None
    secret = secrets.token_urlsafe(32)

    async def work(conn: Conn) -> bool:
        await ratelimit.succeeded(conn, gate)
        if rehash is not None:
            await store.set_password(conn, account.account_id, *rehash, rehash=True)
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


async def _blind_step(
    rt: Runtime,
    gate: ratelimit.Gate,
    who: tuple[str, str],
    account: AccountRow | None,
    key: str,
    right: bool,
    next_path: str,
    ip: str,
    request_id: str,
) -> str:
    """Past the login's ceiling, from an untrusted source: the code step in every case. Its flow names the
    account only when the password was right and a code can follow; nothing is given back or cleared here
    (a count going down would tell the password was right)."""
    # The same reads and one transaction whatever the outcome: the time taken must not tell either.
    has = await rt.db.read("account_factors", store.factors, account.account_id) if account else None
    usable = right and account is not None and not account.disabled and has is not None and has.totp
    reason = "wrong secret"
    if right and account is not None:
        reason = "disabled" if account.disabled else "no second factor"
    secret = secrets.token_urlsafe(32)

    async def work(conn: Conn) -> None:
        if not usable:
            await _record_refusal(
                conn,
                rt,
                gate,
                who,
                factor="password",
                reason=reason,
                ip=ip,
                request_id=request_id,
                note="blind",
            )
        await store.add_flow(
            conn,
            flow_digest(secret),
            account.account_id if usable and account is not None else None,
            next_path,
            rt.settings.signin_step_seconds,
            blind=True,
            login=key,
        )

    await rt.db.interaction("signin_password_blind", work)
    return secret


@dataclass(frozen=True)
class SignedIn:
    secret: str
    session: sessions.Session
    next_path: str
    #: The browser's trusted-device cookie, renewed for this account (people/devices.py).
    device_cookie: str = ""


@dataclass(frozen=True)
class Waiting:
    """A step waiting for its second factor: the login to show, the account (None on a blind step whose
    password was wrong), where to go next, and whether the step is blind."""

    login: str
    account: Account | None
    next_path: str
    blind: bool
    #: The account's credential generation, which its trusted devices sign (people/devices.py).
    generation: int = 0


async def waiting_flow(rt: Runtime, flow_secret: str) -> Waiting | None:
    """The step waiting on this flow; None if expired (or its account since disabled)."""
    if not flow_secret or len(flow_secret) > 128:
        return None
    found = await rt.db.read("signin_flow", store.flow, flow_digest(flow_secret))
    if found is None:
        return None
    if found.account_id is None:
        return Waiting(found.login, None, found.next_path, True)
    row = await rt.db.read("account_get", store.by_id, found.account_id)
    if row is None or row.disabled:
        return None
    account = Account.of(row)
    login = found.login if found.blind else account.login
    return Waiting(login, account, found.next_path, found.blind, row.credential_generation)


def codes_key(account_id: uuid.UUID, login: str) -> str:
    """The counter of an account's codes; for a blind step whose password was wrong (`NOBODY`), a stand-in
    per login: counted like a real one, so that the code step does the same work whether the password was
    right or not, yet never against the holder's codes (a stranger's wrong passwords must not close them)."""
    if account_id == NOBODY:
        return ratelimit.second_factor_key("blind-" + ratelimit.password_key(login)[3:])
    return ratelimit.second_factor_key(account_id)


def codes_closed(gate: ratelimit.Gate, codes: str, source: ratelimit.Source) -> bool:
    """Whether this attempt may not check a code: its source is waiting, or the account's codes are past
    their ceiling and the source is not one of its trusted devices (whoever guesses codes knows the
    password). The sign-in's code step and the step-up (people/stepup.py) share this rule."""
    return not gate.allowed or (codes in gate.over and not source.trusted)


async def warn_codes_guessed(rt: Runtime, gate: ratelimit.Gate, codes: str, to: str | None) -> None:
    """The first attempt past the codes' ceiling: whoever guesses has the password, and the holder is told
    (ASVS 2.2.3 spirit)."""
    if gate.counts.get(codes) == gate.free.get(codes, 0) + 1:
        await mail.notify_credential_change(rt, to, "codes-guessed")


async def second_factor_step(
    rt: Runtime,
    *,
    flow_secret: str,
    code: str,
    ip: str,
    user_agent: str,
    request_id: str = "",
    device_cookie: str = "",
) -> SignedIn:
    """Check a TOTP code (once only) or a recovery code (single use) on a password flow and open the
    session. SignInRefused with the message to show otherwise. A code of a step already used is answered as
    such and not counted (it is no guess: whoever typed it saw it)."""
    waiting = await waiting_flow(rt, flow_secret)
    if waiting is None:
        raise SignInRefused(EXPIRED)
    account, next_path, blind = waiting.account, waiting.next_path, waiting.blind
    # A blind step whose password was wrong goes through the same gate, reads and refusal as a wrong code
    # (on a stand-in account and counter): neither the counters nor the time taken tell the password was right.
    account_id = account.account_id if account is not None else NOBODY
    who = (account.kind, account.actor_id) if account is not None else _anonymous(waiting.login)
    device = devices.trusted_device(
        rt.settings, device_cookie, account_id if account is not None else None, waiting.generation
    )
    source = ratelimit.Source(ip, device)
    codes = codes_key(account_id, waiting.login)
    gate = await ratelimit.enter(rt, ratelimit.keys_for(codes, source))
    # The stand-in's ceiling is counted but never closes: a distributed guesser passes it at once, and a wrong
    # password's step would then end sooner than a right one's.
    if codes_closed(gate, codes if account is not None else "", source):
        await rt.db.interaction("signin_flow_end", store.end_flow, flow_digest(flow_secret))
        await refuse_attempt(
            rt,
            gate,
            who,
            factor="totp",
            reason="locked",
            ip=ip,
            request_id=request_id,
            count=gate.allowed,
        )
        if account is not None:
            await warn_codes_guessed(rt, gate, codes, account.notice_address)
        raise SignInRefused(BLIND_WRONG if blind else LOCKED)
    peppers = passwords.peppers(rt.settings)
    code = code.strip()[:64]
    step: int | None = None
    use_totp = totp.looks_like_totp(code)
    if use_totp:
        row = await rt.db.read("account_totp", store.totp, account_id)
        if row is not None:
            secret = totp.decrypt(peppers, account_id, row.secret_enc, row.key_id)
            step = totp.matching_step(secret, code)
    factor = "totp" if use_totp else "recovery"
    method = "password+totp" if use_totp else "password+recovery"
    password_source = ratelimit.per_source(ratelimit.password_key(waiting.login), source)

    async def work(conn: Conn) -> SignedIn | str:
        if use_totp:
            if step is None:
                return "wrong secret"
            if not await store.use_totp_step(conn, account_id, step):
                return "replayed code"
        elif not await store.use_recovery_code(
            conn, account_id, totp.recovery_digests(peppers, account_id, code)
        ):
            return "wrong secret"
        if account is None:
            return "wrong secret"  # a blind step whose password was wrong (no account has NOBODY's codes)
        if not await store.end_flow(conn, flow_digest(flow_secret)):
            # Roll back: an expired step must not use up the code or the recovery code just checked.
            raise _Expired
        await ratelimit.succeeded(conn, gate)
        if blind:
            # The blind password step gave nothing back; now that both factors were right, this source's
            # password failures are forgotten as after any sign-in.
            await ratelimit.forget(conn, password_source)
        cookie, session = await sessions.start_in(
            conn,
            rt,
            account_id,
            acr=ACR,
            method=method,
            user_agent=user_agent,
            ip=ip,
            request_id=request_id,
        )
        remembered = devices.remember(rt.settings, device_cookie, account_id, waiting.generation)
        return SignedIn(cookie, session, next_path, remembered)

    try:
        outcome = await rt.db.interaction("signin_second_factor", work)
    except _Expired:
        raise SignInRefused(EXPIRED) from None
    if isinstance(outcome, str):
        replayed = outcome == "replayed code"
        await refuse_attempt(
            rt, gate, who, factor=factor, reason=outcome, ip=ip, request_id=request_id, uncount=replayed
        )
        if replayed and account is not None:
            # SECURITY V2 2.8.4: a code used twice may mean someone else saw it; the person is told.
            await mail.notify_credential_change(rt, account.notice_address, "totp-replayed")
        if blind:
            await rt.db.interaction("signin_flow_end", store.end_flow, flow_digest(flow_secret))
            raise SignInRefused(BLIND_WRONG)
        raise SignInRefused(REPLAYED if replayed else WRONG_CODE)
    if not use_totp and account is not None:
        await mail.notify_credential_change(rt, account.notice_address, "recovery-code-used")
    return outcome
