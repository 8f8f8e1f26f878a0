"""Encryption at rest: AES-256-GCM envelopes (SECURITY V6).

Each space has its own data key (DEK). DEKs are stored wrapped by a key-encryption key (KEK) that never
enters the database: a local key from configuration in the embedded default, a KMS in production, both behind
`KeyEncryptionKey`. Every ciphertext carries associated data naming what it is (space, object, version), so a
row copied onto another row, or altered, fails to decrypt instead of showing someone else's data.
Destroying a space's DEKs makes all its bodies unreadable, backups included (crypto-shredding)."""

from __future__ import annotations

import hashlib
import secrets
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12  # 96-bit random nonces (NIST SP 800-38D 8.2.2); far below 2^32 messages per key per space


class DecryptionFailed(Exception):
    """The ciphertext does not match its key or associated data: altered, swapped or shredded."""


class KeyEncryptionKey(Protocol):
    """What a KMS must offer. `key_id` is stored beside each wrapped DEK so keys can be rotated."""

    @property
    def key_id(self) -> str: ...

    def wrap(self, dek: bytes, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes: ...


class LocalKek:
    """A KEK held in process memory, loaded from a file or environment variable."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a key-encryption key is 32 bytes")
        self._aead = AESGCM(key)
        # An id that names the key without revealing it.
        self._id = "local:" + hashlib.sha256(b"espace-sante kek id" + key).hexdigest()[:16]

    @property
    def key_id(self) -> str:
        return self._id

    def wrap(self, dek: bytes, context: bytes) -> bytes:
        return seal(self._aead, dek, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        return open_(self._aead, wrapped, context)


class KeyRing:
    """The current KEK (wraps new DEKs) and the previous ones (still unwrap, until everything is rewrapped)."""

    def __init__(self, current: KeyEncryptionKey, previous: list[KeyEncryptionKey] | None = None) -> None:
        self.current = current
        self._by_id = {k.key_id: k for k in [current, *(previous or [])]}

    def get(self, key_id: str) -> KeyEncryptionKey:
        try:
            return self._by_id[key_id]
        except KeyError:
            raise DecryptionFailed(f"key-encryption key {key_id} is not configured") from None


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, plaintext, aad)


def open_(aead: AESGCM, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < NONCE_BYTES + 16:
        raise DecryptionFailed("ciphertext too short")
    try:
        return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag:
        raise DecryptionFailed("authentication tag mismatch") from None


def resource_aad(
    space_id: str, resource_type: str, resource_id: str, version_id: int, key_version: int
) -> bytes:
    """Associated data of a resource body: which space, resource, version and data key it belongs to."""
    return f"fhir/{space_id}/{resource_type}/{resource_id}/{version_id}/k{key_version}".encode()


def pending_aad(space_id: str, patient_id: str, key_version: int) -> bytes:
    """Associated data of the identity the registry gave, waiting for the space to open (registry_person
    `pending`): which space, future Patient and data key; never valid as a resource body, nor the reverse."""
    return f"spaces/registry/{space_id}/Patient/{patient_id}/k{key_version}".encode()


def dek_context(space_id: str, key_version: int) -> bytes:
    return f"dek/{space_id}/k{key_version}".encode()


#: The one nonce never drawn for a sealed body (nonces are random: a collision has probability 2**-96 per seal),
#: reserved for deriving subkeys. Only one plaintext is ever sealed under it, so its reuse leaks nothing.
_DERIVE_NONCE = bytes(NONCE_BYTES)
_DERIVE_INPUT = b"espace-sante subkey derivation v1"


def derive_subkey(aead: AESGCM, label: bytes) -> bytes:
    """A 32-byte key for another purpose (a MAC), derived from a data key we hold only as an AEAD object: the
    encryption of a constant under the reserved nonce is a pseudo-random function of the key, and HKDF
    separates purposes by `label` (RFC 5869)."""
    seed = aead.encrypt(_DERIVE_NONCE, _DERIVE_INPUT, b"")[:32]
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(seed)


def blob_aad(space_id: str, blob_id: str, key_version: int) -> bytes:
    """Associated data of a stored document's content: its space, blob and data-key version."""
    return f"blob/{space_id}/{blob_id}/k{key_version}".encode()
