"""Time-based one-time passwords (RFC 6238, `pyotp`) and recovery codes: the second factor of password
sign-in (SECURITY V2 2.6, 2.8).

- A TOTP secret is 160 random bits (RFC 4226 section 4), stored encrypted with AES-256-GCM under a key derived
  from the pepper (outside the database), bound to its account by the associated data.
- A code is accepted within one 30-second step either side (clock drift), and only once: the step used is
  stored and a code of that step or an earlier one is refused afterwards (ASVS 2.8.4).
- Recovery codes: 10 codes of 50 random bits each (CSPRNG), shown once, stored as HMAC-SHA256 digests keyed by
  a pepper-derived key and salted by the account, single use (ASVS 2.6.1-2.6.3).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from urllib.parse import quote

import pyotp
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from espace_sante.crypto import DecryptionFailed, open_, seal
from espace_sante.people.passwords import Peppers

ISSUER = "Mon espace santé"
STEP_SECONDS = 30
DIGITS = 6
RECOVERY_CODES = 10
#: Crockford's base32 alphabet: no I, L, O or U, so codes read aloud or copied by hand survive.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE = re.compile(r"^[0-9]{6}$")


def new_secret() -> str:
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, account_name: str) -> str:
    """The otpauth:// URI an authenticator app reads (Key Uri Format), for a QR code or a tap on a phone."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account_name, issuer_name=ISSUER
    )


def grouped(secret: str) -> str:
    """The secret in groups of four, to type by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def encrypt(peppers: Peppers, account_id: uuid.UUID, secret: str) -> tuple[bytes, str]:
    aead = AESGCM(peppers.subkey("totp"))
    return seal(aead, secret.encode(), b"totp " + account_id.bytes), peppers.current_id


def decrypt(peppers: Peppers, account_id: uuid.UUID, blob: bytes, key_id: str) -> str:
    try:
        aead = AESGCM(peppers.subkey("totp", key_id))
    except KeyError:
        raise DecryptionFailed("the pepper of this TOTP secret is not configured") from None
    return open_(aead, blob, b"totp " + account_id.bytes).decode()


def clean_code(text: str) -> str:
    return re.sub(r"[\s-]", "", text)


def looks_like_totp(text: str) -> bool:
    return bool(_CODE.match(clean_code(text)))


def matching_step(secret: str, code: str, *, now: float | None = None) -> int | None:
    """The time step whose code is `code` (this step or one either side), or None. Constant-time compares."""
    code = clean_code(code)
    if not _CODE.match(code):
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = int((time.time() if now is None else now) // STEP_SECONDS)
    found = None
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // STEP_SECONDS)


# --- recovery codes ----------------------------------------------------------------------------------------


def new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def normalise_recovery_code(text: str) -> str:
    """Upper case, without spaces or dashes, with the letters people confuse mapped (Crockford)."""
    cleaned = re.sub(r"[\s-]", "", text).upper()
    return cleaned.translate(str.maketrans("OIL", "011"))


def recovery_digest(peppers: Peppers, account_id: uuid.UUID, code: str, key_id: str | None = None) -> bytes:
    key = peppers.subkey("recovery", key_id)
    return hmac.new(key, account_id.bytes + normalise_recovery_code(code).encode(), hashlib.sha256).digest()


def recovery_digests(peppers: Peppers, account_id: uuid.UUID, code: str) -> list[bytes]:
    """The code's digest under every configured pepper (a code made before a rotation still works)."""
    return [recovery_digest(peppers, account_id, code, key_id) for key_id in peppers.keys]


def otpauth_label(login: str) -> str:
    return quote(login, safe="@.")
