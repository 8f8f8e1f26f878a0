"""Seals: a space's chain head signed with an Ed25519 key that is not in the database (SECURITY V7 7.3.3).

The hash chain alone shows that a record was altered in place, but someone able to write the tables (a
superuser disabling the triggers) could rewrite a record and every hash after it, chain head included, and the
chain would check again. A seal pins (space, seq, head) under a key the database never sees: after such a
rewrite the recomputed hash at a sealed position no longer matches what was signed.

The signed message is a fixed, versioned byte string rather than a serialisation of the row, so that a verifier
in another language can rebuild it without our code. A key is named by a short hash of its public key, so that
seals made before a key rotation still name the key that can check them."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from espace_sante.settings import Settings
from espace_sante.storage.audit import Seal

SEAL_V1 = b"espace-sante audit seal v1|"


def message(space_id: uuid.UUID, seq: int, head: bytes) -> bytes:
    """The bytes a seal signs: the space, the position and the head hash, in a fixed textual form."""
    return SEAL_V1 + f"{space_id}|{seq}|{head.hex()}".encode("ascii")


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: the first 8 bytes of its SHA-256, in hex."""
    return hashlib.sha256(raw_public(key)).hexdigest()[:16]


def public_b64(key: Ed25519PublicKey) -> str:
    """The form `ESPACE_SANTE_AUDIT_VERIFY_KEYS` expects, for an operator rotating the signing key."""
    return base64.b64encode(raw_public(key)).decode("ascii")


class Sealer:
    """Signs chain heads with the current signing key."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)

    @classmethod
    def from_settings(cls, settings: Settings) -> Sealer:
        return cls(Ed25519PrivateKey.from_private_bytes(settings.audit_signing_key_bytes()))

    def seal(self, space_id: uuid.UUID, seq: int, head: bytes) -> Seal:
        signature = self._private.sign(message(space_id, seq, head))
        return Seal(space_id, seq, head, self.key_id, signature)


@dataclass(frozen=True)
class KeySet:
    """The public keys a verifier accepts, by key id: the current signing key and those kept after rotations."""

    keys: dict[str, Ed25519PublicKey]

    @classmethod
    def of(cls, keys: Iterable[Ed25519PublicKey]) -> KeySet:
        return cls({key_id(k): k for k in keys})

    @classmethod
    def from_settings(cls, settings: Settings) -> KeySet:
        current = Sealer.from_settings(settings).public
        extra = [Ed25519PublicKey.from_public_bytes(raw) for raw in settings.audit_verify_key_bytes()]
        return cls.of([current, *extra])

    def knows(self, seal: Seal) -> bool:
        return seal.key_id in self.keys

    def valid(self, seal: Seal) -> bool:
        """True when the seal's signature over its own (space, seq, head) checks under the key it names."""
        key = self.keys.get(seal.key_id)
        if key is None:
            return False
        try:
            key.verify(seal.signature, message(seal.space_id, seal.seq, seal.head))
        except InvalidSignature:
            return False
        return True
