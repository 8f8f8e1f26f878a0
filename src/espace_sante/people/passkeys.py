"""Passkeys (WebAuthn Level 3, `webauthn` 3.x): the strong means of sign-in (SECURITY V2 2.3.2).

- The relying party id is the host of `settings.base_url`, the expected origin its scheme, host and port.
  (WebAuthn refuses IP addresses as RP ids: in development use http://localhost:PORT, a secure context.)
- Challenges are 64 random bytes kept server-side in PostgreSQL, single use (deleted when used), valid
  `signin_step_seconds`, and bound to the browser that asked: the session for a registration, a digest of the
  pre-session cookie for a sign-in. Any app process can finish a ceremony another began.
- Credentials are discoverable (resident) and require user verification (PIN or biometrics on the device):
  possession plus that check are two factors, so a passkey sign-in reaches level "eidas2".
- The user handle is a random 32-byte value per account, never the INS or the login (WebAuthn 14.6.1).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from espace_sante import mail
from espace_sante.audit import trace
from espace_sante.people import devices, ratelimit, sessions
from espace_sante.people.accounts import LOCKED, Account, AccountError, account_record
from espace_sante.people.signin import ACR, SignedIn, SignInRefused, refuse_attempt  # one tracing of failures
from espace_sante.runtime import Runtime
from espace_sante.settings import Settings
from espace_sante.storage import accounts as store
from espace_sante.storage.db import Conn

RP_NAME = "Mon espace santé"

FAILED = (
    "La clé d'accès n'a pas pu être vérifiée. Réessayez, ou connectez-vous avec votre mot de passe. "
    "/ The passkey could not be verified. Try again, or sign in with your password."
)
_BAD_INPUT = (WebAuthnException, ValueError, TypeError, KeyError, AttributeError, binascii.Error)


def rp_id(settings: Settings) -> str:
    return urlsplit(settings.base_url).hostname or "localhost"


def origin(settings: Settings) -> str:
    parts = urlsplit(settings.base_url)
    return f"{parts.scheme}://{parts.netloc}"


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _challenge_of(credential: dict[str, Any]) -> bytes:
    """The challenge the browser signed, read from clientDataJSON (checked again by the library)."""
    client_data = json.loads(_b64url_decode(credential["response"]["clientDataJSON"]))
    challenge = client_data["challenge"]
    if not isinstance(challenge, str) or len(challenge) > 200:
        raise ValueError("bad challenge")
    return _b64url_decode(challenge)


def _options(options: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(options_to_json(options))
    return result


# --- registration (a signed-in person adds a passkey) ------------------------------------------------------


async def registration_options(rt: Runtime, session: sessions.Session) -> dict[str, Any]:
    """Options for navigator.credentials.create(), with a fresh challenge bound to this session."""
    row = await rt.db.read("account_get", store.by_id, session.account_id)
    if row is None:
        raise AccountError("Compte introuvable. / No such account.")
    existing = await rt.db.read("passkeys_of", store.passkeys, session.account_id)
    options = generate_registration_options(
        rp_id=rp_id(rt.settings),
        rp_name=RP_NAME,
        user_name=row.login,
        user_id=row.webauthn_user,
        user_display_name=row.login,
        timeout=rt.settings.signin_step_seconds * 1000,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=p.credential_id) for p in existing],
    )
    await rt.db.interaction(
        "webauthn_challenge",
        store.add_challenge,
        options.challenge,
        purpose="register",
        binding=session.session_id.bytes,
        account_id=session.account_id,
        lifetime_seconds=rt.settings.signin_step_seconds,
    )
    return _options(options)


async def register(
    rt: Runtime,
    session: sessions.Session,
    credential: dict[str, Any],
    *,
    name: str = "",
    request_id: str = "",
) -> None:
    """Verify the authenticator's answer and store the passkey. AccountError with a message if refused."""
    try:
        challenge = _challenge_of(credential)
    except (*_BAD_INPUT, json.JSONDecodeError) as exc:
        raise AccountError(FAILED) from exc
    found, account_id = await rt.db.interaction(
        "webauthn_challenge_take",
        store.take_challenge,
        challenge,
        purpose="register",
        binding=session.session_id.bytes,
    )
    if not found or account_id != session.account_id:
        raise AccountError(FAILED)
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id(rt.settings),
            expected_origin=origin(rt.settings),
            require_user_verification=True,
        )
    except _BAD_INPUT as exc:
        raise AccountError(FAILED) from exc
    transports = credential.get("response", {}).get("transports") or []
    kept = [t for t in transports if isinstance(t, str) and t in {x.value for x in AuthenticatorTransport}]
    label = "".join(c for c in name if c.isprintable()).strip()[:60] or "Clé d'accès"

    async def work(conn: Conn) -> bool:
        added = await store.add_passkey(
            conn,
            credential_id=verified.credential_id,
            account_id=session.account_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            name=label,
            aaguid=verified.aaguid,
            backed_up=verified.credential_backed_up,
            transports=kept,
        )
        if added:
            await trace.account_event(
                conn,
                account_record(
                    "credential:add",
                    kind=session.kind,
                    actor_id=session.actor_id,
                    detail="passkey",
                    request_id=request_id,
                ),
            )
        return added

    if not await rt.db.interaction("passkey_add", work):
        raise AccountError("Cette clé d'accès est déjà enregistrée. / This passkey is already registered.")
    account = await rt.db.read("account_get", store.by_id, session.account_id)
    if account is not None:
        await mail.notify_credential_change(rt, Account.of(account).notice_address, "passkey")


async def list_for(rt: Runtime, account_id: uuid.UUID) -> list[store.PasskeyRow]:
    return await rt.db.read("passkeys_of", store.passkeys, account_id)


async def remove(
    rt: Runtime, session: sessions.Session, credential_id: bytes, *, request_id: str = ""
) -> bool:
    async def work(conn: Conn) -> bool:
        removed = await store.remove_passkey(conn, session.account_id, credential_id)
        if removed:
            await trace.account_event(
                conn,
                account_record(
                    "credential:remove",
                    kind=session.kind,
                    actor_id=session.actor_id,
                    detail="passkey",
                    request_id=request_id,
                ),
            )
        return removed

    removed = await rt.db.interaction("passkey_remove", work)
    if removed:
        account = await rt.db.read("account_get", store.by_id, session.account_id)
        if account is not None:
            await mail.notify_credential_change(rt, Account.of(account).notice_address, "passkey-removed")
    return removed


# --- authentication (signing in with a passkey) ------------------------------------------------------------


async def authentication_options(rt: Runtime, *, binding: bytes) -> dict[str, Any]:
    """Options for navigator.credentials.get() (no allow-list: the passkey names its account), with a fresh
    challenge bound to the browser's pre-session cookie (`binding` is its digest)."""
    options = generate_authentication_options(
        rp_id=rp_id(rt.settings),
        timeout=rt.settings.signin_step_seconds * 1000,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    await rt.db.interaction(
        "webauthn_challenge",
        store.add_challenge,
        options.challenge,
        purpose="authenticate",
        binding=binding,
        account_id=None,
        lifetime_seconds=rt.settings.signin_step_seconds,
    )
    return _options(options)


async def authenticate(
    rt: Runtime,
    credential: dict[str, Any],
    *,
    binding: bytes,
    ip: str,
    user_agent: str,
    request_id: str = "",
    device_cookie: str = "",
) -> SignedIn:
    """Verify a passkey assertion and open a session at level "eidas2". SignInRefused otherwise. Counted per
    account and source, without a ceiling: an assertion is a signature, which no number of tries guesses."""

    try:
        challenge = _challenge_of(credential)
        raw_id = _b64url_decode(str(credential["rawId"]))
    except (*_BAD_INPUT, json.JSONDecodeError) as exc:
        raise SignInRefused(FAILED) from exc
    row = await rt.db.read("passkey_get", store.passkey, raw_id)
    account = await rt.db.read("account_get", store.by_id, row.account_id) if row is not None else None
    source = ratelimit.Source(
        ip,
        devices.trusted_device(
            rt.settings,
            device_cookie,
            account.account_id if account else None,
            account.credential_generation if account else 0,
        ),
    )
    keys = [ratelimit.ip_key(ip)]
    if account is not None:
        keys = ratelimit.keys_for(ratelimit.passkey_key(account.account_id), source, ceiling=False)
    who = (account.kind, account.actor_id) if account is not None else ("anonymous", "passkey:unknown")
    gate = await ratelimit.enter(rt, keys)
    if not gate.allowed:
        await refuse_attempt(
            rt, gate, who, factor="passkey", reason="locked", ip=ip, request_id=request_id, count=False
        )
        raise SignInRefused(LOCKED)
    found, _ = await rt.db.interaction(
        "webauthn_challenge_take", store.take_challenge, challenge, purpose="authenticate", binding=binding
    )
    verified = None
    if found and row is not None and account is not None and not account.disabled:
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=rp_id(rt.settings),
                expected_origin=origin(rt.settings),
                credential_public_key=row.public_key,
                credential_current_sign_count=row.sign_count,
                require_user_verification=True,
            )
        except _BAD_INPUT:
            verified = None
        handle = credential.get("response", {}).get("userHandle")
        if verified is not None and handle and _b64url_decode(str(handle)) != account.webauthn_user:
            verified = None
    if verified is None or row is None or account is None:
        reason = "disabled" if account is not None and account.disabled else "wrong secret"
        await refuse_attempt(rt, gate, who, factor="passkey", reason=reason, ip=ip, request_id=request_id)
        raise SignInRefused(FAILED)
    account_id: uuid.UUID = account.account_id
    generation = account.credential_generation
    new_count = verified.new_sign_count
    backed_up = verified.credential_backed_up

    async def work(conn: Conn) -> SignedIn:
        await store.passkey_used(conn, raw_id, new_count, backed_up)
        await ratelimit.succeeded(conn, gate)
        cookie, session = await sessions.start_in(
            conn,
            rt,
            account_id,
            acr=ACR,
            method="passkey",
            user_agent=user_agent,
            ip=ip,
            request_id=request_id,
        )
        return SignedIn(
            cookie, session, "", devices.remember(rt.settings, device_cookie, account_id, generation)
        )

    return await rt.db.interaction("signin_passkey", work)
