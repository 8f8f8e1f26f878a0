"""Accounts and their credentials (SQL for `account`, `account_password`, `account_totp*`,
`account_recovery_code`, `account_passkey`, `webauthn_challenge`, `signin_flow`, `outbox`).

Secrets arrive here already hashed or encrypted: this module never sees a password, a TOTP secret, a recovery
code or a session secret in clear."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from espace_sante.storage.db import Conn


@dataclass(frozen=True)
class AccountRow:
    account_id: uuid.UUID
    kind: str
    actor_id: str
    login: str
    email: str | None
    disabled: bool
    webauthn_user: bytes
    created_at: datetime
    #: Goes up when a credential changes or every session is ended: what a trusted device signs
    #: (people/devices.py), so that those events end every trusted device.
    credential_generation: int = 0


_ACCOUNT = (
    "account_id, kind, actor_id, login, email, disabled, webauthn_user, created_at, credential_generation"
)


def _account(row: Any) -> AccountRow:
    return AccountRow(
        row["account_id"],
        row["kind"],
        row["actor_id"],
        row["login"],
        row["email"],
        row["disabled"],
        bytes(row["webauthn_user"]),
        row["created_at"],
        int(row["credential_generation"]),
    )


async def insert(
    conn: Conn,
    account_id: uuid.UUID,
    *,
    kind: str,
    actor_id: str,
    login: str,
    login_key: str,
    email: str | None,
    webauthn_user: bytes,
) -> bool:
    """False when the login or the (kind, actor) already has an account."""
    status: str = await conn.execute(
        "INSERT INTO account (account_id, kind, actor_id, login, login_key, email, webauthn_user) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        account_id,
        kind,
        actor_id,
        login,
        login_key,
        email,
        webauthn_user,
    )
    return status.endswith(" 1")


async def by_login(conn: Conn, login_key: str) -> AccountRow | None:
    row = await conn.fetchrow(f"SELECT {_ACCOUNT} FROM account WHERE login_key = $1", login_key)
    return None if row is None else _account(row)


async def by_id(conn: Conn, account_id: uuid.UUID) -> AccountRow | None:
    row = await conn.fetchrow(f"SELECT {_ACCOUNT} FROM account WHERE account_id = $1", account_id)
    return None if row is None else _account(row)


async def by_actor(conn: Conn, kind: str, actor_id: str) -> AccountRow | None:
    row = await conn.fetchrow(
        f"SELECT {_ACCOUNT} FROM account WHERE kind = $1 AND actor_id = $2", kind, actor_id
    )
    return None if row is None else _account(row)


async def by_webauthn_user(conn: Conn, handle: bytes) -> AccountRow | None:
    row = await conn.fetchrow(f"SELECT {_ACCOUNT} FROM account WHERE webauthn_user = $1", handle)
    return None if row is None else _account(row)


async def set_disabled(conn: Conn, account_id: uuid.UUID, disabled: bool) -> None:
    await conn.execute("UPDATE account SET disabled = $2 WHERE account_id = $1", account_id, disabled)


@dataclass(frozen=True)
class Factors:
    """Which credentials an account holds (for the sign-in rules and the security page)."""

    password: bool
    totp: bool
    recovery_codes_left: int
    passkeys: int


async def factors(conn: Conn, account_id: uuid.UUID) -> Factors:
    row = await conn.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM account_password WHERE account_id = $1) AS password, "
        "EXISTS (SELECT 1 FROM account_totp WHERE account_id = $1) AS totp, "
        "(SELECT count(*) FROM account_recovery_code WHERE account_id = $1 AND used_at IS NULL) AS codes, "
        "(SELECT count(*) FROM account_passkey WHERE account_id = $1) AS passkeys",
        account_id,
    )
    assert row is not None
    return Factors(row["password"], row["totp"], int(row["codes"]), int(row["passkeys"]))


# --- passwords ---------------------------------------------------------------------------------------------


async def password(conn: Conn, account_id: uuid.UUID) -> tuple[str, str] | None:
    """(argon2 encoded hash, pepper id)."""
    row = await conn.fetchrow(
        "SELECT hash, pepper_id FROM account_password WHERE account_id = $1", account_id
    )
    return None if row is None else (row["hash"], row["pepper_id"])


async def set_password(
    conn: Conn, account_id: uuid.UUID, hash_: str, pepper_id: str, *, rehash: bool = False
) -> None:
    """Store a new password hash. `rehash`: the same password hashed again (new parameters or pepper), which
    is no credential change and keeps the account's trusted devices."""
    if not rehash:
        await new_credential_generation(conn, account_id)
    await conn.execute(
        "INSERT INTO account_password (account_id, hash, pepper_id) VALUES ($1, $2, $3) "
        "ON CONFLICT (account_id) DO UPDATE SET hash = $2, pepper_id = $3, changed_at = now()",
        account_id,
        hash_,
        pepper_id,
    )


async def new_credential_generation(conn: Conn, account_id: uuid.UUID) -> None:
    """A credential changed or every session was ended: the trusted devices signed before are void."""
    await conn.execute(
        "UPDATE account SET credential_generation = credential_generation + 1 WHERE account_id = $1",
        account_id,
    )


# --- TOTP --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TotpRow:
    secret_enc: bytes
    key_id: str
    last_step: int


async def totp(conn: Conn, account_id: uuid.UUID) -> TotpRow | None:
    row = await conn.fetchrow(
        "SELECT secret_enc, key_id, last_step FROM account_totp WHERE account_id = $1", account_id
    )
    return None if row is None else TotpRow(bytes(row["secret_enc"]), row["key_id"], int(row["last_step"]))


async def set_totp(
    conn: Conn, account_id: uuid.UUID, secret_enc: bytes, key_id: str, last_step: int = 0
) -> None:
    await new_credential_generation(conn, account_id)
    await conn.execute(
        "INSERT INTO account_totp (account_id, secret_enc, key_id, last_step) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (account_id) DO UPDATE SET secret_enc = $2, key_id = $3, last_step = $4, "
        "confirmed_at = now()",
        account_id,
        secret_enc,
        key_id,
        last_step,
    )


async def use_totp_step(conn: Conn, account_id: uuid.UUID, step: int) -> bool:
    """Accept time step `step` once: false if it, or a later one, was already used (a replay). Atomic, so two
    concurrent requests with the same code cannot both pass."""
    status: str = await conn.execute(
        "UPDATE account_totp SET last_step = $2 WHERE account_id = $1 AND last_step < $2", account_id, step
    )
    return status.endswith(" 1")


async def set_pending_totp(conn: Conn, account_id: uuid.UUID, secret_enc: bytes, key_id: str) -> None:
    await conn.execute(
        "INSERT INTO account_totp_pending (account_id, secret_enc, key_id) VALUES ($1, $2, $3) "
        "ON CONFLICT (account_id) DO UPDATE SET secret_enc = $2, key_id = $3, created_at = now()",
        account_id,
        secret_enc,
        key_id,
    )


async def pending_totp(conn: Conn, account_id: uuid.UUID, max_age_seconds: int) -> tuple[bytes, str] | None:
    row = await conn.fetchrow(
        "SELECT secret_enc, key_id FROM account_totp_pending WHERE account_id = $1 "
        "AND created_at > now() - make_interval(secs => $2)",
        account_id,
        max_age_seconds,
    )
    return None if row is None else (bytes(row["secret_enc"]), row["key_id"])


async def drop_pending_totp(conn: Conn, account_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM account_totp_pending WHERE account_id = $1", account_id)


# --- recovery codes ----------------------------------------------------------------------------------------


async def replace_recovery_codes(
    conn: Conn, account_id: uuid.UUID, digests: list[bytes], key_id: str
) -> None:
    await conn.execute("DELETE FROM account_recovery_code WHERE account_id = $1", account_id)
    await conn.executemany(
        "INSERT INTO account_recovery_code (account_id, code_hash, key_id) VALUES ($1, $2, $3)",
        [(account_id, d, key_id) for d in digests],
    )


async def use_recovery_code(conn: Conn, account_id: uuid.UUID, digests: list[bytes]) -> bool:
    """Mark one unused code with one of these digests (one per configured pepper) used; false if none. One
    statement: of concurrent redeems of the same code, exactly one wins."""
    status: str = await conn.execute(
        "UPDATE account_recovery_code SET used_at = now() "
        "WHERE account_id = $1 AND code_hash = ANY($2::bytea[]) AND used_at IS NULL",
        account_id,
        digests,
    )
    return status != "UPDATE 0"


# --- passkeys ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PasskeyRow:
    credential_id: bytes
    account_id: uuid.UUID
    public_key: bytes
    sign_count: int
    name: str
    backed_up: bool
    transports: list[str]
    created_at: datetime
    last_used_at: datetime | None


_PASSKEY = (
    "credential_id, account_id, public_key, sign_count, name, backed_up, transports, created_at, last_used_at"
)


def _passkey(row: Any) -> PasskeyRow:
    return PasskeyRow(
        bytes(row["credential_id"]),
        row["account_id"],
        bytes(row["public_key"]),
        int(row["sign_count"]),
        row["name"],
        row["backed_up"],
        list(row["transports"]),
        row["created_at"],
        row["last_used_at"],
    )


async def add_passkey(
    conn: Conn,
    *,
    credential_id: bytes,
    account_id: uuid.UUID,
    public_key: bytes,
    sign_count: int,
    name: str,
    aaguid: str,
    backed_up: bool,
    transports: list[str],
) -> bool:
    status: str = await conn.execute(
        "INSERT INTO account_passkey (credential_id, account_id, public_key, sign_count, name, aaguid, "
        "backed_up, transports) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        credential_id,
        account_id,
        public_key,
        sign_count,
        name,
        aaguid,
        backed_up,
        transports,
    )
    return status.endswith(" 1")


async def passkeys(conn: Conn, account_id: uuid.UUID) -> list[PasskeyRow]:
    rows = await conn.fetch(
        f"SELECT {_PASSKEY} FROM account_passkey WHERE account_id = $1 ORDER BY created_at", account_id
    )
    return [_passkey(r) for r in rows]


async def passkey(conn: Conn, credential_id: bytes) -> PasskeyRow | None:
    row = await conn.fetchrow(
        f"SELECT {_PASSKEY} FROM account_passkey WHERE credential_id = $1", credential_id
    )
    return None if row is None else _passkey(row)


async def passkey_used(conn: Conn, credential_id: bytes, sign_count: int, backed_up: bool) -> None:
    await conn.execute(
        "UPDATE account_passkey SET sign_count = $2, backed_up = $3, last_used_at = now() "
        "WHERE credential_id = $1",
        credential_id,
        sign_count,
        backed_up,
    )


async def remove_passkey(conn: Conn, account_id: uuid.UUID, credential_id: bytes) -> bool:
    status: str = await conn.execute(
        "DELETE FROM account_passkey WHERE account_id = $1 AND credential_id = $2", account_id, credential_id
    )
    return status.endswith(" 1")


# --- WebAuthn challenges and the sign-in step --------------------------------------------------------------


async def add_challenge(
    conn: Conn,
    challenge: bytes,
    *,
    purpose: str,
    binding: bytes,
    account_id: uuid.UUID | None,
    lifetime_seconds: int,
) -> None:
    await conn.execute(
        "INSERT INTO webauthn_challenge (challenge, purpose, binding, account_id, expires_at) "
        "VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        challenge,
        purpose,
        binding,
        account_id,
        lifetime_seconds,
    )
    # Bounded sweep of expired challenges, so the table stays small without a job.
    await conn.execute(
        "DELETE FROM webauthn_challenge WHERE ctid = ANY(ARRAY(SELECT ctid FROM webauthn_challenge "
        "WHERE expires_at < now() LIMIT 100))"
    )


async def take_challenge(
    conn: Conn, challenge: bytes, *, purpose: str, binding: bytes
) -> tuple[bool, uuid.UUID | None]:
    """Consume a challenge (single use): (found and unexpired, its account)."""
    row = await conn.fetchrow(
        "DELETE FROM webauthn_challenge WHERE challenge = $1 AND purpose = $2 AND binding = $3 "
        "RETURNING account_id, expires_at > now() AS live",
        challenge,
        purpose,
        binding,
    )
    if row is None or not row["live"]:
        return False, None
    return True, row["account_id"]


async def add_flow(
    conn: Conn,
    flow_hash: bytes,
    account_id: uuid.UUID | None,
    next_path: str,
    lifetime_seconds: int,
    *,
    blind: bool = False,
    login: str = "",
) -> None:
    """A step to the second factor; `blind` (docs/access-policy.md "Sign-in limits"): its password was not
    answered, and `account_id` is None when it was wrong."""
    await conn.execute(
        "INSERT INTO signin_flow (flow_hash, account_id, next_path, expires_at, blind, login) "
        "VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6)",
        flow_hash,
        account_id,
        next_path,
        lifetime_seconds,
        blind,
        login,
    )
    await conn.execute(
        "DELETE FROM signin_flow WHERE ctid = ANY(ARRAY(SELECT ctid FROM signin_flow "
        "WHERE expires_at < now() LIMIT 100))"
    )


@dataclass(frozen=True)
class FlowRow:
    account_id: uuid.UUID | None
    next_path: str
    blind: bool
    login: str


async def flow(conn: Conn, flow_hash: bytes) -> FlowRow | None:
    row = await conn.fetchrow(
        "SELECT account_id, next_path, blind, login FROM signin_flow WHERE flow_hash = $1 AND expires_at > now()",
        flow_hash,
    )
    return None if row is None else FlowRow(row["account_id"], row["next_path"], row["blind"], row["login"])


async def end_flow(conn: Conn, flow_hash: bytes) -> bool:
    status: str = await conn.execute("DELETE FROM signin_flow WHERE flow_hash = $1", flow_hash)
    return status.endswith(" 1")


# --- outbox ------------------------------------------------------------------------------------------------


async def add_outbox(
    conn: Conn,
    message_id: uuid.UUID,
    *,
    recipient: str,
    subject: str,
    body: str,
    sent: bool = False,
    error: str = "",
) -> None:
    await conn.execute(
        "INSERT INTO outbox (message_id, recipient, subject, body, sent_at, error) "
        "VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END, $6)",
        message_id,
        recipient,
        subject,
        body,
        sent,
        error,
    )


async def add_outbox_many(conn: Conn, messages: Sequence[tuple[uuid.UUID, str, str, str]]) -> None:
    """(message id, recipient, subject, text) rows kept in the outbox, in one statement."""
    if messages:
        await conn.copy_records_to_table(
            "outbox", records=messages, columns=("message_id", "recipient", "subject", "body")
        )
