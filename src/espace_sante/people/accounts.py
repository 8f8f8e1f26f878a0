"""Accounts: people who sign in, linked to the identity the access policy knows (issue 4, "Actors and
sign-in"), and the changes of their credentials.

An account has a `kind` (holder, practitioner, operator) and an `actor_id` (the INS, the RPPS or the operator
login); a parent representing a minor signs in as a holder (representation is stored with the rights). Its
login (an e-mail address or a user name) is unique whatever its case. Every change is traced in the directory's
chain in the same transaction, and a notice is mailed after a credential or factor change.

Changing a factor (TOTP, recovery codes, passkeys, password) needs a recent sign-in (`sessions.is_fresh`,
SECURITY V3 3.7.1); a password change also needs the current password.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from typing import cast

import pyotp

from espace_sante import mail
from espace_sante.access.actors import ActorKind
from espace_sante.access.scopes import Scopes
from espace_sante.audit import trace
from espace_sante.errors import BadRequest, Conflict, NotFound
from espace_sante.fhir.text import bidi_control, format_character
from espace_sante.people import actors as people
from espace_sante.people import passwords, ratelimit, totp
from espace_sante.runtime import Runtime
from espace_sante.storage import accounts as store
from espace_sante.storage import clients as client_store
from espace_sante.storage import grants as grant_store
from espace_sante.storage import sessions as session_store
from espace_sante.storage.accounts import AccountRow, Factors
from espace_sante.storage.audit import Record
from espace_sante.storage.db import Conn

KINDS: tuple[str, ...] = ("holder", "practitioner", "operator")

_LOGIN = re.compile(r"^[^\s\x00-\x1f\x7f]{3,254}$")
LOGIN_PATTERN = _LOGIN
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")


class AccountError(Exception):
    """A request about an account that cannot be done; `message` is shown to the person (French / English)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AccountTaken(AccountError):
    """The login, or the person, already has another account."""


class ReauthRequired(AccountError):
    def __init__(self) -> None:
        super().__init__(
            "Pour modifier vos moyens de connexion, reconnectez-vous d'abord (vérification récente requise). "
            "/ To change how you sign in, sign in again first (a recent check is required)."
        )


@dataclass(frozen=True)
class Account:
    account_id: uuid.UUID
    kind: str
    actor_id: str
    login: str
    email: str | None
    disabled: bool

    @classmethod
    def of(cls, row: AccountRow) -> Account:
        return cls(row.account_id, row.kind, row.actor_id, row.login, row.email, row.disabled)

    @property
    def notice_address(self) -> str | None:
        """Where security notices go: the e-mail address, or the login when it is one."""
        if self.email:
            return self.email
        # A login taken before format characters were refused is not trusted as an address.
        is_address = _EMAIL.match(self.login) and format_character(self.login) is None
        return self.login if is_address else None


def login_key(login: str) -> str:
    """The form logins are compared in: NFKC, case-folded, trimmed."""
    return unicodedata.normalize("NFKC", login.strip()).casefold()


def check_login(login: str) -> str:
    text = unicodedata.normalize("NFKC", login.strip())
    if (hidden := bidi_control(text)) is not None:
        raise AccountError(
            f"L'identifiant contient un caractère invisible qui change l'ordre d'affichage ({hidden}). "
            f"/ The login contains an invisible character that reorders the text ({hidden})."
        )
    if (hidden := format_character(text)) is not None:
        # Two logins differing by a zero-width character look the same to whoever reads them (issue 16 #5).
        raise AccountError(
            f"L'identifiant contient un caractère invisible ({hidden}). "
            f"/ The login contains an invisible character ({hidden})."
        )
    if not _LOGIN.match(text):
        raise AccountError(
            "L'identifiant doit compter de 3 à 254 caractères, sans espace. "
            "/ The login needs 3 to 254 characters, without spaces."
        )
    return text


def check_email(email: str | None) -> str | None:
    if email is None or not email.strip():
        return None
    text = email.strip()
    if (hidden := format_character(text)) is not None:
        # U+202E shows `jeanne@<U+202E>rf.elpmexe` as another address; a zero-width space hides a difference
        # (issue 16 #5). No address needs one.
        raise AccountError(
            f"L'adresse électronique contient un caractère invisible ({hidden}). "
            f"/ The e-mail address contains an invisible character ({hidden})."
        )
    if len(text) > 254 or not _EMAIL.match(text):
        raise AccountError("Adresse électronique invalide. / Invalid e-mail address.")
    return text


def account_record(
    action: str,
    *,
    kind: str,
    actor_id: str,
    outcome: str = "0",
    detail: str = "",
    basis: str = "",
    request_id: str = "",
) -> Record:
    return Record(
        action=action,
        outcome=outcome,
        actor_kind=kind,
        actor_id=actor_id,
        basis=basis,
        detail=detail,
        request_id=request_id,
    )


def _record_for(account: Account | AccountRow, action: str, detail: str = "", request_id: str = "") -> Record:
    return account_record(
        action, kind=account.kind, actor_id=account.actor_id, detail=detail, request_id=request_id
    )


# --- creating and finding accounts -------------------------------------------------------------------------


@dataclass(frozen=True)
class Created:
    account_id: uuid.UUID
    created: bool
    #: Shown once (the CLI prints them); empty when not asked for or when the account already existed.
    totp_secret: str = ""
    recovery_codes: tuple[str, ...] = ()


async def _check_actor(rt: Runtime, kind: str, actor_id: str) -> None:
    if kind not in KINDS:
        raise AccountError(
            f"Type de compte inconnu « {kind} » : holder, practitioner ou operator. "
            f"/ Unknown account kind: holder, practitioner or operator."
        )
    try:
        await people.actor_for(rt, cast(ActorKind, kind), actor_id, scopes=Scopes.none())
    except (NotFound, BadRequest) as exc:
        raise AccountError(f"Personne introuvable pour ce compte / no such person: {exc.message}") from exc


async def create(
    rt: Runtime,
    *,
    kind: str,
    actor_id: str,
    login: str,
    password: str | None,
    email: str | None = None,
    totp_secret: str | None = None,
    new_totp: bool = False,
    totp_step: int = 0,
    request_id: str = "",
) -> Created:
    """Create an account, or return the existing one when this login already belongs to this person
    (idempotent; its credentials are left as they are). AccountError when the login or the person already has
    another account, or when the password is refused by the policy. `totp_step`: the time step of a code
    the person already typed to prove the secret (spent: it cannot sign in again)."""
    display_login = check_login(login)
    key = login_key(display_login)
    address = check_email(email)
    await _check_actor(rt, kind, actor_id)
    existing = await rt.db.read("account_by_login", store.by_login, key)
    if existing is not None:
        if (existing.kind, existing.actor_id) == (kind, actor_id):
            return Created(existing.account_id, False)
        raise AccountTaken("Cet identifiant est déjà pris. / This login is already taken.")
    hashed = None
    if password is not None:
        try:
            valid = passwords.validate(
                password, login=display_login, breached_file=rt.settings.breached_passwords_file
            )
        except passwords.WeakPassword as exc:
            raise AccountError(exc.message) from exc
        hashed = await passwords.hash_password(rt.settings, valid)
    if totp_secret is not None:
        try:
            pyotp.TOTP(totp_secret).now()
        except (ValueError, TypeError) as exc:
            raise AccountError(
                "Secret TOTP invalide (base32 attendu). / Invalid TOTP secret (base32)."
            ) from exc
    elif new_totp:
        totp_secret = totp.new_secret()
    codes = totp.new_recovery_codes() if new_totp else []
    account_id = uuid.uuid4()
    peppers = passwords.peppers(rt.settings)

    async def work(conn: Conn) -> bool:
        if not await store.insert(
            conn,
            account_id,
            kind=kind,
            actor_id=actor_id,
            login=display_login,
            login_key=key,
            email=address,
            webauthn_user=secrets.token_bytes(32),
        ):
            return False
        if hashed is not None:
            await store.set_password(conn, account_id, *hashed)
        if totp_secret is not None:
            blob, key_id = totp.encrypt(peppers, account_id, totp_secret)
            await store.set_totp(conn, account_id, blob, key_id, totp_step)
        if codes:
            digests = [totp.recovery_digest(peppers, account_id, c) for c in codes]
            await store.replace_recovery_codes(conn, account_id, digests, peppers.current_id)
        await trace.account_event(
            conn, account_record("account:create", kind=kind, actor_id=actor_id, request_id=request_id)
        )
        return True

    if not await rt.db.interaction("account_create", work):
        # A concurrent creation, or this person already has an account under another login.
        again = await rt.db.read("account_by_login", store.by_login, key)
        if again is not None and (again.kind, again.actor_id) == (kind, actor_id):
            return Created(again.account_id, False)
        raise AccountTaken(
            "Cette personne a déjà un compte, ou cet identifiant est pris. "
            "/ This person already has an account, or this login is taken."
        )
    return Created(account_id, True, (totp_secret or "") if new_totp else "", tuple(codes))


async def ensure_local_account(
    rt: Runtime,
    *,
    kind: str,
    actor_id: str,
    login: str,
    password: str,
    totp_secret: str | None = None,
    email: str | None = None,
) -> uuid.UUID:
    """The account of `kind:actor_id` with this login, created if absent with this password (checked by the
    policy) and TOTP secret (base32). Idempotent: an existing account is returned unchanged. Raises Conflict
    when the login or the person already has another account, BadRequest when an argument is refused."""
    try:
        created = await create(
            rt,
            kind=kind,
            actor_id=actor_id,
            login=login,
            password=password,
            email=email,
            totp_secret=totp_secret,
        )
    except AccountTaken as exc:
        raise Conflict(exc.message) from exc
    except AccountError as exc:
        raise BadRequest(exc.message) from exc
    return created.account_id


async def find_by_actor(rt: Runtime, kind: str, actor_id: str) -> Account | None:
    """The account of a person (federation sign-in maps the identity provider's answer to it)."""
    row = await rt.db.read("account_by_actor", store.by_actor, kind, actor_id)
    return None if row is None else Account.of(row)


async def find_by_login(rt: Runtime, login: str) -> Account | None:
    row = await rt.db.read("account_by_login", store.by_login, login_key(login))
    return None if row is None else Account.of(row)


async def get(rt: Runtime, account_id: uuid.UUID) -> Account | None:
    row = await rt.db.read("account_get", store.by_id, account_id)
    return None if row is None else Account.of(row)


async def factors(rt: Runtime, account_id: uuid.UUID) -> Factors:
    return await rt.db.read("account_factors", store.factors, account_id)


async def disable(rt: Runtime, login: str, *, request_id: str = "") -> Account:
    """Disable an account: end all its sessions, its apps' grants and its tokens at once."""
    row = await rt.db.read("account_by_login", store.by_login, login_key(login))
    if row is None:
        raise AccountError("Aucun compte avec cet identifiant. / No account with this login.")

    async def work(conn: Conn) -> None:
        await store.set_disabled(conn, row.account_id, True)
        await session_store.delete_all(conn, row.account_id)
        # ...and everything acting for the person: their apps' and software's grants, and live tokens.
        for grant in await grant_store.of_person(conn, row.kind, row.actor_id):
            await grant_store.revoke(conn, grant.grant_id, "account disabled")
        await client_store.revoke_person_tokens(conn, row.kind, row.actor_id)
        await trace.account_event(conn, _record_for(row, "account:disable", request_id=request_id))

    await rt.db.interaction("account_disable", work)
    return Account.of(row)


# --- changing credentials (a signed-in person, recently) ---------------------------------------------------


async def begin_totp(rt: Runtime, account: Account) -> tuple[str, str]:
    """A new TOTP secret waiting for its first code: (secret, otpauth URI) to show once."""
    secret = totp.new_secret()
    blob, key_id = totp.encrypt(passwords.peppers(rt.settings), account.account_id, secret)
    await rt.db.interaction("totp_begin", store.set_pending_totp, account.account_id, blob, key_id)
    return secret, totp.provisioning_uri(secret, account.login)


async def confirm_totp(
    rt: Runtime, account: Account, code: str, *, ip: str, request_id: str = ""
) -> list[str]:
    """Activate the pending secret if `code` is its current code. Returns new recovery codes when the account
    had none left (shown once), else an empty list. AccountError when the code is wrong or the setup expired."""
    peppers = passwords.peppers(rt.settings)
    pending = await rt.db.read(
        "totp_pending", store.pending_totp, account.account_id, rt.settings.reauth_seconds + 600
    )
    if pending is None:
        raise AccountError("La configuration a expiré : recommencez. / The setup expired: start again.")
    secret = totp.decrypt(peppers, account.account_id, *pending)
    gate = await ratelimit.enter(
        rt, ratelimit.keys_for(ratelimit.second_factor_key(account.account_id), ratelimit.Source(ip))
    )
    if not gate.allowed:
        raise AccountError(LOCKED)
    step = totp.matching_step(secret, code)
    had = await factors(rt, account.account_id)
    codes = totp.new_recovery_codes() if had.recovery_codes_left == 0 else []

    async def work(conn: Conn) -> bool:
        if step is None:
            await ratelimit.failed(conn, rt.settings, gate)
            return False
        blob, key_id = totp.encrypt(peppers, account.account_id, secret)
        await store.set_totp(conn, account.account_id, blob, key_id, last_step=step)
        await store.drop_pending_totp(conn, account.account_id)
        await ratelimit.succeeded(conn, gate)
        action = "credential:change" if had.totp else "credential:add"
        await trace.account_event(conn, _record_for(account, action, "totp", request_id))
        if codes:
            digests = [totp.recovery_digest(peppers, account.account_id, c) for c in codes]
            await store.replace_recovery_codes(conn, account.account_id, digests, peppers.current_id)
            await trace.account_event(
                conn, _record_for(account, "credential:add", "recovery-codes", request_id)
            )
        return True

    if not await rt.db.interaction("totp_confirm", work):
        raise AccountError(
            "Code incorrect : saisissez le code à 6 chiffres affiché par l'application. "
            "/ Wrong code: type the 6-digit code the app shows."
        )
    await mail.notify_credential_change(rt, account.notice_address, "totp")
    return codes


async def regenerate_recovery_codes(rt: Runtime, account: Account, *, request_id: str = "") -> list[str]:
    """Ten new recovery codes (shown once); the old ones stop working."""
    peppers = passwords.peppers(rt.settings)
    codes = totp.new_recovery_codes()
    digests = [totp.recovery_digest(peppers, account.account_id, c) for c in codes]

    async def work(conn: Conn) -> None:
        await store.replace_recovery_codes(conn, account.account_id, digests, peppers.current_id)
        await trace.account_event(
            conn, _record_for(account, "credential:change", "recovery-codes", request_id)
        )

    await rt.db.interaction("recovery_codes_regenerate", work)
    await mail.notify_credential_change(rt, account.notice_address, "recovery-codes")
    return codes


async def change_password(
    rt: Runtime,
    account: Account,
    *,
    current: str,
    new: str,
    keep_session: uuid.UUID | None,
    ip: str,
    request_id: str = "",
) -> None:
    """Check the current password (re-authentication, counted like a sign-in), apply the policy to the new one,
    store it, and end the account's other sessions (ASVS 3.3.3)."""
    stored = await rt.db.read("account_password", store.password, account.account_id)
    gate = await ratelimit.enter(
        rt, ratelimit.keys_for(ratelimit.password_key(login_key(account.login)), ratelimit.Source(ip))
    )
    # Past the login's ceiling the current password is not checked here (no blind step to hide it behind).
    if not gate.allowed or gate.over_ceiling:
        raise AccountError(LOCKED)
    if stored is not None:
        checked = await passwords.verify_password(rt.settings, stored[0], stored[1], current)
        if not checked.ok:

            async def wrong(conn: Conn) -> None:
                await ratelimit.failed(conn, rt.settings, gate)
                await trace.account_event(
                    conn,
                    account_record(
                        "signin:failure",
                        kind=account.kind,
                        actor_id=account.actor_id,
                        outcome="4",
                        detail="password",
                        basis="wrong secret",
                        request_id=request_id,
                    ),
                )

            await rt.db.interaction("password_change_refused", wrong)
            raise AccountError("Mot de passe actuel incorrect. / Wrong current password.")
    try:
        valid = passwords.validate(
            new, login=account.login, breached_file=rt.settings.breached_passwords_file
        )
    except passwords.WeakPassword as exc:
        raise AccountError(exc.message) from exc
    hashed = await passwords.hash_password(rt.settings, valid)

    async def work(conn: Conn) -> None:
        await store.set_password(conn, account.account_id, *hashed)
        await ratelimit.succeeded(conn, gate)
        await session_store.delete_all(conn, account.account_id, keep=keep_session)
        action = "credential:change" if stored is not None else "credential:add"
        await trace.account_event(conn, _record_for(account, action, "password", request_id))

    await rt.db.interaction("password_change", work)
    await mail.notify_credential_change(rt, account.notice_address, "password")


LOCKED = (
    "Trop d'essais infructueux : réessayez dans quelques minutes. "
    "/ Too many failed attempts: try again in a few minutes."
)
