"""Passwords, the transitional means of sign-in (SECURITY V2 2.1, 2.4).

- Policy (ASVS 2.1.1-2.1.4, 2.1.7, 2.1.9; NIST SP 800-63B 5.1.1.2): 12 to 128 characters after Unicode NFC
  normalisation, any characters but control ones, nothing truncated, no composition or rotation rules; refused
  when common or breached: zxcvbn's bundled list of 30,000 common passwords plus a French list shipped here
  (also with digits or symbols around, or repeated), repetitive or sequential strings, the login itself, and an
  optional production file of breached passwords' SHA-1 digests (the "Pwned Passwords" download, sorted).
- Storage (ASVS 2.4.1/2.4.2/2.4.5): argon2id with its own random salt per hash, over HMAC-SHA256(pepper-derived
  key, password). The pepper lives outside the database (settings), so a copy of the database alone cannot
  test a single guess. Each hash records which pepper keyed it, so the pepper can be rotated: the previous one
  stays configured until the next sign-in of each person re-hashes under the current one.

The same pepper keys the other secrets' protection through HKDF with distinct labels (`subkey`): TOTP secrets'
encryption, recovery code digests and the sign-in forms' anti-forgery tokens.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import itertools
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from espace_sante.settings import Settings

MIN_LENGTH = 12
MAX_LENGTH = 128


class WeakPassword(ValueError):
    """A password the policy refuses; `message` is shown to the person as is (French, then English)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- the pepper and the keys derived from it ---------------------------------------------------------------


@dataclass(frozen=True)
class Peppers:
    """The current pepper (new hashes, encryptions and tokens) and the previous ones (still verify)."""

    current_id: str
    keys: dict[str, bytes]

    @classmethod
    def from_settings(cls, settings: Settings) -> Peppers:
        keys = settings.password_pepper_bytes()
        ids = [pepper_id(k) for k in keys]
        return cls(ids[0], dict(zip(ids, keys, strict=True)))

    def subkey(self, purpose: str, key_id: str | None = None) -> bytes:
        """A 32-byte key for one purpose, derived from the pepper `key_id` (the current one by default).
        KeyError when that pepper is no longer configured."""
        return _derive(self.keys[key_id or self.current_id], purpose)


def pepper_id(key: bytes) -> str:
    """Names a pepper without revealing it."""
    return hashlib.sha256(b"espace-sante pepper id" + key).hexdigest()[:16]


@functools.lru_cache(maxsize=64)
def _derive(key: bytes, purpose: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"espace-sante " + purpose.encode())
    return hkdf.derive(key)


_PEPPERS: dict[tuple[str, ...], Peppers] = {}


def peppers(settings: Settings) -> Peppers:
    """The peppers of these settings, read once (they come from files or variables)."""
    where = (
        settings.environment,
        settings.password_pepper or "",
        str(settings.password_pepper_file or ""),
        settings.password_pepper_previous,
        str(settings.data_dir.resolve()),
    )
    found = _PEPPERS.get(where)
    if found is None:
        found = _PEPPERS[where] = Peppers.from_settings(settings)
    return found


# --- policy ------------------------------------------------------------------------------------------------


def normalise(password: str) -> str:
    """NFC (ASVS 2.1.4 and NIST 800-63B: the same password typed on two devices gives the same bytes)."""
    return unicodedata.normalize("NFC", password)


_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")


@functools.cache
def _common() -> frozenset[str]:
    # Imported here: zxcvbn's lists are large, read once at the first password checked (functools.cache).
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    words = {w.casefold() for w in FREQUENCY_LISTS["passwords"]}
    french = resources.files("espace_sante.people").joinpath("data/common-passwords-fr.txt")
    for line in french.read_text("utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            words.add(unicodedata.normalize("NFC", line).casefold())
    return frozenset(words)


def _fold(text: str) -> str:
    """Case-folded, accents removed: "Été" and "ete" are the same guess."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _unit(text: str) -> str:
    """The shortest string that `text` repeats ("azertyazerty" -> "azerty")."""
    for size in range(1, len(text) // 2 + 1):
        if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
            return text[:size]
    return text


def is_common(password: str) -> bool:
    """In the common lists, alone, with digits or symbols around it, or repeated."""
    common = _common()
    folded = _fold(password)
    candidates = {folded, password.casefold(), folded.replace(" ", "")}
    for item in list(candidates):
        candidates.add(_EDGES.sub("", item))
        candidates.add(_unit(item))
        candidates.add(_unit(_EDGES.sub("", item)))
    return any(c and c in common for c in candidates)


def _predictable(password: str) -> bool:
    """Few distinct characters ("aaaaaaaaaaaa", "abababababab") or mostly a run of neighbours
    ("123456789012", "abcdefghijkl")."""
    if len(set(password)) < 5:
        return True
    steps = [ord(b) - ord(a) for a, b in itertools.pairwise(password)]
    runs = sum(1 for s in steps if s in (-1, 1))
    return runs >= 0.75 * len(steps)


def validate(password: str, *, login: str = "", breached_file: Path | None = None) -> str:
    """The normalised password if the policy accepts it; WeakPassword with a message otherwise."""
    text = normalise(password)
    if len(text) < MIN_LENGTH:
        raise WeakPassword(
            f"Le mot de passe doit compter au moins {MIN_LENGTH} caractères (les espaces comptent). "
            f"/ The password needs at least {MIN_LENGTH} characters (spaces count)."
        )
    if len(text) > MAX_LENGTH:
        raise WeakPassword(
            f"Le mot de passe ne peut pas dépasser {MAX_LENGTH} caractères. "
            f"/ The password cannot be longer than {MAX_LENGTH} characters."
        )
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in text):
        raise WeakPassword(
            "Le mot de passe contient un caractère invisible de contrôle (retour à la ligne, tabulation…). "
            "/ The password holds an invisible control character (new line, tab…)."
        )
    refused = (
        "Ce mot de passe est trop courant ou trop prévisible : choisissez par exemple une phrase de "
        "plusieurs mots sans rapport entre eux. / This password is too common or too predictable: try a "
        "phrase of several unrelated words."
    )
    if is_common(text) or _predictable(text):
        raise WeakPassword(refused)
    name = _fold(login).split("@", 1)[0]
    if len(name) >= 4 and name in _fold(text):
        raise WeakPassword(
            "Le mot de passe ne doit pas contenir votre identifiant. / The password must not contain your login."
        )
    if breached_file is not None and in_breached_file(breached_file, text):
        raise WeakPassword(
            "Ce mot de passe figure dans des fuites de données connues : choisissez-en un autre. "
            "/ This password appears in known data breaches: choose another one."
        )
    return text


def in_breached_file(path: Path, password: str) -> bool:
    """Binary search of the SHA-1 digest in a sorted file of `HEX:COUNT` lines (any size: only a few pages
    are read)."""
    target = hashlib.sha1(normalise(password).encode(), usedforsecurity=False).hexdigest().upper().encode()
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        lo, hi = 0, size
        while hi - lo > 4096:
            mid = (lo + hi) // 2
            fh.seek(mid)
            fh.readline()
            line = fh.readline()
            if line and line[:40].upper() <= target:
                lo = mid
            else:
                hi = mid
        fh.seek(lo)
        if lo:
            fh.readline()
        for line in fh:
            key = line[:40].upper()
            if key == target:
                return True
            if key > target:
                return False
    return False


# --- hashing -----------------------------------------------------------------------------------------------


def _hasher(settings: Settings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.password_hash_time_cost,
        memory_cost=settings.password_hash_memory_kib,
        parallelism=4,
        hash_len=32,
        salt_len=16,
        type=Type.ID,
    )


def _peppered(peppers_: Peppers, key_id: str, password: str) -> bytes:
    mac = hmac.new(peppers_.subkey("password", key_id), normalise(password).encode(), hashlib.sha256)
    return base64.b64encode(mac.digest())


def hash_sync(settings: Settings, password: str) -> tuple[str, str]:
    """(argon2id encoded hash, pepper id) of an already validated password."""
    p = peppers(settings)
    return _hasher(settings).hash(_peppered(p, p.current_id, password)), p.current_id


async def hash_password(settings: Settings, password: str) -> tuple[str, str]:
    """argon2id costs a quarter of a second of CPU: run off the event loop."""
    return await asyncio.to_thread(hash_sync, settings, password)


@dataclass(frozen=True)
class Checked:
    ok: bool
    #: The hash should be redone (older parameters or pepper): only meaningful when ok.
    rehash: bool = False


def verify_sync(settings: Settings, stored: str | None, key_id: str, password: str) -> Checked:
    """Check `password` against a stored hash. With no stored hash, a dummy hash is checked anyway, so that
    an unknown login takes as long as a known one (no timing oracle)."""
    hasher = _hasher(settings)
    p = peppers(settings)
    if stored is None or key_id not in p.keys:
        with contextlib.suppress(VerificationError):
            hasher.verify(_dummy_hash(settings), b"never matches")
        return Checked(False)
    try:
        hasher.verify(stored, _peppered(p, key_id, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return Checked(False)
    return Checked(True, key_id != p.current_id or hasher.check_needs_rehash(stored))


async def verify_password(settings: Settings, stored: str | None, key_id: str, password: str) -> Checked:
    return await asyncio.to_thread(verify_sync, settings, stored, key_id, password)


@functools.lru_cache(maxsize=4)
def _dummy_hash_for(time_cost: int, memory_kib: int) -> str:
    hasher = PasswordHasher(
        time_cost=time_cost, memory_cost=memory_kib, parallelism=4, hash_len=32, type=Type.ID
    )
    return hasher.hash(b"espace-sante dummy password")


def _dummy_hash(settings: Settings) -> str:
    return _dummy_hash_for(settings.password_hash_time_cost, settings.password_hash_memory_kib)
