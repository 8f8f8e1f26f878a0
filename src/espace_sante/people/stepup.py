"""Re-authentication for what cannot be undone (SECURITY V3 3.7.1; issue 16 #7; docs/access-policy.md
"Actions that cannot be undone").

Closing a space, asking for its destruction, (later) exporting it and opening an emergency access need the
person to have proved who they are within the last `WINDOW_SECONDS`, at least at level `LEVEL`. The rule is
here and only here: `require` is called by the services that do these actions (spaces/lifecycle.py
`close` and `erase`, rights/changes.py `emergency`), whichever surface asked.

What counts as a proof is the actor's `auth_time`: a portal session's sign-in or its last confirmation of
identity (`confirm`: password and second factor again, on the step-up page of web/account/signin.py; a passkey or a
federated account signs in again, federation asking the provider for `max_age`), a development token's issue, and for a SMART token the
`auth_time` of the session that approved its code (none after a refresh: refreshing proves nobody is there).
Without a recent one, the API answers with the RFC 9470 challenge `insufficient_user_authentication`.

People are asked; machines, the insurer's scheduled runs and operators (who record a holder's request made by
phone or at a counter, after their own checks) are not.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal

from espace_sante import mail
from espace_sante.access.actors import Actor, level_at_least
from espace_sante.audit import trace
from espace_sante.context import Context
from espace_sante.errors import FhirError
from espace_sante.people import devices, passwords, ratelimit, signin, totp
from espace_sante.people.accounts import LOCKED, Account, account_record, login_key
from espace_sante.runtime import Runtime
from espace_sante.storage import accounts as account_store
from espace_sante.storage import sessions as session_store
from espace_sante.storage.db import Conn
from espace_sante.storage.sessions import Session

#: How recent the proof must be: five minutes (ASVS 3.7.1 asks for a recent one; long enough to read the
#: confirmation page after signing in).
WINDOW_SECONDS = 5 * 60
#: The level a proof must reach: two factors (password and TOTP, a passkey, FranceConnect+, Pro Santé Connect).
LEVEL = "eidas2"

Action = Literal["close", "erase", "export", "emergency"]

#: What each action is, in the person's words (French, English): the refusal names it.
ACTIONS: dict[Action, tuple[str, str]] = {
    "close": ("Fermer un espace santé", "Closing a health space"),
    "erase": ("Demander la destruction d'un espace santé", "Asking for a health space's destruction"),
    "export": ("Exporter le contenu d'un espace santé", "Exporting a health space"),
    "emergency": ("Ouvrir un accès en urgence", "Opening an emergency access"),
}

#: Who is asked: people, and apps acting for one.
ASKED = frozenset({"holder", "representative", "practitioner", "app"})

WRONG = "Mot de passe ou code incorrect. / Wrong password or code."
REPLAYED = (
    "Ce code a déjà servi : attendez le suivant (30 secondes). / This code was already used: wait for the next "
    "one (30 seconds)."
)
SIGN_IN_AGAIN = (
    "Ce compte ne se connecte pas par mot de passe et code : reconnectez-vous (clé d'accès ou FranceConnect+). "
    "/ This account does not sign in with a password and a code: sign in again (passkey or FranceConnect+)."
)


class StepUpRequired(FhirError):
    """401: this action needs a recent proof of identity (the surfaces send the person to confirm it)."""

    def __init__(self, action: Action) -> None:
        self.action = action
        fr, en = ACTIONS[action]
        minutes = WINDOW_SECONDS // 60
        super().__init__(
            f"{fr} demande de confirmer votre identité (connexion de moins de {minutes} minutes) / "
            f"{en} needs a sign-in within the last {minutes} minutes",
            401,
            "login",
        )

    @property
    def challenge(self) -> str:
        """The `WWW-Authenticate` answer on the API (RFC 9470 section 3: the client asks the person to sign in
        again with `max_age`)."""
        return (
            'Bearer realm="espace-sante", error="insufficient_user_authentication", '
            f'error_description="a sign-in within {WINDOW_SECONDS} seconds is required", '
            f'max_age={WINDOW_SECONDS}, acr_values="{LEVEL}"'
        )


class StepUpRefused(Exception):
    """The confirmation of identity failed. The message is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def recent(actor: Actor, *, now: datetime | None = None) -> bool:
    """Whether `actor` proved who they are, at the required level, within the window."""
    if actor.auth_time is None or not level_at_least(actor.acr, LEVEL):
        return False
    age = (now or datetime.now(UTC)) - actor.auth_time
    return -timedelta(seconds=5) <= age < timedelta(seconds=WINDOW_SECONDS)


def require(ctx: Context, action: Action) -> None:
    """StepUpRequired unless the actor may do `action` now: not a person (nothing to ask), or a person whose
    proof is recent. Call it after the checks that decide whether the caller may know the target exists."""
    if ctx.actor.kind in ASKED and not recent(ctx.actor):
        raise StepUpRequired(action)


#: A number of seconds in ASCII digits: `str.isdigit` accepts "²", which `int` refuses.
_SECONDS = re.compile(r"[0-9]{1,9}")


def within(session: Session, max_age: str) -> bool:
    """Whether the session's proof meets an OpenID Connect `max_age` (Core 3.1.2.1) a client sent with its
    authorization request: "" or not a number asks nothing; under a minute counts as a minute, the time to go
    through the step-up page and back (else `max_age=0` would send her there for ever)."""
    if not _SECONDS.fullmatch(max_age):
        return True
    age = datetime.now(UTC) - session.auth_time
    return age <= timedelta(seconds=max(int(max_age), 60))


# --- confirming one's identity in the session ----------------------------------------------------------------


async def _refused(
    rt: Runtime, gate: ratelimit.Gate, session: Session, reason: str, ip: str, request_id: str, *, count: bool
) -> None:
    async def work(conn: Conn) -> None:
        if count:
            await ratelimit.failed(conn, rt.settings, gate)
        await trace.account_event(
            conn,
            account_record(
                "signin:failure",
                kind=session.kind,
                actor_id=session.actor_id,
                outcome="4",
                detail=f"password ip={ip} step-up",
                basis=reason,
                request_id=request_id,
            ),
        )

    await rt.db.interaction("stepup_refused", work)


async def confirm(
    rt: Runtime,
    session: Session,
    *,
    password: str,
    code: str,
    ip: str,
    request_id: str = "",
    device_cookie: str = "",
) -> Session:
    """The person types their password and a TOTP or recovery code again: the session's `auth_time` becomes
    now. The same counters and rules as signing in (a guess here is a guess there): per source (the
    browser's trusted device for the account, `device_cookie`, else the address), the password's and the
    codes' ceilings, and past the codes' ceiling only a trusted device goes on, the holder being told
    (people/signin.py `codes_closed`). StepUpRefused otherwise."""
    has = await rt.db.read("account_factors", account_store.factors, session.account_id)
    if not has.password or not has.totp:
        # Nothing to guess here (she signs in again instead): not counted.
        raise StepUpRefused(SIGN_IN_AGAIN)
    key = login_key(session.login)[:254]
    found = await rt.db.read("account_get", account_store.by_id, session.account_id)
    account = Account.of(found) if found is not None else None
    generation = found.credential_generation if found is not None else 0
    device = devices.trusted_device(rt.settings, device_cookie, session.account_id, generation)
    source = ratelimit.Source(ip, device)
    codes = signin.codes_key(session.account_id, key)
    gate = await ratelimit.enter(
        rt, [*ratelimit.keys_for(ratelimit.password_key(key), source), *ratelimit.keys_for(codes, source)]
    )
    if signin.codes_closed(gate, codes, source):
        await _refused(rt, gate, session, "locked", ip, request_id, count=gate.allowed)
        if account is not None:
            await signin.warn_codes_guessed(rt, gate, codes, account.notice_address)
        raise StepUpRefused(LOCKED)
    stored = await rt.db.read("account_password", account_store.password, session.account_id)
    checked = await passwords.verify_password(
        rt.settings, stored[0] if stored else None, stored[1] if stored else "", password[:4096]
    )
    peppers = passwords.peppers(rt.settings)
    code = code.strip()[:64]
    use_totp = totp.looks_like_totp(code)
    step: int | None = None
    if use_totp:
        row = await rt.db.read("account_totp", account_store.totp, session.account_id)
        if row is not None:
            secret = totp.decrypt(peppers, session.account_id, row.secret_enc, row.key_id)
            step = totp.matching_step(secret, code)

    async def work(conn: Conn) -> Session | str:
        if not checked.ok:
            return "wrong secret"
        if use_totp:
            if step is None:
                return "wrong secret"
            if not await account_store.use_totp_step(conn, session.account_id, step):
                return "replayed code"
        elif not await account_store.use_recovery_code(
            conn, session.account_id, totp.recovery_digests(peppers, session.account_id, code)
        ):
            return "wrong secret"
        await ratelimit.succeeded(conn, gate)
        at = await session_store.proved(conn, session.session_id)
        # Traced as a sign-in (it is one, inside the session): the holder's trace says "Connexion … avec …".
        await trace.account_event(
            conn,
            account_record(
                "signin:success",
                kind=session.kind,
                actor_id=session.actor_id,
                detail=f"{'password+totp' if use_totp else 'password+recovery'} ip={ip} step-up",
                basis=session.acr,
                request_id=request_id,
            ),
        )
        return Session(**{**session.__dict__, "auth_time": at})

    outcome = await rt.db.interaction("stepup_confirm", work)
    if isinstance(outcome, str):
        await _refused(rt, gate, session, outcome, ip, request_id, count=True)
        if outcome == "replayed code" and account is not None:
            # As at sign-in (SECURITY V2 2.8.4): a code used twice may mean someone else saw it.
            await mail.notify_credential_change(rt, account.notice_address, "totp-replayed")
        raise StepUpRefused(REPLAYED if outcome == "replayed code" else WRONG)
    if not use_totp and account is not None:
        await mail.notify_credential_change(rt, account.notice_address, "recovery-code-used")
    return outcome
